"""The segmenter protocol: anything that finds people in a frame, and the state a
segmenter that follows people through a video carries from one frame to the next."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np
import torch

from vidstyle.contracts import Instances


@dataclass(frozen=True)
class SegmentState:
    """What a video segmenter hands from frame i to frame i+1 (kept with frame i's cached
    result, so a resumed run goes on exactly as an uninterrupted one).

    key: index of the last key frame (a frame where the full detection ran); rois:
    (N, 4) float32, per person of frame i (in its order), the crop to look for them in
    frame i+1: centre x, centre y, side (pixels of the working size), rotation
    (radians, 0 = upright); scores: (N,) float32, each person's detection score (from
    their key frame).
    """

    key: int
    rois: np.ndarray
    scores: np.ndarray

    def __post_init__(self) -> None:
        rois = np.asarray(self.rois, np.float32).reshape(-1, 4)
        scores = np.asarray(self.scores, np.float32).reshape(-1)
        if len(rois) != len(scores):
            raise ValueError(f"{len(rois)} rois but {len(scores)} scores")
        object.__setattr__(self, "rois", rois)
        object.__setattr__(self, "scores", scores)

    def __len__(self) -> int:
        return len(self.rois)


@runtime_checkable
class Segmenter(Protocol):
    """Finds people in one frame.

    ``segment(frame, index=i)``: frame i (1, 3, H, W) float32 RGB in [0, 1] ->
    :class:`Instances` with masks at (H, W), ids all 0 (numbering is the tracker's job)
    except for sources that carry their own ids (a user's mask files); ``index`` is the
    frame's number in the clip (backends that read per-frame files need it).
    ``segment_next(frame, index=i, state=s)``: the same for frame i of a video, given the
    state frame i-1 returned (None for the first frame); returns the people and the state
    for frame i+1 (None for backends that see each frame on its own, see
    :class:`FrameByFrame`). ``fingerprint()`` names the backend and every parameter or
    weight file that changes the result (it keys the cached masks of the work
    directory). ``check()`` raises now what would fail at the first frame (missing
    model files).
    """

    name: str

    def fingerprint(self) -> str: ...

    def check(self) -> None: ...

    def segment(self, frame: torch.Tensor, *, index: int = 0) -> Instances: ...

    def segment_next(self, frame: torch.Tensor, *, index: int,
                     state: SegmentState | None) -> tuple[Instances, SegmentState | None]: ...


class FrameByFrame:
    """Mixin for segmenters that see every frame on its own: :meth:`segment_next` is
    :meth:`segment` and carries no state."""

    def segment(self, frame: torch.Tensor, *, index: int = 0) -> Instances:
        raise NotImplementedError

    def segment_next(self, frame: torch.Tensor, *, index: int,
                     state: SegmentState | None) -> tuple[Instances, SegmentState | None]:
        """Frame ``index``'s people by :meth:`segment`; ``state`` is not used."""
        return self.segment(frame, index=index), None


__all__ = ["FrameByFrame", "SegmentState", "Segmenter"]
