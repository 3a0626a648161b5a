from __future__ import annotations

import pytest
import torch

from vidstyle.flow import bicubic_plan, valid_mask, warp, warp_hwc, warp_with_plan
from vidstyle.tensors import to_uint8


def _shift(h: int, w: int, dx: float, dy: float, b: int = 1) -> torch.Tensor:
    f = torch.zeros(b, 2, h, w)
    f[:, 0], f[:, 1] = dx, dy
    return f


@pytest.mark.parametrize("size", [(37, 53), (436, 1024)])
@pytest.mark.parametrize("dx,dy", [(1, 0), (0, 1), (-1, 0), (3, -2), (-7, 5)])
def test_integer_shift_moves_exactly_whole_pixels(size, dx, dy):
    h, w = size
    g = torch.Generator().manual_seed(0)
    img = torch.randint(0, 256, (1, 3, h, w), generator=g).float() / 255
    out = warp(img, _shift(h, w, dx, dy))
    # out(x) = img(x + d): compare on the region where x + d is inside the frame
    ys, xs = slice(max(0, -dy), h - max(0, dy)), slice(max(0, -dx), w - max(0, dx))
    expected = img[..., ys.start + dy : ys.stop + dy, xs.start + dx : xs.stop + dx]
    got = out[..., ys, xs]
    # grid_sample's normalised coordinates cost float32 round-off only (< 1e-4 of a level)
    assert (got - expected).abs().max() < 1e-4
    assert (to_uint8(got) == to_uint8(expected)).all()
    # a half-pixel error (align_corners=False) would average neighbours instead
    assert (got - img[..., ys, xs]).abs().mean() > 0.1


def test_border_clamps_and_valid_mask_marks_outside():
    h, w = 6, 8
    img = torch.arange(h * w, dtype=torch.float32).view(1, 1, h, w)
    flow = _shift(h, w, 2, 0)
    out = warp(img, flow)
    # the two rightmost columns sample x = w, w+1: clamped to column w-1
    assert torch.equal(out[..., :, -2:], img[..., :, -1:].expand(1, 1, h, 2))
    v = valid_mask(flow)
    assert v.shape == (1, 1, h, w)
    assert v[..., :, :-2].eq(1).all() and v[..., :, -2:].eq(0).all()
    zeros = warp(img, _shift(h, w, 0, -h - 5), padding="zeros")
    assert zeros.abs().max() == 0


def test_fractional_shift_interpolates_linearly():
    h, w = 5, 9
    ramp = torch.arange(w, dtype=torch.float32).view(1, 1, 1, w).expand(1, 2, h, w)
    out = warp(ramp, _shift(h, w, 0.25, 0.0))
    assert torch.allclose(out[..., :-1], ramp[..., :-1] + 0.25, atol=1e-5)


def test_flow_batch_broadcasts_and_bad_shapes_raise():
    img = torch.rand(3, 3, 10, 12)
    out = warp(img, _shift(10, 12, 1, 1))
    assert out.shape == img.shape
    with pytest.raises(ValueError):
        warp(img, torch.zeros(3, 2, 10, 11))
    with pytest.raises(ValueError):
        warp(img, torch.zeros(1, 2, 10, 12), padding="wrap")


def test_warp_is_differentiable_in_the_image():
    img = torch.rand(1, 3, 8, 8, requires_grad=True)
    warp(img, _shift(8, 8, 0.5, 0.5)).sum().backward()
    assert img.grad is not None and img.grad.abs().sum() > 0


def test_bicubic_plan_equals_grid_sample_bicubic_and_shifts_whole_pixels_exactly():
    g = torch.Generator().manual_seed(3)
    img = torch.rand(1, 16, 23, 31, generator=g)
    flow = 4 * torch.randn(1, 2, 23, 31, generator=g)
    flow[:, :, :3, :3] = -40.0  # far outside the frame: border taps
    plan = bicubic_plan(flow)
    fast = warp_with_plan(img.contiguous(memory_format=torch.channels_last), plan)
    ref = warp(img, flow, mode="bicubic")
    assert torch.allclose(fast, ref, atol=1e-5)
    # an integer shift reproduces the pixels it lands on exactly
    shift = torch.zeros(1, 2, 23, 31)
    shift[:, 0], shift[:, 1] = 2.0, -1.0
    out = warp_with_plan(img, bicubic_plan(shift))
    assert torch.allclose(out[..., 1:, :-2], img[..., :-1, 2:], atol=1e-6)
    with pytest.raises(ValueError):
        warp(img, flow, mode="nearest")
    with pytest.raises(ValueError):
        warp_with_plan(img[..., :-1], plan)


def test_opencv_path_equals_grid_sample_and_keeps_nan_flow_out_of_clamped_warps() -> None:
    """float32 CPU warps run on OpenCV's remap; float64 ones on grid_sample: the same
    values for both paddings, batched or broadcast flows; a NaN flow vector reads NaN with
    zero padding and the pixel itself with border padding (never NaN into a clamped warp)."""
    g = torch.Generator().manual_seed(0)
    image = torch.rand(2, 3, 37, 53, generator=g)
    flow = torch.randn(2, 2, 37, 53, generator=g) * 6
    for f in (flow, flow[:1]):
        for padding in ("border", "zeros"):
            fast = warp(image, f, padding=padding)
            ref = warp(image.double(), f.double(), padding=padding).float()
            assert fast.dtype == torch.float32 and fast.is_contiguous()
            assert torch.allclose(fast, ref, atol=1e-5)
    bad = flow.clone()
    bad[0, :, 3, 4] = float("nan")
    zeros = warp(image, bad, padding="zeros")
    assert torch.isnan(zeros[0, :, 3, 4]).all() and torch.isfinite(zeros[1]).all()
    border = warp(image, bad, padding="border")
    assert torch.isfinite(border).all()
    assert torch.equal(border[0, :, 3, 4], image[0, :, 3, 4])


def test_channels_last_images_warp_in_their_layout_to_the_same_values() -> None:
    """A decoded frame is a channels-last tensor (:func:`vidstyle.tensors.to_tensor`): its
    OpenCV warp runs on the interleaved memory (one remap for all channels) and returns
    the same values, channels-last too; NaN flows as on the plane-by-plane path; more than
    four channels fall back to planes. :func:`warp_hwc` warps a numpy (H, W, C) array
    alike."""
    g = torch.Generator().manual_seed(1)
    image = torch.rand(2, 3, 37, 53, generator=g)
    flow = torch.randn(2, 2, 37, 53, generator=g) * 6
    flow[1, :, 5, 6] = float("nan")
    cl = image.contiguous(memory_format=torch.channels_last)
    for padding in ("border", "zeros"):
        planes = warp(image, flow, padding=padding)
        inter = warp(cl, flow, padding=padding)
        assert inter.is_contiguous(memory_format=torch.channels_last)
        assert torch.equal(planes.isnan(), inter.isnan())
        assert torch.equal(planes.nan_to_num(), inter.nan_to_num())
    wide = torch.rand(1, 6, 37, 53, generator=g)
    assert torch.equal(warp(wide.contiguous(memory_format=torch.channels_last), flow[:1]),
                       warp(wide, flow[:1]))
    hwc = warp_hwc(image[0].permute(1, 2, 0).contiguous().numpy(), flow[:1])
    assert torch.equal(torch.from_numpy(hwc), warp(image[:1], flow[:1])[0].permute(1, 2, 0))
    with pytest.raises(ValueError, match="float32"):
        warp_hwc(image[0].permute(1, 2, 0).double().numpy(), flow[:1])
