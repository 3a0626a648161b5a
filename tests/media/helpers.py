"""Helpers for media tests: synthetic clips made with PyAV directly (not with the code
under test), readers that use plain PyAV, and a library-level transcode."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np


def synthetic_rgb(i: int, w: int, h: int) -> np.ndarray:
    """A smooth gradient with a moving bright square: (h, w, 3) uint8."""
    y, x = np.mgrid[0:h, 0:w]
    img = np.stack(
        [(x * 255 // max(w - 1, 1)), (y * 255 // max(h - 1, 1)), np.full_like(x, 96)], axis=2
    ).astype(np.uint8)
    s = max(4, min(w, h) // 4)
    x0 = (7 * i) % max(w - s, 1)
    y0 = (3 * i) % max(h - s, 1)
    img[y0 : y0 + s, x0 : x0 + s] = (240, 240, 40)
    return img


def make_clip(
    path: Path,
    *,
    size: tuple[int, int] = (96, 64),
    pts_ms: list[int] | None = None,
    n: int = 12,
    rotation: int = 0,
    codec: str = "libx264",
    pix_fmt: str = "yuv420p",
    rate: int = 25,
) -> Path:
    """Encode a clip with PyAV: frames at ``pts_ms`` (ms, default 1000/rate apart)."""
    w, h = size
    if pts_ms is None:
        pts_ms = [round(i * 1000 / rate) for i in range(n)]
    c = av.open(str(path), "w")
    s = c.add_stream(codec, rate=rate, options={"preset": "ultrafast"} if codec == "libx264"
                     else {})
    s.width, s.height, s.pix_fmt = w, h, pix_fmt
    s.codec_context.time_base = Fraction(1, 1000)
    if rotation:
        s.set_display_rotation(rotation)
    for i, t in enumerate(pts_ms):
        vf = av.VideoFrame.from_ndarray(synthetic_rgb(i, w, h), format="rgb24")
        vf = vf.reformat(format=pix_fmt)
        vf.pts = t
        vf.time_base = Fraction(1, 1000)
        c.mux(s.encode(vf))
    c.mux(s.encode(None))
    c.close()
    return path


def decoded_pts(path: Path) -> tuple[list[int], Fraction]:
    """Presentation timestamps of every decoded video frame, read with plain PyAV."""
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        pts = [f.pts for f in c.decode(s)]
        return pts, Fraction(s.time_base)


def audio_summary(path: Path) -> tuple[str, int, float] | None:
    """(codec, packet count, duration in s from packet timestamps) of the first audio stream."""
    with av.open(str(path)) as c:
        if not c.streams.audio:
            return None
        s = c.streams.audio[0]
        pk = [p for p in c.demux(s) if p.size]
        tb = s.time_base
        end = max(p.pts + (p.duration or 0) for p in pk)
        start = min(p.pts for p in pk)
        return s.codec_context.codec.canonical_name, len(pk), float((end - start) * tb)



def transcode(inp: Path, out: Path, **writer_kwargs) -> Path:
    """Probe ``inp`` and re-encode every frame to ``out`` through the library."""
    from vidstyle.config import EncodeConfig
    from vidstyle.media import MediaWriter, check_output_path, iter_frames, probe

    out = check_output_path(out, input_path=inp)
    info = probe(inp)
    with MediaWriter(out, source=info, encode=EncodeConfig(**writer_kwargs)) as w:
        for frame in iter_frames(inp):
            w.write(frame)
    return out


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB between two uint8 arrays of the same shape."""
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)
