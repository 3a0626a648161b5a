"""Mask R-CNN person masks: torchvision's ``maskrcnn_resnet50_fpn_v2`` (COCO weights).

The weights are those of ``MaskRCNN_ResNet50_FPN_V2_Weights.DEFAULT``, read from the file
given by ``--mask-weights PATH`` or, without it, from the torch hub cache
(``torch.hub.get_dir()/checkpoints/<file name of the enum's url>``), where torchvision
itself keeps them. vidstyle never downloads them: without the file, :meth:`check`
raises a :class:`~vidstyle.errors.WeightsError` saying both places. The person class is
looked up by name in the weights' ``meta["categories"]``.

Frames: (1, 3, H, W) float32 RGB in [0, 1]; results: :class:`~vidstyle.contracts.Instances`
with (N, H, W) soft masks (torchvision's mask probabilities) at the frame's resolution,
(N, 4) pixel boxes, scores, ids 0.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from vidstyle.contracts import Instances
from vidstyle.errors import WeightsError, describe
from vidstyle.fileio import sha256_file
from vidstyle.imageops import resize
from vidstyle.segment.base import FrameByFrame

logger = logging.getLogger(__name__)

#: The COCO class the segmenter keeps, by name.
PERSON = "person"
#: The CLI flag that names a weights file.
WEIGHTS_FLAG = "--mask-weights"


def weights_enum() -> Any:
    """torchvision's ``MaskRCNN_ResNet50_FPN_V2_Weights.DEFAULT`` (imports torchvision)."""
    from torchvision.models.detection import MaskRCNN_ResNet50_FPN_V2_Weights

    return MaskRCNN_ResNet50_FPN_V2_Weights.DEFAULT


def hub_file() -> Path:
    """Where torch hub keeps the weights: ``<hub dir>/checkpoints/<url's file name>``."""
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(weights_enum().url)


def _check_hub_hash(path: Path, digest: str) -> None:
    """torch hub names files ``<name>-<sha256 prefix>.pth``; a file so named must match."""
    m = re.search(r"-([a-f0-9]{6,})\.pth?$", path.name)
    if m and not digest.startswith(m.group(1)):
        raise WeightsError(f"{path} does not match the hash in its name "
                           f"(sha256 {digest[:12]}...): delete it or give another file")


