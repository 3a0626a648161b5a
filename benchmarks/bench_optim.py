"""Optimization (Gatys) benchmarks, each ratio measured within one run.

1. Per-iteration cost of the optimizer at 640x360 against a bare VGG19 forward+backward
   measured in the same process (target overhead ratio <= 1.15).
2. Multi-scale reaching the single-scale final loss: wall-time ratio (target <= 0.5).
3. Seconds and peak RSS for one optimization frame at 1280x720 and 1920x1080 (each in a
   fresh subprocess, so peaks do not mix).

Run: ``python -m benchmarks.bench_optim [--quick]``.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

from vidstyle.config import OptimConfig
from vidstyle.imageops import load_image, resize
from vidstyle.optim.image import GatysStylizer
from vidstyle.styles import resolve_style
from vidstyle.vgg import DEFAULT_LAYERS, load_vgg

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
LAYERS = DEFAULT_LAYERS["vgg19"]


def _net():
    return load_vgg("vgg19", truncate_after="relu5_1")


def _stylizer(net, cfg: OptimConfig, progress=None) -> GatysStylizer:  # noqa: ANN001
    return GatysStylizer(net=net, style_image=load_image(resolve_style("starry").path),
                         config=cfg, style_layers=LAYERS["style"],
                         content_layers=LAYERS["content"], progress=progress)


def _content(h: int, w: int) -> torch.Tensor:
    return resize(load_image(DATA / "content" / "tubingen.jpg"), (h, w))


def overhead(reps: int = 6) -> dict:
    """Seconds per L-BFGS evaluation vs a bare forward+backward of the same layers."""
    net = _net()
    x = _content(360, 640)
    layers = tuple(dict.fromkeys(LAYERS["style"] + LAYERS["content"]))
    xr = x.clone().requires_grad_(True)
    for _ in range(2):  # warm-up
        sum(v.mean() for v in net(xr, layers).values()).backward()
    t0 = time.perf_counter()
    for _ in range(reps):
        xr.grad = None
        sum(v.square().mean() for v in net(xr, layers).values()).backward()
    bare = (time.perf_counter() - t0) / reps
    evals = []
    g = _stylizer(net, OptimConfig(iters=reps + 2, multiscale=1),
                  progress=lambda ev: evals.append(time.perf_counter()))
    g.stylize(x)
    per_eval = (evals[-1] - evals[1]) / (len(evals) - 2)  # skip set-up before eval 1
    return {"bare_fwd_bwd_s": bare, "optim_iter_s": per_eval, "ratio": per_eval / bare}


def multiscale(size: int = 384, iters: int = 150) -> dict:
    """Wall time for coarse-to-fine to reach the single-scale final loss.

    Single scale: ``iters`` L-BFGS iterations at full size from the content image. Multi-
    scale: ``iters`` iterations at half size, upsampled, then up to ``iters`` at full size,
    stopping the clock when the full-size loss first reaches the single-scale final loss
    (the same loss function at the same size).
    """
    net = _net()
    h, w = round(size * 0.75), size
    x = _content(h, w)
    t0 = time.perf_counter()
    single = _stylizer(net, OptimConfig(iters=iters, multiscale=1)).stylize(x)
    t_single = time.perf_counter() - t0
    target = single.losses["total"]
    hits: list[float] = []

    def watch(ev) -> None:  # noqa: ANN001
        if ev.loss <= target and not hits:
            hits.append(time.perf_counter())

    t0 = time.perf_counter()
    coarse = _stylizer(net, OptimConfig(iters=iters, multiscale=1)).stylize(
        resize(x, (h // 2, w // 2)))
    init = resize(coarse.image, (h, w))
    fine = _stylizer(net, OptimConfig(iters=iters, multiscale=1), progress=watch)
    multi = fine.stylize(x, init=init)
    t_multi_total = time.perf_counter() - t0
    t_multi = (hits[0] - t0) if hits else float("nan")
    return {"size": f"{w}x{h}", "single_s": t_single, "single_loss": target,
            "multi_to_target_s": t_multi, "multi_total_s": t_multi_total,
            "multi_final_loss": multi.losses["total"], "ratio": t_multi / t_single}


def _one_frame_child(w: int, h: int, iters: int) -> None:
    net = _net()
    x = _content(h, w)
    t0 = time.perf_counter()
    _stylizer(net, OptimConfig(iters=iters)).stylize(x)
    dt = time.perf_counter() - t0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": dt, "peak_rss_mib": rss}))


def big_frames(iters: int) -> list[dict]:
    rows = []
    for w, h in ((1280, 720), (1920, 1080)):
        out = subprocess.run([sys.executable, "-m", "benchmarks.bench_optim", "--child",
                              str(w), str(h), str(iters)], capture_output=True, text=True,
                             check=True, cwd=Path(__file__).resolve().parents[1])
        row = json.loads(out.stdout.strip().splitlines()[-1])
        levels = OptimConfig().levels(w)
        row.update(size=f"{w}x{h}", levels="/".join(map(str, levels)), iters=iters)
        rows.append(row)
    return rows


def run(report=print, *, quick: bool = False) -> dict:  # noqa: ANN001
    res = {"overhead": overhead(3 if quick else 6)}
    o = res["overhead"]
    report("## Optimizer per-iteration cost at 640x360 (VGG19 to relu5_1)")
    report("| bare fwd+bwd s | L-BFGS eval s | ratio (target <= 1.15) |")
    report("|---|---|---|")
    report(f"| {o['bare_fwd_bwd_s']:.3f} | {o['optim_iter_s']:.3f} | {o['ratio']:.3f} |")
    m = res["multiscale"] = multiscale(256 if quick else 384, 40 if quick else 150)
    report("\n## Multi-scale (half size, then full) reaching the single-scale final loss")
    report("| size | single-scale s | multi-scale to same loss s | ratio (target <= 0.5) |")
    report("|---|---|---|---|")
    report(f"| {m['size']} | {m['single_s']:.1f} | {m['multi_to_target_s']:.1f} "
           f"| {m['ratio']:.2f} |")
    rows = res["big"] = big_frames(4 if quick else 20)
    report("\n## One optimization frame, large sizes (default multi-scale schedule)")
    report("| size | levels | iters (coarsest) | seconds | peak RSS MiB |")
    report("|---|---|---|---|---|")
    for r in rows:
        report(f"| {r['size']} | {r['levels']} | {r['iters']} | {r['seconds']:.1f} "
               f"| {r['peak_rss_mib']:.0f} |")
    return res


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--child", nargs=3, type=int, metavar=("W", "H", "ITERS"))
    a = p.parse_args(argv)
    if a.child:
        _one_frame_child(*a.child)
        return
    run(quick=a.quick)


if __name__ == "__main__":
    main()
