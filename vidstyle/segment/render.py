"""A coloured preview of the people found in a frame, each with their id drawn on them,
so a user can pick ids (``--instance 2=wave``) by eye.

Images are (H, W, 3) uint8 RGB; masks (N, H, W) in [0, 1] (resized to the frame when
their size differs); sizes in pixels.
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from vidstyle.contracts import Instances
from vidstyle.fileio import atomic_path
from vidstyle.imageops import resize
from vidstyle.segment.ops import MASK_THRESHOLD, composite

#: Distinct, saturated colours (RGB) for ids 1, 2, ...; they repeat after the last.
#: Id 0 (not numbered yet) is grey.
PALETTE: tuple[tuple[int, int, int], ...] = (
    (230, 25, 75), (60, 180, 75), (0, 130, 200), (255, 225, 25), (245, 130, 48),
    (145, 30, 180), (70, 240, 240), (240, 50, 230), (210, 245, 60), (0, 128, 128),
    (170, 110, 40), (128, 0, 0),
)
UNNUMBERED = (160, 160, 160)
#: How much of a person's colour covers the photo inside their mask.
OPACITY = 0.45


def id_colour(i: int) -> tuple[int, int, int]:
    """The colour (RGB 0..255) of id ``i``: the same for an id in every frame."""
    return UNNUMBERED if i <= 0 else PALETTE[(i - 1) % len(PALETTE)]


def _label_point(binary: np.ndarray, box: torch.Tensor) -> tuple[int, int]:
    """(x, y) inside the mask farthest from its edge (the frame border counts as an
    edge), or the box centre for an empty mask."""
    if not binary.any():
        return int((box[0] + box[2]) / 2), int((box[1] + box[3]) / 2)
    padded = np.pad(binary.astype(np.uint8), 1)
    dist = cv2.distanceTransform(padded, cv2.DIST_L2, 5)[1:-1, 1:-1]
    y, x = np.unravel_index(int(np.argmax(dist)), dist.shape)
    return int(x), int(y)


def overlay(frame_rgb: np.ndarray, instances: Instances, *,
            opacity: float = OPACITY) -> np.ndarray:
    """The frame with each person tinted in their id's colour, outlined, and numbered.

    frame_rgb: (H, W, 3) uint8. instances: masks (N, h, w) (resized to (H, W) when
    different) and ids. Returns a new (H, W, 3) uint8 image: inside person k the photo
    is blended with ``id_colour(k)`` by ``opacity`` times the mask (overlaps shared as in
    :func:`~vidstyle.segment.ops.composite`), the mask's 0.5 contour is drawn in the
    colour (about H/250 px thick, at least 1), and the id is written on the point of the
    mask farthest from its edge, white or black on a box of the id's colour, in a font
    about 7% of the frame's smaller side tall (at least 14 px).
    """
    if frame_rgb.ndim != 3 or frame_rgb.shape[2] != 3 or frame_rgb.dtype != np.uint8:
        raise ValueError(f"frame must be (H, W, 3) uint8, got {frame_rgb.shape} "
                         f"{frame_rgb.dtype}")
    h, w = frame_rgb.shape[:2]
    if not len(instances):
        return frame_rgb.copy()
    masks = instances.masks.to(torch.float32)
    boxes = instances.boxes.to(torch.float32).reshape(-1, 4)
    if tuple(masks.shape[-2:]) != (h, w):
        sy, sx = h / masks.shape[-2], w / masks.shape[-1]
        boxes = boxes * torch.tensor([sx, sy, sx, sy])
        masks = resize(masks.unsqueeze(0), (h, w))[0].clamp(0.0, 1.0)
    photo = torch.from_numpy(frame_rgb.copy()).permute(2, 0, 1).unsqueeze(0).to(torch.float32) / 255
    colours = torch.tensor([id_colour(i) for i in instances.ids], dtype=torch.float32) / 255
    layers = colours.view(-1, 3, 1, 1).expand(-1, 3, h, w)
    tinted = composite(layers, masks * opacity, photo)
    out = (tinted[0].permute(1, 2, 0) * 255).round().clamp(0, 255).to(torch.uint8).numpy()
    out = np.ascontiguousarray(out)

    binary = (masks > MASK_THRESHOLD).numpy().astype(np.uint8)
    thickness = max(1, round(min(h, w) / 250))
    for k, i in enumerate(instances.ids):
        contours, _ = cv2.findContours(binary[k], cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        cv2.drawContours(out, contours, -1, id_colour(i), thickness, lineType=cv2.LINE_AA)

    image = Image.fromarray(out)
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=max(14, round(0.07 * min(h, w))))
    pad = max(2, round(font.size * 0.2))
    for k, i in enumerate(instances.ids):
        x, y = _label_point(binary[k].astype(bool), boxes[k])
        text = str(i)
        x0, y0, x1, y1 = draw.textbbox((x, y), text, font=font, anchor="mm")
        colour = id_colour(i)
        light = 0.299 * colour[0] + 0.587 * colour[1] + 0.114 * colour[2] > 150
        draw.rounded_rectangle((x0 - pad, y0 - pad, x1 + pad, y1 + pad), radius=pad,
                               fill=colour, outline=(0, 0, 0), width=max(1, pad // 3))
        draw.text((x, y), text, font=font, anchor="mm",
                  fill=(0, 0, 0) if light else (255, 255, 255))
    return np.asarray(image).copy()


def write_overlay(path: str | os.PathLike[str], frame_rgb: np.ndarray,
                  instances: Instances) -> Path:
    """Write :func:`overlay` of the frame to ``path`` atomically (PNG or JPEG by the
    suffix). Returns the path."""
    path = Path(path)
    with atomic_path(path) as tmp:
        Image.fromarray(overlay(frame_rgb, instances)).save(tmp)
    return path


__all__ = ["OPACITY", "PALETTE", "id_colour", "overlay", "write_overlay"]
