"""Stable person ids across frames, temporal mask smoothing by id, and id-switch counts.

:class:`Tracker` numbers the people a segmenter finds (ids 0) so that a person keeps one
id while visible and gets it back after a short occlusion:

1. people seen in the previous frame: their masks are warped onto this frame by the
   pair's backward flow and matched one-to-one to this frame's masks by mask IoU
   (Hungarian, :func:`scipy.optimize.linear_sum_assignment`), pairs below
   ``iou_threshold`` refused;
2. the rest (people missing for up to ``max_gap_frames`` frames, and those left over
   from step 1): matched by box IoU against their last box moved on at their last
   speed (box centre, pixels per frame), or the last box as it was (someone who
   stopped), the better of the two, pairs below ``reid_iou_threshold`` refused;
3. anyone left is new and gets the next free id (one more than the largest id ever given,
   so an id is never reused); new people of one frame are numbered left to right by box
   centre x, so the first frame with people numbers them 1, 2, ... from the left.

Everything is pure and deterministic (no I/O, no randomness). Shapes: masks (N, H, W) in
[0, 1]; boxes (N, 4) pixels (x0, y0, x1, y1); flows (1, 2, h, w) in pixels.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment

from vidstyle.contracts import FramePair, Instances
from vidstyle.segment.ops import (
    SMOOTH_STRENGTH,
    SMOOTH_TOLERANCE,
    box_iou,
    iou_matrix,
    smooth_masks,
    support_box,
    warp_masks,
)

#: How long a person may stay hidden and still get their id back.
DEFAULT_GAP_SECONDS = 3.0


def gap_frames(fps: float, seconds: float = DEFAULT_GAP_SECONDS) -> int:
    """``seconds`` of video at ``fps`` frames per second, in whole frames (>= 1); for
    :class:`Tracker`'s ``max_gap_frames``. An unknown fps (0, NaN) counts as 25."""
    if not math.isfinite(fps) or fps <= 0:
        fps = 25.0
    return max(1, round(fps * seconds))


@dataclass
class _Track:
    id: int
    mask: torch.Tensor  # (H, W) the last mask seen
    box: torch.Tensor  # (4,) the last box seen
    last_seen: int  # frame index of that mask
    velocity: tuple[float, float] | None = None  # box centre, pixels per frame

    def predicted_box(self, frame: int) -> torch.Tensor:
        """The last box moved on at the last speed to ``frame``."""
        if self.velocity is None:
            return self.box
        dt = frame - self.last_seen
        vx, vy = self.velocity
        return self.box + torch.tensor([vx, vy, vx, vy], dtype=self.box.dtype) * dt


def _centre(box: torch.Tensor) -> tuple[float, float]:
    return float(box[0] + box[2]) / 2.0, float(box[1] + box[3]) / 2.0


def _assign(score: np.ndarray, threshold: float) -> list[tuple[int, int]]:
    """One-to-one (row, col) pairs maximizing the total score, each pair >= threshold."""
    if score.size == 0:
        return []
    gated = np.where(score >= threshold, score, 0.0)
    rows, cols = linear_sum_assignment(gated, maximize=True)
    return [(int(r), int(c)) for r, c in zip(rows, cols, strict=True)
            if score[r, c] >= threshold]


