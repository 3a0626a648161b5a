"""Motion between consecutive frames: both flows, their consistency mask and the cut test.

The engine's flow and masks stages call :func:`frame_pair` for each new frame; the fast
stabilizer and evaluation use the same function, so every consumer sees the same motion.
"""

from __future__ import annotations

import torch

from vidstyle.contracts import FramePair
from vidstyle.flow.consistency import (
    AGREEMENT_SIGMA,
    confidence_from_inconsistency,
    inconsistency,
    photometric_agreement,
)
from vidstyle.flow.cuts import shot_cut
from vidstyle.flow.estimate import FlowEstimator


def frame_pair(
    previous: torch.Tensor,
    current: torch.Tensor,
    *,
    flow: FlowEstimator,
    masks: bool = True,
    agreement: bool = True,
) -> FramePair:
    """Motion from ``previous`` to ``current`` (each (1, 3, H, W) in [0, 1], same size).

    Estimates the forward (previous -> current) and backward (current -> previous) flow in
    pixels; ``masks``: the forward-backward consistency mask (1, 1, H, W) in {0, 1}, its
    consistent fraction as ``score``, the map it comes from
    (:func:`vidstyle.flow.inconsistency`, for soft weights) and the shot-cut decision of
    :func:`vidstyle.flow.shot_cut` (broken flow *and* changed appearance) and the
    photometric agreement of the backward flow (:data:`AGREEMENT_SIGMA`; ``agreement``
    False skips it, for consumers that do not read it); without masks the mask is all
    ones, no pair is a cut and there is no agreement.
    """
    if previous.shape != current.shape:
        raise ValueError(f"frames differ in shape: {tuple(previous.shape)} vs "
                         f"{tuple(current.shape)}")
    fwd = flow.estimate(previous, current)
    bwd = flow.estimate(current, previous)
    if not masks:
        ones = torch.ones_like(bwd[:, :1])
        return FramePair(forward=fwd, backward=bwd, mask=ones, score=1.0, cut=False,
                         checked=False)
    ratio = inconsistency(fwd, bwd)
    mask = confidence_from_inconsistency(ratio, softness=0.0)
    decision = shot_cut(previous, current, mask, always_compare=False)
    agree = (photometric_agreement(previous, current, bwd, sigma=AGREEMENT_SIGMA,
                                   reliable=(ratio < float("inf")).to(torch.float32))
             if agreement else None)
    return FramePair(forward=fwd, backward=bwd, mask=mask, score=decision.consistent,
                     cut=decision.cut, agreement=agree, inconsistency=ratio)


__all__ = ["frame_pair"]
