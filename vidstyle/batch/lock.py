"""One driver per output folder: an exclusive lock on ``OUT_DIR/.vidstyle-batch/lock``.

Two batches writing one OUT_DIR at once could both work on an item, or clean up a work
folder the other is filling. The driver takes an exclusive ``flock`` for the whole run;
a second driver is refused at once with one line. The kernel drops the lock when the
process ends however it ends (kill -9 included), so no stale lock is left to clear by
hand. The file's content is never rewritten (a rerun that skips everything changes no
file's time stamps); Linux NFS (v4) clients map ``flock`` to a server-side lock, so
drivers on two machines sharing OUT_DIR exclude each other too.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from types import TracebackType

from vidstyle.errors import OutputError, describe


class BatchLock:
    """Hold the lock on ``state_dir / "lock"`` (created when missing) while in the
    ``with`` block. Raises OutputError, one line, when another process holds it or
    the folder cannot be written."""

    def __init__(self, state_dir: Path, *, shown: Path) -> None:
        self.path = state_dir / "lock"
        self.shown = shown
        self._fd: int | None = None

    def __enter__(self) -> BatchLock:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as e:
            raise OutputError(f"cannot write in {self.path.parent}: {describe(e)}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise OutputError(f"{self.shown} is in use by another vidstyle batch: wait for "
                              "it to finish, or give another output folder") from None
        self._fd = fd
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor releases the lock
            self._fd = None


__all__ = ["BatchLock"]
