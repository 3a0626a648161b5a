"""Image helpers: the uint8 resize used on decoded frames agrees with the float resize."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from vidstyle.imageops import resize, resize_uint8
from vidstyle.tensors import to_tensor


def test_resize_uint8_matches_the_antialiased_float_resize_on_a_photo(data_dir: Path) -> None:
    with Image.open(data_dir / "content" / "tubingen.jpg") as im:
        rgb = np.asarray(im.convert("RGB"))
    size = (rgb.shape[0] // 2 - 1, rgb.shape[1] // 2 + 1)
    fast = to_tensor(resize_uint8(rgb, size))
    ref = resize(to_tensor(rgb), size)
    assert fast.shape == ref.shape == (1, 3, *size)
    assert float((fast - ref).abs().mean()) < 0.01  # rounding and filter differences only
    # enlarging, same size, and an alpha plane keep their number of dimensions
    assert resize_uint8(rgb[:10, :12], (20, 24)).shape == (20, 24, 3)
    assert resize_uint8(rgb, rgb.shape[:2]) is rgb
    alpha = np.full((30, 40), 200, np.uint8)
    out = resize_uint8(alpha, (15, 20))
    assert out.shape == (15, 20) and out.dtype == np.uint8 and int(out.min()) == 200
    assert torch.equal(to_tensor(resize_uint8(rgb[:8, :8], (8, 8))), to_tensor(rgb[:8, :8]))
