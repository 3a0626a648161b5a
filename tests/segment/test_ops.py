"""Mask operations: feathering, compositing, edge bands, IoU, warping, smoothing."""

from __future__ import annotations

import pytest
import torch

from vidstyle.segment.ops import (
    box_iou,
    composite,
    edge_band,
    feather,
    hard_ids,
    iou_matrix,
    mask_boxes,
    smooth_masks,
    warp_masks,
)


def _square(h: int, w: int, y0: int, y1: int, x0: int, x1: int) -> torch.Tensor:
    m = torch.zeros(h, w)
    m[y0:y1, x0:x1] = 1.0
    return m


def test_feather_keeps_zero_masks_zero_and_changes_only_near_edges() -> None:
    zeros = torch.zeros(2, 40, 50)
    assert torch.equal(feather(zeros, 6), zeros)
    hard = _square(60, 80, 10, 50, 20, 60)[None]
    soft = feather(hard, 6)
    assert soft.shape == hard.shape and soft.dtype == torch.float32
    assert soft.min() >= 0.0 and soft.max() <= 1.0
    changed = soft != hard
    band = edge_band(hard, 6)
    assert changed.any()
    assert not (changed[0] & ~band).any()  # exact 0 and 1 beyond the band
    assert torch.equal(soft[0, 30, 40], torch.tensor(1.0))
    assert torch.equal(soft[0, 0, 0], torch.tensor(0.0))


def test_feathered_edge_is_monotone_and_centred_on_the_edge() -> None:
    hard = torch.zeros(1, 20, 64)
    hard[0, :, 32:] = 1.0  # a vertical edge between columns 31 and 32
    r = 8
    row = feather(hard, r)[0, 10]
    assert (row[1:] - row[:-1] >= 0).all()  # monotone rise
    assert torch.equal(row[: 32 - r], torch.zeros(32 - r))
    assert torch.equal(row[32 + r:], torch.ones(32 - r))
    assert row[31] < 0.5 < row[32]
    assert torch.allclose(row[31] + row[32], torch.tensor(1.0), atol=1e-5)  # symmetric
    # smooth: no step bigger than a fraction of the ramp (a hard edge steps by 1)
    assert (row[1:] - row[:-1]).max() < 0.2


def test_feather_treats_the_frame_border_as_no_edge() -> None:
    left = torch.zeros(1, 30, 40)
    left[0, :, :20] = 1.0
    soft = feather(left, 5)
    assert torch.equal(soft[0, :, :14], torch.ones(30, 14))
    assert torch.equal(feather(left, 0), left)
    with pytest.raises(ValueError):
        feather(left, -1)


def test_composite_is_the_background_outside_every_mask_bit_for_bit() -> None:
    g = torch.Generator().manual_seed(0)
    h, w = 48, 64
    background = torch.rand(1, 3, h, w, generator=g)
    layers = torch.rand(2, 3, h, w, generator=g)
    masks = feather(torch.stack([_square(h, w, 5, 30, 5, 30), _square(h, w, 20, 45, 25, 60)]),
                    4)
    out = composite(layers, masks, background)
    outside = (masks == 0).all(dim=0)
    assert outside.any()
    assert torch.equal(out[0][:, outside], background[0][:, outside])
    # inside a single full mask: that person's layer
    assert torch.allclose(out[0, :, 10, 10], layers[0, :, 10, 10])
    # no people: the background itself
    assert torch.equal(composite(layers[:0], masks[:0], background), background)
    # a (3, H, W) background works the same
    assert torch.equal(composite(layers, masks, background[0]), out)


def test_composite_normalizes_overlaps_and_blends_edges_continuously() -> None:
    h, w = 32, 32
    ones = torch.ones(2, h, w)
    layers = torch.stack([torch.zeros(3, h, w), torch.ones(3, h, w)])
    background = torch.full((1, 3, h, w), 0.25)
    out = composite(layers, ones, background)
    assert torch.allclose(out, torch.full_like(out, 0.5))  # two full masks: the mean
    # a layer of 1 over a background of 0 shows the mask itself: a feathered edge has
    # no step, a hard one steps by 1
    hard = torch.zeros(1, h, w)
    hard[0, :, 16:] = 1.0
    white, black = torch.ones(1, 3, h, w), torch.zeros(1, 3, h, w)
    soft_out = composite(white, feather(hard, 6), black)[0, 0, 5]
    hard_out = composite(white, hard, black)[0, 0, 5]
    assert (hard_out[1:] - hard_out[:-1]).abs().max() == 1.0
    assert (soft_out[1:] - soft_out[:-1]).abs().max() < 0.2


