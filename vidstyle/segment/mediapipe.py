"""The offline default person segmenter: MediaPipe's pose detector finds people, and its
pose landmark model segments each one (both TFLite models, run with ``ai-edge-litert``).

Pipeline for one frame (1, 3, H, W) float32 RGB in [0, 1]:

1. **Detect** with ``pose_detection.tflite`` (224x224, letterboxed, input in [-1, 1]) on
   the whole frame and on overlapping square tiles (sides ``tiles`` x the frame's long
   side, ``tile_overlap`` apart): the detector was trained on people that fill much of its
   input, so small people are only found in tiles. Outputs are decoded exactly as
   MediaPipe's ``pose_detection_cpu`` graph does: 2254 SSD anchors (strides 8, 16, 32, 32,
   32, two anchors per cell and layer, fixed size), boxes and 4 keypoints scaled by 224
   around the anchor centres (x first), scores by a sigmoid of the clipped logits.
2. **Merge**: within one run, MediaPipe's weighted non-maximum suppression on the
   detector's box (the person's face or head); across runs, whose boxes differ in size
   for one person, the best-scored of each group whose box centres nearly coincide
   (:func:`same_person`).
3. **Crop** each person: keypoint 0 (hip centre) is the centre and twice its distance to
   keypoint 1 the side, rotated so the body points up, enlarged by ``roi_scale`` (1.25 in
   MediaPipe's ``pose_detection_to_roi``); the frame is sampled into a 256x256 crop.
4. **Segment** with ``pose_landmark_full.tflite`` (input in [0, 1]): a presence score, 39
   landmarks (33 body points, then hip centre and size point) and a 256x256 mask (logits).
   With ``refine`` the crop is rebuilt once from the model's own hip-centre and size
   landmarks (as MediaPipe's tracking does) and the model run again. In a crowd the
   model may lock on a neighbour in the crop: a pass whose nose lands on another
   detected face (and not on this one) is not used; the first crop is then retried
   from the same person's detections in other tiles. People whose presence is under
   ``min_presence`` are dropped.
5. **Paste** each mask back to full resolution by the crop's inverse affine map, drop
   duplicates (one person found twice: nose, shoulders and hips within ``dedup_dist`` x
   the crop side), and share pixels claimed by several people: mask i becomes
   m_i * m_i^p / sum_j m_j^p (p = ``overlap_power``), so the strongest person takes a
   contested pixel and the masks of a frame sum to at most 1.

In a video (:meth:`MediaPipeSegmenter.segment_next`, as MediaPipe's own video mode) the
tiled detection runs only on key frames (the first, then every ``detect_every``-th); in
between each person is *followed*: one landmark run in the crop predicted from their
landmarks of the previous frame (hip centre and size points, step 3 without the
detector). A person who is lost (presence, or merged into a neighbour) is searched for
at once in the whole frame and the tile of each size nearest their crop; people who
enter are found at the next key frame. The state handed from frame to frame
(:class:`~vidstyle.segment.base.SegmentState`: crops, scores, last key frame) is cached
with each frame's masks, so a resumed run goes on exactly as an uninterrupted one.

Face boxes (for ``--detail``) come from landmarks 0-10 (nose, eyes, ears, mouth): a
square around them; NaN where they are not visible.

Cost (2 CPU threads): one detector run per tile (about 11 ms; with the defaults 23 runs
for 16:9 frames, 33 for 4:3) plus one or two landmark runs per person (about 21 ms
each), so 0.4-1 s per frame for :meth:`~MediaPipeSegmenter.segment`; followed frames of
a video cost one landmark run per person; ``tiles=()`` (whole frame only) costs one detector run but
finds only people who fill much of the frame. Quality on COCO photos: ``benchmarks/bench_masks.py``.
Nothing is read from disk before :meth:`MediaPipeSegmenter.check` or the first
:meth:`~MediaPipeSegmenter.segment`.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from vidstyle.contracts import Instances
from vidstyle.errors import UsageError, WeightsError
from vidstyle.segment.base import SegmentState
from vidstyle.segment.models import MediaPipeModels, locate_mediapipe_models
from vidstyle.segment.ops import support_box

log = logging.getLogger(__name__)

DETECTOR_SIZE = 224
LANDMARK_SIZE = 256
NUM_ANCHORS = 2254
NUM_LANDMARKS = 39
#: Landmarks 0-10 are the face: nose, eyes (inner, centre, outer), ears, mouth corners.
FACE_LANDMARKS = slice(0, 11)
#: Auxiliary landmarks the model predicts for the next crop: hip centre, size point.
AUX_CENTER, AUX_SCALE = 33, 34
#: Other detections of the same person tried when the first crop looks at a neighbour.
ALTERNATIVES = 2
#: In a video, the full detection runs every this many frames (see ``segment_next``).
DETECT_EVERY = 10


# --------------------------------------------------------------------------- anchors


def ssd_anchors(
    *,
    input_size: int = DETECTOR_SIZE,
    strides: tuple[int, ...] = (8, 16, 32, 32, 32),
) -> np.ndarray:
    """Anchor centres (A, 2) in [0, 1] (x, y) of MediaPipe's ``SsdAnchorsCalculator`` with
    the options of ``pose_detection_cpu``: one aspect ratio (1.0) plus the interpolated
    scale, so two anchors per layer and cell; consecutive layers of equal stride share one
    grid; anchor offset 0.5; fixed anchor size (width = height = 1, so only centres
    matter). Order: layer group, then row, then column, then anchor.
    """
    out: list[np.ndarray] = []
    layer = 0
    while layer < len(strides):
        last = layer
        while last < len(strides) and strides[last] == strides[layer]:
            last += 1
        per_cell = 2 * (last - layer)
        n = math.ceil(input_size / strides[layer])
        ys, xs = np.meshgrid((np.arange(n) + 0.5) / n, (np.arange(n) + 0.5) / n, indexing="ij")
        grid = np.stack([xs.ravel(), ys.ravel()], axis=1)
        out.append(np.repeat(grid, per_cell, axis=0))
        layer = last
    return np.concatenate(out).astype(np.float32)


@dataclass(frozen=True)
class Detection:
    """One person found by the detector, in frame pixels.

    box: (4,) x0, y0, x1, y1 of the detector's box (the face/head); keypoints: (4, 2)
    hip centre, full-body size point, shoulder centre, upper-body size point; score in
    [0, 1].
    """

    box: np.ndarray
    keypoints: np.ndarray
    score: float
    others: tuple[Detection, ...] = ()  # the same person found in other runs, best first


def decode_detections(
    raw_boxes: np.ndarray, raw_scores: np.ndarray, anchors: np.ndarray, *, min_score: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Decode the detector's outputs as MediaPipe's ``TensorsToDetectionsCalculator``.

    raw_boxes: (A, 12): x, y, w, h of the box, then 4 keypoints (x, y), in input pixels
    relative to the anchor centre; raw_scores: (A,) logits. Returns, for the anchors whose
    score reaches ``min_score``: boxes (K, 4) x0, y0, x1, y1, keypoints (K, 4, 2) and
    scores (K,), coordinates normalised to the 224x224 input ([0, 1]).
    """
    scores = 1.0 / (1.0 + np.exp(-np.clip(raw_scores.astype(np.float64), -100.0, 100.0)))
    keep = np.nonzero(scores >= min_score)[0]
    r = raw_boxes[keep] / DETECTOR_SIZE
    a = anchors[keep]
    cx, cy = r[:, 0] + a[:, 0], r[:, 1] + a[:, 1]
    w, h = r[:, 2], r[:, 3]
    boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)
    kps = r[:, 4:12].reshape(-1, 4, 2) + a[:, None, :]
    return boxes, kps, scores[keep]


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of boxes a (N, 4) against b (M, 4) -> (N, M); boxes x0, y0, x1, y1."""
    x0 = np.maximum(a[:, None, 0], b[None, :, 0])
    y0 = np.maximum(a[:, None, 1], b[None, :, 1])
    x1 = np.minimum(a[:, None, 2], b[None, :, 2])
    y1 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-9)


def weighted_nms(dets: list[Detection], *, iou: float) -> list[Detection]:
    """MediaPipe's WEIGHTED non-maximum suppression: the best remaining detection and
    every other one whose box overlaps it by IoU > ``iou`` become one detection, whose
    box and keypoints are the score-weighted means and whose score is the best one."""
    if not dets:
        return []
    order = sorted(range(len(dets)), key=lambda i: -dets[i].score)
    boxes = np.stack([d.box for d in dets])
    overlaps = box_iou(boxes, boxes)
    left = list(order)
    out: list[Detection] = []
    while left:
        top = left[0]
        cluster = [i for i in left if i == top or overlaps[top, i] > iou]
        left = [i for i in left if i not in cluster]
        w = np.array([dets[i].score for i in cluster], dtype=np.float64)
        w /= w.sum()
        box = sum(wi * dets[i].box for wi, i in zip(w, cluster, strict=True))
        kps = sum(wi * dets[i].keypoints for wi, i in zip(w, cluster, strict=True))
        out.append(Detection(np.asarray(box), np.asarray(kps), dets[top].score))
    return out


def same_person(a: Detection, b: Detection, enlarge: float) -> bool:
    """Whether two detections (of different tiles) are one person: their boxes' centres
    lie within a tenth of the smaller person crop, and the crops' sides differ by less
    than a factor 1.5."""
    ra = roi_from_points(a.keypoints[0], a.keypoints[1], enlarge=enlarge)
    rb = roi_from_points(b.keypoints[0], b.keypoints[1], enlarge=enlarge)
    small, large = sorted((ra.side, rb.side))
    ca, cb = (a.box[:2] + a.box[2:]) / 2, (b.box[:2] + b.box[2:]) / 2
    return bool(np.hypot(*(ca - cb)) < 0.1 * small and large < 1.5 * max(small, 1e-6))


# --------------------------------------------------------------------------- geometry


@dataclass(frozen=True)
class Roi:
    """A rotated square in frame pixels: centre (cx, cy), side, rotation in radians (0 =
    upright; the crop's up direction points along (sin r, -cos r) in the frame)."""

    cx: float
    cy: float
    side: float
    rotation: float

    def crop_to_frame(self, size: int = LANDMARK_SIZE) -> np.ndarray:
        """(2, 3) affine map from crop pixels (0..size) to frame pixels."""
        c, s = math.cos(self.rotation), math.sin(self.rotation)
        k = self.side / size
        a = np.array([[c * k, -s * k], [s * k, c * k]])
        b = np.array([self.cx, self.cy]) - a @ np.array([size / 2, size / 2])
        return np.concatenate([a, b[:, None]], axis=1).astype(np.float64)


def roi_from_points(center: np.ndarray, scale_point: np.ndarray, *, enlarge: float) -> Roi:
    """MediaPipe's ``AlignmentPointsRectsCalculator`` + ``RectTransformationCalculator``:
    a square centred on ``center`` with side 2 |scale_point - center| x ``enlarge``,
    rotated so that ``center -> scale_point`` points up (target angle 90 degrees)."""
    dx, dy = float(scale_point[0] - center[0]), float(scale_point[1] - center[1])
    side = 2.0 * math.hypot(dx, dy) * enlarge
    rotation = math.pi / 2 - math.atan2(-dy, dx)
    rotation = (rotation + math.pi) % (2 * math.pi) - math.pi
    return Roi(float(center[0]), float(center[1]), side, rotation)


def tile_grid(h: int, w: int, fractions: tuple[float, ...], overlap: float) -> list[tuple]:
    """Square tiles (x0, y0, x1, y1) covering an (h, w) frame: the whole frame first, then
    for each fraction f tiles of side f x max(h, w) (clipped to the frame) whose starts are
    at most (1 - overlap) x side apart, the last one flush with the far edge."""
    tiles: list[tuple[int, int, int, int]] = [(0, 0, w, h)]
    for f in fractions:
        side = max(16, round(f * max(h, w)))
        tw, th = min(side, w), min(side, h)
        if (tw, th) == (w, h):
            continue
        step = max(1, round(side * (1.0 - overlap)))

        def starts(total: int, size: int, step: int = step) -> list[int]:
            if size >= total:
                return [0]
            n = math.ceil((total - size) / step)
            return sorted({round(i * (total - size) / n) for i in range(n + 1)})

        for y0 in starts(h, th):
            for x0 in starts(w, tw):
                tiles.append((x0, y0, x0 + tw, y0 + th))
    return list(dict.fromkeys(tiles))


def nearest_tiles(tiles: list[tuple], points: np.ndarray) -> list[tuple]:
    """The first tile of ``tiles`` (the whole frame, see :func:`tile_grid`) and, for each
    point (P, 2) (x, y) and each tile size, the tile whose centre is nearest the point; in
    the order of ``tiles``, each once."""
    chosen = {tiles[0]} if tiles else set()
    sizes = {(t[2] - t[0], t[3] - t[1]) for t in tiles[1:]}
    for x, y in points:
        for size in sizes:
            same = [t for t in tiles[1:] if (t[2] - t[0], t[3] - t[1]) == size]
            chosen.add(min(same, key=lambda t: ((t[0] + t[2]) / 2 - x) ** 2
                           + ((t[1] + t[3]) / 2 - y) ** 2))
    return [t for t in tiles if t in chosen]


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(x, -60.0, 60.0)))


