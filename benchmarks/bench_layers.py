"""FLOPs and milliseconds per layer of the fast network, and of cheaper candidates.

Issue 18 asks where the fast network's time goes and what a cheaper one would cost before
a GPU trains it. For each architecture (the shipped model and :data:`CANDIDATES`, random
weights: the speed of a convolution does not depend on its values) the deployed
:class:`~vidstyle.fast.inference.InferenceNet` (eager, float32 unless ``--dtype``) is
timed layer by layer at 640x360: the convolution (with its padding, up-sampling or phase
form, as inference runs it) and the instance norm + ReLU apart, medians of ``--rounds``
alternating rounds; then the whole network with the runtime's threads. "of peak" =
the layer's GFLOP per CPU-second / a large 3x3 conv's in the same run (the machine's
convolution peak): full-resolution layers with few channels are memory bound and far
below it.

Run: ``python -m benchmarks.bench_layers --json benchmarks/results/bench_layers.json``
(about two minutes; one thread per layer timing, ``--threads`` for the whole network).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402

from benchmarks import write_json  # noqa: E402
from benchmarks.bench_fast import conv_peak  # noqa: E402
from vidstyle.fast.inference import InferenceNet  # noqa: E402
from vidstyle.fast.net import StyleNet, from_depth, one_hot_styles, to_depth  # noqa: E402
from vidstyle.fast.stylizer import resolve_model  # noqa: E402


@dataclass(frozen=True)
class Arch:
    """One architecture of :class:`StyleNet` (channels c0, c1, c2; residual blocks; the
    outer convolutions' kernel; the space-to-depth factor)."""

    name: str
    channels: tuple[int, int, int]
    res_blocks: int
    outer_kernel: int
    space_to_depth: int = 1


#: Cheaper members of the same family, toward the ~2.5 GFLOP that 1.5x the peer would
#: need on an AVX2-only CPU (RESULTS.md, "A fourth CPU kind").
CANDIDATES = (
    Arch("k5 (outer 5x5)", (16, 32, 64), 3, 5),
    Arch("2 res blocks", (16, 32, 64), 2, 9),
    Arch("8/16/64", (8, 16, 64), 3, 9),
    Arch("8/16/32", (8, 16, 32), 3, 9),
    Arch("8/16/32 k5", (8, 16, 32), 3, 5),
    Arch("8/32/64 k5", (8, 32, 64), 3, 5),
    # no full-resolution layer: pixel_unshuffle(2) in, pixel_shuffle(2) out
    Arch("space-to-depth 2, 16/32/64 k5", (16, 32, 64), 3, 5, 2),
    Arch("space-to-depth 2, 32/32/64 k5", (32, 32, 64), 3, 5, 2),
)


def layer_names(num_res: int) -> list[str]:
    """Names of the network's layers in order (conv_in ... conv_out)."""
    names = ["conv_in", "down1", "down2"]
    for r in range(num_res):
        names += [f"res{r + 1}a", f"res{r + 1}b"]
    return names + ["up1", "up2", "conv_out"]


def _median_ms(fn: Callable[[], Any], reps: int) -> float:
    fn()
    times = []
    for _ in range(reps):
        t0 = time.process_time()
        fn()
        times.append(time.process_time() - t0)
    return statistics.median(times) * 1e3


def replay(
    net: InferenceNet, x: torch.Tensor, gb: list[tuple[torch.Tensor, torch.Tensor]]
) -> tuple[list[tuple[torch.Tensor, tuple[int, int] | None]], list[torch.Tensor], torch.Tensor]:
    """The network's forward pass layer by layer, as ``InferenceNet`` runs it: per layer
    (input, output size of an up-sampling layer), each conv's output, and the final image."""
    inputs: list[tuple[torch.Tensor, tuple[int, int] | None]] = []
    conv_outs: list[torch.Tensor] = []
    n = net.num_layers
    with torch.inference_mode():
        h = net._prep(to_depth(x, net.space_to_depth))
        sizes: dict[int, tuple[int, int]] = {}
        block_in = h
        for i in range(n):
            size = None
            if net.specs[i].upsample:
                # the up-sampling layers go back to the encoder's sizes (layers 1 and 0)
                size = sizes[1] if i == n - 3 else sizes[0]
            inp = h
            inputs.append((inp, size))
            y = net._conv(i, inp, size)
            conv_outs.append(y)
            z = net._norm(i, y.clone(), gb, None)
            sizes[i] = tuple(z.shape[-2:])
            if 3 <= i < n - 3:  # a residual block's convs: the skip after the second
                if (i - 3) % 2 == 0:
                    block_in = inp
                else:
                    z = block_in + z
            h = z
        return inputs, conv_outs, torch.sigmoid(from_depth(h.float(), net.space_to_depth,
                                                           x.shape[-2:]))


def per_layer(net: InferenceNet, x: torch.Tensor, rounds: int, reps: int) -> list[dict[str, Any]]:
    """Per layer: output shape, multiply-accumulates, CPU ms of the conv and of the norm
    (+ ReLU), medians over ``rounds`` rounds of ``reps`` calls (layers alternate within a
    round), each layer on its input of one :func:`replay`."""
    gb = net.affine(one_hot_styles(0, net.num_styles))
    inputs, conv_outs, _ = replay(net, x, gb)
    n = net.num_layers
    rows: list[dict[str, Any]] = []
    for i in range(n):
        w = net.weights[i]
        out = conv_outs[i]
        macs = out.numel() * w.shape[1] * w.shape[2] * w.shape[3]
        rows.append({"shape": list(out.shape[1:]), "macs": int(macs), "conv_ms": [], "norm_ms": []})
    with torch.inference_mode():
        for _ in range(rounds):
            for i in range(n):
                inp, size = inputs[i]
                y = conv_outs[i]
                rows[i]["conv_ms"].append(
                    _median_ms(lambda i=i, inp=inp, size=size: net._conv(i, inp, size), reps)
                )
                rows[i]["norm_ms"].append(
                    _median_ms(lambda i=i, y=y: net._norm(i, y.clone(), gb, None), reps)
                )
    for r in rows:
        r["conv_ms"] = statistics.median(r["conv_ms"])
        r["norm_ms"] = statistics.median(r["norm_ms"])
    return rows


def whole_ms(net: InferenceNet, x: torch.Tensor, reps: int) -> tuple[float, float]:
    """(median wall ms, median CPU ms of all threads) of the whole network."""
    w = one_hot_styles(0, net.num_styles)
    walls, cpus = [], []
    with torch.inference_mode():
        net(x, w)
        for _ in range(reps):
            t0, c0 = time.perf_counter(), time.process_time()
            net(x, w)
            walls.append(time.perf_counter() - t0)
            cpus.append(time.process_time() - c0)
    return statistics.median(walls) * 1e3, statistics.median(cpus) * 1e3


def _net(arch: Arch | None, model: str, dtype: torch.dtype) -> tuple[str, InferenceNet]:
    if arch is None:
        m, _ = resolve_model(model)
        return model, InferenceNet(m.net, dtype=dtype)
    torch.manual_seed(0)
    net = StyleNet(
        num_styles=7,
        channels=arch.channels,
        num_res_blocks=arch.res_blocks,
        outer_kernel=arch.outer_kernel,
        space_to_depth=arch.space_to_depth,
    )
    return arch.name, InferenceNet(net, dtype=dtype)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="fast7", help="the shipped model to break down")
    ap.add_argument("--size", default="640x360", help="WxH of the frame")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--reps", type=int, default=5, help="calls per layer and round")
    ap.add_argument("--threads", type=int, default=2, help="threads for the whole network")
    ap.add_argument("--no-candidates", action="store_true", help="only --model")
    ap.add_argument("--json", default="")
    args = ap.parse_args(argv)
    w, h = (int(v) for v in args.size.split("x"))
    x = torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(0))
    with open("/proc/loadavg") as f:
        load0 = f.read().split()[:3]
    torch.set_num_threads(1)
    peak = conv_peak(torch.float32)[1]  # GFLOP per CPU-second, one thread
    archs: list[Arch | None] = [None] + ([] if args.no_candidates else list(CANDIDATES))
    nets = [_net(a, args.model, torch.float32) for a in archs]
    result: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "cpu": platform.processor() or "",
        "load_avg_before": load0,
        "size": [w, h],
        "peak_fp32_gflop_per_cpu_s": peak,
        "networks": [],
    }
    for name, net in nets:
        torch.set_num_threads(1)
        rows = per_layer(net, x, args.rounds, args.reps)
        for lname, r in zip(layer_names(net.num_res), rows, strict=True):
            r["layer"] = lname
            r["of_peak"] = (2 * r["macs"] / 1e9) / (r["conv_ms"] / 1e3) / peak
        gflop = 2 * sum(r["macs"] for r in rows) / 1e9
        result["networks"].append(
            {
                "name": name,
                "gflop": gflop,
                "layers": rows,
                "physical_limit_cpu_ms": gflop / peak * 1e3,
            }
        )
        print(f"{name}: {gflop:.2f} GFLOP, layers timed", flush=True)
    # whole networks: the contenders alternate within each round (medians of the rounds)
    for threads, key in ((1, "one_thread"), (args.threads, f"threads_{args.threads}")):
        torch.set_num_threads(threads)
        times: list[list[tuple[float, float]]] = [[] for _ in nets]
        for _ in range(args.rounds):
            for k, (_, net) in enumerate(nets):
                times[k].append(whole_ms(net, x, args.reps))
        for k, entry in enumerate(result["networks"]):
            entry[f"{key}_wall_ms"] = statistics.median(t[0] for t in times[k])
            entry[f"{key}_cpu_ms"] = statistics.median(t[1] for t in times[k])
    for entry in result["networks"]:
        print(
            f"{entry['name']}: {entry['one_thread_cpu_ms']:.0f} ms CPU at 1 thread, "
            f"{entry[f'threads_{args.threads}_wall_ms']:.0f} ms wall / "
            f"{entry[f'threads_{args.threads}_cpu_ms']:.0f} ms CPU at {args.threads}"
        )
    with open("/proc/loadavg") as f:
        result["load_avg_after"] = f.read().split()[:3]
    if args.json:
        write_json(args.json, result)
    print(markdown(result))
    return result


