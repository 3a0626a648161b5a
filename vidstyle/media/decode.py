"""Streaming decode: :func:`iter_frames` yields one :class:`Frame` at a time.

Memory does not depend on clip length: one packet and one frame are alive at a time (plus
the decoder's own few reference frames).

Damaged files: a truncated or corrupt file that still decodes some frames yields those
frames and logs a WARNING saying how many were decoded (and how many the header promised);
only a file from which NO frame decodes raises InputError. Corrupt packets in the middle
are skipped (the decoder conceals what it can) and counted in the same warning.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from fractions import Fraction

import av
import numpy as np

from ..errors import InputError
from .common import IMAGE_SUFFIXES, Frame, check_input_path, reason, yuv_matrix
from .image import read_image
from .probe import is_image_demuxer, open_video_container, pick_video_stream

logger = logging.getLogger(__name__)


def _decoder_threads() -> int:
    try:
        return max(1, min(4, len(os.sched_getaffinity(0))))
    except AttributeError:  # pragma: no cover - non-Linux
        return max(1, min(4, os.cpu_count() or 1))


def video_frame_to_rgb(vf: av.VideoFrame) -> tuple[np.ndarray, np.ndarray | None]:
    """Convert a decoded PyAV frame to ((H, W, 3) uint8 RGB, (H, W) uint8 alpha or None).

    The YUV matrix and range follow the stream's tags; untagged streams use BT.709 for
    HD and BT.601 below (see :func:`yuv_matrix`).
    """
    fmt = vf.format
    has_alpha = any(c.is_alpha for c in fmt.components)
    kwargs: dict[str, object] = {}
    if not fmt.is_rgb and fmt.name not in ("gray", "gray8", "pal8"):
        kwargs["src_colorspace"] = yuv_matrix(int(vf.colorspace), vf.width, vf.height)
        rng = int(vf.color_range)
        if rng == 0:
            rng = 2 if fmt.name.startswith("yuvj") else 1
        kwargs["src_color_range"] = rng
    if has_alpha:
        rgba = vf.to_ndarray(format="rgba", **kwargs)
        return np.ascontiguousarray(rgba[:, :, :3]), np.ascontiguousarray(rgba[:, :, 3])
    return vf.to_ndarray(format="rgb24", **kwargs), None


def iter_frames(path: str | os.PathLike[str], *, start: int = 0) -> Iterator[Frame]:
    """Yield the frames of a video (or the single frame of a still image), in order.

    Args:
        path: video or image file.
        start: skip frames with ``index < start`` (they are decoded but not converted to
            RGB), for resuming. Indices of yielded frames are absolute.

    Yields:
        Frame with ``rgb`` (H, W, 3) uint8, ``pts`` in the stream ``time_base`` (None for
        images), and ``alpha`` when the source has it.

    Raises InputError if the file cannot be opened or no frame at all decodes. A file that
    decodes some frames and then fails yields those and logs a warning.
    """
    p = check_input_path(path)
    if start < 0:
        raise ValueError(f"start must be >= 0, got {start}")
    if p.suffix.lower() in IMAGE_SUFFIXES:
        yield from _iter_image(p, start)
        return
    container = open_video_container(p)
    try:
        if is_image_demuxer(container):
            yield from _iter_image(p, start)
            return
        vs = pick_video_stream(container)
        if vs is None:
            raise InputError(f"{p} has no video stream")
        vs.thread_type = "AUTO"
        vs.codec_context.thread_count = _decoder_threads()
        tb = Fraction(vs.time_base) if vs.time_base else None
        expected = int(vs.frames or 0)
        index = 0
        last_pts: int | None = None
        bad_packets = 0
        stop_reason = None

        def emit(frames: list[av.VideoFrame]) -> Iterator[Frame]:
            nonlocal index, last_pts
            for vf in frames:
                if vf.pts is not None:
                    last_pts = vf.pts
                if index >= start:
                    rgb, alpha = video_frame_to_rgb(vf)
                    yield Frame(index=index, rgb=rgb, pts=vf.pts, time_base=tb, alpha=alpha)
                index += 1

        packets = container.demux(vs)
        while True:
            try:
                packet = next(packets)
            except StopIteration:
                break
            except av.FFmpegError as e:
                stop_reason = reason(e)
                break
            try:
                frames = vs.decode(packet)
            except av.FFmpegError as e:
                bad_packets += 1
                stop_reason = stop_reason or reason(e)
                continue
            yield from emit(frames)
        if stop_reason is not None:
            try:  # drain what the decoder still holds
                yield from emit(vs.decode(None))
            except av.FFmpegError:
                pass
        if index == 0:
            if stop_reason is None and bad_packets == 0:
                raise InputError(f"{p} has a video stream but zero frames")
            raise InputError(
                f"{p}: no video frame could be decoded (truncated or corrupt file)"
            )
        ends_early = False
        if not expected and container.duration and last_pts is not None and tb:
            # No frame count in the header (mkv/webm): compare with the announced duration.
            fps = vs.average_rate or vs.guessed_rate or 25
            end = float((last_pts - (vs.start_time or 0)) * tb) + 2.0 / float(fps)
            ends_early = end < container.duration / av.time_base
            if ends_early:
                stop_reason = stop_reason or (
                    f"last frame at {float(last_pts * tb):.3f} s, "
                    f"header says {container.duration / av.time_base:.3f} s"
                )
        if stop_reason is not None or ends_early or (expected and index < expected):
            logger.warning(
                "%s looks truncated or corrupt: decoded %d frame(s)%s, %d bad packet(s)%s",
                p, index, f" of {expected} announced" if expected else "", bad_packets,
                f" ({stop_reason})" if stop_reason else "",
            )
    finally:
        container.close()


def _iter_image(p, start: int) -> Iterator[Frame]:
    frame = read_image(p)
    if start == 0:
        yield frame
