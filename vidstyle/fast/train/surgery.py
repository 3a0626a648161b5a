"""Network surgery for training: a new style row, training only that row, and starting a
student from a teacher's weights."""

from __future__ import annotations

import torch

from vidstyle.errors import UsageError
from vidstyle.fast import model_io
from vidstyle.fast.net import StyleNet
from vidstyle.fast.stylizer import resolve_model


def load_teacher(spec: str) -> model_io.LoadedModel:
    """A model file or a shipped model name (see ``vidstyle styles``), on the CPU."""
    return resolve_model(spec, "cpu")[0]


def init_from_teacher(student: StyleNet, teacher: StyleNet) -> int:
    """Copy the teacher's weights into ``student`` where they fit; returns how many tensors.

    Same-shape tensors are copied; a conv kernel larger in the teacher (e.g. the 9x9 outer
    convolutions into a 5x5 student) contributes its centre. Everything else keeps the
    student's initialization. Both networks need the same number of styles.
    """
    if student.num_styles != teacher.num_styles:
        raise UsageError("the student and the teacher need the same styles")
    own = student.state_dict()
    copied = 0
    with torch.no_grad():
        for k, v in teacher.state_dict().items():
            if k not in own:
                continue
            dst, src = own[k], v.float()
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