def test_composite_checks_shapes() -> None:
    with pytest.raises(ValueError, match="2 layers but 1 masks"):
        composite(torch.zeros(2, 3, 8, 8), torch.zeros(1, 8, 8), torch.zeros(1, 3, 8, 8))
    with pytest.raises(ValueError, match="one size"):
        composite(torch.zeros(1, 3, 8, 8), torch.zeros(1, 8, 9), torch.zeros(1, 3, 8, 8))


def test_edge_band_marks_pixels_within_width_of_an_edge() -> None:
    m = _square(40, 40, 10, 30, 10, 30)[None]
    band = edge_band(m, 2)
    assert band.dtype == torch.bool and band.shape == (40, 40)
    row = band[20]
    # the edge lies between columns 9 and 10 (and 29 and 30): within 2 px means 8..11
    assert row.nonzero().flatten().tolist() == [8, 9, 10, 11, 28, 29, 30, 31]
    assert not band[20, 20] and not band[0, 0]
    # a mask touching the frame's border has no edge there
    left = torch.zeros(1, 20, 20)
    left[0, :, :10] = 1.0
    cols = edge_band(left, 1).any(dim=0).nonzero().flatten().tolist()
    assert cols == [9, 10]
    assert not edge_band(torch.zeros(0, 5, 5), 3).any()
    assert not edge_band(m, 0).any()


def test_iou_matrix_of_soft_and_binary_masks() -> None:
    a = torch.stack([_square(20, 20, 0, 10, 0, 10), _square(20, 20, 0, 10, 0, 20)])
    b = torch.stack([_square(20, 20, 0, 10, 0, 10) * 0.8,  # soft, above 0.5
                     _square(20, 20, 0, 10, 0, 10) * 0.4,  # soft, below 0.5: empty
                     _square(20, 20, 10, 20, 0, 10)])
    iou = iou_matrix(a, b)
    assert iou.shape == (2, 3)
    expected = torch.tensor([[1.0, 0.0, 0.0], [0.5, 0.0, 0.0]])
    assert torch.allclose(iou, expected)
    assert iou_matrix(a[:0], b).shape == (0, 3)


def test_boxes_of_masks_and_box_iou() -> None:
    m = torch.stack([_square(20, 30, 2, 8, 5, 15), torch.zeros(20, 30)])
    boxes = mask_boxes(m)
    assert boxes.tolist() == [[5.0, 2.0, 15.0, 8.0], [0.0, 0.0, 0.0, 0.0]]
    iou = box_iou(torch.tensor([[0.0, 0.0, 10.0, 10.0]]),
                  torch.tensor([[5.0, 0.0, 15.0, 10.0], [20.0, 20.0, 30.0, 30.0]]))
    assert torch.allclose(iou, torch.tensor([[1 / 3, 0.0]]))


def test_warp_masks_moves_masks_by_the_backward_flow_at_any_size() -> None:
    m = _square(20, 40, 5, 15, 10, 20)[None]
    back = torch.zeros(1, 2, 20, 40)
    back[:, 0] = -3.0  # this frame's pixel x came from x - 3: things moved right by 3
    moved = warp_masks(m, back)
    assert torch.equal(moved, _square(20, 40, 5, 15, 13, 23)[None])
    # a half-size flow is resized and its vectors doubled
    half = torch.zeros(1, 2, 10, 20)
    half[:, 0] = -1.5
    assert torch.allclose(warp_masks(m, half), moved, atol=1e-5)
    assert warp_masks(m[:0], back).shape == (0, 20, 40)


