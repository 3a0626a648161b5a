"""Work directories: atomic artifacts, stage fingerprints and resume bookkeeping.

Layout: ``<work>/<stage>/fingerprint`` holds the stage's fingerprint; per-unit artifacts
(``frame_000012.png``, ``flow_000012_fw.npz``) live beside it. A stage directory whose
stored fingerprint differs from the current one is emptied before use, so stale work is
never reused; matching artifacts are skipped, so a killed run resumes at the first
unfinished unit. Only folders vidstyle made (those holding a ``fingerprint`` marker) are
ever emptied or removed: a user's own folder of the same name is a UsageError. Every
file is written through :func:`vidstyle.fileio.atomic_path`, so a kill never leaves a
half-written artifact under its final name.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from vidstyle.errors import UsageError, describe
from vidstyle.fileio import atomic_write_bytes

log = logging.getLogger(__name__)


def save_png(path: str | Path, rgb: np.ndarray) -> None:
    """Atomically write (H, W, 3) uint8 RGB as a fast-compressed PNG."""
    ok, buf = cv2.imencode(".png", rgb[:, :, ::-1], [cv2.IMWRITE_PNG_COMPRESSION, 1])
    if not ok:
        raise OSError(f"PNG encoding failed for {path}")
    atomic_write_bytes(path, buf.tobytes())


def load_png(path: str | Path) -> np.ndarray:
    """Read a PNG written by :func:`save_png` -> (H, W, 3) uint8 RGB."""
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise OSError(f"cannot read artifact {path}")
    return np.ascontiguousarray(bgr[:, :, ::-1])


class Stage:
    """One stage's folder in a work directory, valid for exactly one fingerprint."""

    def __init__(self, *, root: Path, name: str, fingerprint: str) -> None:
        self.dir = root / name
        self.name = name
        self.fingerprint = fingerprint

    def check(self) -> None:
        """Raise UsageError when ``dir`` exists but is not a stage folder vidstyle made (a
        file, or a folder with files but no ``fingerprint`` marker): it is never replaced."""
        if self.dir.is_symlink() or (self.dir.exists() and not self.dir.is_dir()):
            raise UsageError(f"{self.dir} is in the way of the work folder's {self.name} "
                             "stage: move it, or give another --work-dir")
        if self.dir.is_dir() and not (self.dir / "fingerprint").is_file() \
                and any(self.dir.iterdir()):
            raise UsageError(f"{self.dir} was not made by vidstyle (it has no fingerprint "
                             "file), so it is not replaced: move it, or give another "
                             "--work-dir")

    def open(self) -> Stage:
        """Create the folder; empty it first when it holds work of another fingerprint.
        Raises UsageError (see :meth:`check`) rather than touch a folder vidstyle did not
        make; an empty folder is used as it is."""
        self.check()
        marker = self.dir / "fingerprint"
        if self.dir.exists():
            old = marker.read_text().strip() if marker.is_file() else None
            if old is not None and old != self.fingerprint:
                log.info("stage %s: settings changed (%s -> %s), recomputing",
                         self.name, old, self.fingerprint)
                shutil.rmtree(self.dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        if not marker.is_file():
            atomic_write_bytes(marker, self.fingerprint.encode())
        return self

    def path(self, unit: str) -> Path:
        return self.dir / unit

    def has(self, unit: str) -> bool:
        return (self.dir / unit).is_file()

    def count(self, pattern: str = "*") -> int:
        return sum(1 for p in self.dir.glob(pattern) if not p.name.startswith("."))


class WorkDir:
    """A run's work directory: one :class:`Stage` folder per stage."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        #: folders :meth:`create` made (the root and missing parents, deepest first)
        self.created: list[Path] = []

    def create(self, stages: tuple[str, ...] = ()) -> None:
        """Create the root (and missing parents) now, and check that the ``stages`` named
        can be opened; raises UsageError in one line when the folder cannot be made (a
        file in the way, no such device, no permission). Call it before costly set-up."""
        missing = []
        p = self.root
        while not p.exists() and not p.is_symlink() and p != p.parent:
            missing.append(p)
            p = p.parent
        if self.root.exists() and not self.root.is_dir():
            raise UsageError(f"work folder {self.root} is a file: give --work-dir a folder")
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise UsageError(f"cannot create the work folder {self.root}: {describe(e)}"
                             " (give --work-dir a folder that can be created)") from None
        if missing:
            self.created = missing
        for name in stages:
            Stage(root=self.root, name=name, fingerprint="").check()

    def discard_created(self) -> None:
        """Remove the folders :meth:`create` made, where they are still empty (a run that
        failed before any work leaves nothing behind)."""
        for d in self.created:
            try:
                d.rmdir()
            except OSError:
                log.debug("work folder %s kept: not empty", d)
                return
        self.created = []

    def stage(self, name: str, fingerprint: str) -> Stage:
        self.root.mkdir(parents=True, exist_ok=True)
        return Stage(root=self.root, name=name, fingerprint=fingerprint).open()

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=False)

    def remove_stages(self) -> None:
        """Remove every stage folder (those holding a ``fingerprint`` marker), then the
        root if that left it empty: files a user keeps in a ``--work-dir`` stay."""
        if not self.root.is_dir():
            return
        for d in self.root.iterdir():
            if d.is_dir() and not d.is_symlink() and (d / "fingerprint").is_file():
                shutil.rmtree(d)
        try:
            self.root.rmdir()
        except OSError:
            log.info("work folder %s kept: it holds other files", self.root)


def default_work_dir(output: str | Path) -> Path:
    """The default work directory beside the output: ``.<name>.vidstyle-work``."""
    output = Path(output)
    return output.parent / f".{output.name}.vidstyle-work"


def cached(stage: Stage, unit: str, compute: Callable[[], np.ndarray]) -> np.ndarray:
    """Return the PNG artifact ``unit`` of ``stage``, computing and saving it when absent."""
    p = stage.path(unit)
    if p.is_file():
        return load_png(p)
    rgb = compute()
    save_png(p, rgb)
    return rgb
