"""Run every benchmark and print its tables: ``python -m benchmarks [--quick]``.

Record results in benchmarks/RESULTS.md with the machine and the date.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
from pathlib import Path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--quick", action="store_true", help="small sizes, few iterations")
    p.add_argument("--only", default="", help="comma list: media,optim,flow,temporal,fast")
    a = p.parse_args()
    only = set(filter(None, a.only.split(",")))
    print(f"# vidstyle benchmarks {datetime.date.today()} on {platform.processor() or 'cpu'}, "
          f"{os.cpu_count()} CPUs, python {platform.python_version()}\n")
    if not only or "media" in only:
        from benchmarks import bench_media

        bench_media.run(frames=30 if a.quick else 60)
    if not only or "optim" in only:
        from benchmarks import bench_optim

        bench_optim.run(quick=a.quick)
    if not only or "flow" in only:
        from benchmarks import bench_flow

        bench_flow.main([])
        bench_flow.main(["--scale", "0.5"])
    if not only or "temporal" in only:
        from benchmarks import bench_temporal

        # the full run measures s/iteration at 10 iterations and extrapolates to the
        # default 300 (one 640x360 frame at 300 iterations is 8-17 minutes here)
        bench_temporal.main(["--quick"] if a.quick else [
            "--frames", "4", "--measure-iters", "10", "--warm-size", "256", "--threads", "2",
            "--out", str(Path(__file__).resolve().parent / "results" / "bench_temporal.json")])
    if not only or "fast" in only:
        try:
            from benchmarks import bench_fast
        except ImportError:
            print("(fast benchmark not available)")
        else:
            bench_fast.main(["--quick"] if a.quick else [])


if __name__ == "__main__":
    main()
