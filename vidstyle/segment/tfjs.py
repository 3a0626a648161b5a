"""A small interpreter for TF.js graph models (``model.json`` + ``.bin`` weights) in torch.

TF.js graph models are TensorFlow GraphDefs written as JSON (``modelTopology.node``: name,
op, inputs, attributes) whose constants live in binary weight files listed in
``weightsManifest`` (float32, int32 or bool; float32 possibly quantized to uint8 with a
scale and a minimum, or to float16). :class:`TfjsGraph` loads one and evaluates the nodes
a set of outputs needs, op by op, with TensorFlow's semantics (NHWC images, TF's SAME
padding, TF's two bilinear resize conventions, dead branches of ``Switch``/``Merge``).
Only the ops of the person models used here are implemented (:data:`OPS`); an unknown op
is a :class:`~vidstyle.errors.WeightsError` when the graph is loaded, not at the first frame.

Tensors are torch tensors on the CPU; images NHWC float32 as in TensorFlow; convolutions
run in torch's channels-last layout (a permuted view, no copy).
"""

from __future__ import annotations

import base64
import json
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from vidstyle.errors import WeightsError

logger = logging.getLogger(__name__)


class _Dead:
    """The value of a tensor on a branch not taken (TensorFlow's dead tensors)."""

    def __repr__(self) -> str:
        return "DEAD"


DEAD = _Dead()

Value = Any  # torch.Tensor | tuple[torch.Tensor, ...] | _Dead


@dataclass(frozen=True)
class Node:
    """One graph node: its op, data inputs ``(node, output index)``, control inputs, attrs."""

    name: str
    op: str
    inputs: tuple[tuple[str, int], ...]
    controls: tuple[str, ...]
    attr: dict[str, Any] = field(hash=False, compare=False)

    def s(self, key: str, default: str = "") -> str:
        """A string attribute (base64 in the JSON)."""
        v = self.attr.get(key)
        return base64.b64decode(v["s"]).decode() if v and "s" in v else default

    def i(self, key: str, default: int = 0) -> int:
        v = self.attr.get(key)
        return int(v["i"]) if v and "i" in v else default

    def f(self, key: str, default: float = 0.0) -> float:
        v = self.attr.get(key)
        return float(v["f"]) if v and "f" in v else default

    def b(self, key: str, default: bool = False) -> bool:
        v = self.attr.get(key)
        return bool(v["b"]) if v and "b" in v else default

    def ints(self, key: str) -> list[int]:
        v = self.attr.get(key)
        return [int(x) for x in v["list"].get("i", [])] if v and "list" in v else []

    def strs(self, key: str) -> list[str]:
        v = self.attr.get(key)
        return ([base64.b64decode(x).decode() for x in v["list"].get("s", [])]
                if v and "list" in v else [])


def _parse_input(text: str) -> tuple[str, int]:
    name, _, idx = text.partition(":")
    return name, int(idx) if idx else 0


_DTYPES = {"float32": (np.float32, 4), "int32": (np.int32, 4), "bool": (np.bool_, 1)}
_QUANT = {"uint8": (np.uint8, 1), "int8": (np.int8, 1), "uint16": (np.uint16, 2),
          "int16": (np.int16, 2), "float16": (np.float16, 2)}


def load_weights(model_json: dict[str, Any], folder: Path) -> dict[str, torch.Tensor]:
    """The constants of a TF.js model: name -> tensor (dequantized to float32).

    Raises :class:`WeightsError` when a weight file is missing or too short.
    """
    out: dict[str, torch.Tensor] = {}
    for group in model_json["weightsManifest"]:
        try:
            blob = b"".join((folder / p).read_bytes() for p in group["paths"])
        except OSError as e:
            raise WeightsError(f"TF.js weights unreadable in {folder}: {e}") from e
        offset = 0
        for w in group["weights"]:
            shape = [int(d) for d in w["shape"]]
            count = int(np.prod(shape)) if shape else 1
            q = w.get("quantization")
            if w["dtype"] not in _DTYPES:
                raise WeightsError(f"TF.js weight {w['name']}: dtype {w['dtype']} unsupported")
            np_dtype, size = _QUANT[q["dtype"]] if q else _DTYPES[w["dtype"]]
            end = offset + count * size
            if end > len(blob):
                raise WeightsError(f"TF.js weights in {folder} end before {w['name']}")
            arr = np.frombuffer(blob, dtype=np_dtype, count=count, offset=offset)
            offset = end
            if q and q["dtype"] != "float16":
                arr = arr.astype(np.float32) * float(q["scale"]) + float(q["min"])
            arr = arr.astype(_DTYPES[w["dtype"]][0]).reshape(shape)
            out[w["name"]] = torch.from_numpy(arr.copy())
    return out


