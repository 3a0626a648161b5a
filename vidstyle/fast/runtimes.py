"""Runtimes of the fast network.

Runtimes (``FastConfig.runtime``), all computing :class:`~vidstyle.fast.net.StyleNet`'s
function with the same weights:

- ``eager``: :class:`InferenceNet` in float32, NCHW (the fallback; always available).
- ``fp16``: (CUDA) :class:`InferenceNet` with float16 weights and activations,
  channels-last (tensor cores); normalization parameters stay float32.
- ``bf16``: :class:`InferenceNet` with bfloat16 weights and activations in channels-last
  layout (oneDNN uses AMX / AVX512-BF16 where the CPU has them); the normalization
  statistics are still accumulated in float32.
- ``compile``: ``torch.compile`` (inductor, ``freezing``) of the bf16 module. Start-up is
  tens of seconds per frame size; explicit only.
- ``openvino``: OpenVINO's CPU plugin on the converted module, when the optional
  ``openvino`` package is importable (never required); explicit only.
- ``ort``: ONNX Runtime's CPU provider in float32 (:mod:`vidstyle.fast.ort`), when the
  optional ``onnxruntime`` package is importable (``pip install vidstyle[onnx]``; never
  required). The graph is split at the feature hook points, so the video stabilization's
  feature blend works as with the torch runtimes.
- ``ort-int8``: the same with int8 convolutions (static quantization calibrated on the
  demo clip; needs ``onnx`` too); explicit only (not adopted for "auto":
  benchmarks/RESULTS.md, "Fast path on every CPU").
- ``auto``: on CUDA fp16; on a CPU with native bfloat16 arithmetic (:data:`BF16_CPU_FLAGS`)
  bf16: there the machine decides (:func:`auto_runtime`), never timing, so repeated runs
  give identical outputs. On other CPUs (float32 only) the float32 runtimes that are
  available (:func:`auto_candidates`: eager, and ``ort`` when onnxruntime is installed)
  are timed alternately on a fixed measuring frame, and one replaces eager only when its
  median time is at most 1 / :data:`AUTO_MARGIN` of eager's (the torch path stays the
  default where it is about as fast); their outputs differ by about 1e-5, so the choice
  does not change what a user sees. Every candidate is checked on the measuring frame: if
  it fails to build or run, or its output differs from eager by more than
  :data:`MAX_RUNTIME_ERROR`, eager runs instead.

:func:`resolve_runtime` names the runtime a requested one stands for on a device without
building anything (batch receipts hold that name; where "auto" measures, the name lists
the candidates, e.g. ``auto:eager,ort``); stylizer fingerprints hold the runtime that ran.
The decision of :func:`select_runtime` is cached per process.

CPU flags (:func:`cpu_flags`) come from the machine; the environment variable
:data:`HIDE_FLAGS_ENV` (comma-separated flags, e.g. ``avx512_bf16,amx_bf16``) hides some,
so that a machine with bf16 can measure what "auto" does on a float32-only CPU (the
benchmark's ``--fp32-only``). It changes the choice only, not what the CPU executes.

Device: a runtime lives on the weights' device and takes and returns CPU tensors, moving
them at its edge.
"""

from __future__ import annotations

import functools
import logging
import math
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vidstyle.config import RUNTIMES
from vidstyle.errors import UsageError, VidstyleError
from vidstyle.fast import ort
from vidstyle.fast.inference import FeatureHook, InferenceNet
from vidstyle.fast.net import StyleNet

log = logging.getLogger(__name__)

#: CPU feature flags of native bfloat16 arithmetic (x86 AVX512-BF16, AMX-BF16): with one
#: of them "auto" runs bf16 on the CPU.
BF16_CPU_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})
#: A runtime whose output differs from eager float32 by more than this (max abs, RGB in
#: [0, 1]) on the measuring frame is not used (eager runs instead).
MAX_RUNTIME_ERROR = 0.15
#: The measuring frame (h, w) of :func:`select_runtime`: fixed, so that the error check
#: does not depend on the input's size.
MEASURE_SIZE = (256, 384)
#: Where "auto" times its candidates, another replaces eager only when its best time is
#: at most eager's / AUTO_MARGIN (so timing noise does not flip near-equal runtimes).
AUTO_MARGIN = 1.15
#: Timing rounds of "auto"'s candidates (alternating; the best call of each is compared:
#: a busy machine only ever adds time). At least AUTO_ROUNDS, more until every candidate
#: has AUTO_BUDGET_MS of timed calls (a cheap network gets more rounds: its calls are
#: short, so the load's noise weighs more), at most AUTO_MAX_ROUNDS.
AUTO_ROUNDS = 3
AUTO_BUDGET_MS = 400.0
AUTO_MAX_ROUNDS = 12
#: Environment variable: comma-separated CPU flags :func:`cpu_flags` leaves out.
HIDE_FLAGS_ENV = "VIDSTYLE_HIDE_CPU_FLAGS"


