"""Face regions for ``--detail``: soft ellipses in the face boxes."""

from __future__ import annotations

import math

import torch

from vidstyle.segment.faces import face_mask


def _full_frame(faces: torch.Tensor, size: tuple[int, int], feather: float) -> torch.Tensor:
    """The definition over every pixel of the frame: max over faces of the feathered
    ellipse (signed radial distance to the edge, soft over ``feather`` px)."""
    h, w = size
    ys = torch.arange(h, dtype=torch.float32)[:, None] + 0.5
    xs = torch.arange(w, dtype=torch.float32)[None, :] + 0.5
    out = torch.zeros(h, w)
    for x0, y0, x1, y1 in faces.tolist():
        if any(math.isnan(v) for v in (x0, y0, x1, y1)) or x1 <= x0 or y1 <= y0:
            continue
        cx, cy, rx, ry = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 2, (y1 - y0) / 2
        dist = (torch.sqrt(((xs - cx) / rx) ** 2 + ((ys - cy) / ry) ** 2) - 1) * min(rx, ry)
        m = (0.5 - dist / feather).clamp(0, 1) if feather > 0 else (dist <= 0).float()
        out = torch.maximum(out, m)
    return out


def test_face_mask_equals_the_full_frame_definition() -> None:
    """Computed on crops around each face, the regions equal the per-pixel definition
    over the whole frame, for faces inside, at and beyond the border, overlapping, tiny,
    missing (NaN) and empty, hard and feathered."""
    g = torch.Generator().manual_seed(0)
    size = (60, 90)
    for feather in (0.0, 2.5, 9.0):
        for _ in range(25):
            corner = torch.rand(4, 2, generator=g) * torch.tensor([110.0, 80.0]) - 10
            extent = torch.rand(4, 2, generator=g) * 30 + 0.5
            faces = torch.cat([corner, corner + extent], dim=1)
            faces[1] = float("nan")
            faces[2, 2] = faces[2, 0]  # empty box
            got = face_mask(faces, size, feather)
            assert torch.equal(got, _full_frame(faces, size, feather))
    assert face_mask(torch.zeros(0, 4), size, 3.0).abs().sum() == 0
