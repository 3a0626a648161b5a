"""The training objective (Johnson et al. / Dumoulin et al.), written once.

For content images x, outputs y (B, 3, H, W) in [0, 1] and style ids s (B,):

    content = sum_l mean((phi_l(y) - phi_l(x))^2)                    (content layers)
    style   = sum_l w_l * mean((G(phi_l(y)) - G_l[s])^2)             (style layers)
    tv      = tv(y)

with Grams G normalized by C*H*W (:func:`vidstyle.losses.gram`), the mean taken over the
batch and the C*C entries, and Gram targets G_l[s] computed once per style image. With
``temporal_weight`` > 0 a temporal stability term joins them (:func:`temporal_term`):
for a random motion M of each crop (:func:`synthetic_motion`),

    temporal = mean over valid pixels of (net(M x) - M net(x))^2
:func:`perceptual_terms` computes these from the loss network's features
(:func:`loss_features`); a training step (:func:`training_terms`) weights
them (``content_weight``, ``style_lambda``, ``tv_weight``, plus the distillation term) and
the held-out evaluation (:func:`evaluate`) reports them unweighted.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Protocol

import torch
import torch.nn.functional as F

from vidstyle.fast.adjustable import AdjustableStyleNet
from vidstyle.fast.net import StyleNet
from vidstyle.losses import gram, tv_loss

from .config import TrainConfig
from .data import style_image


class LossNet(Protocol):
    """What training needs of a loss network (e.g. :class:`vidstyle.vgg.VGGFeatures`)."""

    def __call__(
        self, x: torch.Tensor, layers: Sequence[str]
    ) -> dict[str, torch.Tensor]: ...  # pragma: no cover


def style_layer_weights(config: TrainConfig) -> dict[str, float]:
    """Style layer -> w_l: ``style_layer_weights``, default 1/len(style_layers) each."""
    n = len(config.style_layers)
    return dict(zip(config.style_layers, config.style_layer_weights or (1.0 / n,) * n,
                    strict=True))


def style_targets(
    loss_net: LossNet,
    paths: Sequence[Path],
    config: TrainConfig,
    device: torch.device,
) -> dict[str, torch.Tensor]:
    """Gram targets: layer -> (S, C, C) float32, one row per style image (long side
    ``style_size``)."""
    per_layer: dict[str, list[torch.Tensor]] = {k: [] for k in config.style_layers}
    with torch.no_grad():
        for p in paths:
            x = style_image(p, config.style_size).to(device)
            feats = loss_net(x, list(config.style_layers))
            for k in config.style_layers:
                per_layer[k].append(gram(feats[k].float())[0])
    return {k: torch.stack(v) for k, v in per_layer.items()}


def loss_features(
    loss_net: LossNet,
    x: torch.Tensor,
    y: torch.Tensor,
    config: TrainConfig,
    *,
    bf16: bool = False,
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """(phi(y) at the style and content layers, phi(x) at the content layers, no grad) for
    outputs y and inputs x (both (B, 3, H, W)); under bf16 autocast when ``bf16``."""
    layers = list(dict.fromkeys([*config.style_layers, *config.content_layers]))
    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=bf16):
        fy = loss_net(y, layers)
        with torch.no_grad():
            fx = loss_net(x, list(config.content_layers))
    return fy, fx


def perceptual_terms(
    fy: Mapping[str, torch.Tensor],
    fx: Mapping[str, torch.Tensor],
    y: torch.Tensor,
    style_ids: torch.Tensor,
    targets: Mapping[str, torch.Tensor],
    config: TrainConfig,
    layer_w: Mapping[str, float],
) -> dict[str, torch.Tensor]:
    """Unweighted ``content``, ``style`` (layer weights w_l applied) and ``tv`` of outputs
    y (B, 3, H, W) with features ``fy``/``fx`` (:func:`loss_features`) and style ids (B,):
    float32 scalars computed in fp32, differentiable in y."""
    with torch.autocast(y.device.type, enabled=False):
        content = sum(
            torch.mean((fy[k].float() - fx[k].float()) ** 2) for k in config.content_layers
        )
        style = y.new_zeros((), dtype=torch.float32)
        for k in config.style_layers:
            g = gram(fy[k].float())
            style = style + layer_w[k] * torch.mean((g - targets[k][style_ids]) ** 2)
        tv = tv_loss(y.float())
    return {"content": content, "style": style, "tv": tv}


def synthetic_motion(
    batch: int,
    generator: torch.Generator,
    *,
    size: tuple[int, int],
    max_shift: float,
    max_zoom: float,
    max_rotate: float,
) -> torch.Tensor:
    """Random small motions, one per crop: (B, 2, 3) affine maps for
    :func:`torch.nn.functional.affine_grid` (normalized coordinates, align_corners False)
    that take an output pixel to where it samples the input.

    Shift uniform in [-max_shift, max_shift] pixels per axis (at ``size`` = (H, W)),
    zoom 1 + U(-max_zoom, max_zoom), rotation U(-max_rotate, max_rotate) degrees. Uses
    only ``generator`` (CPU), so a seeded run repeats.
    """
    u = torch.rand(batch, 4, generator=generator) * 2 - 1
    h, w = size
    zoom = 1.0 + max_zoom * u[:, 0]
    angle = torch.deg2rad(max_rotate * u[:, 1])
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    theta = torch.zeros(batch, 2, 3)
    # rotation in pixel units: normalized x and y differ by the aspect ratio w / h
    theta[:, 0, 0], theta[:, 0, 1] = cos, -sin * h / w
    theta[:, 1, 0], theta[:, 1, 1] = sin * w / h, cos
    theta[:, 0, 2] = 2.0 * max_shift * u[:, 2] / w
    theta[:, 1, 2] = 2.0 * max_shift * u[:, 3] / h
    return theta


#: Pixels along the frame's edge left out of the temporal term besides the largest shift
#: (near the edge both outputs depend on the padding, not on the motion).
TEMPORAL_MARGIN = 4


def move(image: torch.Tensor, theta: torch.Tensor, *, margin: int = TEMPORAL_MARGIN
         ) -> tuple[torch.Tensor, torch.Tensor]:
    """``image`` (B, C, H, W) moved by ``theta`` (B, 2, 3) (:func:`synthetic_motion`),
    bilinear, mirrored at the border; and where the moved image samples the inside of
    the original, ``margin`` pixels in: (B, 1, H, W) float {0, 1}.

    The sampling grid is always float32 and outside autocast (under bf16 autocast
    ``affine_grid`` would round it by up to ~0.7 px at 256 px, so a crop and an output
    moved by the same motion would not move alike)."""
    b, _, h, w = image.shape
    with torch.autocast(image.device.type, enabled=False):
        grid = F.affine_grid(theta.to(image.device, torch.float32), [b, 1, h, w],
                             align_corners=False)
        moved = F.grid_sample(image.float(), grid, mode="bilinear",
                              padding_mode="reflection", align_corners=False)
    mx, my = 1.0 - 2.0 * margin / w, 1.0 - 2.0 * margin / h
    valid = (grid[..., 0].abs() <= mx) & (grid[..., 1].abs() <= my)
    return moved.to(image.dtype), valid.unsqueeze(1).to(torch.float32)


def temporal_term(moved_output: torch.Tensor, output_of_moved: torch.Tensor,
                  valid: torch.Tensor) -> torch.Tensor:
    """Mean squared RGB difference (float32 scalar) between M net(x) and net(M x), both
    (B, 3, H, W), over the ``valid`` (B, 1, H, W) pixels of :func:`move`."""
    d = (moved_output.float() - output_of_moved.float()).pow(2) * valid
    return d.sum() / (valid.sum() * moved_output.shape[1]).clamp_min(1.0)


def training_terms(
    net: StyleNet,
    loss_net: LossNet,
    x: torch.Tensor,
    style_ids: torch.Tensor,
    targets: Mapping[str, torch.Tensor],
    config: TrainConfig,
    layer_w: Mapping[str, float],
    bf16: bool,
    teacher: StyleNet | None = None,
    motion: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """Weighted loss terms of one step for content batch x (B, 3, H, W) and style ids (B,):
    ``content``, ``style``, ``tv``, (``distill`` with a teacher; ``temporal`` with a
    ``motion`` (B, 2, 3) of :func:`synthetic_motion`) and their sum ``loss``.

    With a teacher and content_weight = style_lambda = 0 the loss network is not run.
    """
    dev = x.device.type
    w = F.one_hot(style_ids, net.num_styles).float()
    perceptual = config.content_weight != 0 or config.style_lambda != 0 or teacher is None
    with torch.autocast(dev, dtype=torch.bfloat16, enabled=bf16):
        y = net(x, w)
        if teacher is not None:
            with torch.no_grad():
                ty = teacher(x, w)
        temporal = None
        if motion is not None:
            margin = TEMPORAL_MARGIN + math.ceil(config.temporal_shift)
            x_moved, valid = move(x, motion, margin=margin)
            y_of_moved = net(x_moved, w)
    if motion is not None:
        with torch.autocast(dev, enabled=False):
            temporal = config.temporal_weight * temporal_term(
                move(y.float(), motion, margin=margin)[0], y_of_moved, valid)
    if perceptual:  # pure distillation needs no loss network at all
        fy, fx = loss_features(loss_net, x, y, config, bf16=bf16)
    with torch.autocast(dev, enabled=False):
        distill = (None if teacher is None
                   else config.distill_weight * torch.mean((y.float() - ty.float()) ** 2))
    if not perceptual and distill is not None:
        zero = distill.new_zeros(())
        out = {"content": zero, "style": zero, "tv": zero, "distill": distill, "loss": distill}
        if temporal is not None:
            out["temporal"] = temporal
            out["loss"] = distill + temporal
        return out
    raw = perceptual_terms(fy, fx, y, style_ids, targets, config, layer_w)
    with torch.autocast(dev, enabled=False):
        terms = {
            "content": config.content_weight * raw["content"],
            "style": config.style_lambda * raw["style"],
            "tv": config.tv_weight * raw["tv"],
        }
        terms["loss"] = terms["content"] + terms["style"] + terms["tv"]
        if distill is not None:
            terms["distill"] = distill
            terms["loss"] = terms["loss"] + distill
        if temporal is not None:
            terms["temporal"] = temporal
            terms["loss"] = terms["loss"] + temporal
    return terms


@torch.no_grad()
def evaluate(
    net: StyleNet | AdjustableStyleNet,
    loss_net: LossNet,
    images: Sequence[torch.Tensor],
    targets: Mapping[str, torch.Tensor],
    config: TrainConfig,
    layer_w: Mapping[str, float],
    device: torch.device,
    style_names: Sequence[str],
) -> dict[str, dict[str, float]]:
    """Per style name: mean unweighted style and content loss on the held-out images
    (each (1, 3, H, W)), in fp32."""
    if not images:
        return {}
    out: dict[str, dict[str, float]] = {}
    for s, name in enumerate(style_names):
        ids = torch.tensor([s], device=device)
        st = ct = 0.0
        for im in images:
            x = im.to(device)
            y = net(x, F.one_hot(ids, net.num_styles).float())
            fy, fx = loss_features(loss_net, x, y, config)
            raw = perceptual_terms(fy, fx, y, ids, targets, config, layer_w)
            st += float(raw["style"])
            ct += float(raw["content"])
        out[name] = {"style": st / len(images), "content": ct / len(images)}
    return out
