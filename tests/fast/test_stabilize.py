"""Flow-guided stabilization of the fast method: less flicker, no blending across cuts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from vidstyle.evaluate import warp_error
from vidstyle.fast.stabilize import Stabilizer, default_flow
from vidstyle.flow import make_flow


def _pan(data_dir: Path, name: str, n: int, size=(96, 128), step=(1, 2)) -> list[torch.Tensor]:
    """n crops of a photo panning by ``step`` (dy, dx) px per frame: (1, 3, h, w) each."""
    with Image.open(data_dir / "content" / name) as im:
        im = im.convert("RGB")
        s = 240 / max(im.size)
        im = im.resize((round(im.size[0] * s), round(im.size[1] * s)))
    arr = torch.from_numpy(np.asarray(im).copy()).permute(2, 0, 1)[None].float() / 255.0
    h, w = size
    out = []
    for t in range(n):
        y, x = 10 + t * step[0], 10 + t * step[1]
        out.append(arr[:, :, y : y + h, x : x + w].contiguous())
    return out


def _flicker(frames: list[torch.Tensor], seed: int = 0) -> list[torch.Tensor]:
    """'Stylized' frames: the content with per-frame random brightness and pixel noise."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for f in frames:
        stylized = f.flip(1)  # some fixed "style": swapped colour channels
        noise = 0.04 * torch.randn(f.shape, generator=g)
        gain = 0.08 * (torch.rand(1, 3, 1, 1, generator=g) - 0.5)
        out.append((stylized + noise + gain).clamp(0, 1))
    return out


def test_stabilization_lowers_warping_error_of_a_flickering_clip(data_dir: Path) -> None:
    src = _pan(data_dir, "tubingen.jpg", 8)
    raw = _flicker(src)
    stab = Stabilizer(flow=default_flow(), stability=0.7)
    out = [stab.step(s, r) for s, r in zip(src, raw, strict=True)]
    assert torch.equal(out[0], raw[0])  # nothing to blend with yet
    assert stab.cuts == []
    judge = make_flow("dis", preset="medium")
    e_raw = warp_error(raw, src, flow=judge).mean
    e_out = warp_error(out, src, flow=judge).mean
    assert e_out < 0.6 * e_raw, (e_out, e_raw)
    # the output stays close to the fresh frames (no runaway blur or drift)
    assert float((out[-1] - raw[-1]).abs().mean()) < 0.08


def test_stability_zero_is_the_raw_output(data_dir: Path) -> None:
    src = _pan(data_dir, "tubingen.jpg", 3)
    raw = _flicker(src)
    stab = Stabilizer(flow=default_flow(), stability=0.0)
    for s, r in zip(src, raw, strict=True):
        assert torch.equal(stab.step(s, r), r)


def test_no_blending_across_a_cut(data_dir: Path) -> None:
    shot_a = _pan(data_dir, "tubingen.jpg", 4)
    shot_b = _pan(data_dir, "golden_gate.jpg", 3)
    src = shot_a + shot_b
    raw = _flicker(src, seed=1)
    stab = Stabilizer(flow=default_flow(), stability=0.8)
    out = [stab.step(s, r) for s, r in zip(src, raw, strict=True)]
    assert stab.cuts == [4]
    assert torch.equal(out[4], raw[4])  # the first frame after the cut is the raw frame
    for t in (1, 2, 3, 5, 6):  # inside each shot the blend is on
        assert float((out[t] - raw[t]).abs().mean()) > 0.005, t


def test_prepare_and_apply_split_equals_step(data_dir: Path) -> None:
    src = _pan(data_dir, "tubingen.jpg", 4)
    raw = _flicker(src, seed=2)
    a = Stabilizer(flow=default_flow(), stability=0.6)
    b = Stabilizer(flow=default_flow(), stability=0.6)
    ctxs = [b.prepare(s) for s in src]  # all flows first, as the decode thread does
    for s, r, c in zip(src, raw, ctxs, strict=True):
        assert torch.equal(a.step(s, r), b.apply(c, r))


def test_bad_stability_is_rejected() -> None:
    with pytest.raises(ValueError):
        Stabilizer(flow=default_flow(), stability=1.5)
