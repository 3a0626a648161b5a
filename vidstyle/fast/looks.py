"""Using an adjustable model (:mod:`vidstyle.fast.adjustable`): the looks of a run baked
into a plain network, layer weights drawn for ``--variations``, and the explore grid.

A *look* is a (style mix, layer weights) pair. :func:`bake_looks` runs the conditioning
network once per distinct look of a :class:`~vidstyle.contracts.StyleSpec` (the whole
frame's, each person's, the background's) and returns a plain model with one style row per
look plus the spec rewritten to name those rows, so the fast stylizer, its runtimes,
tiling, flow stabilization and per-person style maps run unchanged at the plain network's
per-pixel cost.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw

from vidstyle.config import DEFAULT_ADJUSTABLE_MODEL, fingerprint_of
from vidstyle.contracts import StyleMix, StyleSpec
from vidstyle.errors import UsageError
from vidstyle.fast.adjustable import AdjustableStyleNet, check_layer_weights, spread_alphas
from vidstyle.fast.model_io import LoadedModel

log = logging.getLogger(__name__)

__all__ = [
    "Look",
    "bake_looks",
    "explore_grid",
    "layer_table",
    "variation_weights",
]

#: ``vector(mix) -> (S,)`` convex style weights of a mix for the model (raises StyleError).
StyleVector = Callable[[StyleMix], torch.Tensor]


@dataclasses.dataclass(frozen=True)
class Look:
    """One (style mix, layer weights) pair; empty weights: the style's default."""

    mix: StyleMix
    layer_weights: tuple[float, ...] = ()

    @property
    def name(self) -> str:
        """The baked style row's name (a unique, file-name-safe text)."""
        if not self.layer_weights:
            return f"{self.mix.slug()}@default"
        return f"{self.mix.slug()}@" + "_".join(f"{w:.4g}" for w in self.layer_weights)


def _looks(spec: StyleSpec) -> tuple[Look, dict[int, Look], Look | None]:
    """(the whole frame's look, each listed person's, the background's or None)."""
    default = Look(spec.default, spec.layer_weights)
    people = {pid: Look(mix, spec.layers_for(pid)) for pid, mix in spec.instances}
    bg = Look(spec.background, spec.layer_weights) if spec.background is not None else None
    return default, people, bg


def _alpha_rows(net: AdjustableStyleNet, looks: Sequence[Look], rows: torch.Tensor
                ) -> torch.Tensor:
    """(K, L) alpha of the looks: given weights, else the default of the look's style row."""
    default = net.default_alpha(rows.to(net.loss_ema.device)).cpu()
    alpha = torch.empty(len(looks), net.num_layers)
    for k, look in enumerate(looks):
        alpha[k] = torch.tensor(look.layer_weights) if look.layer_weights else default[k]
    return alpha


def bake_looks(model: LoadedModel, spec: StyleSpec, vector: StyleVector
               ) -> tuple[LoadedModel, StyleSpec, str]:
    """Bake the looks of ``spec`` for adjustable ``model``.

    Returns (a plain model with one style row per distinct look, ``spec`` with every
    style replaced by its row's name and no layer weights, a fingerprint of the looks).
    Raises UsageError for layer weights of the wrong count or range (naming the option);
    logs a warning for weights above the trained range.
    """
    net = model.net
    if not isinstance(net, AdjustableStyleNet):
        raise UsageError("per-layer style weights need an adjustable model (train one with "
                         f"`vidstyle train --adjustable`, or use --model "
                         f"{DEFAULT_ADJUSTABLE_MODEL})")
    default, people, bg = _looks(spec)
    for look, where in [(default, "--layer-weights"),
                        *[(lk, f"--instance {pid}=...@") for pid, lk in people.items()]]:
        if look.layer_weights:
            for msg in check_layer_weights(look.layer_weights, net.style_layers, flag=where):
                log.warning("%s", msg)
    looks = list(dict.fromkeys([default, *people.values(), *([bg] if bg else [])]))
    rows = torch.stack([vector(lk.mix) for lk in looks]).to(torch.float32)
    alpha = _alpha_rows(net, looks, rows)
    baked = net.bake(rows, alpha)
    names = tuple(lk.name for lk in looks)
    info = {**model.info, "looks": {n: [round(float(a), 6) for a in alpha[k]]
                                    for k, n in enumerate(names)}}
    plain = LoadedModel(net=baked, style_names=names, info=info)

    def as_mix(look: Look) -> StyleMix:
        return StyleMix(((look.name, 1.0),))

    new_spec = StyleSpec(
        as_mix(default),
        tuple((pid, as_mix(people[pid])) for pid in sorted(people)),
        as_mix(bg) if bg is not None else None,
        spec.keep_background,
    )
    looks_fp = fingerprint_of([(str(lk.mix), list(a)) for lk, a in
                               zip(looks, alpha.tolist(), strict=True)])
    return plain, new_spec, looks_fp


