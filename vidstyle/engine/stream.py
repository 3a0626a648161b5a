"""Frame stylizers under the engine: decode -> (flow, masks) -> stylize -> encode as one
stream, stages overlapped in threads with bounded queues.

- decode thread: decodes, brings each frame to the stylizer's working size
  (``stylizer.prepare``) and, when the stylizer asks for motion and the pipeline has a
  flow stage, estimates the pair with the previous frame (:func:`vidstyle.flow.frame_pair`:
  forward and backward flow, consistency mask, shot cut).
- the calling thread: the stylizer (``stylize``), or the frame's cached output when the
  stylizer's outputs are costly (``needs.cache``: each finished frame is written to the
  work directory first, so a killed run resumes at the first unfinished frame).
- encode thread: ``stylizer.finish`` (e.g. the fast path's output blend), then the
  encoder. The output appears only when complete (:class:`vidstyle.media.MediaWriter`).
"""

from __future__ import annotations

import dataclasses
import queue
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from vidstyle import media
from vidstyle.config import EncodeConfig
from vidstyle.contracts import (
    FrameContext,
    FramePair,
    FrameStylizer,
    Instances,
    ProgressEvent,
    ProgressFn,
    frame_unit,
    limited,
)
from vidstyle.errors import InputError
from vidstyle.flow import FlowEstimator, frame_pair
from vidstyle.imageops import resize_uint8
from vidstyle.tensors import to_tensor, to_uint8
from vidstyle.workdir import Stage, load_png, save_png

#: Frames in flight between two threads.
QUEUE_SIZE = 4


class _Stop(Exception):
    """Internal: a worker saw the stop flag."""


_END = object()


@dataclass
class StreamResult:
    """Frames written, computed and reused (from the cache), and the frames that start a
    new shot (their pair with the previous frame was a cut)."""

    frames: int
    computed: int
    reused: int
    cuts: list[int]


def frame_total(info: Any, max_frames: int | None) -> int | None:
    """Frames a run will process: the probed count (None when unknown) capped by
    ``--max-frames``."""
    total = info.frame_count or None
    if max_frames is not None:
        total = min(total, max_frames) if total else max_frames
    return total


def motion(previous: torch.Tensor | None, current: torch.Tensor, *,
           flow: FlowEstimator | None, masks: bool) -> FramePair | None:
    """The flow (and masks) stage for one frame: the pair with the previous frame, or
    None for a first frame, a size change, or no flow stage."""
    if flow is None or previous is None or previous.shape != current.shape:
        return None
    return frame_pair(previous, current, flow=flow, masks=masks)


def stylize_sequence(
    stylizer: FrameStylizer,
    frames: Iterable[torch.Tensor],
    *,
    flow: FlowEstimator | None,
    masks: bool = True,
) -> tuple[list[torch.Tensor], list[int]]:
    """The engine's per-frame path without threads, decoding or encoding: working-size
    frames (1, 3, H, W) in order -> stylized frames, and the indices of frames that
    start a new shot. For evaluation and benchmarks on tensors; ``vidstyle run`` gives
    the same frames (see :func:`stream_frames`)."""
    outs: list[torch.Tensor] = []
    cuts: list[int] = []
    prev: torch.Tensor | None = None
    for i, x in enumerate(frames):
        with torch.inference_mode():
            pair = motion(prev, x, flow=flow, masks=masks)
        if pair is not None and pair.cut:
            cuts.append(i)
        ctx = FrameContext(index=i, size=(x.shape[-2], x.shape[-1]), pair=pair)
        y = stylizer.stylize(x, ctx)
        with torch.inference_mode():
            outs.append(stylizer.finish(y, ctx))
        prev = x
    return outs, cuts


