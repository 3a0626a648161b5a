"""Inference of the multi-style network: runtimes, style vectors and the fast stylizer.

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

:class:`InferenceNet` is faster than ``StyleNet.forward`` even in float32: the conv bias
is dropped (instance normalization cancels it) and the normalization runs as one native
``batch_norm`` call instead of ``var_mean`` + arithmetic.

Images are (B, 3, H, W) float32 RGB in [0, 1]; style weights are (B, S) float32 rows.

Device: the network runs on the stylizer's device (CUDA when present: ``--device auto``),
with the feature-level stabilization blend (a hook inside it); everything around it
(decode, flow, output blend, encode) stays on the CPU, and a runtime takes and returns CPU
tensors, moving them at its edge. On CUDA "auto" measures
:data:`AUTO_CANDIDATES_CUDA` instead.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from vidstyle.config import EncodeConfig, RunConfig, fingerprint_of
from vidstyle.errors import InputError, StyleError, UsageError, VidstyleError
from vidstyle.fast.model_io import LoadedModel, load_model, load_shipped, sha256_file
from vidstyle.fast.net import StyleNet, blend_strength
from vidstyle.fast.stabilize import FlowContext, Stabilizer, default_flow
from vidstyle.imageops import resize_uint8
from vidstyle.stylize import working_size

log = logging.getLogger(__name__)

RUNTIMES = ("auto", "eager", "bf16", "fp16", "compile", "openvino")
#: Runtimes "auto" measures on the CPU, in order (those that cannot be built are skipped).
AUTO_CANDIDATES = ("eager", "bf16", "openvino")
#: Runtimes "auto" measures on a CUDA device.
AUTO_CANDIDATES_CUDA = ("eager", "fp16", "bf16")
#: A runtime whose output differs from eager float32 by more than this (max abs, RGB in
#: [0, 1]) is rejected by "auto".
MAX_RUNTIME_ERROR = 0.15
#: The shipped model used when ``FastConfig.model`` is None.
DEFAULT_MODEL = "fast7"
#: "auto" times runtimes on a frame of at most this longest side (start-up cost).
MEASURE_LONGEST = 512


# --------------------------------------------------------------------------- network

#: ``hook(point, features) -> features`` at the named points of :meth:`InferenceNet.forward`.
FeatureHook = Callable[[str, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class _LayerSpec:
    pad: int
    stride: int
    upsample: bool
    relu: bool
    eps: float


class InferenceNet(nn.Module):
    """Inference-only copy of a :class:`StyleNet` in a chosen dtype and memory layout.

    forward(x, style_weights): x (B, 3, H, W) float in [0, 1], style_weights (B, S) or
    (1, S) -> (B, 3, H, W) float32 in [0, 1], equal to ``StyleNet.forward`` up to rounding.

    :meth:`forward_stats` also exposes the normalization statistics (for tiling): it can
    use given per-layer (mean, var) instead of the image's own, and report the statistics
    of a sub-rectangle (the tile's core).
    """

    def __init__(
        self, net: StyleNet, *, dtype: torch.dtype = torch.float32, channels_last: bool = False
    ) -> None:
        super().__init__()
        self.dtype = dtype
        self.channels_last = channels_last
        self.num_styles = net.num_styles
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        blocks = [net.conv_in, net.down1, net.down2]
        for r in net.res:
            blocks += [r.a, r.b]
        blocks += [net.up1, net.up2, net.conv_out]
        self.num_res = len(net.res)
        self.specs: list[_LayerSpec] = []
        self.weights = nn.ParameterList()
        self.subpixel = nn.ParameterDict()
        gammas, betas = [], []
        for b in blocks:
            conv = b.conv
            self.specs.append(
                _LayerSpec(b.pad, int(conv.stride[0]), b.upsample, b.relu, float(b.norm.eps))
            )
            # The conv bias is a per-channel constant that instance normalization removes.
            w = conv.weight.detach().to(dtype).contiguous(memory_format=fmt)
            self.weights.append(nn.Parameter(w, requires_grad=False))
            if b.upsample and conv.kernel_size == (3, 3):
                sub = _subpixel_kernel(conv.weight.detach().float())
                self.subpixel[str(len(self.specs) - 1)] = nn.Parameter(
                    sub.to(dtype).contiguous(memory_format=fmt), requires_grad=False
                )
            gammas.append(b.norm.gamma.detach().float().clone())
            betas.append(b.norm.beta.detach().float().clone())
        # frozen parameters, so that .to(device) moves them with the conv weights
        self.gammas = nn.ParameterList(nn.Parameter(g, requires_grad=False) for g in gammas)
        self.betas = nn.ParameterList(nn.Parameter(b, requires_grad=False) for b in betas)
        # strides: the resolution factor (1, 2, 4) of each layer's output
        factors, f = [], 1
        for s in self.specs:
            f = f // 2 if s.upsample else f * s.stride
            factors.append(f)
        self.factors = tuple(factors)
        self.requires_grad_(False)
        self.eval()

    @property
    def num_layers(self) -> int:
        return len(self.specs)

    def affine(self, style_weights: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per-layer (gamma, beta), each (B, C) float32, of the style rows (B, S)."""
        w = style_weights.to(torch.float32)
        return [(w @ g, w @ b) for g, b in zip(self.gammas, self.betas, strict=True)]

    def _prep(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.dtype)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def _conv(self, i: int, x: torch.Tensor, size: Sequence[int] | None) -> torch.Tensor:
        s = self.specs[i]
        key = str(i)
        if (s.upsample and key in self.subpixel and s.pad == 1
                and tuple(size) == (2 * x.shape[-2], 2 * x.shape[-1])):
            # nearest x2 + reflect pad 1 + conv 3x3 == replicate pad 1 at low resolution,
            # a conv with 4x the outputs (one per output phase), pixel shuffle: the same
            # sums without the 4x larger upsampled and padded copies
            y = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), self.subpixel[key])
            y = F.pixel_shuffle(y, 2)
            return y.contiguous(memory_format=torch.channels_last) if self.channels_last else y
        if s.upsample:
            x = F.interpolate(x, size=tuple(size), mode="nearest")
        if s.pad:
            x = F.pad(x, (s.pad,) * 4, mode="reflect")
        return F.conv2d(x, self.weights[i], None, stride=s.stride)

    def _norm(
        self,
        i: int,
        y: torch.Tensor,
        gb: Sequence[tuple[torch.Tensor, torch.Tensor]],
        stats: Sequence[tuple[torch.Tensor, torch.Tensor]] | None,
    ) -> torch.Tensor:
        s = self.specs[i]
        g, b = gb[i]
        outs = []
        for k in range(y.shape[0]):
            gk = g[k if g.shape[0] > 1 else 0]
            bk = b[k if b.shape[0] > 1 else 0]
            if stats is None:
                z = F.batch_norm(y[k : k + 1], None, None, gk, bk, True, 0.0, s.eps)
            else:
                mean, var = stats[i]
                z = F.batch_norm(
                    y[k : k + 1], mean[k].to(y.device), var[k].to(y.device), gk, bk,
                    False, 0.0, s.eps,
                )
            outs.append(z)
        z = outs[0] if len(outs) == 1 else torch.cat(outs)
        return F.relu(z, inplace=True) if s.relu else z

    def _run(
        self,
        x: torch.Tensor,
        style_weights: torch.Tensor,
        stats: Sequence[tuple[torch.Tensor, torch.Tensor]] | None = None,
        record: Callable[[int, torch.Tensor], None] | None = None,
        hook: FeatureHook | None = None,
    ) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"expected (B, 3, H, W) images, got {tuple(x.shape)}")
        if style_weights.dim() != 2 or style_weights.shape[1] != self.num_styles:
            raise ValueError(
                f"expected (B, {self.num_styles}) style weights, got {tuple(style_weights.shape)}"
            )
        gb = self.affine(style_weights.to(x.device))
        x = self._prep(x)
        n = self.num_layers

        def layer(i: int, h: torch.Tensor, size: Sequence[int] | None = None) -> torch.Tensor:
            y = self._conv(i, h, size)
            if record is not None:
                record(i, y)
            return self._norm(i, y, gb, stats)

        h0 = layer(0, x)
        h1 = layer(1, h0)
        h = layer(2, h1)
        if hook is not None:
            h = hook("pre_res", h)
        for r in range(self.num_res):
            h = h + layer(4 + 2 * r, layer(3 + 2 * r, h))
        if hook is not None:
            h = hook("post_res", h)
        h = layer(n - 3, h, h1.shape[-2:])
        h = layer(n - 2, h, h0.shape[-2:])
        h = layer(n - 1, h)
        return torch.sigmoid(h.float())

    def forward(
        self, x: torch.Tensor, style_weights: torch.Tensor, hook: FeatureHook | None = None
    ) -> torch.Tensor:
        """hook(name, features) -> features, called with the 1/4-resolution features
        before ("pre_res") and after ("post_res") the residual blocks (flow stabilization
        of video blends them with the previous frame's; see vidstyle.fast.stabilize)."""
        return self._run(x, style_weights, hook=hook)

    def forward_stats(
        self,
        x: torch.Tensor,
        style_weights: torch.Tensor,
        *,
        stats: Sequence[tuple[torch.Tensor, torch.Tensor]] | None = None,
        core: tuple[int, int, int, int] | None = None,
    ) -> tuple[torch.Tensor, list[tuple[float, torch.Tensor, torch.Tensor]]]:
        """Forward with explicit normalization statistics.

        stats: per layer (mean, var), each (B, C) float32; None = the image's own.
        core: (y0, y1, x0, x1) in input pixels (multiples of 4 except at the far edges):
          the region whose pre-normalization statistics are reported.
        Returns (output (B, 3, H, W) float32, per layer (count, mean (B, C), M2 (B, C)))
        with float64 mean and M2 = sum of squared deviations over the core region.
        """
        h, w = x.shape[-2:]
        y0, y1, x0, x1 = core if core is not None else (0, h, 0, w)
        recorded: list[tuple[float, torch.Tensor, torch.Tensor]] = []

        def rec(i: int, y: torch.Tensor) -> None:
            f = self.factors[i]
            r0, c0 = y0 // f, x0 // f
            r1 = y.shape[-2] if y1 >= h else y1 // f
            c1 = y.shape[-1] if x1 >= w else x1 // f
            part = y[:, :, r0:r1, c0:c1].double()
            cnt = float(part.shape[-2] * part.shape[-1])
            mean = part.mean(dim=(2, 3))
            m2 = (part - mean[:, :, None, None]).pow(2).sum(dim=(2, 3))
            recorded.append((cnt, mean, m2))

        out = self._run(x, style_weights, stats=stats, record=rec)
        return out, recorded


