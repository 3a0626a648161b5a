"""A batch's plan and its receipts: which items there are, and which are done.

``plan_batch(in_dir, out_dir)`` mirrors the media files of ``in_dir`` (recursively,
hidden files and folders skipped) into ``out_dir`` with the same relative paths and
suffixes (a video in a container vidstyle does not write gets ``.mp4`` appended:
``a.mpg`` -> ``a.mpg.mp4``). Each
finished item leaves a receipt, ``out_dir/.vidstyle-batch/receipts/<relative path>.json``,
holding the item's fingerprint (the stylization and encoding settings, the style/model
files' SHA-256, the vidstyle version) and the input's and output's size, modification time
and SHA-256. A later run skips an item only when its fingerprint and both files still
match (a file whose size and modification time are unchanged is taken as unchanged, as
black's cache does; otherwise its SHA-256 decides); anything else is (re)computed, so
changed settings, a changed input or a deleted or altered output are redone and nothing
else is.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vidstyle import __version__, media
from vidstyle.config import DEFAULT_MODEL, RunConfig, fingerprint_of
from vidstyle.contracts import StyleSpec
from vidstyle.device import pick_device
from vidstyle.engine import PipelineSpec, resolved
from vidstyle.errors import InputError, UsageError
from vidstyle.fast.model_io import read_manifest
from vidstyle.fast.runtimes import resolve_runtime
from vidstyle.fileio import atomic_write_bytes, sha256_file
from vidstyle.styles import resolve_style

#: Folder inside OUT_DIR with the receipts and the work directories.
STATE_DIR = ".vidstyle-batch"


@dataclass(frozen=True)
class BatchItem:
    """One input file, its output and its receipt (all absolute paths)."""

    rel: Path
    input: Path
    output: Path
    receipt: Path
    work_dir: Path


def _output_name(path: Path) -> str:
    if media.is_image_path(path) or media.is_video_path(path):
        return path.name
    return path.name + ".mp4"


def _walk(root: Path, skip: Path) -> Iterator[Path]:
    """Media files under ``root`` in sorted order: hidden entries, folder symlinks (no
    loops), ``skip`` and earlier batch output folders (they hold STATE_DIR) left out."""
    try:
        entries = sorted(root.iterdir())
    except OSError as e:
        raise InputError(f"cannot read folder {root}: {e.strerror or e}") from None
    for p in entries:
        if p.name.startswith(".") or p.resolve() == skip:
            continue
        if p.is_dir():
            if not p.is_symlink() and not (p / STATE_DIR).is_dir():
                yield from _walk(p, skip)
        elif p.is_file() and media.is_media_path(p):
            yield p


def plan_batch(in_dir: str | Path, out_dir: str | Path) -> list[BatchItem]:
    """The items of a batch, in sorted path order. Raises UsageError for a missing input
    folder or an output folder equal to it (an output folder inside the input folder is
    fine: it is not read as input)."""
    src, dst = Path(in_dir), Path(out_dir)
    if not src.is_dir():
        raise UsageError(f"input folder {src} does not exist or is not a folder")
    if dst.resolve() == src.resolve():
        raise UsageError("the output folder must differ from the input folder")
    state = dst / STATE_DIR
    items: list[BatchItem] = []
    claimed: dict[str, Path] = {}
    for p in _walk(src, dst.resolve()):
        rel = p.relative_to(src)
        out_rel = rel.with_name(_output_name(p))
        key = str(out_rel).casefold()  # case-insensitive output drives
        if key in claimed:
            raise UsageError(f"{claimed[key]} and {rel} would both be written to "
                             f"{out_rel}: rename one")
        claimed[key] = rel
        items.append(BatchItem(
            rel=rel,
            input=p,
            output=dst / out_rel,
            receipt=state / "receipts" / f"{rel}.json",
            work_dir=state / "work" / rel,
        ))
    return items


def _file_identity(spec: str) -> str:
    """The SHA-256 of ``spec`` when it names a file, else ``spec`` itself."""
    p = Path(spec).expanduser()
    return f"sha256:{sha256_file(p)}" if p.is_file() else spec


def _style_identity(style: StyleSpec) -> list[tuple[str, str]]:
    """(file identity, weight) of every style the spec uses: a named style by the content
    of its image file, an image path by its content."""
    return [(_file_identity(str(resolve_style(ref).path)), f"{weight!r}")
            for mix in style.mixes() for ref, weight in mix.parts]


def _model_identity(config: RunConfig) -> str:
    if config.method != "fast":
        return ""
    if config.fast.model:
        return _file_identity(config.fast.model)
    # the shipped file only loads when it matches its manifest SHA-256 (load_shipped)
    sha = read_manifest().get("models", {}).get(DEFAULT_MODEL, {}).get("sha256", "")
    return f"sha256:{sha}"


def _runtime_identity(config: RunConfig) -> str:
    """The fast runtime that will run (``--runtime auto`` resolved for this machine's
    device): bf16 or fp16 outputs differ slightly from eager ones."""
    if config.method != "fast":
        return ""
    return resolve_runtime(config.fast.runtime, pick_device(config.device))


def settings_fingerprint(config: RunConfig, pipeline: PipelineSpec | None = None) -> str:
    """Everything of ``config`` that shapes an output file, with the style images, the fast
    model and flow weights given by their content (a file replaced in place changes it),
    the stages of ``pipeline`` (default: the method's built-in one) and the fast runtime
    that runs (``auto`` resolved). Not the device otherwise."""
    config = resolved(config)
    spec = pipeline or PipelineSpec.builtin(config.method)
    weights = config.flow.weights_path
    flow_weights = _file_identity(weights) if weights else ""
    return fingerprint_of("batch", config.stylize_fingerprint(), config.encode,
                          config.max_frames, _style_identity(config.style),
                          _model_identity(config), flow_weights, _runtime_identity(config),
                          [s.kind for s in spec.stages], __version__)


def _stat_key(path: Path) -> list[int]:
    st = path.stat()  # ctime and inode: a rewrite changes them even when mtime is restored
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]


def file_record(path: Path) -> dict[str, Any]:
    return {"stat": _stat_key(path), "sha256": sha256_file(path)}


def _unchanged(path: Path, record: Any) -> bool:
    """Whether ``path`` still is the file ``record`` (from :func:`file_record`) describes:
    the same size, and the same stat key or else the same SHA-256."""
    if not isinstance(record, dict) or not path.is_file():
        return False
    key, old = _stat_key(path), record.get("stat")
    if not isinstance(old, list) or len(old) != 4 or key[0] != old[0]:
        return False
    return key == old or sha256_file(path) == record.get("sha256")


def is_done(item: BatchItem, settings: str) -> bool:
    """Whether ``item``'s receipt matches ``settings``, its input and its output."""
    try:
        receipt = json.loads(item.receipt.read_text())
        return (isinstance(receipt, dict) and receipt.get("settings") == settings
                and _unchanged(item.input, receipt.get("input"))
                and _unchanged(item.output, receipt.get("output")))
    except (OSError, ValueError):
        return False


def write_receipt(item: BatchItem, settings: str, source: dict[str, Any], frames: int) -> None:
    """Record ``item`` as done (atomically): ``source`` is the input's :func:`file_record`
    taken before the work started (an input changed meanwhile is redone next time)."""
    receipt = {
        "settings": settings,
        "item": str(item.rel),
        "input": source,
        "output": file_record(item.output),
        "frames": frames,
        "vidstyle": __version__,
    }
    atomic_write_bytes(item.receipt, json.dumps(receipt, indent=1).encode())


__all__ = ["STATE_DIR", "BatchItem", "file_record", "is_done", "plan_batch",
           "settings_fingerprint", "write_receipt"]
