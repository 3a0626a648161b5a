"""Cost of temporal optimization-based stylization (Ruder et al. 2016) on this machine.

Run: ``python -m benchmarks.bench_temporal [--quick] [--frames N] [--threads T]``.

Measures, with the real VGG19 on ``bigbuckbunny.mp4`` (CC-BY 3.0, 1280x720):

1. seconds per frame at 384 px and 640x360 (longest side 640) for ``none``, ``short`` and
   ``long`` + 2 passes at the default iteration count, and the flow stage's share of the
   total wall time: the time the optimizer waited for flows (flows are estimated on a
   worker thread while the previous frame is optimized; target < 10 %) and, for
   reference, the worker's own estimation time;
2. warm-start iterations: how many iterations frame 1 needs, started from stylized frame 0
   warped by the flow, to reach the loss that a cold start of frame 1 reaches with the
   default count (reported as a ratio to the default count);
3. peak RSS of a 300-frame clip against a 30-frame one (``short`` mode, tiny size, each in
   a child process): they should agree within 10 % (the clip is streamed).

``--quick`` shrinks everything (sizes 96 and 160 px, 3 frames, 12 iterations, 30 vs 120
frames for the RSS check) so that it finishes in a few minutes on a busy 2-core machine;
its numbers show the shape, not the cost at default settings.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from benchmarks import write_json
from benchmarks.eval_temporal import DEFAULT_DATA, clip_frames, load_net, mode_config
from vidstyle.config import OptimConfig, RunConfig
from vidstyle.engine.clip import run_clip
from vidstyle.flow import flow_from_config, make_flow, warp
from vidstyle.imageops import load_image, resize, working_size
from vidstyle.optim.image import GatysStylizer
from vidstyle.optim.video import TemporalOptimStylizer
from vidstyle.tensors import to_tensor
from vidstyle.workdir import WorkDir

CLIP = "video/bigbuckbunny.mp4"
STYLE = "styles/starry_night.jpg"


def _stylizer(cfg: RunConfig, net: Any, layers: tuple[Any, Any], data: Path) -> Any:
    return TemporalOptimStylizer(config=cfg, device="cpu", net=net,
                                 style_path=str(data / STYLE),
                                 style_image=load_image(data / STYLE), style_layers=layers[0],
                                 content_layers=layers[1])


def seconds_per_frame(*, data: Path, sizes: list[int], frames: int, iters: int,
                      net: Any, layers: tuple[Any, Any],
                      default_iters: int | None = None) -> list[dict[str, Any]]:
    """Rows: size, mode, s/frame, flow wait share, flow worker share.

    With ``default_iters`` (> ``iters``), each mode runs at ``iters`` and the seconds per
    frame at ``default_iters`` are extrapolated from the measured time per optimizer
    iteration: every iteration count of the schedule (first frame, later frames, passes)
    scales with the iteration setting, and the time outside the optimizer (decode, flow
    waits, warps, writes) is kept as measured. The flow shares are then of that total.
    """
    rows = []
    for size in sizes:
        base = RunConfig(optim=OptimConfig(size=size, iters=iters))
        for mode in ("none", "short", "long"):
            st = _stylizer(mode_config(mode, base, 2), net, layers, data)
            counted = {"iters": 0, "seconds": 0.0}
            inner = st.gatys.stylize

            def counting(*args: Any, _inner: Any = inner, _c: dict = counted,
                         **kw: Any) -> Any:
                t = time.perf_counter()
                res = _inner(*args, **kw)
                _c["seconds"] += time.perf_counter() - t
                _c["iters"] += int(res.iterations)
                return res

            st.gatys.stylize = counting  # type: ignore[method-assign]
            with tempfile.TemporaryDirectory(prefix="vidstyle-bench-") as tmp:
                work = WorkDir(tmp)
                stage = work.stage("stylize", "bench")
                t0 = time.perf_counter()
                run_clip(st, frames=clip_frames(data / CLIP, frames), stage=stage, work=work,
                         n_frames=frames, progress=lambda ev: None,
                         flow=flow_from_config(st.config.flow))
                total = time.perf_counter() - t0
            s = st.stats
            row = {"size": size, "mode": mode if mode != "long" else "long+2p",
                   "iters_setting": iters, "iterations_run": counted["iters"],
                   "s_per_iteration": counted["seconds"] / max(1, counted["iters"]),
                   "measured_s_per_frame": total / frames, "measured_total_s": total}
            if default_iters and default_iters != iters:
                outside = total - counted["seconds"]
                total = outside + counted["seconds"] * default_iters / iters
                row["extrapolated_to_iters"] = default_iters
            row.update({
                "s_per_frame": total / frames, "total_s": total,
                "flow_wait_share": s.get("flow_wait_seconds", 0.0) / total,
                "flow_worker_share": s.get("flow_seconds", 0.0) / total,
                "flow_pairs": s.get("flow_pairs", 0),
            })
            rows.append(row)
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    return rows


def warm_start_ratio(*, data: Path, size: int, iters: int, net: Any,
                     layers: tuple[Any, Any]) -> dict[str, Any]:
    """Iterations a warm start of frame 1 needs to reach the cold start's final loss."""
    cfg = OptimConfig(size=size, iters=iters)
    from vidstyle.imageops import load_image

    g = GatysStylizer(net=net, style_image=load_image(data / STYLE), config=cfg,
                      style_layers=layers[0], content_layers=layers[1])
    fr = list(itertools.islice(clip_frames(data / CLIP, 2)(), 2))
    h, w = fr[0].rgb.shape[:2]
    c0, c1 = (resize(to_tensor(f.rgb), working_size(h, w, size)) for f in fr)
    out0 = g.stylize(c0, seed=0).image
    cold = g.stylize(c1, seed=1)
    target = cold.losses["total"]
    est = make_flow("dis")
    backward = est.estimate(c1, c0)  # frame 1 -> frame 0, on frame 1's grid
    init = warp(out0, backward)
    trace: list[float] = []
    g.progress = lambda ev: trace.append(ev.loss)
    g.stylize(c1, init=init, iters=iters, seed=1)
    needed = next((k + 1 for k, v in enumerate(trace) if v <= target), None)
    return {"size": size, "default_iters": iters, "cold_iterations": cold.iterations,
            "cold_final_loss": target, "warm_initial_loss": trace[0] if trace else None,
            "warm_iterations_to_match": needed,
            "ratio": None if needed is None else needed / iters}