def _subpixel_kernel(w: torch.Tensor) -> torch.Tensor:
    """(Cout, Cin, 3, 3) kernel of nearest-x2-upsample + conv -> (4 Cout, Cin, 3, 3) kernel
    on the low-resolution input whose output channel c*4 + a*2 + b is output phase (a, b)
    (for ``pixel_shuffle(., 2)``). Phase a=0 rows: tap -1 <- w[0], tap 0 <- w[1] + w[2];
    a=1: tap 0 <- w[0] + w[1], tap +1 <- w[2]; columns likewise."""
    r = torch.tensor(
        [[[1.0, 0, 0], [0, 1, 1], [0, 0, 0]], [[0.0, 0, 0], [1, 1, 0], [0, 0, 1]]],
        dtype=w.dtype, device=w.device,
    )  # (phase, low-res tap, original tap)
    k = torch.einsum("aym,bxn,oimn->oabiyx", r, r, w)
    cout, cin = w.shape[:2]
    return k.reshape(cout * 4, cin, 3, 3)


def merge_stats(
    parts: Sequence[list[tuple[float, torch.Tensor, torch.Tensor]]],
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Combine per-tile (count, mean, M2) of each layer into per-layer (mean, biased var).

    Chan et al.'s parallel update; returns float32 (B, C) tensors.
    """
    merged = []
    for layer in zip(*parts, strict=True):
        n, mean, m2 = layer[0]
        for cnt, mu, mm in layer[1:]:
            tot = n + cnt
            delta = mu - mean
            mean = mean + delta * (cnt / tot)
            m2 = m2 + mm + delta.pow(2) * (n * cnt / tot)
            n = tot
        merged.append((mean.float(), (m2 / n).float()))
    return merged


# --------------------------------------------------------------------------- runtimes


class Runtime:
    """A callable ``(x (B,3,H,W) float32, style_weights (B,S)) -> (B,3,H,W) float32``."""

    name = "base"
    #: whether ``__call__`` accepts a feature ``hook`` (see :meth:`InferenceNet.forward`)
    supports_hooks = False

    def __call__(
        self, x: torch.Tensor, style_weights: torch.Tensor, hook: FeatureHook | None = None
    ) -> torch.Tensor:
        raise NotImplementedError


class TorchRuntime(Runtime):
    """An :class:`InferenceNet` (optionally wrapped by ``torch.compile``) on ``device``
    (that of its weights). Takes and returns CPU float32 tensors; a hook sees features
    on the device."""

    supports_hooks = True

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
            if hook is not None:  # a compiled graph has no hook points: run the module
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


# --------------------------------------------------------------------------- styles


def style_vector(spec: str, style_names: Sequence[str]) -> torch.Tensor:
    """'starry' or 'starry:0.6,wave:0.4' -> (S,) float32 convex weights over ``style_names``.

    Weights are normalized to sum 1. Raises StyleError for a style the model lacks
    (naming the styles it has), a bad or negative weight, or an all-zero mix.
    """
    parts = [p.strip() for p in spec.split(",") if p.strip()]
    if not parts:
        raise StyleError("empty --style")
    vec = torch.zeros(len(style_names), dtype=torch.float64)
    known = ", ".join(style_names)
    for part in parts:
        name, sep, wtxt = part.rpartition(":")
        if not sep:
            name, wtxt = part, "1"
        try:
            weight = float(wtxt)
        except ValueError:
            raise StyleError(f"bad style weight in {part!r}") from None
        if weight < 0 or not math.isfinite(weight):
            raise StyleError(f"style weight must be a finite number >= 0 in {part!r}")
        if name not in style_names:
            raise StyleError(
                f"the fast model has no style {name!r} (it has: {known}); "
                "use --method optim for other styles or images"
            )
        vec[list(style_names).index(name)] += weight
    total = float(vec.sum())
    if total <= 0:
        raise StyleError("style weights sum to zero")
    return (vec / total).to(torch.float32)


# --------------------------------------------------------------------------- stylizer


class _Stop(Exception):
    """Internal: a worker saw the stop flag."""


_END = object()


class FastStylizer:
    """The feed-forward stylizer: one network pass per frame, flow-stabilized for video.

    Build with :func:`make_fast_stylizer`. ``streaming = True``: the pipeline calls
    :meth:`run_stream` for the whole clip (decode, flow, encode in threads around the
    network). :meth:`stylize` serves stills (and per-frame callers).
    """

    streaming = True

    def __init__(
        self,
        *,
        model: LoadedModel,
        model_sha256: str,
        style_weights: torch.Tensor,
        config: RunConfig,
        device: torch.device,
    ) -> None:
        fast = config.fast
        if not 0.0 <= fast.strength <= 1.0:
            raise UsageError(f"--strength must be in 0..1, got {fast.strength}")
        if not 0.0 <= fast.stability <= 1.0:
            raise UsageError(f"--stability must be in 0..1, got {fast.stability}")
        if fast.runtime not in RUNTIMES:
            raise UsageError(
                f"unknown --runtime {fast.runtime!r}: use one of {', '.join(RUNTIMES)}"
            )
        if fast.tile < 0 or (0 < fast.tile < 64):
            raise UsageError(f"--tile must be 0 (automatic) or >= 64 pixels, got {fast.tile}")
        if fast.size is not None and not 16 <= fast.size <= 8192:
            raise UsageError(f"--size {fast.size} is out of range (16..8192 pixels)")
        self.model = model
        self.model_sha256 = model_sha256
        self.style_weights = style_weights.reshape(1, -1).to(torch.float32)
        self.config = config
        self.device = device
        self.runtime_choice: RuntimeChoice | None = None
        self._runtime: Runtime | None = None
        self._tiler: InferenceNet | None = None

    # -- identity ----------------------------------------------------------------------
    def fingerprint(self) -> str:
        f = self.config.fast
        return fingerprint_of(
            "fast", self.model_sha256, [round(float(v), 6) for v in self.style_weights[0]],
            f.size, f.strength, f.stability, f.tile,
        )

    @property
    def style_names(self) -> tuple[str, ...]:
        return self.model.style_names

    def style_vector(self, spec: str) -> torch.Tensor:
        """(S,) weights of a style spec for this model (see :func:`style_vector`)."""
        return style_vector(spec, self.model.style_names)

    # -- network -----------------------------------------------------------------------
    def runtime(self, size: tuple[int, int]) -> Runtime:
        """The runtime for frames of ``size`` (h, w), chosen on first use (cached)."""
        if self._runtime is None:
            self.runtime_choice, self._runtime = select_runtime(
                self.model.net, self.config.fast.runtime, size=size,
                cache_key=(self.model_sha256, str(self.device)),
            )
        return self._runtime

    def _tile_for(self, h: int, w: int) -> int:
        from vidstyle.fast import tiling

        return tiling.tile_size_for(h, w, self.config.fast.tile)

    def network(
        self, x: torch.Tensor, style_weights: torch.Tensor, hook: FeatureHook | None = None
    ) -> torch.Tensor:
        """Raw network output (B, 3, H, W) in [0, 1] for x (B or 1, 3, H, W), rows (B, S);
        tiles frames larger than the tile limit (see :mod:`vidstyle.fast.tiling`).
        ``hook``: see :meth:`InferenceNet.forward`; only when :meth:`supports_hooks`."""
        from vidstyle.fast import tiling

        h, w = x.shape[-2:]
        tile = self._tile_for(h, w)
        if tile:
            if hook is not None:
                raise ValueError("tiled frames have no feature hook points")
            if self._tiler is None:
                self._tiler = InferenceNet(self.model.net, dtype=torch.float32)
            outs = []
            for k in range(style_weights.shape[0]):
                xk = x[k : k + 1] if x.shape[0] > 1 else x
                with torch.inference_mode():
                    outs.append(tiling.tiled_forward(self._tiler, xk, style_weights[k : k + 1],
                                                     tile=tile))
            return torch.cat(outs)
        if x.shape[0] == 1 and style_weights.shape[0] > 1:
            x = x.expand(style_weights.shape[0], -1, -1, -1)
        if hook is not None:
            return self.runtime((h, w))(x, style_weights, hook)
        return self.runtime((h, w))(x, style_weights)

    def supports_hooks(self, size: tuple[int, int]) -> bool:
        """Whether frames of ``size`` (h, w) run untiled on a runtime with feature hooks."""
        return not self._tile_for(*size) and self.runtime(size).supports_hooks

    def stylize_tensor(self, x: torch.Tensor, hook: FeatureHook | None = None) -> torch.Tensor:
        """(1, 3, H, W) in [0, 1] at working size -> stylized (1, 3, H, W) with strength.
        ``hook``: see :meth:`network`."""
        out = self.network(x, self.style_weights, hook)
        return blend_strength(out, x.to(out.device, out.dtype), self.config.fast.strength)

    def stylize_video_frame(
        self,
        x: torch.Tensor,
        ctx: FlowContext | None,
        stabilizer: Stabilizer | None,
        *,
        output_blend: bool = True,
    ) -> torch.Tensor:
        """One video frame (1, 3, H, W) at working size, stabilized against the previous.

        ``ctx`` is ``stabilizer.prepare(x)`` (it may run ahead in another thread); frames
        must come in order. With ``stabilizer.feature_blend`` the network's features are
        blended too (set it only where :meth:`supports_hooks`). ``output_blend=False``
        leaves ``stabilizer.apply(ctx, out)`` to the caller (e.g. the encode thread; the
        feature and output blends keep separate state, so they may run in two threads).
        """
        if stabilizer is None or ctx is None:
            return self.stylize_tensor(x)
        hook = stabilizer.feature_hook(ctx) if stabilizer.feature_blend else None
        out = self.stylize_tensor(x, hook)
        return stabilizer.apply(ctx, out) if output_blend else out

    def stylize_many(self, image: torch.Tensor, style_vectors: torch.Tensor) -> torch.Tensor:
        """One image (1, 3, H, W) in several styles in one batched pass.

        style_vectors: (B, S) rows (one-hot or mixes, e.g. from :meth:`style_vector`).
        Returns (B, 3, H, W) in [0, 1], strength applied; row b equals stylizing with
        style b alone.
        """
        if image.dim() != 4 or image.shape[0] != 1:
            raise ValueError(f"expected one image (1, 3, H, W), got {tuple(image.shape)}")
        sv = style_vectors.reshape(-1, self.model.net.num_styles).to(torch.float32)
        out = self.network(image, sv)
        return blend_strength(out, image.to(out.device, out.dtype).expand_as(out),
                              self.config.fast.strength)

    def _prepare(self, rgb: np.ndarray) -> torch.Tensor:
        """(H, W, 3) uint8 -> (1, 3, h, w) float32 at the working size."""
        from vidstyle.tensors import to_tensor

        size = working_size(rgb.shape[0], rgb.shape[1], self.config.fast.size)
        return to_tensor(resize_uint8(rgb, size))

    # -- per-frame API -----------------------------------------------------------------
    def observe(self, frame: Any, output: np.ndarray) -> None:
        return None

    def stylize(self, frame: Any, *, progress: Any = None, total: int | None = None) -> np.ndarray:
        """One frame (``Frame`` or (H, W, 3) uint8) -> (h, w, 3) uint8 at working size."""
        from vidstyle.tensors import to_uint8

        rgb = frame.rgb if hasattr(frame, "rgb") else frame
        return to_uint8(self.stylize_tensor(self._prepare(rgb)))

    # -- video -------------------------------------------------------------------------
    def make_stabilizer(self, stability: float | None = None) -> Stabilizer:
        """A stabilizer at ``stability`` (default: the config's); its ``feature_blend`` is
        off until the caller knows the frame size (see :meth:`supports_hooks`)."""
        s = self.config.fast.stability if stability is None else stability
        return Stabilizer(flow=default_flow(), stability=s)

    def run_stream(
        self,
        input_path: str | Path,
        output_path: str | Path,
        *,
        info: Any,
        encode: EncodeConfig,
        max_frames: int | None = None,
        progress: Callable[[Any], None] | None = None,
    ) -> int:
        """Stylize a whole clip: decode thread -> (main) network + stabilization -> encode
        thread, with bounded queues. Returns the number of frames written.

        The output appears atomically (MediaWriter); on any error or KeyboardInterrupt the
        threads stop, the partial output is deleted and the exception propagates.
        """
        from vidstyle import media
        from vidstyle.pipeline import ProgressEvent
        from vidstyle.tensors import to_uint8

        stabilizer = self.make_stabilizer() if self.config.fast.stability > 0 else None
        total = info.frame_count or None
        if max_frames is not None:
            total = min(total, max_frames) if total else max_frames
        stop = threading.Event()
        q_in: queue.Queue[Any] = queue.Queue(maxsize=4)
        q_out: queue.Queue[Any] = queue.Queue(maxsize=4)
        errors: list[BaseException] = []
        written = [0]

        def put(q: queue.Queue[Any], item: Any) -> None:
            while True:
                if stop.is_set():
                    raise _Stop
                try:
                    q.put(item, timeout=0.1)
                    return
                except queue.Full:
                    continue

        def get(q: queue.Queue[Any]) -> Any:
            while True:
                if stop.is_set():
                    raise _Stop
                try:
                    return q.get(timeout=0.1)
                except queue.Empty:
                    continue

        def decoder() -> None:
            try:
                with torch.inference_mode():
                    for frame in media.iter_frames(input_path):
                        if max_frames is not None and frame.index >= max_frames:
                            break
                        x = self._prepare(frame.rgb)
                        ctx = stabilizer.prepare(x) if stabilizer is not None else None
                        put(q_in, (frame, x, ctx))
                put(q_in, _END)
            except _Stop:
                pass
            except BaseException as e:  # noqa: BLE001 - handed to the main thread
                errors.append(e)
                stop.set()

        def encoder() -> None:
            writer = media.MediaWriter(output_path, source=info, crf=encode.crf,
                                       preset=encode.preset, copy_audio=encode.copy_audio)
            try:
                while True:
                    item = get(q_out)
                    if item is _END:
                        break
                    frame, ctx, y = item
                    if stabilizer is not None and ctx is not None:
                        with torch.inference_mode():
                            y = stabilizer.apply(ctx, y)  # in order, beside the network
                    rgb = to_uint8(y)
                    alpha = (None if frame.alpha is None
                             else resize_uint8(frame.alpha, rgb.shape[:2]))
                    writer.write(dataclasses.replace(frame, rgb=rgb, alpha=alpha))
                    written[0] += 1
                if written[0] == 0:
                    raise InputError(f"{input_path}: no frames could be decoded")
                writer.close()
            except _Stop:
                writer.abort()
            except BaseException as e:  # noqa: BLE001 - handed to the main thread
                writer.abort()
                errors.append(e)
                stop.set()

        threads = [threading.Thread(target=decoder, name="vidstyle-decode", daemon=True),
                   threading.Thread(target=encoder, name="vidstyle-encode", daemon=True)]
        for t in threads:
            t.start()
        done = 0
        try:
            with torch.inference_mode():
                while True:
                    item = get(q_in)
                    if item is _END:
                        break
                    frame, x, ctx = item
                    if stabilizer is not None and done == 0:
                        stabilizer.feature_blend = self.supports_hooks(tuple(x.shape[-2:]))
                    y = self.stylize_video_frame(x, ctx, stabilizer, output_blend=False)
                    put(q_out, (frame, ctx, y))
                    done += 1
                    if progress is not None:
                        progress(ProgressEvent("stylize", done, total))
            put(q_out, _END)
            threads[1].join()
        except _Stop:
            pass
        except BaseException:
            stop.set()
            for t in threads:
                t.join()
            raise
        finally:
            if errors:
                stop.set()
            for t in threads:
                t.join(timeout=None if errors or stop.is_set() else 0)
        if errors:
            raise errors[0]
        threads[0].join()
        return written[0]


def resolve_model(spec: str | None, device: torch.device | str = "cpu") -> tuple[LoadedModel, str]:
    """Load ``spec`` (a model file path, a shipped model name, or None for the default).

    Returns (model, sha256 of its file). Raises WeightsError when missing or corrupt.
    """
    from vidstyle.fast.model_io import DEFAULT_WEIGHTS_DIR, read_manifest

    name = spec or DEFAULT_MODEL
    entries = read_manifest().get("models", {})
    if name in entries and not Path(name).suffix:
        model = load_shipped(name, device=device)
        return model, str(entries[name]["sha256"])
    path = Path(name).expanduser()
    if not path.is_file() and (DEFAULT_WEIGHTS_DIR / name).is_file():
        path = DEFAULT_WEIGHTS_DIR / name
    model = load_model(path, device=device)
    return model, sha256_file(path)


def make_fast_stylizer(*, config: RunConfig, device: torch.device | str = "cpu") -> FastStylizer:
    """Load the model of ``config.fast.model`` and map ``config.style`` to its style weights.

    Raises StyleError for a style the model lacks, WeightsError for a missing/corrupt model,
    UsageError for bad strength/stability/runtime/tile values.
    """
    device = torch.device(device)
    model, sha = resolve_model(config.fast.model, device)
    weights = style_vector(config.style, model.style_names)
    return FastStylizer(model=model, model_sha256=sha, style_weights=weights, config=config,
                        device=device)


__all__ = [
    "AUTO_CANDIDATES",
    "AUTO_CANDIDATES_CUDA",
    "DEFAULT_MODEL",
    "RUNTIMES",
    "FastStylizer",
    "InferenceNet",
    "Runtime",
    "RuntimeChoice",
    "TorchRuntime",
    "build_runtime",
    "clear_runtime_cache",
    "make_fast_stylizer",
    "merge_stats",
    "resolve_model",
    "select_runtime",
    "style_vector",
]
