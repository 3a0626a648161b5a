"""Pure mask operations: feathering, compositing styled layers, edge bands, IoU, warping
and temporal smoothing of instance masks.

Shapes and units (CPU tensors, float32 unless stated):

- masks: (N, H, W) soft masks in [0, 1] (binary masks are soft masks with values 0, 1);
  a mask "covers" a pixel where its value is > 0.5 (:data:`MASK_THRESHOLD`);
- images: (1, 3, H, W) RGB in [0, 1]; styled layers: (K, 3, H, W), one per mask;
- flows: (1, 2, h, w) in pixels (see :mod:`vidstyle.flow.warp`); resized to the masks'
  size when they differ;
- distances (``radius_px``, ``width_px``) in pixels of the masks' grid, measured as the
  Chebyshev distance (max(|dx|, |dy|)): a square neighbourhood of half-width ``r``.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import torch

from vidstyle.flow.estimate import resize_flow
from vidstyle.flow.warp import warp

#: A soft mask covers a pixel where its value is above this (IoU, edges, hard ids).
MASK_THRESHOLD = 0.5


def _check_masks(masks: torch.Tensor, what: str = "masks") -> None:
    if masks.dim() != 3:
        raise ValueError(f"{what} must be (N, H, W), got {tuple(masks.shape)}")


def _hann_kernel(radius: int) -> np.ndarray:
    """Normalized raised-cosine weights (2r+1,) float32 with support exactly |k| <= r."""
    k = np.arange(-radius, radius + 1, dtype=np.float64)
    w = 0.5 * (1.0 + np.cos(np.pi * k / (radius + 1)))
    return (w / w.sum()).astype(np.float32)


def _square(radius: int) -> np.ndarray:
    return np.ones((2 * radius + 1, 2 * radius + 1), np.uint8)


def support_box(planes: np.ndarray | torch.Tensor, margin: int) -> tuple[int, int, int, int] | None:
    """The box (y0, x0, y1, x1), ends exclusive, of the pixels where any plane of
    ``planes`` (N, H, W) (bool or numbers) is nonzero, grown by ``margin`` pixels and
    clipped to the frame; None when every plane is zero. Pure mask operations whose
    result is zero far from a mask run on this box only (people cover little of a
    frame)."""
    any_plane = planes.any(0) if isinstance(planes, np.ndarray) else planes.any(0).numpy()
    rows, cols = np.nonzero(any_plane.any(1))[0], np.nonzero(any_plane.any(0))[0]
    if not len(rows):
        return None
    h, w = any_plane.shape
    return (max(0, int(rows[0]) - margin), max(0, int(cols[0]) - margin),
            min(h, int(rows[-1]) + 1 + margin), min(w, int(cols[-1]) + 1 + margin))


# cv2.dilate / cv2.erode ignore pixels outside the frame (their default border value),
# so the frame's border is never an edge; both work on one (H, W) plane at a time.


def feather(masks: torch.Tensor, radius_px: float) -> torch.Tensor:
    """Soft edges: blur each mask with a separable raised-cosine (Hann) kernel.

    masks: (N, H, W) in [0, 1]. radius_px: the kernel's half-width in pixels, rounded to
    an integer; 0 returns the masks unchanged. Returns (N, H, W) float32 in [0, 1].

    The kernel has compact support, so a value changes only within ``radius_px``
    (Chebyshev distance) of a pixel where the mask is not constant: a pixel whose whole
    (2r+1)^2 neighbourhood is 0 stays exactly 0 (an all-zero mask stays zero, and the
    background beyond the band is untouched), and one whose neighbourhood is all 1 stays
    exactly 1. Across a straight edge of a binary mask the profile rises monotonically
    from 0 to 1 over 2r+1 pixels and crosses 0.5 at the edge. The frame's border is not
    an edge (replicate padding): a mask touching the border stays solid up to it.
    About 15 ms per 1920x1080 mask at r = 8 (OpenCV, one thread).
    """
    _check_masks(masks)
    r = int(round(radius_px))
    if r < 0:
        raise ValueError(f"radius_px must be >= 0, got {radius_px}")
    x = masks.detach().to("cpu", torch.float32).clamp(0.0, 1.0).numpy()
    if r == 0 or x.size == 0:
        return torch.from_numpy(x.copy())
    k = _hann_kernel(r)
    out = np.zeros_like(x)
    for i, full in enumerate(x):
        # only the box around the mask changes (r + 1 zeros around it, or the frame's
        # border, whose replicate padding the crop's padding then equals)
        box = support_box(full[None], r + 1)
        if box is None:
            continue
        y0, x0, y1, x1 = box
        plane = full[y0:y1, x0:x1]
        y = cv2.sepFilter2D(plane, -1, k, k, borderType=cv2.BORDER_REPLICATE)
        np.clip(y, 0.0, 1.0, out=y)
        # Exact 0 and 1 where the whole neighbourhood is constant (no rounding residue).
        y[cv2.dilate(plane, _square(r)) <= 0.0] = 0.0
        y[cv2.erode(plane, _square(r)) >= 1.0] = 1.0
        out[i, y0:y1, x0:x1] = y
    return torch.from_numpy(out)


def composite(layers: torch.Tensor, masks: torch.Tensor,
              background: torch.Tensor) -> torch.Tensor:
    """Paint styled layers through soft masks over a background.

    layers: (K, 3, H, W) in [0, 1], layer k = the frame in person k's style.
    masks: (K, H, W) soft weights in [0, 1] (e.g. :func:`feather`ed), one per layer.
    background: (1, 3, H, W) or (3, H, W): the background's style, or the original frame.
    Returns (1, 3, H, W) float32:

        out = sum_k w_k L_k + (1 - sum_k w_k) * background,  w_k = m_k / max(1, sum_j m_j)

    i.e. where the masks overlap and sum above 1 they are renormalized to sum 1 (no
    background shows through); elsewhere they are used as they are. The weights are
    continuous in the masks (no seam at a mask's edge), and where every mask is 0 the
    result equals ``background`` exactly (bit for bit). K = 0 returns the background.
    """
    if background.dim() == 3:
        background = background.unsqueeze(0)
    if background.dim() != 4 or background.shape[:2] != (1, 3):
        raise ValueError(f"background must be (1, 3, H, W), got {tuple(background.shape)}")
    _check_masks(masks)
    if layers.dim() != 4 or layers.shape[1] != 3:
        raise ValueError(f"layers must be (K, 3, H, W), got {tuple(layers.shape)}")
    size = tuple(background.shape[-2:])
    if layers.shape[0] != masks.shape[0]:
        raise ValueError(f"{layers.shape[0]} layers but {masks.shape[0]} masks")
    if tuple(layers.shape[-2:]) != size or tuple(masks.shape[-2:]) != size:
        raise ValueError(f"layers {tuple(layers.shape[-2:])}, masks {tuple(masks.shape[-2:])} "
                         f"and background {size} must have one size")
    bg = background.to(torch.float32)
    if masks.shape[0] == 0:
        return bg.clone()
    m = masks.to(torch.float32).clamp(0.0, 1.0)
    total = m.sum(dim=0, keepdim=True)  # (1, H, W)
    w = m / total.clamp_min(1.0)
    w_bg = 1.0 - total.clamp_max(1.0)
    out = (w.unsqueeze(1) * layers.to(torch.float32)).sum(dim=0, keepdim=True)
    return out + w_bg.unsqueeze(1) * bg


def edge_band(masks: torch.Tensor, width_px: int) -> torch.Tensor:
    """The pixels within ``width_px`` of any mask's edge (to measure halos and seams).

    masks: (N, H, W) in [0, 1], thresholded at 0.5. Returns (H, W) bool: True where the
    (2w+1)^2 square around the pixel holds both a covered and an uncovered pixel of some
    mask (dilation minus erosion). The frame's border is not an edge. A mask feathered
    with ``radius_px <= width_px`` differs from its hard version only inside this band.
    N = 0 gives an all-False band.
    """
    _check_masks(masks)
    h, w = masks.shape[-2:]
    if masks.shape[0] == 0:
        return torch.zeros((h, w), dtype=torch.bool)
    r = int(width_px)
    if r < 0:
        raise ValueError(f"width_px must be >= 0, got {width_px}")
    if r == 0:
        return torch.zeros((h, w), dtype=torch.bool)
    band = np.zeros((h, w), dtype=bool)
    for plane in (masks > MASK_THRESHOLD).to(torch.uint8).numpy():
        band |= cv2.dilate(plane, _square(r)) != cv2.erode(plane, _square(r))
    return torch.from_numpy(band)


def iou_matrix(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Intersection over union of every pair of masks, thresholded at 0.5.

    a: (Na, H, W), b: (Nb, H, W), soft or binary. Returns (Na, Nb) float32 in [0, 1]; a
    pair whose union is empty scores 0.
    """
    _check_masks(a, "a")
    _check_masks(b, "b")
    if a.shape[-2:] != b.shape[-2:]:
        raise ValueError(f"mask sizes differ: {tuple(a.shape[-2:])} vs {tuple(b.shape[-2:])}")
    ba, bb = a > MASK_THRESHOLD, b > MASK_THRESHOLD
    box = support_box(torch.cat([ba, bb]), 0) if len(ba) and len(bb) else None
    if box is not None:  # pixels outside every mask count for no pair
        y0, x0, y1, x1 = box
        ba, bb = ba[:, y0:y1, x0:x1], bb[:, y0:y1, x0:x1]
    fa = ba.flatten(1).to(torch.float64)
    fb = bb.flatten(1).to(torch.float64)
    inter = fa @ fb.T
    union = fa.sum(1, keepdim=True) + fb.sum(1).unsqueeze(0) - inter
    iou = torch.where(union > 0, inter / union.clamp_min(1.0), torch.zeros_like(inter))
    return iou.to(torch.float32)


def box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """IoU of boxes a (Na, 4) and b (Nb, 4), pixels (x0, y0, x1, y1) -> (Na, Nb) float32;
    empty boxes score 0."""
    a = a.to(torch.float64).reshape(-1, 4)
    b = b.to(torch.float64).reshape(-1, 4)
    lt = torch.maximum(a[:, None, :2], b[None, :, :2])
    rb = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = (rb - lt).clamp_min(0.0).prod(dim=-1)
    area_a = (a[:, 2:] - a[:, :2]).clamp_min(0.0).prod(dim=-1)
    area_b = (b[:, 2:] - b[:, :2]).clamp_min(0.0).prod(dim=-1)
    union = area_a[:, None] + area_b[None, :] - inter
    iou = torch.where(union > 0, inter / union.clamp_min(1e-12), torch.zeros_like(inter))
    return iou.to(torch.float32)


def mask_boxes(masks: torch.Tensor) -> torch.Tensor:
    """Tight pixel boxes (x0, y0, x1, y1) of masks (N, H, W) thresholded at 0.5, with x1,
    y1 one past the last covered pixel -> (N, 4) float32; an empty mask gives zeros."""
    _check_masks(masks)
    b = masks > MASK_THRESHOLD
    out = torch.zeros((masks.shape[0], 4), dtype=torch.float32)
    cols, rows = b.any(dim=1), b.any(dim=2)  # (N, W), (N, H)
    for i in range(masks.shape[0]):
        xs = torch.nonzero(cols[i]).flatten()
        ys = torch.nonzero(rows[i]).flatten()
        if xs.numel():
            out[i] = torch.tensor([xs[0], ys[0], xs[-1] + 1, ys[-1] + 1], dtype=torch.float32)
    return out


def warp_masks(masks: torch.Tensor, backward: torch.Tensor) -> torch.Tensor:
    """The previous frame's masks moved onto this frame's grid.

    masks: (N, H, W) on the previous frame. backward: (1, 2, h, w) flow this frame ->
    previous frame in pixels (``FramePair.backward``), resized (vectors scaled) to (H, W)
    when its size differs. Returns (N, H, W) float32 in [0, 1]: out(x) = masks(x +
    backward(x)), bilinear, border pixels repeated outside the previous frame.
    """
    _check_masks(masks)
    if masks.shape[0] == 0:
        return masks.to(torch.float32).clone()
    size = tuple(masks.shape[-2:])
    flow = resize_flow(backward.to(torch.float32), size)
    m = masks.to(torch.float32)
    # out(x) is 0 wherever x + flow(x) is more than a pixel from every mask: warp only
    # the box around the masks grown by the largest displacement (exact: the crop's
    # clamped border reads zeros where the frame has zeros, or is the frame's border)
    reach = float(flow.abs().amax()) if flow.numel() else 0.0
    if not math.isfinite(reach):
        return warp(m.unsqueeze(1), flow, padding="border").squeeze(1).clamp(0.0, 1.0)
    box = support_box(m > 0, int(math.ceil(reach)) + 2)
    if box is None:
        return torch.zeros_like(m)
    y0, x0, y1, x1 = box
    out = torch.zeros_like(m)
    crop = warp(m[:, y0:y1, x0:x1].unsqueeze(1).contiguous(),
                flow[:, :, y0:y1, x0:x1].contiguous(), padding="border")
    out[:, y0:y1, x0:x1] = crop.squeeze(1).clamp(0.0, 1.0)
    return out


#: Defaults of :func:`smooth_masks`.
SMOOTH_STRENGTH = 0.6
SMOOTH_TOLERANCE = 0.5


def smooth_masks(current: torch.Tensor, previous_warped: torch.Tensor, *,
                 strength: float = SMOOTH_STRENGTH, tolerance: float = SMOOTH_TOLERANCE,
                 reliable: torch.Tensor | None = None) -> torch.Tensor:
    """Temporal smoothing of soft masks: lean on the previous frame where it agrees.

    current: (N, H, W) this frame's (feathered) masks. previous_warped: (N, H, W) the same
    people's smoothed masks of the previous frame, warped onto this frame (see
    :func:`warp_masks`); row i of both is one person. reliable: optional (H, W),
    (1, H, W) or (1, 1, H, W) weight in [0, 1], e.g. ``FramePair.mask`` (0 where the
    flow cannot be trusted: there the current mask is kept). Returns (N, H, W) float32.

    The rule, per pixel, with d = |current - previous_warped|::

        w   = strength * clamp(1 - d / tolerance, 0, 1) * reliable
        out = (1 - w) * current + w * previous_warped

    Where the two agree (a still edge flickering by a few hundredths) the output leans on
    the previous frame by up to ``strength``, an exponential moving average that stops
    the flicker; as they disagree more, the weight falls linearly, and from
    ``d >= tolerance`` on (an edge the flow did not follow, a limb moving, a person
    appearing) the current mask is kept as it is, so moving edges stay sharp and never
    lag. The output lies between the two inputs (so in [0, 1], and 0 where both are 0).
    Feed the output back, warped, as the next frame's ``previous_warped``.
    """
    _check_masks(current, "current")
    if current.shape != previous_warped.shape:
        raise ValueError(f"current {tuple(current.shape)} and previous_warped "
                         f"{tuple(previous_warped.shape)} differ")
    if not 0.0 <= strength <= 1.0:
        raise ValueError(f"strength must be in [0, 1], got {strength}")
    if tolerance <= 0.0:
        raise ValueError(f"tolerance must be > 0, got {tolerance}")
    c = current.to(torch.float32)
    p = previous_warped.to(torch.float32)
    w = strength * (1.0 - (c - p).abs() / tolerance).clamp(0.0, 1.0)
    if reliable is not None:
        w = w * reliable.to(torch.float32).reshape(1, *c.shape[-2:]).clamp(0.0, 1.0)
    return ((1.0 - w) * c + w * p).clamp(0.0, 1.0)


def hard_ids(masks: torch.Tensor, ids: tuple[int, ...] | list[int]) -> torch.Tensor:
    """Instance-id map: each pixel the id of its strongest mask above 0.5, else 0.

    masks: (N, H, W) in [0, 1]; ids: N ids (>= 1). Returns (H, W) int64 (ties: the
    first mask).
    """
    _check_masks(masks)
    h, w = masks.shape[-2:]
    if len(ids) != masks.shape[0]:
        raise ValueError(f"{masks.shape[0]} masks but {len(ids)} ids")
    if masks.shape[0] == 0:
        return torch.zeros((h, w), dtype=torch.int64)
    best, arg = masks.to(torch.float32).max(dim=0)
    lut = torch.tensor(list(ids), dtype=torch.int64)
    return torch.where(best > MASK_THRESHOLD, lut[arg], torch.zeros_like(arg))


__all__ = [
    "MASK_THRESHOLD",
    "box_iou",
    "composite",
    "edge_band",
    "feather",
    "hard_ids",
    "iou_matrix",
    "mask_boxes",
    "smooth_masks",
    "support_box",
    "warp_masks",
]