# --------------------------------------------------------------------------- ops

def _same_pads(size: int, k: int, stride: int, dilation: int = 1) -> tuple[int, int]:
    """TensorFlow's SAME padding (before, after) of one axis (more after when odd)."""
    eff = (k - 1) * dilation + 1
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + eff - size, 0)
    return total // 2, total - total // 2


def _nchw(x: torch.Tensor) -> torch.Tensor:
    return x.permute(0, 3, 1, 2)


def _nhwc(x: torch.Tensor) -> torch.Tensor:
    return x.permute(0, 2, 3, 1)


def _pad_for(node: Node, x: torch.Tensor, k: tuple[int, int], strides: Sequence[int],
             dil: Sequence[int] = (1, 1), value: float = 0.0) -> torch.Tensor:
    """``x`` NCHW padded as the node's ``padding`` attribute says (SAME/VALID/EXPLICIT)."""
    mode = node.s("padding")
    if mode == "VALID":
        return x
    if mode == "SAME":
        top, bottom = _same_pads(x.shape[2], k[0], strides[0], dil[0])
        left, right = _same_pads(x.shape[3], k[1], strides[1], dil[1])
    elif mode == "EXPLICIT":
        p = node.ints("explicit_paddings")  # NHWC pairs
        top, bottom, left, right = p[2], p[3], p[4], p[5]
    else:
        raise WeightsError(f"{node.name}: padding {mode!r} unsupported")
    if top or bottom or left or right:
        x = F.pad(x, (left, right, top, bottom), value=value)
    return x


def _check_nhwc(node: Node) -> None:
    fmt = node.s("data_format", "NHWC")
    if fmt != "NHWC":
        raise WeightsError(f"{node.name}: data_format {fmt} unsupported")


def _hw(node: Node, key: str) -> tuple[int, int]:
    v = node.ints(key) or [1, 1, 1, 1]
    return v[1], v[2]


def conv2d(node: Node, x: torch.Tensor, w: torch.Tensor, *, depthwise: bool) -> torch.Tensor:
    """Conv2D / DepthwiseConv2dNative, NHWC in and out; ``w`` HWIO (depthwise: H, W, C, M)."""
    _check_nhwc(node)
    strides, dil = _hw(node, "strides"), _hw(node, "dilations")
    kh, kw = w.shape[0], w.shape[1]
    xc = _pad_for(node, _nchw(x), (kh, kw), strides, dil)
    if depthwise:
        c, m = w.shape[2], w.shape[3]
        weight = w.permute(2, 3, 0, 1).reshape(c * m, 1, kh, kw)
        groups = c
    else:
        weight = w.permute(3, 2, 0, 1)
        groups = x.shape[3] // w.shape[2]
    y = F.conv2d(xc, weight.contiguous(memory_format=torch.channels_last), stride=strides,
                 dilation=dil, groups=groups)
    return _nhwc(y)


def _fused(node: Node, y: torch.Tensor, args: list[torch.Tensor]) -> torch.Tensor:
    for op in node.strs("fused_ops"):
        if op == "BiasAdd":
            y = y + args.pop(0)
        elif op == "Relu":
            y = F.relu(y)
        elif op == "Relu6":
            y = F.relu6(y)
        elif op == "LeakyRelu":
            y = F.leaky_relu(y, node.f("leakyrelu_alpha", 0.2))
        elif op == "Prelu":
            alpha = args.pop(0)
            y = torch.where(y >= 0, y, y * alpha)
        elif op == "Elu":
            y = F.elu(y)
        else:
            raise WeightsError(f"{node.name}: fused op {op} unsupported")
    return y


