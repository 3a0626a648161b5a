from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image

from tests.flow._clips import moving_square, read_rgb
from vidstyle.errors import InputError
from vidstyle.evaluate import (
    WarpErrorResult,
    endpoint_error,
    evaluate_flow_dir,
    line_plot,
    warp_error,
)
from vidstyle.flow import make_flow
from vidstyle.tensors import to_uint8

DEMO = "flow/sintel_raft_demo_noGT"


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Small elementwise ops: one thread avoids OpenMP contention on a busy 2-core box
    (see tests/flow/conftest.py)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _demo_clip(data_dir, n: int = 4, size=(109, 256)) -> list[torch.Tensor]:
    paths = sorted((data_dir / DEMO).glob("frame_*.png"))[:n]
    return [
        torch.nn.functional.interpolate(read_rgb(p), size=size, mode="bilinear", antialias=True)
        for p in paths
    ]


def test_endpoint_error_basics():
    gt = torch.zeros(1, 2, 4, 4)
    flow = gt.clone()
    flow[:, 0] = 3.0
    flow[:, 1] = 4.0
    assert endpoint_error(flow, gt) == pytest.approx(5.0)
    valid = torch.zeros(1, 1, 4, 4, dtype=torch.bool)
    valid[..., 0, 0] = True
    flow[..., 0, 0] = 0.0
    assert endpoint_error(flow, gt, valid) == 0.0
    assert math.isnan(endpoint_error(flow, gt, torch.zeros_like(valid)))


def test_evaluate_flow_dir_sintel_and_chairs(data_dir):
    rows = evaluate_flow_dir(
        data_dir / "flow/sintel/training", ["dis:ultrafast"], passes=("clean",)
    )
    assert {r["sequence"] for r in rows} == {"alley_1", "cave_2", "market_5"}
    for r in rows:
        assert r["method"] == "dis:ultrafast" and r["pass"] == "clean"
        assert 0 < r["epe_noc"] < r["epe_all"]  # occluded pixels are the hard ones
        assert r["ms_per_pair"] > 0
    alley = next(r for r in rows if r["sequence"] == "alley_1")
    market = next(r for r in rows if r["sequence"] == "market_5")
    assert alley["epe_all"] < 1.5 < market["epe_all"]  # 32 px mean motion vs 3 px
    chairs = evaluate_flow_dir(data_dir / "flow/flyingchairs", [make_flow("dis")])
    assert [r["sequence"] for r in chairs] == ["0000000", "0000001"]
    assert all(r["epe_all"] < 10 and math.isnan(r["epe_noc"]) for r in chairs)


def test_evaluate_flow_dir_empty(tmp_path):
    with pytest.raises(InputError):
        evaluate_flow_dir(tmp_path, ["dis"])


def test_warp_error_identical_frames_is_zero(data_dir):
    frame = to_uint8(_demo_clip(data_dir, n=1)[0])
    res = warp_error([frame] * 3, iter([frame] * 3), flow=make_flow("dis"))
    assert len(res.per_frame) == 2
    assert res.mean < 1e-10
    assert all(c > 0.95 for c in res.consistent)


def test_warp_error_grows_with_flicker(data_dir, tmp_path):
    clip = _demo_clip(data_dir)
    g = torch.Generator().manual_seed(0)
    gains = 0.8 + 0.4 * torch.rand(len(clip), generator=g)
    flicker = [(f * k).clamp(0, 1) for f, k in zip(clip, gains, strict=True)]
    est = make_flow("dis")
    stable = warp_error(clip, clip, flow=est)
    flickering = warp_error(flicker, clip, flow=est)
    assert len(stable.per_frame) == 3
    assert 0 < stable.mean < 0.01
    assert flickering.mean > 3 * stable.mean
    # uint8 arrays and a source at another size are accepted too
    as_arrays = warp_error(
        [to_uint8(f) for f in clip],
        [to_uint8(torch.nn.functional.interpolate(f, scale_factor=2)) for f in clip],
        flow=est,
    )
    assert as_arrays.mean == pytest.approx(stable.mean, rel=0.5)

    flickering.to_csv(tmp_path / "we.csv")
    lines = (tmp_path / "we.csv").read_text().splitlines()
    assert lines[0] == "frame,warp_error,consistent_fraction" and len(lines) == 5
    assert float(lines[1].split(",")[1]) == pytest.approx(flickering.per_frame[0], rel=1e-6)
    flickering.plot_png(tmp_path / "we.png")
    with Image.open(tmp_path / "we.png") as im:
        assert im.size == (800, 400)
        arr = np.asarray(im.convert("RGB"))
    assert (arr.min(axis=2) < 100).mean() > 0.002  # axes, text and the line are drawn
    assert sorted(p.name for p in tmp_path.iterdir()) == ["we.csv", "we.png"]


class _ExactFlow:
    """A stand-in estimator that knows the true flows of the moving-square scene."""

    name = "exact"

    def __init__(self, scene):
        self.s = scene

    def fingerprint(self) -> str:
        return "exact"

    def estimate(self, a, b):
        return torch.cat(
            [
                self.s["forward"] if torch.equal(x[None], self.s["a"]) else self.s["backward"]
                for x in a
            ]
        )


def test_warp_error_masks_occlusions_on_frame_t_grid():
    """With exact flow, everything but the pixels of frame t hidden in t+1 aligns exactly,
    so the error is 0 only if those pixels are masked on frame t's grid."""
    s = moving_square()
    res = warp_error([s["a"], s["b"]], [s["a"], s["b"]], flow=_ExactFlow(s))
    assert res.mean < 1e-9
    hidden = s["new"] & ~s["old"]  # background of frame t covered by the square in t+1
    assert res.consistent[0] <= 1 - hidden.float().mean()
    # sanity: the unmasked error of those pixels is large
    diff = (s["a"] - s["b"]).pow(2).mean(dim=1)[0]
    assert diff[hidden].mean() > 0.01


def test_warp_error_input_checks():
    frame = np.zeros((16, 16, 3), np.uint8)
    with pytest.raises(InputError):
        warp_error([frame] * 3, [frame] * 2, flow=make_flow("dis"))
    with pytest.raises(InputError):
        warp_error([frame], [frame], flow=make_flow("dis"))


def test_line_plot_handles_nan():
    img = line_plot([0.1, float("nan"), 0.3, 0.2], title="t", xlabel="x", ylabel="y")
    assert img.size == (800, 400)
    res = WarpErrorResult(per_frame=(0.1, float("nan")), consistent=(1.0, 0.0), mean=0.1)
    assert res.mean == 0.1


def test_same_aspect_allows_resize_rounding_only():
    from vidstyle.evaluate import _same_aspect

    for stylized, source in [((64, 52), (176, 144)), ((48, 32), (96, 64)),
                             ((32, 18), (1920, 1080)), ((512, 288), (1920, 1080))]:
        assert _same_aspect(stylized, source), (stylized, source)
    for stylized, source in [((64, 64), (96, 64)), ((64, 96), (96, 64)), ((40, 32), (96, 64))]:
        assert not _same_aspect(stylized, source), (stylized, source)