def test_smooth_masks_leans_on_agreement_and_keeps_disagreement() -> None:
    cur = torch.tensor([[[0.50, 0.55, 1.0, 0.0, 0.0]]])
    prev = torch.tensor([[[0.50, 0.45, 0.0, 0.0, 0.4]]])
    out = smooth_masks(cur, prev, strength=0.6, tolerance=0.5)
    # agree: unchanged; slight disagreement (flicker): pulled towards the previous;
    # strong disagreement (a moving edge): the current; both zero: zero
    assert out[0, 0, 0] == pytest.approx(0.5)
    assert 0.45 < out[0, 0, 1] < 0.55  # w = 0.6 * (1 - 0.1 / 0.5) = 0.48
    assert out[0, 0, 1] == pytest.approx(0.55 - 0.48 * 0.1)
    assert out[0, 0, 2] == 1.0 and out[0, 0, 3] == 0.0
    assert 0.0 < out[0, 0, 4] < 0.4
    # the output always lies between the two inputs
    g = torch.Generator().manual_seed(1)
    a, b = torch.rand(3, 16, 16, generator=g), torch.rand(3, 16, 16, generator=g)
    s = smooth_masks(a, b)
    assert (s >= torch.minimum(a, b) - 1e-6).all() and (s <= torch.maximum(a, b) + 1e-6).all()
    # unreliable flow: the current mask
    assert torch.equal(smooth_masks(a, b, reliable=torch.zeros(1, 1, 16, 16)), a)


def test_smoothing_damps_the_flicker_of_a_still_edge() -> None:
    g = torch.Generator().manual_seed(2)
    base = feather(_square(32, 32, 8, 24, 8, 24)[None], 4)
    frames = [(base + 0.08 * (torch.rand(base.shape, generator=g) - 0.5)).clamp(0, 1)
              for _ in range(30)]
    smoothed, prev = [], None
    for f in frames:
        prev = f if prev is None else smooth_masks(f, prev)  # still: zero flow
        smoothed.append(prev)
    raw_jitter = (torch.stack(frames).diff(dim=0)).abs().mean()
    new_jitter = (torch.stack(smoothed).diff(dim=0)).abs().mean()
    assert new_jitter < 0.6 * raw_jitter


def test_hard_ids_takes_the_strongest_mask_above_half() -> None:
    m = torch.tensor([[[0.9, 0.6, 0.3]], [[0.2, 0.7, 0.4]]])
    assert hard_ids(m, (3, 7)).tolist() == [[3, 7, 0]]
    assert hard_ids(m[:0], ()).tolist() == [[0, 0, 0]]


def test_box_limited_mask_ops_equal_the_whole_frame_computation() -> None:
    """Warping, feathering and IoU work on the box around the masks: the results equal
    the whole-frame computation, for masks in the middle, at the frame's border, and for
    a flow that carries a mask far (more than the mask's size)."""
    from vidstyle.flow.warp import warp

    h, w = 70, 90
    m = torch.zeros(3, h, w)
    m[0, 20:40, 30:45] = 0.8
    m[1, 0:15, 75:90] = 1.0  # touches the top and right border
    m[2, 55:70, 0:10] = 0.6
    g = torch.Generator().manual_seed(0)
    flow = torch.randn(1, 2, h, w, generator=g) * 2.0
    flow[:, 0, 30:60, 40:80] = -25.0  # pulls mask 0 far to the right
    ref = warp(m.unsqueeze(1), flow, padding="border").squeeze(1).clamp(0, 1)
    assert torch.allclose(warp_masks(m, flow), ref, atol=1e-6)
    assert float(warp_masks(m, flow)[0, 30:40, 55:70].max()) > 0.5  # it did move far
    # feathering a mask in a larger frame = feathering it in a small one, then placing it
    small = torch.zeros(1, 30, 30)
    small[0, 10:20, 12:18] = 0.9
    big = torch.zeros(1, 100, 120)
    big[0, 40:50, 52:58] = 0.9  # the same mask, offset by (30, 40)
    fb = feather(big, 4)
    assert torch.equal(fb[0, 30:60, 40:70], feather(small, 4)[0])
    assert float(fb.sum()) == pytest.approx(float(feather(small, 4).sum()))
    b = m.roll(3, dims=2)
    ref_iou = torch.zeros(3, 3)
    for i in range(3):
        for j in range(3):
            a_, b_ = m[i] > 0.5, b[j] > 0.5
            union = (a_ | b_).sum()
            ref_iou[i, j] = (a_ & b_).sum() / union if union else 0.0
    assert torch.allclose(iou_matrix(m, b), ref_iou, atol=1e-6)