class Tracker:
    """Assigns stable ids (>= 1) to the people of consecutive frames (see the module doc).

    iou_threshold: the least mask IoU between a person's warped previous mask and a mask
    of this frame to be the same person. reid_iou_threshold: the least box IoU for a
    person coming back after missed frames. max_gap_frames: how many consecutive frames a
    person may be missing and still get their id back (e.g. :func:`gap_frames` of the
    clip's fps); a track missing longer is forgotten. velocity_smoothing: weight of the
    newest speed measurement in the running average of a person's speed (0..1].

    ``history`` records, per frame index (0-based, one per :meth:`update`), the ids given
    in the order of that frame's instances, so a benchmark can count id switches against
    ground truth (:func:`count_id_switches`).
    """

    def __init__(self, *, iou_threshold: float = 0.3, reid_iou_threshold: float = 0.2,
                 max_gap_frames: int = 75, velocity_smoothing: float = 0.5) -> None:
        if not 0.0 < iou_threshold <= 1.0 or not 0.0 < reid_iou_threshold <= 1.0:
            raise ValueError("iou_threshold and reid_iou_threshold must be in (0, 1]")
        if max_gap_frames < 0:
            raise ValueError(f"max_gap_frames must be >= 0, got {max_gap_frames}")
        if not 0.0 < velocity_smoothing <= 1.0:
            raise ValueError(f"velocity_smoothing must be in (0, 1], got {velocity_smoothing}")
        self.iou_threshold = iou_threshold
        self.reid_iou_threshold = reid_iou_threshold
        self.max_gap_frames = max_gap_frames
        self.velocity_smoothing = velocity_smoothing
        self.history: dict[int, tuple[int, ...]] = {}
        self._tracks: list[_Track] = []
        self._frame = 0
        self._next_id = 1

    @property
    def frame(self) -> int:
        """Index of the frame the next :meth:`update` numbers."""
        return self._frame

    def update(self, instances: Instances, pair: FramePair | None = None) -> Instances:
        """Number this frame's people; returns ``instances`` with ``ids`` filled in.

        instances: the segmenter's result for the next frame, ids all 0 (already numbered
        instances, e.g. a user's mask files, must not be tracked: ValueError). pair: the
        motion from the previous frame to this one (None for the first frame or without a
        flow stage; a pair that crosses a shot cut is not used for warping); its flow is
        resized to the masks' size when they differ.
        """
        if any(i != 0 for i in instances.ids):
            raise ValueError(f"instances are already numbered {instances.ids}: only "
                             "unnumbered (id 0) instances are tracked")
        frame = self._frame
        self._frame += 1
        self._tracks = [t for t in self._tracks
                        if frame - t.last_seen - 1 <= self.max_gap_frames]
        n = len(instances)
        ids = [0] * n
        if n:
            masks = instances.masks.to(torch.float32)
            boxes = instances.boxes.to(torch.float32).reshape(-1, 4)
            matched = self._match(masks, boxes, pair, frame)
            for det, track in matched:
                ids[det] = track.id
                self._observe(track, masks[det], boxes[det], frame)
            new = sorted((i for i in range(n) if ids[i] == 0),
                         key=lambda i: (_centre(boxes[i])[0], _centre(boxes[i])[1], i))
            for det in new:
                ids[det] = self._next_id
                self._tracks.append(_Track(self._next_id, masks[det].clone(),
                                           boxes[det].clone(), frame))
                self._next_id += 1
        self.history[frame] = tuple(ids)
        return dataclasses.replace(instances, ids=tuple(ids))

    def _match(self, masks: torch.Tensor, boxes: torch.Tensor, pair: FramePair | None,
               frame: int) -> list[tuple[int, _Track]]:
        n = masks.shape[0]
        out: list[tuple[int, _Track]] = []
        active = [t for t in self._tracks if t.last_seen == frame - 1]
        if active:
            prev = torch.stack([t.mask for t in active])
            if prev.shape[-2:] != masks.shape[-2:]:
                raise ValueError(f"mask size changed from {tuple(prev.shape[-2:])} to "
                                 f"{tuple(masks.shape[-2:])}")
            if pair is not None and not pair.cut:
                prev = warp_masks(prev, pair.backward)
            score = iou_matrix(masks, prev).numpy()
            out = [(d, active[t]) for d, t in _assign(score, self.iou_threshold)]
        taken = {d for d, _ in out}
        used = {id(t) for _, t in out}
        dets = [d for d in range(n) if d not in taken]
        rest = [t for t in self._tracks if id(t) not in used]
        if dets and rest:
            det_boxes = boxes[dets]
            moved = box_iou(det_boxes, torch.stack([t.predicted_box(frame) for t in rest]))
            still = box_iou(det_boxes, torch.stack([t.box for t in rest]))
            score = torch.maximum(moved, still).numpy()
            out += [(dets[d], rest[t]) for d, t in _assign(score, self.reid_iou_threshold)]
        return out

    def _observe(self, track: _Track, mask: torch.Tensor, box: torch.Tensor,
                 frame: int) -> None:
        (x0, y0), (x1, y1) = _centre(track.box), _centre(box)
        dt = frame - track.last_seen
        v = ((x1 - x0) / dt, (y1 - y0) / dt)
        if track.velocity is not None:
            a = self.velocity_smoothing
            v = (a * v[0] + (1 - a) * track.velocity[0], a * v[1] + (1 - a) * track.velocity[1])
        track.velocity = v
        track.mask = mask.clone()
        track.box = box.clone()
        track.last_seen = frame


