"""The batch driver: plan, lock, run the items on a backend, report.

Backends (``BatchConfig.backend`` and ``jobs``), all around :func:`process_item`:

- local, ``--jobs 1``: the items one after another in this process (per-frame progress);
- local, ``--jobs N``: N worker processes on this machine (spawned; a worker that dies
  breaks the pool: a new one is started and the items that were running are retried up
  to ``max_retries`` times);
- ray: one Ray task per item, or per chunk of a long video plus a join task
  (:mod:`vidstyle.batch.on_ray`; imported only then, Ray is an optional extra).

Items whose receipt matches are skipped by the driver before anything is sent anywhere.
The driver holds OUT_DIR's lock (:class:`~vidstyle.batch.lock.BatchLock`) for the whole
run and writes a JSON report to ``OUT_DIR/.vidstyle-batch/report.json`` at the end.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import shutil
import time
from collections import Counter, deque
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from vidstyle import __version__, media
from vidstyle.batch.lock import BatchLock
from vidstyle.batch.plan import STATE_DIR, BatchItem, is_done, plan_batch, settings_fingerprint
from vidstyle.batch.work import (
    ItemSettings,
    Outcome,
    Unit,
    plan_chunks,
    process_item,
    run_unit,
)
from vidstyle.config import BatchConfig, RunConfig
from vidstyle.contracts import ProgressFn
from vidstyle.device import pick_device
from vidstyle.engine import PipelineSpec, make_stylizer, resolved
from vidstyle.engine.stream import frame_total
from vidstyle.errors import InputError, Interrupted, UsageError
from vidstyle.fileio import atomic_write_bytes

log = logging.getLogger(__name__)

#: on_item(index, count, item, status): status "start", "skip", "done" or "failed: ...".
ItemNote = Callable[[int, int, BatchItem, str], None]


@dataclass
class BatchResult:
    """What a batch did: relative paths done now, skipped as already done, and failed
    (relative path -> one-line reason); every item's :class:`Outcome` in plan order, and
    the JSON report written."""

    done: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)
    failed: dict[Path, str] = field(default_factory=dict)
    outcomes: list[Outcome] = field(default_factory=list)
    report: Path | None = None

    @property
    def total(self) -> int:
        return len(self.done) + len(self.skipped) + len(self.failed)


@dataclass(frozen=True)
class BatchProgress:
    """Progress of a parallel batch: ``done`` of ``total`` frames of the items to do
    (a chunk counts when it finishes, an item when it does), ``running`` tasks in
    flight."""

    done: int
    total: int
    running: int


class _Driver:
    """Collects outcomes in plan order and tells the caller (on_item, on_progress)."""

    def __init__(self, items: list[BatchItem], on_item: ItemNote | None,
                 on_progress: Callable[[BatchProgress], None] | None) -> None:
        self.items = items
        self.on_item = on_item or (lambda *_: None)
        self.on_progress = on_progress
        self.outcomes: dict[int, Outcome] = {}
        self.done_frames = 0
        self.total_frames = 0
        self.running = 0

    def skip(self, index: int, item: BatchItem) -> None:
        self.outcomes[index] = Outcome(item.rel, "skipped")
        self.on_item(index, len(self.items), item, "skip")

    def finish(self, index: int, item: BatchItem, outcome: Outcome, weight: int = 0) -> None:
        self.outcomes[index] = outcome
        status = "skip" if outcome.status == "skipped" else (
            "done" if outcome.status == "done" else f"failed: {outcome.reason}")
        self.on_item(index, len(self.items), item, status)
        self.advance(weight)

    def advance(self, frames: int) -> None:
        self.done_frames += frames
        if self.on_progress is not None:
            self.on_progress(BatchProgress(self.done_frames, self.total_frames, self.running))

    def result(self) -> BatchResult:
        res = BatchResult()
        for index in sorted(self.outcomes):
            o = self.outcomes[index]
            res.outcomes.append(o)
            if o.status == "done":
                res.done.append(o.rel)
            elif o.status == "skipped":
                res.skipped.append(o.rel)
            else:
                res.failed[o.rel] = o.reason
        return res


def run_batch(
    in_dir: str | Path,
    out_dir: str | Path,
    config: RunConfig,
    *,
    pipeline: PipelineSpec | None = None,
    batch: BatchConfig | None = None,
    keep_work: bool = False,
    overwrite: bool = False,
    progress: ProgressFn | None = None,
    on_item: ItemNote | None = None,
    on_progress: Callable[[BatchProgress], None] | None = None,
    stylizer_factory: Callable[..., Any] | None = None,
) -> BatchResult:
    """Stylize every media file under ``in_dir`` into ``out_dir`` (see the module doc).

    ``pipeline``: the stages to run for every item (default: the method's built-in
    pipeline); ``batch``: the backend and its settings (default: local, one at a time).
    on_item(index, count, item, status) is called before each item ("start", local
    backend with one job) or when it is skipped ("skip"), and after it ("done" or
    "failed: <reason>"); ``progress`` receives the per-frame events of the item being
    processed (one job), ``on_progress`` the overall progress (parallel backends).
    ``stylizer_factory`` replaces the real stylizer (tests; one local job only).
    """
    batch = batch or BatchConfig()
    config = resolved(config)
    spec = pipeline or PipelineSpec.builtin(config.method)
    spec.check(config)
    items = plan_batch(in_dir, out_dir)
    parallel = batch.backend != "local" or batch.jobs > 1
    if stylizer_factory is not None and parallel:
        raise UsageError("a stylizer factory runs in this process only: use the local "
                         "backend with one job")
    fingerprint = settings_fingerprint(config, spec)
    # settings errors (unknown style, bad size, missing weights) once, before any item
    probe = (stylizer_factory or make_stylizer)(config=config,
                                                device=pick_device(config.device))
    keeps = probe.needs.cache or batch.chunk_frames > 0  # finished frames or chunks
    if keep_work and not keeps:
        raise UsageError(f"--keep-work has no effect: the {config.method} method streams "
                         "its frames and keeps no work folder")
    settings = ItemSettings(config=config, pipeline=spec, fingerprint=fingerprint,
                            keep_work=keep_work, overwrite=overwrite,
                            threads=batch.cpus_per_item if parallel else 0,
                            chunk_frames=batch.chunk_frames, warmup=batch.warmup)
    driver = _Driver(items, on_item, on_progress)
    started, t0 = datetime.now(UTC), time.monotonic()
    state = Path(out_dir) / STATE_DIR
    with BatchLock(state, shown=Path(out_dir)):
        if not parallel:
            _run_here(items, settings, driver, progress, stylizer_factory)
        else:
            units = _units(items, settings, driver)
            if batch.backend == "ray":
                # Ray is an optional extra: imported only when asked for
                from vidstyle.batch.on_ray import run_on_ray

                run_on_ray(units, settings, batch, driver)
            else:
                _run_in_pool(units, settings, batch, driver)
        result = driver.result()
        result.report = state / "report.json"
        write_report(result.report, result, batch=batch, settings=settings,
                     started=started, seconds=time.monotonic() - t0)
    return result


def _run_here(items: list[BatchItem], settings: ItemSettings, driver: _Driver,
              progress: ProgressFn | None, stylizer_factory: Callable[..., Any] | None
              ) -> None:
    for i, item in enumerate(items, 1):
        if is_done(item, settings.fingerprint):
            if item.work_dir.exists() and not settings.keep_work:  # killed before clean-up
                shutil.rmtree(item.work_dir, ignore_errors=True)
            driver.skip(i, item)
            continue
        driver.on_item(i, len(items), item, "start")
        driver.finish(i, item, process_item(item, settings, progress=progress,
                                            stylizer_factory=stylizer_factory))


def _weight(item: BatchItem, settings: ItemSettings) -> int:
    """Frames of ``item`` (1 for a still, or for a file that cannot be probed)."""
    try:
        return max(1, frame_total(media.probe(item.input), settings.config.max_frames) or 1)
    except InputError:
        return 1


def _units(items: list[BatchItem], settings: ItemSettings, driver: _Driver) -> list[Unit]:
    """The tasks of a parallel batch in plan order; items already done are skipped
    (told to the driver) and send nothing anywhere. A long fast-method video gives its
    chunks, then its join (the join's weight is 0: its frames count with the chunks)."""
    units: list[Unit] = []
    for i, item in enumerate(items, 1):
        if is_done(item, settings.fingerprint):
            if item.work_dir.exists() and not settings.keep_work:
                shutil.rmtree(item.work_dir, ignore_errors=True)
            driver.skip(i, item)
            continue
        weight = _weight(item, settings)
        driver.total_frames += weight
        try:
            plan = plan_chunks(item, settings)
        except Exception as e:  # noqa: BLE001 - the item's own run reports the problem
            log.info("%s: not split into chunks: %s", item.rel, e)
            plan = None
        if plan is None:
            units.append(Unit(i, item, weight))
            continue
        for chunk in plan.chunks:
            frames = (chunk.end if chunk.end is not None else weight) - chunk.start
            units.append(Unit(i, item, max(0, frames), plan, chunk))
        units.append(Unit(i, item, 0, plan))
    return units


def _run_in_pool(units: list[Unit], settings: ItemSettings, batch: BatchConfig,
                 driver: _Driver) -> None:
    """``batch.jobs`` worker processes on this machine. A join waits for its item's
    chunks; an item with a failed chunk fails without its join."""
    ctx = multiprocessing.get_context("spawn")  # no forked copies of torch's threads
    ready = deque(u for u in units if u.plan is None or u.chunk is not None)
    joins = {u.index: u for u in units if u.plan is not None and u.chunk is None}
    left = Counter(u.index for u in units if u.chunk is not None)
    chunk_outcomes: dict[int, list[Outcome]] = {}
    attempts: Counter[tuple[int, int | None]] = Counter()

    def settle(unit: Unit, outcome: Outcome) -> None:
        if unit.chunk is None:
            driver.finish(unit.index, unit.item, outcome, unit.weight)
            return
        driver.advance(unit.weight if outcome.status != "failed" else 0)
        chunk_outcomes.setdefault(unit.index, []).append(outcome)
        left[unit.index] -= 1
        if left[unit.index] == 0:
            join = joins.pop(unit.index)
            failed = [o for o in chunk_outcomes[unit.index] if o.status == "failed"]
            if failed:
                driver.finish(join.index, join.item, failed[0])
            else:
                ready.append(join)

    while ready:
        with ProcessPoolExecutor(max_workers=batch.jobs, mp_context=ctx) as pool:
            running: dict[Future[Outcome], Unit] = {}
            broken = False
            try:
                while (ready or running) and not broken:
                    while ready and len(running) < batch.jobs:
                        unit = ready.popleft()
                        running[pool.submit(run_unit, unit, settings)] = unit
                    driver.running = len(running)
                    finished, _ = wait(running, return_when=FIRST_COMPLETED)
                    for fut in finished:
                        unit = running.pop(fut)
                        try:
                            outcome = fut.result()
                        except BrokenProcessPool:
                            broken = True
                            _retry_or_fail(unit, attempts, batch, ready, settle)
                            continue
                        settle(unit, outcome)
                for fut, unit in running.items():  # the pool broke under them too
                    fut.cancel()
                    _retry_or_fail(unit, attempts, batch, ready, settle)
            except KeyboardInterrupt:
                for fut in running:
                    fut.cancel()
                raise Interrupted("interrupted; finished items, frames and chunks are kept: "
                                  "run the same command again to resume") from None


def _retry_or_fail(unit: Unit, attempts: Counter[tuple[int, int | None]],
                   batch: BatchConfig, ready: deque[Unit],
                   settle: Callable[[Unit, Outcome], None]) -> None:
    key = (unit.index, unit.chunk.index if unit.chunk is not None else None)
    attempts[key] += 1
    if attempts[key] > batch.max_retries:
        settle(unit, Outcome(unit.item.rel, "failed",
                             f"its worker process died {attempts[key]} times"))
    else:
        log.info("%s: a worker process died; running it again", unit.item.rel)
        ready.appendleft(unit)


def write_report(path: Path, result: BatchResult, *, batch: BatchConfig,
                 settings: ItemSettings, started: datetime, seconds: float) -> None:
    """The machine-readable summary of a batch (atomically): backend, settings
    fingerprint, counts, and every item's outcome in plan order."""
    report = {
        "vidstyle": __version__,
        "backend": batch.backend,
        "jobs": batch.jobs,
        "ray_address": batch.ray_address,
        "chunk_frames": batch.chunk_frames,
        "settings": settings.fingerprint,
        "started": started.isoformat(timespec="seconds"),
        "seconds": round(seconds, 3),
        "counts": {"done": len(result.done), "skipped": len(result.skipped),
                   "failed": len(result.failed), "total": result.total},
        "items": [o.as_json() for o in result.outcomes],
    }
    atomic_write_bytes(path, json.dumps(report, indent=1).encode())


__all__ = ["BatchProgress", "BatchResult", "ItemNote", "run_batch", "write_report"]
