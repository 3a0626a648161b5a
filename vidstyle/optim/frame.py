"""Gatys optimization one frame at a time: the optimization method's frame stylizer, and
the loss network it and the temporal stylizer share."""

from __future__ import annotations

from typing import ClassVar, Literal

import numpy as np
import torch

from vidstyle.config import RunConfig, fingerprint_of
from vidstyle.contracts import FrameContext, ProgressEvent, StylizerNeeds
from vidstyle.errors import UsageError
from vidstyle.fileio import sha256_file
from vidstyle.imageops import load_image, resize, working_size
from vidstyle.optim.image import GatysStylizer, IterationEvent
from vidstyle.tensors import to_tensor
from vidstyle.vgg import DEFAULT_LAYERS, LAYER_NAMES, load_vgg


class OptimFrameStylizer:
    """Gatys optimization, one frame at a time (no temporal terms): a
    :class:`~vidstyle.contracts.FrameStylizer` whose outputs the engine caches (a killed
    run resumes at the first unfinished frame)."""

    kind: ClassVar[Literal["frame"]] = "frame"

    @staticmethod
    def needs_for(config: RunConfig) -> StylizerNeeds:
        """No motion; costly outputs, kept in the work folder (resume)."""
        return StylizerNeeds(flow=False, cache=True)

    def __init__(self, *, config: RunConfig, device: torch.device, net: torch.nn.Module,
                 style_path: str, style_layers: tuple[str, ...],
                 content_layers: tuple[str, ...]) -> None:
        self.config = config
        self.device = device
        self.net = net
        self.style_path = style_path
        self.needs = self.needs_for(config)
        self.style_layers = tuple(style_layers)
        self.content_layers = tuple(content_layers)
        self._style_sha: str | None = None
        self._gatys: GatysStylizer | None = None

    def fingerprint(self) -> str:
        if self._style_sha is None:
            self._style_sha = sha256_file(self.style_path)
        weights = str(getattr(self.net, "weights_sha256", ""))
        return fingerprint_of("optim-frame", self._style_sha, weights)

    @property
    def gatys(self) -> GatysStylizer:
        if self._gatys is None:
            self._gatys = GatysStylizer(
                net=self.net, style_image=load_image(self.style_path), config=self.config.optim,
                style_layers=self.style_layers, content_layers=self.content_layers,
                device=self.device)
        return self._gatys

    def prepare(self, rgb: np.ndarray) -> torch.Tensor:
        """(H, W, 3) uint8 -> (1, 3, h, w) float32 at the working size (``--size``)."""
        x = to_tensor(rgb)
        return resize(x, working_size(*x.shape[-2:], self.config.optim.size))

    def stylize(self, x: torch.Tensor, ctx: FrameContext) -> torch.Tensor:
        """Optimize one frame (1, 3, H, W) -> (1, 3, H, W) in [0, 1] (CPU)."""

        def on_iter(ev: IterationEvent) -> None:
            detail = f"level {ev.level + 1}/{ev.levels} loss {ev.loss:.3g}"
            ctx.progress(ProgressEvent("optimize", ctx.index, ctx.total, detail=detail,
                                       iteration=ev.iteration, iterations=ev.iterations))

        gatys = self.gatys
        gatys.progress = on_iter
        result = gatys.stylize(x.to(self.device), seed=self.config.optim.seed + ctx.index)
        return result.image.detach().float().clamp(0, 1).cpu()

    def finish(self, y: torch.Tensor, ctx: FrameContext) -> torch.Tensor:
        return y

    def observe(self, output: torch.Tensor, ctx: FrameContext) -> None:
        return None


def load_loss_net(config: RunConfig, device: torch.device
                  ) -> tuple[torch.nn.Module, tuple[str, ...], tuple[str, ...]]:
    """The VGG of ``config.optim`` truncated after its deepest used layer, with the style
    and content layers in effect. Raises WeightsError when the weights are missing."""
    layers = DEFAULT_LAYERS[config.optim.vgg]
    style_layers = tuple(config.optim.style_layers or layers["style"])
    content_layers = tuple(config.optim.content_layers or layers["content"])
    known = set(LAYER_NAMES[config.optim.vgg])
    bad = [n for n in style_layers + content_layers if n not in known]
    if bad:
        raise UsageError(f"unknown {config.optim.vgg} layer(s) {', '.join(bad)} in "
                         "--style-layers/--content-layers (e.g. relu1_1, relu4_2)")
    deepest = max(style_layers + content_layers, key=_layer_key)
    net = load_vgg(config.optim.vgg, device=device, truncate_after=deepest,
                   pool=config.optim.pool)
    return net, style_layers, content_layers


def _layer_key(n: str) -> tuple[int, int]:
    block, _, idx = n.removeprefix("relu").removeprefix("conv").partition("_")
    return int(block), int(idx or 0)


__all__ = ["OptimFrameStylizer", "load_loss_net"]