class MaskRCNNSegmenter(FrameByFrame):
    """Person instance masks from Mask R-CNN (a :class:`~vidstyle.segment.base.Segmenter`).

    weights_path: the weights file (``--mask-weights``); None: the torch hub cache file.
    score_threshold: the least detection score kept (0..1). device: where the model runs
    (outputs come back to the CPU). min_size, max_size: the model's input resizing
    (torchvision's defaults 800 and 1333; smaller is faster and finds fewer small
    people). model: a ready module to use instead of building one and reading weights
    (tests inject small fakes); it takes a list of (3, H, W) images and returns one dict
    per image with ``boxes`` (N, 4), ``labels`` (N,), ``scores`` (N,) and ``masks``
    (N, 1, h, w) in [0, 1], like torchvision's detection models (masks and boxes at the
    image's size; at another size both are scaled to it). categories: class names
    by label (None: the weights' ``meta["categories"]``).
    """

    name = "maskrcnn"

    def __init__(self, *, weights_path: str | os.PathLike[str] | None = None,
                 score_threshold: float = 0.5, device: str | torch.device = "cpu",
                 min_size: int = 800, max_size: int = 1333,
                 model: torch.nn.Module | None = None,
                 categories: Sequence[str] | None = None) -> None:
        if not 0.0 <= score_threshold <= 1.0:
            raise ValueError(f"score_threshold must be in [0, 1], got {score_threshold}")
        self.weights_path = None if weights_path is None else Path(weights_path).expanduser()
        self.score_threshold = float(score_threshold)
        self.device = torch.device(device)
        self.min_size = int(min_size)
        self.max_size = int(max_size)
        self._injected = model is not None
        self._model = model
        self._categories = tuple(categories) if categories is not None else None
        self._digest: str | None = None
        self._ready = False

    # -- weights ---------------------------------------------------------------------

    @property
    def categories(self) -> tuple[str, ...]:
        """Class names by label index."""
        if self._categories is None:
            self._categories = tuple(weights_enum().meta["categories"])
        return self._categories

    @property
    def person_label(self) -> int:
        """The label index of ``person`` in :attr:`categories`."""
        try:
            return self.categories.index(PERSON)
        except ValueError:
            raise WeightsError(f"the Mask R-CNN categories have no {PERSON!r} class") from None

    def weights_file(self) -> Path:
        """The weights file to read; WeightsError when there is none (never downloads)."""
        if self.weights_path is not None:
            if not self.weights_path.is_file():
                raise WeightsError(f"{WEIGHTS_FLAG} {self.weights_path} does not exist")
            return self.weights_path
        cached = hub_file()
        if not cached.is_file():
            raise WeightsError(
                f"no Mask R-CNN weights: give {WEIGHTS_FLAG} PATH (torchvision's "
                f"{cached.name}) or put that file at {cached}; vidstyle does not download it")
        return cached

    def _weights_digest(self) -> str:
        if self._digest is None:
            path = self.weights_file()
            digest = sha256_file(path)
            _check_hub_hash(path, digest)
            self._digest = digest
        return self._digest

    def _build(self) -> torch.nn.Module:
        from torchvision.models.detection import maskrcnn_resnet50_fpn_v2

        path = self.weights_file()
        self._weights_digest()
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # any unreadable file: one line naming it
            raise WeightsError(f"cannot read Mask R-CNN weights {path}: {describe(exc)}") from exc
        if not isinstance(state, dict):
            raise WeightsError(f"{path} is not a state dict of Mask R-CNN weights")
        model = maskrcnn_resnet50_fpn_v2(weights=None, weights_backbone=None,
                                         num_classes=len(self.categories),
                                         min_size=self.min_size, max_size=self.max_size)
        wrong = f"{path} does not hold torchvision's maskrcnn_resnet50_fpn_v2 weights"
        try:
            result = model.load_state_dict(state, strict=False)
        except RuntimeError as exc:  # a parameter of another shape
            raise WeightsError(f"{wrong}: {' '.join(str(exc).split())[:300]}") from exc
        if result.missing_keys or result.unexpected_keys:
            example = (result.missing_keys or result.unexpected_keys)[0]
            raise WeightsError(f"{wrong}: {len(result.missing_keys)} parameters missing, "
                               f"{len(result.unexpected_keys)} unexpected (e.g. {example})")
        logger.info("Mask R-CNN weights %s", path)
        return model

    def _ready_model(self) -> torch.nn.Module:
        if not self._ready:
            _ = self.person_label  # raises now when there is no person class
            model = self._model if self._model is not None else self._build()
            self._model = model.to(self.device).eval()
            self._ready = True
        assert self._model is not None
        return self._model

    # -- the Segmenter protocol --------------------------------------------------------

    def check(self) -> None:
        """Find, verify and load the weights now (WeightsError when missing or wrong)."""
        self._ready_model()

    def fingerprint(self) -> str:
        """The model, its weights' hash and every setting that changes the masks."""
        if self._injected:
            weights = f"model={type(self._model).__qualname__}"
        else:
            weights = f"maskrcnn_resnet50_fpn_v2:{self._weights_digest()[:16]}"
        return (f"{self.name}:{weights}:score={self.score_threshold:g}:"
                f"size={self.min_size}-{self.max_size}")

    def segment(self, frame: torch.Tensor, *, index: int = 0) -> Instances:
        """The people of ``frame`` (1, 3, H, W): masks (N, H, W) at the frame's size,
        detections of the ``person`` class scoring at least ``score_threshold``."""
        if frame.dim() != 4 or frame.shape[:2] != (1, 3):
            raise ValueError(f"frame must be (1, 3, H, W), got {tuple(frame.shape)}")
        model = self._ready_model()
        h, w = int(frame.shape[-2]), int(frame.shape[-1])
        with torch.inference_mode():
            out = model([frame[0].to(self.device, torch.float32)])[0]
        labels = out["labels"].cpu()
        scores = out["scores"].cpu().to(torch.float32)
        keep = (labels == self.person_label) & (scores >= self.score_threshold)
        masks = out["masks"].cpu().to(torch.float32)[keep]
        if masks.dim() == 4:
            masks = masks[:, 0]
        boxes = out["boxes"].cpu().to(torch.float32)[keep].reshape(-1, 4)
        if tuple(masks.shape[-2:]) != (h, w):
            mh, mw = masks.shape[-2:]
            if len(masks):
                masks = resize(masks.unsqueeze(0), (h, w))[0]
            else:
                masks = torch.zeros((0, h, w), dtype=torch.float32)
            boxes = boxes * torch.tensor([w / mw, h / mh, w / mw, h / mh])
        n = int(keep.sum())
        return Instances(masks=masks.clamp(0.0, 1.0).contiguous(), boxes=boxes,
                         scores=scores[keep], ids=(0,) * n)


__all__ = ["MaskRCNNSegmenter", "PERSON", "WEIGHTS_FLAG", "hub_file", "weights_enum"]
