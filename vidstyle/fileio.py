"""File helpers shared by every module that writes or fingerprints files.

- :func:`sha256_file`: hex SHA-256 of a file's bytes, read in chunks.
- :func:`create_temp_beside`: a new empty temp file in the same folder as a final path.
- :func:`atomic_path` / :func:`atomic_write_bytes` / :func:`atomic_write_text`: write a
  file under a temp name in its own folder and ``os.replace`` it onto the final name only
  on success, so a kill or an error never leaves a half-written file under the final name;
  on any exception (KeyboardInterrupt included) the temp file is removed.

Temp files are created with ``os.open(..., 0o666)``, so the kernel applies the process
umask (and any default ACL) exactly as for a plainly created file: a finished file gets
mode ``0o666 & ~umask`` (``0o644`` under the usual umask 022), not ``mkstemp``'s ``0o600``.

A leaf module: it imports only the standard library.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

#: Bytes read per chunk while hashing.
HASH_CHUNK = 1 << 20
_CREATE_ATTEMPTS = 100


def sha256_file(path: str | os.PathLike[str], chunk: int = HASH_CHUNK) -> str:
    """Hex SHA-256 (64 lowercase hex digits) of the file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def create_temp_beside(final: str | os.PathLike[str], *, prefix: str, suffix: str) -> Path:
    """Create a new empty file ``<prefix><random><suffix>`` in ``final``'s folder.

    The file gets the mode a plain ``open(path, "w")`` would give (``0o666`` less the
    umask). Raises OSError (e.g. PermissionError, FileNotFoundError) when the folder
    cannot be written.
    """
    parent = Path(final).parent
    for _ in range(_CREATE_ATTEMPTS):
        tmp = parent / f"{prefix}{secrets.token_hex(4)}{suffix}"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue
        os.close(fd)
        return tmp
    raise FileExistsError(f"no free temp file name for {final} after {_CREATE_ATTEMPTS} tries")


@contextmanager
def atomic_path(
    path: str | os.PathLike[str], suffix: str | None = None, *, fsync: bool = False
) -> Iterator[Path]:
    """Yield a temp path beside ``path``; on success it is ``os.replace``d onto ``path``.

    The parent folder is created if missing. The temp file exists (empty) when yielded and
    is named ``.<name>.<random><suffix>`` (``suffix`` defaults to ``path``'s own suffix,
    or ``.tmp``), so writers that pick a format by suffix still work. With ``fsync`` the
    temp file's data is flushed to disk before the rename (for large files that must
    survive a power loss intact). On any exception (KeyboardInterrupt included) the temp
    file is removed and ``path`` is left untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = create_temp_beside(path, prefix=f".{path.name}.", suffix=suffix or path.suffix or ".tmp")
    try:
        yield tmp
        if fsync:
            fd = os.open(tmp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_path`)."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | os.PathLike[str], text: str, encoding: str = "utf-8") -> None:
    """Write ``text`` to ``path`` atomically in ``encoding`` (see :func:`atomic_path`)."""
    atomic_write_bytes(path, text.encode(encoding))