def _cycled(path: Path, n: int) -> Iterator[Any]:
    """``n`` frames of ``path`` played in a loop, renumbered 0..n-1 (a loop point is a cut)."""
    from vidstyle.media import iter_frames

    i = 0
    while True:
        for f in iter_frames(path):
            if i >= n:
                return
            yield dataclasses.replace(f, index=i)
            i += 1


def rss_child(n: int, size: int, iters: int, data: Path) -> None:
    """Stylize ``n`` frames in short mode; print this process's peak RSS (VmHWM, kB)."""
    torch.set_num_threads(1)
    net, sl, cl = load_net()
    cfg = mode_config("short", RunConfig(optim=OptimConfig(size=size, iters=iters)), 1)
    st = _stylizer(cfg, net, (sl, cl), data)
    with tempfile.TemporaryDirectory(prefix="vidstyle-rss-") as tmp:
        work = WorkDir(tmp)
        run_clip(st, frames=lambda: _cycled(data / "video/vtest_000-010s.avi", n),
                 stage=work.stage("stylize", "rss"), work=work, n_frames=n,
                 progress=lambda ev: None, flow=flow_from_config(st.config.flow))
    hwm = next(line for line in Path("/proc/self/status").read_text().splitlines()
               if line.startswith("VmHWM"))
    print(json.dumps({"frames": n, "vmhwm_kb": int(hwm.split()[1]),
                      "store_peak": st.store.peak}))