def conv2d_transpose(node: Node, out_shape: torch.Tensor, w: torch.Tensor,
                     x: torch.Tensor) -> torch.Tensor:
    """Conv2DBackpropInput: the transposed convolution to ``out_shape`` (NHWC); ``w``
    (H, W, out channels, in channels)."""
    _check_nhwc(node)
    strides = _hw(node, "strides")
    n, oh, ow, oc = (int(v) for v in out_shape.tolist())
    kh, kw = w.shape[0], w.shape[1]
    if node.s("padding") == "SAME":
        pt, _ = _same_pads(oh, kh, strides[0])
        pl, _ = _same_pads(ow, kw, strides[1])
    else:
        pt = pl = 0
    y = F.conv_transpose2d(_nchw(x), w.permute(3, 2, 0, 1).contiguous(), stride=strides)
    return _nhwc(y[:, :, pt:pt + oh, pl:pl + ow])


def pool(node: Node, x: torch.Tensor, *, kind: str) -> torch.Tensor:
    """AvgPool (padding excluded from the mean, as TF) or MaxPool, NHWC."""
    _check_nhwc(node)
    k, strides = _hw(node, "ksize"), _hw(node, "strides")
    xc = _nchw(x)
    if kind == "max":
        return _nhwc(F.max_pool2d(_pad_for(node, xc, k, strides, value=-math.inf), k, strides))
    ones = torch.ones_like(xc[:, :1])
    num = F.avg_pool2d(_pad_for(node, xc, k, strides), k, strides)
    den = F.avg_pool2d(_pad_for(node, ones, k, strides), k, strides)
    return _nhwc(num / den)


def resize_bilinear(node: Node, x: torch.Tensor, size: torch.Tensor) -> torch.Tensor:
    """ResizeBilinear, NHWC, with the node's ``align_corners`` / ``half_pixel_centers``."""
    oh, ow = (int(v) for v in size.tolist())
    xc = _nchw(x.float())
    if node.b("align_corners"):
        return _nhwc(F.interpolate(xc, size=(oh, ow), mode="bilinear", align_corners=True))
    if node.b("half_pixel_centers"):
        return _nhwc(F.interpolate(xc, size=(oh, ow), mode="bilinear", align_corners=False))
    return _nhwc(_legacy_bilinear(xc, oh, ow))


