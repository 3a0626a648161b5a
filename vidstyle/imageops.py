"""Small tensor image operations shared by the stylizers: resizing, colour spaces, box
means.

Images are (B, 3, H, W) float RGB in [0, 1].
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from vidstyle.errors import StyleImageError, VidstyleError
from vidstyle.media.image import read_pixels


def box_mean(x: torch.Tensor, radius: int) -> torch.Tensor:
    """Mean over the (2 radius + 1)^2 box around each pixel, borders replicated.

    x: (B, C, H, W) float; returns the same shape and dtype. On the CPU in float32 this
    is OpenCV's running-sum box filter (about 50x faster than a stride-1 ``avg_pool2d``
    at radius 2 on a 640x480 map); elsewhere torch's pooling (the same values to float
    rounding).
    """
    if radius == 0:
        return x.clone()
    if x.device.type == "cpu" and x.dtype == torch.float32:
        b, c, h, w = x.shape
        hwc = x.reshape(b * c, h, w).permute(1, 2, 0).contiguous().numpy()
        k = (2 * radius + 1, 2 * radius + 1)
        # OpenCV filters at most 512 channels at once
        parts = [cv2.blur(hwc[..., i : i + 512], k, borderType=cv2.BORDER_REPLICATE)
                 .reshape(h, w, -1) for i in range(0, b * c, 512)]
        out = torch.from_numpy(parts[0] if len(parts) == 1 else
                               np.concatenate(parts, axis=2))
        return out.permute(2, 0, 1).reshape(b, c, h, w)
    return F.avg_pool2d(F.pad(x, (radius,) * 4, mode="replicate"), 2 * radius + 1, stride=1)


def fit_longest(h: int, w: int, longest: int) -> tuple[int, int]:
    """(h, w) scaled so that max(h, w) == longest, aspect kept, each side >= 1."""
    s = longest / max(h, w)
    return max(1, round(h * s)), max(1, round(w * s))


def resize(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Resize (B, C, H, W) to size=(h, w): antialiased bilinear (area-like when shrinking)."""
    if tuple(image.shape[-2:]) == tuple(size):
        return image
    shrink = size[0] < image.shape[-2] or size[1] < image.shape[-1]
    return F.interpolate(image, size=size, mode="bilinear", align_corners=False, antialias=shrink)


def resize_uint8(rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize an (H, W, C) or (H, W) uint8 image (or alpha plane) to size=(h, w), same
    number of dimensions, with OpenCV: pixel-area averaging
    when shrinking (like :func:`resize`'s antialiasing), bilinear when enlarging. About 10x
    cheaper than converting to float first (a 1280x720 video frame to 640x360: ~1 ms)."""
    h, w = size
    if rgb.shape[:2] == (h, w):
        return rgb
    shrink = h < rgb.shape[0] or w < rgb.shape[1]
    out = cv2.resize(np.ascontiguousarray(rgb), (w, h),
                     interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
    return out.reshape(h, w, *rgb.shape[2:])


def resize_longest(image: torch.Tensor, longest: int) -> torch.Tensor:
    """Resize (B, C, H, W) so its longest side is ``longest`` pixels."""
    return resize(image, fit_longest(image.shape[-2], image.shape[-1], longest))


def load_image(
    path: str | Path, *, error: type[VidstyleError] = StyleImageError
) -> torch.Tensor:
    """Read an image file as (1, 3, H, W) float RGB in [0, 1] for the stylizers and
    training (style and content images): read by the one image reader
    (:func:`vidstyle.media.image.read_pixels`: EXIF orientation applied, any mode to 8-bit
    RGB), alpha composited on white. Raises ``error`` (StyleImageError unless given) with
    the reader's one-line message when missing or unreadable."""
    rgb, alpha = read_pixels(path, error=error)
    if alpha is not None:
        rgba = Image.fromarray(np.dstack([rgb, alpha]), "RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        rgb = np.asarray(Image.alpha_composite(white, rgba).convert("RGB"), dtype=np.uint8)
    return torch.from_numpy(rgb.copy()).permute(2, 0, 1).unsqueeze(0).float() / 255.0


# YIQ (NTSC) transform, used for luminance-only transfer (Gatys et al. 2016, "Preserving
# color in neural artistic style transfer").
_RGB2YIQ = torch.tensor(
    [[0.299, 0.587, 0.114], [0.595716, -0.274453, -0.321263], [0.211456, -0.522591, 0.311135]]
)


def rgb_to_yiq(image: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) RGB -> YIQ (Y in [0, 1], I and Q signed)."""
    m = _RGB2YIQ.to(image)
    return torch.einsum("ij,bjhw->bihw", m, image)


def yiq_to_rgb(image: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) YIQ -> RGB (not clamped)."""
    m = torch.linalg.inv(_RGB2YIQ).to(image)
    return torch.einsum("ij,bjhw->bihw", m, image)


def luminance(image: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) RGB -> (B, 1, H, W) luma Y."""
    return rgb_to_yiq(image)[:, :1]


def match_luminance(style_y: torch.Tensor, content_y: torch.Tensor) -> torch.Tensor:
    """Shift and scale style luma to the content luma's mean and std (both (B, 1, H, W))."""
    s_mu, s_sd = style_y.mean(), style_y.std().clamp_min(1e-6)
    c_mu, c_sd = content_y.mean(), content_y.std()
    return (style_y - s_mu) / s_sd * c_sd + c_mu


def keep_colors(stylized: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
    """``--preserve-color`` for a finished output: the stylized image's luminance with
    the source's chroma (YIQ I and Q), clamped to [0, 1]. Both (B, 3, H, W) in [0, 1]."""
    y = rgb_to_yiq(stylized)[:, :1]
    iq = rgb_to_yiq(source.to(stylized))[:, 1:]
    return yiq_to_rgb(torch.cat([y, iq], dim=1)).clamp_(0.0, 1.0)


def working_size(h: int, w: int, size: int | None) -> tuple[int, int]:
    """Frame size (h, w) at which to stylize: longest side ``size`` (None: unchanged)."""
    return (h, w) if not size else fit_longest(h, w, size)
