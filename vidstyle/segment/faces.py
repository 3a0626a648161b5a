"""Face regions of people, for ``--detail`` (less style inside faces)."""

from __future__ import annotations

import math

import torch


def face_mask(faces: torch.Tensor, size: tuple[int, int], feather_px: float = 0.0
              ) -> torch.Tensor:
    """Soft elliptical face regions (H, W) in [0, 1] from face boxes.

    faces: (N, 4) boxes (x0, y0, x1, y1) in pixels; rows with NaN (no face found) are
    skipped. size: (H, W). feather_px: width of the soft edge in pixels (0: hard). Each
    ellipse fills its box; overlapping faces take the maximum.
    """
    h, w = size
    out = torch.zeros(h, w)
    if faces.numel() == 0:
        return out
    ys = torch.arange(h, dtype=torch.float32)[:, None] + 0.5
    xs = torch.arange(w, dtype=torch.float32)[None, :] + 0.5
    for x0, y0, x1, y1 in faces.float().tolist():
        if any(math.isnan(v) for v in (x0, y0, x1, y1)) or x1 <= x0 or y1 <= y0:
            continue
        cx, cy, rx, ry = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 2, (y1 - y0) / 2
        # signed distance to the ellipse edge in pixels (approximate: radial scaling)
        r = torch.sqrt(((xs - cx) / rx) ** 2 + ((ys - cy) / ry) ** 2)
        dist = (r - 1.0) * min(rx, ry)
        if feather_px > 0:
            m = (0.5 - dist / feather_px).clamp(0.0, 1.0)
        else:
            m = (dist <= 0).float()
        out = torch.maximum(out, m)
    return out


__all__ = ["face_mask"]
