"""Writing results: :class:`MediaWriter` (videos and stills) and :func:`check_output_path`.

Video output
    The container follows the suffix: .mp4/.m4v/.mov/.mkv/.avi get H.264 (libx264, CRF 18,
    preset veryfast by default); .webm gets VP9 (libvpx-vp9, constant quality, the CRF
    mapped linearly from x264's 0-51 scale to VP9's 0-63).
    Pixel format is yuv420p. H.264 4:2:0 cannot code an odd width or height, so for odd
    sizes the H.264 outputs use yuv444p (High 4:4:4 profile): the picture keeps its exact
    size and nothing is padded, scaled or cropped, at the cost of players without 4:4:4
    support (some hardware decoders, browsers). VP9 codes odd sizes in 4:2:0 directly.
    The YUV matrix is BT.709 for HD (height >= 720 or width >= 1280) and BT.601 below, and
    the stream is tagged with it (limited range). Video outputs carry no alpha (Frame.alpha
    is ignored); still outputs keep it for png/webp/tiff.

Timestamps
    Each frame is written with its source pts in the source time base (rescaled when the
    muxer picks another time base), so frame count, fps and VFR timing are kept; each
    frame's duration is the gap to the next one, the last one gets the previous gap.
    AVI cannot carry timestamps: its time base is 1/fps and pts are rounded to it (VFR
    is lost; FFmpeg's AVI demuxer may also report H.264 pts one frame late). H.264 in AVI is
    written without B-frames.
    Rotation (display matrix) is written to the output stream (mp4/mov/mkv/webm keep it).

Audio
    The first audio stream of ``source`` is copied packet by packet when the output
    container can hold its codec; otherwise (Vorbis into MP4, AAC into WebM, ...) or when
    copying fails at header time it is transcoded (AAC for mp4/mov/mkv, Opus for webm, MP3
    for avi). Audio packets are read by a second demuxer on the source and muxed up to the
    time of each video frame, so neither stream is buffered whole. When fewer frames than
    the source has are written (a preview), the audio stops at the end of the last frame.

Atomicity
    The encoder writes to a hidden temp file in the output directory with the same suffix;
    only a successful :meth:`MediaWriter.close` ``os.replace``s it onto the final name.
    :meth:`MediaWriter.abort`, or any exception (KeyboardInterrupt included) inside a
    ``with MediaWriter(...)`` block, deletes it. Still-image outputs are written at close.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from ..config import EncodeConfig
from ..errors import OutputError, OutputPathError, UsageError
from .common import (
    IMAGE_SUFFIXES,
    VIDEO_SUFFIXES,
    Frame,
    hidden_temp_path,
    reason,
    remove_quietly,
    yuv_matrix,
)
from .image import write_image
from .probe import MediaInfo

logger = logging.getLogger(__name__)


# x264 preset -> (libvpx deadline, cpu-used). libvpx "good" mode runs ~150 ms per
# 960x400 frame on 2 cores whatever cpu-used is, so the fast presets use "realtime"
# (~5x faster, ~15-25 % larger files at the same CRF).
_VP9_SPEED = {
    "ultrafast": ("realtime", 8), "superfast": ("realtime", 8), "veryfast": ("realtime", 7),
    "faster": ("realtime", 6), "fast": ("good", 4), "medium": ("good", 2), "slow": ("good", 1),
    "slower": ("good", 0), "veryslow": ("good", 0), "placebo": ("best", 0),
}


@dataclass(frozen=True)
class _ContainerSpec:
    video_codec: str
    audio_copy: frozenset[str] | None  # codecs that may be stream-copied; None = any
    audio_codec: str  # transcode target
    keeps_rotation: bool
    options: tuple[tuple[str, str], ...] = ()


_MP4_AUDIO = frozenset({"aac", "mp3", "ac3", "eac3", "alac", "opus", "flac"})
_SPECS: dict[str, _ContainerSpec] = {
    "mp4": _ContainerSpec("libx264", _MP4_AUDIO, "aac", True, (("movflags", "+faststart"),)),
    "mov": _ContainerSpec(
        "libx264",
        frozenset({"aac", "mp3", "ac3", "eac3", "alac", "pcm_s16le", "pcm_s16be",
                   "pcm_s24le", "pcm_s24be", "pcm_f32le", "pcm_f32be"}),
        "aac", True, (("movflags", "+faststart"),),
    ),
    "matroska": _ContainerSpec("libx264", None, "aac", True),
    "webm": _ContainerSpec("libvpx-vp9", frozenset({"opus", "vorbis"}), "libopus", True),
    # AVI: no timestamps, so no shifting for the audio encoder's priming (that would insert
    # an empty video frame at the start).
    "avi": _ContainerSpec(
        "libx264", frozenset({"mp3", "mp2", "ac3", "pcm_s16le", "pcm_u8"}), "libmp3lame", False,
        (("avoid_negative_ts", "disabled"),),
    ),
}

_SUPPORTED = ", ".join(sorted(set(VIDEO_SUFFIXES) | set(IMAGE_SUFFIXES)))


#: x264 settings added to every H.264 encode. ``mbtree=0``: x264's macroblock-tree rate
#: control (on in every preset but ultrafast) makes the encoded pictures vary from run to
#: run for the same input frames (measured with this build: ~5-15% of encodes of an
#: 8-frame clip under load, with 1 or 2 threads), so a rerun, a resumed item or a retried
#: batch task would not reproduce its output; without it they are bit-identical (at a
#: slightly larger file for the same CRF).
X264_PARAMS = ("mbtree=0",)


def encoder_threads() -> int:
    """Encoder threads: the CPUs this process may use, capped at 16."""
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - non-Linux
        n = os.cpu_count() or 1
    return max(1, min(16, n))


def check_output_path(path: str | os.PathLike[str], *, input_path: str | os.PathLike[str]) -> Path:
    """Validate an output path before any heavy work; return it as an absolute Path.

    Raises:
        OutputPathError (a UsageError): unsupported suffix, missing folder, or the path is
            a directory.
        OutputError: the folder cannot be written.
        UsageError: the output is the input file (same resolved path or same inode).
    """
    p = Path(path)
    if p.suffix.lower() not in VIDEO_SUFFIXES and p.suffix.lower() not in IMAGE_SUFFIXES:
        shown = p.suffix or "(none)"
        raise OutputPathError(f"unsupported output suffix {shown} for {p}; use one of {_SUPPORTED}")
    out = p.expanduser().resolve()
    src = Path(input_path).expanduser().resolve()
    same = out == src
    if not same and out.exists() and src.exists():
        try:
            same = os.path.samefile(out, src)
        except OSError:
            same = False
    if same:
        raise UsageError(f"output {p} is the input file; choose another output name")
    if out.is_dir():
        raise OutputPathError(f"output {p} is a directory; give a file name")
    parent = out.parent
    if not parent.exists():
        raise OutputPathError(f"output directory does not exist: {parent}")
    if not parent.is_dir():
        raise OutputPathError(f"output directory is not a directory: {parent}")
    probe_file = hidden_temp_path(out)  # raises OutputError when not writable
    remove_quietly(probe_file)
    return out


def _audio_rate(codec: str, rate: int) -> int:
    rates = av.codec.Codec(codec, "w").audio_rates
    if not rates or rate in rates:
        return rate
    return 48000 if 48000 in rates else max(rates)


class _AudioMuxer:
    """Copies or transcodes the source's first audio stream into ``out``, in time order."""

    def __init__(self, source: Path, out: av.container.OutputContainer, *, copy: bool,
                 codec: str) -> None:
        self._in = av.open(str(source), metadata_errors="ignore")
        self._src = self._in.streams.audio[0]
        self._out = out
        self.copy = copy
        if copy:
            self.stream = out.add_stream_from_template(self._src)
        else:
            cc = self._src.codec_context
            layout = cc.layout.name if cc.layout.nb_channels <= 2 or codec == "aac" else "stereo"
            self.stream = out.add_stream(codec, rate=_audio_rate(codec, cc.sample_rate or 48000),
                                         layout=layout)
        self._packets = self._in.demux(self._src)
        self._held: av.Packet | None = None
        self._done = False
        self.packets_in = 0

    def feed_until(self, t: float | None) -> None:
        """Mux every audio packet whose time is <= ``t`` seconds (all of them for None)."""
        while not self._done:
            pkt = self._held
            self._held = None
            if pkt is None:
                try:
                    pkt = next(self._packets)
                except StopIteration:
                    self._done = True
                    break
                except av.FFmpegError as e:
                    logger.warning("audio of %s ends early: %s", self._in.name, e)
                    self._done = True
                    break
            if pkt.size == 0:
                continue
            ts = pkt.pts if pkt.pts is not None else pkt.dts
            if t is not None and ts is not None and pkt.time_base is not None:
                if float(ts * pkt.time_base) > t:
                    self._held = pkt
                    return
            self._mux(pkt)

    def _mux(self, pkt: av.Packet) -> None:
        self.packets_in += 1
        if self.copy:
            if pkt.pts is None and pkt.dts is None:
                return
            pkt.stream = self.stream
            self._out.mux(pkt)
            return
        try:
            frames = self._src.decode(pkt)
        except av.FFmpegError as e:
            logger.warning("skipping an undecodable audio packet: %s", e)
            return
        for fr in frames:
            self._out.mux(self.stream.encode(fr))

    def finish(self, until: float | None = None) -> None:
        """Mux the rest of the audio (up to ``until`` seconds if given) and flush."""
        self.feed_until(until)
        self._done = True
        if not self.copy:
            try:
                for fr in self._src.decode(None):
                    self._out.mux(self.stream.encode(fr))
            except av.FFmpegError as e:
                logger.warning("audio decoder flush failed: %s", e)
            self._out.mux(self.stream.encode(None))

    def close(self) -> None:
        try:
            self._in.close()
        except Exception:  # noqa: BLE001 - best effort
            pass