# --------------------------------------------------------------------------- runtimes


class Runtime:
    """A callable ``(x (B,3,H,W) float32, style_weights (B,S)) -> (B,3,H,W) float32``."""

    name = "base"
    #: whether ``__call__`` accepts a feature ``hook`` (see :meth:`InferenceNet.forward`)
    supports_hooks = False
    #: whether ``style_weights`` may be a style map (1, S, H, W) (per-person styles)
    supports_style_maps = False

    def __call__(
        self, x: torch.Tensor, style_weights: torch.Tensor, hook: FeatureHook | None = None
    ) -> torch.Tensor:
        raise NotImplementedError


class TorchRuntime(Runtime):
    """An :class:`InferenceNet` (optionally wrapped by ``torch.compile``) on ``device``
    (that of its weights). Takes and returns CPU float32 tensors; a hook sees features
    on the device."""

    supports_hooks = True
    supports_style_maps = True

    def __init__(
        self,
        *,
        name: str,
        module: InferenceNet,
        fn: Callable[..., Any] | None = None,
        device: torch.device | str = "cpu",
    ):
        self.name = name
        self.module = module
        self.fn = fn if fn is not None else module
        self.device = torch.device(device)

    def __call__(
        self, x: torch.Tensor, style_weights: torch.Tensor, hook: FeatureHook | None = None
    ) -> torch.Tensor:
        with torch.inference_mode():
            x = x.to(self.device, non_blocking=True)
            style_weights = style_weights.to(self.device)
            if hook is not None or style_weights.dim() == 4:
                # a compiled graph has no hook points and takes style rows: run the module
                out = self.module(x, style_weights, hook)
            else:
                out = self.fn(x, style_weights)
            return out.float().cpu()


class OpenVINORuntime(Runtime):
    """OpenVINO CPU plugin on the converted float32 module (dynamic H, W)."""

    name = "openvino"

    def __init__(self, *, net: StyleNet) -> None:
        import openvino as ov  # optional dependency: ImportError means "not available"

        module = InferenceNet(net, dtype=torch.float32)
        example = (torch.rand(1, 3, 64, 64), torch.ones(1, net.num_styles) / net.num_styles)
        model = ov.convert_model(
            module,
            example_input=example,
            input=[ov.PartialShape([1, 3, -1, -1]), ov.PartialShape([1, net.num_styles])],
        )
        self._compiled = ov.Core().compile_model(model, "CPU")

    def __call__(
        self, x: torch.Tensor, style_weights: torch.Tensor, hook: FeatureHook | None = None
    ) -> torch.Tensor:
        if hook is not None:
            raise ValueError("the openvino runtime has no feature hook points")
        outs = []
        for k in range(x.shape[0]):
            w = style_weights[k if style_weights.shape[0] > 1 else 0 : None][:1]
            res = self._compiled([x[k : k + 1].float().numpy(), w.float().numpy()])
            outs.append(torch.from_numpy(np.asarray(res[0])).float())
        return torch.cat(outs)


class OrtRuntime(Runtime):
    """ONNX Runtime's CPU provider on the network split at the hook points
    (:class:`vidstyle.fast.ort.OrtNetwork`); ``int8``: the quantized graphs."""

    supports_hooks = True

    def __init__(self, *, net: StyleNet, int8: bool = False) -> None:
        self.network = ort.OrtNetwork(net=net, int8=int8)
        self.name = self.network.name

    def __call__(
        self, x: torch.Tensor, style_weights: torch.Tensor, hook: FeatureHook | None = None
    ) -> torch.Tensor:
        if style_weights.dim() == 4:
            raise ValueError("the ONNX Runtime runtimes take style rows, not style maps")
        return self.network(x, style_weights, hook)


def _net_device(net: StyleNet) -> torch.device:
    return next(net.parameters()).device


