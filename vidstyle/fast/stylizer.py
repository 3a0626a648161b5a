"""The fast stylizer: the multi-style network as a frame stylizer of the engine.

One network pass per frame (:mod:`vidstyle.fast.runtimes` picks how it runs) at the
working scale of ``--style-scale`` (:mod:`vidstyle.fast.scale`: the frame shrunk to a
reference size, the output brought back to full size by an edge-aware upsampler, so the
strokes look the same at any resolution), styles and mixes as convex rows of the
network's style weights, strength as a pixel blend at full size, and for video the flow
stabilization of :mod:`vidstyle.fast.stabilize` (features blended inside the network at
the working scale, output blended at full size in the encode thread). The engine
supplies the frames, the motion between them and the encoding.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import ClassVar, Literal

import numpy as np
import torch

from vidstyle.config import DEFAULT_ADJUSTABLE_MODEL, DEFAULT_MODEL, RunConfig, fingerprint_of
from vidstyle.contracts import FrameContext, Instances, StyleMix, StylizerNeeds
from vidstyle.errors import StyleError, UsageError
from vidstyle.fast import tiling
from vidstyle.fast.inference import FeatureHook, InferenceNet
from vidstyle.fast.looks import bake_looks
from vidstyle.fast.model_io import (
    DEFAULT_WEIGHTS_DIR,
    LoadedModel,
    load_model,
    load_shipped,
    read_manifest,
)
from vidstyle.fast.net import blend_strength
from vidstyle.fast.runtimes import Runtime, RuntimeChoice, select_runtime
from vidstyle.fast.scale import guided_upsample, network_size, shrink
from vidstyle.fast.stabilize import Stabilizer, blend_settings
from vidstyle.fileio import sha256_file
from vidstyle.imageops import keep_colors, resize_uint8, working_size
from vidstyle.segment.faces import face_mask
from vidstyle.segment.layout import person_weights
from vidstyle.tensors import to_tensor, to_uint8

log = logging.getLogger(__name__)


def style_vector(mix: StyleMix | str, style_names: tuple[str, ...] | list[str]) -> torch.Tensor:
    """A style mix (or its text) -> (S,) float32 convex weights over ``style_names``.

    Raises StyleError for a style the model lacks, naming the styles it has.
    """
    mix = StyleMix.parse(mix) if isinstance(mix, str) else mix
    names = list(style_names)
    vec = torch.zeros(len(names), dtype=torch.float64)
    for ref, weight in mix.parts:
        if ref not in names:
            raise StyleError(
                f"the fast model has no style {ref!r} (it has: {', '.join(names)}); "
                "use --method optim for other styles or images"
            )
        vec[names.index(ref)] += weight
    return (vec / vec.sum()).to(torch.float32)


class FastStylizer:
    """The feed-forward stylizer (a :class:`~vidstyle.contracts.FrameStylizer`).

    Build with :func:`make_fast_stylizer`. ``stylize`` runs the network (with the
    feature-level stabilization hook once the frame has a predecessor), ``finish`` blends
    the output with the warped previous output (the engine calls it in its encode thread).
    """

    kind: ClassVar[Literal["frame"]] = "frame"

    @staticmethod
    def needs_for(config: RunConfig) -> StylizerNeeds:
        """What this stylizer asks of the engine with ``config`` (known before loading):
        motion when stabilizing or tracking people; the people of each frame for
        per-person styles (their segment stage keeps a work folder); frames are streamed."""
        people = config.style.per_person
        return StylizerNeeds(flow=config.fast.stability > 0 or people, cache=False,
                             instances=people)

    def __init__(
        self,
        *,
        model: LoadedModel,
        model_sha256: str,
        style_weights: torch.Tensor,
        config: RunConfig,
        device: torch.device,
    ) -> None:
        self.model = model
        self.model_sha256 = model_sha256
        self.style_weights = style_weights.reshape(1, -1).to(torch.float32)
        self.config = config
        self.device = device
        spec = config.style
        self.people = spec.per_person
        #: style rows of the per-person spec: the background's and each listed person's
        self._background = (style_vector(spec.background, model.style_names)
                            if spec.background is not None else self.style_weights[0])
        self._person_rows = {pid: style_vector(mix, model.style_names)
                             for pid, mix in spec.instances}
        self.needs = self.needs_for(config)
        self.runtime_choice: RuntimeChoice | None = None
        self._runtime: Runtime | None = None
        self._tiler: InferenceNet | None = None
        self.stabilizer: Stabilizer | None = None
        self._first = True
        self.reset()

    # -- identity ----------------------------------------------------------------------
    def fingerprint(self) -> str:
        f = self.config.fast
        return fingerprint_of(
            "fast", self.model_sha256, [round(float(v), 6) for v in self.style_weights[0]],
            f.size, f.strength, f.stability, f.tile, f.preserve_color, self.runtime_name,
            f.style_scale, blend_settings() if f.stability > 0 else None,
        )

    @property
    def runtime_name(self) -> str:
        """The runtime the network runs on (``--runtime auto`` resolved; see
        :func:`~vidstyle.fast.runtimes.select_runtime`); builds it on first use."""
        return self.runtime().name

    @property
    def style_names(self) -> tuple[str, ...]:
        return self.model.style_names

    def style_vector(self, mix: StyleMix | str) -> torch.Tensor:
        """(S,) weights of a style mix for this model (see :func:`style_vector`)."""
        return style_vector(mix, self.model.style_names)

    # -- network -----------------------------------------------------------------------
    def runtime(self) -> Runtime:
        """The runtime of the network, chosen on first use (cached per process): a
        function of ``--runtime``, the machine and the model, never of timing."""
        if self._runtime is None:
            self.runtime_choice, self._runtime = select_runtime(
                self.model.net, self.config.fast.runtime,
                cache_key=(self.model_sha256, str(self.device)),
            )
        return self._runtime

    def _tile_for(self, h: int, w: int) -> int:
        return tiling.tile_size_for(h, w, self.config.fast.tile)

    def network(
        self, x: torch.Tensor, style_weights: torch.Tensor, hook: FeatureHook | None = None
    ) -> torch.Tensor:
        """Raw network output (B, 3, H, W) in [0, 1] for x (B or 1, 3, H, W), rows (B, S);
        tiles frames larger than the tile limit (see :mod:`vidstyle.fast.tiling`).
        ``hook``: see :meth:`InferenceNet.forward`; only when :meth:`supports_hooks`."""
        h, w = x.shape[-2:]
        tile = self._tile_for(h, w)
        if style_weights.dim() == 4:  # a style map: one pass, never tiled
            if tile:
                raise UsageError(f"per-person styles need frames under the tile limit; "
                                 f"{w}x{h} is over it: use a smaller --size")
            rt = self.runtime()
            if not rt.supports_style_maps:
                if self._tiler is None:
                    self._tiler = InferenceNet(self.model.net, dtype=torch.float32)
                with torch.inference_mode():
                    return self._tiler(x.to(_weights_device(self._tiler)),
                                       style_weights.to(_weights_device(self._tiler)),
                                       hook).float().cpu()
            return rt(x, style_weights, hook)
        if tile:
            if hook is not None:
                raise ValueError("tiled frames have no feature hook points")
            if self._tiler is None:
                self._tiler = InferenceNet(self.model.net, dtype=torch.float32)
            outs = []
            for k in range(style_weights.shape[0]):
                xk = x[k : k + 1] if x.shape[0] > 1 else x
                with torch.inference_mode():
                    outs.append(tiling.tiled_forward(self._tiler, xk, style_weights[k : k + 1],
                                                     tile=tile))
            return torch.cat(outs)
        if x.shape[0] == 1 and style_weights.shape[0] > 1:
            x = x.expand(style_weights.shape[0], -1, -1, -1)
        return self.runtime()(x, style_weights, hook)

    def supports_hooks(self, size: tuple[int, int]) -> bool:
        """Whether frames of ``size`` (h, w) run untiled (at their :meth:`network_size`)
        on a runtime with feature hooks."""
        return not self._tile_for(*self.network_size(size)) and self.runtime().supports_hooks

    def network_size(self, size: tuple[int, int]) -> tuple[int, int]:
        """(h, w) at which the network runs for frames of ``size`` (h, w): the working
        scale of ``--style-scale`` (see :func:`vidstyle.fast.scale.network_size`)."""
        return network_size(*size, self.config.fast.style_scale)

    def scaled_network(self, x: torch.Tensor, style_weights: torch.Tensor,
                       hook: FeatureHook | None = None) -> torch.Tensor:
        """:meth:`network` at the working scale: x (1, 3, H, W) shrunk to
        :meth:`network_size`, the output (B, 3, h, w) brought back to (B, 3, H, W) by
        :func:`~vidstyle.fast.scale.guided_upsample` with x as the guide. A style map
        (1, S, H, W) is shrunk the same way as x (still convex per pixel). ``hook`` sees
        the features of the shrunk frame."""
        size = tuple(x.shape[-2:])
        small = self.network_size(size)
        if small == size:
            return self.network(x, style_weights, hook)
        xs = shrink(x, small)
        if style_weights.dim() == 4:
            style_weights = shrink(style_weights, small)
        out = self.network(xs, style_weights, hook)
        return guided_upsample(out, xs, x)

    def stylize_tensor(self, x: torch.Tensor, hook: FeatureHook | None = None,
                       instances: Instances | None = None) -> torch.Tensor:
        """(1, 3, H, W) in [0, 1] at working size -> stylized (1, 3, H, W) with strength
        (and ``--preserve-color``); the network runs at the working scale
        (:meth:`scaled_network`). ``hook``: see :meth:`network`. ``instances``: the
        people of the frame at this size (per-person styles; see :meth:`layout`)."""
        fast = self.config.fast
        if not self.people:
            out = self.scaled_network(x, self.style_weights, hook)
            out = blend_strength(out, x.to(out.device, out.dtype), fast.strength)
            return keep_colors(out, x) if fast.preserve_color else out
        weights, people, faces = self.layout(instances, tuple(x.shape[-2:]))
        out = self.scaled_network(x, weights, hook)
        x = x.to(out.device, out.dtype)
        strength = fast.strength * (1.0 - fast.detail * faces)  # (1, 1, H, W)
        out = torch.lerp(x, out, strength.to(out))
        if fast.preserve_color:
            out = keep_colors(out, x)
        if self.config.style.keep_background:
            out = torch.lerp(x, out, people.to(out))
        return out

    def layout(self, instances: Instances | None, size: tuple[int, int]
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Where each style goes: (style map (1, S, H, W), people (1, 1, H, W), faces
        (1, 1, H, W)), all in [0, 1] at ``size``.

        Each person's feathered mask carries its style (``--instance``, else ``--style``),
        the rest the background's (``--background``, else ``--style``; with ``none`` the
        original pixels are put back outside the people afterwards); where masks overlap
        they share the pixel in proportion. ``faces``: feathered ellipses in the people's
        face boxes (for ``--detail``).
        """
        h, w = size
        bg = self._background.view(1, -1, 1, 1)
        if instances is None or len(instances) == 0:
            zero = torch.zeros(1, 1, h, w)
            return bg.expand(1, -1, h, w).contiguous(), zero, zero
        if instances.size != (h, w):
            raise ValueError(f"masks are {instances.size}, the frame {size}")
        masks, people_2d = person_weights(instances, 0.0)  # feathered by the segment stage
        people = people_2d[None, None]
        radius = self.config.segment.feather * math.hypot(h, w)
        rows = torch.stack([self._person_rows.get(pid, self.style_weights[0])
                            for pid in instances.ids])  # (N, S)
        style_map = torch.einsum("ns,nhw->shw", rows, masks)[None]
        style_map = style_map + (1.0 - people) * bg
        faces = torch.zeros(1, 1, h, w)
        if instances.faces is not None:
            faces = face_mask(instances.faces, size, radius)[None, None]
        return style_map, people, faces

    def stylize_many(self, image: torch.Tensor, style_vectors: torch.Tensor) -> torch.Tensor:
        """One image (1, 3, H, W) in several styles in one batched pass (at the working
        scale, see :meth:`scaled_network`).

        style_vectors: (B, S) rows (one-hot or mixes, e.g. from :meth:`style_vector`).
        Returns (B, 3, H, W) in [0, 1], strength applied; row b equals stylizing with
        style b alone.
        """
        if image.dim() != 4 or image.shape[0] != 1:
            raise ValueError(f"expected one image (1, 3, H, W), got {tuple(image.shape)}")
        sv = style_vectors.reshape(-1, self.model.net.num_styles).to(torch.float32)
        out = self.scaled_network(image, sv)
        return blend_strength(out, image.to(out.device, out.dtype).expand_as(out),
                              self.config.fast.strength)

    def stylize_rgb(self, rgb: np.ndarray) -> np.ndarray:
        """A still image (H, W, 3) uint8 -> stylized (h, w, 3) uint8 at the working size."""
        return to_uint8(self.stylize_tensor(self.prepare(rgb)))

    # -- the engine's frame protocol ----------------------------------------------------
    def reset(self) -> None:
        """Forget the video history (the next frame is a first frame)."""
        s = self.config.fast.stability
        self.stabilizer = Stabilizer(flow=None, stability=s) if s > 0 else None
        self._first = True

    def prepare(self, rgb: np.ndarray) -> torch.Tensor:
        """(H, W, 3) uint8 -> (1, 3, h, w) float32 at the working size (``--size``)."""
        h, w = rgb.shape[:2]
        if min(h, w) < 1:
            raise UsageError(f"frame size {w}x{h} is empty")
        return to_tensor(resize_uint8(rgb, working_size(h, w, self.config.fast.size)))

    def stylize(self, x: torch.Tensor, ctx: FrameContext) -> torch.Tensor:
        """One frame (1, 3, H, W) at working size; frames must come in order. With
        stabilization the network's features (at the working scale) are blended with the
        previous frame's, warped by ``ctx.pair`` (the frame's motion, resized to the
        features; where :meth:`supports_hooks`)."""
        st = self.stabilizer
        if st is None:
            return self.stylize_tensor(x, instances=ctx.instances)
        if self._first:
            st.feature_blend = self.supports_hooks(tuple(x.shape[-2:]))
            self._first = False
        hook = st.feature_hook(ctx.pair) if st.feature_blend else None
        return self.stylize_tensor(x, hook, instances=ctx.instances)

    def finish(self, y: torch.Tensor, ctx: FrameContext) -> torch.Tensor:
        """The output blend with the warped previous output (in order; encode thread)."""
        if self.stabilizer is None:
            return y
        return self.stabilizer.apply(ctx.pair, y)

    def observe(self, output: torch.Tensor, ctx: FrameContext) -> None:
        """Fast outputs are never cached: nothing to replay."""
        return None


