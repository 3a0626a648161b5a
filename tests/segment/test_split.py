"""Splitting a whole-frame matte into people (pure numpy, synthetic masks)."""

from __future__ import annotations

import numpy as np

from vidstyle.segment.split import (
    SplitParams,
    box_claims,
    box_fill,
    match_boxes,
    people_from_matte,
    split_matte,
)


def _rect(h: int, w: int, x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
    m = np.zeros((h, w), np.float32)
    m[y0:y1, x0:x1] = 1.0
    return m


def test_two_separate_people_each_get_their_own_matte() -> None:
    a, b = _rect(60, 100, 10, 10, 30, 50), _rect(60, 100, 60, 5, 90, 55)
    matte = np.maximum(a, b) * 0.9
    masks = split_matte(matte, np.array([[8, 8, 32, 52], [58, 3, 92, 57]]))
    assert masks.shape == (2, 60, 100) and masks.dtype == np.float32
    np.testing.assert_allclose(masks[0], a * 0.9, atol=1e-6)
    np.testing.assert_allclose(masks[1], b * 0.9, atol=1e-6)


def test_matte_outside_every_box_belongs_to_nobody() -> None:
    matte = np.ones((40, 40), np.float32)
    masks = split_matte(matte, np.array([[0, 0, 10, 10]]), margin=0.0)
    assert masks[0, :10, :10].min() == 1.0 and masks[0].sum() == 100


def test_contested_pixels_go_to_the_nearer_centre() -> None:
    matte = np.ones((50, 100), np.float32)
    boxes = np.array([[0, 0, 60, 50], [40, 0, 100, 50]])  # overlap on x in [40, 60)
    masks = split_matte(matte, boxes, power=8.0)
    np.testing.assert_allclose(masks.sum(0), 1.0, atol=1e-5)  # shared, nothing lost
    assert masks[0, 25, 42] > 0.9 and masks[1, 25, 57] > 0.9
    np.testing.assert_allclose(masks[0, 25, 49], masks[1, 25, 50], atol=1e-6)  # mirror pixels


def test_box_claims_peak_at_the_centre_and_stop_past_the_margin() -> None:
    c = box_claims(np.array([[10, 10, 30, 50]]), (60, 60), sigma=0.5, margin=0.1)[0]
    assert c[30, 20] == c.max() and c[30, 20] > 0.99
    assert c[30, 32] == 0 and c[30, 31] > 0 and c[30, 8] > 0 and c[30, 7] == 0  # 2 px margin
    assert c[6, 20] > 0 and c[5, 20] == 0  # 0.1 x 40 px = 4 px


def test_box_fill_and_empty_boxes_are_dropped() -> None:
    matte = _rect(50, 50, 0, 0, 20, 50)
    boxes = np.array([[0, 0, 20, 50], [30, 0, 50, 50]])
    np.testing.assert_allclose(box_fill(matte, boxes), [1.0, 0.0])
    masks, out_boxes, box_index, mask_index = people_from_matte(matte, boxes)
    assert len(masks) == 1 and box_index.tolist() == [0] and mask_index.tolist() == [-1]
    np.testing.assert_allclose(out_boxes, boxes[:1])


def test_match_boxes_is_one_to_one_by_best_iou() -> None:
    a = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [50, 50, 60, 60]])
    b = np.array([[1, 0, 11, 10], [100, 100, 110, 110]])
    assert match_boxes(a, b, 0.5) == [(1, 0)]


def test_a_masked_person_steers_contested_pixels_and_unmatched_ones_are_added() -> None:
    h, w = 40, 100
    matte = _rect(h, w, 0, 0, 100, 40)
    boxes = np.array([[0, 0, 60, 40], [40, 0, 100, 40]], np.float64)
    # person A's own mask says it covers x < 55 (more than half the overlap)
    own_a = _rect(h, w, 0, 0, 55, 40)
    # a third person (own mask, no box) at the right edge
    own_c = _rect(h, w, 92, 0, 100, 40)
    masks, out_boxes, box_index, mask_index = people_from_matte(
        matte, boxes, masks=np.stack([own_a, own_c]),
        mask_boxes=np.array([[0, 0, 55, 40], [92, 0, 100, 40]]),
        params=SplitParams(mask_weight=0.5))
    assert box_index.tolist() == [0, 1, -1] and mask_index.tolist() == [0, -1, 1]
    without, *_ = people_from_matte(matte, boxes)
    # at x = 52 the box claims alone favour B; A's mask moves the pixel to A
    assert without[1, 20, 52] > without[0, 20, 52]
    assert masks[0, 20, 52] > masks[1, 20, 52]
    # the unmatched person keeps its own mask and takes its pixels from the others
    assert masks[2, :, 92:].min() == 1.0 and masks[1, :, 95:].max() < 0.5
    np.testing.assert_allclose(out_boxes[2], [92, 0, 100, 40])


def test_no_boxes_no_people() -> None:
    masks, boxes, box_index, mask_index = people_from_matte(np.ones((8, 8)), np.zeros((0, 4)))
    assert masks.shape == (0, 8, 8) and boxes.shape == (0, 4) and len(box_index) == 0
