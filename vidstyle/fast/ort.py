"""ONNX Runtime (CPU) runtimes of the fast network: ``ort`` (float32) and ``ort-int8``.

The optional ``onnxruntime`` package (``pip install vidstyle[onnx]``) runs the network; it
is never required: without it, building these runtimes raises ImportError and
:func:`~vidstyle.fast.runtimes.select_runtime` uses a torch runtime.

The feature-level stabilization (:mod:`vidstyle.fast.stabilize`) blends the network's
1/4-resolution features at two hook points, "pre_res" and "post_res" (see
:meth:`InferenceNet.forward`). So the network is exported as three graphs split there:

- ``enc``: image (1, 3, H, W), style row (1, S) -> features (1, C2, H/4, W/4) ("pre_res");
- ``core``: features, style row -> features after the residual blocks ("post_res");
- ``dec``: features, style row -> image (1, 3, H, W) in [0, 1].

The hook runs in torch between the graphs, on CPU float32 tensors (the features cost one
copy of ~4 MB at 640x360 each way). The graphs have static shapes (ONNX Runtime plans
and fuses better): one set is exported per frame size (H, W) and kept (a video has one
size). They compute :class:`InferenceNet`'s function (the same sub-pixel upsampling,
reflection padding and instance normalization with the style's (gamma, beta) taken from
the style row inside the graph); the export uses torch's TorchScript-based ONNX exporter,
which needs no other package.

``ort-int8``: the same graphs with the convolutions of :data:`INT8_PARTS` statically
quantized by ONNX Runtime's quantization tool (needs the ``onnx`` package too): weights
int8 per output channel, activations uint8 with ranges calibrated on
:data:`CALIBRATION_FRAMES` frames of the packaged demo clip in a few styles (QDQ format;
x86 CPUs with AVX512-VNNI / AVX-VNNI run it with their 8-bit dot-product instructions).
The instance normalizations and the sigmoid stay float32. Calibration runs per frame size
(seconds). Whether "auto" may use it is decided by measurement (benchmarks/RESULTS.md).

Images are (B, 3, H, W) float32 RGB in [0, 1] on the CPU; style weights (B, S) rows.
"""

from __future__ import annotations

import io
import logging
import tempfile
import threading
import warnings
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from vidstyle.fast.inference import FeatureHook, InferenceNet
from vidstyle.fast.net import StyleNet, from_depth, to_depth
from vidstyle.media import iter_frames

log = logging.getLogger(__name__)

#: ONNX opset of the exported graphs.
OPSET = 17
#: Frames of the packaged demo clip the int8 activation ranges are calibrated on.
CALIBRATION_FRAMES = 8
#: Names of the three graphs, in order.
PARTS = ("enc", "core", "dec")
#: The graphs ``ort-int8`` quantizes: the residual core only. Measured (RESULTS.md): int8
#: convolutions ran the 64-channel core ~1.8x faster than float32 but the 16- and
#: 32-channel full- and half-resolution layers slower (quantize/dequantize passes over
#: large, thin activations cost more than the 8-bit arithmetic saves).
INT8_PARTS = ("core",)


def available() -> bool:
    """Whether ``onnxruntime`` is importable (the ``ort`` runtime can be built)."""
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


