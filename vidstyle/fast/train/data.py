"""Inputs of a training run: style images, the pool of training crops, held-out images.

Every image file is read with :func:`vidstyle.imageops.load_image` (the one loader: alpha
composited on white, grayscale expanded), so a style gives the same Gram targets here as in
optimization. Suffixes come from :mod:`vidstyle.media.common`. Resizing here is PIL bicubic
on 8-bit images (the exact 8-bit values of the loaded image: ``k / 255`` -> ``k``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from vidstyle.errors import InputError, StyleError
from vidstyle.imageops import load_image
from vidstyle.media.common import IMAGE_SUFFIXES, VIDEO_SUFFIXES

from .config import TrainConfig, flag

log = logging.getLogger(__name__)

#: Packaged style images, <name>.<ext>.
PACKAGED_STYLE_DIR = Path(__file__).resolve().parents[2] / "data" / "styles"
#: File names of the named styles in the test-data kit's styles/ folder.
KIT_STYLE_FILES: dict[str, str] = {
    "starry": "starry_night.jpg",
    "scream": "the_scream.jpg",
    "wave": "wave.jpg",
    "composition_vii": "composition_vii.jpg",
    "shipwreck": "shipwreck.jpg",
    "udnie": "udnie.jpg",
    "woman_with_hat": "woman-with-hat-matisse.jpg",
}


def resolve_style(spec: str, style_dirs: Sequence[str] = ()) -> tuple[str, Path]:
    """``name`` or ``name=path`` -> (name, image path). Raises StyleError if not found.

    A bare name is looked up as ``<name>.<ext>`` in the packaged styles, then in each of
    ``style_dirs`` (also under its test-kit file name, e.g. starry -> starry_night.jpg).
    """
    if "=" in spec:
        name, _, p = spec.partition("=")
        path = Path(p).expanduser()
        if not name or not path.is_file():
            raise StyleError(f"style image not found for {spec!r}")
        return name, path
    name = spec
    for d in (PACKAGED_STYLE_DIR, *map(Path, style_dirs)):
        candidates = [d / f"{name}{ext}" for ext in IMAGE_SUFFIXES]
        if name in KIT_STYLE_FILES:
            candidates.append(d / KIT_STYLE_FILES[name])
        for c in candidates:
            if c.is_file():
                return name, c
    raise StyleError(f"unknown style {name!r}: no image found (give NAME=IMAGE)")


def _to_pil(image: torch.Tensor) -> Image.Image:
    """(1, 3, H, W) float in [0, 1] holding 8-bit values -> PIL RGB, exactly."""
    arr = image[0].mul(255.0).round_().to(torch.uint8).permute(1, 2, 0).numpy()
    return Image.fromarray(np.ascontiguousarray(arr), "RGB")


def _read_photo(path: Path) -> Image.Image:
    """A training or held-out photo as PIL RGB (InputError when unreadable)."""
    return _to_pil(load_image(path, error=InputError))


def _resize_short(im: Image.Image, short: int) -> Image.Image:
    w, h = im.size
    s = short / min(w, h)
    return im.resize((max(short, round(w * s)), max(short, round(h * s))), Image.BICUBIC)


def _resize_long(im: Image.Image, long: int) -> Image.Image:
    w, h = im.size
    s = long / max(w, h)
    return im.resize((max(1, round(w * s)), max(1, round(h * s))), Image.BICUBIC)


def _pil_to_tensor(im: Image.Image) -> torch.Tensor:
    """PIL RGB -> (3, H, W) uint8."""
    return torch.from_numpy(np.asarray(im, dtype=np.uint8).copy()).permute(2, 0, 1).contiguous()


def style_image(path: Path, long_side: int) -> torch.Tensor:
    """The style image at ``path`` for its Gram targets: (1, 3, H, W) float in [0, 1] with
    max(H, W) == ``long_side`` (the pixels of :func:`~vidstyle.imageops.load_image` when it
    already is). StyleError if unreadable."""
    im = _resize_long(_to_pil(load_image(path)), long_side)
    return _pil_to_tensor(im).unsqueeze(0).float().div_(255.0)


def _under(path: Path, dirs: Sequence[Path]) -> bool:
    rp = path.resolve()
    return any(rp == d or d in rp.parents for d in dirs)


def list_images(dirs: Sequence[str], exclude: Sequence[str] = ()) -> list[Path]:
    """Image files under ``dirs`` (recursive, sorted), minus any under ``exclude``."""
    ex = [Path(d).resolve() for d in exclude]
    out: list[Path] = []
    for d in dirs:
        p = Path(d)
        if not p.is_dir():
            raise InputError(f"content folder not found: {p} ({flag('content_dirs')})")
        for f in sorted(p.rglob("*")):
            if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file():
                if _under(f, ex):
                    log.warning("skipping held-out image %s", f)
                    continue
                out.append(f)
    return out


def sample_video_frames(path: Path, count: int) -> list[Image.Image]:
    """About ``count`` RGB frames spread evenly over the video at ``path`` (PyAV)."""
    import av

    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            total = stream.frames or 0
            if total <= 0 and stream.duration and stream.average_rate:
                total = int(stream.duration * stream.time_base * stream.average_rate)
            stride = max(1, total // max(1, count)) if total > 0 else 10
            frames = []
            for i, frame in enumerate(container.decode(stream)):
                if i % stride == 0:
                    frames.append(frame.to_image().convert("RGB"))
                    if len(frames) >= count:
                        break
            return frames
    except av.FFmpegError as e:
        raise InputError(f"cannot decode video {path}: {e}") from e


def _video_files(items: Sequence[str]) -> list[Path]:
    out: list[Path] = []
    for it in items:
        p = Path(it)
        if p.is_dir():
            out += sorted(f for f in p.iterdir() if f.suffix.lower() in VIDEO_SUFFIXES)
        elif p.is_file():
            out.append(p)
        else:
            raise InputError(f"video not found: {p} ({flag('videos')})")
    return out


class ContentPool:
    """Training images as uint8 (3, H, W) tensors with short side >= crop * 1.25, on device."""

    def __init__(self, images: list[torch.Tensor], size: int) -> None:
        self.images = images
        self.size = size

    def batch(self, n: int, gen: torch.Generator) -> torch.Tensor:
        """Random crops with random horizontal flips -> (n, 3, size, size) float in [0, 1]."""
        idx = torch.randint(len(self.images), (n,), generator=gen).tolist()
        r = torch.rand(n, 3, generator=gen).tolist()
        crops = []
        for i, (ry, rx, rf) in zip(idx, r, strict=True):
            im = self.images[i]
            _, h, w = im.shape
            y = int(ry * (h - self.size + 1))
            x = int(rx * (w - self.size + 1))
            c = im[:, y : y + self.size, x : x + self.size]
            crops.append(c.flip(-1) if rf < 0.5 else c)
        return torch.stack(crops).float().div_(255.0)


def build_pool(config: TrainConfig, device: torch.device) -> ContentPool:
    """The photos of ``content_dirs`` and frames of ``videos`` (never the held-out ones)."""
    short = round(config.size * 1.25)
    files = list_images(config.content_dirs, exclude=config.holdout_dirs)
    pils: list[Image.Image] = [_read_photo(f) for f in files]
    n_photos = len(pils)
    for v in _video_files(config.videos):
        if _under(v, [Path(d).resolve() for d in config.holdout_dirs]):
            continue
        pils += sample_video_frames(v, config.frames_per_video)
    if not pils:
        raise InputError(
            f"no training images: give {flag('content_dirs')} and/or {flag('videos')}"
        )
    images = [_pil_to_tensor(_resize_short(im, short)).to(device) for im in pils]
    log.info("training pool: %d photos + %d video frames", n_photos, len(pils) - n_photos)
    return ContentPool(images, config.size)


def holdout_images(config: TrainConfig) -> list[torch.Tensor]:
    """Up to num_samples held-out images, long side eval_size, each (1, 3, H, W) float."""
    files: list[Path] = []
    for d in config.holdout_dirs:
        p = Path(d)
        if p.is_dir():
            files += sorted(f for f in p.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
    if not files or config.num_samples <= 0:
        return []
    # spread the picks over the folder (the kit's first files are similar city shots)
    n = min(config.num_samples, len(files))
    pick = [files[round(i * (len(files) - 1) / max(1, n - 1))] for i in range(n)]
    out = []
    for f in pick:
        im = _resize_long(_read_photo(f), config.eval_size)
        out.append(_pil_to_tensor(im).unsqueeze(0).float().div_(255.0))
    return out
