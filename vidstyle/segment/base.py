"""The segmenter protocol: anything that finds people in a frame."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch

from vidstyle.contracts import Instances


@runtime_checkable
class Segmenter(Protocol):
    """Finds people in one frame.

    ``segment(frame, index=i)``: frame i (1, 3, H, W) float32 RGB in [0, 1] ->
    :class:`Instances` with masks at (H, W), ids all 0 (numbering is the tracker's job)
    except for sources that carry their own ids (a user's mask files); ``index`` is the
    frame's number in the clip (backends that read per-frame files need it). ``fingerprint()``
    names the backend and every parameter or weight file that changes the result (it
    keys the cached masks of the work directory). ``check()`` raises now what would
    fail at the first frame (missing model files).
    """

    name: str

    def fingerprint(self) -> str: ...

    def check(self) -> None: ...

    def segment(self, frame: torch.Tensor, *, index: int = 0) -> Instances: ...


__all__ = ["Segmenter"]