def build_runtime(name: str, net: StyleNet) -> Runtime:
    """Build runtime ``name`` (not "auto") for ``net``, on the device of its weights.
    Raises ImportError/RuntimeError when the runtime is unavailable, UsageError for an
    unknown name."""
    device = _net_device(net)
    if name == "eager":
        return TorchRuntime(name="eager", module=InferenceNet(net, dtype=torch.float32),
                            device=device)
    if name in ("bf16", "fp16"):
        dtype = torch.bfloat16 if name == "bf16" else torch.float16
        if dtype == torch.float16 and device.type != "cuda":
            raise RuntimeError("fp16 is for CUDA devices (on the CPU use bf16)")
        return TorchRuntime(
            name=name, module=InferenceNet(net, dtype=dtype, channels_last=True), device=device
        )
    if name == "compile":
        import torch._inductor.config as inductor_config

        inductor_config.freezing = True
        module = InferenceNet(net, dtype=torch.bfloat16, channels_last=True)
        fn = torch.compile(module, dynamic=False)
        return TorchRuntime(name="compile", module=module, fn=fn, device=device)
    if name == "openvino":
        if device.type != "cpu":
            raise RuntimeError("openvino runs on the CPU only")
        return OpenVINORuntime(net=net)
    if name in ("ort", "ort-int8"):
        if device.type != "cpu":
            raise RuntimeError(f"{name} runs on the CPU only")
        return OrtRuntime(net=net, int8=name == "ort-int8")
    raise UsageError(f"unknown --runtime {name!r}: use one of {', '.join(RUNTIMES)}")


# --------------------------------------------------------------------------- choice


