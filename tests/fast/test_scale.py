"""The working scale of the fast network (``--style-scale``): the same look at any
resolution, full-size output with sharp edges (vidstyle.fast.scale)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from vidstyle.config import FastConfig, RunConfig
from vidstyle.contracts import Instances
from vidstyle.engine import build_config
from vidstyle.engine.stream import stylize_sequence
from vidstyle.errors import UsageError
from vidstyle.evaluate import warp_error
from vidstyle.fast import scale
from vidstyle.fast.stabilize import default_flow
from vidstyle.fast.stylizer import FastStylizer, make_fast_stylizer
from vidstyle.flow import make_flow
from vidstyle.imageops import resize
from vidstyle.losses import gram
from vidstyle.vgg import load_vgg

from .test_stabilize import _pan


def _stylizer(style_scale: float = 1.0, **fast: object) -> FastStylizer:
    cfg = RunConfig(style="starry", method="fast",
                    fast=FastConfig(runtime="eager", stability=0.0, style_scale=style_scale,
                                    **fast))
    return make_fast_stylizer(config=cfg, device="cpu")


def _photo(data_dir: Path, short: int, name: str = "tubingen.jpg") -> torch.Tensor:
    """A kit photo resized (Lanczos) to short side ``short``: (1, 3, h, w) in [0, 1]."""
    with Image.open(data_dir / "content" / name) as im:
        im = im.convert("RGB")
        f = short / min(im.size)
        im = im.resize((round(im.size[0] * f), round(im.size[1] * f)), Image.LANCZOS)
    return torch.from_numpy(np.asarray(im).copy()).permute(2, 0, 1)[None].float() / 255.0


def test_network_size_follows_the_short_side_and_the_style_scale() -> None:
    assert scale.REFERENCE_SHORT_SIDE == 720
    assert scale.network_size(1080, 1920, 1.0) == (720, 1280)
    assert scale.network_size(2160, 3840, 1.0) == (720, 1280)
    assert scale.network_size(1920, 1080, 1.0) == (1280, 720)  # portrait
    assert scale.network_size(360, 640, 1.0) == (360, 640)  # smaller: not enlarged
    assert scale.network_size(360, 640, 2.0) == (180, 320)
    assert scale.network_size(1080, 1920, 2.0) == (360, 640)
    assert scale.network_size(360, 640, 0.5) == (720, 1280)  # asked for: enlarged
    assert scale.network_size(2160, 3840, 0.0) == (2160, 3840)  # off: the frame's own size


@pytest.mark.parametrize("bad", [-1.0, 0.1, 9.0, float("nan")])
def test_style_scale_range_is_checked(bad: float) -> None:
    with pytest.raises(UsageError, match="--style-scale"):
        FastConfig(style_scale=bad)


def test_upsampler_keeps_a_sharp_edge() -> None:
    """A vertical step at full size (not on the low-resolution grid), its 2x-shrunk copy
    stylized by a colour map: the guided upsampler gives a step as sharp as the input's
    (one pixel), with the map's colours on both sides, where bilinear gives a 4 px ramp."""
    h, w = 64, 96
    x = torch.full((1, 3, h, w), 0.1)
    x[..., 51:] = 0.9
    xs = scale.shrink(x, (32, 48))
    m = torch.tensor([[0.2, 0.5, 0.0], [0.0, 0.3, 0.4], [0.6, 0.0, 0.1]])
    low = torch.einsum("ck,bkhw->bchw", m, xs) + 0.05  # "stylized": a colour transform
    want = torch.einsum("ck,bkhw->bchw", m, x) + 0.05
    out = scale.guided_upsample(low, xs, x)
    bil = F.interpolate(low, size=(h, w), mode="bilinear", align_corners=False)
    assert out.shape == (1, 3, h, w)

    def ramp(img: torch.Tensor) -> int:
        """Pixels of row 30 strictly between 10% and 90% of the step (channel 0)."""
        row = img[0, 0, 30]
        lo, hi = float(want[0, 0, 30, 0]), float(want[0, 0, 30, -1])
        t = (row - lo) / (hi - lo)
        return int(((t > 0.1) & (t < 0.9)).sum())

    assert ramp(out) == 0, out[0, 0, 30, 46:56]
    assert ramp(bil) >= 3
    assert torch.allclose(out[..., 40:], want[..., 40:], atol=0.02)  # colours kept
    assert (out - want).abs().max() < 0.1


