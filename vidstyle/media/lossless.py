"""Lossless intermediate videos: stylized frames kept exactly between two processes.

A chunk of a long video stylized by one worker is written with :class:`LosslessWriter`
(FFV1 in Matroska, ``bgr0``: RGB stored bit-exactly, no chroma subsampling) and read back
with :func:`vidstyle.media.iter_frames`, which returns the same (H, W, 3) uint8 pixels.
The final output is then encoded once, from these frames, with the source's timestamps
and audio (:class:`vidstyle.media.MediaWriter`). Like every output, the file appears only
when complete (a hidden temp file is ``os.replace``d at :meth:`LosslessWriter.close`).
"""

from __future__ import annotations

import logging
import os
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from ..errors import OutputError
from .common import hidden_temp_path, reason, remove_quietly

logger = logging.getLogger(__name__)

#: Suffix of the intermediate files (Matroska holds FFV1).
LOSSLESS_SUFFIX = ".mkv"


class LosslessWriter:
    """Write (H, W, 3) uint8 RGB frames bit-exactly to ``path`` (a ``.mkv``), atomically.

    Frames are numbered 0, 1, ... at a nominal 25 fps: the file keeps pixels, not timing.
    Use as a context manager; an exception inside the block deletes the temp file.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        if self.path.suffix != LOSSLESS_SUFFIX:
            raise ValueError(f"a lossless intermediate is a {LOSSLESS_SUFFIX} file: {path}")
        self._tmp: Path | None = None
        self._container: av.container.OutputContainer | None = None
        self._stream: av.video.stream.VideoStream | None = None
        self._size: tuple[int, int] | None = None
        self.frames = 0

    def __enter__(self) -> LosslessWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc_type is not None:
            self.abort()
        else:
            self.close()
        return False

    def write(self, rgb: np.ndarray) -> None:
        """Add one (H, W, 3) uint8 RGB frame (every frame the size of the first)."""
        h, w = rgb.shape[:2]
        if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
            raise ValueError(f"expected (H, W, 3) uint8 RGB, got {rgb.shape} {rgb.dtype}")
        try:
            if self._container is None:
                self._tmp = hidden_temp_path(self.path)
                self._container = av.open(str(self._tmp), mode="w", format="matroska")
                self._stream = self._container.add_stream("ffv1", rate=25)
                self._stream.width, self._stream.height = w, h
                self._stream.pix_fmt = "bgr0"
                self._stream.codec_context.time_base = Fraction(1, 25)
                self._size = (w, h)
            elif (w, h) != self._size:
                raise ValueError(f"frame size {w}x{h} differs from the first frame's "
                                 f"{self._size[0]}x{self._size[1]}")
            vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
            vf = vf.reformat(format="bgr0")
            vf.pts = self.frames
            vf.time_base = Fraction(1, 25)
            self._container.mux(self._stream.encode(vf))
            self.frames += 1
        except av.FFmpegError as e:
            self.abort()
            raise OutputError(f"writing {self.path} failed: {reason(e)}") from None

    def close(self) -> Path:
        """Finish the file and move it onto its name; a writer given no frame writes
        nothing and raises OutputError."""
        if self._container is None:
            raise OutputError(f"no frame was written to {self.path}")
        try:
            self._container.mux(self._stream.encode(None))
            self._container.close()
            self._container = None
            os.replace(self._tmp, self.path)
            self._tmp = None
        except (av.FFmpegError, OSError) as e:
            self.abort()
            raise OutputError(f"finishing {self.path} failed: {reason(e)}") from None
        return self.path

    def abort(self) -> None:
        """Stop and delete the temp file; the final name is left untouched."""
        if self._container is not None:
            try:
                self._container.close()
            except av.FFmpegError as e:  # the temp file is removed next anyway
                logger.debug("closing %s while aborting: %s", self._tmp, reason(e))
            self._container = None
        remove_quietly(self._tmp)
        self._tmp = None


__all__ = ["LOSSLESS_SUFFIX", "LosslessWriter"]
