"""Batch backends benchmark: throughput of 8 short fast-method clips with the local
backend, ``--jobs 2`` and Ray with 2 workers; the scheduling overhead per item; and a paper
estimate for 100 hours of 1080p footage on N machines from the measured costs.

Run:  python -m benchmarks.bench_batch [--clips 8] [--frames 24] [--width 320]
      [--skip-ray] [--json out.json]

- The clips are cut from the packaged demo clip (each from another start frame, resized
  to ``--width``, with audio), made first and not timed.
- Each backend stylizes the folder into its own empty OUT_DIR (fast method, style wave,
  default settings); wall time from the call to its return, so worker start-up (spawned
  processes importing torch; Ray's cluster start for the Ray row) is included. The Ray
  row is also given without the cluster start (it is paid once per batch, not per item).
- Scheduling overhead per item: the same units are sent again through each backend once
  all are done, so each task only checks its receipt and returns: the cost of one item's
  trip through the machinery (submit, pickle, run_unit, result), against the median
  seconds of one fast-path item (from the batch's report).
- The 1080p estimate: seconds per frame of the fast path for a 1920x1080 clip (one
  process, this machine, whole CPU), then 100 h at 25 fps over N machines like this one
  with ``--chunk-frames 300`` (the warm-up frames redone per chunk counted) plus the
  measured per-item overhead per chunk.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from vidstyle.batch import plan_batch, run_batch, settings_fingerprint
from vidstyle.batch.work import ItemSettings, Unit, run_unit
from vidstyle.config import BatchConfig, FastConfig, RunConfig
from vidstyle.contracts import limited
from vidstyle.engine import PipelineSpec, run
from vidstyle.imageops import resize_uint8
from vidstyle.media import MediaWriter, iter_frames, probe

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "vidstyle" / "data" / "bigbuckbunny.mp4"


def make_clips(folder: Path, n: int, frames: int, width: int) -> None:
    """``n`` clips of ``frames`` frames from the demo clip (other start frames), resized."""
    info = probe(DEMO)
    demo = list(iter_frames(DEMO))
    folder.mkdir(parents=True)
    for k in range(n):
        start = (k * 13) % max(1, len(demo) - frames)
        with MediaWriter(folder / f"clip{k}.mp4", source=info) as w:
            for f in demo[start:start + frames]:
                h = round(f.rgb.shape[0] * width / f.rgb.shape[1] / 2) * 2
                w.write(dataclasses.replace(f, rgb=resize_uint8(f.rgb, (h, width)),
                                            pts=f.pts - demo[start].pts))


def timed_batch(src: Path, out: Path, cfg: RunConfig, batch: BatchConfig) -> dict[str, Any]:
    t0 = time.perf_counter()
    res = run_batch(src, out, cfg, batch=batch)
    wall = time.perf_counter() - t0
    assert not res.failed, res.failed
    seconds = [o.seconds for o in res.outcomes if o.status == "done"]
    frames = sum(o.frames for o in res.outcomes)
    return {"wall_s": wall, "items": len(res.outcomes), "frames": frames,
            "item_median_s": statistics.median(seconds), "frames_per_s": frames / wall}


def overhead_pool(src: Path, out: Path, cfg: RunConfig, jobs: int) -> float:
    """Seconds per already-done item through a warm process pool."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    settings, units = _done_units(src, out, cfg)
    with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        list(pool.map(run_unit, units, [settings] * len(units)))  # start the workers
        t0 = time.perf_counter()
        for _ in range(5):
            outs = list(pool.map(run_unit, units, [settings] * len(units)))
        dt = (time.perf_counter() - t0) / (5 * len(units))
    assert all(o.status == "skipped" for o in outs)
    return dt


def overhead_ray(src: Path, out: Path, cfg: RunConfig) -> float:
    """Seconds per already-done item as Ray tasks (the cluster and workers warm)."""
    import ray

    settings, units = _done_units(src, out, cfg)
    task = ray.remote(run_unit).options(num_cpus=1, max_retries=2, retry_exceptions=False)
    ref = ray.put(settings)
    ray.get([task.remote(u, ref) for u in units])
    t0 = time.perf_counter()
    for _ in range(5):
        outs = ray.get([task.remote(u, ref) for u in units])
    dt = (time.perf_counter() - t0) / (5 * len(units))
    assert all(o.status == "skipped" for o in outs)
    return dt


