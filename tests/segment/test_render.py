"""The coloured, numbered preview of the people in a frame."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from vidstyle.contracts import Instances
from vidstyle.segment.ops import mask_boxes
from vidstyle.segment.render import OPACITY, PALETTE, id_colour, overlay, write_overlay

H, W = 180, 320
GREY = 100


def _people(ids: tuple[int, ...], size: tuple[int, int] = (H, W)) -> Instances:
    h, w = size
    masks = torch.zeros(len(ids), h, w)
    for k in range(len(ids)):
        x0 = (w // 8) + k * (w // 2)
        masks[k, h // 6: h - h // 6, x0: x0 + w // 4] = 1.0
    return Instances(masks=masks, boxes=mask_boxes(masks), scores=torch.ones(len(ids)),
                     ids=ids)


def _frame() -> np.ndarray:
    return np.full((H, W, 3), GREY, np.uint8)


def test_overlay_tints_outlines_and_leaves_the_rest() -> None:
    frame = _frame()
    people = _people((1, 2))
    out = overlay(frame, people)
    assert out.shape == frame.shape and out.dtype == np.uint8
    assert np.array_equal(frame, _frame())  # input untouched
    far = (torch.nn.functional.max_pool2d(people.masks[None], 9, 1, 4)[0] == 0).all(0).numpy()
    assert np.array_equal(out[far], frame[far])  # outside every person (and outline)
    # inside person 1, away from the label: the photo blended with id 1's colour
    expect = np.round((1 - OPACITY) * GREY + OPACITY * np.array(id_colour(1))).astype(int)
    assert np.abs(out[H // 6 + 5, W // 8 + 5].astype(int) - expect).max() <= 1
    assert id_colour(1) != id_colour(2) and id_colour(1) == PALETTE[0]
    # the outline is drawn in the colour, on the mask's edge
    edge = out[H // 2, W // 8 - 2: W // 8 + 2].astype(int)
    assert (np.abs(edge - np.array(id_colour(1))).sum(axis=1) < 60).any()


def _label_width(out: np.ndarray, colour_white: bool = True) -> int:
    text = (out == (255 if colour_white else 0)).all(axis=2)
    cols = np.nonzero(text.any(axis=0))[0]
    return int(cols.max() - cols.min() + 1) if cols.size else 0


def test_the_id_number_is_written_on_the_person() -> None:
    frame = _frame()
    one = overlay(frame, _people((1,)))
    twelve = overlay(frame, _people((13,)))  # id 13 has id 1's colour again
    assert id_colour(13) == id_colour(1)
    w1, w12 = _label_width(one), _label_width(twelve)
    assert w1 > 0 and w12 > 1.5 * w1  # "13" is written, twice as wide as "1"
    ys, xs = np.nonzero((one > 200).all(axis=2))
    box = _people((1,)).boxes[0]
    assert box[0] <= xs.min() and xs.max() < box[2] and box[1] <= ys.min() and ys.max() < box[3]
    assert ys.max() - ys.min() + 1 >= 10  # readable: digits at least 10 px tall


def test_overlay_resizes_masks_and_passes_no_people_through(tmp_path: Path) -> None:
    frame = _frame()
    small = _people((1, 2), (H // 2, W // 2))
    out = overlay(frame, small)
    assert not np.array_equal(out, frame)
    assert np.array_equal(out[:, :10], frame[:, :10])
    assert np.array_equal(overlay(frame, _people(())), frame)
    path = write_overlay(tmp_path / "frame_000000_overlay.png", frame, small)
    assert np.array_equal(np.asarray(Image.open(path)), out)
    with pytest.raises(ValueError, match="uint8"):
        overlay(frame.astype(np.float32), small)
