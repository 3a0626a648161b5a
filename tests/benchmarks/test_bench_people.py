"""The pure parts of benchmarks/bench_people.py: the region-restricted warping error,
the fragmentation proxy and the by-eye ground-truth check."""

from __future__ import annotations

import math

import pytest
import torch

from benchmarks.bench_people import (
    box_masks,
    crop_box,
    fragmentations,
    ground_truth_check,
    regions_of,
    tracks_of,
    warp_errors,
)
from tests.flow._clips import smooth_texture
from vidstyle.contracts import Instances
from vidstyle.evaluate import warp_error
from vidstyle.flow import make_flow


@pytest.fixture(autouse=True)
def _one_torch_thread(one_torch_thread):
    yield


def _people(boxes: list[tuple[int, int, int, int]], ids: list[int],
            size: tuple[int, int] = (60, 80)) -> Instances:
    masks = box_masks(boxes, size)
    return Instances(masks=masks, boxes=torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
                     scores=torch.ones(len(ids)), ids=tuple(ids))


def test_whole_frame_region_is_the_evaluate_warp_error():
    """Without a region the benchmark's computation is vidstyle.evaluate.warp_error's."""
    src = [smooth_texture(48, 64, seed=s) for s in (3, 3, 3)]
    src[1] = torch.roll(src[0], shifts=2, dims=-1)
    src[2] = torch.roll(src[0], shifts=4, dims=-1)
    g = torch.Generator().manual_seed(0)
    styl = [(s + 0.1 * torch.rand(s.shape, generator=g)).clamp(0, 1) for s in src]
    flow = make_flow("dis")
    ours = warp_errors({"x": styl}, src, lambda t: {}, flow)["x"]["frame"]
    ref = warp_error(styl, src, flow=flow)
    assert ours["mean"] == pytest.approx(ref.mean, rel=1e-5)
    assert ref.mean > 1e-4


def test_region_error_sees_flicker_only_where_it_is():
    """A still clip whose stylization flickers only inside a box: the error inside the box
    is large, outside it zero; a region with no pixel gives NaN, not 0."""
    src = [smooth_texture(48, 64, seed=5)] * 3
    styl = [s.clone() for s in src]
    styl[1][..., 10:30, 20:40] += 0.3
    box = torch.zeros(48, 64, dtype=torch.bool)
    box[10:30, 20:40] = True
    empty = torch.zeros(48, 64, dtype=torch.bool)
    res = warp_errors({"x": styl}, src,
                      lambda t: {"box": box, "outside": ~box, "empty": empty},
                      make_flow("dis"))["x"]
    assert res["box"]["mean"] == pytest.approx(0.09, rel=0.02)
    assert res["outside"]["mean"] < 1e-6
    assert math.isnan(res["empty"]["mean"])


def test_regions_share_pixels_of_both_runs():
    """Bands cover the edges of either run's masks; people and background exclude them."""
    a = box_masks([(10, 10, 30, 50)], (60, 80))
    b = box_masks([(14, 10, 34, 50)], (60, 80))
    r = regions_of([a, b], (2, 4))
    assert r["band 2"][30, 12] and r["band 2"][30, 32]  # a's left edge, b's right edge
    assert not r["band 4"][30, 22] and r["people"][30, 22]
    assert not (r["people"] & r["band 2"]).any() and not (r["background"] & r["band 4"]).any()
    assert r["background"][5, 70] and not r["background"][30, 22]


def test_fragmentation_is_an_ended_track_renumbered_nearby():
    """A track that ends, then a new id starting soon over its last box: one
    fragmentation; a new id far away, one starting too late, and a track ending at the
    clip's end are not."""
    spans = [  # id, first frame, last frame, box at frame t
        (1, 0, 5, lambda t: (10 + t, 10, 30 + t, 50)),
        (2, 8, 39, lambda t: (17 + t, 10, 37 + t, 50)),  # 1 renumbered
        (3, 7, 20, lambda t: (60, 5, 75, 40)),  # someone else, far away
        (4, 35, 39, lambda t: (58, 6, 74, 40)),  # 3's place, 15 frames later
    ]
    frames = []
    for t in range(40):
        here = [(pid, box(t)) for pid, first, last, box in spans if first <= t <= last]
        frames.append(_people([b for _, b in here], [pid for pid, _ in here], size=(60, 120)))
    tracks = tracks_of(frames)
    assert tracks[1]["last"] == 5 and tracks[2]["first"] == 8
    frag = fragmentations(tracks, len(frames), gap=10)
    assert [(f["ended"], f["new"], f["gap"]) for f in frag] == [(1, 2, 3)]


def test_ground_truth_check_counts_a_switch():
    """Person A keeps id 5 then gets id 7: one switch; B is found; C has no prediction."""
    gt = {0: {"A": (10, 10, 30, 50), "B": (50, 10, 70, 50)},
          10: {"A": (12, 10, 32, 50), "B": (50, 10, 70, 50), "C": (0, 0, 8, 8)},
          20: {"A": (14, 10, 34, 50)}}
    people = [_people([(10, 10, 30, 50), (50, 10, 70, 50)], [5, 6])] * 10
    people += [_people([(12, 10, 32, 50), (50, 11, 70, 50)], [5, 6])] * 10
    people += [_people([(15, 10, 35, 50)], [7])]
    res = ground_truth_check(people, gt, threshold=0.5)
    assert res["switches"] == 1
    assert res["ids_of"] == {"A": [5, 5, 7], "B": [6, 6]}
    assert (res["found"], res["people"]) == (5, 6)


def test_box_masks_and_crop_box_stay_in_the_frame():
    m = box_masks([(-5, 50, 10, 70)], (60, 80))
    assert m.shape == (1, 60, 80) and m.sum() == 10 * 10
    people = _people([(70, 40, 80, 60)], [2])
    x0, y0, x1, y1 = crop_box([people], [2], (60, 80), pad=8)
    assert 0 <= x0 < x1 <= 80 and 0 <= y0 < y1 <= 60
    assert (x1 - x0) / (y1 - y0) == pytest.approx(4 / 3, abs=0.05)
    assert crop_box([people], [9], (60, 80)) == (0, 0, 80, 60)
