"""Tiled inference of the fast network for frames too large to run in one piece.

Two things make naive tiling visible, and both are handled:

1. Borders. A tile's pixels near its edge see reflection padding instead of their real
   neighbours. Each tile is therefore run with an ``overlap`` margin (larger than the
   network's receptive-field radius, about 38 px) and only its core is kept; cores meet
   with a linear cross-fade ``feather`` px wide. Tile origins are multiples of 4 so the
   two stride-2 levels sample the same grid as the whole frame, which makes a tile's core
   equal to the untiled result given the same normalization statistics.
2. Statistics. Conditional instance norm normalizes with the mean and variance over the
   WHOLE frame; per-tile statistics would give every tile its own colours. All tiles use
   shared per-layer statistics instead, measured on the whole frame shrunk to at most
   ``stats_pixels`` pixels (the frame itself when it fits, which makes the result exact).
   Shrinking changes the statistics somewhat (finer detail per pixel raises early-layer
   variances), so colours shift a little against an untiled run at full size, but
   identically in every tile: no seams. Optional ``refine`` passes accumulate each layer's
   full-resolution statistics over the tile cores (Chan et al.'s merge) and feed them to
   the next pass; pass k makes layer k exact, so only ``refine`` >= the 12 layers is exact
   and fewer passes can be worse than none (mixed statistics): off by default.

Images are (1, 3, H, W) float32 RGB in [0, 1].
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from vidstyle.fast.inference import InferenceNet, merge_stats

#: Frames with more pixels than this are tiled when ``FastConfig.tile`` is 0 (automatic).
#: About 2 GB of activations in float32 at 4096x2304.
MAX_UNTILED_PIXELS = 4096 * 2304
#: Core size of automatic tiles (pixels).
AUTO_TILE = 1024
#: Margin around each tile core (multiple of 4, > the receptive-field radius).
OVERLAP = 64
#: Width of the cross-fade between neighbouring cores (<= 2 * (OVERLAP - 38)).
FEATHER = 32
#: Most pixels of the shrunk frame whose statistics all tiles share.
STATS_PIXELS = 1920 * 1088


def tile_size_for(h: int, w: int, tile: int) -> int:
    """Core tile size to use for an (h, w) frame, or 0 for no tiling.

    tile: ``FastConfig.tile``; 0 = automatic (tiles of :data:`AUTO_TILE` only above
    :data:`MAX_UNTILED_PIXELS`), > 0 = tile whenever a side exceeds it.
    """
    if tile <= 0:
        return AUTO_TILE if h * w > MAX_UNTILED_PIXELS else 0
    t = max(64, (tile // 4) * 4)
    return t if max(h, w) > t else 0


def _spans(n: int, tile: int, align: int = 4) -> list[tuple[int, int]]:
    """Split [0, n) into near-equal cores whose starts are multiples of ``align``."""
    count = max(1, math.ceil(n / tile))
    step = max(align, math.ceil(n / count / align) * align)
    spans, s = [], 0
    while s < n:
        spans.append((s, min(n, s + step)))
        s += step
    return spans


def tile_grid(
    h: int, w: int, tile: int, overlap: int = OVERLAP, align: int = 4
) -> list[tuple[tuple[int, int, int, int], tuple[int, int, int, int]]]:
    """Tiles of an (h, w) frame: [(core, extent)], each (y0, y1, x0, x1) in pixels.

    Cores partition the frame; extents add ``overlap`` (clipped to the frame). Core starts
    and the overlap are multiples of ``align`` (``InferenceNet.alignment``).
    """
    if overlap % align:
        raise ValueError(f"overlap must be a multiple of {align}, got {overlap}")
    out = []
    for y0, y1 in _spans(h, tile, align):
        for x0, x1 in _spans(w, tile, align):
            ext = (max(0, y0 - overlap), min(h, y1 + overlap),
                   max(0, x0 - overlap), min(w, x1 + overlap))
            out.append(((y0, y1, x0, x1), ext))
    return out


def _ramp(e0: int, e1: int, c0: int, c1: int, n: int, feather: int) -> torch.Tensor:
    """1-D blend weights over [e0, e1): 1 inside the core, linear cross-fades centred on
    its inner borders (none at the frame's edges)."""
    p = torch.arange(e0, e1, dtype=torch.float32) + 0.5
    wgt = torch.ones_like(p)
    if c0 > 0:
        wgt = wgt * ((p - (c0 - feather / 2)) / feather).clamp(0, 1)
    if c1 < n:
        wgt = wgt * (((c1 + feather / 2) - p) / feather).clamp(0, 1)
    return wgt


def feather_weights(
    core: tuple[int, int, int, int], ext: tuple[int, int, int, int], h: int, w: int,
    feather: int = FEATHER,
) -> torch.Tensor:
    """(1, 1, ext_h, ext_w) blend weights of one tile; the weights of all tiles sum to 1."""
    wy = _ramp(ext[0], ext[1], core[0], core[1], h, feather)
    wx = _ramp(ext[2], ext[3], core[2], core[3], w, feather)
    return (wy[:, None] * wx[None, :])[None, None]


def frame_stats(
    net: InferenceNet, x: torch.Tensor, style_weights: torch.Tensor,
    max_pixels: int = STATS_PIXELS,
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per-layer (mean, var), each (1, C), of the frame shrunk to at most ``max_pixels``."""
    h, w = x.shape[-2:]
    s = min(1.0, math.sqrt(max_pixels / (h * w)))
    small = x
    if s < 1.0:
        size = (max(16, round(h * s)), max(16, round(w * s)))
        small = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)
    _, rec = net.forward_stats(small, style_weights)
    return merge_stats([rec])


def tiled_forward(
    net: InferenceNet,
    x: torch.Tensor,
    style_weights: torch.Tensor,
    *,
    tile: int,
    overlap: int = OVERLAP,
    feather: int = FEATHER,
    refine: int = 0,
    stats_pixels: int = STATS_PIXELS,
) -> torch.Tensor:
    """Network output for a large frame, computed tile by tile.

    net: the float32 :class:`InferenceNet`; x: (1, 3, H, W) in [0, 1]; style_weights (1, S).
    tile: core size in px; stats_pixels: size budget of the statistics pass; refine: extra
    tiled passes re-estimating the statistics at full resolution (see the module doc).
    overlap and feather are in the network's pixels: a network with ``space_to_depth`` f
    sees f times farther, so both are scaled by f.
    Returns (1, 3, H, W) float32 in [0, 1] on the CPU (the tiles run on the device of
    ``net``'s weights).
    """
    if x.dim() != 4 or x.shape[0] != 1:
        raise ValueError(f"tiled_forward takes one image (1, 3, H, W), got {tuple(x.shape)}")
    if 2 * (overlap - 40) < feather:
        raise ValueError(f"feather {feather} is too wide for overlap {overlap}")
    h, w = x.shape[-2:]
    f = net.space_to_depth
    overlap, feather = overlap * f, feather * f
    device = net.weights[0].device  # the tiles run where the network's weights are
    x, style_weights = x.to(device), style_weights.to(device)
    grid = tile_grid(h, w, tile, overlap, align=net.alignment)
    stats = frame_stats(net, x, style_weights, stats_pixels)
    for _ in range(refine):
        parts = []
        for core, ext in grid:
            local = (core[0] - ext[0], core[1] - ext[0], core[2] - ext[2], core[3] - ext[2])
            crop = x[:, :, ext[0]:ext[1], ext[2]:ext[3]]
            _, rec = net.forward_stats(crop, style_weights, stats=stats, core=local)
            parts.append(rec)
        stats = merge_stats(parts)
    out = torch.zeros(1, 3, h, w)
    norm = torch.zeros(1, 1, h, w)
    for core, ext in grid:
        crop = x[:, :, ext[0]:ext[1], ext[2]:ext[3]]
        y = net._run(crop, style_weights, stats=stats).float().cpu()
        wgt = feather_weights(core, ext, h, w, feather)
        out[:, :, ext[0]:ext[1], ext[2]:ext[3]] += y * wgt
        norm[:, :, ext[0]:ext[1], ext[2]:ext[3]] += wgt
    return out / norm.clamp_min(1e-8)


__all__ = [
    "AUTO_TILE",
    "FEATHER",
    "MAX_UNTILED_PIXELS",
    "OVERLAP",
    "STATS_PIXELS",
    "feather_weights",
    "frame_stats",
    "tile_grid",
    "tile_size_for",
    "tiled_forward",
]
