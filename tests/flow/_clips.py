"""Helpers shared by the flow tests: decoding small clips and synthetic scenes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import av
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image


def decode(path: Path, *, max_side: int = 384, limit: int | None = None, start: int = 0,
           step: int = 1) -> Iterator[torch.Tensor]:
    """Frames of a video as (1, 3, h, w) float32 in [0, 1], downscaled to ``max_side``.

    Frames ``start``, ``start + step``, ... before index ``limit`` (step 3: a stress clip
    with three times the motion, made here from the kit's clip; nothing is written).
    """
    with av.open(str(path)) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if limit is not None and i >= limit:
                return
            if i < start or (i - start) % step:
                continue
            arr = frame.to_ndarray(format="rgb24")
            t = torch.from_numpy(arr).permute(2, 0, 1)[None].float() / 255
            h, w = t.shape[-2:]
            s = max_side / max(h, w)
            if s < 1:
                size = (round(h * s), round(w * s))
                t = F.interpolate(t, size=size, mode="bilinear", antialias=True)
            yield t


def read_rgb(path: Path) -> torch.Tensor:
    """Image file -> (1, 3, H, W) float32 in [0, 1]."""
    with Image.open(path) as im:
        arr = np.array(im.convert("RGB"))
    return torch.from_numpy(arr).permute(2, 0, 1)[None].float() / 255


def smooth_texture(h: int, w: int, seed: int, blur: int = 5) -> torch.Tensor:
    """A (1, 3, h, w) random texture in [0, 1], smoothed so flow methods can track it."""
    g = torch.Generator().manual_seed(seed)
    noise = torch.rand(1, 3, h + 2 * blur, w + 2 * blur, generator=g)
    k = torch.ones(3, 1, 2 * blur + 1, 2 * blur + 1) / (2 * blur + 1) ** 2
    t = F.conv2d(noise, k, groups=3)
    t = (t - t.amin()) / (t.amax() - t.amin())
    return t


def moving_square(
    h: int = 64,
    w: int = 80,
    *,
    top: int = 20,
    left: int = 20,
    side: int = 20,
    dx: int = 6,
    dy: int = 3,
) -> dict[str, torch.Tensor]:
    """A textured square moving by (dx, dy) over a static textured background.

    Returns frames a, b (1, 3, h, w), the exact forward (a -> b) and backward (b -> a)
    flows, and boolean (h, w) region masks on b's grid: old (square in a), new (square
    in b).
    """
    bg = smooth_texture(h, w, seed=1)
    fg = smooth_texture(side, side, seed=2, blur=2)
    a, b = bg.clone(), bg.clone()
    a[..., top : top + side, left : left + side] = fg
    b[..., top + dy : top + dy + side, left + dx : left + dx + side] = fg
    old = torch.zeros(h, w, dtype=torch.bool)
    old[top : top + side, left : left + side] = True
    new = torch.zeros(h, w, dtype=torch.bool)
    new[top + dy : top + dy + side, left + dx : left + dx + side] = True
    forward = torch.zeros(1, 2, h, w)
    forward[0, 0][old], forward[0, 1][old] = float(dx), float(dy)
    backward = torch.zeros(1, 2, h, w)
    backward[0, 0][new], backward[0, 1][new] = float(-dx), float(-dy)
    return {"a": a, "b": b, "forward": forward, "backward": backward, "old": old, "new": new}


def dilate(mask: torch.Tensor, r: int = 1) -> torch.Tensor:
    """Binary dilation of an (h, w) bool mask by a (2r+1)^2 square."""
    m = mask.float()[None, None]
    return F.max_pool2d(m, 2 * r + 1, stride=1, padding=r)[0, 0] > 0


def four_neighbour_edge(mask: torch.Tensor) -> torch.Tensor:
    """Pixels of an (h, w) bool mask with a left/right/up/down neighbour of the other kind."""
    m = F.pad(mask.float()[None, None], (1, 1, 1, 1), mode="replicate")[0, 0]
    c = m[1:-1, 1:-1]
    diff = (m[1:-1, :-2] != c) | (m[1:-1, 2:] != c) | (m[:-2, 1:-1] != c) | (m[2:, 1:-1] != c)
    return diff


def erode(mask: torch.Tensor, r: int = 1) -> torch.Tensor:
    return ~dilate(~mask, r)
