"""Types and small helpers shared by the media modules: the Frame type, the suffix tables
(the one list of image and video suffixes for all of vidstyle),
colour-matrix choice and hidden temp paths for atomic writes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from ..errors import InputError, OutputError, describe
from ..fileio import create_temp_beside

#: Still-image suffixes (read and written with Pillow).
IMAGE_SUFFIXES: dict[str, str] = {
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".png": "PNG",
    ".webp": "WEBP",
    ".bmp": "BMP",
    ".tif": "TIFF",
    ".tiff": "TIFF",
}

#: Video suffixes that can be written, mapped to the FFmpeg muxer name.
VIDEO_SUFFIXES: dict[str, str] = {
    ".mp4": "mp4",
    ".m4v": "mp4",
    ".mov": "mov",
    ".mkv": "matroska",
    ".webm": "webm",
    ".avi": "avi",
}

#: Video suffixes that are read (decoded with PyAV) but never written; an output made
#: from one of them gets a writable suffix (``a.mpg`` -> ``a.mpg.mp4`` in a batch).
READ_ONLY_VIDEO_SUFFIXES: tuple[str, ...] = (
    ".mpg", ".mpeg", ".ts", ".m2ts", ".flv", ".wmv", ".3gp", ".ogv", ".gif",
)

#: Still-image formats whose files can carry an alpha channel.
ALPHA_IMAGE_FORMATS = frozenset({"PNG", "WEBP", "TIFF"})


def is_image_path(path: str | os.PathLike[str]) -> bool:
    """True when the suffix is a still-image one (.jpg .jpeg .png .webp .bmp .tif .tiff)."""
    return Path(path).suffix.lower() in IMAGE_SUFFIXES


def is_video_path(path: str | os.PathLike[str]) -> bool:
    """True when the suffix is a writable video container (.mp4 .m4v .mov .mkv .webm .avi)."""
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


def is_media_path(path: str | os.PathLike[str]) -> bool:
    """True when the suffix is one vidstyle reads: a still image, or a writable or
    read-only video suffix (:data:`READ_ONLY_VIDEO_SUFFIXES`)."""
    suffix = Path(path).suffix.lower()
    return (suffix in IMAGE_SUFFIXES or suffix in VIDEO_SUFFIXES
            or suffix in READ_ONLY_VIDEO_SUFFIXES)


@dataclass
class Frame:
    """One decoded picture, for videos and still images alike.

    Attributes:
        index: 0-based position of the frame in decode (presentation) order.
        rgb: (H, W, 3) uint8 RGB pixels, as stored (rotation metadata NOT applied).
        pts: presentation timestamp in units of ``time_base``; ``None`` for still images.
        time_base: seconds per ``pts`` unit; ``None`` for still images.
        alpha: (H, W) uint8 opacity (255 = opaque) when the source has alpha, else ``None``.
    """

    index: int
    rgb: np.ndarray
    pts: int | None = None
    time_base: Fraction | None = None
    alpha: np.ndarray | None = None

    @property
    def time_s(self) -> float | None:
        """Presentation time in seconds, or ``None`` without a timestamp."""
        if self.pts is None or self.time_base is None:
            return None
        return float(self.pts * self.time_base)


def check_input_path(path: str | os.PathLike[str]) -> Path:
    """Return ``path`` as a Path, raising InputError if it is missing or not a regular file."""
    p = Path(path)
    if not p.exists():
        raise InputError(f"input file not found: {p}")
    if p.is_dir():
        raise InputError(f"input is a directory, not a media file: {p}")
    if not p.is_file():
        raise InputError(f"input is not a regular file: {p}")
    if not os.access(p, os.R_OK):
        raise InputError(f"input file is not readable (permission denied): {p}")
    return p


def yuv_matrix(colorspace: int, width: int, height: int) -> str:
    """Pick the YUV<->RGB matrix name for swscale ("itu709", "itu601", ...).

    ``colorspace`` is the AVColorSpace tag of the stream (2 = unspecified). Tagged streams
    use their tag; untagged ones use the common player heuristic: BT.709 for HD
    (height >= 720 or width >= 1280), BT.601 below.
    """
    tagged = {1: "itu709", 4: "fcc", 5: "itu601", 6: "itu601", 7: "smpte240m",
              9: "bt2020", 10: "bt2020"}
    if colorspace in tagged:
        return tagged[colorspace]
    return "itu709" if (height >= 720 or width >= 1280) else "itu601"


def hidden_temp_path(final: Path) -> Path:
    """Create an empty hidden temp file ``.<stem>.<random>.part<suffix>`` next to ``final``.

    The file has the mode a plainly created file gets (``0o666`` less the umask), so the
    finished output, ``os.replace``d from it, does too. The ``.<stem>.*.part<suffix>``
    naming is relied on by the sweep of partial outputs left by killed runs. Raises
    OutputError when the directory cannot be written.
    """
    parent = final.parent
    try:
        return create_temp_beside(final, prefix=f".{final.stem}.", suffix=f".part{final.suffix}")
    except OSError as e:
        raise OutputError(f"cannot write in output directory {parent}: {reason(e)}") from None


def reason(exc: BaseException) -> str:
    """What went wrong, in words, for a one-line message (see :func:`vidstyle.errors.describe`);
    an FFmpeg error gives FFmpeg's text ("Invalid data found when processing input")."""
    if isinstance(exc, av.FFmpegError) and exc.strerror:
        return str(exc.strerror)
    return describe(exc)


def remove_quietly(path: Path | None) -> None:
    """Delete ``path`` if it exists; never raises."""
    if path is None:
        return
    try:
        os.unlink(path)
    except OSError:
        pass
