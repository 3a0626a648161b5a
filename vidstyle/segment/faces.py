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
    for x0, y0, x1, y1 in faces.float().tolist():
        if any(math.isnan(v) for v in (x0, y0, x1, y1)) or x1 <= x0 or y1 <= y0:
            continue
        cx, cy, rx, ry = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 2, (y1 - y0) / 2
        # only the pixels the ellipse and its soft edge can reach (dist < feather / 2)
        reach = 1.0 + (0.5 * feather_px + 1.0) / min(rx, ry)
        r0, r1 = max(0, math.floor(cy - ry * reach)), min(h, math.ceil(cy + ry * reach) + 1)
        c0, c1 = max(0, math.floor(cx - rx * reach)), min(w, math.ceil(cx + rx * reach) + 1)
        if r0 >= r1 or c0 >= c1:
            continue
        ys = torch.arange(r0, r1, dtype=torch.float32)[:, None] + 0.5
        xs = torch.arange(c0, c1, dtype=torch.float32)[None, :] + 0.5
        # signed distance to the ellipse edge in pixels (approximate: radial scaling)
        r = torch.sqrt(((xs - cx) / rx) ** 2 + ((ys - cy) / ry) ** 2)
        dist = (r - 1.0) * min(rx, ry)
        if feather_px > 0:
            m = (0.5 - dist / feather_px).clamp(0.0, 1.0)
        else:
            m = (dist <= 0).float()
        torch.maximum(out[r0:r1, c0:c1], m, out=out[r0:r1, c0:c1])
    return out


__all__ = ["face_mask"]
