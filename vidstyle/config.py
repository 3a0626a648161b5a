"""Frozen configuration dataclasses: the one home of every default and valid value.

Each field carries its help text, its command-line flag and the methods it applies to
(``field(metadata=...)`` through :func:`setting`); :mod:`vidstyle.cli` generates its
options from them and pipeline files override them. Values are checked in
``__post_init__`` (a bad value is a :class:`~vidstyle.errors.UsageError` naming the flag),
so a config that exists is valid and nothing runs on a bad setting.

Every config has ``fingerprint()``: a short stable hash of its fields plus the package
version, used to decide whether cached work is still valid.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import types
import typing
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, get_args, get_origin

from vidstyle import __version__
from vidstyle.contracts import StyleMix, StyleSpec
from vidstyle.errors import UsageError

Method = Literal["optim", "fast"]
METHODS: tuple[Method, ...] = get_args(Method)
BOTH: tuple[Method, ...] = METHODS

#: Longest side of a working frame, pixels (``--size``).
MIN_SIZE, MAX_SIZE = 16, 8192
#: Range of ``--style-scale`` (0 also allowed: off).
MIN_STYLE_SCALE, MAX_STYLE_SCALE = 0.25, 8.0
#: Short side (pixels) of the fast network's input at ``--style-scale 1``
#: (see :mod:`vidstyle.fast.scale`).
STYLE_REFERENCE_SIDE = 720
#: ``--style-scale``: one flag, a field in each method's section (OptimConfig, FastConfig).
STYLE_SCALE_HELP = (
    "Stroke size (2 = strokes twice as large). optim: the style image's size relative to "
    "the output (> 0). fast: the same look at any resolution: the network runs on the "
    f"frame shrunk to short side {STYLE_REFERENCE_SIDE} / S (not enlarged at 1) and an "
    "edge-aware upsampler brings it to full size; 0 = off (network at full size, strokes "
    "fixed in pixels).")

FlowMethod = Literal["dis", "deepflow", "dualtvl1", "raft"]
#: Presets each flow backend accepts, and the default of each (the stabilizer, temporal
#: optimization and evaluation all use these).
FLOW_PRESETS: dict[str, tuple[str, ...]] = {
    "dis": ("ultrafast", "fast", "medium"),
    "raft": ("large", "small"),
    "deepflow": (),
    "dualtvl1": (),
}
DEFAULT_FLOW_PRESET: dict[str, str | None] = {
    "dis": "fast", "raft": "large", "deepflow": None, "dualtvl1": None,
}
X264_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow",
                "slower", "veryslow", "placebo")
Runtime = Literal["auto", "eager", "bf16", "fp16", "compile", "openvino", "ort", "ort-int8"]
RUNTIMES: tuple[str, ...] = get_args(Runtime)
#: The shipped fast model used when ``FastConfig.model`` is None.
DEFAULT_MODEL = "fast7"
#: The shipped adjustable model used for ``--layer-weights`` when no --model is given.
DEFAULT_ADJUSTABLE_MODEL = "adjustable3b"
#: Pixel (un)shuffle factors a fast network may have (``StyleNet``'s ``space_to_depth``).
SPACE_TO_DEPTH_FACTORS = (1, 2, 4)
#: Highest ``--layer-weights`` value (trained range 0..1; above 1 extrapolates).
MAX_LAYER_WEIGHT = 2.0
#: Most ``--variations`` in one run.
MAX_VARIATIONS = 64


def setting(default: Any = dataclasses.MISSING, *, help: str, flag: str | None = "",
            methods: tuple[Method, ...] = BOTH, group: str = "", metavar: str | None = None,
            example: str = "", default_factory: Any = dataclasses.MISSING) -> Any:
    """A config field with its help text, command-line ``flag`` (``""``: ``--name`` from
    the field name; None: no flag, pipeline files only), the ``methods`` it applies to,
    its ``group`` in the help and an ``example`` value."""
    meta = {"help": help, "flag": flag, "methods": methods, "group": group,
            "metavar": metavar, "example": example}
    if default_factory is not dataclasses.MISSING:
        return field(default_factory=default_factory, metadata=meta)
    return field(default=default, metadata=meta)


def fingerprint_of(*parts: Any) -> str:
    """Stable 16-hex-digit hash of JSON-serializable parts (dataclasses are expanded)."""

    def norm(x: Any) -> Any:
        if dataclasses.is_dataclass(x) and not isinstance(x, type):
            return {f.name: norm(getattr(x, f.name)) for f in dataclasses.fields(x)}
        if isinstance(x, dict):
            return {str(k): norm(v) for k, v in sorted(x.items())}
        if isinstance(x, (list, tuple)):
            return [norm(v) for v in x]
        if isinstance(x, float):
            return repr(x)
        return x

    blob = json.dumps([__version__, [norm(p) for p in parts]], sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def flag_of(f: dataclasses.Field) -> str | None:
    """The command-line flag of a config field (``--style-weight``), or None."""
    flag = f.metadata.get("flag", None)
    if flag is None:
        return None
    return "--" + (flag or f.name.replace("_", "-"))


class _Config:
    """Shared behaviour: fingerprint, replace, type and range checks of the fields."""

    def fingerprint(self) -> str:
        return fingerprint_of(self)

    def replace(self, **changes: Any):  # noqa: ANN201 - returns same type
        return dataclasses.replace(self, **changes)  # type: ignore[type-var]

    def _name(self, name: str) -> str:
        f = next(f for f in dataclasses.fields(self) if f.name == name)  # type: ignore[arg-type]
        return flag_of(f) or f"{type(self).__name__}.{name}"

    def _check_types(self) -> None:
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            fixed = coerce(value, hints[f.name], self._name(f.name))
            if fixed is not value:
                object.__setattr__(self, f.name, fixed)

    def _range(self, name: str, lo: float | None = None, hi: float | None = None, *,
               lo_open: bool = False) -> None:
        v = getattr(self, name)
        if v is None:
            return
        bad = (lo is not None and (v < lo or (lo_open and v == lo))) or (
            hi is not None and v > hi) or (isinstance(v, float) and not math.isfinite(v))
        if bad:
            lo_s = "" if lo is None else (f"> {lo}" if lo_open else f">= {lo}")
            hi_s = "" if hi is None else f"<= {hi}"
            want = " and ".join(s for s in (lo_s, hi_s) if s)
            raise UsageError(f"{self._name(name)} must be {want}, got {v}")


def coerce(value: Any, hint: Any, name: str) -> Any:
    """``value`` checked against the type ``hint`` (Literal, int, float, bool, str, tuples,
    Optional, StyleSpec); lists become tuples, ints become floats, style texts are parsed.
    Raises UsageError naming ``name``."""
    origin = get_origin(hint)
    args = get_args(hint)
    if origin is typing.Union or origin is types.UnionType:
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        errors = []
        for a in inner:
            try:
                return coerce(value, a, name)
            except UsageError as e:
                errors.append(e)
        raise errors[0]
    if origin is Literal:
        if value not in args:
            raise UsageError(f"{name}: {value!r} is not one of {', '.join(map(str, args))}")
        return value
    if hint is StyleSpec:
        if isinstance(value, (str, StyleSpec)):
            return StyleSpec.parse(value)
        raise UsageError(f"{name}: expected a style, got {value!r}")
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise UsageError(f"{name}: expected a list, got {value!r}")
        item = args[0]
        items = tuple(coerce(v, item, name) for v in value)
        return value if isinstance(value, tuple) and items == value else items
    if hint is bool:
        if not isinstance(value, bool):
            raise UsageError(f"{name}: expected true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise UsageError(f"{name}: expected a whole number, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise UsageError(f"{name}: expected a number, got {value!r}")
        return value if isinstance(value, float) else float(value)
    if hint is str:
        if not isinstance(value, str):
            raise UsageError(f"{name}: expected text, got {value!r}")
        return value
    return value


@dataclass(frozen=True)
class OptimConfig(_Config):
    """Gatys et al. optimization settings (per frame).

    Layer defaults are Gatys et al. 2016 for VGG19 (style relu1_1..relu5_1, content
    relu4_2) and Johnson et al. 2016 for VGG16; empty means the network's default.
    Weights are for Gram matrices normalized by C*H*W and mean-squared content error.
    """

    vgg: Literal["vgg19", "vgg16"] = setting(
        "vgg19", help="Loss network: vgg19 (Gatys) or vgg16 (Johnson).", methods=("optim",),
        example="vgg16", group="Optimization")
    size: int = setting(512, help="Longest side of the output in pixels.", methods=("optim",),
                        example="768", group="Common")
    iters: int = setting(300, help="Optimizer iterations per frame.", methods=("optim",),
                         example="500", group="Optimization")
    style_weight: float = setting(30.0, help="Weight of the style (Gram) loss.",
                                  methods=("optim",), example="100", group="Optimization")
    content_weight: float = setting(1.0, help="Weight of the content loss.",
                                    methods=("optim",), example="5", group="Optimization")
    tv_weight: float = setting(1e3, help="Weight of the total-variation smoothness loss.",
                               methods=("optim",), example="0", group="Optimization")
    style_scale: float = setting(1.0, help=STYLE_SCALE_HELP, methods=("optim",),
                                 example="2", group="Common", metavar="S")
    style_layers: tuple[str, ...] = setting(
        (), help="Style layers, e.g. relu1_1,relu2_1 (default: the network's).",
        methods=("optim",),
        example="relu2_1,relu3_1,relu4_1", group="Optimization", metavar="LAYERS")
    content_layers: tuple[str, ...] = setting(
        (), help="Content layers, e.g. relu4_2 (default: the network's).",
        methods=("optim",), example="relu3_2", group="Optimization", metavar="LAYERS")
    init: Literal["content", "style", "noise"] = setting(
        "content", help="Start image of the optimization.", methods=("optim",),
        example="noise", group="Optimization")
    optimizer: Literal["lbfgs", "adam"] = setting(
        "lbfgs", help="Optimizer.", methods=("optim",), example="adam", group="Optimization")
    lr: float = setting(0.02, help="Adam learning rate.", methods=("optim",),
                        example="0.05", group="Optimization")
    preserve_color: bool = setting(False, help="Keep the input's colours (style the "
                                   "luminance only).", methods=("optim",), group="Common")
    multiscale: int = setting(0, help="Coarse-to-fine levels (0 = automatic, 1 = single "
                              "scale).", methods=("optim",), example="1", group="Optimization")
    seed: int = setting(0, help="Random seed (runs are repeatable).", methods=("optim",),
                        example="7", group="Optimization")
    pool: Literal["max", "avg"] = setting("max", help="VGG pooling.", methods=("optim",),
                                          example="avg", group="Optimization")

    def __post_init__(self) -> None:
        self._check_types()
        self._range("size", MIN_SIZE, MAX_SIZE)
        self._range("iters", 1)
        for name in ("style_weight", "content_weight", "tv_weight", "multiscale"):
            self._range(name, 0)
        self._range("style_scale", 0, 64, lo_open=True)
        self._range("lr", 0, lo_open=True)

    def levels(self, longest: int) -> list[int]:
        """Longest side of each coarse-to-fine level ending at ``longest``.

        ``multiscale`` 0 means automatic: halve while the level stays >= 128 px, at most
        3 levels; 1 means single scale.
        """
        n = self.multiscale or 3
        sizes = [longest]
        while len(sizes) < n and sizes[-1] // 2 >= 128:
            sizes.append(sizes[-1] // 2)
        return sizes[::-1]


TemporalMode = Literal["none", "short", "long"]


@dataclass(frozen=True)
class TemporalConfig(_Config):
    """Ruder et al. 2016 video settings for the optimization method."""

    mode: TemporalMode = setting(
        "none", flag="temporal", help="Temporal consistency for video: none, short (previous "
        "frame) or long (long-term references).", methods=("optim",), example="long", group="Video")
    passes: int = setting(1, help="Multi-pass count (alternating directions).",
                          methods=("optim",), example="3", group="Video")
    # gamma of the temporal loss (RGB in [0, 1], content_weight 1, Caffe VGG features).
    # The paper's gamma/alpha = 200/5 on 0-255 pixels is 2.6e6 here; tuned to 1e8 with
    # benchmarks/eval_temporal.py, since warm-started frames get few iterations.
    temporal_weight: float = setting(1e8, help="Weight of the temporal loss.",
                                     methods=("optim",), example="5e7", group="Video")
    long_term: tuple[int, ...] = setting(
        (1, 10, 20, 40), help="Long-term frame offsets (--temporal long), e.g. 1,10,20,40.",
        methods=("optim",), example="1,5,10", group="Video", metavar="OFFSETS")
    # tuned: long+passes <= short on vtest and bikes (RESULTS.md)
    blend_delta: float = setting(0.8, flag=None, help="Multi-pass blend delta.",
                                 methods=("optim",))
    later_frame_iters: float = setting(
        0.5, flag=None, help="Fraction of --iters for warm-started frames.", methods=("optim",))

    def __post_init__(self) -> None:
        self._check_types()
        self._range("passes", 1)
        self._range("temporal_weight", 0)
        self._range("blend_delta", 0, 1)
        self._range("later_frame_iters", 0, 1, lo_open=True)
        if self.mode == "long" and (not self.long_term or min(self.long_term) < 1):
            raise UsageError(f"--long-term offsets must be >= 1, got {self.long_term}")


@dataclass(frozen=True)
class FlowConfig(_Config):
    """Optical flow between neighbouring frames (temporal optimization, fast
    stabilization, evaluation)."""

    method: FlowMethod = setting("dis", flag="flow", help="Optical flow backend.",
                                 example="deepflow", group="Video")
    preset: str | None = setting(
        None, flag="flow-preset", help="Flow preset: dis ultrafast|fast|medium (default "
        "fast), raft large|small (default large); deepflow and dualtvl1 have none.",
        example="medium", group="Video", metavar="PRESET")
    scale: float = setting(1.0, flag="flow-scale", help="Estimate flow at this fraction of "
                           "the frame size (0..1].", example="0.5", group="Video")
    weights_path: str | None = setting(None, flag="flow-weights", help="RAFT weights file "
                                       "(default: torchvision's cache).",
                                       example="raft_large.pth", group="Video",
                                       metavar="PATH")

    def __post_init__(self) -> None:
        self._check_types()
        self._range("scale", 0, 1, lo_open=True)
        presets = FLOW_PRESETS[self.method]
        if self.preset is not None and self.preset not in presets:
            have = f"use one of {', '.join(presets)}" if presets else "it has none"
            raise UsageError(f"--flow {self.method} has no preset {self.preset!r}: {have}")
        if self.weights_path is not None and self.method != "raft":
            raise UsageError("--flow-weights applies to --flow raft only")

    @property
    def resolved_preset(self) -> str | None:
        """The preset in effect (the method's default when None)."""
        return self.preset if self.preset is not None else DEFAULT_FLOW_PRESET[self.method]


@dataclass(frozen=True)
class EncodeConfig(_Config):
    """Output encoding (video outputs; stills are written losslessly by suffix)."""

    crf: int = setting(18, help="H.264 quality (0 = lossless .. 51; lower is better).",
                       example="23", group="Output")
    preset: str = setting("veryfast", flag="x264-preset", help="x264 speed preset.",
                          example="slow", group="Output", metavar="PRESET")
    copy_audio: bool = setting(True, flag="audio", help="Copy the input's audio.",
                               group="Output")

    def __post_init__(self) -> None:
        self._check_types()
        self._range("crf", 0, 51)
        if self.preset not in X264_PRESETS:
            raise UsageError(f"--x264-preset {self.preset!r}: use one of "
                             f"{', '.join(X264_PRESETS)}")


@dataclass(frozen=True)
class FastConfig(_Config):
    """Feed-forward network settings (inference)."""

    model: str | None = setting(None, help="Model: a shipped name (fast7; fast7_strong, more "
                                "style; fast7_s2d, 4x cheaper, for CPUs without bf16) or a "
                                "file from `vidstyle train` (default: fast7).", methods=("fast",),
                                example="runs/mine/model.pt", group="Fast network", metavar="MODEL")
    size: int | None = setting(None, help="Longest side of the output in pixels.",
                               methods=("fast",), example="1280", group="Common")
    strength: float = setting(
        1.0, help="Style strength 0..1: the network's output blended with the input pixels "
        "(1 = full style; lower keeps more of the content, e.g. faces and small objects).",
        methods=("fast",), example="0.6", group="Fast network")
    style_scale: float = setting(1.0, help=STYLE_SCALE_HELP, methods=("fast",), example="2",
                                 group="Common", metavar="S")
    stability: float = setting(
        0.7, help="Temporal stability 0..1 (0 = off): how much of the flow-warped previous "
        "frame's network features and output is kept.", methods=("fast",),
        example="0.9", group="Video")
    runtime: Runtime = setting("auto", help="Inference runtime (auto: bf16 on a CPU with "
                               "native bf16, fp16 on CUDA, else the faster of eager and ort "
                               "(ONNX Runtime, when installed); fp16 is for CUDA).",
                               methods=("fast",),
                               example="bf16", group="Fast network")
    tile: int = setting(0, help="Tile size in pixels for huge frames (0 = automatic).",
                        methods=("fast",), example="1024", group="Fast network")
    preserve_color: bool = setting(False, help="Keep the input's colours (style the "
                                   "luminance only).", methods=("fast",), group="Common")
    detail: float = setting(0.5, help="With per-person styles: how much the style strength "
                            "drops inside faces (0 = none, 1 = faces unstyled), so people stay "
                            "recognizable.", methods=("fast",), group="People", example="0.8")
    layer_weights: tuple[float, ...] = setting(
        (), help="Per-style-layer weights of an adjustable model (Babaeizadeh & Ghiasi), one "
        "per layer in the order `vidstyle styles --layers` prints; trained 0..1, up to 2 "
        "extrapolates (with a warning). Uses the shipped adjustable model unless --model "
        "names one.", methods=("fast",), group="Adjustable style", metavar="W1,W2,...",
        example="0.2,1,1,0.5,1")
    variations: int = setting(
        0, help="Write K outputs from seeded random layer weights, spread apart (OUT_v1.png "
        "...; a video keeps one setting for the whole clip); adjustable models.", methods=("fast",),
        group="Adjustable style", metavar="K", example="4")
    seed: int = setting(0, help="Random seed (runs are repeatable).", methods=("fast",),
                        example="7", group="Optimization")

    def __post_init__(self) -> None:
        self._check_types()
        self._range("size", MIN_SIZE, MAX_SIZE)
        self._range("variations", 0, MAX_VARIATIONS)
        for w in self.layer_weights:
            if not math.isfinite(w) or w < 0 or w > MAX_LAYER_WEIGHT:
                raise UsageError(f"--layer-weights: every weight must be in [0, "
                                 f"{MAX_LAYER_WEIGHT:g}], got {w:g}")
        if self.variations and self.layer_weights:
            raise UsageError("--variations draws the layer weights: leave out "
                             "--layer-weights")
        self._range("detail", 0, 1)
        self._range("strength", 0, 1)
        self._range("stability", 0, 1)
        v = self.style_scale
        if v != 0 and not (math.isfinite(v) and MIN_STYLE_SCALE <= v <= MAX_STYLE_SCALE):
            raise UsageError(f"--style-scale must be 0 (off) or {MIN_STYLE_SCALE:g}.."
                             f"{MAX_STYLE_SCALE:g}, got {v}")
        if self.tile < 0 or 0 < self.tile < 64:
            raise UsageError(f"--tile must be 0 (automatic) or >= 64 pixels, got {self.tile}")


@dataclass(frozen=True)
class SegmentConfig(_Config):
    """Instance masks of people (per-person styles: ``--instance``, ``--background``)."""

    backend: Literal["mediapipe", "maskrcnn", "matte"] = setting(
        "mediapipe", flag="segmenter", help="Person segmentation: mediapipe (offline "
        "default), maskrcnn (torchvision Mask R-CNN; weights in the torch cache or "
        "--mask-weights) or matte (a whole-frame person matte split among detected people; "
        "`python -m vidstyle.segment.human_models fetch` once).", group="People",
        example="maskrcnn")
    weights_path: str | None = setting(None, flag="mask-weights", help="Mask R-CNN weights "
                                       "file.", group="People", metavar="PATH",
                                       example="maskrcnn.pth")
    masks_dir: str | None = setting(None, flag="masks", help="Your own masks instead: a "
                                    "folder with one PNG per frame, pixel value = person id, "
                                    "0 = background.", group="People", metavar="DIR",
                                    example="masks/")
    feather: float = setting(0.006, help="Soft mask edge width, as a fraction of the frame "
                             "diagonal.", group="People", example="0.01")
    smooth: bool = setting(True, flag="mask-smoothing", help="Blend each frame's masks with "
                           "the previous frame's (flow-warped) where they agree.",
                           group="People")
    max_gap: float = setting(3.0, help="Seconds a person may be hidden and still get the "
                             "same id back.", group="People", example="5")
    detect_every: int = setting(10, help="MediaPipe in a video: run the full person "
                                "detection every N frames; in between, follow each person "
                                "from the previous frame and search again only around one "
                                "who is lost (much faster). 1: detect on every frame.",
                                group="People", metavar="N", example="5")
    segment_every: int = setting(1, help="In a video: run the segmenter on every N-th frame "
                                 "and carry the people's masks to the frames between by the "
                                 "optical flow (faster, but the mask edges flicker more). 1: "
                                 "segment every frame.", group="People", metavar="N",
                                 example="2")

    def __post_init__(self) -> None:
        self._check_types()
        self._range("feather", 0, 0.1)
        self._range("max_gap", 0)
        self._range("detect_every", 1)
        self._range("segment_every", 1)
        if self.weights_path is not None and self.backend != "maskrcnn":
            raise UsageError("--mask-weights applies to --segmenter maskrcnn only")
        if self.detect_every != 10 and (self.backend != "mediapipe" or self.masks_dir):
            raise UsageError("--detect-every applies to --segmenter mediapipe only")


@dataclass(frozen=True)
class RunConfig(_Config):
    """Everything a `vidstyle run` needs besides the paths."""

    style: StyleSpec = setting(
        default_factory=lambda: StyleSpec(StyleMix((("starry", 1.0),))),
        help="Style name (see `vidstyle styles`), image path, or a mix such as "
        "starry:0.6,wave:0.4.", group="Common", metavar="STYLE",
        example="starry:0.6,wave:0.4")
    method: Literal["auto", "optim", "fast"] = setting(
        "auto", help="auto: fast when the shipped network knows every style, else optim; "
        "optim: Gatys optimization (slow, best); fast: feed-forward network.",
        example="optim", group="Common")
    device: Literal["auto", "cpu", "cuda"] = setting("auto", help="Compute device.",
                                                     example="cpu", group="Common")
    max_frames: int | None = setting(None, help="Stylize only the first N frames.",
                                     example="30", group="Common", metavar="N")
    optim: OptimConfig = field(default_factory=OptimConfig)
    temporal: TemporalConfig = field(default_factory=TemporalConfig)
    flow: FlowConfig = field(default_factory=FlowConfig)
    encode: EncodeConfig = field(default_factory=EncodeConfig)
    fast: FastConfig = field(default_factory=FastConfig)
    segment: SegmentConfig = field(default_factory=SegmentConfig)

    def __post_init__(self) -> None:
        self._check_types()
        self._range("max_frames", 1)

    def stylize_fingerprint(self) -> str:
        """Fingerprint of what determines stylized frames (not encoding, device, limits)."""
        if self.method == "fast":
            flow = self.flow if self.uses_flow else None
            segment = self.segment if self.style.per_person else None
            return fingerprint_of(self.method, self.style, self.fast, flow, segment)
        temporal = self.temporal if self.temporal.mode != "none" else None
        flow = self.flow if temporal is not None else None
        return fingerprint_of(self.method, self.style, self.optim, temporal, flow)

    @property
    def uses_flow(self) -> bool:
        """Whether the chosen method needs optical flow with these settings."""
        if self.method == "fast":
            return self.fast.stability > 0 or self.style.per_person
        return self.method == "optim" and self.temporal.mode != "none"


Backend = Literal["local", "ray"]


@dataclass(frozen=True)
class BatchConfig(_Config):
    """How `vidstyle batch` runs its items: where, how many at once, how long videos are
    split. None of it shapes an output (receipts do not record it): any backend finishes
    or skips the work of another."""

    backend: Backend = setting(
        "local", help="Where items run: local (this machine, --jobs processes) or ray "
        "(tasks on a Ray cluster; needs `pip install vidstyle[ray]`).", group="Batch",
        example="ray")
    ray_address: str | None = setting(
        None, help="Ray cluster to join (its head's HOST:PORT, or auto); default: start a "
        "one-machine cluster here, loopback only, stopped at the end.", group="Batch",
        metavar="ADDR", example="10.0.0.5:6379")
    jobs: int = setting(
        1, help="Items at once on this machine: worker processes (local), or the CPUs of "
        "the Ray cluster started here.", group="Batch", metavar="N", example="2")
    cpus_per_item: int = setting(
        1, help="CPU threads of one item in a worker process (its Ray task's CPU count).",
        group="Batch", metavar="N", example="2")
    chunk_frames: int = setting(
        0, help="Split fast-method videos longer than this into chunks of this many frames "
        "for different workers, joined in order (0 = whole videos).", group="Batch",
        metavar="N", example="300")
    warmup: int = setting(
        16, flag="chunk-warmup", help="Frames before each chunk stylized again (and "
        "dropped) so the stabilization carries over the join.", group="Batch",
        metavar="N", example="20")
    max_retries: int = setting(
        2, help="Times an item whose worker process died is run again.", group="Batch",
        metavar="N", example="3")

    def __post_init__(self) -> None:
        self._check_types()
        for name in ("jobs", "cpus_per_item"):
            self._range(name, 1, 1024)
        for name in ("chunk_frames", "warmup", "max_retries"):
            self._range(name, 0)
        if self.ray_address is not None and self.backend != "ray":
            raise UsageError("--ray-address applies to --backend ray only")


@dataclass(frozen=True)
class ExploreConfig(_Config):
    """Settings of ``vidstyle explore``: a grid of one image stylized by an adjustable model
    while two layer weights sweep 0..1 (the other layers at the style's default)."""

    style: str = setting("starry", help="Style name or mix of the adjustable model.",
                         group="Common", metavar="STYLE", example="scream")
    model: str | None = setting(None, help="Adjustable model: shipped name or file [default: "
                                f"{DEFAULT_ADJUSTABLE_MODEL}].", group="Common",
                                metavar="MODEL", example="runs/adj/model.pt")
    rows: str = setting("relu1_1", help="Style layer whose weight changes down the rows "
                        "(see `vidstyle styles --layers`).", group="Grid", metavar="LAYER",
                        example="relu2_1")
    cols: str = setting("relu4_1", help="Style layer whose weight changes across the "
                        "columns.", group="Grid", metavar="LAYER", example="relu3_1")
    steps: int = setting(5, help="Values per layer, evenly from 0 to 1 (a steps x steps "
                         "grid).", group="Grid", metavar="N", example="4")
    size: int = setting(256, help="Long side of each cell in pixels.", group="Grid",
                        metavar="PX", example="320")

    def __post_init__(self) -> None:
        self._check_types()
        self._range("steps", 2, 9)
        self._range("size", 32, 1024)


#: The sections of RunConfig whose fields are settings, in help order.
SECTIONS: tuple[str, ...] = ("", "optim", "temporal", "flow", "fast", "segment", "encode")


def section_type(section: str) -> type:
    """The dataclass of a RunConfig section ("" = RunConfig's own fields)."""
    if not section:
        return RunConfig
    return typing.get_type_hints(RunConfig)[section]


@dataclass(frozen=True)
class Setting:
    """One command-line setting: its flag, the fields it sets, its type and help."""

    flag: str
    targets: tuple[tuple[str, str], ...]  # (section, field name)
    hint: Any
    default: Any
    help: str
    methods: tuple[Method, ...]
    group: str
    metavar: str | None


def settings() -> list[Setting]:
    """Every flagged setting of RunConfig, one per flag (``--size`` and
    ``--preserve-color`` set the field of the chosen method's section)."""
    out: dict[str, Setting] = {}
    for section in SECTIONS:
        cls = section_type(section)
        hints = typing.get_type_hints(cls)
        defaults = cls()
        for f in dataclasses.fields(cls):
            if "help" not in f.metadata:
                continue
            flag = flag_of(f)
            if flag is None:
                continue
            target = (section, f.name)
            methods = tuple(f.metadata["methods"])
            if flag in out:
                prev = out[flag]
                out[flag] = dataclasses.replace(
                    prev, targets=prev.targets + (target,),
                    methods=tuple(dict.fromkeys(prev.methods + methods)))
                continue
            out[flag] = Setting(flag, (target,), hints[f.name], getattr(defaults, f.name),
                                f.metadata["help"], methods, f.metadata["group"] or "Other",
                                f.metadata["metavar"])
    return list(out.values())


def _set_field(cfg: RunConfig, section: str, name: str, value: Any) -> RunConfig:
    if not section:
        return dataclasses.replace(cfg, **{name: value})
    sub = dataclasses.replace(getattr(cfg, section), **{name: value})
    return dataclasses.replace(cfg, **{section: sub})


def with_settings(cfg: RunConfig, values: Mapping[str, Any], *, method: Method) -> RunConfig:
    """``cfg`` with command-line settings applied: ``values`` maps flags (``--iters``)
    to values given by the user (None = not given). ``method`` is the resolved method.

    A setting that does not apply to ``method`` is a UsageError that says so. Values are
    validated by the config classes.
    """
    table = {s.flag: s for s in settings()}
    for flag, value in values.items():
        if value is None:
            continue
        s = table.get(flag)
        if s is None:
            raise UsageError(f"unknown setting {flag}")
        if method not in s.methods:
            only = " and ".join(s.methods)
            raise UsageError(f"{flag} applies to the {only} method only, not --method {method}")
        for section, name in s.targets:
            sec_methods = _section_methods(section, name)
            if method in sec_methods:
                cfg = _set_field(cfg, section, name, value)
    return cfg


def _section_methods(section: str, name: str) -> tuple[Method, ...]:
    f = next(f for f in dataclasses.fields(section_type(section)) if f.name == name)
    return tuple(f.metadata.get("methods", BOTH))


def check_applicable(cfg: RunConfig, given: set[str], *,
                     stages: Collection[str] | None = None) -> None:
    """Settings given that have no effect with the chosen settings: a UsageError.

    ``given`` are flags the user set; ``stages`` the stage kinds of the pipeline (None:
    all). Flow settings (and ``--stability``) need a flow stage, and a method that uses
    flow (``--temporal short|long`` with optim; ``--stability`` > 0 with fast)."""
    flow_flags = {flag_of(f) for f in dataclasses.fields(FlowConfig)}
    if stages is not None and "flow" not in stages:
        used = given & (flow_flags | {"--stability"})
        if used:
            raise UsageError(f"{', '.join(sorted(used))} has no effect: the pipeline has no "
                             "flow stage")
    used = given & flow_flags
    if used and not cfg.uses_flow:
        why = ("--temporal none" if cfg.method == "optim" else "--stability 0")
        raise UsageError(f"{', '.join(sorted(used))} has no effect with {why}: optical flow "
                         "is used by --temporal short|long (optim) and the fast method's "
                         "stabilization")
    if cfg.method == "fast" and "--seed" in given and not cfg.fast.variations:
        raise UsageError("--seed has no effect with the fast method without --variations")
    if cfg.method != "optim":
        return  # other methods' options were refused by with_settings
    if "--lr" in given and cfg.optim.optimizer != "adam":
        raise UsageError("--lr applies to --optimizer adam only (L-BFGS takes no learning "
                         "rate)")
    used = given & {"--passes", "--temporal-weight", "--long-term"}
    if used and cfg.temporal.mode == "none":
        raise UsageError(f"{', '.join(sorted(used))} has no effect with --temporal none: "
                         "use --temporal short or long")
    if "--long-term" in given and cfg.temporal.mode != "long":
        raise UsageError("--long-term applies to --temporal long only")


def check_output_settings(given: set[str], *, output: str, still: bool) -> None:
    """Encoding flags given (``given``) for a still-image ``output`` (``still``): a
    UsageError, since stills are written losslessly by suffix, without audio."""
    shown = {}  # flag -> as the user may have typed it (--audio/--no-audio)
    for f in dataclasses.fields(EncodeConfig):
        flag = flag_of(f)
        if flag is not None:
            shown[flag] = f"{flag}/--no-{flag[2:]}" if f.default is True else flag
    used = sorted(shown[f] for f in given if f in shown)
    if used and still:
        raise UsageError(f"{', '.join(used)} applies to video outputs only, and {output} is "
                         "a still image")


def check_people(cfg: RunConfig, given: set[str]) -> None:
    """People settings given without per-person styles: a UsageError."""
    flags = {flag_of(f) for f in dataclasses.fields(SegmentConfig)} | {"--detail"}
    used = given & flags
    if used and not cfg.style.per_person:
        raise UsageError(f"{', '.join(sorted(used))} needs per-person styles: add "
                         "--instance ID=STYLE or --background STYLE|none")


def apply_params(obj: Any, params: Mapping[str, Any], where: str) -> Any:
    """``obj`` (a config dataclass) with ``params`` (field name -> value) from a pipeline
    file; an unknown name is a UsageError naming ``where``."""
    names = {f.name for f in dataclasses.fields(obj)}
    unknown = set(params) - names
    if unknown:
        raise UsageError(f"{where}: unknown setting(s) {', '.join(sorted(unknown))} (known: "
                         f"{', '.join(sorted(names))})")
    return dataclasses.replace(obj, **dict(params))


__all__ = [
    "DEFAULT_FLOW_PRESET",
    "DEFAULT_MODEL",
    "FLOW_PRESETS",
    "MAX_SIZE",
    "METHODS",
    "MIN_SIZE",
    "RUNTIMES",
    "X264_PRESETS",
    "BatchConfig",
    "DEFAULT_ADJUSTABLE_MODEL",
    "MAX_LAYER_WEIGHT",
    "EncodeConfig",
    "ExploreConfig",
    "FastConfig",
    "FlowConfig",
    "OptimConfig",
    "RunConfig",
    "SegmentConfig",
    "Setting",
    "TemporalConfig",
    "apply_params",
    "check_applicable",
    "check_output_settings",
    "coerce",
    "fingerprint_of",
    "settings",
    "with_settings",
]
