"""Encoding is reproducible: the same frames give the same pictures every time, so a
rerun, a resumed item or a retried batch task reproduces its output exactly."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import pytest

from vidstyle.media import MediaInfo, MediaWriter, iter_frames, probe

from .helpers import make_clip

#: Encodes compared, and how many run at once. x264's macroblock-tree rate control made
#: the pictures differ now and then, more often when the CPUs are busy (about one encode
#: in ten on a loaded machine): encodes running side by side make that likely here.
REPEATS = 160
AT_ONCE = 6


def _frames(n: int, w: int, h: int) -> list[np.ndarray]:
    """A textured clip panning 3 px right and 2 px down per frame (like stylized frames:
    fine detail that x264 must code)."""
    rng = np.random.default_rng(7)
    noise = rng.integers(0, 256, (h + 2 * n, w + 3 * n, 3), dtype=np.uint8)
    base = cv2.GaussianBlur(noise, (3, 3), 0)
    return [np.ascontiguousarray(base[2 * i:2 * i + h, 3 * i:3 * i + w]) for i in range(n)]


def _encode(path: Path, frames: list[np.ndarray], source: MediaInfo) -> bytes:
    with MediaWriter(path, source=source) as writer:
        for rgb in frames:
            writer.write(rgb)
    pictures = b"".join(f.rgb.tobytes() for f in iter_frames(path))
    path.unlink()
    return pictures


@pytest.mark.parametrize("size", [(40, 25), (64, 40)])
def test_the_same_frames_encode_to_the_same_pictures(tmp_path: Path,
                                                     size: tuple[int, int]) -> None:
    frames = _frames(8, *size)
    source = probe(make_clip(tmp_path / "source.mp4", size=(64, 40), n=8))
    with ThreadPoolExecutor(AT_ONCE) as pool:
        results = list(pool.map(lambda k: _encode(tmp_path / f"out{k}.mp4", frames, source),
                                range(REPEATS)))
    counts = sorted(results.count(r) for r in set(results))
    assert len(counts) == 1, f"{len(counts)} different results in {REPEATS} encodes: {counts}"