def _weights_device(module: torch.nn.Module) -> torch.device:
    return next(module.parameters()).device


def resolve_model(spec: str | None, device: torch.device | str = "cpu") -> tuple[LoadedModel, str]:
    """Load ``spec`` (a model file path, a shipped model name, or None for the default).

    Returns (model, sha256 of its file). Raises WeightsError when missing or corrupt.
    """
    name = spec or DEFAULT_MODEL
    entries = read_manifest().get("models", {})
    if name in entries and not Path(name).suffix:
        model = load_shipped(name, device=device)
        return model, str(entries[name]["sha256"])
    path = Path(name).expanduser()
    if not path.is_file() and (DEFAULT_WEIGHTS_DIR / name).is_file():
        path = DEFAULT_WEIGHTS_DIR / name
    model = load_model(path, device=device)
    return model, sha256_file(path)


def make_fast_stylizer(*, config: RunConfig, device: torch.device | str = "cpu") -> FastStylizer:
    """Load the model of ``config.fast.model`` and map ``config.style`` to its style weights.

    An adjustable model (``--layer-weights``, or ``--model`` naming one) is baked into a
    plain network with one style row per look of the spec (:mod:`vidstyle.fast.looks`).
    Raises StyleError for a style the model lacks, UsageError for layer weights a model
    cannot take, WeightsError for a missing/corrupt model.
    """
    if config.fast.variations:  # K runs, each with its own weights: variation_plan
        raise UsageError("--variations applies to `vidstyle run` only (one run per "
                         "variation)")
    device = torch.device(device)
    spec = config.style
    adjusting = bool(spec.layer_weights or spec.instance_layers)
    name = config.fast.model
    if name is None and adjusting:
        if DEFAULT_ADJUSTABLE_MODEL not in read_manifest().get("models", {}):
            raise UsageError("--layer-weights needs an adjustable model and none is shipped: "
                             "train one (`vidstyle train --adjustable`) and pass --model")
        name = DEFAULT_ADJUSTABLE_MODEL
    model, sha = resolve_model(name, device)
    if model.adjustable:
        names = model.style_names
        model, spec, looks = bake_looks(model, spec, lambda mix: style_vector(mix, names))
        sha = fingerprint_of(sha, looks)  # also keys the runtime cache: one per bake
        config = config.replace(style=spec)
    elif adjusting:
        raise UsageError(f"--layer-weights needs an adjustable model; {name or DEFAULT_MODEL} "
                         f"is a plain one (use --model {DEFAULT_ADJUSTABLE_MODEL})")
    weights = style_vector(config.style.default, model.style_names)
    return FastStylizer(model=model, model_sha256=sha, style_weights=weights, config=config,
                        device=device)


__all__ = ["FastStylizer", "make_fast_stylizer", "resolve_model", "style_vector"]