def _legacy_bilinear(x: torch.Tensor, oh: int, ow: int) -> torch.Tensor:
    """TF's legacy bilinear resize (source = destination * in/out, no half-pixel shift)."""
    ih, iw = x.shape[2], x.shape[3]

    def axis(o: int, i: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        src = torch.arange(o, dtype=torch.float32) * (i / o)
        lo = src.floor().long().clamp(max=i - 1)
        hi = (lo + 1).clamp(max=i - 1)
        return lo, hi, src - lo.float()

    y0, y1, fy = axis(oh, ih)
    x0, x1, fx = axis(ow, iw)
    top = x[:, :, y0] * (1 - fy)[:, None] + x[:, :, y1] * fy[:, None]
    return top[..., x0] * (1 - fx) + top[..., x1] * fx


def strided_slice(node: Node, x: torch.Tensor, begin: torch.Tensor, end: torch.Tensor,
                  strides: torch.Tensor) -> torch.Tensor:
    """StridedSlice without ellipsis / new-axis masks (checked)."""
    if node.i("ellipsis_mask") or node.i("new_axis_mask"):
        raise WeightsError(f"{node.name}: StridedSlice ellipsis/new axis masks unsupported")
    bm, em, sm = node.i("begin_mask"), node.i("end_mask"), node.i("shrink_axis_mask")
    index: list[Any] = []
    for d, (b, e, s) in enumerate(zip(begin.tolist(), end.tolist(), strides.tolist(),
                                      strict=True)):
        if sm >> d & 1:
            index.append(int(b))
            continue
        b = None if bm >> d & 1 else int(b)
        e = None if em >> d & 1 else int(e)
        index.append(slice(b, e, int(s)))
    if x.dim() == 0:
        return x
    if any(isinstance(i, slice) and i.step is not None and i.step < 0 for i in index):
        raise WeightsError(f"{node.name}: negative StridedSlice steps unsupported")
    return x[tuple(index)]


def space_to_batch(x: torch.Tensor, block: torch.Tensor, pads: torch.Tensor) -> torch.Tensor:
    """SpaceToBatchND for 2 spatial axes, NHWC."""
    bh, bw = (int(v) for v in block.tolist())
    (pt, pb), (pl, pr) = pads.tolist()
    x = F.pad(x, (0, 0, int(pl), int(pr), int(pt), int(pb)))
    n, h, w, c = x.shape
    x = x.reshape(n, h // bh, bh, w // bw, bw, c).permute(2, 4, 0, 1, 3, 5)
    return x.reshape(bh * bw * n, h // bh, w // bw, c)


def batch_to_space(x: torch.Tensor, block: torch.Tensor, crops: torch.Tensor) -> torch.Tensor:
    """BatchToSpaceND for 2 spatial axes, NHWC."""
    bh, bw = (int(v) for v in block.tolist())
    (ct, cb), (cl, cr) = crops.tolist()
    nb, h, w, c = x.shape
    n = nb // (bh * bw)
    x = x.reshape(bh, bw, n, h, w, c).permute(2, 3, 0, 4, 1, 5).reshape(n, h * bh, w * bw, c)
    return x[:, int(ct):h * bh - int(cb), int(cl):w * bw - int(cr)]


def _axis(a: torch.Tensor, rank: int) -> int:
    v = int(a.reshape(-1)[0])
    return v + rank if v < 0 else v


def _ints(t: torch.Tensor) -> list[int]:
    return [int(v) for v in t.reshape(-1).tolist()]


def _cast(node: Node, x: torch.Tensor) -> torch.Tensor:
    dst = node.attr.get("DstT", {}).get("type", "DT_FLOAT")
    to = {"DT_FLOAT": torch.float32, "DT_INT32": torch.int32, "DT_BOOL": torch.bool,
          "DT_INT64": torch.int64}.get(dst)
    if to is None:
        raise WeightsError(f"{node.name}: Cast to {dst} unsupported")
    if to in (torch.int32, torch.int64) and x.is_floating_point():
        x = x.trunc()
    return x.to(to)


def _mean(node: Node, x: torch.Tensor, axes: torch.Tensor, fn: Callable[..., Any]
          ) -> torch.Tensor:
    dims = [a + x.dim() if a < 0 else a for a in _ints(axes)]
    keep = node.b("keep_dims")
    if not dims:
        return x
    return fn(x, dim=dims, keepdim=keep)


def _split(node: Node, axis: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
    n = node.i("num_split")
    return tuple(torch.chunk(x, n, dim=_axis(axis, x.dim())))


def _splitv(node: Node, x: torch.Tensor, sizes: torch.Tensor, axis: torch.Tensor
            ) -> tuple[torch.Tensor, ...]:
    d = _axis(axis, x.dim())
    s = _ints(sizes)
    if -1 in s:
        s[s.index(-1)] = x.shape[d] - (sum(s) + 1)
    return tuple(torch.split(x, s, dim=d))


def _topk(node: Node, x: torch.Tensor, k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    v, i = torch.topk(x, int(k), dim=-1, sorted=True)
    return v, i.to(torch.int32)


def _gather(node: Node, x: torch.Tensor, idx: torch.Tensor, axis: torch.Tensor) -> torch.Tensor:
    if node.i("batch_dims"):
        raise WeightsError(f"{node.name}: GatherV2 batch_dims unsupported")
    d = _axis(axis, x.dim())
    flat = torch.index_select(x, d, idx.reshape(-1).long())
    return flat.reshape(*x.shape[:d], *idx.shape, *x.shape[d + 1:])


def _sparse_to_dense(node: Node, idx: torch.Tensor, shape: torch.Tensor, values: torch.Tensor,
                     default: torch.Tensor) -> torch.Tensor:
    shp = _ints(shape)
    out = torch.full(shp, default.item(), dtype=values.dtype)
    idx = idx.long().reshape(-1, len(shp)) if len(shp) > 1 else idx.long().reshape(-1, 1)
    vals = values.expand(idx.shape[0]) if values.dim() == 0 else values
    out[tuple(idx.T)] = vals
    return out


def _matmul(node: Node, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    if node.b("transpose_a"):
        a = a.transpose(-1, -2)
    if node.b("transpose_b"):
        b = b.transpose(-1, -2)
    return a @ b


def _fused_matmul(node: Node, a: torch.Tensor, b: torch.Tensor, *args: torch.Tensor
                  ) -> torch.Tensor:
    return _fused(node, _matmul(node, a, b), list(args))


def _pad(node: Node, x: torch.Tensor, pads: torch.Tensor, value: torch.Tensor | None = None
         ) -> torch.Tensor:
    p = pads.tolist()
    flat: list[int] = []
    for before, after in reversed(p):
        flat += [int(before), int(after)]
    return F.pad(x, flat, value=float(value) if value is not None else 0.0)


def _binary(fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
            ) -> Callable[..., torch.Tensor]:
    def op(_node: Node, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return fn(a, b)
    return op


def _unary(fn: Callable[[torch.Tensor], torch.Tensor]) -> Callable[..., torch.Tensor]:
    def op(_node: Node, a: torch.Tensor) -> torch.Tensor:
        return fn(a)
    return op


def _floor_div(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.div(a, b, rounding_mode="floor")


def _real_div(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return a / b


def _squeeze(node: Node, x: torch.Tensor) -> torch.Tensor:
    dims = node.ints("squeeze_dims")
    if not dims:
        return x.squeeze()
    for d in sorted((d + x.dim() if d < 0 else d for d in dims), reverse=True):
        x = x.squeeze(d)
    return x


OPS: dict[str, Callable[..., Value]] = {
    "Identity": lambda n, x: x,
    "Add": _binary(torch.add), "AddV2": _binary(torch.add), "Sub": _binary(torch.sub),
    "Mul": _binary(torch.mul), "RealDiv": _binary(_real_div), "Div": _binary(_real_div),
    "Minimum": _binary(torch.minimum), "Maximum": _binary(torch.maximum),
    "FloorMod": _binary(torch.remainder), "FloorDiv": _binary(_floor_div),
    "Equal": _binary(torch.eq), "Less": _binary(torch.lt), "Greater": _binary(torch.gt),
    "GreaterEqual": _binary(torch.ge), "LogicalAnd": _binary(torch.logical_and),
    "SquaredDifference": _binary(lambda a, b: (a - b) ** 2),
    "BiasAdd": _binary(torch.add),
    "Square": _unary(torch.square), "Sigmoid": _unary(torch.sigmoid),
    "Tanh": _unary(torch.tanh), "Relu": _unary(F.relu), "Relu6": _unary(F.relu6),
    "Exp": _unary(torch.exp), "Abs": _unary(torch.abs), "Rsqrt": _unary(torch.rsqrt),
    "Sqrt": _unary(torch.sqrt), "Reciprocal": _unary(torch.reciprocal),
    "Neg": _unary(torch.neg),
    "LeakyRelu": lambda n, x: F.leaky_relu(x, n.f("alpha", 0.2)),
    "AddN": lambda n, *xs: sum(xs[1:], xs[0]),
    "Cast": _cast,
    "Squeeze": _squeeze,
    "ExpandDims": lambda n, x, a: x.unsqueeze(_axis(a, x.dim() + 1)),
    "Shape": lambda n, x: torch.tensor(list(x.shape), dtype=torch.int32),
    "Size": lambda n, x: torch.tensor(x.numel(), dtype=torch.int32),
    "Reshape": lambda n, x, s: x.reshape(_ints(s)),
    "Transpose": lambda n, x, p: x.permute(_ints(p)),
    "Pack": lambda n, *xs: torch.stack(xs, dim=n.i("axis") % (xs[0].dim() + 1)),
    "Unpack": lambda n, x: tuple(torch.unbind(x, dim=n.i("axis") % x.dim())),
    "ConcatV2": lambda n, *xs: torch.cat(xs[:-1], dim=_axis(xs[-1], xs[0].dim())),
    "Split": _split, "SplitV": _splitv,
    "Slice": lambda n, x, b, s: x[tuple(
        slice(bb, None if ss == -1 else bb + ss) for bb, ss in zip(_ints(b), _ints(s),
                                                                     strict=True))],
    "StridedSlice": strided_slice,
    "BroadcastTo": lambda n, x, s: x.expand(_ints(s)),
    "Tile": lambda n, x, m: x.repeat(_ints(m)),
    "Fill": lambda n, s, v: torch.full(_ints(s), v.item(), dtype=v.dtype),
    "Range": lambda n, a, b, d: torch.arange(a.item(), b.item(), d.item(), dtype=a.dtype),
    "Select": lambda n, c, a, b: torch.where(c, a, b),
    "SelectV2": lambda n, c, a, b: torch.where(c, a, b),
    "Mean": lambda n, x, a: _mean(n, x, a, torch.mean),
    "Sum": lambda n, x, a: _mean(n, x, a, torch.sum),
    "Max": lambda n, x, a: _mean(n, x, a, torch.amax),
    "ArgMax": lambda n, x, a: torch.argmax(x, dim=_axis(a, x.dim())).to(torch.int32),
    "Pad": _pad, "PadV2": _pad, "MirrorPad": None,  # filled below
    "Conv2D": lambda n, x, w: conv2d(n, x, w, depthwise=False),
    "DepthwiseConv2dNative": lambda n, x, w: conv2d(n, x, w, depthwise=True),
    "_FusedConv2D": lambda n, x, w, *a: _fused(n, conv2d(n, x, w, depthwise=False), list(a)),
    "FusedDepthwiseConv2dNative":
        lambda n, x, w, *a: _fused(n, conv2d(n, x, w, depthwise=True), list(a)),
    "Conv2DBackpropInput": conv2d_transpose,
    "MatMul": _matmul, "_FusedMatMul": _fused_matmul,
    "AvgPool": lambda n, x: pool(n, x, kind="avg"),
    "MaxPool": lambda n, x: pool(n, x, kind="max"),
    "ResizeBilinear": resize_bilinear,
    "SpaceToBatchND": lambda n, x, b, p: space_to_batch(x, b, p),
    "BatchToSpaceND": lambda n, x, b, c: batch_to_space(x, b, c),
    "TopKV2": _topk,
    "GatherV2": _gather,
    "SparseToDense": _sparse_to_dense,
}
del OPS["MirrorPad"]
#: Ops handled by the evaluator itself (no function).
SPECIAL = {"Const", "Placeholder", "NoOp", "Switch", "Merge"}


class TfjsGraph:
    """A TF.js graph model, evaluated with torch (see the module doc).

    ``TfjsGraph(path)``: ``path`` is the ``model.json`` (weights next to it). ``run(feeds,
    outputs)``: ``feeds`` maps placeholder names to tensors, ``outputs`` names tensors
    (``"node"`` or ``"node:k"``); returns them in order. Only the nodes the outputs need
    are evaluated; a tensor is freed once its last consumer ran.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        try:
            spec = json.loads(self.path.read_text())
        except (OSError, ValueError) as e:
            raise WeightsError(f"unreadable TF.js model {path}: {e}") from e
        self.signature: dict[str, Any] = spec.get("signature", {})
        self.nodes: dict[str, Node] = {}
        for raw in spec["modelTopology"]["node"]:
            ins = [i for i in raw.get("input", [])]
            self.nodes[raw["name"]] = Node(
                name=raw["name"], op=raw["op"],
                inputs=tuple(_parse_input(i) for i in ins if not i.startswith("^")),
                controls=tuple(i[1:] for i in ins if i.startswith("^")),
                attr=raw.get("attr", {}),
            )
        unknown = sorted({n.op for n in self.nodes.values()} - set(OPS) - SPECIAL)
        if unknown:
            raise WeightsError(f"{path.name}: TF.js ops not implemented: {', '.join(unknown)}")
        self.consts = load_weights(spec, self.path.parent)
        missing = [n.name for n in self.nodes.values()
                   if n.op == "Const" and n.name not in self.consts]
        if missing:
            raise WeightsError(f"{path.name}: constants without weights: {missing[:3]}")
        self._plans: dict[tuple[str, ...], tuple[list[str], dict[str, int]]] = {}

    def _plan(self, outputs: tuple[str, ...]) -> tuple[list[str], dict[str, int]]:
        """Topological order of the nodes ``outputs`` need, and each node's consumer count."""
        if outputs in self._plans:
            return self._plans[outputs]
        order: list[str] = []
        state: dict[str, int] = {}
        for out in outputs:
            stack = [(_parse_input(out)[0], False)]
            while stack:
                name, done = stack.pop()
                if done:
                    state[name] = 2
                    order.append(name)
                    continue
                if state.get(name):
                    continue
                if name not in self.nodes:
                    raise WeightsError(f"{self.path.name}: no node {name!r}")
                state[name] = 1
                stack.append((name, True))
                node = self.nodes[name]
                for dep in [i for i, _ in node.inputs] + list(node.controls):
                    if not state.get(dep):
                        stack.append((dep, False))
        uses: dict[str, int] = {}
        for name in order:
            node = self.nodes[name]
            for dep in {i for i, _ in node.inputs} | set(node.controls):
                uses[dep] = uses.get(dep, 0) + 1
        for out in outputs:
            uses[_parse_input(out)[0]] = uses.get(_parse_input(out)[0], 0) + 1
        self._plans[outputs] = (order, uses)
        return order, uses

    @torch.inference_mode()
    def run(self, feeds: dict[str, torch.Tensor], outputs: Sequence[str]) -> list[torch.Tensor]:
        """Evaluate ``outputs`` given ``feeds`` (see the class doc)."""
        order, uses = self._plan(tuple(outputs))
        left = dict(uses)
        values: dict[str, Value] = {}

        def get(name: str, idx: int) -> Value:
            v = values[name]
            if isinstance(v, tuple):
                return v[idx]
            return v

        for name in order:
            node = self.nodes[name]
            ins = [get(i, k) for i, k in node.inputs]
            dead = any(v is DEAD for v in ins) or any(values[c] is DEAD for c in node.controls)
            if node.op == "Merge":
                live = [v for v in ins if v is not DEAD]
                values[name] = (live[0], torch.tensor(ins.index(live[0]), dtype=torch.int32)
                                ) if live else DEAD
            elif dead:
                values[name] = DEAD
            elif node.op == "Const":
                values[name] = self.consts[name]
            elif node.op == "Placeholder":
                if name not in feeds:
                    raise WeightsError(f"{self.path.name}: input {name!r} not fed")
                values[name] = feeds[name]
            elif node.op == "NoOp":
                values[name] = torch.zeros(())
            elif node.op == "Switch":
                data, pred = ins
                values[name] = (DEAD, data) if bool(pred) else (data, DEAD)
            else:
                values[name] = OPS[node.op](node, *ins)
            for dep in {i for i, _ in node.inputs} | set(node.controls):
                left[dep] -= 1
                if left[dep] == 0:
                    del values[dep]
        result = []
        for out in outputs:
            v = get(*_parse_input(out))
            if v is DEAD:
                raise WeightsError(f"{self.path.name}: output {out} is on a branch not taken")
            result.append(v)
        return result


__all__ = ["DEAD", "OPS", "Node", "TfjsGraph", "load_weights"]