@functools.cache
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags, lower case: those of ``/proc/cpuinfo`` (Linux; empty
    elsewhere) and those torch reports (``torch.cpu.get_capabilities()``), less those named
    in the environment variable :data:`HIDE_FLAGS_ENV`. Cached (``cpu_flags.cache_clear()``
    after changing the variable)."""
    flags: set[str] = set()
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        text = ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            flags.update(value.split())
    flags.update(k for k, v in torch.cpu.get_capabilities().items() if v is True)
    hidden = {f.strip().lower() for f in os.environ.get(HIDE_FLAGS_ENV, "").split(",")}
    return frozenset(f.lower() for f in flags) - hidden


def auto_runtime(device: torch.device | str) -> str:
    """The runtime "auto" stands for on ``device``, from the machine alone (no network,
    no timing): "fp16" on CUDA, "bf16" on a CPU with a flag of :data:`BF16_CPU_FLAGS`
    (:func:`cpu_flags`), else "eager". Never "compile" or "openvino"."""
    dev = torch.device(device)
    if dev.type == "cuda":
        return "fp16"
    if dev.type == "cpu" and cpu_flags() & BF16_CPU_FLAGS:
        return "bf16"
    return "eager"


def auto_candidates(device: torch.device | str) -> tuple[str, ...]:
    """The runtimes "auto" chooses among on ``device``, preferred first: the one of
    :func:`auto_runtime` alone where the machine decides (CUDA, a CPU with native bf16);
    on a float32-only CPU ``eager`` and, when ``onnxruntime`` is importable, ``ort``
    (timed by :func:`select_runtime`)."""
    first = auto_runtime(device)
    if first != "eager" or torch.device(device).type != "cpu":
        return (first,)
    return ("eager", "ort") if ort.available() else ("eager",)


def resolve_runtime(requested: str, device: torch.device | str) -> str:
    """The runtime ``requested`` (``--runtime``) stands for on ``device``: itself, or for
    "auto" :func:`auto_runtime` where the machine decides, else ``auto:`` and the timed
    candidates (e.g. ``auto:eager,ort``; their outputs differ by about 1e-5). What batch
    receipts record. UsageError when unknown."""
    if requested not in RUNTIMES:
        raise UsageError(f"unknown --runtime {requested!r}: use one of {', '.join(RUNTIMES)}")
    if requested != "auto":
        return requested
    cands = auto_candidates(device)
    return cands[0] if len(cands) == 1 else "auto:" + ",".join(cands)


@dataclass(frozen=True)
class RuntimeChoice:
    """What :func:`select_runtime` decided and why.

    name: the runtime built; requested: the ``--runtime`` asked for; target: what that
    stands for on the device (:func:`resolve_runtime`); size: the measuring frame (h, w);
    ms: per-runtime best forward time (milliseconds, logged, never deciding); max_err /
    mean_err: difference from eager float32 (RGB in [0, 1]); failed: runtime -> reason.
    """

    name: str
    requested: str
    target: str
    size: tuple[int, int]
    ms: dict[str, float] = field(default_factory=dict)
    max_err: dict[str, float] = field(default_factory=dict)
    mean_err: dict[str, float] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)


_CACHE: dict[tuple[Any, ...], tuple[RuntimeChoice, Runtime]] = {}
_CACHE_LOCK = threading.Lock()


def clear_runtime_cache() -> None:
    """Forget every cached runtime decision (tests)."""
    with _CACHE_LOCK:
        _CACHE.clear()


def _time_call(rt: Runtime, x: torch.Tensor, w: torch.Tensor, repeats: int) -> tuple[float, Any]:
    """(best time of ``repeats`` calls in ms, or inf for none; the warm-up call's output)."""
    out = rt(x, w)  # warm-up (and compile)
    best = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        rt(x, w)
        best = min(best, time.perf_counter() - t0)
    return best * 1e3, out


def _time_rounds(built: dict[str, Runtime], first: dict[str, float], x: torch.Tensor,
                 w: torch.Tensor, rounds: int) -> dict[str, float]:
    """Best ms per runtime of ``first`` (one time each) and more rounds, the runtimes
    alternating within each round (the machine's load drifts): at least ``rounds`` in
    all, then more until each has :data:`AUTO_BUDGET_MS` of samples, at most
    :data:`AUTO_MAX_ROUNDS`."""
    samples = {n: [t] for n, t in first.items() if math.isfinite(t)}
    done = 1
    while samples and done < AUTO_MAX_ROUNDS and (
            done < rounds or min(sum(v) for v in samples.values()) < AUTO_BUDGET_MS):
        for name in samples:
            t, _ = _time_call(built[name], x, w, 1)
            samples[name].append(t)
        done += 1
    return {n: min(v) for n, v in samples.items()}


def select_runtime(
    net: StyleNet,
    requested: str = "auto",
    *,
    builder: Callable[[str, StyleNet], Runtime] = build_runtime,
    repeats: int = 1,
    cache_key: Any = None,
) -> tuple[RuntimeChoice, Runtime]:
    """Build the runtime ``requested`` stands for on the device of the network's weights,
    checked against eager on a fixed seeded random frame of :data:`MEASURE_SIZE`: when it
    fails to build or run, or its output differs from eager by more than
    :data:`MAX_RUNTIME_ERROR`, eager is used and the reason logged (a warning for a runtime
    named explicitly). Where "auto" has several candidates (:func:`auto_candidates`: a
    float32-only CPU with onnxruntime), they are timed alternately (:func:`_time_rounds`:
    at least :data:`AUTO_ROUNDS` rounds) and one replaces eager only when its best time is
    at most eager's / :data:`AUTO_MARGIN`. Otherwise timings are logged and reported, never
    deciding. The decision is cached per process under ``cache_key`` (e.g. the model's
    sha256).
    """
    device = _net_device(net)
    target = resolve_runtime(requested, device)
    cands = auto_candidates(device) if requested == "auto" else (requested,)
    key = (cache_key if cache_key is not None else id(net), requested, str(device))
    with _CACHE_LOCK:
        if key in _CACHE:
            return _CACHE[key]
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(1, 3, *MEASURE_SIZE, generator=gen)
    sw = torch.full((1, net.num_styles), 1.0 / net.num_styles)
    ms: dict[str, float] = {}
    max_err: dict[str, float] = {}
    mean_err: dict[str, float] = {}
    failed: dict[str, str] = {}
    built: dict[str, Runtime] = {}
    ref = None
    for name in dict.fromkeys(("eager", *cands)):
        try:
            rt = builder(name, net)
            t, out = _time_call(rt, x, sw, repeats)
        except Exception as e:  # noqa: BLE001 - any failure means "not this runtime"
            failed[name] = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
            log.info("runtime %s unavailable: %s", name, failed[name])
            continue
        if name == "eager":
            ref = out
        if ref is not None and out.shape == ref.shape:
            d = (out - ref).abs()
            max_err[name], mean_err[name] = float(d.max()), float(d.mean())
            if name != "eager" and max_err[name] > MAX_RUNTIME_ERROR:
                failed[name] = f"output differs from eager by {max_err[name]:.3f}"
                continue
        if math.isfinite(t):
            ms[name] = t
        built[name] = rt
    if len(cands) > 1:  # timed: eager unless another is clearly faster
        timed = {n: ms.get(n, math.inf) for n in cands if n in built}
        ms.update(_time_rounds(built, timed, x, sw, AUTO_ROUNDS))
        pick = next((n for n in cands if n in built), "")
        fastest = min((n for n in cands if n in built and n in ms), key=ms.__getitem__,
                      default=pick)
        if pick and ms.get(fastest, math.inf) * AUTO_MARGIN <= ms.get(pick, math.inf):
            pick = fastest
        if not pick:
            raise VidstyleError(f"no inference runtime works here: {failed}")
    elif target in built:
        pick = target
    elif "eager" in built:
        pick = "eager"
        level = logging.INFO if requested == "auto" else logging.WARNING
        log.log(level, "runtime %s failed (%s); using eager", target, failed.get(target))
    else:
        raise VidstyleError(f"no inference runtime works here: {failed}")
    choice = RuntimeChoice(pick, requested, target, MEASURE_SIZE, ms, max_err, mean_err,
                           failed)
    log.info("fast runtime: %s (requested %s, ms %s)", pick, requested,
             {k: round(v, 1) for k, v in ms.items()})
    with _CACHE_LOCK:
        _CACHE[key] = (choice, built[pick])
    return choice, built[pick]
