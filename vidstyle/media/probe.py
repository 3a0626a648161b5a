"""What a media file holds: :class:`MediaInfo` and :func:`probe`.

Videos are probed with PyAV (FFmpeg); still images (by suffix, or when FFmpeg reports an
image demuxer) with Pillow.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av

from ..errors import InputError
from .common import IMAGE_SUFFIXES, check_input_path, reason
from .image import image_has_alpha, open_image

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class MediaInfo:
    """Summary of a video or still image.

    Attributes:
        path: the probed file.
        kind: "video" or "image".
        width, height: pixel size of the decoded frames as stored, BEFORE rotation metadata is
            applied (a phone clip with ``rotation=90`` stored as 1920x1080 reports 1920x1080;
            players show it 1080x1920). For images EXIF orientation is already applied.
        frame_count: 1 for images. For videos the container's frame count (``nb_frames``,
            exact for mp4/mov/avi) when present, otherwise counted by demuxing every video
            packet without decoding (mkv/webm). A truncated file may decode fewer frames.
        fps: average frame rate (Fraction) or None for images / unknown.
        time_base: seconds per pts unit of the video stream; None for images.
        duration_s: video duration in seconds (stream, else container); None for images.
        rotation: counter-clockwise display rotation in degrees from the display matrix
            (0, 90, 180 or -90 ...); 0 if none.
        video_codec: FFmpeg codec name ("h264", "vp8") or the image format ("jpeg", "png").
        audio_codec: codec of the first audio stream, or None.
        audio_sample_rate: its sample rate in Hz, or None.
        has_alpha: the frames carry an alpha channel.
    """

    path: Path
    kind: str
    width: int
    height: int
    frame_count: int
    fps: Fraction | None
    time_base: Fraction | None
    duration_s: float | None
    rotation: int
    video_codec: str
    audio_codec: str | None
    audio_sample_rate: int | None
    has_alpha: bool

    def describe(self) -> str:
        """Multi-line human summary (used by ``vidstyle info``)."""
        size = f"{self.width}x{self.height}"
        if self.rotation % 180:
            size += f" (rotated {self.rotation} deg: shown {self.height}x{self.width})"
        elif self.rotation:
            size += f" (rotated {self.rotation} deg)"
        lines = [f"file:      {self.path}", f"kind:      {self.kind}", f"size:      {size}"]
        if self.kind == "video":
            fps = f"{float(self.fps):.3f}".rstrip("0").rstrip(".") if self.fps else "unknown"
            dur = f"{self.duration_s:.3f} s" if self.duration_s is not None else "unknown"
            lines += [
                f"frames:    {self.frame_count}",
                f"fps:       {fps} (average; time base {self.time_base})",
                f"duration:  {dur}",
                f"video:     {self.video_codec}",
            ]
            if self.audio_codec:
                rate = f", {self.audio_sample_rate} Hz" if self.audio_sample_rate else ""
                lines.append(f"audio:     {self.audio_codec}{rate}")
            else:
                lines.append("audio:     none")
        else:
            lines.append(f"format:    {self.video_codec}")
        lines.append(f"alpha:     {'yes' if self.has_alpha else 'no'}")
        return "\n".join(lines)


def _probe_image(p: Path) -> MediaInfo:
    im, fmt = open_image(p)
    return MediaInfo(
        path=p, kind="image", width=im.width, height=im.height, frame_count=1, fps=None,
        time_base=None, duration_s=None, rotation=0, video_codec=fmt.lower(),
        audio_codec=None, audio_sample_rate=None, has_alpha=image_has_alpha(im),
    )


def _codec_name(stream: av.stream.Stream) -> str:
    """Canonical codec name ("mp3", not the decoder's "mp3float")."""
    codec = stream.codec_context.codec
    return getattr(codec, "canonical_name", None) or codec.name


def open_video_container(p: Path) -> av.container.InputContainer:
    """``av.open`` for reading, mapping FFmpeg failures to a one-line InputError."""
    try:
        return av.open(str(p), mode="r", metadata_errors="ignore")
    except av.error.EOFError:
        raise InputError(f"{p} is empty or truncated: no media data could be read") from None
    except av.FFmpegError as e:
        raise InputError(
            f"{p} is not a readable media file (not media, or truncated/corrupt: {reason(e)})"
        ) from None
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"cannot open {p}: {reason(e)}") from None


def pick_video_stream(container: av.container.InputContainer) -> av.video.stream.VideoStream | None:
    """First video stream that is not an attached cover picture, or None."""
    for s in container.streams.video:
        if not (s.disposition & av.stream.Disposition.attached_pic):
            return s
    return None


def is_image_demuxer(container: av.container.InputContainer) -> bool:
    """True when FFmpeg opened the file with a still-image demuxer (png_pipe, image2 ...)."""
    names = container.format.name.split(",")
    return any(n == "image2" or n.endswith("_pipe") for n in names)


def probe(path: str | os.PathLike[str]) -> MediaInfo:
    """Describe the video or still image at ``path``.

    Decodes the first video frame (to read rotation and to prove the file decodes) and,
    for containers without a frame count, demuxes the video packets to count them.
    Raises InputError (one line) for: missing file, a directory, a non-media file,
    no video stream, zero frames, or no decodable frame.
    """
    p = check_input_path(path)
    if p.suffix.lower() in IMAGE_SUFFIXES:
        return _probe_image(p)
    container = open_video_container(p)
    try:
        if is_image_demuxer(container):
            return _probe_image(p)
        vs = pick_video_stream(container)
        if vs is None:
            raise InputError(f"{p} has no video stream")
        cc = vs.codec_context
        header_count = int(vs.frames or 0)
        counted = 0
        first = None
        try:
            for packet in container.demux(vs):
                if packet.size == 0 and packet.dts is None:
                    if first is None:
                        first = next(iter(vs.decode(None)), None)
                    continue
                counted += 1
                if first is None:
                    try:
                        frames = vs.decode(packet)
                    except av.FFmpegError:
                        frames = []
                    if frames:
                        first = frames[0]
                if first is not None and header_count > 0:
                    break
        except av.FFmpegError as e:
            logger.warning("%s: stopped reading at damaged data (%s)", p, e)
        frame_count = header_count if header_count > 0 else counted
        if frame_count == 0:
            raise InputError(f"{p} has a video stream but zero frames")
        if first is None:
            raise InputError(f"{p}: no video frame could be decoded (truncated or corrupt file)")
        tb = Fraction(vs.time_base) if vs.time_base else None
        fps = vs.average_rate or vs.guessed_rate or vs.base_rate
        fps = Fraction(fps) if fps else None
        if vs.duration and tb:
            duration = float(vs.duration * tb)
        elif container.duration:
            duration = container.duration / av.time_base
        elif fps:
            duration = float(frame_count / fps)
        else:
            duration = None
        audio = container.streams.audio[0] if container.streams.audio else None
        fmt = first.format
        has_alpha = any(c.is_alpha for c in fmt.components)
        return MediaInfo(
            path=p, kind="video", width=first.width or cc.width, height=first.height or cc.height,
            frame_count=frame_count, fps=fps, time_base=tb, duration_s=duration,
            rotation=int(round(first.rotation or 0)), video_codec=_codec_name(vs),
            audio_codec=_codec_name(audio) if audio is not None else None,
            audio_sample_rate=(audio.codec_context.sample_rate or None) if audio else None,
            has_alpha=has_alpha,
        )
    finally:
        container.close()
