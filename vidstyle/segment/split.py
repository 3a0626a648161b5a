"""Splitting a whole-frame person matte into people, with boxes and masks as evidence.

A semantic matte (one soft "person here" map of the whole frame, from a matting model)
is good on full scenes, truncated people and close-ups, where per-crop person masks
fail, but says nothing of who is who. Instance evidence comes from person boxes (a
detector) and, optionally, from other people found with their own masks. Each matte
pixel is shared among the boxes that claim it: a box claims the pixels inside it
(enlarged by ``margin`` of its size), most strongly near its centre (a Gaussian of
``sigma`` box sizes); contested pixels are shared in proportion to ``claim ** power``
(large powers: the strongest claim takes nearly all). Pure numpy, no model.

Shapes: matte (H, W) float in [0, 1]; boxes (K, 4) pixel (x0, y0, x1, y1); masks
(K, H, W) float32 in [0, 1].
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vidstyle.errors import UsageError

#: Defaults chosen by the overall numbers of ``benchmarks/bench_masks.py`` (never per
#: image); see benchmarks/RESULTS.md, "Other person models measured".
SIGMA = 0.5
POWER = 4.0
MARGIN = 0.1
#: A box whose matte mean is below this holds no person (a detector false positive).
MIN_FILL = 0.15
#: A person with its own mask is the same as a box when their box IoU is at least this.
SAME_PERSON_IOU = 0.5
#: How much a matched person's own mask weighs in its claim (the box claim: the rest).
MASK_WEIGHT = 0.5


@dataclass(frozen=True)
class SplitParams:
    """How :func:`people_from_matte` shares a matte among people (see its docstring):
    box-claim ``sigma``, ``power`` and ``margin``; ``min_fill``, ``same_iou`` and
    ``mask_weight``. Defaults: the module's constants. Out-of-range values raise
    UsageError."""

    sigma: float = SIGMA
    power: float = POWER
    margin: float = MARGIN
    min_fill: float = MIN_FILL
    same_iou: float = SAME_PERSON_IOU
    mask_weight: float = MASK_WEIGHT

    def __post_init__(self) -> None:
        for label in ("min_fill", "same_iou", "mask_weight"):
            v = getattr(self, label)
            if not (0.0 <= v <= 1.0):
                raise UsageError(f"matte {label} must be in [0, 1], got {v}")
        if self.sigma <= 0 or self.power <= 0 or self.margin < 0:
            raise UsageError("matte sigma and power must be > 0, margin >= 0")

    def describe(self) -> str:
        """``name=value`` pairs for a fingerprint or repr."""
        return ",".join(f"{k}={getattr(self, k):g}" for k in self.__dataclass_fields__)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix (len(a), len(b)) of pixel boxes (x0, y0, x1, y1)."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    x0 = np.maximum(a[:, None, 0], b[None, :, 0])
    y0 = np.maximum(a[:, None, 1], b[None, :, 1])
    x1 = np.minimum(a[:, None, 2], b[None, :, 2])
    y1 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)

    def area(x: np.ndarray) -> np.ndarray:
        return np.clip(x[:, 2] - x[:, 0], 0, None) * np.clip(x[:, 3] - x[:, 1], 0, None)

    union = area(a)[:, None] + area(b)[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def box_claims(boxes: np.ndarray, size: tuple[int, int], *, sigma: float = SIGMA,
               margin: float = MARGIN) -> np.ndarray:
    """(K, H, W) float32: how strongly each box claims each pixel (0 outside the box
    enlarged by ``margin`` of its width/height; a Gaussian of ``sigma`` box sizes around
    its centre inside, 1 at the centre)."""
    h, w = size
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    out = np.zeros((len(boxes), h, w), np.float32)
    for k, (x0, y0, x1, y1) in enumerate(boxes):
        bw, bh = max(x1 - x0, 1.0), max(y1 - y0, 1.0)
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        c0 = int(np.clip(np.floor(x0 - margin * bw), 0, w))
        c1 = int(np.clip(np.ceil(x1 + margin * bw), 0, w))
        r0 = int(np.clip(np.floor(y0 - margin * bh), 0, h))
        r1 = int(np.clip(np.ceil(y1 + margin * bh), 0, h))
        if c1 <= c0 or r1 <= r0:
            continue
        gx = np.exp(-0.5 * ((np.arange(c0, c1) + 0.5 - cx) / (sigma * bw)) ** 2)
        gy = np.exp(-0.5 * ((np.arange(r0, r1) + 0.5 - cy) / (sigma * bh)) ** 2)
        out[k, r0:r1, c0:c1] = (gy[:, None] * gx[None, :]).astype(np.float32)
    return out


def split_matte(matte: np.ndarray, boxes: np.ndarray, *, sigma: float = SIGMA,
                power: float = POWER, margin: float = MARGIN) -> np.ndarray:
    """The matte shared among ``boxes`` (see the module doc): (K, H, W) float32 whose
    sum over K is the matte wherever some box claims the pixel, 0 elsewhere."""
    matte = np.asarray(matte, np.float32)
    claims = box_claims(boxes, matte.shape, sigma=sigma, margin=margin)
    if not len(claims):
        return claims
    weights = claims ** power
    total = weights.sum(0)
    share = np.divide(weights, total[None], out=np.zeros_like(weights),
                      where=total[None] > 0)
    return share * matte[None]


def box_fill(matte: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """(K,) the matte's mean inside each box (clipped to the frame; 0 for empty boxes)."""
    h, w = matte.shape
    out = np.zeros(len(boxes), np.float64)
    for k, (x0, y0, x1, y1) in enumerate(np.asarray(boxes, np.float64).reshape(-1, 4)):
        c0, c1 = int(round(max(x0, 0))), int(round(min(x1, w)))
        r0, r1 = int(round(max(y0, 0))), int(round(min(y1, h)))
        if c1 > c0 and r1 > r0:
            out[k] = float(matte[r0:r1, c0:c1].mean())
    return out


