"""Still images (jpg, png, webp, bmp, tiff) read and written with Pillow.

A still image is a one-frame video for the rest of vidstyle: :func:`read_image` returns the
same :class:`Frame` type as :func:`vidstyle.media.iter_frames`.

Reading:
- EXIF orientation is applied, so ``rgb`` is upright and no rotation metadata remains.
- Grayscale, palette, CMYK and 16-bit images become 8-bit RGB; alpha (RGBA, LA, palette
  transparency) is returned separately as ``Frame.alpha``.
- Only the first frame of a multi-frame file (animated WebP, multi-page TIFF) is read.

Writing follows the suffix; alpha is written for png/webp/tiff and dropped (with a log
line) for jpg/bmp. Every write goes to a hidden temp file in the same directory that is
``os.replace``d onto the final name, so a failed write never leaves a partial image.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import InputError, OutputError, OutputPathError
from .common import (
    ALPHA_IMAGE_FORMATS,
    IMAGE_SUFFIXES,
    Frame,
    check_input_path,
    hidden_temp_path,
    reason,
    remove_quietly,
)

logger = logging.getLogger(__name__)

_SAVE_OPTIONS: dict[str, dict[str, object]] = {
    "JPEG": {"quality": 95, "subsampling": 0},
    "PNG": {"compress_level": 6},
    "WEBP": {"quality": 95, "method": 4, "exact": True},
    "BMP": {},
    "TIFF": {"compression": "tiff_deflate"},
}


def open_image(path: str | os.PathLike[str]) -> tuple[Image.Image, str]:
    """Open and fully load an image, applying EXIF orientation.

    Returns ``(image, format_name)`` where format_name is Pillow's (e.g. "JPEG").
    Raises InputError with a one-line message for missing, unreadable or truncated files.
    """
    p = check_input_path(path)
    try:
        with Image.open(p) as im:
            fmt = im.format or "unknown"
            im.seek(0)
            im.load()
            upright = ImageOps.exif_transpose(im)
            if upright is im:
                upright = im.copy()
    except UnidentifiedImageError:
        raise InputError(f"not an image file Pillow can read: {p}") from None
    except Image.DecompressionBombError:
        raise InputError(f"image {p} is too large to decode safely") from None
    except (OSError, ValueError, SyntaxError) as e:
        why = reason(e)
        raise InputError(f"cannot decode image {p} (truncated or corrupt file): {why}") from None
    return upright, fmt


def image_has_alpha(im: Image.Image) -> bool:
    """True when ``im`` carries opacity (RGBA/LA/PA modes or palette transparency)."""
    return im.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
        im.mode in ("P", "L", "RGB") and "transparency" in im.info
    )


def _to_rgb_alpha(im: Image.Image) -> tuple[np.ndarray, np.ndarray | None]:
    """Pillow image -> ((H, W, 3) uint8 RGB, (H, W) uint8 alpha or None)."""
    if im.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        # 16-bit / float grayscale: scale to 8 bits instead of letting Pillow clip at 255.
        arr = np.asarray(im, dtype=np.float64)
        scale = 1.0 if im.mode == "F" and arr.max(initial=0.0) <= 1.0 else 65535.0
        if im.mode == "F" and scale == 1.0:
            gray = np.clip(arr * 255.0 + 0.5, 0, 255).astype(np.uint8)
        else:
            gray = np.clip(arr * (255.0 / scale) + 0.5, 0, 255).astype(np.uint8)
        return np.repeat(gray[:, :, None], 3, axis=2), None
    if image_has_alpha(im):
        rgba = np.asarray(im.convert("RGBA"))
        return np.ascontiguousarray(rgba[:, :, :3]), np.ascontiguousarray(rgba[:, :, 3])
    return np.asarray(im.convert("RGB")).copy(), None


def read_image(path: str | os.PathLike[str]) -> Frame:
    """Read a still image as ``Frame(index=0, rgb=(H, W, 3) uint8, pts=None, alpha=...)``.

    Grayscale input becomes RGB; alpha is kept in ``Frame.alpha`` ((H, W) uint8) or None.
    Raises InputError (one line) when the file is missing or cannot be decoded; callers
    reading style images may re-raise it as StyleError.
    """
    im, _ = open_image(path)
    rgb, alpha = _to_rgb_alpha(im)
    return Frame(index=0, rgb=rgb, pts=None, time_base=None, alpha=alpha)


def write_image(
    path: str | os.PathLike[str], rgb: np.ndarray, alpha: np.ndarray | None = None
) -> Path:
    """Write ``rgb`` ((H, W, 3) uint8) to ``path`` atomically; the format follows the suffix.

    ``alpha`` ((H, W) uint8) is written for png/webp/tiff and ignored for jpg/bmp.
    Returns the final path. Raises OutputPathError (exit code 2) for an unsupported suffix,
    OutputError for a failed write.
    """
    p = Path(path)
    fmt = IMAGE_SUFFIXES.get(p.suffix.lower())
    if fmt is None:
        raise OutputPathError(
            f"unsupported image suffix '{p.suffix}' (use {', '.join(sorted(IMAGE_SUFFIXES))})"
        )
    rgb = np.asarray(rgb)
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected (H, W, 3) uint8 RGB, got {rgb.shape} {rgb.dtype}")
    im = Image.fromarray(np.ascontiguousarray(rgb))
    if alpha is not None:
        alpha = np.asarray(alpha)
        if alpha.dtype != np.uint8 or alpha.shape != rgb.shape[:2]:
            raise ValueError(f"alpha must be (H, W) uint8 matching rgb, got {alpha.shape}")
        if fmt in ALPHA_IMAGE_FORMATS:
            im = Image.fromarray(np.dstack([rgb, alpha]))
        else:
            logger.info("%s cannot store alpha; writing it without transparency", p.name)
    tmp = hidden_temp_path(p)
    try:
        im.save(tmp, format=fmt, **_SAVE_OPTIONS[fmt])
        os.replace(tmp, p)
    except OSError as e:
        remove_quietly(tmp)
        raise OutputError(f"cannot write image {p}: {reason(e)}") from None
    except BaseException:
        remove_quietly(tmp)
        raise
    return p