def variation_weights(net: AdjustableStyleNet, count: int, seed: int
                      ) -> list[tuple[float, ...]]:
    """``count`` seeded layer-weight settings of ``net``, spread apart where its looks
    differ (:func:`spread_alphas` over :meth:`AdjustableStyleNet.look_features`: each
    layer's values U(0, 1) as in training, stratified), rounded to 3 decimals (the values a
    user can type back with ``--layer-weights``)."""
    alphas = spread_alphas(count, net.num_layers, seed, embed=net.look_features)
    return [tuple(round(float(v), 3) for v in row) for row in alphas]


def layer_table(model: LoadedModel) -> list[tuple[str, dict[str, float]]]:
    """The layers of an adjustable model in ``--layer-weights`` order, each with the
    default weight of every style: [(layer, {style: default weight})]."""
    net = model.net
    if not isinstance(net, AdjustableStyleNet):
        raise UsageError("this model has no adjustable layer weights")
    eye = torch.eye(net.num_styles)
    default = net.default_alpha(eye.to(net.loss_ema.device)).cpu()
    return [(layer, {s: float(default[k, i]) for k, s in enumerate(model.style_names)})
            for i, layer in enumerate(net.style_layers)]


@torch.no_grad()
def explore_grid(
    model: LoadedModel,
    image: torch.Tensor,
    row: torch.Tensor,
    *,
    rows_layer: str,
    cols_layer: str,
    values: Sequence[float],
    base: Sequence[float] | None = None,
    cell: int = 256,
) -> Image.Image:
    """A labelled grid of ``image`` (1, 3, H, W) in [0, 1] stylized with style row ``row``
    (S,) while two layer weights sweep ``values`` (rows: ``rows_layer``, columns:
    ``cols_layer``); the other layers at ``base`` (None: the style's default). Each cell's
    long side is ``cell`` pixels. One baked network with a row per cell, one pass each."""
    net = model.net
    if not isinstance(net, AdjustableStyleNet):
        raise UsageError("explore needs an adjustable model")
    layers = list(net.style_layers)
    for name in (rows_layer, cols_layer):
        if name not in layers:
            raise UsageError(f"no style layer {name!r} in this model (it has: "
                             f"{', '.join(layers)})")
    if rows_layer == cols_layer:
        raise UsageError("explore sweeps two different layers: give --rows and --cols")
    ri, ci = layers.index(rows_layer), layers.index(cols_layer)
    w = row.reshape(1, -1).to(torch.float32)
    start = (torch.tensor([list(base)], dtype=torch.float32) if base
             else net.default_alpha(w.to(net.loss_ema.device)).cpu())
    alphas = []
    for rv in values:
        for cv in values:
            a = start.clone()
            a[0, ri], a[0, ci] = rv, cv
            alphas.append(a[0])
    alpha = torch.stack(alphas)
    baked = net.bake(w.expand(len(alphas), -1), alpha)
    dev = next(baked.parameters()).device
    x = image.to(dev)
    outs = [baked(x, torch.eye(len(alphas), device=dev)[k : k + 1]).cpu()
            for k in range(len(alphas))]
    return _grid_image(outs, values, rows_layer, cols_layer, start[0].tolist(), layers)


def _grid_image(outs: list[torch.Tensor], values: Sequence[float], rows_layer: str,
                cols_layer: str, base: list[float], layers: list[str]) -> Image.Image:
    """Cells (each (1, 3, h, w)) in a labelled grid: a header naming the layers and the
    others' weights, column values on top, row values on the left."""
    n = len(values)
    h, w = outs[0].shape[-2:]
    left, top, head, pad = 90, 22, 34, 4
    sheet = Image.new("RGB", (left + n * (w + pad), head + top + n * (h + pad)), "white")
    d = ImageDraw.Draw(sheet)
    others = ", ".join(f"{name}={v:.3g}" for name, v in zip(layers, base, strict=True)
                       if name not in (rows_layer, cols_layer))
    d.text((4, 2), f"rows: {rows_layer}   columns: {cols_layer}", fill=(0, 0, 0))
    d.text((4, 16), f"others: {others}", fill=(80, 80, 80))
    for j, v in enumerate(values):
        d.text((left + j * (w + pad) + w // 2 - 20, head + 4), f"{cols_layer}={v:.3g}",
               fill=(0, 0, 0))
    for i, rv in enumerate(values):
        y0 = head + top + i * (h + pad)
        d.text((4, y0 + h // 2 - 6), f"{rows_layer}\n={rv:.3g}", fill=(0, 0, 0))
        for j in range(n):
            arr = outs[i * n + j][0].clamp(0, 1).mul(255).round().byte()
            cell = Image.fromarray(np.ascontiguousarray(arr.permute(1, 2, 0).numpy()))
            sheet.paste(cell, (left + j * (w + pad), y0))
    return sheet