def face_box(points: np.ndarray, visibility: np.ndarray, *, min_visibility: float) -> np.ndarray:
    """A square face box (4,) around face landmarks ``points`` (11, 2) in pixels: side
    1.6 x their largest extent, centre raised by a tenth of the side (the landmarks sit
    below the forehead); NaN when their mean visibility is under ``min_visibility``."""
    if float(np.mean(visibility)) < min_visibility:
        return np.full(4, np.nan, dtype=np.float32)
    lo, hi = points.min(axis=0), points.max(axis=0)
    side = 1.6 * float(max(hi - lo))
    cx, cy = (lo + hi) / 2
    cy -= 0.1 * side
    return np.array([cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2], np.float32)


def share_overlaps(masks: np.ndarray, power: float) -> np.ndarray:
    """Masks (N, H, W) in [0, 1] -> m_i * m_i^p / sum_j m_j^p: a lone mask is unchanged,
    a contested pixel goes mostly to the strongest mask, and the result sums to at most 1
    per pixel (it is at most max_j m_j)."""
    if len(masks) < 2:
        return masks
    # only pixels under two or more masks change (elsewhere m * m^p / m^p = m): share
    # within the box around them (the masks are full frames, people a small part of it)
    contested = np.count_nonzero(masks > 0, axis=0) >= 2
    out = masks.astype(np.float32, copy=True)
    found = support_box(contested[None], 0)
    if found is None:
        return out
    y0, x0, y1, x1 = found
    box = (slice(None), slice(y0, y1), slice(x0, x1))
    m = out[box]
    weights = np.power(m, power)
    total = weights.sum(axis=0)
    out[box] = np.where(total > 0, m * weights / np.maximum(total, 1e-12), 0.0)
    return out