class MediaWriter:
    """Write frames to a video (or one frame to a still image), atomically.

    Use as a context manager::

        with MediaWriter(out, source=probe(inp)) as w:
            for frame in iter_frames(inp):
                w.write(frame)          # pts and time base taken from the Frame

    Args:
        path: output file; its suffix picks the container/format.
        source: MediaInfo of the input (fps, time base, rotation, audio come from it).
        encode: :class:`~vidstyle.config.EncodeConfig` (default: its defaults): ``crf``
            quality, x264 scale 0 (lossless) .. 51, mapped for VP9; ``preset`` x264 speed,
            mapped to libvpx speed settings for VP9; ``copy_audio`` carries the source's
            audio over (copied, or transcoded if needed).

    The constructor touches no file. Raises OutputPathError for an unsupported suffix.
    """

    def __init__(self, path: str | os.PathLike[str], *, source: MediaInfo,
                 encode: EncodeConfig | None = None) -> None:
        self.path = Path(path)
        suffix = self.path.suffix.lower()
        if suffix in IMAGE_SUFFIXES:
            self._kind = "image"
            self._muxer = ""
        elif suffix in VIDEO_SUFFIXES:
            self._kind = "video"
            self._muxer = VIDEO_SUFFIXES[suffix]
        else:
            raise OutputPathError(
                f"unsupported output suffix {suffix or '(none)'} for {self.path}; "
                f"use one of {_SUPPORTED}"
            )
        encode = encode or EncodeConfig()
        self.source = source
        self.crf = encode.crf
        self.preset = encode.preset
        self.copy_audio = encode.copy_audio
        self._tmp: Path | None = None
        self._container: av.container.OutputContainer | None = None
        self._vstream: av.video.stream.VideoStream | None = None
        self._audio: _AudioMuxer | None = None
        self._pix_fmt = "yuv420p"
        self._matrix = "itu709"
        self._tb = Fraction(1, 25)
        self._step = 1
        self._size: tuple[int, int] | None = None
        self._pending: av.VideoFrame | None = None
        self._last_pts: int | None = None
        self._last_delta: int | None = None
        self._warned_pts = False
        self._still: tuple[np.ndarray, np.ndarray | None] | None = None
        self._count = 0
        self._closed = False
        self.audio_mode: str | None = None  # "copy", "transcode" or None, once opened

    # -- context manager -------------------------------------------------------------
    def __enter__(self) -> MediaWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc_type is not None:
            self.abort()
        else:
            self.close()
        return False

    def __del__(self) -> None:
        if not getattr(self, "_closed", True):
            self.abort()

    @property
    def frames_written(self) -> int:
        """Number of frames accepted by :meth:`write` so far."""
        return self._count

    # -- writing ---------------------------------------------------------------------
    def write(self, frame: Frame | np.ndarray, *, pts: int | None = None) -> None:
        """Add one frame: a :class:`Frame` or an (H, W, 3) uint8 RGB array.

        ``pts`` (in the Frame's time base, else the source's) overrides the frame's own
        timestamp. Frames without any pts are spaced 1/fps apart. A still-image output
        takes exactly one frame (written at :meth:`close`).
        """
        if self._closed:
            raise RuntimeError("MediaWriter is closed")
        if isinstance(frame, Frame):
            rgb, alpha, fpts, ftb = frame.rgb, frame.alpha, frame.pts, frame.time_base
        else:
            rgb, alpha, fpts, ftb = frame, None, None, None
        rgb = np.asarray(rgb)
        if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
            raise ValueError(f"expected (H, W, 3) uint8 RGB, got {rgb.shape} {rgb.dtype}")
        if self._kind == "image":
            if self._still is not None:
                raise OutputError(f"{self.path} is a still image: it takes exactly one frame")
            self._still = (rgb, alpha)
            self._count += 1
            return
        h, w = rgb.shape[:2]
        try:
            if self._container is None:
                self._open(w, h)
            elif (w, h) != self._size:
                raise ValueError(f"frame size {w}x{h} differs from the first frame's "
                                 f"{self._size[0]}x{self._size[1]}")
            out_pts = self._resolve_pts(pts if pts is not None else fpts, ftb)
            vf = av.VideoFrame.from_numpy_buffer(np.ascontiguousarray(rgb), format="rgb24")
            vf = vf.reformat(format=self._pix_fmt, dst_colorspace=self._matrix,
                             dst_color_range=1)
            vf.pts = out_pts
            vf.time_base = self._tb
            if self._audio is not None:
                self._audio.feed_until(float(out_pts * self._tb))
            if self._pending is not None:
                self._last_delta = out_pts - self._pending.pts
                self._encode(self._pending, self._last_delta)
            self._pending = vf
            self._last_pts = out_pts
            self._count += 1
        except av.FFmpegError as e:
            self.abort()
            raise OutputError(f"encoding {self.path} failed: {reason(e)}") from None

    def _resolve_pts(self, pts: int | None, tb: Fraction | None) -> int:
        if pts is not None:
            tb = tb or self.source.time_base or self._tb
            out = int(pts) if tb == self._tb else int(round(pts * tb / self._tb))
        elif self._last_pts is None:
            out = 0
        else:
            out = self._last_pts + self._step
        if self._last_pts is not None and out <= self._last_pts:
            if not self._warned_pts:
                logger.warning("%s: non-increasing timestamps; shifting frames to keep order",
                               self.path.name)
                self._warned_pts = True
            out = self._last_pts + 1
        return out

    def _encode(self, vf: av.VideoFrame, duration: int) -> None:
        vf.duration = max(1, duration)
        self._container.mux(self._vstream.encode(vf))

    # -- setup -----------------------------------------------------------------------
    def _open(self, w: int, h: int) -> None:
        spec = _SPECS[self._muxer]
        src = self.source
        fps = Fraction(src.fps) if src.fps else Fraction(25)
        fps = fps.limit_denominator(1001000) if fps > 0 else Fraction(25)
        if self._muxer == "avi" or src.time_base is None or src.kind != "video":
            tb = 1 / fps
        else:
            tb = Fraction(src.time_base)
        self._tb = tb
        self._step = max(1, round(1 / (fps * tb)))
        self._size = (w, h)
        odd = (w % 2) or (h % 2)
        self._pix_fmt = "yuv444p" if odd and spec.video_codec == "libx264" else "yuv420p"
        self._matrix = yuv_matrix(2, w, h)
        if src.rotation and not spec.keeps_rotation:
            logger.warning("%s cannot store rotation metadata; the %d deg rotation is lost",
                           self.path.suffix, src.rotation)

        want_audio = (self.copy_audio and src.kind == "video" and src.audio_codec is not None)
        modes: list[str | None] = [None]
        if want_audio:
            can_copy = spec.audio_copy is None or src.audio_codec in spec.audio_copy
            modes = ["copy", "transcode"] if can_copy else ["transcode"]
        last_err: Exception | None = None
        for mode in modes:
            self._tmp = hidden_temp_path(self.path)
            try:
                self._setup(spec, w, h, fps, tb, mode)
                self._container.start_encoding()
                self.audio_mode = mode
                if mode == "transcode" and "copy" not in modes:
                    logger.info("audio %s cannot be copied into %s; transcoding to %s",
                                src.audio_codec, self.path.suffix, spec.audio_codec)
                return
            except (av.FFmpegError, OSError, ValueError) as e:
                last_err = e
                self._teardown()
                if mode == "copy":
                    logger.info("copying audio into %s failed (%s); transcoding instead",
                                self.path.name, reason(e))
        self._closed = True
        why = reason(last_err) if last_err is not None else "unknown error"
        raise OutputError(f"cannot start writing {self.path}: {why}")

    def _setup(self, spec: _ContainerSpec, w: int, h: int, fps: Fraction, tb: Fraction,
               audio_mode: str | None) -> None:
        out = av.open(str(self._tmp), mode="w", format=self._muxer, options=dict(spec.options))
        self._container = out
        if spec.video_codec == "libx264":
            opts = {"crf": str(self.crf), "preset": self.preset,
                    "x264-params": ":".join(X264_PARAMS)}
            if self._muxer == "avi":
                opts["x264-params"] += ":bframes=0"  # AVI has no pts: no frame reordering
        else:
            deadline, cpu_used = _VP9_SPEED[self.preset]
            opts = {"crf": str(round(self.crf * 63 / 51)), "deadline": deadline,
                    "cpu-used": str(cpu_used), "row-mt": "1"}
        vs = out.add_stream(spec.video_codec, rate=fps, options=opts)
        vs.width = w
        vs.height = h
        vs.pix_fmt = self._pix_fmt
        cc = vs.codec_context
        cc.time_base = tb
        vs.time_base = tb
        cc.thread_count = encoder_threads()
        if spec.video_codec == "libvpx-vp9":
            cc.bit_rate = 0
        tag = 1 if self._matrix == "itu709" else 6  # BT.709 or SMPTE 170M (BT.601)
        cc.colorspace = tag
        cc.color_primaries = tag
        cc.color_trc = tag
        cc.color_range = 1
        if self.source.rotation and spec.keeps_rotation:
            vs.set_display_rotation(self.source.rotation)
        self._vstream = vs
        if audio_mode is not None:
            self._audio = _AudioMuxer(self.source.path, out, copy=audio_mode == "copy",
                                      codec=spec.audio_codec)

    def _teardown(self) -> None:
        if self._audio is not None:
            self._audio.close()
            self._audio = None
        if self._container is not None:
            try:
                self._container.close()
            except Exception:  # noqa: BLE001 - best effort while cleaning up
                pass
            self._container = None
        remove_quietly(self._tmp)
        self._tmp = None

    # -- finishing -------------------------------------------------------------------
    def close(self) -> Path:
        """Finish the file and move it onto the final name; return the final path.

        Raises OutputError if no frame was written or finishing fails (no file is left).
        """
        if self._closed:
            return self.path
        try:
            if self._kind == "image":
                if self._still is None:
                    raise OutputError(f"no frame was written to {self.path}")
                write_image(self.path, *self._still)
                self._closed = True
                return self.path
            if self._container is None:
                raise OutputError(f"no frame was written to {self.path}")
            if self._pending is not None:
                self._encode(self._pending, self._last_delta or self._step)
                self._pending = None
            self._container.mux(self._vstream.encode(None))
            if self._audio is not None:
                # Fewer frames than the source (a preview, --max-frames): cut the audio at
                # the end of the last frame instead of running on past the picture.
                until = None
                if self._count < self.source.frame_count and self._last_pts is not None:
                    until = float((self._last_pts + (self._last_delta or self._step)) * self._tb)
                self._audio.finish(until)
                self._audio.close()
                self._audio = None
            self._container.close()
            self._container = None
            os.replace(self._tmp, self.path)
            self._tmp = None
            self._closed = True
            return self.path
        except (av.FFmpegError, OSError) as e:
            self.abort()
            raise OutputError(f"finishing {self.path} failed: {reason(e)}") from None
        except BaseException:
            self.abort()
            raise

    def abort(self) -> None:
        """Stop writing and delete the temp file; the final name is left untouched."""
        self._pending = None
        self._still = None
        self._teardown()
        self._closed = True
