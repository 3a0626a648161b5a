"""Work directories: atomic artifacts, stage fingerprints and resume bookkeeping.

Layout: ``<work>/<stage>/fingerprint`` holds the stage's fingerprint; per-unit artifacts
(``frame_000012.png``, ``flow_000012_fw.npz``) live beside it. A stage directory whose
stored fingerprint differs from the current one is emptied before use, so stale work is
never reused; matching artifacts are skipped, so a killed run resumes at the first
unfinished unit. Every file is written through :func:`vidstyle.fileio.atomic_path`, so a
kill never leaves a half-written artifact under its final name.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

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

    def open(self) -> Stage:
        """Create the folder; empty it first when it holds work of another fingerprint."""
        marker = self.dir / "fingerprint"
        if self.dir.exists():
            old = marker.read_text().strip() if marker.exists() else None
            if old != self.fingerprint:
                log.info("stage %s: settings changed (%s -> %s), recomputing",
                         self.name, old, self.fingerprint)
                shutil.rmtree(self.dir)
        if not self.dir.exists():
            self.dir.mkdir(parents=True)
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