# --------------------------------------------------------------------------- segmenter


@dataclass(frozen=True)
class _Person:
    roi: Roi
    score: float
    presence: float
    mask: np.ndarray  # (H, W) float32 soft mask at frame size
    landmarks: np.ndarray  # (39, 2) frame pixels
    visibility: np.ndarray  # (39,)


class MediaPipeSegmenter:
    """People in a frame from MediaPipe's pose detector and pose landmark model (offline).

    Keyword-only; the constructor touches no disk. ``home``: where the model files are
    (``$VIDSTYLE_HOME`` by default; fetched by ``make setup``); ``allow_download`` lets
    :meth:`check` fetch them (never under ``VIDSTYLE_OFFLINE=1``). ``tiles``: tile sides
    as fractions of the frame's long side, besides the whole frame; ``tile_overlap``: how
    much neighbouring tiles overlap (0..0.9). ``min_score``: detector score to keep a
    detection; ``nms_iou``: IoU above which detections merge; ``min_presence``: the
    landmark model's person presence to keep a person; ``roi_scale``: crop enlargement;
    ``refine``: rebuild each crop once from the model's own landmarks; ``dedup_dist``:
    how close (in crop sides) two skeletons are when they are one person;
    ``overlap_power``: how hard contested pixels go to the strongest mask; ``flip``: also
    detect in mirrored tiles (2x the detector cost; no better on the COCO benchmark);
    ``max_people``: at most this many (best scores first); ``threads``: CPU threads of
    each interpreter; ``detect_every``: in a video (:meth:`segment_next`), the full
    detection runs on every ``detect_every``-th frame (and when a followed person is
    lost), people are followed in between (1: detect on every frame). Defaults were
    chosen by the overall numbers of the benchmarks.

    One instance serializes its :meth:`segment` calls (a lock): interpreters are not
    thread-safe; use one instance per thread for parallel frames.
    """

    name = "mediapipe"

    def __init__(
        self,
        *,
        home: Path | None = None,
        allow_download: bool = False,
        tiles: tuple[float, ...] = (0.6, 0.4),
        tile_overlap: float = 0.67,
        min_score: float = 0.5,
        nms_iou: float = 0.3,
        min_presence: float = 0.5,
        roi_scale: float = 1.25,
        refine: bool = True,
        dedup_dist: float = 0.1,
        overlap_power: float = 4.0,
        flip: bool = False,
        max_people: int = 32,
        threads: int = 2,
        detect_every: int = DETECT_EVERY,
    ) -> None:
        if any(not (0.05 <= f < 1.0) for f in tiles):
            raise UsageError(f"mediapipe tiles must be fractions in [0.05, 1), got {tiles}")
        if not (0.0 <= tile_overlap <= 0.9):
            raise UsageError(f"mediapipe tile_overlap must be in [0, 0.9], got {tile_overlap}")
        for label, v in (("min_score", min_score), ("nms_iou", nms_iou),
                         ("min_presence", min_presence), ("dedup_dist", dedup_dist)):
            if not (0.0 <= v <= 1.0):
                raise UsageError(f"mediapipe {label} must be in [0, 1], got {v}")
        if roi_scale <= 0 or overlap_power <= 0 or max_people < 1 or threads < 1:
            raise UsageError("mediapipe roi_scale, overlap_power, max_people, threads must be > 0")
        if detect_every < 1:
            raise UsageError(f"mediapipe detect_every must be >= 1, got {detect_every}")
        self.home = Path(home) if home is not None else None
        self.allow_download = bool(allow_download)
        self.tiles = tuple(float(f) for f in tiles)
        self.tile_overlap = float(tile_overlap)
        self.min_score = float(min_score)
        self.nms_iou = float(nms_iou)
        self.min_presence = float(min_presence)
        self.roi_scale = float(roi_scale)
        self.refine = bool(refine)
        self.dedup_dist = float(dedup_dist)
        self.overlap_power = float(overlap_power)
        self.flip = bool(flip)
        self.max_people = int(max_people)
        self.threads = int(threads)
        self.detect_every = int(detect_every)
        self._models: MediaPipeModels | None = None
        self._detector: Any = None
        self._landmarker: Any = None
        self._anchors = ssd_anchors()
        self._lock = threading.Lock()

    # ----------------------------------------------------------------- set-up

    def _params(self) -> str:
        tiles = "+".join(f"{f:g}" for f in self.tiles) or "none"
        return (
            f"tiles={tiles},overlap={self.tile_overlap:g},score={self.min_score:g},"
            f"nms={self.nms_iou:g},presence={self.min_presence:g},roi={self.roi_scale:g},"
            f"refine={int(self.refine)},dedup={self.dedup_dist:g},"
            f"power={self.overlap_power:g},flip={int(self.flip)},max={self.max_people},"
            f"every={self.detect_every}"
        )

    def models(self) -> MediaPipeModels:
        """The verified model files (located once; :class:`WeightsError` when missing)."""
        if self._models is None:
            self._models = locate_mediapipe_models(self.home, allow_download=self.allow_download)
        return self._models

    def fingerprint(self) -> str:
        """Backend, model SHA-256 prefixes and every parameter that changes the masks."""
        m = self.models()
        return (
            f"mediapipe(det={m.detector_sha256[:16]},lm={m.landmarks_sha256[:16]},"
            f"{self._params()})"
        )

    def __repr__(self) -> str:
        return f"<MediaPipeSegmenter {self._params()}>"

    def check(self) -> None:
        """Locate and verify the model files and load both interpreters now."""
        with self._lock:
            self._load()

    def _load(self) -> None:
        if self._detector is not None:
            return
        m = self.models()
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError as e:  # pragma: no cover - a dependency of the package
            raise WeightsError(
                f"ai-edge-litert is not installed ({e}): pip install ai-edge-litert"
            ) from e
        detector = _Model(Interpreter, m.detector, self.threads)
        landmarker = _Model(Interpreter, m.landmarks, self.threads)
        detector.expect_input((1, DETECTOR_SIZE, DETECTOR_SIZE, 3))
        detector.expect_outputs({(1, NUM_ANCHORS, 12), (1, NUM_ANCHORS, 1)})
        landmarker.expect_input((1, LANDMARK_SIZE, LANDMARK_SIZE, 3))
        landmarker.expect_outputs({(1, NUM_LANDMARKS * 5), (1, 1),
                                   (1, LANDMARK_SIZE, LANDMARK_SIZE, 1)})
        self._detector, self._landmarker = detector, landmarker

    # ----------------------------------------------------------------- detection

    def _detect_tile(self, image: np.ndarray, tile: tuple[int, int, int, int],
                     mirror: bool = False) -> list[Detection]:
        """Detections in one tile of ``image`` (H, W, 3) float32 [0, 1], in frame pixels
        (``mirror``: detect in the tile flipped left-right, coordinates mapped back)."""
        x0, y0, x1, y1 = tile
        crop = image[y0:y1, x0:x1]
        if mirror:
            crop = np.ascontiguousarray(crop[:, ::-1])
        th, tw = crop.shape[:2]
        side = max(th, tw)
        k = DETECTOR_SIZE / side
        rw, rh = max(1, round(tw * k)), max(1, round(th * k))
        interp = cv2.INTER_AREA if k < 1 else cv2.INTER_LINEAR
        small = cv2.resize(crop, (rw, rh), interpolation=interp)
        inp = np.full((DETECTOR_SIZE, DETECTOR_SIZE, 3), -1.0, np.float32)
        px, py = (DETECTOR_SIZE - rw) // 2, (DETECTOR_SIZE - rh) // 2
        inp[py:py + rh, px:px + rw] = small * 2.0 - 1.0
        outs = self._detector.run(inp[None])
        raw_boxes = outs[(1, NUM_ANCHORS, 12)][0]
        raw_scores = outs[(1, NUM_ANCHORS, 1)][0, :, 0]
        boxes, kps, scores = decode_detections(raw_boxes, raw_scores, self._anchors,
                                               min_score=self.min_score)
        # input-normalised -> tile pixels -> frame pixels
        to_px = np.array([DETECTOR_SIZE / k, DETECTOR_SIZE / k])
        shift_in = np.array([px, py]) / DETECTOR_SIZE
        origin = np.array([x0, y0])
        out = []
        for b, kp, s in zip(boxes, kps, scores, strict=True):
            box = np.concatenate([(b[:2] - shift_in) * to_px, (b[2:] - shift_in) * to_px])
            kp = (kp - shift_in) * to_px
            if mirror:
                box = np.array([tw - box[2], box[1], tw - box[0], box[3]])
                kp = np.stack([tw - kp[:, 0], kp[:, 1]], axis=1)
            out.append(Detection(box + np.tile(origin, 2), kp + origin, float(s)))
        return out

    def detect(self, image: np.ndarray, near: np.ndarray | None = None) -> list[Detection]:
        """Detections of the whole frame and its tiles, best score first; image (H, W, 3)
        in [0, 1]. Within one run, MediaPipe's weighted NMS; across runs (whose boxes
        differ in size for one person) the best of each set of :func:`same_person`.
        ``near``: (P, 2) points (x, y) in pixels: a local search for people lost there:
        the whole frame and, for each point and tile size, the tile centred nearest it."""
        h, w = image.shape[:2]
        dets: list[Detection] = []
        tiles = tile_grid(h, w, self.tiles, self.tile_overlap)
        if near is not None:
            tiles = nearest_tiles(tiles, np.asarray(near, np.float64).reshape(-1, 2))
        for tile in tiles:
            for mirror in (False, True) if self.flip else (False,):
                dets += weighted_nms(self._detect_tile(image, tile, mirror), iou=self.nms_iou)
        groups: list[list[Detection]] = []
        for d in sorted(dets, key=lambda d: -d.score):
            for g in groups:
                if same_person(d, g[0], self.roi_scale):
                    g.append(d)
                    break
            else:
                groups.append([d])
        return [dataclasses.replace(g[0], others=tuple(g[1:])) for g in groups]

    # ----------------------------------------------------------------- segmentation

    def _landmarks(self, pyramid: _Pyramid, roi: Roi) -> tuple[float, np.ndarray, np.ndarray,
                                                                  np.ndarray, np.ndarray]:
        """Run the landmark model on ``roi``: presence, landmarks (39, 2) frame px,
        visibility (39,), mask logits (256, 256), crop->frame map (2, 3). The crop is
        sampled from the pyramid level that leaves at most a 4x shrink (less aliasing
        for large people in large frames)."""
        m = roi.crop_to_frame()
        level = max(0, math.floor(math.log2(max(roi.side, 1.0) / (2 * LANDMARK_SIZE))))
        src, m_src = pyramid.level(level, m)
        crop = cv2.warpAffine(src, m_src, (LANDMARK_SIZE, LANDMARK_SIZE),
                              flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                              borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))
        outs = self._landmarker.run(np.ascontiguousarray(crop, dtype=np.float32)[None])
        raw = outs[(1, NUM_LANDMARKS * 5)].reshape(NUM_LANDMARKS, 5)
        presence = float(outs[(1, 1)].ravel()[0])
        pts = raw[:, :2] @ m[:, :2].T + m[:, 2]
        visibility = _sigmoid(raw[:, 3])
        logits = outs[(1, LANDMARK_SIZE, LANDMARK_SIZE, 1)][0, :, :, 0]
        return presence, pts, visibility, logits, m

    def _segment_person(
        self, pyramid: _Pyramid, rois: list[Roi], score: float,
        face: np.ndarray | None = None, faces: tuple[np.ndarray, ...] = (),
    ) -> _Person | None:
        """Crop, landmark model (twice with ``refine``), mask pasted at frame size.

        ``rois``: crops to try in order, until one shows a person (presence) that is not
        a neighbour: a pass whose nose lands on one of the other people's face boxes
        ``faces`` and not on this person's ``face`` looked at a neighbour in the crop
        and is not used (a refined crop doing so is dropped).
        """
        h, w = pyramid.size

        def looks_at_neighbour(pts: np.ndarray) -> bool:
            if face is None or _nose_on(pts, face, 0.0):
                return False
            return any(_nose_on(pts, f, 0.0) for f in faces)

        first = None
        for roi in rois:
            if roi.side < 4:
                continue
            presence, pts, vis, logits, m = self._landmarks(pyramid, roi)
            if presence >= self.min_presence and not looks_at_neighbour(pts):
                first = roi, presence, pts, vis, logits, m
                break
        if first is None:
            return None
        roi, presence, pts, vis, logits, m = first
        if self.refine:
            roi2 = roi_from_points(pts[AUX_CENTER], pts[AUX_SCALE], enlarge=self.roi_scale)
            if roi2.side >= 4:
                p2, pts2, vis2, logits2, m2 = self._landmarks(pyramid, roi2)
                if p2 >= self.min_presence and not looks_at_neighbour(pts2):
                    roi, presence, pts, vis, logits, m = roi2, p2, pts2, vis2, logits2, m2
        prob = _sigmoid(logits).astype(np.float32)
        mask = cv2.warpAffine(prob, m, (w, h), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        return _Person(roi, score, presence, np.clip(mask, 0.0, 1.0), pts, vis)

    def segment(self, frame: torch.Tensor, *, index: int = 0) -> Instances:
        """People in ``frame`` (1, 3, H, W) float RGB in [0, 1] -> :class:`Instances`:
        masks (N, H, W) float32 in [0, 1], boxes (N, 4) of each mask (pixels where it is
        >= 0.5), detector scores (N,), ids all 0, faces (N, 4) or NaN rows; people sorted
        by score, best first.

        For a detection whose first crop looks at a neighbour, the same person's
        detections in other tiles are tried (up to ``ALTERNATIVES``)."""
        image = _to_image(frame)
        with self._lock:
            self._load()
            people = self._detect_people(image, _Pyramid(image))
        return self._instances(people, image.shape[:2])[0]

    def _detect_people(self, image: np.ndarray, pyramid: _Pyramid,
                       followed: tuple[_Person, ...] = (),
                       near: np.ndarray | None = None) -> list[_Person]:
        """Steps 1-4 of the module doc on ``image`` (H, W, 3): the people found, best
        detection score first (before de-duplication and sharing). ``followed``: people
        already segmented in this frame: a detection whose face box holds one of their
        noses is theirs and is not segmented again, and their faces count as
        neighbours. ``near``: look only in the tiles around these points (:meth:`detect`)."""
        people: list[_Person] = []
        dets = [d for d in self.detect(image, near)
                if not any(_nose_on(p.landmarks, d.box, FOLLOWED_MARGIN) for p in followed)]
        known = tuple(face_box(p.landmarks[FACE_LANDMARKS], p.visibility[FACE_LANDMARKS],
                               min_visibility=0.0) for p in followed)
        for det in dets:
            rois = [roi_from_points(c.keypoints[0], c.keypoints[1], enlarge=self.roi_scale)
                    for c in (det, *det.others[:ALTERNATIVES])]
            faces = tuple(d.box for d in dets if d is not det) + known
            p = self._segment_person(pyramid, rois, det.score, det.box, faces)
            if p is not None:
                people.append(p)
        return people

    def segment_next(self, frame: torch.Tensor, *, index: int,
                     state: SegmentState | None) -> tuple[Instances, SegmentState]:
        """Frame ``index`` of a video, as MediaPipe's video mode: each person of ``state``
        (the previous frame's people) is *followed*: the landmark model runs once in the
        crop predicted from their landmarks of the previous frame (hip centre and size
        points, as MediaPipe's pose tracking) and the mask is pasted as in
        :meth:`segment`. The full detection (whole frame and tiles) runs only on *key
        frames*: the first frame (no ``state``) and every ``detect_every``-th frame after
        the last key frame; its detections of people already followed are skipped, the
        others are segmented as in :meth:`segment` (people entering are found there).
        A followed person who is lost (presence under ``min_presence``, or merged into
        another person, or left with no pixel above 0.5) is dropped and looked for again
        at once by the detector in the tiles around their crop (a local search).
        Duplicates and shared pixels as in :meth:`segment`, followed people first.

        Returns the people (ids all 0) and the state for frame ``index + 1``; both depend
        only on ``frame``, ``index`` and ``state``, so a run resumed from a stored state
        goes on exactly as an uninterrupted one.
        """
        image = _to_image(frame)
        size = image.shape[:2]
        key = state is None or not 0 < index - state.key < self.detect_every
        with self._lock:
            self._load()
            pyramid = _Pyramid(image)
            followed, lost = self._follow(pyramid, state) if state is not None else ([], [])
            if key:
                new = self._detect_people(image, pyramid, tuple(followed))
            elif lost:
                new = self._detect_people(image, pyramid, tuple(followed), near=_centres(lost))
            else:
                new = []
            inst, kept = self._instances(followed + new, size)
            gone = [p for p in followed if not any(p is q for q in kept)]
            if gone and not key and not lost:
                # merged into another person: look again around them once
                new = self._detect_people(image, pyramid, tuple(followed), near=_centres(
                    [p.roi for p in gone]))
                if new:
                    inst, kept = self._instances(followed + new, size)
            if lost or gone:
                log.debug("frame %d: %d followed people lost, %d found by detection",
                          index, len(lost) + len(gone), len(new))
        return inst, self._state(kept, index if key else state.key)  # type: ignore[union-attr]

    def _follow(self, pyramid: _Pyramid, state: SegmentState) -> tuple[list[_Person], list[Roi]]:
        """Each person of ``state`` segmented once in their predicted crop: the people
        present (presence at least ``min_presence``) and the crops of those lost."""
        h, w = pyramid.size
        people: list[_Person] = []
        lost: list[Roi] = []
        for (cx, cy, side, rotation), score in zip(state.rois, state.scores, strict=True):
            roi = Roi(float(cx), float(cy), float(side), float(rotation))
            if roi.side < 4:
                lost.append(roi)
                continue
            presence, pts, vis, logits, m = self._landmarks(pyramid, roi)
            if presence < self.min_presence:
                lost.append(roi)
                continue
            mask = cv2.warpAffine(_sigmoid(logits).astype(np.float32), m, (w, h),
                                  flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                                  borderValue=0)
            people.append(_Person(roi, float(score), presence, np.clip(mask, 0.0, 1.0),
                                  pts, vis))
        return people, lost

    def _state(self, people: list[_Person], key: int) -> SegmentState:
        """The state after a frame whose (kept) people are ``people``: each one's crop
        in the next frame from their hip centre and size landmarks."""
        rois = [roi_from_points(p.landmarks[AUX_CENTER], p.landmarks[AUX_SCALE],
                                enlarge=self.roi_scale) for p in people]
        return SegmentState(key=key,
                            rois=np.array([[r.cx, r.cy, r.side, r.rotation] for r in rois],
                                          np.float32).reshape(-1, 4),
                            scores=np.array([p.score for p in people], np.float32))

    def segment_boxes(self, frame: torch.Tensor, boxes: np.ndarray) -> Instances:
        """People at given upright person boxes instead of detected ones (from another
        detector, the previous frame, or ground truth for a benchmark's ceiling).

        frame (1, 3, H, W) in [0, 1]; boxes (K, 4) pixels x0, y0, x1, y1. Each box
        becomes a square crop of side ``roi_scale`` x its longer side around its centre;
        then as :meth:`segment` (landmark model, ``refine``, presence, duplicates,
        sharing). Scores are 1."""
        image = _to_image(frame)
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        with self._lock:
            self._load()
            pyramid = _Pyramid(image)
            people = []
            for x0, y0, x1, y1 in boxes:
                side = self.roi_scale * max(x1 - x0, y1 - y0)
                roi = Roi((x0 + x1) / 2, (y0 + y1) / 2, float(side), 0.0)
                p = self._segment_person(pyramid, [roi], 1.0)
                if p is not None:
                    people.append(p)
        return self._instances(people, image.shape[:2])[0]

    def _instances(self, people: list[_Person],
                   size: tuple[int, int]) -> tuple[Instances, list[_Person]]:
        """Duplicates dropped, masks shared, empty ones dropped -> :class:`Instances` and
        the people kept (in its order)."""
        h, w = size
        found = len(people)
        people = self._dedup(people)[: self.max_people]
        log.debug("mediapipe: %d people in a %dx%d frame (%d before de-duplication)",
                  len(people), w, h, found)
        masks = np.zeros((0, h, w), np.float32)
        if people:
            masks = share_overlaps(np.stack([p.mask for p in people]), self.overlap_power)
            keep = masks.reshape(len(people), -1).max(axis=1) >= 0.5
            people = [p for p, k in zip(people, keep, strict=True) if k]
            masks = masks[keep]
        if not people:
            return Instances(
                masks=torch.zeros(0, h, w), boxes=torch.zeros(0, 4), scores=torch.zeros(0),
                ids=(), faces=torch.zeros(0, 4),
            ), []
        boxes = np.stack([_mask_box(mk, p.roi) for mk, p in zip(masks, people, strict=True)])
        faces = np.stack([
            face_box(p.landmarks[FACE_LANDMARKS], p.visibility[FACE_LANDMARKS], min_visibility=0.5)
            for p in people
        ])
        return Instances(
            masks=torch.from_numpy(np.ascontiguousarray(masks, dtype=np.float32)),
            boxes=torch.from_numpy(boxes.astype(np.float32)),
            scores=torch.tensor([p.score for p in people], dtype=torch.float32),
            ids=(0,) * len(people),
            faces=torch.from_numpy(faces.astype(np.float32)),
        ), people

    def _dedup(self, people: list[_Person]) -> list[_Person]:
        """Drop a person whose nose, shoulders and hips lie, on average, within
        ``dedup_dist`` x its crop side of a better-scored person's, or whose mask overlaps
        a better-scored person's with IoU >= :data:`DEDUP_MASK_IOU` (one person found
        twice: on vtest duplicates with mask IoU 0.66-0.79 survived the skeleton test and
        made short-lived ids)."""
        kept: list[_Person] = []
        binary: list[np.ndarray] = []
        for p in people:  # best score first
            m = p.mask >= 0.5
            if any(_same_skeleton(p, q, self.dedup_dist) for q in kept):
                continue
            if any(_iou(m, b) >= DEDUP_MASK_IOU for b in binary):
                continue
            kept.append(p)
            binary.append(m)
        return kept


_ANCHOR_POINTS = [0, 11, 12, 23, 24]
#: A detection is a followed person's when their nose lies in its face box grown by this
#: fraction of its size on each side.
FOLLOWED_MARGIN = 0.5


def _centres(rois: list[Roi]) -> np.ndarray:
    """(P, 2) centres (x, y) of crops."""
    return np.array([[r.cx, r.cy] for r in rois], np.float64).reshape(-1, 2)
#: Two people whose masks overlap at least this much (IoU of mask >= 0.5) are one.
DEDUP_MASK_IOU = 0.6


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 0.0


def _nose_on(points: np.ndarray, box: np.ndarray, margin: float) -> bool:
    """Whether landmark 0 (nose) lies in the detector's face box grown by ``margin`` x
    its size on each side: the landmark model looked at the person that was detected,
    not at a neighbour in the same crop."""
    x0, y0, x1, y1 = box
    mx, my = margin * (x1 - x0), margin * (y1 - y0)
    x, y = points[0]
    return bool(x0 - mx <= x <= x1 + mx and y0 - my <= y <= y1 + my)


def _same_skeleton(a: _Person, b: _Person, tol: float) -> bool:
    d = np.linalg.norm(a.landmarks[_ANCHOR_POINTS] - b.landmarks[_ANCHOR_POINTS], axis=1)
    return bool(d.mean() < tol * min(a.roi.side, b.roi.side))


def _to_image(frame: torch.Tensor) -> np.ndarray:
    """(1, 3, H, W) float in [0, 1] -> (H, W, 3) float32 contiguous."""
    if frame.dim() != 4 or frame.shape[0] != 1 or frame.shape[1] != 3:
        raise ValueError(f"frame must be (1, 3, H, W), got {tuple(frame.shape)}")
    return np.ascontiguousarray(
        frame[0].detach().to("cpu", torch.float32).clamp(0, 1).permute(1, 2, 0).numpy()
    )


def _mask_box(mask: np.ndarray, roi: Roi) -> np.ndarray:
    """Bounding box (x0, y0, x1, y1) of mask >= 0.5 (exclusive ends), else of ``roi``."""
    ys, xs = np.nonzero(mask >= 0.5)
    if len(xs):
        return np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], np.float32)
    r = roi.side / 2
    return np.array([roi.cx - r, roi.cy - r, roi.cx + r, roi.cy + r], np.float32)