def markdown(result: dict[str, Any]) -> str:
    """RESULTS.md tables: the first network layer by layer, then every network's total."""
    first = result["networks"][0]
    lines = [
        f"**{first['name']}** layer by layer ({result['size'][0]}x{result['size'][1]}, "
        f"one thread, fp32 conv peak {result['peak_fp32_gflop_per_cpu_s']:.0f} GFLOP "
        "per CPU-s):",
        "",
        "| layer | output (C, H, W) | GFLOP | conv ms | of peak | norm + ReLU ms |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for r in first["layers"]:
        lines.append(
            f"| {r['layer']} | {tuple(r['shape'])} | {2 * r['macs'] / 1e9:.2f} | "
            f"{r['conv_ms']:.1f} | {r['of_peak']:.2f} | {r['norm_ms']:.1f} |"
        )
    conv = sum(r["conv_ms"] for r in first["layers"])
    norm = sum(r["norm_ms"] for r in first["layers"])
    lines += [
        f"| sum | | {first['gflop']:.2f} | {conv:.0f} | | {norm:.0f} |",
        "",
        "| network | GFLOP | CPU ms, 1 thread | physical limit ms | full-res layers "
        "(conv_in, up2, conv_out) share | wall / CPU ms, all threads |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for n in result["networks"]:
        full = sum(
            r["conv_ms"] + r["norm_ms"]
            for r in n["layers"]
            if r["layer"] in ("conv_in", "up2", "conv_out")
        )
        tot = sum(r["conv_ms"] + r["norm_ms"] for r in n["layers"])
        wall = next(v for k, v in n.items() if k.startswith("threads_") and k.endswith("wall_ms"))
        cpu = next(v for k, v in n.items() if k.startswith("threads_") and k.endswith("cpu_ms"))
        lines.append(
            f"| {n['name']} | {n['gflop']:.2f} | {n['one_thread_cpu_ms']:.0f} | "
            f"{n['physical_limit_cpu_ms']:.0f} | {full / tot:.2f} | "
            f"{wall:.0f} / {cpu:.0f} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
