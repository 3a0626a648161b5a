"""Contracts between the layers: progress events, the typed style spec, the frame context
a stylizer receives, and the stylizer protocols the engine runs.

A leaf module: it imports only the standard library and :mod:`vidstyle.errors`, so every
layer (media, flow, optim, fast, engine, batch, cli) may use it without import cycles.
Tensors follow the house convention: float32 RGB in [0, 1] shaped (B, 3, H, W); flow
(B, 2, H, W) in pixels; masks in [0, 1].
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol, runtime_checkable

from vidstyle.errors import StyleError

if TYPE_CHECKING:  # pragma: no cover - types only
    import numpy as np
    import torch

# -- progress --------------------------------------------------------------------------


@dataclass(frozen=True)
class ProgressEvent:
    """What the library reports: stage name, units done/total, and optional detail.

    ``iteration``/``iterations``: the optimizer's progress inside one frame.
    """

    stage: str
    done: int
    total: int | None
    detail: str = ""
    iteration: int | None = None
    iterations: int | None = None


ProgressFn = Callable[[ProgressEvent], None]


def no_progress(_: ProgressEvent) -> None:
    """A progress callback that ignores every event."""
    return None


# -- styles ----------------------------------------------------------------------------

_WEIGHT = re.compile(r"^(?P<ref>.+):(?P<w>[^:/\\]+)$")


@dataclass(frozen=True)
class StyleMix:
    """One look: style references (a name or an image path) with convex weights.

    ``parts`` are (reference, weight) pairs with weights > 0 summing to 1, in the order
    given; the same reference twice is merged. ``"starry"`` is ``(("starry", 1.0),)``.
    """

    parts: tuple[tuple[str, float], ...]

    def __post_init__(self) -> None:
        if not self.parts:
            raise StyleError("empty style")
        total = sum(w for _, w in self.parts)
        if not math.isclose(total, 1.0, rel_tol=1e-6) or any(w <= 0 for _, w in self.parts):
            raise StyleError(f"style weights must be > 0 and sum to 1, got {self.parts}")

    @classmethod
    def parse(cls, text: str) -> StyleMix:
        """``"starry"``, ``"my.jpg"`` or ``"starry:0.6,wave:0.4"`` -> StyleMix.

        Weights are normalized to sum 1; a part without a weight counts 1; a part with
        weight 0 is dropped. Raises StyleError for an empty text, a weight that is not a
        finite number >= 0, or weights that sum to zero. A reference containing ``:``
        (e.g. ``C:/art.jpg:0.5``) keeps all but the last ``:number``.
        """
        raw = [p.strip() for p in str(text).split(",")]
        if not any(raw):
            raise StyleError("empty --style: give a style name, an image path or a mix")
        merged: dict[str, float] = {}
        for part in raw:
            if not part:
                raise StyleError(f"empty part in style mix {text!r}")
            ref, weight = part, 1.0
            m = _WEIGHT.match(part)
            if m and not Path(part).exists():
                ref = m.group("ref").strip()
                try:
                    weight = float(m.group("w"))
                except ValueError:
                    raise StyleError(f"bad style weight in {part!r}: expected a number "
                                     "after ':' (e.g. starry:0.6,wave:0.4)") from None
            if not math.isfinite(weight) or weight < 0:
                raise StyleError(f"style weight must be a finite number >= 0 in {part!r}")
            if not ref:
                raise StyleError(f"missing style name in {part!r}")
            merged[ref] = merged.get(ref, 0.0) + weight
        total = sum(merged.values())
        if total <= 0:
            raise StyleError(f"style weights sum to zero in {text!r}")
        return cls(tuple((r, w / total) for r, w in merged.items() if w > 0))

    @property
    def refs(self) -> tuple[str, ...]:
        return tuple(r for r, _ in self.parts)

    @property
    def is_single(self) -> bool:
        return len(self.parts) == 1

    def __str__(self) -> str:
        if self.is_single:
            return self.parts[0][0]
        return ",".join(f"{r}:{_fmt(w)}" for r, w in self.parts)

    def slug(self) -> str:
        """A file-name-safe text that tells mixes apart (``starry60-wave40``)."""
        if self.is_single:
            return _safe(Path(self.parts[0][0]).stem if _is_path(self.parts[0][0])
                         else self.parts[0][0])
        return "-".join(f"{_safe(Path(r).stem if _is_path(r) else r)}{round(w * 100)}"
                        for r, w in self.parts)


@dataclass(frozen=True)
class StyleSpec:
    """What to paint with, parsed once from the command line.

    ``default``: the style of the whole frame. ``instances``: (person id, style) pairs
    for a per-person style (ids as ``vidstyle masks`` numbers them); ``background``: the
    style outside every person (None: ``default``); ``keep_background``: leave the
    background's pixels unchanged. ``layer_weights``: per-style-layer weights for
    adjustable models (empty: the model's default). ``instance_layers``: (person id,
    layer weights) pairs, a person's own layer weights (``--instance 1=wave@0.2,1,1,0.5,1``;
    a person without keeps ``layer_weights``).
    """

    default: StyleMix
    instances: tuple[tuple[int, StyleMix], ...] = ()
    background: StyleMix | None = None
    keep_background: bool = False
    layer_weights: tuple[float, ...] = ()
    instance_layers: tuple[tuple[int, tuple[float, ...]], ...] = ()

    @classmethod
    def parse(cls, text: str | StyleSpec) -> StyleSpec:
        """A ``--style`` text (name, image path or mix) -> StyleSpec (a StyleSpec is kept)."""
        if isinstance(text, StyleSpec):
            return text
        return cls(StyleMix.parse(text))

    def with_people(self, instances: list[str] | tuple[str, ...] = (),
                    background: str | None = None) -> StyleSpec:
        """This spec with ``--instance ID=STYLE[@W1,W2,...]`` texts and ``--background
        STYLE|none``. ``@W1,W2,...``: the person's own layer weights (adjustable models).

        Raises StyleError for a malformed item, an id below 1 or given twice.
        """
        pairs: dict[int, StyleMix] = dict(self.instances)
        layers: dict[int, tuple[float, ...]] = dict(self.instance_layers)
        for item in instances:
            ident, sep, style = str(item).partition("=")
            style, at, weights = style.partition("@")
            try:
                pid = int(ident.strip())
            except ValueError:
                pid = 0
            if not sep or pid < 1 or not style.strip():
                raise StyleError(f"bad --instance {item!r}: expected ID=STYLE with ID >= 1, "
                                 "e.g. 1=wave or 2=scream:0.5,udnie:0.5")
            if pid in pairs:
                raise StyleError(f"--instance {pid} is given twice")
            pairs[pid] = StyleMix.parse(style)
            if at:
                layers[pid] = parse_layer_weights(weights, f"--instance {item}")
        keep, bg = self.keep_background, self.background
        if background is not None:
            if background.strip().lower() == "none":
                keep, bg = True, None
            else:
                keep, bg = False, StyleMix.parse(background)
        return StyleSpec(self.default, tuple(sorted(pairs.items())), bg, keep,
                         self.layer_weights, tuple(sorted(layers.items())))

    def layers_for(self, person: int) -> tuple[float, ...]:
        """The layer weights of person ``person`` (``layer_weights`` when not given)."""
        return dict(self.instance_layers).get(person, self.layer_weights)

    @property
    def per_person(self) -> bool:
        """Whether people get something else than the whole frame (needs instance masks)."""
        return bool(self.instances) or self.background is not None or self.keep_background

    def mix_for(self, person: int) -> StyleMix:
        """The style of person ``person`` (the default when not given)."""
        return dict(self.instances).get(person, self.default)

    def mixes(self) -> tuple[StyleMix, ...]:
        """Every distinct mix the spec uses (default first)."""
        out = [self.default]
        for _, m in self.instances:
            out.append(m)
        if self.background is not None:
            out.append(self.background)
        return tuple(dict.fromkeys(out))

    def refs(self) -> tuple[str, ...]:
        """Every style reference the spec uses, in order of first use."""
        return tuple(dict.fromkeys(r for m in self.mixes() for r in m.refs))

    @property
    def is_plain(self) -> bool:
        """One style (or mix) for the whole frame, default layer weights."""
        return (not self.instances and self.background is None and not self.keep_background
                and not self.layer_weights and not self.instance_layers)

    def __str__(self) -> str:
        text = str(self.default)
        own = dict(self.instance_layers)
        for i, m in self.instances:
            extra = ("@" + ",".join(_fmt(w) for w in own[i])) if i in own else ""
            text += f" [{i}={m}{extra}]"
        if self.keep_background:
            text += " [background=none]"
        elif self.background is not None:
            text += f" [background={self.background}]"
        if self.layer_weights:
            text += " [layers=" + ",".join(_fmt(w) for w in self.layer_weights) + "]"
        return text

    def slug(self) -> str:
        """File-name-safe text telling specs apart (no ``:``, ``,``, spaces or slashes)."""
        s = self.default.slug()
        own = dict(self.instance_layers)
        for i, m in self.instances:
            s += f"_p{i}-{m.slug()}"
            if i in own:
                s += "_l" + "-".join(_fmt(w).replace(".", "p") for w in own[i])
        if self.keep_background:
            s += "_bg-none"
        elif self.background is not None:
            s += f"_bg-{self.background.slug()}"
        if self.layer_weights:
            s += "_l" + "-".join(_fmt(w).replace(".", "p") for w in self.layer_weights)
        return s


def parse_layer_weights(text: str, where: str) -> tuple[float, ...]:
    """``"0.2,1,1,0.5,1"`` -> (0.2, 1.0, 1.0, 0.5, 1.0); StyleError naming ``where`` for an
    empty list or a value that is not a finite number (ranges are the model's to check)."""
    parts = [p.strip() for p in str(text).split(",")]
    try:
        values = tuple(float(p) for p in parts)
    except ValueError:
        values = ()
    if not values or not all(math.isfinite(v) for v in values):
        raise StyleError(f"bad layer weights in {where}: expected numbers separated by "
                         "commas, e.g. 0.2,1,1,0.5,1")
    return values


def _fmt(w: float) -> str:
    return f"{w:.4g}"


def _is_path(ref: str) -> bool:
    return "/" in ref or "\\" in ref or Path(ref).suffix != ""


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-.") or "style"


# -- frames and their context ------------------------------------------------------------


@dataclass(frozen=True)
class FramePair:
    """Motion between the previous frame and this one (working size, CPU tensors).

    forward: (1, 2, H, W) flow previous -> this; backward: (1, 2, H, W) flow this ->
    previous, in pixels. mask: (1, 1, H, W) forward-backward consistency in {0, 1} (1 =
    the previous frame's pixel is visible and reliable here). score: fraction of
    consistent pixels. cut: the pair crosses a shot cut (nothing temporal should cross).
    checked: the masks stage ran (False: the mask is all ones and nothing may be derived
    from the flows' consistency, e.g. a pipeline without the masks stage). agreement:
    (1, 1, H, W) in [0, 1], how well the backward flow warps the previous frame onto
    this one (:func:`vidstyle.flow.photometric_agreement`), or None (no masks stage).
    inconsistency: (1, 1, H, W) the forward-backward error over its tolerance
    (:func:`vidstyle.flow.inconsistency`; the mask is where it is <= 1; soft weights
    derive from it), or None (no masks stage).
    """

    forward: torch.Tensor
    backward: torch.Tensor
    mask: torch.Tensor
    score: float
    cut: bool
    checked: bool = True
    agreement: torch.Tensor | None = None
    inconsistency: torch.Tensor | None = None


@dataclass(frozen=True)
class Instances:
    """People found in one frame (full frame resolution, CPU tensors).

    masks: (N, H, W) float32 soft masks in [0, 1]; boxes: (N, 4) float32 pixel boxes
    (x0, y0, x1, y1); scores: (N,) detection confidences in [0, 1]; ids: N instance ids
    (>= 1; 0 means "not assigned yet": the tracker numbers people left to right in the
    first frame they appear in). faces: (N, 4) face boxes in pixels, rows of NaN where a
    person's face was not found (None when the backend gives no face boxes).
    """

    masks: torch.Tensor
    boxes: torch.Tensor
    scores: torch.Tensor
    ids: tuple[int, ...]
    faces: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def size(self) -> tuple[int, int]:
        """(H, W) of the frame the masks cover."""
        return int(self.masks.shape[-2]), int(self.masks.shape[-1])


@dataclass
class FrameContext:
    """What the engine hands a frame stylizer with each frame.

    index: the frame's number (0-based); total: the frame count when known. size: the
    working size (h, w). pair: motion to the previous frame (None for the first frame,
    when the pipeline has no flow stage, or when the stylizer does not ask for it).
    instances: the people of this frame at the working size, tracked (ids stable over
    the clip), when the stylizer asks for them. alpha: the source frame's alpha plane
    (H, W) uint8 or None. progress: where a slow stylizer reports its iterations.
    """

    index: int
    size: tuple[int, int]
    total: int | None = None
    pair: FramePair | None = None
    instances: Instances | None = None
    alpha: np.ndarray | None = None
    progress: ProgressFn = no_progress


# -- stylizers ---------------------------------------------------------------------------


@dataclass(frozen=True)
class StylizerNeeds:
    """What a stylizer asks of the engine (typed, not probed).

    flow: per-frame motion to the previous frame (:class:`FramePair`) in the context.
    cache: outputs are costly: the engine keeps each finished frame in the work
    directory (resume after a kill) instead of streaming. instances: the people of each
    frame (:class:`Instances`, tracked) in the context.
    """

    flow: bool = False
    cache: bool = False
    instances: bool = False


@runtime_checkable
class FrameStylizer(Protocol):
    """Stylizes one frame at a time, in order (the fast network, per-frame optimization).

    ``prepare`` turns a decoded (H, W, 3) uint8 frame into the (1, 3, h, w) float32
    tensor at the stylizer's working size (the engine calls it in its decode thread);
    ``stylize`` gets that tensor and returns (1, 3, h, w) in [0, 1] on the CPU;
    ``finish`` runs afterwards in the encode thread, in order (e.g. an output blend);
    ``observe`` is called instead of both for a frame whose output was reused from the
    work directory, so a stateful stylizer sees the same history as an uninterrupted run.
    """

    kind: ClassVar[Literal["frame"]]
    needs: StylizerNeeds

    def fingerprint(self) -> str: ...

    def prepare(self, rgb: np.ndarray) -> torch.Tensor: ...

    def stylize(self, x: torch.Tensor, ctx: FrameContext) -> torch.Tensor: ...

    def finish(self, y: torch.Tensor, ctx: FrameContext) -> torch.Tensor: ...

    def observe(self, output: torch.Tensor, ctx: FrameContext) -> None: ...


class ClipSource(Protocol):
    """The engine's decoded clip as a clip stylizer sees it (working size, on disk):
    frame count, size (h, w), a content hash per frame, and each frame's PNG."""

    n: int
    size: tuple[int, int]
    hashes: list[str]

    def frame_path(self, i: int) -> Path: ...

    def frame(self, i: int) -> torch.Tensor: ...


class PairFlows(Protocol):
    """The engine's flow stage: cached flows between any two frames of the clip."""

    def get(self, a: int, b: int) -> Any: ...

    def prefetch(self, pairs: list[tuple[int, int]]) -> None: ...

    def retain(self, pairs: set[tuple[int, int]]) -> None: ...


class ClipStylizer(Protocol):
    """Stylizes a whole clip, frames in any order and several passes (temporal
    optimization). The engine decodes the clip to the work directory, offers cached
    flows between any two frames, and encodes the frames the stylizer writes into
    ``out`` (``frame_NNNNNN.png``)."""

    kind: ClassVar[Literal["clip"]]
    needs: StylizerNeeds

    def fingerprint(self) -> str: ...

    def prepare(self, rgb: np.ndarray) -> torch.Tensor: ...

    def stylize_clip(self, *, clip: ClipSource, flows: PairFlows | None, out: Any,
                     work: Any, progress: ProgressFn,
                     people: Callable[[int], Instances] | None = None) -> tuple[int, int]: ...


Stylizer = FrameStylizer | ClipStylizer


def frame_unit(i: int) -> str:
    """Artifact name of frame ``i`` in a work-directory stage."""
    return f"frame_{i:06d}.png"


def limited(frames: Iterator[Any], n: int | None) -> Iterator[Any]:
    """The frames of ``frames`` whose index is below ``n`` (all when None)."""
    for frame in frames:
        if n is not None and frame.index >= n:
            break
        yield frame


__all__ = [
    "ClipSource",
    "ClipStylizer",
    "FrameContext",
    "FramePair",
    "Instances",
    "FrameStylizer",
    "PairFlows",
    "ProgressEvent",
    "ProgressFn",
    "StyleMix",
    "StyleSpec",
    "Stylizer",
    "StylizerNeeds",
    "frame_unit",
    "limited",
    "no_progress",
    "parse_layer_weights",
]
