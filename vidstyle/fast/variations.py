"""``--variations K`` and ``vidstyle explore``: many looks of one input from an adjustable
model (the paper's answer to "one stylization per content-style pair")."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image

from vidstyle.config import DEFAULT_ADJUSTABLE_MODEL, ExploreConfig, RunConfig
from vidstyle.errors import InputError, UsageError
from vidstyle.fast.looks import explore_grid, layer_table, variation_weights
from vidstyle.fast.model_io import LoadedModel, read_manifest
from vidstyle.fast.stylizer import resolve_model, style_vector
from vidstyle.imageops import load_image, working_size

__all__ = ["adjustable_model", "explore", "layers_text", "variation_plan"]


def adjustable_model(name: str | None, device: torch.device | str = "cpu"
                     ) -> tuple[LoadedModel, str]:
    """The adjustable model ``name`` (None: the shipped one) and its name; UsageError when
    it is a plain model."""
    if name is None:
        if DEFAULT_ADJUSTABLE_MODEL not in read_manifest().get("models", {}):
            raise UsageError("no adjustable model is shipped: pass --model with one from "
                             "`vidstyle train --adjustable`")
        name = DEFAULT_ADJUSTABLE_MODEL
    model, _ = resolve_model(name, device)
    if not model.adjustable:
        raise UsageError(f"{name} is a plain fast model: layer weights need an adjustable "
                         f"one (e.g. --model {DEFAULT_ADJUSTABLE_MODEL})")
    return model, name


def variation_plan(config: RunConfig, output: Path) -> list[tuple[RunConfig, Path, tuple]]:
    """The runs of ``--variations K``: K configs, each with its own seeded random layer
    weights for the whole frame (the whole clip, for a video), and their outputs
    ``OUT_v1.ext`` ... ``OUT_vK.ext``. Returns [(config, output, layer weights)]."""
    k = config.fast.variations
    model, name = adjustable_model(config.fast.model)
    weights = variation_weights(model.net, k, config.fast.seed)
    plan = []
    for i, w in enumerate(weights, start=1):
        fast = dataclasses.replace(config.fast, model=name, variations=0, layer_weights=w)
        style = dataclasses.replace(config.style, layer_weights=w)
        out = output.with_name(f"{output.stem}_v{i}{output.suffix}")
        plan.append((dataclasses.replace(config, fast=fast, style=style), out, w))
    return plan


def explore(input_path: Path, config: ExploreConfig) -> Image.Image:
    """The explore grid of the image at ``input_path`` (see
    :func:`vidstyle.fast.looks.explore_grid`) with ``config``'s settings."""
    model, _ = adjustable_model(config.model)
    x = load_image(input_path, error=InputError)
    size = working_size(*x.shape[-2:], config.size)
    x = F.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False)
    row = style_vector(config.style, model.style_names)
    n = config.steps
    values = [i / (n - 1) for i in range(n)]
    return explore_grid(model, x, row, rows_layer=config.rows, cols_layer=config.cols,
                        values=values)


def layers_text(model: LoadedModel) -> list[str]:
    """Lines for ``vidstyle styles --layers``: each layer in ``--layer-weights`` order
    with every style's default weight."""
    table = layer_table(model)
    styles = list(model.style_names)
    lines = [f"{'#':<3}{'layer':<10}" + "".join(f"{s:>16}" for s in styles)]
    for i, (layer, defaults) in enumerate(table, start=1):
        lines.append(f"{i:<3}{layer:<10}" + "".join(f"{defaults[s]:>16.4g}" for s in styles))
    return lines
