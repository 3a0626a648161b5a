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
  tens of seconds per frame size, so "auto" does not try it.
- ``openvino``: OpenVINO's CPU plugin on the converted module, when the optional
  ``openvino`` package is importable (never required).
- ``auto``: builds each available candidate, times it on a frame of the working size and
  picks the fastest whose output stays within :data:`MAX_RUNTIME_ERROR` of eager; any
  runtime that fails to build or run is skipped (eager is the fallback). The decision is
  cached per process (:func:`select_runtime`).

Device: a runtime lives on the weights' device and takes and returns CPU tensors, moving
them at its edge. On CUDA "auto" measures :data:`AUTO_CANDIDATES_CUDA` instead.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from vidstyle.config import RUNTIMES
from vidstyle.errors import UsageError, VidstyleError
from vidstyle.fast.inference import FeatureHook, InferenceNet
from vidstyle.fast.net import StyleNet

log = logging.getLogger(__name__)

#: Runtimes "auto" measures on the CPU, in order (those that cannot be built are skipped).
AUTO_CANDIDATES = ("eager", "bf16", "openvino")
#: Runtimes "auto" measures on a CUDA device.
AUTO_CANDIDATES_CUDA = ("eager", "fp16", "bf16")
#: A runtime whose output differs from eager float32 by more than this (max abs, RGB in
#: [0, 1]) is rejected by "auto".
MAX_RUNTIME_ERROR = 0.15
#: "auto" times runtimes on a frame of at most this longest side (start-up cost).
MEASURE_LONGEST = 512


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
    raise UsageError(f"unknown --runtime {name!r}: use one of {', '.join(RUNTIMES)}")


@dataclass(frozen=True)
class RuntimeChoice:
    """What :func:`select_runtime` decided and why.

    ms: per-runtime best forward time (milliseconds) at ``size``; max_err / mean_err:
    difference from eager float32 (RGB in [0, 1]); failed: runtime -> reason.
    """

    name: str
    requested: str
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
    out = rt(x, w)  # warm-up (and compile)
    best = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        rt(x, w)
        best = min(best, time.perf_counter() - t0)
    return best * 1e3, out


def select_runtime(
    net: StyleNet,
    requested: str = "auto",
    *,
    size: tuple[int, int] = (360, 640),
    candidates: Sequence[str] | None = None,
    builder: Callable[[str, StyleNet], Runtime] = build_runtime,
    repeats: int = 2,
    cache_key: Any = None,
) -> tuple[RuntimeChoice, Runtime]:
    """Choose and build the runtime for ``net`` at frame ``size`` (h, w).

    "auto": each candidate is built, run once to warm up, then timed ``repeats`` times on
    a random image of ``size`` (shrunk to :data:`MEASURE_LONGEST`); the fastest one whose
    output is within :data:`MAX_RUNTIME_ERROR` of eager wins. A named runtime is built
    directly; if it fails to build or run, eager is used and the reason logged.
    The decision is cached per process under ``cache_key`` (e.g. the model's sha256).
    ``candidates`` default: :data:`AUTO_CANDIDATES`, or :data:`AUTO_CANDIDATES_CUDA` when
    the network's weights are on a CUDA device.
    """
    if candidates is None:
        on_cuda = _net_device(net).type == "cuda"
        candidates = AUTO_CANDIDATES_CUDA if on_cuda else AUTO_CANDIDATES
    if requested not in RUNTIMES:
        raise UsageError(f"unknown --runtime {requested!r}: use one of {', '.join(RUNTIMES)}")
    key = (cache_key if cache_key is not None else id(net), requested, tuple(candidates))
    with _CACHE_LOCK:
        if key in _CACHE:
            return _CACHE[key]
    h, w = size
    s = min(1.0, MEASURE_LONGEST / max(h, w))
    mh, mw = max(16, round(h * s)), max(16, round(w * s))
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(1, 3, mh, mw, generator=gen)
    sw = torch.full((1, net.num_styles), 1.0 / net.num_styles)
    ms: dict[str, float] = {}
    max_err: dict[str, float] = {}
    mean_err: dict[str, float] = {}
    failed: dict[str, str] = {}
    built: dict[str, Runtime] = {}
    names = list(candidates) if requested == "auto" else [requested]
    if "eager" not in names:
        names.insert(0, "eager")
    ref = None
    for name in names:
        try:
            rt = builder(name, net)
            t, out = _time_call(rt, x, sw, repeats if requested == "auto" else 0)
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
        if requested == "auto":
            ms[name] = t
        built[name] = rt
    if requested != "auto" and requested in built:
        pick = requested
    elif requested == "auto" and ms:
        pick = min(ms, key=ms.get)
    elif "eager" in built:
        pick = "eager"
        if requested != "auto":
            log.warning("runtime %s failed (%s); using eager", requested, failed.get(requested))
    else:
        raise VidstyleError(f"no inference runtime works here: {failed}")
    choice = RuntimeChoice(pick, requested, (mh, mw), ms, max_err, mean_err, failed)
    log.info("fast runtime: %s (requested %s, ms %s)", pick, requested,
             {k: round(v, 1) for k, v in ms.items()})
    with _CACHE_LOCK:
        _CACHE[key] = (choice, built[pick])
    return choice, built[pick]