def test_upsampled_output_shrinks_back_to_the_network_output() -> None:
    """Back-projection: the full-size result shrunk to the network's size is (nearly) the
    network's output, so the strokes are not blurred."""
    g = torch.Generator().manual_seed(0)
    x = torch.rand(1, 3, 90, 120, generator=g)
    xs = scale.shrink(x, (45, 60))
    yy, xx = torch.meshgrid(torch.arange(45.0), torch.arange(60.0), indexing="ij")
    # "strokes": diagonal stripes of period 5 low-resolution pixels, unrelated to the input
    low = (0.5 + 0.3 * torch.sin(2 * torch.pi * (xx + 0.5 * yy) / 5)).expand(1, 3, -1, -1)
    err = (scale.shrink(scale.guided_upsample(low, xs, x), (45, 60)) - low).abs().mean()
    plain = scale.guided_upsample(low, xs, x, back_project=False)
    err_plain = (scale.shrink(plain, (45, 60)) - low).abs().mean()
    assert err < 0.6 * err_plain, (err, err_plain)


def test_output_size_equals_input_size(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(scale, "REFERENCE_SHORT_SIDE", 40)
    st = _stylizer()
    x = torch.rand(1, 3, 77, 131, generator=torch.Generator().manual_seed(1))
    assert st.network_size((77, 131)) == (40, 68)
    assert st.stylize_tensor(x).shape == x.shape
    assert st.stylize_many(x, torch.eye(3, 7)).shape == (3, 3, 77, 131)
    rgb = (np.random.default_rng(0).random((77, 131, 3)) * 255).astype(np.uint8)
    assert st.stylize_rgb(rgb).shape == (77, 131, 3)


def test_tiled_frames_at_the_working_scale(monkeypatch: pytest.MonkeyPatch) -> None:
    """A network size still over the tile limit is tiled, then upsampled to full size."""
    monkeypatch.setattr(scale, "REFERENCE_SHORT_SIDE", 100)
    st = _stylizer(tile=64)
    x = torch.rand(1, 3, 200, 260, generator=torch.Generator().manual_seed(2))
    assert st._tile_for(*st.network_size((200, 260)))
    assert st.stylize_tensor(x).shape == (1, 3, 200, 260)


def _gram_distance(a: torch.Tensor, b: torch.Tensor, net: torch.nn.Module,
                   size: tuple[int, int]) -> float:
    layers = ("relu1_1", "relu2_1", "relu3_1")
    with torch.inference_mode():
        fa, fb = net(resize(a, size), layers), net(resize(b, size), layers)
        return sum(float(torch.mean((gram(fa[k]) - gram(fb[k])) ** 2)) for k in layers)


def test_downsized_outputs_at_two_resolutions_agree_with_the_working_scale(
        data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same photo at short side 96 and 288 (3x), shrunk to short side 48: with the
    working scale (reference 96) the two outputs' Gram statistics are much closer than
    with the network at full size (``--style-scale 0``: 3x finer strokes at 288)."""
    try:
        vgg = load_vgg("vgg19", truncate_after="relu3_1")
    except Exception as exc:  # noqa: BLE001
        pytest.skip(f"VGG19 weights not available: {exc}")
    monkeypatch.setattr(scale, "REFERENCE_SHORT_SIDE", 96)
    small, large = _photo(data_dir, 96), _photo(data_dir, 288)
    common = (48, round(48 * small.shape[-1] / small.shape[-2]))
    d = {}
    for s in (0.0, 1.0):
        st = _stylizer(s)
        d[s] = _gram_distance(st.stylize_tensor(small), st.stylize_tensor(large), vgg, common)
    assert d[1.0] < 0.5 * d[0.0], d


def _stroke_frequency(img: torch.Tensor) -> float:
    """Mean spatial frequency (cycles per pixel) of the luminance's power spectrum."""
    y = img.mean(1)[0]
    p = torch.fft.rfft2(y - y.mean()).abs().pow(2)
    fy = torch.fft.fftfreq(y.shape[0])[:, None]
    fx = torch.fft.rfftfreq(y.shape[1])[None, :]
    return float((p * torch.sqrt(fy**2 + fx**2)).sum() / p.sum())


def test_style_scale_changes_the_stroke_size(data_dir: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """``--style-scale 2`` paints strokes twice as large: the output's mean spatial
    frequency drops well below that of scale 1 (the input is the same)."""
    monkeypatch.setattr(scale, "REFERENCE_SHORT_SIDE", 192)
    x = _photo(data_dir, 192)
    f1 = _stroke_frequency(_stylizer(1.0).stylize_tensor(x))
    f2 = _stroke_frequency(_stylizer(2.0).stylize_tensor(x))
    assert f2 < 0.8 * f1, (f1, f2)


def test_a_style_map_is_shrunk_with_the_frame(monkeypatch: pytest.MonkeyPatch) -> None:
    """Per-person styles at the working scale: a style map constant over the frame gives
    the same output as the equal style row, and a person's style stays on the person."""
    monkeypatch.setattr(scale, "REFERENCE_SHORT_SIDE", 48)
    st = _stylizer()
    x = torch.rand(1, 3, 96, 128, generator=torch.Generator().manual_seed(3))
    row = st.style_vector("wave")[None]
    flat = row[:, :, None, None].expand(1, -1, 96, 128).contiguous()
    with torch.inference_mode():
        assert torch.allclose(st.scaled_network(x, flat), st.scaled_network(x, row), atol=1e-4)
        left = torch.zeros(1, 7, 96, 128)
        left[:, st.style_names.index("wave"), :, :64] = 1.0
        left[:, st.style_names.index("scream"), :, 64:] = 1.0
        mixed = st.scaled_network(x, left)
        wave = st.scaled_network(x, row)
        scream = st.scaled_network(x, st.style_vector("scream")[None])
    assert mixed.shape == (1, 3, 96, 128)
    # well inside each half the map's style is the one painted
    assert (mixed[..., 8:40] - wave[..., 8:40]).abs().mean() < 0.5 * (
        scream[..., 8:40] - wave[..., 8:40]).abs().mean()
    assert (mixed[..., 88:120] - scream[..., 88:120]).abs().mean() < 0.5 * (
        scream[..., 88:120] - wave[..., 88:120]).abs().mean()


def test_per_person_frames_keep_their_size(monkeypatch: pytest.MonkeyPatch) -> None:
    """A per-person frame at the working scale: the layout at full size, the style map
    shrunk with the frame, the output (and the kept background) at full size."""
    monkeypatch.setattr(scale, "REFERENCE_SHORT_SIDE", 48)
    cfg, _ = build_config({"--style": "starry", "--instance": ("1=wave",),
                           "--background": "none", "--stability": 0.0, "--runtime": "eager"})
    st = make_fast_stylizer(config=cfg, device="cpu")
    masks = torch.zeros(1, 96, 128)
    masks[0, 20:70, 30:80] = 1.0
    inst = Instances(masks=masks, boxes=torch.tensor([[30.0, 20, 80, 70]]),
                     scores=torch.ones(1), ids=(1,))
    x = torch.rand(1, 3, 96, 128, generator=torch.Generator().manual_seed(4))
    out = st.stylize_tensor(x, instances=inst)
    assert out.shape == x.shape
    assert torch.equal(out[..., :10, :], x[..., :10, :])  # background none: kept
    assert (out[..., 30:60, 40:70] - x[..., 30:60, 40:70]).abs().mean() > 0.05


def test_flow_stabilization_at_the_working_scale(data_dir: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Frames of 96x128 with the network at 48x64: the feature blend runs on the shrunk
    frame's features (the motion resized to them), the output blend at full size, and the
    warping error stays well below the raw per-frame output's."""
    monkeypatch.setattr(scale, "REFERENCE_SHORT_SIDE", 48)
    cfg = RunConfig(style="starry", method="fast",
                    fast=FastConfig(runtime="eager", stability=0.7))
    st = make_fast_stylizer(config=cfg, device="cpu")
    src = _pan(data_dir, "tubingen.jpg", 8, size=(96, 128), step=(1, 3))
    raw = [st.stylize_tensor(x) for x in src]
    out, _ = stylize_sequence(st, src, flow=default_flow())
    assert st.stabilizer is not None and st.stabilizer.feature_blend
    assert st.stabilizer._prev_features["pre_res"].shape[-2:] == (12, 16)
    assert all(o.shape == (1, 3, 96, 128) for o in out)
    judge = make_flow("dis", preset="medium")
    e_raw = warp_error(raw, src, flow=judge).mean
    e_out = warp_error(out, src, flow=judge).mean
    assert e_out < 0.6 * e_raw, (e_out, e_raw)
