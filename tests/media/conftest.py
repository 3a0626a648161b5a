"""Fixtures for media tests (synthetic clips are made with plain PyAV)."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

from .helpers import make_clip


@pytest.fixture(scope="session")
def clips(tmp_path_factory) -> dict[str, Path]:
    """Synthetic inputs: VFR, rotated, odd-sized, zero-frame and audio-only files."""
    d = tmp_path_factory.mktemp("synthetic")
    vfr_pts = [0, 40, 80, 200, 240, 400, 433, 466, 500, 700, 740, 1000, 1040, 1080]
    out = {
        "vfr": make_clip(d / "vfr.mp4", pts_ms=vfr_pts),
        "rot90": make_clip(d / "rot90.mp4", rotation=90, n=8),
        "rot180_mkv": make_clip(d / "rot180.mkv", rotation=180, n=8),
        "odd": make_clip(d / "odd.mp4", size=(321, 241), pix_fmt="yuv444p", n=6),
    }
    # An AVI with a video stream and no frames.
    zero = d / "zero.avi"
    with av.open(str(zero), "w") as c:
        s = c.add_stream("libx264", rate=25)
        s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
        c.start_encoding()
    out["zero"] = zero
    # Audio only (no video stream).
    wav = d / "tone.wav"
    with av.open(str(wav), "w") as c:
        s = c.add_stream("pcm_s16le", rate=8000, layout="mono")
        t = np.arange(4000) / 8000
        samples = (np.sin(2 * np.pi * 440 * t) * 8000).astype(np.int16)[None, :]
        fr = av.AudioFrame.from_ndarray(samples, format="s16", layout="mono")
        fr.sample_rate = 8000
        fr.pts = 0
        c.mux(s.encode(fr))
        c.mux(s.encode(None))
    out["audio_only"] = wav
    return out
