"""Backward warping of images (or flow fields) by a dense flow field.

Convention (see ``vidstyle/tensors.py``): a flow is a float32 tensor (B, 2, H, W) in
pixels, channel 0 = x (horizontal, to the right), channel 1 = y (down). Pixel centres sit
at integer coordinates 0..W-1 and 0..H-1, so a flow of exactly +1 px moves the sample
point exactly one pixel (``grid_sample`` with ``align_corners=True``).
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import torch
import torch.nn.functional as F

PADDINGS = ("border", "zeros", "reflection")


def _check(image: torch.Tensor, flow: torch.Tensor) -> None:
    if image.dim() != 4:
        raise ValueError(f"image must be (B, C, H, W), got {tuple(image.shape)}")
    if flow.dim() != 4 or flow.shape[1] != 2:
        raise ValueError(f"flow must be (B, 2, H, W), got {tuple(flow.shape)}")
    if flow.shape[-2:] != image.shape[-2:]:
        raise ValueError(
            f"flow size {tuple(flow.shape[-2:])} != image size {tuple(image.shape[-2:])}"
        )
    if flow.shape[0] not in (1, image.shape[0]):
        raise ValueError(f"flow batch {flow.shape[0]} does not match image batch {image.shape[0]}")


def sample_points(flow: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Absolute sample positions x + flow(x), in pixels.

    flow: (B, 2, H, W). Returns (px, py), each (B, H, W), same dtype and device as ``flow``.
    """
    _, _, h, w = flow.shape
    xs = torch.arange(w, dtype=flow.dtype, device=flow.device).view(1, 1, w)
    ys = torch.arange(h, dtype=flow.dtype, device=flow.device).view(1, h, 1)
    return xs + flow[:, 0], ys + flow[:, 1]


def warp(
    image: torch.Tensor, flow: torch.Tensor, *, padding: str = "border", mode: str = "bilinear"
) -> torch.Tensor:
    """Backward-warp ``image`` by ``flow``: out(x) = image(x + flow(x)).

    image: (B, C, H, W), any C (RGB frames, masks, or a flow field itself).
    flow: (B, 2, H, W) or (1, 2, H, W) (broadcast over the batch), in pixels.
    padding: what a sample point outside the frame reads.
      - "border" (default): the coordinates are clamped to the frame, i.e. the nearest
        border pixel is repeated. Use :func:`valid_mask` to know where that happened.
      - "zeros": bilinear weights of outside pixels are 0 (fades to 0 at the edge).
      - "reflection": coordinates are mirrored at the border.
    mode: "bilinear" (default) or "bicubic" (sharper: repeated warps of the same image,
      as in feedback stabilization, blur far less; may overshoot [0, 1] slightly).
    Returns a tensor shaped like ``image`` (same dtype and device). Float32 CPU tensors
    without autograd, bilinear with "border" or "zeros" padding, go through OpenCV's remap
    (:func:`_warp_opencv`, the same values 2-3x faster); the rest through ``grid_sample``.

    To align frame t+1 with frame t, call ``warp(frame_t1, forward_t)`` where
    ``forward_t`` maps pixels of frame t into frame t+1.
    """
    if padding not in PADDINGS:
        raise ValueError(f"padding must be one of {PADDINGS}, got {padding!r}")
    if mode not in ("bilinear", "bicubic"):
        raise ValueError(f"mode must be 'bilinear' or 'bicubic', got {mode!r}")
    _check(image, flow)
    b, _, h, w = image.shape
    flow = flow.to(device=image.device)
    if _opencv_fits(image, flow, padding, mode):
        return _warp_opencv(image, flow, padding)
    px, py = sample_points(flow.to(torch.float32))
    # align_corners=True maps -1 to pixel 0 and +1 to pixel size-1.
    sx = 2.0 / (w - 1) if w > 1 else 0.0
    sy = 2.0 / (h - 1) if h > 1 else 0.0
    grid = torch.stack((px * sx - 1.0, py * sy - 1.0), dim=-1)
    if grid.shape[0] != b:
        grid = grid.expand(b, -1, -1, -1)
    src = image if image.dtype in (torch.float32, torch.float64) else image.float()
    out = F.grid_sample(
        src, grid.to(src.dtype), mode=mode, padding_mode=padding, align_corners=True
    )
    return out.to(image.dtype)


#: OpenCV's border modes of the paddings :func:`_warp_opencv` serves.
_CV_BORDERS = {"border": cv2.BORDER_REPLICATE, "zeros": cv2.BORDER_CONSTANT}


