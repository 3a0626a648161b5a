"""Gatys et al. style transfer by optimization, with coarse-to-fine multi-scale.

The optimized image x is (1, 3, H, W) float RGB (values may leave [0, 1] during the
optimization; the result is clamped). Loss = content_weight * content + style_weight *
style (Gram, normalized per layer) + tv_weight * TV (+ temporal terms for video,
Ruder et al. 2016, given by the caller at the final scale).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from vidstyle.config import OptimConfig
from vidstyle.errors import UsageError
from vidstyle.imageops import (
    fit_longest,
    luminance,
    match_luminance,
    resize,
    resize_longest,
    rgb_to_yiq,
    yiq_to_rgb,
)
from vidstyle.losses import (
    content_loss,
    gram,
    region_style_loss,
    style_loss,
    temporal_loss,
    tv_loss,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class IterationEvent:
    """Progress report of one optimizer iteration."""

    level: int
    levels: int
    iteration: int
    iterations: int
    loss: float


ProgressFn = Callable[[IterationEvent], None]


@dataclass(frozen=True)
class TemporalTerms:
    """Previous stylized frames warped to the current one, with their per-pixel weights.

    warped: each (1, 3, H, W); weights: each (1, 1, H, W) in [0, 1]; weight: gamma.
    """

    warped: Sequence[torch.Tensor]
    weights: Sequence[torch.Tensor]
    weight: float


@dataclass
class OptimResult:
    image: torch.Tensor
    losses: dict[str, float]
    iterations: int


def _gray3(image: torch.Tensor) -> torch.Tensor:
    return luminance(image).expand(-1, 3, -1, -1)


@dataclass(frozen=True)
class StyleRegion:
    """A part of the image with its own style (per-person styles).

    mask: (1, 1, H, W) soft weights in [0, 1] at the content's size. style: the
    stylizer whose style image gives the region's Gram targets, or None for a region
    without style loss (a background kept as it is).
    """

    mask: torch.Tensor
    style: GatysStylizer | None


class GatysStylizer:
    """Stylize single images by optimization.

    Parts are passed in: ``net`` is any :class:`vidstyle.vgg.VGGFeatures`-like module
    with ``forward(x, layers) -> dict``; ``style_image`` is (1, 3, h, w) in [0, 1].
    """

    def __init__(
        self,
        *,
        net: torch.nn.Module,
        style_image: torch.Tensor,
        config: OptimConfig,
        style_layers: Sequence[str],
        content_layers: Sequence[str],
        device: torch.device | str = "cpu",
        progress: ProgressFn | None = None,
    ) -> None:
        if config.init not in ("content", "style", "noise"):
            raise UsageError(f"unknown --init {config.init!r}: use content, style or noise")
        if config.optimizer not in ("lbfgs", "adam"):
            raise UsageError(f"unknown --optimizer {config.optimizer!r}: use lbfgs or adam")
        self.net = net
        self.device = torch.device(device)
        self.style_image = style_image.to(self.device)
        self.config = config
        self.style_layers = tuple(style_layers)
        self.content_layers = tuple(content_layers)
        self.layer_weights = {name: 1.0 / len(self.style_layers) for name in self.style_layers}
        self.progress = progress
        self._gram_cache: dict[tuple[int, int, bool], dict[str, torch.Tensor]] = {}

    # -- targets -----------------------------------------------------------------------
    def style_grams(self, longest: int, content_y: torch.Tensor | None = None) -> dict:
        """Gram targets of the style image scaled to style_scale * ``longest`` pixels."""
        side = max(16, round(self.config.style_scale * longest))
        key = (side, 0, content_y is not None)
        if content_y is None and key in self._gram_cache:
            return self._gram_cache[key]
        style = resize_longest(self.style_image, side)
        if content_y is not None:  # luminance-only transfer
            style = match_luminance(luminance(style), content_y).expand(-1, 3, -1, -1)
        with torch.no_grad():
            feats = self.net(style, self.style_layers)
            grams = {k: gram(v) for k, v in feats.items()}
        if content_y is None:
            self._gram_cache[key] = grams
        return grams

    def style_loss_of(self, image: torch.Tensor) -> float:
        """Gram style loss (unweighted by style_weight) of ``image`` at its own size."""
        longest = max(image.shape[-2:])
        with torch.no_grad():
            feats = self.net(image.to(self.device), self.style_layers)
            return float(style_loss(feats, self.style_grams(longest), self.layer_weights))

    # -- optimization ------------------------------------------------------------------
    def stylize(
        self,
        content: torch.Tensor,
        *,
        init: torch.Tensor | None = None,
        iters: int | None = None,
        temporal: TemporalTerms | None = None,
        seed: int | None = None,
        regions: Sequence[StyleRegion] | None = None,
    ) -> OptimResult:
        """Stylize ``content`` (1, 3, H, W) at its own size.

        ``init`` (1, 3, H, W) warm-starts the optimization (then only the final scale is
        optimized); otherwise the config's init and coarse-to-fine levels are used.
        ``regions``: per-region styles (Gatys et al. 2017 spatial control): each region's
        Gram loss over its own mask, weighted by its area, replaces the whole-image style
        loss.
        """
        cfg = self.config
        iters = cfg.iters if iters is None else iters
        content = content.to(self.device)
        h, w = content.shape[-2:]
        gen = torch.Generator().manual_seed(cfg.seed if seed is None else seed)
        color = None
        if cfg.preserve_color:
            yiq = rgb_to_yiq(content)
            color = yiq[:, 1:]
            content = yiq[:, :1].expand(-1, 3, -1, -1)
            if init is not None:
                init = _gray3(init.to(self.device))
            if temporal is not None:
                temporal = TemporalTerms(
                    [_gray3(t) for t in temporal.warped], temporal.weights, temporal.weight
                )
        if init is not None or temporal is not None:
            sizes = [max(h, w)]
            schedule = [iters]
        else:
            sizes = cfg.levels(max(h, w))
            # coarsest level gets `iters`, each finer level half of the one before
            schedule = [max(1, iters // (2**k)) for k in range(len(sizes))]
        x: torch.Tensor | None = None
        losses: dict[str, float] = {}
        total_iters = 0
        for level, (side, n) in enumerate(zip(sizes, schedule, strict=True)):
            hw = (h, w) if side == max(h, w) else fit_longest(h, w, side)
            c_l = resize(content, hw)
            if x is None:
                x0 = init if init is not None else self._initial(c_l, gen)
                x0 = resize(x0.to(self.device), hw)
            else:
                x0 = resize(x, hw)
            x, losses = self._optimize(
                c_l,
                x0.clone(memory_format=torch.contiguous_format),
                n,
                level,
                len(sizes),
                temporal if level == len(sizes) - 1 else None,
                regions,
            )
            total_iters += n
        assert x is not None
        out = x.detach()
        if color is not None:
            out = yiq_to_rgb(torch.cat([out[:, :1], color], dim=1))
        return OptimResult(out.clamp(0, 1), losses, total_iters)

    def _initial(self, content: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        kind = self.config.init
        if kind == "content":
            return content
        if kind == "style":
            style = self.style_image
            if self.config.preserve_color:
                style = _gray3(style)
            return resize(style, tuple(content.shape[-2:]))
        noise = torch.rand(content.shape, generator=gen)
        return noise.to(self.device)

    def _optimize(
        self,
        content: torch.Tensor,
        x: torch.Tensor,
        iters: int,
        level: int,
        levels: int,
        temporal: TemporalTerms | None,
        regions: Sequence[StyleRegion] | None = None,
    ) -> tuple[torch.Tensor, dict[str, float]]:
        cfg = self.config
        longest = max(content.shape[-2:])
        content_y = luminance(content) if cfg.preserve_color else None
        grams = self.style_grams(longest, content_y)
        targets = [
            (F.interpolate(r.mask.to(self.device), size=tuple(content.shape[-2:]),
                           mode="area"), r.style.style_grams(longest, content_y))
            for r in regions or () if r.style is not None
        ]
        with torch.no_grad():
            c_targets = self.net(content, self.content_layers)
        layers = tuple(dict.fromkeys(self.style_layers + self.content_layers))
        x.requires_grad_(True)
        count = 0
        last: dict[str, float] = {}

        def closure() -> torch.Tensor:
            nonlocal count, last
            opt.zero_grad(set_to_none=True)
            feats = self.net(x, layers)
            lc = sum(content_loss(feats[k], c_targets[k]) for k in self.content_layers)
            if regions is None:
                ls = style_loss(feats, grams, self.layer_weights)
            elif targets:
                ls = region_style_loss(feats, targets, self.layer_weights)
            else:
                ls = x.new_zeros(())
            lt = tv_loss(x)
            loss = cfg.content_weight * lc + cfg.style_weight * ls + cfg.tv_weight * lt
            lT = None
            if temporal is not None and temporal.warped:
                lT = temporal_loss(x, temporal.warped, temporal.weights)
                loss = loss + temporal.weight * lT
            loss.backward()
            count += 1
            last = {
                "total": float(loss.detach()),
                "content": float(lc.detach()),
                "style": float(ls.detach()),
                "tv": float(lt.detach()),
            }
            if lT is not None:
                last["temporal"] = float(lT.detach())
            if self.progress is not None:
                self.progress(IterationEvent(level, levels, count, iters, last["total"]))
            return loss

        if cfg.optimizer == "lbfgs":
            opt = torch.optim.LBFGS(
                [x],
                lr=1.0,
                max_iter=iters,
                max_eval=iters,
                history_size=50,
                tolerance_grad=-1.0,
                tolerance_change=-1.0,
                line_search_fn="strong_wolfe",
            )
            opt.step(closure)
        else:
            opt = torch.optim.Adam([x], lr=cfg.lr)
            for _ in range(iters):
                opt.step(closure)
        return x.detach(), last