def match_boxes(a: np.ndarray, b: np.ndarray, min_iou: float) -> list[tuple[int, int]]:
    """One-to-one pairs (i, j) of boxes ``a[i]``, ``b[j]`` with IoU >= ``min_iou``, greedy
    by decreasing IoU."""
    iou = box_iou(a, b)
    pairs: list[tuple[int, int]] = []
    used_a: set[int] = set()
    used_b: set[int] = set()
    for flat in np.argsort(-iou, axis=None):
        i, j = np.unravel_index(flat, iou.shape)
        if iou[i, j] < min_iou:
            break
        if i not in used_a and j not in used_b:
            pairs.append((int(i), int(j)))
            used_a.add(int(i))
            used_b.add(int(j))
    return pairs


def people_from_matte(
    matte: np.ndarray,
    boxes: np.ndarray,
    *,
    masks: np.ndarray | None = None,
    mask_boxes: np.ndarray | None = None,
    params: SplitParams = SplitParams(),  # noqa: B008 - frozen, so one shared default
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """People of a frame from its matte, detector boxes and people found with own masks.
    (``min_fill``, ``same_iou``, ``mask_weight``, ``sigma``, ``margin`` and ``power``
    below are those of ``params``.)

    Boxes the matte does not fill (mean < ``min_fill``) are dropped. A kept box and a
    masked person (``masks`` (M, H, W) soft, ``mask_boxes`` (M, 4)) are one person when
    their boxes match (:func:`match_boxes`, IoU >= ``same_iou``): its claim on the pixels
    is ``(1 - mask_weight) x`` the box claim (:func:`box_claims`) ``+ mask_weight x`` its
    mask. Masked people matching no box claim with their mask alone and keep at least
    their own mask. The matte is shared by ``claim ** power`` as in :func:`split_matte`.

    Returns (masks (N, H, W) float32 in [0, 1], boxes (N, 4), box_index (N,) int64: the
    detector box each one comes from or -1, mask_index (N,) int64: the masked person each
    one comes from or -1); kept boxes come first in detector order, then the unmatched
    masked people.
    """
    sigma, power, margin = params.sigma, params.power, params.margin
    mask_weight = params.mask_weight
    matte = np.asarray(matte, np.float32)
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    box_index = np.nonzero(box_fill(matte, boxes) >= params.min_fill)[0].astype(np.int64)
    kept = boxes[box_index]
    claims = box_claims(kept, matte.shape, sigma=sigma, margin=margin)
    origin = np.full(len(kept), -1, np.int64)
    out_boxes = [kept]
    extra: list[int] = []
    if masks is not None and len(masks):
        own = np.asarray(masks, np.float32)
        mb = np.asarray(mask_boxes, np.float64).reshape(-1, 4)
        for k, j in match_boxes(kept, mb, params.same_iou):
            claims[k] = (1.0 - mask_weight) * claims[k] + mask_weight * own[j]
            origin[k] = j
        extra = sorted(set(range(len(own))) - set(origin.tolist()))
        if extra:
            claims = np.concatenate([claims, own[extra]])
            origin = np.concatenate([origin, np.asarray(extra, np.int64)])
            box_index = np.concatenate([box_index, np.full(len(extra), -1, np.int64)])
            out_boxes.append(mb[extra])
    if not len(claims):
        return claims, np.zeros((0, 4)), box_index, origin
    weights = claims ** power
    total = weights.sum(0)
    out = np.divide(weights, total[None], out=np.zeros_like(weights),
                    where=total[None] > 0) * matte[None]
    if extra:
        own_extra = np.asarray(masks, np.float32)[extra]
        out[len(kept):] = np.maximum(out[len(kept):], own_extra)
    return np.clip(out, 0.0, 1.0), np.concatenate(out_boxes), box_index, origin


__all__ = ["MARGIN", "MASK_WEIGHT", "MIN_FILL", "POWER", "SAME_PERSON_IOU", "SIGMA", "box_claims",
           "box_fill", "box_iou", "match_boxes", "people_from_matte", "split_matte"]
