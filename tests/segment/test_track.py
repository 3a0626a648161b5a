"""Tracker: stable ids through motion, a crossing and an occlusion; smoothing by id;
id-switch counting."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from vidstyle.contracts import FramePair, Instances
from vidstyle.segment.ops import mask_boxes
from vidstyle.segment.track import (
    Tracker,
    count_id_switches,
    gap_frames,
    match_to_ground_truth,
    smooth_instances,
)

H, W = 100, 260
YY, XX = torch.meshgrid(torch.arange(H, dtype=torch.float32),
                        torch.arange(W, dtype=torch.float32), indexing="ij")


def _disc(cx: float, cy: float, r: float = 14.0) -> torch.Tensor:
    return (((XX - cx) ** 2 + (YY - cy) ** 2) <= r * r).to(torch.float32)


def _instances(masks: list[torch.Tensor]) -> Instances:
    m = torch.stack(masks) if masks else torch.zeros(0, H, W)
    return Instances(masks=m, boxes=mask_boxes(m), scores=torch.ones(len(masks)),
                     ids=(0,) * len(masks))


def _pair(masks: list[torch.Tensor], velocities: list[tuple[float, float]]) -> FramePair:
    """The true motion: each visible person's pixels came from -velocity away."""
    back = torch.zeros(1, 2, H, W)
    for m, (vx, vy) in zip(masks, velocities, strict=True):
        back[0, 0][m > 0.5] = -vx
        back[0, 1][m > 0.5] = -vy
    return FramePair(forward=-back, backward=back, mask=torch.ones(1, 1, H, W), score=1.0,
                     cut=False)


def _scene(t: int) -> list[tuple[int, torch.Tensor, tuple[float, float]]]:
    """Ground truth of frame t: (true id, visible mask, velocity) of each visible person.

    Person 1 walks right from x=40 and person 2 left from x=200, crossing at t=20 with
    person 1 in front (person 2 is hidden by it near the crossing); person 1 is hidden
    (the detector misses it) in frames 30..39 and comes back at 40; person 3 appears
    from frame 34 on.
    """
    out = []
    a = _disc(40 + 4 * t, 50)
    b = _disc(200 - 4 * t, 56) * (1 - a)
    if not 30 <= t < 40:
        out.append((1, a, (4.0, 0.0)))
    if b.sum() > 300:  # the detector misses a mostly hidden person
        out.append((2, b, (-4.0, 0.0)))
    if t >= 34:
        out.append((3, _disc(120 + 1 * (t - 34), 80, 10), (1.0, 0.0)))
    return out


N_FRAMES = 44


@pytest.mark.parametrize("with_flow", [True, False])
def test_ids_survive_a_crossing_and_a_ten_frame_occlusion(with_flow: bool) -> None:
    tracker = Tracker(max_gap_frames=12)
    g = torch.Generator().manual_seed(0)
    matches = []
    seen_2_hidden = False
    for t in range(N_FRAMES):
        scene = _scene(t)
        order = torch.randperm(len(scene), generator=g).tolist()  # detector order
        scene = [scene[i] for i in order]
        masks = [m for _, m, _ in scene]
        pair = _pair(masks, [v for _, _, v in scene]) if with_flow and t else None
        out = tracker.update(_instances(masks), pair)
        truth = tuple(i for i, _, _ in scene)
        assert out.ids == truth, f"frame {t}: ids {out.ids}, truth {truth}"
        assert torch.equal(out.masks, torch.stack(masks))  # only ids change
        seen_2_hidden |= 2 not in truth and t > 0
        matches.append(match_to_ground_truth(out, torch.stack(masks), truth))
    assert seen_2_hidden  # the crossing really hid person 2 for a while
    assert count_id_switches(matches) == 0
    assert tracker.history[0] == out_first_ids()
    assert len(tracker.history) == N_FRAMES


