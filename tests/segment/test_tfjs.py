"""The TF.js graph interpreter: each op against an independent reference (loops, known
values, torch where TF and torch agree), weight decoding, control flow."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from vidstyle.errors import WeightsError
from vidstyle.segment.tfjs import TfjsGraph, batch_to_space, space_to_batch


def _s(text: str) -> dict[str, str]:
    return {"s": base64.b64encode(text.encode()).decode()}


def _ints(*v: int) -> dict[str, Any]:
    return {"list": {"i": [str(x) for x in v]}}


class GraphWriter:
    """Builds a model.json + weights.bin in a folder (constants float32 or int32)."""

    def __init__(self) -> None:
        self.nodes: list[dict[str, Any]] = []
        self.weights: list[dict[str, Any]] = []
        self.blob = b""

    def const(self, name: str, value: np.ndarray, quant: str | None = None) -> str:
        value = np.asarray(value)
        entry: dict[str, Any] = {"name": name, "shape": list(value.shape),
                                 "dtype": "int32" if value.dtype.kind == "i" else "float32"}
        if quant == "uint8":
            lo, hi = float(value.min()), float(value.max())
            scale = (hi - lo) / 255 or 1.0
            q = np.round((value - lo) / scale).astype(np.uint8)
            entry["quantization"] = {"dtype": "uint8", "min": lo, "scale": scale}
            self.blob += q.tobytes()
        elif quant == "float16":
            entry["quantization"] = {"dtype": "float16"}
            self.blob += value.astype(np.float16).tobytes()
        else:
            self.blob += value.astype(np.int32 if entry["dtype"] == "int32"
                                      else np.float32).tobytes()
        self.weights.append(entry)
        self.nodes.append({"name": name, "op": "Const"})
        return name

    def node(self, name: str, op: str, inputs: list[str], **attr: Any) -> str:
        self.nodes.append({"name": name, "op": op, "input": inputs, "attr": attr})
        return name

    def placeholder(self, name: str) -> str:
        return self.node(name, "Placeholder", [])

    def write(self, folder: Path) -> Path:
        (folder / "w.bin").write_bytes(self.blob)
        spec = {"format": "graph-model", "modelTopology": {"node": self.nodes},
                "weightsManifest": [{"paths": ["w.bin"], "weights": self.weights}]}
        path = folder / "model.json"
        path.write_text(json.dumps(spec))
        return path


def _tf_conv_reference(x: np.ndarray, w: np.ndarray, stride: int, same: bool) -> np.ndarray:
    """TensorFlow's NHWC Conv2D by loops: SAME pads total = max((out-1)*s + k - in, 0),
    the smaller half before."""
    n, h, wd, c = x.shape
    kh, kw, _, o = w.shape
    if same:
        oh, ow = -(-h // stride), -(-wd // stride)
        ph = max((oh - 1) * stride + kh - h, 0)
        pw = max((ow - 1) * stride + kw - wd, 0)
        x = np.pad(x, ((0, 0), (ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2), (0, 0)))
    else:
        oh, ow = (h - kh) // stride + 1, (wd - kw) // stride + 1
    out = np.zeros((n, oh, ow, o), np.float64)
    for i in range(oh):
        for j in range(ow):
            patch = x[:, i * stride:i * stride + kh, j * stride:j * stride + kw, :]
            out[:, i, j, :] = np.tensordot(patch, w, axes=([1, 2, 3], [0, 1, 2]))
    return out


@pytest.mark.parametrize(("stride", "padding", "size"), [(2, "SAME", 7), (2, "SAME", 8),
                                                          (1, "SAME", 5), (2, "VALID", 7)])
def test_fused_conv_matches_tensorflow_padding(tmp_path: Path, stride: int, padding: str,
                                               size: int) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(1, size, size + 1, 3)).astype(np.float32)
    w = rng.normal(size=(3, 3, 3, 4)).astype(np.float32)
    b = rng.normal(size=(4,)).astype(np.float32)
    g = GraphWriter()
    g.placeholder("x")
    g.const("w", w)
    g.const("b", b)
    g.node("y", "_FusedConv2D", ["x", "w", "b"], padding=_s(padding),
           strides=_ints(1, stride, stride, 1), data_format=_s("NHWC"),
           fused_ops={"list": {"s": [_s("BiasAdd")["s"], _s("Relu6")["s"]]}})
    got, = TfjsGraph(g.write(tmp_path)).run({"x": torch.from_numpy(x)}, ["y"])
    want = np.clip(_tf_conv_reference(x, w, stride, padding == "SAME") + b, 0, 6)
    assert got.shape == want.shape
    np.testing.assert_allclose(got.numpy(), want, atol=1e-4)


def test_depthwise_conv_with_channel_multiplier(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(1, 6, 6, 3)).astype(np.float32)
    w = rng.normal(size=(3, 3, 3, 2)).astype(np.float32)  # H, W, C, multiplier
    g = GraphWriter()
    g.placeholder("x")
    g.const("w", w)
    g.node("y", "DepthwiseConv2dNative", ["x", "w"], padding=_s("SAME"),
           strides=_ints(1, 1, 1, 1), data_format=_s("NHWC"))
    got, = TfjsGraph(g.write(tmp_path)).run({"x": torch.from_numpy(x)}, ["y"])
    # TF's output channel c * multiplier + m is input channel c convolved with w[..., c, m]
    want = np.concatenate([
        _tf_conv_reference(x[..., c:c + 1], w[:, :, c:c + 1, m:m + 1], 1, True)
        for c in range(3) for m in range(2)], axis=-1)
    np.testing.assert_allclose(got.numpy(), want, atol=1e-4)


def test_resize_bilinear_legacy_and_half_pixel(tmp_path: Path) -> None:
    g = GraphWriter()
    g.placeholder("x")
    g.const("size", np.array([1, 4], np.int32))
    g.node("legacy", "ResizeBilinear", ["x", "size"], align_corners={"b": False},
           half_pixel_centers={"b": False})
    g.node("half", "ResizeBilinear", ["x", "size"], align_corners={"b": False},
           half_pixel_centers={"b": True})
    x = torch.tensor([0.0, 1.0]).reshape(1, 1, 2, 1)
    legacy, half = TfjsGraph(g.write(tmp_path)).run({"x": x}, ["legacy", "half"])
    # legacy: source = destination * in/out = 0, 0.5, 1, 1.5 (clamped to the last pixel)
    assert legacy.flatten().tolist() == [0.0, 0.5, 1.0, 1.0]
    # half-pixel centres: source = (d + 0.5) * 0.5 - 0.5 = -0.25, 0.25, 0.75, 1.25 clamped
    assert half.flatten().tolist() == [0.0, 0.25, 0.75, 1.0]


def test_avg_pool_same_leaves_padding_out_of_the_mean(tmp_path: Path) -> None:
    g = GraphWriter()
    g.placeholder("x")
    g.node("avg", "AvgPool", ["x"], padding=_s("SAME"), ksize=_ints(1, 2, 2, 1),
           strides=_ints(1, 2, 2, 1), data_format=_s("NHWC"))
    g.node("max", "MaxPool", ["x"], padding=_s("SAME"), ksize=_ints(1, 2, 2, 1),
           strides=_ints(1, 2, 2, 1), data_format=_s("NHWC"))
    x = -torch.ones(1, 3, 3, 1)
    avg, mx = TfjsGraph(g.write(tmp_path)).run({"x": x}, ["avg", "max"])
    assert avg.shape == (1, 2, 2, 1) and torch.equal(avg, -torch.ones(1, 2, 2, 1))
    assert torch.equal(mx, -torch.ones(1, 2, 2, 1))  # padding is -inf, never the max


def test_space_to_batch_conv_batch_to_space_is_a_dilated_conv() -> None:
    rng = np.random.default_rng(2)
    x = torch.from_numpy(rng.normal(size=(1, 8, 8, 2)).astype(np.float32))
    w = torch.from_numpy(rng.normal(size=(3, 2, 3, 3)).astype(np.float32))  # O, I, H, W
    block = torch.tensor([2, 2])
    pads = torch.tensor([[2, 2], [2, 2]])
    s2b = space_to_batch(x, block, pads).permute(0, 3, 1, 2)
    y = F.conv2d(s2b, w).permute(0, 2, 3, 1)
    got = batch_to_space(y, block, torch.tensor([[0, 0], [0, 0]]))
    want = F.conv2d(x.permute(0, 3, 1, 2), w, padding=2, dilation=2).permute(0, 2, 3, 1)
    torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)


def test_strided_slice_masks_and_shape_ops(tmp_path: Path) -> None:
    g = GraphWriter()
    g.placeholder("x")
    g.node("shape", "Shape", ["x"])
    for name, v in (("b", [1]), ("e", [2]), ("s", [1])):
        g.const(name, np.array(v, np.int32))
    g.node("h", "StridedSlice", ["shape", "b", "e", "s"], shrink_axis_mask={"i": "1"})
    g.const("b2", np.array([0, 1], np.int32))
    g.const("e2", np.array([0, 3], np.int32))
    g.const("s2", np.array([1, 1], np.int32))
    g.node("rows", "StridedSlice", ["x", "b2", "e2", "s2"], begin_mask={"i": "1"},
           end_mask={"i": "1"})
    x = torch.arange(20.0).reshape(4, 5)
    h, rows = TfjsGraph(g.write(tmp_path)).run({"x": x}, ["h", "rows"])
    assert int(h) == 5 and h.dim() == 0
    assert torch.equal(rows, x[:, 1:3])


def test_quantized_weights_are_decoded(tmp_path: Path) -> None:
    g = GraphWriter()
    g.placeholder("x")
    u8 = np.linspace(-2.0, 3.0, 256, dtype=np.float32)
    f16 = np.array([0.1, -7.25, 1000.5], np.float32)
    g.const("u8", u8, quant="uint8")
    g.const("f16", f16, quant="float16")
    graph = TfjsGraph(g.write(tmp_path))
    np.testing.assert_allclose(graph.consts["u8"].numpy(), u8, atol=1e-5)
    np.testing.assert_allclose(graph.consts["f16"].numpy(), f16.astype(np.float16))
    assert graph.consts["u8"].dtype == torch.float32


def test_switch_merge_runs_only_the_branch_taken(tmp_path: Path) -> None:
    g = GraphWriter()
    g.placeholder("x")
    g.placeholder("pred")
    g.node("sw", "Switch", ["x", "pred"])
    g.const("two", np.array(2.0, np.float32))
    g.node("doubled", "Mul", ["sw:1", "two"])  # true branch
    g.const("bad_shape", np.array([7, 7], np.int32))
    g.node("broken", "Reshape", ["sw", "bad_shape"])  # false branch: fails if it ran
    g.node("out", "Merge", ["broken", "doubled"])
    graph = TfjsGraph(g.write(tmp_path))
    x = torch.arange(6.0)
    got, = graph.run({"x": x, "pred": torch.tensor(True)}, ["out"])
    assert torch.equal(got, 2 * x)
    with pytest.raises(RuntimeError):  # the other branch does run when taken
        graph.run({"x": x, "pred": torch.tensor(False)}, ["out"])


def test_unknown_op_and_missing_weights_fail_at_load(tmp_path: Path) -> None:
    g = GraphWriter()
    g.placeholder("x")
    g.node("y", "FancyOp", ["x"])
    with pytest.raises(WeightsError, match="FancyOp"):
        TfjsGraph(g.write(tmp_path))
    g = GraphWriter()
    g.const("w", np.ones(4, np.float32))
    path = g.write(tmp_path)
    (tmp_path / "w.bin").write_bytes(b"\0" * 8)
    with pytest.raises(WeightsError, match="end before"):
        TfjsGraph(path)