def stream_frames(
    stylizer: FrameStylizer,
    *,
    input_path: str | Path,
    output_path: str | Path,
    info: Any,
    encode: EncodeConfig,
    max_frames: int | None,
    flow: FlowEstimator | None,
    masks: bool,
    cache: Stage | None,
    progress: ProgressFn,
    frames: Callable[[], Any] | None = None,
    people: Callable[[int], Instances] | None = None,
) -> StreamResult:
    """Stylize a whole clip through ``stylizer`` into ``output_path`` (see the module
    docstring). ``flow``: the flow stage's estimator (None: no motion in the contexts);
    ``masks``: compute consistency masks and cuts; ``cache``: the stage keeping finished
    frames (None: stream only). ``frames`` replaces decoding ``input_path`` (tests).
    ``people(i)``: the tracked people of frame i (the segment stage's result), for
    stylizers that ask for them.

    On any error or KeyboardInterrupt the threads stop, the partial output is deleted
    (finished frames stay in ``cache``) and the exception propagates.
    """
    total = frame_total(info, max_frames)
    stop = threading.Event()
    q_in: queue.Queue[Any] = queue.Queue(maxsize=QUEUE_SIZE)
    q_out: queue.Queue[Any] = queue.Queue(maxsize=QUEUE_SIZE)
    errors: list[BaseException] = []
    written = [0]
    cuts: list[int] = []
    source = frames or (lambda: media.iter_frames(input_path))

    def put(q: queue.Queue[Any], item: Any) -> None:
        while True:
            if stop.is_set():
                raise _Stop
            try:
                q.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def get(q: queue.Queue[Any]) -> Any:
        while True:
            if stop.is_set():
                raise _Stop
            try:
                return q.get(timeout=0.1)
            except queue.Empty:
                continue

    def decoder() -> None:
        try:
            prev: torch.Tensor | None = None
            with torch.inference_mode():
                for frame in limited(source(), max_frames):
                    x = stylizer.prepare(frame.rgb)
                    pair = motion(prev, x, flow=flow, masks=masks)
                    if pair is not None and pair.cut:
                        cuts.append(frame.index)
                    prev = x
                    ctx = FrameContext(index=frame.index, size=(x.shape[-2], x.shape[-1]),
                                       total=total, pair=pair, alpha=frame.alpha,
                                       progress=progress,
                                       instances=people(frame.index) if people else None)
                    put(q_in, (frame, x, ctx))
            put(q_in, _END)
        except _Stop:
            pass
        except BaseException as e:  # noqa: BLE001 - handed to the main thread
            errors.append(e)
            stop.set()

    def encoder() -> None:
        writer = media.MediaWriter(output_path, source=info, encode=encode)
        try:
            while True:
                item = get(q_out)
                if item is _END:
                    break
                frame, ctx, y, final = item
                if not final:
                    with torch.inference_mode():
                        y = stylizer.finish(y, ctx)  # in order, beside the network
                rgb = to_uint8(y)
                alpha = None if frame.alpha is None else resize_uint8(frame.alpha, rgb.shape[:2])
                writer.write(dataclasses.replace(frame, rgb=rgb, alpha=alpha))
                written[0] += 1
            if written[0] == 0:
                raise InputError(f"{input_path}: no frames could be decoded")
            writer.close()
        except _Stop:
            writer.abort()
        except BaseException as e:  # noqa: BLE001 - handed to the main thread
            writer.abort()
            errors.append(e)
            stop.set()

    threads = [threading.Thread(target=decoder, name="vidstyle-decode", daemon=True),
               threading.Thread(target=encoder, name="vidstyle-encode", daemon=True)]
    for t in threads:
        t.start()
    done = computed = reused = 0
    try:
        while True:
            item = get(q_in)
            if item is _END:
                break
            frame, x, ctx = item
            unit = frame_unit(frame.index)
            if cache is not None and cache.has(unit):
                y = to_tensor(load_png(cache.path(unit)))
                stylizer.observe(y, ctx)
                reused += 1
                final = True
            else:
                # not under inference_mode: an optimizing stylizer needs autograd
                y = stylizer.stylize(x, ctx)
                final = False
                if cache is not None:
                    y = stylizer.finish(y, ctx)
                    save_png(cache.path(unit), to_uint8(y))
                    final = True
                computed += 1
            put(q_out, (frame, ctx, y, final))
            done += 1
            progress(ProgressEvent("stylize", done, total))
        put(q_out, _END)
        threads[1].join()
    except _Stop:
        pass
    except BaseException:
        stop.set()
        for t in threads:
            t.join()
        raise
    finally:
        if errors:
            stop.set()
        for t in threads:
            t.join(timeout=None if errors or stop.is_set() else 0)
    if errors:
        raise errors[0]
    threads[0].join()
    return StreamResult(written[0], computed, reused, cuts)


__all__ = ["StreamResult", "frame_total", "motion", "stream_frames", "stylize_sequence"]