def out_first_ids() -> tuple[int, ...]:
    """Frame 0 of the scene in the detector order of seed 0."""
    g = torch.Generator().manual_seed(0)
    order = torch.randperm(len(_scene(0)), generator=g).tolist()
    return tuple(_scene(0)[i][0] for i in order)


def test_first_people_are_numbered_left_to_right_after_empty_frames() -> None:
    tracker = Tracker()
    assert tracker.update(_instances([])).ids == ()
    right, left, middle = _disc(220, 50), _disc(30, 50), _disc(120, 30)
    out = tracker.update(_instances([right, left, middle]))
    assert out.ids == (3, 1, 2)
    assert tracker.history == {0: (), 1: (3, 1, 2)}


def test_a_new_person_gets_the_next_free_id_and_ids_are_never_reused() -> None:
    tracker = Tracker(max_gap_frames=2)
    assert tracker.update(_instances([_disc(40, 50), _disc(200, 50)])).ids == (1, 2)
    assert tracker.update(_instances([_disc(40, 50)])).ids == (1,)
    for _ in range(3):  # person 2 gone longer than max_gap_frames: forgotten
        tracker.update(_instances([_disc(40, 50)]))
    out = tracker.update(_instances([_disc(200, 50), _disc(40, 50), _disc(120, 20)]))
    assert out.ids == (4, 1, 3)  # new people left to right: 120 -> 3, 200 -> 4


def test_a_person_back_within_the_gap_gets_their_id() -> None:
    tracker = Tracker(max_gap_frames=3)
    tracker.update(_instances([_disc(40, 50), _disc(200, 50)]))
    for _ in range(3):
        tracker.update(_instances([_disc(40, 50)]))
    assert tracker.update(_instances([_disc(200, 50), _disc(40, 50)])).ids == (2, 1)


def test_numbered_instances_are_refused() -> None:
    inst = dataclasses.replace(_instances([_disc(40, 50)]), ids=(5,))
    with pytest.raises(ValueError, match="already numbered"):
        Tracker().update(inst)


def test_gap_frames_from_fps() -> None:
    assert gap_frames(25.0) == 75
    assert gap_frames(10.0, 2.0) == 20
    assert gap_frames(float("nan")) == 75
    assert gap_frames(0.1, 1.0) == 1


def test_count_id_switches() -> None:
    frames = [{1: 1, 2: 2}, {1: 2, 2: 1}, {1: 2}, {2: 1, 1: 2}, {1: 1}]
    # frame 1: both switch (2); frame 4: person 1 goes back to 1 (1)
    assert count_id_switches(frames) == 3
    assert count_id_switches([]) == 0


def test_smooth_instances_blends_by_id_and_keeps_new_people() -> None:
    still = _disc(60, 50)
    prev_masks = torch.stack([still * 0.9, _disc(200, 50)])
    prev = Instances(masks=prev_masks, boxes=mask_boxes(prev_masks), scores=torch.ones(2),
                     ids=(1, 2))
    cur_masks = torch.stack([_disc(120, 50), still])  # person 3 (new), person 1
    cur = Instances(masks=cur_masks, boxes=mask_boxes(cur_masks), scores=torch.ones(2),
                    ids=(3, 1))
    pair = _pair([], [])
    out = smooth_instances(cur, prev, pair, strength=0.5, tolerance=0.5)
    assert out.ids == (3, 1)
    assert torch.equal(out.masks[0], cur_masks[0])  # new person: unchanged
    inside = still > 0.5
    # person 1: 1.0 now, 0.9 before -> w = 0.5 * (1 - 0.1 / 0.5) = 0.4 -> 0.96
    assert torch.allclose(out.masks[1][inside], torch.full((int(inside.sum()),), 0.96))
    assert out.masks[1][~inside].abs().max() < 1e-5
    cut = dataclasses.replace(pair, cut=True)
    assert smooth_instances(cur, prev, cut) is cur
    assert smooth_instances(cur, None, pair) is cur