class _Pyramid:
    """An image (H, W, 3) and its halvings (``cv2.pyrDown``), made when first asked for."""

    def __init__(self, image: np.ndarray) -> None:
        self.levels = [image]
        self.size = image.shape[:2]

    def level(self, level: int, m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Level ``level`` (at most as many as the image allows) and the crop->frame map
        ``m`` (2, 3) expressed in that level's pixels."""
        while len(self.levels) <= level and min(self.levels[-1].shape[:2]) >= 32:
            self.levels.append(cv2.pyrDown(self.levels[-1]))
        level = min(level, len(self.levels) - 1)
        k = 2.0 ** level
        m_level = m / k
        m_level[:, 2] -= (k - 1) / (2 * k)  # pixel centres of a halving
        return self.levels[level], m_level


class _Model:
    """One TFLite interpreter: outputs by shape (they are unique in both models)."""

    def __init__(self, interpreter_cls: Any, path: Path, threads: int) -> None:
        try:
            self.it = interpreter_cls(model_path=str(path), num_threads=threads)
            self.it.allocate_tensors()
        except (ValueError, RuntimeError) as e:
            raise WeightsError(f"cannot load model {path}: {e}") from e
        self.path = path
        self.input = self.it.get_input_details()[0]
        self.outputs = {tuple(int(s) for s in d["shape"]): d["index"]
                        for d in self.it.get_output_details()}

    def expect_input(self, shape: tuple[int, ...]) -> None:
        got = tuple(int(s) for s in self.input["shape"])
        if got != shape or self.input["dtype"] != np.float32:
            raise WeightsError(f"{self.path.name}: input {got} {self.input['dtype']}, "
                               f"expected {shape} float32")

    def expect_outputs(self, shapes: set[tuple[int, ...]]) -> None:
        if not shapes <= set(self.outputs):
            raise WeightsError(f"{self.path.name}: outputs {sorted(self.outputs)} lack "
                               f"{sorted(shapes - set(self.outputs))}")

    def run(self, x: np.ndarray) -> dict[tuple[int, ...], np.ndarray]:
        self.it.set_tensor(self.input["index"], x)
        self.it.invoke()
        return {shape: self.it.get_tensor(i) for shape, i in self.outputs.items()}


__all__ = [
    "Detection",
    "MediaPipeSegmenter",
    "Roi",
    "decode_detections",
    "face_box",
    "nearest_tiles",
    "roi_from_points",
    "share_overlaps",
    "ssd_anchors",
    "tile_grid",
    "weighted_nms",
]
