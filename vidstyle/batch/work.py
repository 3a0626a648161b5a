"""The unit of work of a batch, the same for every backend.

:func:`process_item` stylizes one item into its output and writes its receipt; the local
backend calls it in the driver, the ``--jobs N`` process pool and Ray workers call it in
their own processes, so every backend shares one code path and one set of promises:

- the output appears atomically when complete (:func:`vidstyle.engine.run`), then the
  receipt; a process killed at any moment leaves no partial output under the final name,
  and the optimization method's finished frames stay in the item's work folder
  (``OUT_DIR/.vidstyle-batch/work/<relative path>``), so a rerun, or a retry of the task
  on another worker that sees the same folder, resumes there;
- every exception of an item (a bad input, a failing encoder, a bug) becomes that item's
  failed :class:`Outcome`; none stops the batch. Only Ctrl-C (:class:`Interrupted`,
  KeyboardInterrupt) propagates.

Long videos (fast method, ``--chunk-frames N``): :func:`plan_chunks` splits the frames into
chunks; :func:`process_chunk` stylizes one chunk into a lossless intermediate file in the
work folder, starting ``warmup`` frames early so the stabilization state (the warped
previous output and network features) has converged at the chunk's first frame; those
warm-up frames are dropped. :func:`join_chunks` then encodes the output once, with the
source's timestamps and its audio, from the chunks in order. A finished chunk file is
kept until the item's receipt is written, so a retry redoes only unfinished chunks.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch

from vidstyle import media
from vidstyle.batch.plan import BatchItem, file_record, is_done, write_receipt
from vidstyle.config import RunConfig, fingerprint_of
from vidstyle.contracts import FrameContext, ProgressFn, limited
from vidstyle.device import pick_device
from vidstyle.engine import PipelineSpec, make_stylizer, run, stylizer_class
from vidstyle.engine.stream import frame_total, motion
from vidstyle.errors import Interrupted, OutputError, UsageError, VidstyleError, describe
from vidstyle.fileio import atomic_write_bytes
from vidstyle.flow import flow_from_config
from vidstyle.imageops import resize_uint8
from vidstyle.media.lossless import LOSSLESS_SUFFIX, LosslessWriter
from vidstyle.tensors import to_uint8
from vidstyle.workdir import Stage

log = logging.getLogger(__name__)

Status = Literal["done", "skipped", "failed"]


@dataclass(frozen=True)
class ItemSettings:
    """What every item of one batch is run with (picklable: sent to worker processes).

    config: the resolved RunConfig; pipeline: its stages; fingerprint: the receipts'
    settings fingerprint (:func:`~vidstyle.batch.plan.settings_fingerprint`); keep_work:
    keep each item's work folder; overwrite: replace outputs no batch wrote; threads:
    torch threads in a worker process (0: leave the process's setting); chunk_frames and
    warmup: see :class:`~vidstyle.config.BatchConfig`.
    """

    config: RunConfig
    pipeline: PipelineSpec
    fingerprint: str
    keep_work: bool = False
    overwrite: bool = False
    threads: int = 0
    chunk_frames: int = 0
    warmup: int = 16


@dataclass(frozen=True)
class Outcome:
    """What became of one item (or one chunk of one): ``status``, a one-line ``reason``
    when failed, frames written, wall seconds, and the worker (``host:pid``)."""

    rel: Path
    status: Status
    reason: str = ""
    frames: int = 0
    seconds: float = 0.0
    worker: str = ""
    chunks: int = 0

    def as_json(self) -> dict[str, Any]:
        return {"item": str(self.rel), "status": self.status, "reason": self.reason,
                "frames": self.frames, "seconds": round(self.seconds, 3),
                "worker": self.worker, "chunks": self.chunks}


@dataclass(frozen=True)
class Chunk:
    """Frames ``start`` .. ``end - 1`` of an item (``end`` None: to the last frame)."""

    index: int
    start: int
    end: int | None


@dataclass(frozen=True)
class ChunkPlan:
    """The chunks of one item, their folder (a work-folder stage valid for one
    fingerprint) and the input's file record taken before any work (for the receipt)."""

    chunks: tuple[Chunk, ...]
    folder: Path
    source: dict[str, Any]

    def path(self, chunk: Chunk) -> Path:
        return self.folder / f"chunk_{chunk.start:09d}{LOSSLESS_SUFFIX}"


def worker_name() -> str:
    """``host:pid`` of this process (the report says where each item ran)."""
    return f"{socket.gethostname()}:{os.getpid()}"


def failure_reason(exc: BaseException, item: BatchItem) -> str:
    """One line saying why an item failed: a VidstyleError's message, an OSError's text
    and file, or for anything else (a bug) the exception's type and message."""
    if isinstance(exc, VidstyleError):
        text = str(exc).strip()
        return text.splitlines()[0] if text else type(exc).__name__
    if isinstance(exc, OSError):
        return f"{describe(exc)}: {exc.filename or item.output}"
    return f"{type(exc).__name__}: {describe(exc)}"


def _pending(item: BatchItem) -> Path:
    """The marker a worker leaves while it may replace ``item``'s output: a process killed
    between the output's appearance and its receipt leaves an output that a batch did
    write, and the retry or rerun may replace it."""
    return item.receipt.with_name(item.receipt.name + ".pending")


def _check_output(item: BatchItem, settings: ItemSettings) -> None:
    if item.output.exists() and not (settings.overwrite or item.receipt.is_file()
                                     or _pending(item).is_file()):
        raise UsageError(f"{item.output} exists and was not written by a batch: remove it, "
                         "or pass --overwrite")


def _claim(item: BatchItem, settings: ItemSettings) -> None:
    """Check the output may be written, then leave the :func:`_pending` marker."""
    _check_output(item, settings)
    atomic_write_bytes(_pending(item), settings.fingerprint.encode())


def _unclaim(item: BatchItem) -> None:
    """A failed item: no marker, unless the output may have been written already."""
    if not item.output.exists():
        _pending(item).unlink(missing_ok=True)


def _done(item: BatchItem, settings: ItemSettings, source: dict[str, Any],
          frames: int) -> None:
    """The receipt, then no more marker, then no more work folder."""
    write_receipt(item, settings.fingerprint, source, frames)
    _pending(item).unlink(missing_ok=True)
    _clean_work(item, settings)


def _set_threads(settings: ItemSettings) -> None:
    if settings.threads and torch.get_num_threads() != settings.threads:
        torch.set_num_threads(settings.threads)


def _clean_work(item: BatchItem, settings: ItemSettings) -> None:
    if not settings.keep_work and item.work_dir.exists():
        shutil.rmtree(item.work_dir, ignore_errors=True)


def process_item(
    item: BatchItem,
    settings: ItemSettings,
    *,
    progress: ProgressFn | None = None,
    stylizer_factory: Callable[..., Any] | None = None,
) -> Outcome:
    """Stylize ``item`` into its output and write its receipt (see the module doc).

    Already done (its receipt matches): ``skipped``, nothing touched but a leftover work
    folder. ``progress`` gets the per-frame events; ``stylizer_factory`` replaces the
    real stylizer (tests; in-process backends only). Never raises but for Ctrl-C.
    """
    t0 = time.monotonic()

    def done(**kw: Any) -> Outcome:
        return Outcome(item.rel, seconds=time.monotonic() - t0, worker=worker_name(), **kw)

    try:
        _set_threads(settings)
        if is_done(item, settings.fingerprint):
            _clean_work(item, settings)  # killed after the receipt, before its clean-up
            return done(status="skipped")
        _claim(item, settings)
        item.output.parent.mkdir(parents=True, exist_ok=True)
        plan = plan_chunks(item, settings)
        if plan is not None:
            for chunk in plan.chunks:
                out = process_chunk(item, settings, plan, chunk)
                if out.status == "failed":
                    return out
            return join_chunks(item, settings, plan)
        source = file_record(item.input)  # before: the input may change meanwhile
        keeps = stylizer_class(settings.config).needs_for(settings.config).cache
        res = run(item.input, item.output, settings.config, pipeline=settings.pipeline,
                  work_dir=item.work_dir if keeps else None, progress=progress,
                  stylizer_factory=stylizer_factory, overwrite=True, keep_work=keeps)
        _done(item, settings, source, res.frames)
        return done(status="done", frames=res.frames)
    except Interrupted:
        raise  # Ctrl-C stops the batch; the item's finished frames stay for the rerun
    except Exception as e:  # noqa: BLE001 - every failure of an item is that item's
        reason = failure_reason(e, item)
        level = logging.INFO if isinstance(e, (VidstyleError, OSError)) else logging.WARNING
        log.log(level, "%s: %s", item.rel, reason,
                exc_info=not isinstance(e, (VidstyleError, OSError)))
        _unclaim(item)
        return done(status="failed", reason=reason)


# -- long videos in chunks ---------------------------------------------------------------


def chunks_of(total: int, size: int, *, open_end: bool) -> tuple[Chunk, ...]:
    """Chunks of ``size`` frames covering ``total`` frames; the last one takes the rest
    (also any frames past ``total`` when ``open_end``: a probed count may be short)."""
    starts = list(range(0, total, size))
    return tuple(Chunk(k, s, None if k == len(starts) - 1 and open_end
                       else min(s + size, total))
                 for k, s in enumerate(starts))


def chunkable(config: RunConfig, item: BatchItem) -> bool:
    """Whether ``item`` may be split: a video output of the fast method streaming its
    frames (not per-person styles: their people are tracked over the whole clip)."""
    needs = stylizer_class(config).needs_for(config)
    return (config.method == "fast" and not needs.cache and not needs.instances
            and not media.is_image_path(item.output))


def plan_chunks(item: BatchItem, settings: ItemSettings) -> ChunkPlan | None:
    """The chunks of ``item``, or None when it runs whole (chunking off, not
    :func:`chunkable`, or not longer than one chunk). Opens the item's chunk folder
    (emptied when it holds chunks of other settings or another input) and takes the
    input's record. Raises InputError for an input that cannot be probed."""
    size = settings.chunk_frames
    if size <= 0 or not chunkable(settings.config, item):
        return None
    info = media.probe(item.input)
    total = frame_total(info, settings.config.max_frames) or 0
    if info.kind != "video" or total <= size:
        return None
    source = file_record(item.input)
    fp = fingerprint_of("chunks", settings.fingerprint, source["sha256"], size,
                        settings.warmup)
    stage = Stage(root=item.work_dir, name="chunks", fingerprint=fp)
    item.work_dir.mkdir(parents=True, exist_ok=True)
    stage.open()
    chunks = chunks_of(total, size, open_end=settings.config.max_frames is None)
    return ChunkPlan(chunks, stage.dir, source)


def _frames_from(path: Path, start: int, end: int | None) -> Iterator[media.Frame]:
    for frame in media.iter_frames(path, start=start):
        if end is not None and frame.index >= end:
            return
        yield frame


def process_chunk(item: BatchItem, settings: ItemSettings, plan: ChunkPlan,
                  chunk: Chunk) -> Outcome:
    """Stylize the frames of ``chunk`` into its lossless file (see the module doc); an
    existing chunk file is kept as done. Never raises but for Ctrl-C."""
    t0 = time.monotonic()
    target = plan.path(chunk)
    try:
        _set_threads(settings)
        if target.is_file():
            return Outcome(item.rel, "done", worker=worker_name())
        _check_output(item, settings)  # no work for an output the join may not replace
        config = settings.config
        device = pick_device(config.device)
        stylizer = make_stylizer(config=config, device=device)
        flow = None
        if stylizer.needs.flow and config.uses_flow and settings.pipeline.has("flow"):
            flow = flow_from_config(config.flow, device=device)
        masks = settings.pipeline.has("masks")
        first = max(0, chunk.start - settings.warmup)
        prev: torch.Tensor | None = None
        with LosslessWriter(target) as writer:
            # the engine's per-frame path (stream_frames), warm-up frames not written
            for frame in _frames_from(item.input, first, chunk.end):
                x = stylizer.prepare(frame.rgb)
                with torch.inference_mode():
                    pair = motion(prev, x, flow=flow, masks=masks)
                ctx = FrameContext(index=frame.index, size=(x.shape[-2], x.shape[-1]),
                                   pair=pair)
                y = stylizer.stylize(x, ctx)
                with torch.inference_mode():
                    y = stylizer.finish(y, ctx)
                prev = x
                if frame.index >= chunk.start:
                    writer.write(to_uint8(y))
            if writer.frames == 0:
                raise OutputError(f"{item.input}: chunk {chunk.index} (frames from "
                                  f"{chunk.start}) has no frames")
        return Outcome(item.rel, "done", frames=writer.frames,
                       seconds=time.monotonic() - t0, worker=worker_name())
    except Interrupted:
        raise
    except KeyboardInterrupt:
        raise Interrupted(f"interrupted; finished chunks are kept in {plan.folder}: run "
                          "the same command again to resume") from None
    except Exception as e:  # noqa: BLE001 - every failure of a chunk is its item's
        reason = f"chunk {chunk.index}: {failure_reason(e, item)}"
        log.info("%s: %s", item.rel, reason,
                 exc_info=not isinstance(e, (VidstyleError, OSError)))
        return Outcome(item.rel, "failed", reason, seconds=time.monotonic() - t0,
                       worker=worker_name())


def join_chunks(item: BatchItem, settings: ItemSettings, plan: ChunkPlan,
                *chunk_outcomes: Outcome) -> Outcome:
    """Encode ``item``'s output from its chunk files, in order, with the source's
    timestamps, alpha and audio (copied once), then write its receipt. A failed
    outcome among ``chunk_outcomes`` (the chunks' own, from a distributed run) fails the
    item with its reason. Never raises but for Ctrl-C."""
    t0 = time.monotonic()
    try:
        failed = [o for o in chunk_outcomes if o.status == "failed"]
        if failed:
            return dataclasses.replace(failed[0], chunks=len(plan.chunks))
        _claim(item, settings)
        missing = [c.index for c in plan.chunks if not plan.path(c).is_file()]
        if missing:
            raise OutputError(f"chunk(s) {', '.join(map(str, missing))} of {item.rel} are "
                              "missing (removed while the item ran?)")
        info = media.probe(item.input)
        media.check_output_path(item.output, input_path=item.input)
        total = frame_total(info, settings.config.max_frames)
        styled = (f for c in plan.chunks for f in media.iter_frames(plan.path(c)))
        count = 0
        with media.MediaWriter(item.output, source=info,
                               encode=settings.config.encode) as writer:
            for frame in limited(media.iter_frames(item.input), total):
                out = next(styled, None)
                if out is None:
                    raise OutputError(f"the chunks of {item.rel} hold {count} frames, "
                                      f"the input more")
                alpha = (None if frame.alpha is None
                         else resize_uint8(frame.alpha, out.rgb.shape[:2]))
                writer.write(dataclasses.replace(frame, rgb=out.rgb, alpha=alpha))
                count += 1
            if next(styled, None) is not None:
                raise OutputError(f"the chunks of {item.rel} hold more frames than the "
                                  f"input's {count}")
        _done(item, settings, plan.source, count)
        return Outcome(item.rel, "done", frames=count, seconds=time.monotonic() - t0,
                       worker=worker_name(), chunks=len(plan.chunks))
    except Interrupted:
        raise
    except Exception as e:  # noqa: BLE001 - every failure of an item is that item's
        reason = failure_reason(e, item)
        log.info("%s: %s", item.rel, reason,
                 exc_info=not isinstance(e, (VidstyleError, OSError)))
        _unclaim(item)
        return Outcome(item.rel, "failed", reason, seconds=time.monotonic() - t0,
                       worker=worker_name(), chunks=len(plan.chunks))


# -- units of a parallel batch ----------------------------------------------------------


@dataclass(frozen=True)
class Unit:
    """One task of a parallel batch: a whole item, a chunk of one, or an item's join.
    ``index``: the item's 1-based place in the plan; ``weight``: its frames."""

    index: int
    item: BatchItem
    weight: int
    plan: ChunkPlan | None = None
    chunk: Chunk | None = None


def run_unit(unit: Unit, settings: ItemSettings, *chunk_outcomes: Outcome) -> Outcome:
    """Run one :class:`Unit` (in a worker process); a join gets its chunks' outcomes."""
    if unit.plan is None:
        return process_item(unit.item, settings)
    if unit.chunk is not None:
        return process_chunk(unit.item, settings, unit.plan, unit.chunk)
    return join_chunks(unit.item, settings, unit.plan, *chunk_outcomes)


__all__ = ["Chunk", "ChunkPlan", "ItemSettings", "Outcome", "Unit", "chunkable", "chunks_of",
           "join_chunks", "plan_chunks", "process_chunk", "process_item", "run_unit"]