def _done_units(src: Path, out: Path, cfg: RunConfig) -> tuple[ItemSettings, list[Unit]]:
    settings = ItemSettings(config=cfg, pipeline=PipelineSpec.builtin("fast"),
                            fingerprint=settings_fingerprint(cfg))
    return settings, [Unit(i, item, 1) for i, item in enumerate(plan_batch(src, out), 1)]


def seconds_per_1080p_frame(tmp: Path, frames: int) -> float:
    """Fast path (decode, flow, network, stabilization, encode) per 1920x1080 frame."""
    clip = tmp / "hd.mp4"
    info = probe(DEMO)
    with MediaWriter(clip, source=info) as w:
        for f in limited(iter_frames(DEMO), frames):
            w.write(dataclasses.replace(f, rgb=resize_uint8(f.rgb, (1080, 1920))))
    cfg = RunConfig(style="wave", method="fast")
    t0 = time.perf_counter()
    res = run(clip, tmp / "hd_out.mp4", cfg)
    return (time.perf_counter() - t0) / res.frames


def estimate(per_frame_s: float, overhead_s: float, *, hours: float = 100, fps: float = 25,
             chunk: int = 300, warmup: int = 12, machines: tuple[int, ...] = (1, 10, 50, 100)
             ) -> list[dict[str, float]]:
    """Wall hours for ``hours`` of footage on N machines like this one (each running one
    chunk at a time on all its cores), chunks of ``chunk`` frames with ``warmup`` frames
    redone each, plus the per-chunk scheduling overhead."""
    frames = hours * 3600 * fps
    chunks = frames / chunk
    work_s = frames * per_frame_s * (1 + warmup / chunk) + chunks * overhead_s
    return [{"machines": n, "wall_h": work_s / n / 3600} for n in machines]


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clips", type=int, default=8)
    p.add_argument("--frames", type=int, default=24)
    p.add_argument("--width", type=int, default=320)
    p.add_argument("--hd-frames", type=int, default=8)
    p.add_argument("--skip-ray", action="store_true")
    p.add_argument("--json", type=Path, default=None)
    a = p.parse_args(argv)
    cfg = RunConfig(style="wave", method="fast", device="cpu", fast=FastConfig())
    out: dict[str, Any] = {"load_before": os.getloadavg()}
    with tempfile.TemporaryDirectory(prefix="bench_batch_") as d:
        tmp = Path(d)
        src = tmp / "in"
        make_clips(src, a.clips, a.frames, a.width)
        rows = {}
        rows["local"] = timed_batch(src, tmp / "local", cfg, BatchConfig())
        rows["jobs2"] = timed_batch(src, tmp / "jobs2", cfg, BatchConfig(jobs=2))
        out["overhead_pool_s"] = overhead_pool(src, tmp / "jobs2", cfg, 2)
        if not a.skip_ray:
            from vidstyle.batch.on_ray import connect

            t0 = time.perf_counter()
            ray, _ = connect(BatchConfig(backend="ray", jobs=2))
            cluster_s = time.perf_counter() - t0
            rows["ray2"] = timed_batch(src, tmp / "ray2", cfg, BatchConfig(backend="ray",
                                                                           jobs=2))
            rows["ray2"]["cluster_start_s"] = cluster_s
            rows["ray2"]["wall_with_start_s"] = rows["ray2"]["wall_s"] + cluster_s
            out["overhead_ray_s"] = overhead_ray(src, tmp / "ray2", cfg)
            ray.shutdown()
        out["rows"] = rows
        item = rows["local"]["item_median_s"]
        out["overhead_pct_of_item"] = {
            k: 100 * out[k] / item for k in ("overhead_pool_s", "overhead_ray_s") if k in out}
        out["hd_s_per_frame"] = seconds_per_1080p_frame(tmp, a.hd_frames)
        worst = max(out.get("overhead_ray_s", 0.0), out["overhead_pool_s"])
        out["estimate_100h_1080p"] = estimate(out["hd_s_per_frame"], worst)
        shutil.rmtree(tmp / "local", ignore_errors=True)
    out["load_after"] = os.getloadavg()
    print(json.dumps(out, indent=1))
    if a.json:
        a.json.write_text(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    main()