def _opencv_fits(image: torch.Tensor, flow: torch.Tensor, padding: str, mode: str) -> bool:
    """Whether :func:`_warp_opencv` can do this warp: float32 CPU tensors without autograd,
    bilinear, border or zero padding, a size OpenCV's remap takes (sides < 32767)."""
    return (image.device.type == "cpu" and image.dtype == torch.float32
            and flow.dtype == torch.float32 and mode == "bilinear" and padding in _CV_BORDERS
            and not (image.requires_grad or flow.requires_grad)
            and max(image.shape[-2:]) < 32767)


def _remap_maps(flow: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """OpenCV's remap maps (px, py), each (B, H, W) float32, of a float32 CPU flow
    (B, 2, H, W), and where the flow is not finite ((B, 1, H, W) bool, or None when it is
    finite everywhere; there the maps sample the pixel itself)."""
    bad = None
    if not math.isfinite(float(flow.sum())):  # one pass; NaN or inf anywhere shows in the sum
        bad = ~torch.isfinite(flow).all(dim=1, keepdim=True)
        flow = torch.nan_to_num(flow, nan=0.0, posinf=0.0, neginf=0.0)
    px, py = sample_points(flow)
    return px, py, bad


def _warp_opencv(image: torch.Tensor, flow: torch.Tensor, padding: str) -> torch.Tensor:
    """:func:`warp` (bilinear, ``padding`` "border" or "zeros") with OpenCV's remap, plane
    by plane (an image in channels-last memory: all channels at once, in that layout):
    the same values within float rounding, 2-3x faster than ``grid_sample`` on
    the CPU at one thread. Where the flow is not finite (NaN) "zeros" reads NaN, as
    ``grid_sample`` does, and "border" reads the pixel itself (flow 0; ``grid_sample``
    reads some border pixel there): a NaN flow never puts NaN into a clamped warp."""
    b, c, h, w = image.shape
    px, py, bad = _remap_maps(flow)  # (B or 1, H, W) float32: OpenCV's maps
    border = _CV_BORDERS[padding]
    # an image in channels-last memory (a decoded frame) is warped in that layout, all
    # channels in one remap (the same values), and the result keeps the layout
    interleaved = c <= 4 and image.permute(0, 2, 3, 1).is_contiguous()
    if interleaved:
        out = torch.empty_like(image, memory_format=torch.channels_last)
        src, dst = image.permute(0, 2, 3, 1).numpy(), out.permute(0, 2, 3, 1).numpy()
    else:
        out = torch.empty_like(image, memory_format=torch.contiguous_format)
        src, dst = image.contiguous().numpy(), out.numpy()
    for i in range(b):
        j = i if flow.shape[0] > 1 else 0
        mx, my = px[j].numpy(), py[j].numpy()
        planes = [(src[i], dst[i])] if interleaved else zip(src[i], dst[i], strict=True)
        for s_plane, d_plane in planes:
            cv2.remap(s_plane, mx, my, cv2.INTER_LINEAR, dst=d_plane,
                      borderMode=border, borderValue=0.0)
    if bad is not None and padding == "zeros":
        out.masked_fill_(bad.expand_as(out), float("nan"))
    return out


def warp_hwc(image: np.ndarray, flow: torch.Tensor) -> np.ndarray:
    """:func:`warp` (bilinear, "border" padding) of one interleaved image.

    image: (H, W) or (H, W, C) float32 numpy array, C <= 4 (e.g. an RGB frame in
    [0, 1] in the layout an encoder takes); flow: (1, 2, H, W) float32 CPU tensor in
    pixels. Returns a new array shaped like ``image``: the same values as :func:`warp` of
    the channels-first image (OpenCV interpolates each channel alike), without the
    transposing copies around it. A non-finite flow reads the pixel itself.
    """
    if image.dtype != np.float32 or image.ndim not in (2, 3) or (
            image.ndim == 3 and not 1 <= image.shape[2] <= 4):
        raise ValueError(f"expected a float32 (H, W) or (H, W, C <= 4) array, got "
                         f"{image.dtype} {image.shape}")
    if (flow.dim() != 4 or flow.shape[:2] != (1, 2) or flow.device.type != "cpu"
            or tuple(flow.shape[-2:]) != image.shape[:2]):
        raise ValueError(f"flow must be a CPU (1, 2, {image.shape[0]}, {image.shape[1]}), "
                         f"got {tuple(flow.shape)} on {flow.device}")
    px, py, _ = _remap_maps(flow.float())
    return cv2.remap(np.ascontiguousarray(image), px[0].numpy(), py[0].numpy(),
                     cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


_TAPS = (-1, 0, 1, 2)


def _cubic_weights(t: torch.Tensor, a: float = -0.75) -> torch.Tensor:
    """Keys' cubic convolution weights (a = -0.75, as grid_sample) of the taps at offsets
    -1, 0, 1, 2 for fractional positions t (N,) in [0, 1) -> (N, 4)."""
    d = (t[:, None] - torch.tensor(_TAPS, dtype=t.dtype, device=t.device)).abs()
    near = ((a + 2) * d - (a + 3)) * d * d + 1
    far = ((a * d - 5 * a) * d + 8 * a) * d - 4 * a
    return torch.where(d <= 1, near, far)


def bicubic_plan(flow: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Precompute a bicubic backward warp by ``flow`` for :func:`warp_with_plan`.

    flow: (1, 2, H, W) in pixels. Returns (index (H*W, 16) int64 into the flattened
    H*W grid, weight (H*W, 16) float32): the 4x4 taps around each sample point x + flow(x),
    tap coordinates clamped to the frame (= ``warp(..., mode="bicubic", padding="border")``).
    One plan serves any number of images of size (H, W), e.g. several feature maps.
    """
    if flow.dim() != 4 or flow.shape[:2] != (1, 2):
        raise ValueError(f"expected a (1, 2, H, W) flow, got {tuple(flow.shape)}")
    _, _, h, w = flow.shape
    px, py = sample_points(flow.to(torch.float32))
    xs, ys = px.reshape(-1), py.reshape(-1)
    x0, y0 = xs.floor(), ys.floor()
    taps = torch.tensor(_TAPS, dtype=torch.long, device=flow.device)
    xi = (x0.long()[:, None] + taps).clamp_(0, w - 1)
    yi = (y0.long()[:, None] + taps).clamp_(0, h - 1)
    index = (yi[:, :, None] * w + xi[:, None, :]).reshape(-1, 16)
    weight = (_cubic_weights(ys - y0)[:, :, None] * _cubic_weights(xs - x0)[:, None, :])
    return index, weight.reshape(-1, 16)


def transposed_copy(x: torch.Tensor, dims: tuple[int, int, int]) -> torch.Tensor:
    """A contiguous copy of the 3-D tensor ``x`` with its dims permuted. On the CPU
    (without autograd) numpy's transposing copy is 4-5x faster than torch's at one thread
    (a (64, 90, 160) feature map: 1.5 vs 5.6 ms), and for the channels-first <->
    channels-last moves of a contiguous float32 map OpenCV's blocked matrix transpose is
    2-10x faster again."""
    if x.device.type != "cpu" or x.requires_grad:
        return x.permute(dims).contiguous()
    a = x.numpy()
    if a.dtype == np.float32 and a.flags.c_contiguous and dims in ((1, 2, 0), (2, 0, 1)):
        c, h, w = a.shape if dims == (1, 2, 0) else (a.shape[2], a.shape[0], a.shape[1])
        if dims == (1, 2, 0):  # (C, H, W) -> (H, W, C): (C, HW) -> (HW, C)
            return torch.from_numpy(cv2.transpose(a.reshape(c, h * w)).reshape(h, w, c))
        return torch.from_numpy(cv2.transpose(a.reshape(h * w, c)).reshape(c, h, w))
    return torch.from_numpy(np.ascontiguousarray(a.transpose(dims)))


def warp_with_plan(image: torch.Tensor, plan: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """Apply a :func:`bicubic_plan` to ``image`` (1, C, H, W) -> (1, C, H, W) float32
    (contiguous). Equal to ``warp(image, flow, mode="bicubic")`` up to float rounding, and
    several times faster on the CPU for many channels (one fused weighted gather of pixel
    rows, between two transposing copies)."""
    index, weight = plan
    b, c, h, w = image.shape
    if b != 1 or index.shape[0] != h * w:
        raise ValueError(f"plan is for {index.shape[0]} pixels, image is {tuple(image.shape)}")
    rows = transposed_copy(image[0].float(), (1, 2, 0)).reshape(h * w, c)
    out = F.embedding_bag(index, rows, per_sample_weights=weight, mode="sum")
    return transposed_copy(out.reshape(h, w, c), (2, 0, 1))[None]


def valid_mask(flow: torch.Tensor) -> torch.Tensor:
    """Where the sample point x + flow(x) stays inside the frame.

    flow: (B, 2, H, W) in pixels. Returns (B, 1, H, W) float32 in {0, 1}: 1 where
    0 <= x + u <= W-1 and 0 <= y + v <= H-1 (so :func:`warp` needed no border clamping).
    """
    if flow.dim() != 4 or flow.shape[1] != 2:
        raise ValueError(f"flow must be (B, 2, H, W), got {tuple(flow.shape)}")
    _, _, h, w = flow.shape
    px, py = sample_points(flow)
    inside = (px >= 0) & (px <= w - 1) & (py >= 0) & (py <= h - 1)
    return inside.unsqueeze(1).to(torch.float32)