def smooth_instances(current: Instances, previous: Instances | None,
                     pair: FramePair | None, *, strength: float = SMOOTH_STRENGTH,
                     tolerance: float = SMOOTH_TOLERANCE) -> Instances:
    """Temporal smoothing of numbered masks by id (see :func:`vidstyle.segment.ops.smooth_masks`).

    current: this frame's tracked (and feathered) instances. previous: the previous
    frame's result of this function (None for the first frame). pair: the motion between
    them. Each person of ``current`` seen in ``previous`` (same id) is blended with their
    previous mask warped by ``pair.backward``, weighted by ``pair.mask`` (the flow's
    consistency); new people, a missing pair and a shot cut keep the current masks.
    Returns ``current`` with smoothed masks (same ids, boxes, scores).
    """
    if previous is None or pair is None or pair.cut or not len(current) or not len(previous):
        return current
    common = [(i, previous.ids.index(k)) for i, k in enumerate(current.ids)
              if k in previous.ids]
    if not common:
        return current
    size = current.size
    if previous.size != size:
        raise ValueError(f"mask size changed from {previous.size} to {size}")
    rows = [i for i, _ in common]
    prev = warp_masks(previous.masks[[j for _, j in common]], pair.backward)
    reliable = pair.mask.to(torch.float32)
    if tuple(reliable.shape[-2:]) != size:
        reliable = F.interpolate(reliable, size=size, mode="bilinear", align_corners=False)
    masks = current.masks.to(torch.float32).clone()
    # the blend lies between its inputs: 0 where both are 0, so only their box changes
    box = support_box(torch.cat([masks[rows] > 0, prev > 0]), 0)
    if box is None:
        return dataclasses.replace(current, masks=masks)
    y0, x0, y1, x1 = box
    masks[rows, y0:y1, x0:x1] = smooth_masks(
        masks[rows, y0:y1, x0:x1], prev[:, y0:y1, x0:x1], strength=strength,
        tolerance=tolerance, reliable=reliable[0, 0, y0:y1, x0:x1])
    return dataclasses.replace(current, masks=masks)


def match_to_ground_truth(pred: Instances, gt_masks: torch.Tensor, gt_ids: Sequence[int], *,
                          threshold: float = 0.5) -> dict[int, int]:
    """One frame's ground-truth people matched one-to-one to predicted people.

    pred: numbered instances; gt_masks: (G, H, W) ground-truth masks; gt_ids: their G ids.
    Returns {ground-truth id: predicted id} for pairs with mask IoU >= ``threshold``.
    """
    if len(gt_ids) != gt_masks.shape[0]:
        raise ValueError(f"{gt_masks.shape[0]} ground-truth masks but {len(gt_ids)} ids")
    if not len(pred) or not len(gt_ids):
        return {}
    score = iou_matrix(gt_masks, pred.masks).numpy()
    return {int(gt_ids[g]): int(pred.ids[p]) for g, p in _assign(score, threshold)}


def count_id_switches(frames: Iterable[Mapping[int, int]]) -> int:
    """Id switches over a clip (the CLEAR-MOT count).

    frames: per frame in order, {ground-truth id: predicted id} of the matched people
    (:func:`match_to_ground_truth`). A switch is a ground-truth person matched to a
    different predicted id than at their previous match (frames where they are unmatched
    are skipped).
    """
    last: dict[int, int] = {}
    switches = 0
    for matches in frames:
        for gt, pred in matches.items():
            if gt in last and last[gt] != pred:
                switches += 1
            last[gt] = pred
    return switches


__all__ = [
    "DEFAULT_GAP_SECONDS",
    "Tracker",
    "count_id_switches",
    "gap_frames",
    "match_to_ground_truth",
    "smooth_instances",
]
