"""Shot cuts: a cut changes the whole picture's appearance *and* breaks the flow.

Fast motion breaks the flow too (large displacements, big disocclusions: the consistency
mask of :func:`vidstyle.flow.consistency_mask` empties out), but it keeps the picture's
appearance: the same colours, the same kinds of edges, the same brightness and contrast.
A cut changes them. :func:`shot_cut` is the one decision every consumer uses (the
engine's :func:`vidstyle.flow.frame_pair`, hence ``FramePair.cut`` and the fast path's
stabilization; temporal optimization; ``vidstyle eval cuts``).

Appearance is compared on a thumbnail (longest side :data:`THUMB_SIDE` px), so the
decision does not depend on the working size and costs well under a millisecond:

- colour: half the L1 distance of the joint HSV histograms (12 hue x 4 saturation x 4
  value bins), in [0, 1];
- edges: half the L1 distances of the gradient-orientation histograms (8 bins over
  [0, pi), weighted by gradient magnitude) and of the gradient-magnitude histograms
  (8 bins), each in [0, 1];
- global statistics: the absolute differences of mean luma and of luma standard deviation
  (luma in [0, 1]), each counted twice.

The appearance distance is their sum (0 for identical pictures, about 3.5 at most for
unrelated ones in practice).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch

#: Thumbnail size (longest side, px) the appearance statistics are computed at.
THUMB_SIDE = 64
#: A pair whose fraction of flow-consistent pixels falls below this has a broken flow
#: (necessary for a cut, not sufficient).
FLOW_BREAK = 0.5
#: A pair whose appearance distance reaches this changed its appearance (necessary for a
#: cut). Measured on the kit's clips (benchmarks/RESULTS.md, "Shot cuts"): the five cuts
#: of bikes.mp4 score 0.74-2.28 and the one of tears_of_steel_2s.webm 1.72; continuous
#: pairs at most 0.34 (1x motion), 0.52 (every 3rd frame: bikes, a car passing close in
#: front of the camera) and 0.34 (Sintel market_5, frames 1-4).
APPEARANCE_CUT = 0.62

_HSV_BINS = (12, 4, 4)
_ORI_BINS = 8
_MAG_BINS = 8
#: Gradient magnitudes (Sobel 3x3 on luma in [0, 1]) are binned over [0, _MAG_MAX).
_MAG_MAX = 2.0


@dataclass(frozen=True)
class Appearance:
    """Global appearance statistics of one frame (see the module docstring).

    colour: (12*4*4,) float32 joint HSV histogram summing to 1; orientation: (8,) gradient
    orientations weighted by magnitude, summing to 1 (all zero for a flat picture);
    magnitude: (8,) gradient-magnitude histogram summing to 1; mean, std: luma in [0, 1].
    """

    colour: np.ndarray
    orientation: np.ndarray
    magnitude: np.ndarray
    mean: float
    std: float


@dataclass(frozen=True)
class CutScore:
    """The shot-cut decision for one pair of frames.

    consistent: fraction of flow-consistent pixels in [0, 1] (1 = the flow explains the
    whole picture); appearance: appearance distance >= 0 (0 = the same picture);
    cut: consistent < FLOW_BREAK and appearance >= APPEARANCE_CUT.
    """

    consistent: float
    appearance: float
    cut: bool


def _thumbnail(frame: torch.Tensor) -> np.ndarray:
    """(1, 3, H, W) float RGB in [0, 1] -> (h, w, 3) float32, longest side THUMB_SIDE."""
    if frame.dim() != 4 or frame.shape[:2] != (1, 3):
        raise ValueError(f"expected a (1, 3, H, W) frame, got {tuple(frame.shape)}")
    rgb = frame[0].detach().to("cpu", torch.float32).permute(1, 2, 0).numpy()
    h, w = rgb.shape[:2]
    s = THUMB_SIDE / max(h, w)
    if s < 1:
        size = (max(8, round(w * s)), max(8, round(h * s)))
        rgb = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
    return np.clip(np.ascontiguousarray(rgb, dtype=np.float32), 0.0, 1.0)


def appearance(frame: torch.Tensor) -> Appearance:
    """Appearance statistics of ``frame`` (1, 3, H, W) float RGB in [0, 1]."""
    rgb = _thumbnail(frame)
    hsv = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV)  # H in [0, 360), S and V in [0, 1]
    colour = cv2.calcHist([hsv], [0, 1, 2], None, list(_HSV_BINS),
                          [0, 360, 0, 1.0001, 0, 1.0001]).ravel()
    colour /= max(float(colour.sum()), 1.0)
    luma = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    gx = cv2.Sobel(luma, cv2.CV_32F, 1, 0)
    gy = cv2.Sobel(luma, cv2.CV_32F, 0, 1)
    mag = np.sqrt(gx * gx + gy * gy)
    ang = np.mod(np.arctan2(gy, gx), np.pi)
    ori = np.histogram(ang, _ORI_BINS, (0.0, np.pi), weights=mag)[0].astype(np.float32)
    total = float(ori.sum())
    ori = ori / total if total > 1e-6 else np.zeros_like(ori)
    mh = np.histogram(np.minimum(mag, _MAG_MAX * 0.999), _MAG_BINS, (0.0, _MAG_MAX))[0]
    mh = mh.astype(np.float32) / max(mh.sum(), 1)
    return Appearance(colour=colour.astype(np.float32), orientation=ori, magnitude=mh,
                      mean=float(luma.mean()), std=float(luma.std()))


def appearance_distance(a: Appearance, b: Appearance) -> float:
    """Sum of the colour, edge and global-statistics distances (module docstring), >= 0."""
    def half_l1(x: np.ndarray, y: np.ndarray) -> float:
        return 0.5 * float(np.abs(x - y).sum())

    return (half_l1(a.colour, b.colour) + half_l1(a.orientation, b.orientation)
            + half_l1(a.magnitude, b.magnitude)
            + 2.0 * (abs(a.mean - b.mean) + abs(a.std - b.std)))


def shot_cut(
    previous: torch.Tensor,
    current: torch.Tensor,
    mask: torch.Tensor,
    *,
    flow_break: float = FLOW_BREAK,
    appearance_cut: float = APPEARANCE_CUT,
    always_compare: bool = True,
) -> CutScore:
    """Is there a shot cut between ``previous`` and ``current``?

    previous, current: (1, 3, H, W) float32 RGB in [0, 1] (any size; appearance is compared
    on thumbnails). mask: the pair's flow-consistency mask (1, 1, h, w) in [0, 1] (any
    size, e.g. :func:`vidstyle.flow.consistency_mask` on ``current``'s grid). A cut needs
    both a broken flow (consistent fraction < ``flow_break``) and a changed appearance
    (distance >= ``appearance_cut``): fast motion breaks only the flow. ``always_compare``
    False compares the appearance only where the flow is broken (the decision needs it
    only there; a few ms a frame saved in a video's flow stage): the returned appearance
    is then NaN for pairs whose flow holds.
    """
    consistent = float(mask.to(torch.float32).mean())
    if not always_compare and consistent >= flow_break:
        return CutScore(consistent=consistent, appearance=float("nan"), cut=False)
    dist = appearance_distance(appearance(previous), appearance(current))
    return CutScore(consistent=consistent, appearance=dist,
                    cut=consistent < flow_break and dist >= appearance_cut)


__all__ = ["APPEARANCE_CUT", "FLOW_BREAK", "THUMB_SIDE", "Appearance", "CutScore",
           "appearance", "appearance_distance", "shot_cut"]
