"""The Ray backend of `vidstyle batch` (``--backend ray``; ``pip install vidstyle[ray]``).

Every unit of the batch is a Ray task running the same function as the other backends
(:func:`~vidstyle.batch.work.run_unit`: :func:`~vidstyle.batch.work.process_item`, or a chunk
of a long video and its join), asking for ``--cpus-per-item`` CPUs and, when the method
runs on a GPU, one GPU. A worker process that dies mid-task (killed, out of memory, its
machine lost) has its task run again elsewhere, up to ``--max-retries`` times; the task
resumes from what the dead one finished (the optimization method's frames, finished
chunks), since every worker reads and writes OUT_DIR: with a multi-machine cluster it
must be storage all workers see at the same path (NFS, a shared mount), as must IN_DIR.

Without ``--ray-address`` a one-machine cluster is started here and stopped at the end:
loopback addresses only, no dashboard, a small object store (the tasks pass paths, not
pixels), ``--jobs`` CPUs. With an address the driver joins that cluster (vidstyle and its
weights must be installed on every node). A process that is already connected to Ray
(``ray.init`` called before, e.g. by tests) uses that connection and leaves it open.

This module imports Ray; nothing else in vidstyle does (see :mod:`vidstyle.batch.run`).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from vidstyle.batch.work import ItemSettings, Outcome, Unit, run_unit
from vidstyle.config import BatchConfig
from vidstyle.errors import Interrupted, UsageError

log = logging.getLogger(__name__)

#: Object store of the one-machine cluster, bytes (Ray's minimum is 75 MiB).
OBJECT_STORE_BYTES = 80 * 1024 * 1024
#: Seconds between progress checks while tasks run.
POLL_S = 0.5


def _import_ray(local: bool) -> Any:
    """Import Ray; for a cluster started here, first make it use loopback addresses only
    (read by Ray at import) and send no usage statistics."""
    if local:
        # Ray picks 127.0.0.1 as the node address (and binds its servers there) when it
        # is told this platform runs no multi-machine cluster
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    try:
        import ray
    except ImportError:
        raise UsageError("--backend ray needs Ray: pip install 'vidstyle[ray]'") from None
    return ray


def _package_root() -> str:
    """The folder holding the vidstyle package (workers of a cluster started here import
    the driver's vidstyle, installed or not)."""
    return str(Path(__file__).resolve().parents[2])


def connect(batch: BatchConfig) -> tuple[Any, bool]:
    """Ray, connected; and whether this call started the connection (to close it)."""
    local = batch.ray_address is None
    ray = _import_ray(local)
    if ray.is_initialized():
        return ray, False
    kw: dict[str, Any] = {"include_dashboard": False, "configure_logging": False,
                          "log_to_driver": False}
    if local:
        root = _package_root()
        path = os.environ.get("PYTHONPATH", "")
        if root not in path.split(os.pathsep):  # inherited by the cluster's workers
            os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (root, path) if p)
        ray.init(num_cpus=batch.jobs * batch.cpus_per_item,
                 object_store_memory=OBJECT_STORE_BYTES, **kw)
    else:
        try:
            ray.init(address=batch.ray_address, **kw)
        except (ConnectionError, RuntimeError, ValueError) as e:
            raise UsageError(f"cannot join the Ray cluster at {batch.ray_address}: "
                             f"{str(e).splitlines()[0] if str(e) else type(e).__name__}"
                             ) from None
    return ray, True


def _gpus(ray: Any, settings: ItemSettings) -> float:
    """GPUs a task asks for: one when the method runs on CUDA (``--device cuda``, or
    ``auto`` on a cluster that has GPUs)."""
    device = settings.config.device
    have = ray.cluster_resources().get("GPU", 0)
    if device == "cuda" and have < 1:
        raise UsageError("--device cuda: the Ray cluster has no GPU (its tasks would wait "
                         "for one forever); use --device cpu or auto")
    if device == "cpu":
        return 0
    return 1 if have >= 1 else 0


def run_on_ray(units: list[Unit], settings: ItemSettings, batch: BatchConfig,
               driver: Any) -> None:
    """Run ``units`` as Ray tasks, telling ``driver``
    each outcome as it arrives (see the module doc)."""
    if not units:
        return
    ray, started = connect(batch)
    try:
        task = ray.remote(run_unit).options(
            num_cpus=batch.cpus_per_item, num_gpus=_gpus(ray, settings),
            max_retries=batch.max_retries, retry_exceptions=False)
        settings_ref = ray.put(settings)
        pending: dict[Any, Any] = {}
        chunk_refs: dict[int, list[Any]] = {}
        for unit in units:
            if unit.plan is not None and unit.chunk is None:  # a join, after its chunks
                ref = task.remote(unit, settings_ref, *chunk_refs.pop(unit.index))
            else:
                ref = task.remote(unit, settings_ref)
                if unit.chunk is not None:
                    chunk_refs.setdefault(unit.index, []).append(ref)
            pending[ref] = unit
        try:
            while pending:
                driver.running = len(pending)
                ready, _ = ray.wait(list(pending), num_returns=1, timeout=POLL_S)
                for ref in ready:
                    unit = pending.pop(ref)
                    try:
                        outcome = ray.get(ref)
                    except ray.exceptions.RayError as e:
                        outcome = Outcome(unit.item.rel, "failed", _ray_reason(e))
                    if unit.chunk is not None:
                        driver.advance(unit.weight if outcome.status != "failed" else 0)
                    else:
                        driver.finish(unit.index, unit.item, outcome, unit.weight)
        except KeyboardInterrupt:
            for ref in pending:
                ray.cancel(ref, force=True)
            raise Interrupted("interrupted; finished items, frames and chunks are kept: "
                              "run the same command again to resume") from None
    finally:
        if started:
            ray.shutdown()


def _ray_reason(e: BaseException) -> str:
    """One line for a task Ray gave up on (its worker died more than --max-retries
    times, or a chunk it needed did)."""
    name = type(e).__name__
    if "WorkerCrashed" in name or "NodeDied" in name or "OutOfMemory" in name:
        return f"its worker process died ({name}) and the retries ran out"
    text = str(e).strip().splitlines()
    return f"{name}: {text[0] if text else 'unknown error'}"


__all__ = ["OBJECT_STORE_BYTES", "connect", "run_on_ray"]
