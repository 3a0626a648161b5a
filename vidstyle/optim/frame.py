"""Gatys optimization one frame at a time: the optimization method's frame stylizer, and
the loss network it and the temporal stylizer share."""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar, Literal

import numpy as np
import torch

from vidstyle.config import RunConfig, fingerprint_of
from vidstyle.contracts import FrameContext, Instances, ProgressEvent, StylizerNeeds
from vidstyle.errors import UsageError
from vidstyle.fileio import sha256_file
from vidstyle.imageops import resize, working_size
from vidstyle.optim.image import GatysStylizer, IterationEvent, StyleRegion
from vidstyle.segment.layout import person_weights
from vidstyle.tensors import to_tensor
from vidstyle.vgg import DEFAULT_LAYERS, LAYER_NAMES, VGGFeatures, load_vgg


class OptimStylizerBase:
    """What both optimization stylizers share: the loss network, the style image (loaded
    by the caller, :func:`vidstyle.engine.make_stylizer`), the working size, the Gatys
    stylizer (built on first use) and the fingerprint of the style file and the network's
    weights. Subclasses name their fingerprint with ``fingerprint_tag``."""

    fingerprint_tag: ClassVar[str]

    def __init__(self, *, config: RunConfig, device: torch.device | str, net: VGGFeatures,
                 style_image: torch.Tensor, style_path: str,
                 style_layers: tuple[str, ...] | list[str],
                 content_layers: tuple[str, ...] | list[str],
                 people_styles: Mapping[str, tuple[str, torch.Tensor]] | None = None) -> None:
        """style_image: (1, 3, H, W) float32 in [0, 1], the file at ``style_path`` (whose
        SHA-256 enters the fingerprint). people_styles: for per-person styles, each style
        reference of the spec -> (its image file, its image); see :meth:`regions`."""
        self.config = config
        self.device = torch.device(device)
        self.net = net
        self.style_image = style_image
        self.style_path = style_path
        self.style_layers = tuple(style_layers)
        self.content_layers = tuple(content_layers)
        self._style_sha: str | None = None
        self._gatys: GatysStylizer | None = None
        self.people_styles = dict(people_styles or {})
        self._region_gatys: dict[str, GatysStylizer] = {}
        self.needs = self.needs_for(config)

    @staticmethod
    def needs_for(config: RunConfig) -> StylizerNeeds:  # pragma: no cover - overridden
        """What the stylizer asks of the engine with ``config`` (known before loading)."""
        raise NotImplementedError

    def fingerprint(self) -> str:
        """Style image files (every person's too) and loss-network weights (the run
        config is hashed by the engine)."""
        if self._style_sha is None:
            self._style_sha = sha256_file(self.style_path)
        base = fingerprint_of(self.fingerprint_tag, self._style_sha, self.net.weights_sha256)
        if not self.people_styles:
            return base
        people = sorted((ref, sha256_file(path)) for ref, (path, _) in self.people_styles.items())
        return fingerprint_of(base, people)

    @property
    def gatys(self) -> GatysStylizer:
        if self._gatys is None:
            self._gatys = GatysStylizer(
                net=self.net, style_image=self.style_image, config=self.config.optim,
                style_layers=self.style_layers, content_layers=self.content_layers,
                device=self.device)
        return self._gatys

    def prepare(self, rgb: np.ndarray) -> torch.Tensor:
        """(H, W, 3) uint8 -> (1, 3, h, w) float32 at the working size (``--size``)."""
        x = to_tensor(rgb)
        return resize(x, working_size(*x.shape[-2:], self.config.optim.size))

    def _gatys_for(self, ref: str) -> GatysStylizer:
        if ref not in self._region_gatys:
            _, image = self.people_styles[ref]
            self._region_gatys[ref] = GatysStylizer(
                net=self.net, style_image=image, config=self.config.optim,
                style_layers=self.style_layers, content_layers=self.content_layers,
                device=self.device)
        return self._region_gatys[ref]

    def regions(self, instances: Instances | None, size: tuple[int, int]
                ) -> tuple[list[StyleRegion], torch.Tensor]:
        """Per-person style regions of a frame (Gatys et al. 2017 spatial control): each
        person's feathered mask with that person's style (``--instance``, else
        ``--style``), the rest with ``--background`` (else ``--style``; ``none``: no style
        loss there and the original pixels put back). Returns (regions, people (1, 1, H, W))."""
        spec = self.config.style
        h, w = size
        if instances is None or len(instances) == 0:
            weights, people = torch.zeros(0, h, w), torch.zeros(h, w)
        else:
            weights, people = person_weights(instances, 0.0)  # feathered by the segment stage
        out = [StyleRegion(weights[k][None, None],
                           self._gatys_for(spec.mix_for(pid).refs[0]))
               for k, pid in enumerate(instances.ids if instances is not None else ())]
        background = None
        if not spec.keep_background:
            background = self._gatys_for((spec.background or spec.default).refs[0])
        out.append(StyleRegion((1.0 - people)[None, None], background))
        return out, people[None, None]


class OptimFrameStylizer(OptimStylizerBase):
    """Gatys optimization, one frame at a time (no temporal terms): a
    :class:`~vidstyle.contracts.FrameStylizer` whose outputs the engine caches (a killed
    run resumes at the first unfinished frame)."""

    kind: ClassVar[Literal["frame"]] = "frame"
    fingerprint_tag: ClassVar[str] = "optim-frame"

    @staticmethod
    def needs_for(config: RunConfig) -> StylizerNeeds:
        """No motion (except to track people); costly outputs, kept in the work folder
        (resume); the people of each frame for per-person styles."""
        people = config.style.per_person
        return StylizerNeeds(flow=people, cache=True, instances=people)

    def stylize(self, x: torch.Tensor, ctx: FrameContext) -> torch.Tensor:
        """Optimize one frame (1, 3, H, W) -> (1, 3, H, W) in [0, 1] (CPU)."""

        def on_iter(ev: IterationEvent) -> None:
            detail = f"level {ev.level + 1}/{ev.levels} loss {ev.loss:.3g}"
            ctx.progress(ProgressEvent("optimize", ctx.index, ctx.total, detail=detail,
                                       iteration=ev.iteration, iterations=ev.iterations))

        gatys = self.gatys
        gatys.progress = on_iter
        regions, people = None, None
        if self.people_styles:
            regions, people = self.regions(ctx.instances, tuple(x.shape[-2:]))
        result = gatys.stylize(x.to(self.device), seed=self.config.optim.seed + ctx.index,
                               regions=regions)
        y = result.image.detach().float().clamp(0, 1).cpu()
        if people is not None and self.config.style.keep_background:
            y = torch.lerp(x, y, people)
        return y

    def finish(self, y: torch.Tensor, ctx: FrameContext) -> torch.Tensor:
        return y

    def observe(self, output: torch.Tensor, ctx: FrameContext) -> None:
        return None


def load_loss_net(config: RunConfig, device: torch.device
                  ) -> tuple[VGGFeatures, tuple[str, ...], tuple[str, ...]]:
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


__all__ = ["OptimFrameStylizer", "OptimStylizerBase", "load_loss_net"]