class _Part(nn.Module):
    """One of the three graphs (:data:`PARTS`) of an :class:`InferenceNet` at a fixed
    frame size and batch 1, written with export-friendly ops (InstanceNormalization with
    the style's (gamma, beta) as its scale and bias)."""

    def __init__(self, net: InferenceNet, part: str, size: tuple[int, int]) -> None:
        super().__init__()
        self.net = net
        self.part = part
        self.size = size
        f = net.space_to_depth
        h, w = -(-size[0] // f), -(-size[1] // f)  # the network's input size
        # the encoder's output sizes (stride-2 convs with padding 1: ceil(n / 2))
        self.h0 = (h, w)
        self.h1 = ((h + 1) // 2, (w + 1) // 2)

    def _layer(self, i: int, h: torch.Tensor, sw: torch.Tensor,
               size: tuple[int, int] | None = None) -> torch.Tensor:
        net = self.net
        s = net.specs[i]
        y = net._conv(i, h, size)
        # batch 1: the style's (gamma, beta) are the normalization's own scale and bias
        g = (sw @ net.gammas[i]).reshape(-1)
        b = (sw @ net.betas[i]).reshape(-1)
        z = F.instance_norm(y, weight=g, bias=b, eps=s.eps)
        return F.relu(z) if s.relu else z

    def forward(self, h: torch.Tensor, sw: torch.Tensor) -> torch.Tensor:
        net = self.net
        n = net.num_layers
        if self.part == "enc":
            h = to_depth(h, net.space_to_depth)
            return self._layer(2, self._layer(1, self._layer(0, h, sw), sw), sw)
        if self.part == "core":
            for r in range(net.num_res):
                h = h + self._layer(4 + 2 * r, self._layer(3 + 2 * r, h, sw), sw)
            return h
        h = self._layer(n - 3, h, sw, self.h1)
        h = self._layer(n - 2, h, sw, self.h0)
        return torch.sigmoid(from_depth(self._layer(n - 1, h, sw), net.space_to_depth,
                                        self.size))


def export_parts(net: StyleNet, size: tuple[int, int]) -> dict[str, bytes]:
    """The three graphs (:data:`PARTS`) of ``net`` for frames of ``size`` (h, w), as ONNX
    model bytes (float32, batch 1)."""
    inet = InferenceNet(net.cpu() if _device(net).type != "cpu" else net, dtype=torch.float32)
    h, w = size
    sw = torch.full((1, inet.num_styles), 1.0 / inet.num_styles)
    x = torch.rand(1, 3, h, w)
    out: dict[str, bytes] = {}
    with torch.inference_mode():
        feats = _Part(inet, "enc", size)(x, sw)
    inputs = {"enc": x, "core": feats, "dec": feats}
    for part in PARTS:
        buf = io.BytesIO()
        with warnings.catch_warnings():
            # the tracer's notes on shape-dependent branches: shapes are static here
            warnings.simplefilter("ignore")
            torch.onnx.export(_Part(inet, part, size), (inputs[part], sw), buf,
                              input_names=["x", "style"], output_names=["y"],
                              opset_version=OPSET, dynamo=False, do_constant_folding=True)
        out[part] = buf.getvalue()
    return out


def _device(net: nn.Module) -> torch.device:
    return next(net.parameters()).device


def calibration_frames(size: tuple[int, int], count: int = CALIBRATION_FRAMES
                       ) -> list[torch.Tensor]:
    """``count`` frames (1, 3, h, w) float32 of the packaged demo clip, spread over it and
    resized to ``size`` (h, w) (area)."""
    clip = Path(str(resources.files("vidstyle") / "data" / "bigbuckbunny.mp4"))
    frames = [f.rgb for f in iter_frames(clip)]
    step = max(1, len(frames) // count)
    picked = frames[::step][:count]
    out = []
    for rgb in picked:
        t = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)[None].float() / 255.0
        out.append(F.interpolate(t, size=size, mode="area") if t.shape[-2:] != size else t)
    return out


def quantize_parts(net: StyleNet, parts: dict[str, bytes], frames: list[torch.Tensor],
                   style_rows: torch.Tensor, which: tuple[str, ...] = INT8_PARTS
                   ) -> dict[str, bytes]:
    """``parts`` with those named in ``which`` made int8 (QDQ, per-channel int8 weights,
    uint8 activations), activation ranges calibrated on ``frames`` (each (1, 3, h, w)) in
    each of the ``style_rows`` (K, S). Needs ``onnx`` and ``onnxruntime.quantization``."""
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    size = tuple(frames[0].shape[-2:])
    inet = InferenceNet(net, dtype=torch.float32)
    enc, core = _Part(inet, "enc", size), _Part(inet, "core", size)
    feeds: dict[str, list[dict[str, np.ndarray]]] = {p: [] for p in PARTS}
    with torch.inference_mode():
        for x in frames:
            for k in range(style_rows.shape[0]):
                sw = style_rows[k : k + 1].float()
                a = enc(x, sw)
                b = core(a, sw)
                s = sw.numpy()
                feeds["enc"].append({"x": x.numpy(), "style": s})
                feeds["core"].append({"x": a.numpy(), "style": s})
                feeds["dec"].append({"x": b.numpy(), "style": s})

    class _Reader(CalibrationDataReader):
        def __init__(self, data: list[dict[str, np.ndarray]]) -> None:
            self._it: Iterator[dict[str, np.ndarray]] = iter(data)

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self._it, None)

    out: dict[str, bytes] = dict(parts)
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # the tool's advice to pre-process, once per graph
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for part in which:
                src, dst = Path(tmp) / f"{part}.onnx", Path(tmp) / f"{part}.int8.onnx"
                src.write_bytes(parts[part])
                quantize_static(
                    str(src), str(dst), _Reader(feeds[part]), quant_format=QuantFormat.QDQ,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    per_channel=True, op_types_to_quantize=["Conv"],
                    calibrate_method=CalibrationMethod.MinMax,
                    extra_options={"ActivationSymmetric": False, "WeightSymmetric": True},
                )
                out[part] = onnx.load(str(dst)).SerializeToString()
    finally:
        root.setLevel(level)
    return out


class OrtNetwork:
    """The network in ONNX Runtime's CPU provider (see the module docstring); what
    :class:`vidstyle.fast.runtimes.OrtRuntime` runs.

    ``(x (B,3,H,W), style_weights (B,S), hook) -> (B,3,H,W)`` float32 CPU tensors; the
    hook sees the features at "pre_res" and "post_res" as (1, C, H/4, W/4) float32 CPU
    tensors. ``int8``: the quantized graphs
    (``ort-int8``). ``threads``: ONNX Runtime's intra-op threads (default torch's).
    """

    def __init__(self, *, net: StyleNet, int8: bool = False, threads: int | None = None
                 ) -> None:
        import onnxruntime as ort  # optional dependency: ImportError = not available

        if int8:
            # the quantization tool needs onnx: fail at build time, not at the first frame
            import onnx  # noqa: F401
            import onnxruntime.quantization  # noqa: F401
        self._ort = ort
        self.net = net
        self.int8 = int8
        self.name = "ort-int8" if int8 else "ort"
        self.num_styles = net.num_styles
        self.threads = threads if threads is not None else torch.get_num_threads()
        self._sessions: dict[tuple[int, int], dict[str, Any]] = {}
        self._lock = threading.Lock()

    def _options(self) -> Any:
        opts = self._ort.SessionOptions()
        opts.intra_op_num_threads = self.threads
        opts.inter_op_num_threads = 1
        opts.graph_optimization_level = self._ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.log_severity_level = 3
        # idle threads sleep instead of spinning (as torch's OMP_WAIT_POLICY=PASSIVE): on
        # a shared machine spinning workers take the cores the decode, flow and encode
        # threads need
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        return opts

    def sessions(self, size: tuple[int, int]) -> dict[str, Any]:
        """The three inference sessions of frames of ``size`` (h, w), built on first use."""
        with self._lock:
            if size not in self._sessions:
                parts = export_parts(self.net, size)
                if self.int8:
                    rows = torch.eye(self.num_styles)[: min(self.num_styles, 4)]
                    parts = quantize_parts(self.net, parts, calibration_frames(size), rows)
                self._sessions[size] = {
                    p: self._ort.InferenceSession(parts[p], self._options(),
                                                  providers=["CPUExecutionProvider"])
                    for p in PARTS
                }
                log.debug("%s: sessions for %s built", self.name, size)
            return self._sessions[size]

    def _run_one(self, sess: dict[str, Any], x: np.ndarray, sw: np.ndarray,
                 hook: FeatureHook | None) -> np.ndarray:
        h = sess["enc"].run(None, {"x": x, "style": sw})[0]
        if hook is not None:
            h = hook("pre_res", torch.from_numpy(h)).float().contiguous().numpy()
        h = sess["core"].run(None, {"x": h, "style": sw})[0]
        if hook is not None:
            h = hook("post_res", torch.from_numpy(h)).float().contiguous().numpy()
        return sess["dec"].run(None, {"x": h, "style": sw})[0]

    def __call__(
        self, x: torch.Tensor, style_weights: torch.Tensor, hook: FeatureHook | None = None
    ) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"expected (B, 3, H, W) images, got {tuple(x.shape)}")
        if style_weights.dim() != 2 or style_weights.shape[1] != self.num_styles:
            raise ValueError(f"expected (B, {self.num_styles}) style weights, got "
                             f"{tuple(style_weights.shape)}")
        b = max(x.shape[0], style_weights.shape[0])
        if hook is not None and b != 1:
            raise ValueError("feature hooks take one frame at a time")
        sess = self.sessions((int(x.shape[-2]), int(x.shape[-1])))
        xs = x.detach().float().cpu().contiguous().numpy()
        ws = style_weights.detach().float().cpu().contiguous().numpy()
        outs = [
            self._run_one(sess, xs[k if xs.shape[0] > 1 else 0][None],
                          ws[k if ws.shape[0] > 1 else 0][None], hook)
            for k in range(b)
        ]
        return torch.from_numpy(np.concatenate(outs))
