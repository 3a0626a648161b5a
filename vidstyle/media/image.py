"""Still images (jpg, png, webp, bmp, tiff) read and written with Pillow.

A still image is a one-frame video for the rest of vidstyle: :func:`read_image` returns the
same :class:`Frame` type as :func:`vidstyle.media.iter_frames`.

Reading: :func:`read_pixels` is the one reader of image files in vidstyle (stills here,
style and content tensors in :func:`vidstyle.imageops.load_image`, evaluation frames), so
orientation, modes and messages agree everywhere:
- EXIF orientation is applied, so ``rgb`` is upright and no rotation metadata remains.
- Grayscale, palette, CMYK and 16-bit images become 8-bit RGB; alpha (RGBA, LA, palette
  transparency) is returned separately as ``Frame.alpha``.
- Only the first frame of a multi-frame file (animated WebP, multi-page TIFF) is read.
- A missing or undecodable file is one line in words, the same text for every caller
  (the error class is the caller's: InputError for inputs, StyleImageError for styles).

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

from ..errors import InputError, OutputError, OutputPathError, VidstyleError
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


def open_image(
    path: str | os.PathLike[str], *, error: type[VidstyleError] = InputError
) -> tuple[Image.Image, str]:
    """Open and fully load an image, applying EXIF orientation (the one place that opens
    an image file; :func:`read_pixels` adds the mode conversion).

    Returns ``(image, format_name)`` where format_name is Pillow's (e.g. "JPEG").
    Raises ``error`` (InputError unless the caller reads, say, a style image) with a
    one-line message, the same for every caller, for missing, unreadable or truncated
    files.
    """
    try:
        p = check_input_path(path)
    except InputError as e:
        raise error(str(e)) from None
    try:
        with Image.open(p) as im:
            fmt = im.format or "unknown"
            im.seek(0)
            im.load()
            upright = ImageOps.exif_transpose(im)
            if upright is im:
                upright = im.copy()
    except UnidentifiedImageError:
        raise error(f"not an image file Pillow can read: {p}") from None
    except Image.DecompressionBombError:
        raise error(f"image {p} is too large to decode safely") from None
    except (OSError, ValueError, SyntaxError) as e:
        why = reason(e)
        raise error(f"cannot decode image {p} (truncated or corrupt file): {why}") from None
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


def read_pixels(
    path: str | os.PathLike[str], *, error: type[VidstyleError] = InputError
) -> tuple[np.ndarray, np.ndarray | None]:
    """An image file as ((H, W, 3) uint8 RGB, (H, W) uint8 alpha or None), upright (EXIF
    orientation applied), any mode converted to 8-bit RGB (16-bit scaled, not clipped).

    The one reader of image files: :func:`read_image` and
    :func:`vidstyle.imageops.load_image` are built on it. Raises ``error`` (see
    :func:`open_image`).
    """
    im, _ = open_image(path, error=error)
    return _to_rgb_alpha(im)


def read_image(path: str | os.PathLike[str]) -> Frame:
    """Read a still image as ``Frame(index=0, rgb=(H, W, 3) uint8, pts=None, alpha=...)``.

    Grayscale input becomes RGB; alpha is kept in ``Frame.alpha`` ((H, W) uint8) or None.
    Raises InputError (one line) when the file is missing or cannot be decoded.
    """
    rgb, alpha = read_pixels(path)
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
