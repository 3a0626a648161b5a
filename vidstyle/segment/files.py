"""Instance-id PNG files: the user's own masks (``--masks DIR``) and the ones
``vidstyle masks`` writes.

An instance-id PNG is a greyscale image, 8 or 16 bit, the size of the frame, whose pixel
value is the id of the person covering it (0 = background). Palette PNGs (as DAVIS and
many labelling tools write them) count too: the palette index is the id.

A mask folder holds one such PNG per frame. Its files are the names ending in ``.png``
(any case) that do not start with ``.``; other files are ignored. They are taken in
natural order: the names are compared piece by piece, runs of digits as numbers and the
rest as text ignoring case, so ``frame_2.png`` comes before ``frame_10.png`` and
``frame_000000.png``, ``frame_000001.png``, ... (what ``vidstyle masks`` writes) keeps its
order. File i (0-based) is the mask of frame i.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from vidstyle.contracts import Instances
from vidstyle.errors import UsageError, describe
from vidstyle.fileio import atomic_path, sha256_file
from vidstyle.imageops import resize
from vidstyle.segment.base import FrameByFrame
from vidstyle.segment.ops import hard_ids, mask_boxes

#: PIL modes read as ids: 8-bit, 16-bit (PIL names them several ways), 32-bit integer
#: (PIL opens some 16-bit PNGs so), palette indices, 1-bit.
ID_MODES = ("L", "I;16", "I;16L", "I;16B", "I", "P", "1")
#: Largest id an instance-id PNG can hold (16 bit).
MAX_ID = 65535

_DIGITS = re.compile(r"(\d+)")


def natural_key(name: str) -> tuple:
    """Sort key of a file name: digit runs compare as numbers, the rest as text ignoring
    case (the name itself breaks ties, so the order is total and deterministic)."""
    parts = _DIGITS.split(name)
    key = tuple((1, int(p), "") if i % 2 else (0, 0, p.casefold())
                for i, p in enumerate(parts) if p)
    return key, name


def mask_files(folder: str | os.PathLike[str]) -> list[Path]:
    """The PNG files of a mask folder in frame order (see the module doc).

    Raises UsageError when ``folder`` is not a folder.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise UsageError(f"--masks {folder} is not a folder (one PNG of person ids per frame)")
    files = [p for p in folder.iterdir()
             if p.suffix.lower() == ".png" and not p.name.startswith(".") and p.is_file()]
    return sorted(files, key=lambda p: natural_key(p.name))


def _bad(path: Path, why: str) -> UsageError:
    return UsageError(f"mask file {path}: {why}")


def _open_checked(path: Path) -> Image.Image:
    """Open (header only) an id PNG; UsageError naming the file if unreadable or not ids."""
    try:
        im = Image.open(path)
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise _bad(path, f"cannot read it as an image ({describe(exc)})") from exc
    if im.mode not in ID_MODES:
        im.close()
        raise _bad(path, f"mode {im.mode} is not greyscale: expected an 8- or 16-bit "
                         "greyscale PNG whose pixel value is the person id (0 = background)")
    return im


def read_id_png(path: str | os.PathLike[str]) -> np.ndarray:
    """An instance-id PNG as an (H, W) int64 array of ids (0 = background).

    Raises UsageError naming the file when it is missing, unreadable, truncated, not
    greyscale (or palette), or holds negative values.
    """
    path = Path(path)
    im = _open_checked(path)
    try:
        with im:
            im.load()
            ids = np.asarray(im, dtype=np.int64) if im.mode != "1" else \
                np.asarray(im, dtype=bool).astype(np.int64)
    except (OSError, ValueError, SyntaxError) as exc:
        raise _bad(path, f"cannot decode it (truncated or corrupt: {describe(exc)})") from exc
    if ids.ndim != 2:
        raise _bad(path, f"expected one plane of ids, got shape {ids.shape}")
    if ids.size and ids.min() < 0:
        raise _bad(path, "holds negative values: ids must be >= 0")
    return ids


def check_mask_folder(folder: str | os.PathLike[str], n_frames: int,
                      size: tuple[int, int], *, allow_extra: bool = False) -> list[Path]:
    """Check a ``--masks`` folder before any work; returns its first ``n_frames`` files.

    n_frames: the number of frames to process. size: (H, W) every file must have (the
    frames' size). allow_extra: accept more files than frames (e.g. a run limited to the
    first frames of the clip); the extra files are not read. Every file used is opened
    and its PNG structure verified (no pixel decoding). Raises one UsageError naming the
    folder and the count when the number of files is wrong, or the first bad file and
    what is wrong with it (unreadable, truncated, not greyscale, wrong size).
    """
    folder = Path(folder)
    files = mask_files(folder)
    h, w = size
    if len(files) < n_frames or (len(files) > n_frames and not allow_extra):
        missing = (f"; frames {len(files)}..{n_frames - 1} have none"
                   if len(files) < n_frames else "")
        raise UsageError(f"mask folder {folder} has {len(files)} PNG files, expected "
                         f"{n_frames} (one per frame, in natural name order){missing}")
    files = files[:n_frames]
    for i, path in enumerate(files):
        im = _open_checked(path)
        with im:
            if im.size != (w, h):
                raise _bad(path, f"is {im.size[0]}x{im.size[1]}, expected {w}x{h} (the "
                                 f"size of frame {i})")
            try:
                im.verify()
            except (OSError, ValueError, SyntaxError) as exc:
                raise _bad(path, f"is truncated or corrupt ({describe(exc)})") from exc
    return files


