"""Conversions at the edge between media arrays and the internal tensor convention.

Inside vidstyle every image is a float32 RGB tensor in [0, 1] of shape (B, 3, H, W);
every flow field is a float32 tensor (B, 2, H, W) in pixels (channel 0 = x, 1 = y).
Media code speaks numpy uint8 (H, W, 3) RGB; these two functions are the only bridge.
"""

from __future__ import annotations

import numpy as np
import torch


def to_tensor(rgb: np.ndarray, device: torch.device | str = "cpu") -> torch.Tensor:
    """(H, W, 3) uint8 RGB -> (1, 3, H, W) float32 in [0, 1] on ``device``."""
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected (H, W, 3) uint8, got {rgb.shape} {rgb.dtype}")
    rgb = np.ascontiguousarray(rgb)
    if not rgb.flags.writeable:
        rgb = rgb.copy()
    t = torch.from_numpy(rgb).to(device)
    return t.permute(2, 0, 1).unsqueeze(0).float().div_(255.0)


def to_uint8(image: torch.Tensor) -> np.ndarray:
    """(1, 3, H, W) or (3, H, W) float in [0, 1] -> (H, W, 3) uint8 RGB (rounded, clamped)."""
    if image.dim() == 4:
        if image.shape[0] != 1:
            raise ValueError(f"expected a batch of one, got {tuple(image.shape)}")
        image = image[0]
    arr = image.detach().float().clamp(0, 1).mul(255.0).round().byte()
    return arr.permute(1, 2, 0).contiguous().cpu().numpy()