def rss_compare(*, data: Path, small: int, large: int, size: int, iters: int) -> dict[str, Any]:
    out = {}
    for n in (small, large):
        cmd = [sys.executable, "-W", "ignore", "-m", "benchmarks.bench_temporal", "--rss-child",
               str(n), "--rss-size", str(size), "--rss-iters", str(iters), "--data", str(data)]
        res = subprocess.run(cmd, capture_output=True, text=True, check=True,
                             cwd=Path(__file__).resolve().parents[1])
        out[n] = json.loads(res.stdout.strip().splitlines()[-1])
    ratio = out[large]["vmhwm_kb"] / out[small]["vmhwm_kb"]
    return {"small": out[small], "large": out[large], "ratio": ratio}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--frames", type=int, default=None)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--measure-iters", type=int, default=None,
                    help="run the s/frame modes at this many iterations and extrapolate to "
                         "the default count (a 640x360 frame at 300 iterations is ~14 min)")
    ap.add_argument("--warm-size", type=int, default=None,
                    help="size of the warm-start measurement (default: the first size)")
    ap.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    ap.add_argument("--rss-child", type=int, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--rss-size", type=int, default=64, help=argparse.SUPPRESS)
    ap.add_argument("--rss-iters", type=int, default=2, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.rss_child is not None:
        rss_child(a.rss_child, a.rss_size, a.rss_iters, a.data)
        return 0
    torch.set_num_threads(a.threads)
    if a.quick:
        sizes, frames, iters, rss = [96, 160], a.frames or 3, 12, (30, 120)
    else:
        sizes, frames, iters, rss = [384, 640], a.frames or 10, OptimConfig().iters, (30, 300)
    net, sl, cl = load_net()
    t0 = time.perf_counter()
    rows = seconds_per_frame(data=a.data, sizes=sizes, frames=frames,
                             iters=a.measure_iters or iters, net=net, layers=(sl, cl),
                             default_iters=iters)
    warm = warm_start_ratio(data=a.data, size=a.warm_size or sizes[0], iters=iters, net=net,
                            layers=(sl, cl))
    print(json.dumps(warm), file=sys.stderr, flush=True)
    mem = rss_compare(data=a.data, small=rss[0], large=rss[1], size=64, iters=2)
    if a.out is not None:
        res = {"clip": CLIP, "frames": frames, "iters": iters,
               "measure_iters": a.measure_iters, "threads": torch.get_num_threads(),
               "rows": rows, "warm_start": warm, "rss": mem}
        write_json(a.out, res)
    print(f"\n{'quick ' if a.quick else ''}bench_temporal: {CLIP}, {frames} frames, "
          f"{iters} iterations, {torch.get_num_threads()} thread(s)\n")
    if a.measure_iters:
        print(f"(measured at {a.measure_iters} iterations, s/frame extrapolated to {iters})\n")
    print("| size | mode | s/frame | s/iteration | flow wait share | flow worker share | pairs |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['size']} | {r['mode']} | {r['s_per_frame']:.2f} | "
              f"{r['s_per_iteration']:.3f} | "
              f"{100 * r['flow_wait_share']:.1f} % | {100 * r['flow_worker_share']:.1f} % | "
              f"{r['flow_pairs']} |")
    ratio = "never" if warm["ratio"] is None else f"{warm['ratio']:.2f}"
    print(f"\nwarm start at {warm['size']} px: cold start reaches loss "
          f"{warm['cold_final_loss']:.4g} in {warm['cold_iterations']} iterations; the warped "
          f"previous frame starts at {warm['warm_initial_loss']:.4g} and needs "
          f"{warm['warm_iterations_to_match']} iterations (ratio {ratio} of {iters})")
    print(f"peak RSS: {mem['small']['frames']} frames {mem['small']['vmhwm_kb'] / 1024:.0f} MiB,"
          f" {mem['large']['frames']} frames {mem['large']['vmhwm_kb'] / 1024:.0f} MiB "
          f"(ratio {mem['ratio']:.3f}; frames held at once: {mem['large']['store_peak']})")
    print(f"\ntotal {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