def instances_from_ids(ids: np.ndarray | torch.Tensor,
                       size: tuple[int, int] | None = None) -> Instances:
    """Instances of an (h, w) id map: one binary mask per non-zero value, ids kept.

    size: (H, W) of the masks (None: the map's size); a different size resizes the masks
    (bilinear, antialiased when shrinking), so they come back soft. Ids ascending; boxes
    from the masks; scores 1.
    """
    t = torch.as_tensor(np.asarray(ids)).to(torch.int64)
    values = [int(v) for v in torch.unique(t).tolist() if v != 0]
    masks = torch.stack([(t == v).to(torch.float32) for v in values]) if values else \
        torch.zeros((0, *t.shape), dtype=torch.float32)
    if size is not None and tuple(size) != tuple(t.shape):
        if values:
            masks = resize(masks.unsqueeze(0), tuple(size))[0].clamp(0.0, 1.0)
        else:
            masks = torch.zeros((0, *size), dtype=torch.float32)
    return Instances(masks=masks, boxes=mask_boxes(masks), scores=torch.ones(len(values)),
                     ids=tuple(values))


class FolderMasks(FrameByFrame):
    """The user's own masks as a :class:`~vidstyle.segment.base.Segmenter`.

    folder: a mask folder (see the module doc). n_frames: the frames to be processed
    (None: as many as there are files). size: (H, W) every file must have (None: the
    first file's size). Ids are the pixel values, kept as they are (not renumbered, never
    tracked). :meth:`segment` reads frame ``index``'s file at the frame's size.
    """

    name = "folder"

    def __init__(self, *, folder: str | os.PathLike[str], n_frames: int | None = None,
                 size: tuple[int, int] | None = None, allow_extra: bool = False) -> None:
        self.folder = Path(folder)
        self.n_frames = n_frames
        self.size = size
        self.allow_extra = allow_extra
        self._files: list[Path] | None = None
        self._fingerprint: str | None = None

    def files(self) -> list[Path]:
        """The checked files in frame order (checked once, see :func:`check_mask_folder`)."""
        if self._files is None:
            files = mask_files(self.folder)
            n = len(files) if self.n_frames is None else self.n_frames
            size = self.size
            if size is None:
                if not files:
                    raise UsageError(f"mask folder {self.folder} has no PNG files")
                with _open_checked(files[0]) as im:
                    size = (im.size[1], im.size[0])
            self._files = check_mask_folder(self.folder, n, size,
                                            allow_extra=self.allow_extra)
        return self._files

    def check(self) -> None:
        """Raise UsageError now for a wrong count, size or an unreadable file."""
        self.files()

    def fingerprint(self) -> str:
        """``folder:`` and a hash of every used file's name and bytes."""
        if self._fingerprint is None:
            h = hashlib.sha256()
            for path in self.files():
                h.update(f"{path.name}\0{sha256_file(path)}\n".encode())
            self._fingerprint = f"folder:{h.hexdigest()[:16]}"
        return self._fingerprint

    def segment_index(self, index: int, size: tuple[int, int] | None = None) -> Instances:
        """Frame ``index``'s masks at ``size`` (H, W) (None: the file's size)."""
        files = self.files()
        if not 0 <= index < len(files):
            raise UsageError(f"mask folder {self.folder} has no file for frame {index} "
                             f"({len(files)} files)")
        return instances_from_ids(read_id_png(files[index]), size)

    def segment(self, frame: torch.Tensor, *, index: int = 0) -> Instances:
        """Frame ``index``'s masks, at ``frame``'s size (frame: (1, 3, H, W))."""
        return self.segment_index(index, (int(frame.shape[-2]), int(frame.shape[-1])))


def write_id_png(path: str | os.PathLike[str], instances: Instances,
                 size: tuple[int, int] | None = None) -> Path:
    """Write an instance-id PNG atomically: pixel = id of the strongest mask above 0.5,
    0 = background (see :func:`vidstyle.segment.ops.hard_ids`).

    instances: numbered people (ids 1..65535). size: (H, W) of the PNG (None: the masks'
    size; another size resizes the soft masks first). 8-bit when every id fits, else
    16-bit. The file appears only when complete (:func:`vidstyle.fileio.atomic_path`).
    Returns the path.
    """
    if any(not 1 <= i <= MAX_ID for i in instances.ids):
        raise ValueError(f"ids must be in 1..{MAX_ID} to be written, got {instances.ids}")
    masks = instances.masks.to(torch.float32)
    if size is not None and tuple(size) != instances.size:
        masks = (resize(masks.unsqueeze(0), tuple(size))[0] if len(instances)
                 else torch.zeros((0, *size), dtype=torch.float32))
    ids = hard_ids(masks, instances.ids).numpy()
    dtype = np.uint8 if ids.max(initial=0) <= 255 else np.uint16
    image = Image.fromarray(ids.astype(dtype))
    path = Path(path)
    with atomic_path(path) as tmp:
        image.save(tmp, format="PNG")
    return path


__all__ = [
    "FolderMasks",
    "check_mask_folder",
    "instances_from_ids",
    "mask_files",
    "natural_key",
    "read_id_png",
    "write_id_png",
]
