"""Network surgery for training: a new style row, training only that row, and starting a
student from a teacher's weights."""

from __future__ import annotations

import functools

import torch

from vidstyle.errors import UsageError
from vidstyle.fast import model_io
from vidstyle.fast.net import StyleNet
from vidstyle.fast.stylizer import resolve_model


def load_teacher(spec: str) -> model_io.LoadedModel:
    """A model file or a shipped model name (see ``vidstyle styles``), on the CPU."""
    return resolve_model(spec, "cpu")[0]


def depth_input_kernel(w: torch.Tensor, f: int, k: int) -> torch.Tensor:
    """A stride-1 conv kernel (C, 3, K, K) on the image -> the (C, 3 f^2, k, k) kernel on
    ``pixel_unshuffle(image, f)`` that gives the same output at the pixels (f Y, f X),
    i.e. the original conv subsampled by f (exact where all taps fit: k >= 2 ceil(K/2f)
    + 1; taps that do not fit are dropped). Unshuffled channel c f^2 + i f + j holds
    image pixel (f Y + i, f X + j)."""
    cout, cin, kk, _ = w.shape
    out = torch.zeros(cout, cin, f, f, k, k, dtype=w.dtype, device=w.device)
    for dy in range(-(kk // 2), kk // 2 + 1):
        u, i = divmod(dy, f)
        for dx in range(-(kk // 2), kk // 2 + 1):
            v, j = divmod(dx, f)
            if abs(u) <= k // 2 and abs(v) <= k // 2:
                out[:, :, i, j, u + k // 2, v + k // 2] = w[:, :, dy + kk // 2, dx + kk // 2]
    return out.reshape(cout, cin * f * f, k, k)


def depth_output_kernel(w: torch.Tensor, f: int, k: int) -> torch.Tensor:
    """A stride-1 conv kernel (3, C, K, K) applied to a nearest-x f upsampled input -> the
    (3 f^2, C, k, k) kernel on the low-resolution input whose output channel c f^2 + a f
    + b is output phase (a, b) (for ``pixel_shuffle(., f)``): the same sums, exact where
    all taps fit (k >= 2 ceil(K/2f) + 1). Phase a, tap dy reads low-resolution row
    offset floor((a + dy) / f)."""
    cout, cin, kk, _ = w.shape
    out = torch.zeros(cout, f, f, cin, k, k, dtype=w.dtype, device=w.device)
    for a in range(f):
        for dy in range(-(kk // 2), kk // 2 + 1):
            u = (a + dy) // f
            for b in range(f):
                for dx in range(-(kk // 2), kk // 2 + 1):
                    v = (b + dx) // f
                    if abs(u) <= k // 2 and abs(v) <= k // 2:
                        out[:, a, b, :, u + k // 2, v + k // 2] += w[:, :, dy + kk // 2,
                                                                    dx + kk // 2]
    return out.reshape(cout * f * f, cin, k, k)


@functools.lru_cache(maxsize=8)
def _tie_projector(f: int, k: int) -> torch.Tensor:
    """(f^2 k^2, f^2 k^2) float32 CPU orthogonal projector onto the per-(out, in)-channel
    sub-pixel kernels that :func:`depth_output_kernel` makes from a full-resolution kernel
    of radius f (k // 2) (the largest that fits). Made once per (f, k): building it takes
    ~0.4 s, and training ties the phases after every step."""
    big = 2 * f * (k // 2) + 1
    basis = torch.eye(big * big, dtype=torch.float64).reshape(big * big, 1, 1, big, big)
    cols = [depth_output_kernel(b, f, k).reshape(-1) for b in basis]  # each (f^2 k^2,)
    lin = torch.stack(cols, dim=1)  # (f^2 k^2, big^2)
    return (lin @ torch.linalg.pinv(lin)).to(torch.float32)


@torch.no_grad()
def tie_output_phases_(net: StyleNet) -> None:
    """Make the output layer of a space-to-depth network a nearest upsampling followed by
    one full-resolution conv (a "resize-convolution"): its sub-pixel kernel projected
    onto the kernels :func:`depth_output_kernel` can make, and its bias and normalization
    rows averaged over the f^2 output phases. Untied, the phases drift apart in training
    and paint a 2-pixel hatching over flat regions (the checkerboard of sub-pixel
    outputs); tied, a flat input gives the same value in every phase. In place; a plain
    network (space_to_depth 1) is left as it is."""
    f = net.space_to_depth
    if f == 1:
        return
    conv, norm = net.conv_out.conv, net.conv_out.norm
    w = conv.weight  # (3 f^2, c0, k, k), output channel c f^2 + phase
    cout, cin, k, _ = w.shape
    rgb = cout // (f * f)
    proj = _tie_projector(f, k).to(w.device)
    blocks = w.reshape(rgb, f * f, cin, k, k).permute(0, 2, 1, 3, 4).reshape(rgb * cin, -1)
    tied = (blocks @ proj.T).reshape(rgb, cin, f * f, k, k).permute(0, 2, 1, 3, 4)
    w.copy_(tied.reshape(cout, cin, k, k))
    for t in (conv.bias, norm.gamma, norm.beta):
        if t is not None:
            v = t.reshape(*t.shape[:-1], rgb, f * f)
            t.copy_(v.mean(-1, keepdim=True).expand_as(v).reshape(t.shape))


def _space_to_depth_init(student: StyleNet, teacher: StyleNet) -> dict[str, torch.Tensor]:
    """The outer layers of a space-to-depth ``student`` from a plain ``teacher``: the
    input conv is the teacher's subsampled (:func:`depth_input_kernel`), the output conv
    the teacher's applied after a nearest upsampling (:func:`depth_output_kernel`), its
    normalization's rows repeated per phase. So the student starts as the teacher with
    its first layer's output subsampled and its last layer's input upsampled."""
    f, k = student.space_to_depth, student.outer_kernel
    t = teacher.state_dict()
    out = {
        "conv_in.conv.weight": depth_input_kernel(t["conv_in.conv.weight"].float(), f, k),
        "conv_out.conv.weight": depth_output_kernel(t["conv_out.conv.weight"].float(), f, k),
    }
    for name in ("conv_out.conv.bias", "conv_out.norm.gamma", "conv_out.norm.beta"):
        out[name] = t[name].float().repeat_interleave(f * f, dim=-1)
    return out


def init_from_teacher(student: StyleNet, teacher: StyleNet) -> int:
    """Copy the teacher's weights into ``student`` where they fit; returns how many tensors.

    Same-shape tensors are copied; a conv kernel larger in the teacher (e.g. the 9x9 outer
    convolutions into a 5x5 student) contributes its centre. A space-to-depth student of
    a plain teacher gets the outer layers re-arranged (:func:`_space_to_depth_init`).
    Everything else keeps the student's initialization. Both networks need the same
    number of styles.
    """
    if student.num_styles != teacher.num_styles:
        raise UsageError("the student and the teacher need the same styles")
    own = student.state_dict()
    copied = 0
    special: dict[str, torch.Tensor] = {}
    if student.space_to_depth != teacher.space_to_depth:
        if teacher.space_to_depth != 1:
            raise UsageError("a space-to-depth student needs a teacher without one")
        special = _space_to_depth_init(student, teacher)
    with torch.no_grad():
        for k, v in teacher.state_dict().items():
            if k not in own:
                continue
            dst, src = own[k], special.get(k, v.float())
            if dst.shape == src.shape:
                dst.copy_(src)
            elif (dst.dim() == 4 and dst.shape[:2] == src.shape[:2]
                  and src.shape[2] > dst.shape[2] and src.shape[3] > dst.shape[3]):
                oy = (src.shape[2] - dst.shape[2]) // 2
                ox = (src.shape[3] - dst.shape[3]) // 2
                dst.copy_(src[:, :, oy : oy + dst.shape[2], ox : ox + dst.shape[3]])
            else:
                continue
            copied += 1
    return copied


def extend_styles(net: StyleNet, extra: int) -> StyleNet:
    """Copy of ``net`` (fp32) with ``extra`` new style rows, each the mean of the existing
    rows of every conditional instance norm's (gamma, beta)."""
    new = StyleNet(
        num_styles=net.num_styles + extra,
        channels=net.channels,
        num_res_blocks=net.num_res_blocks,
        outer_kernel=net.outer_kernel,
        space_to_depth=net.space_to_depth,
    )
    state = {}
    for k, v in net.state_dict().items():
        if k.endswith((".gamma", ".beta")):
            v = torch.cat([v, v.mean(0, keepdim=True).expand(extra, -1)])
        state[k] = v.float()
    new.load_state_dict(state)
    return new


def train_only_last_style(net: StyleNet) -> list[torch.nn.Parameter]:
    """Freeze everything of ``net`` but the last style's (gamma, beta) rows; returns the
    parameters left trainable (the gamma/beta tables, whose gradients are masked to the
    last row). Call after moving ``net`` to its device."""
    for name, p in net.named_parameters():
        p.requires_grad_(name.endswith((".gamma", ".beta")))
    params = [p for p in net.parameters() if p.requires_grad]
    mask = torch.zeros(net.num_styles, 1, device=params[0].device)
    mask[-1] = 1.0
    for p in params:
        p.register_hook(lambda g, m=mask: g * m)
    return params
