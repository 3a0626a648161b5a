"""Stylizers: the per-frame objects a pipeline's stylize stage calls.

A stylizer has ``fingerprint()`` (what determines its output besides the run config:
style image hash, weights hash), ``stylize(frame, ...) -> (H, W, 3) uint8`` and
``observe(frame, output)``, called with cached outputs when a run resumes so stateful
(temporal) stylizers see the same history as an uninterrupted run.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch

from vidstyle.config import RunConfig, fingerprint_of
from vidstyle.errors import UsageError
from vidstyle.imageops import fit_longest, load_image, resize
from vidstyle.styles import resolve_style
from vidstyle.tensors import to_tensor, to_uint8
from vidstyle.workdir import sha256_file

log = logging.getLogger(__name__)

MAX_SIZE = 8192
MIN_SIZE = 16


def check_size(size: int) -> int:
    if not MIN_SIZE <= size <= MAX_SIZE:
        raise UsageError(f"--size {size} is out of range ({MIN_SIZE}..{MAX_SIZE} pixels)")
    return size


def working_size(h: int, w: int, size: int | None) -> tuple[int, int]:
    """Frame size (h, w) at which to stylize: longest side ``size`` (None: unchanged)."""
    return (h, w) if not size else fit_longest(h, w, size)


class OptimFrameStylizer:
    """Gatys optimization, one frame at a time (no temporal terms)."""

    def __init__(self, *, config: RunConfig, device: torch.device, net: Any, style_path: str,
                 style_layers, content_layers) -> None:  # noqa: ANN001
        from vidstyle.optim.image import GatysStylizer

        self.config = config
        self.device = device
        self.net = net
        self.style_path = style_path
        self.style_sha = sha256_file(style_path)
        self.gatys = GatysStylizer(
            net=net,
            style_image=load_image(style_path),
            config=config.optim,
            style_layers=style_layers,
            content_layers=content_layers,
            device=device,
        )

    def fingerprint(self) -> str:
        weights = getattr(self.net, "weights_sha256", "")
        return fingerprint_of("optim-frame", self.style_sha, weights)

    def observe(self, frame: Any, output: np.ndarray) -> None:
        return None

    def stylize(self, frame: Any, *, progress=None, total=None) -> np.ndarray:  # noqa: ANN001
        from vidstyle.pipeline import ProgressEvent

        content = to_tensor(frame.rgb, self.device)
        content = resize(content, working_size(*content.shape[-2:], self.config.optim.size))

        def on_iter(ev) -> None:  # noqa: ANN001
            if progress is not None:
                detail = f"level {ev.level + 1}/{ev.levels} loss {ev.loss:.3g}"
                progress(ProgressEvent("optimize", frame.index, total, detail=detail,
                                       iteration=ev.iteration, iterations=ev.iterations))

        self.gatys.progress = on_iter
        result = self.gatys.stylize(content, seed=self.config.optim.seed + frame.index)
        return to_uint8(result.image)


def load_loss_net(config: RunConfig, device: torch.device):  # noqa: ANN201
    from vidstyle.vgg import DEFAULT_LAYERS, load_vgg

    name = config.optim.vgg
    if name not in DEFAULT_LAYERS:
        raise UsageError(f"unknown loss network {name!r}: use vgg19 or vgg16")
    layers = DEFAULT_LAYERS[name]
    style_layers = config.optim.style_layers or layers["style"]
    content_layers = config.optim.content_layers or layers["content"]
    deepest = _deepest(list(style_layers) + list(content_layers))
    net = load_vgg(name, device=device, truncate_after=deepest, pool=config.optim.pool)
    return net, tuple(style_layers), tuple(content_layers)


def _deepest(layers: list[str]) -> str:
    def key(n: str) -> tuple[int, int]:
        block, _, idx = n.removeprefix("relu").removeprefix("conv").partition("_")
        return int(block), int(idx or 0)

    return max(layers, key=key)


def default_method(style: str) -> str:
    """``fast`` when every style of ``style`` (a name or a mix) is in the shipped fast model,
    else ``optim`` (any image path, or a style the network was not trained on)."""
    from vidstyle.fast.model_io import shipped_style_names

    names = [part.rpartition(":")[0] or part for part in style.split(",") if part.strip()]
    known = set(shipped_style_names())
    return "fast" if names and all(n.strip() in known for n in names) else "optim"


def make_stylizer(*, config: RunConfig, device: torch.device):  # noqa: ANN201
    """Build the stylizer of ``config.method`` (loads weights: call once per run)."""
    check_size(config.optim.size)
    if config.method == "optim":
        style = resolve_style(config.style)
        net, style_layers, content_layers = load_loss_net(config, device)
        if config.temporal.mode != "none":
            from vidstyle.optim.video import TemporalOptimStylizer

            return TemporalOptimStylizer(config=config, device=device, net=net,
                                         style_path=str(style.path),
                                         style_layers=style_layers, content_layers=content_layers)
        return OptimFrameStylizer(config=config, device=device, net=net,
                                  style_path=str(style.path),
                                  style_layers=style_layers, content_layers=content_layers)
    if config.method == "fast":
        from vidstyle.fast.runtime import make_fast_stylizer

        return make_fast_stylizer(config=config, device=device)
    raise UsageError(f"unknown --method {config.method!r}: use optim or fast")
