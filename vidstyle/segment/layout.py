"""Where each person's style goes: feathered, overlap-shared person weights."""

from __future__ import annotations

import math

import torch

from vidstyle.contracts import Instances
from vidstyle.segment.ops import feather


def person_weights(instances: Instances, feather_fraction: float
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """Soft weights of each person and of all people, for per-person styles.

    instances: N people with masks (N, H, W) in [0, 1]. feather_fraction: the soft edge's
    half-width as a fraction of the frame diagonal (0: the masks are used as they are, as
    the engine's segment stage already feathers them). Returns (weights (N, H, W),
    people (H, W)), both in [0, 1]: each mask feathered (:func:`feather`), shared in
    proportion where masks overlap (so they sum to at most 1), and their sum. The
    background's weight is ``1 - people``.
    """
    h, w = instances.size
    if len(instances) == 0:
        return torch.zeros(0, h, w), torch.zeros(h, w)
    masks = instances.masks.float()
    if feather_fraction > 0:
        masks = feather(masks, feather_fraction * math.hypot(h, w))
    masks = masks / masks.sum(dim=0, keepdim=True).clamp(min=1.0)
    return masks, masks.sum(dim=0).clamp(max=1.0)


__all__ = ["person_weights"]
