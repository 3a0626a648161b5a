"""Settings of a training run: :class:`TrainConfig`, its checks, ``field=value`` parsing and
the settings stored in a checkpoint.

:class:`TrainConfig` is the one home of the defaults and valid values of a training run, as
:mod:`vidstyle.config` is for ``vidstyle run``: each field carries its help text, its
``vidstyle train`` option (if any), help section and example (:func:`train_setting`), and
``__post_init__`` checks types (``Literal`` choices), ranges and the rules between fields,
raising a UsageError that names what the user typed: the option of a field (:data:`FLAGS`,
e.g. ``content_dirs`` -> ``--content-dir``), or ``--set field=...`` for the fields without
one. The CLI generates the ``train`` options from these fields.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

from vidstyle.config import SPACE_TO_DEPTH_FACTORS, _Config, flag_of
from vidstyle.errors import InputError, UsageError

#: The seven named styles of the shipped model, in model order.
DEFAULT_STYLES: tuple[str, ...] = (
    "starry",
    "scream",
    "wave",
    "composition_vii",
    "shipwreck",
    "udnie",
    "woman_with_hat",
)

#: Help sections of the ``vidstyle train`` options, in order.
TRAIN_GROUPS = ("Styles and data", "Training", "Start from a model", "Adjustable", "Output",
                "Run", "Other")


def train_setting(default: Any, *, help: str, flag: str | None = None, group: str = "",
                  example: str = "", metavar: str | None = None,
                  repeat: bool = False) -> Any:
    """A TrainConfig field with its help text and ``vidstyle train`` option: ``flag``
    ``""`` is ``--name`` from the field name, ``"content-dir"`` names it, None (the
    default) means none (``--set field=value`` only). ``repeat``: a list option given
    once per item (``--video a.mp4 --video b.mp4``) instead of comma-separated."""
    meta = {"help": help, "flag": flag, "group": group, "example": example,
            "metavar": metavar, "repeat": repeat}
    return dataclasses.field(default=default, metadata=meta)


Device = Literal["auto", "cpu", "cuda"]
Precision = Literal["auto", "bf16", "fp32"]
ModelDtype = Literal["fp16", "fp32"]
LossNetName = Literal["vgg19", "vgg16"]


@dataclass(frozen=True)
class TrainConfig(_Config):
    """Every setting of a training run. Paths are strings; tuples for lists; None for an
    optional setting not given."""

    styles: tuple[str, ...] = train_setting(
        DEFAULT_STYLES, flag="", group="Styles and data", metavar="STYLES",
        help="Styles to train: names (packaged or in style_dirs) or NAME=IMAGE items, "
        "comma-separated.", example="starry,wave,mine=painting.jpg")
    style_dirs: tuple[str, ...] = train_setting(
        (), help="Extra folders searched for <name>.* and kit file names (after the "
        "packaged styles).")
    content_dirs: tuple[str, ...] = train_setting(
        (), flag="content-dir", group="Styles and data", metavar="DIR", repeat=True,
        help="Folder of training photos, searched recursively (repeatable).",
        example="photos/")
    videos: tuple[str, ...] = train_setting(
        (), flag="video", group="Styles and data", metavar="VIDEO", repeat=True,
        help="Video (or folder of videos) whose frames add to the training photos "
        "(repeatable).", example="clip.mp4")
    frames_per_video: int = train_setting(40, help="Frames sampled evenly from each video.")
    holdout_dirs: tuple[str, ...] = train_setting(
        (), flag="holdout-dir", group="Styles and data", metavar="DIR", repeat=True,
        help="Held-out photos, never trained on: the sample sheet and evaluation losses "
        "(repeatable).", example="holdout/")
    num_samples: int = train_setting(
        3, help="Held-out images in the sample sheet and evaluation.")
    steps: int = train_setting(20000, flag="", group="Training", metavar="N",
                               help="Optimizer steps (in all, counting resumed ones).",
                               example="10000")
    size: int = train_setting(
        256, flag="", group="Training", metavar="PX", example="128",
        help="Training crop side in pixels (images first resized to short side 1.25x).")
    batch: int = train_setting(8, flag="", group="Training", metavar="N", example="4",
                               help="Crops per step (each draws its own style).")
    lr: float = train_setting(1e-3, help="Adam learning rate.")
    style_weight: float = train_setting(
        1e5, flag="", group="Training", metavar="W", example="1e3",
        help="Style loss weight lambda_s0 (see --style-exponent).")
    style_exponent: float = train_setting(
        0.0, flag="", group="Training", metavar="E", example="0.5",
        help="Style-vs-content balance, a power of ten: lambda_s = style_weight * 10**E "
        "(+0.5 = about 3x more style, -0.5 = 3x less; the strength exponent epsilon). A "
        "finished model's balance is set with `vidstyle run --strength`.")
    content_weight: float = train_setting(1.0, help="Content loss weight.")
    tv_weight: float = train_setting(0.0, help="Total-variation loss weight.")
    style_layers: tuple[str, ...] = train_setting(
        ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"),
        help="Loss-network layers of the style loss.")
    style_layer_weights: tuple[float, ...] = train_setting(
        (), help="Per-style-layer weights (default: all 1/len(style_layers), as "
        "vidstyle.optim).")
    content_layers: tuple[str, ...] = train_setting(
        ("relu4_2",), help="Loss-network layers of the content loss.")
    vgg: LossNetName = train_setting("vgg19", help="Loss network.")
    vgg_weights: str | None = train_setting(
        None, help="Loss-network weights file (default: vidstyle.weights resolves it).")
    style_size: int = train_setting(512, help="Long side of the style images for the Gram "
                                    "targets.")
    eval_size: int = train_setting(512, help="Long side of the held-out images in the "
                                   "samples and evaluation.")
    channels: tuple[int, ...] = train_setting(
        (16, 32, 64), help="Network widths at full, 1/2 and 1/4 resolution.")
    num_res_blocks: int = train_setting(3, help="Residual blocks at 1/4 resolution.")
    outer_kernel: int = train_setting(9, help="Kernel of the first and last convolution "
                                      "(odd).")
    space_to_depth: int = train_setting(
        1, help="Pixel (un)shuffle factor around the network (1, 2 or 4): 2 runs every "
        "layer at half resolution or less (about a quarter of the FLOPs; no "
        "full-resolution layer). With --teacher, the student starts from the teacher's "
        "weights re-arranged for it.")
    checkpoint_every: int = train_setting(1000, help="Steps between checkpoints (0 = at "
                                          "the end only).")
    log_every: int = train_setting(20, help="Steps between progress lines and log records.")
    seed: int = train_setting(0, help="Random seed (runs are repeatable).")
    max_minutes: float = train_setting(
        0.0, flag="", group="Run", metavar="MIN", example="30",
        help="Stop cleanly (checkpoint, final model) after this many minutes; 0 = no "
        "limit; per invocation.")
    out_dir: str = train_setting(
        "out/train", flag="out", group="Output", metavar="DIR", example="runs/mine",
        help="Folder for the checkpoint, losses.jsonl, curves, samples and model.pt.")
    resume: bool = train_setting(
        False, flag="", group="Output",
        help="Continue from the checkpoint in --out, with that run's settings (options "
        "given again override them; --max-minutes is per invocation).")
    overwrite: bool = train_setting(
        False, flag="", group="Output",
        help="Start afresh in an --out folder holding an earlier run's checkpoint "
        "(replacing it and its losses.jsonl).")
    add_style: str | None = train_setting(
        None, flag="add-style", group="Start from a model", metavar="NAME=IMAGE",
        example="mine=painting.jpg",
        help="Train one new style into --from MODEL (all else frozen).")
    from_model: str | None = train_setting(
        None, flag="from", group="Start from a model", metavar="MODEL",
        example="vidstyle/data/weights/fast7.pt",
        help="The model --add-style extends, --adjustable starts from (its transformer "
        "and the rows of --styles), or a --teacher's student starts from (an earlier "
        "student: the same architecture and styles).")
    adjustable: bool = train_setting(
        False, flag="", group="Adjustable",
        help="Train an adjustable model: per-style-layer loss weights become inputs "
        "(vidstyle run --layer-weights; Babaeizadeh & Ghiasi).")
    adjustable_default: float = train_setting(
        0.25, help="Share of samples at the default layer weights (the plain objective).")
    adjustable_onehot: float = train_setting(
        0.1, help="Share of samples with one style layer only (one-hot layer weights); "
        "the rest draw U(0, 1) per layer.")
    adjustable_frozen: bool = train_setting(
        False, help="Train the conditioner only, the --from model's transformer frozen and "
        "the conditioner anchored at each style's default layer weights: the default "
        "setting then gives exactly the --from model's output (--adjustable --from).")
    ema_decay: float = train_setting(
        0.99, help="Decay of the moving averages that normalize each layer's style loss.")
    conditioner_lr: float | None = train_setting(
        None, help="Adam learning rate of the conditioning network (default: lr); a higher "
        "one lets a short fine-tuning from a plain model learn the layer weights.")
    conditioner_hidden: int = train_setting(
        128, help="Hidden width of the conditioning network (--adjustable).")
    weight_average: float = train_setting(
        0.0, help="Decay of a moving average of the trained parameters that the exported "
        "model.pt takes (0 = off, the last step's; e.g. 0.98 averages about the last 50 "
        "steps: small batches make single steps noisy). The checkpoint keeps both.")
    device: Device = train_setting("auto", flag="", group="Run", example="cpu",
                                   help="Compute device; per invocation.")
    precision: Precision = train_setting(
        "auto", help="auto (bf16 autocast where supported), bf16 or fp32; per invocation.")
    model_dtype: ModelDtype = train_setting("fp16", help="Weights' dtype in model.pt.")
    teacher: str | None = train_setting(
        None, flag="", group="Start from a model", metavar="MODEL", example="fast7",
        help="Distil this model (file or shipped name) into a new network, e.g. a cheaper "
        "architecture via --set outer_kernel=5.")
    #: distillation: the new network learns the teacher's output (mean squared RGB
    #: difference times ``distill_weight``, added to the content/style terms; with
    #: content_weight = style_weight = 0 the step skips the VGG, several times cheaper).
    #: The styles are the teacher's. The new network starts from the teacher's weights
    #: where the shapes allow (a smaller outer kernel takes the centre of the teacher's).
    distill_weight: float = train_setting(1.0, help="Weight of the distillation loss "
                                          "(--teacher).")
    #: temporal stability under motion (objective.synthetic_motion / temporal_term): each
    #: crop is also seen moved (shift, zoom, rotation), and the network's output of the
    #: moved crop should be its output moved the same way. Fully convolutional networks
    #: with strided layers repaint their strokes when the picture moves by a fraction of
    #: their stride: on video that is flicker no flow blend can fully hide.
    tie_output_phases: bool = train_setting(
        False, help="With space_to_depth > 1: after every step, make the output conv a "
        "nearest upsampling + one full-resolution conv (its f*f output phases tied), so "
        "that flat regions get no 2-pixel hatching.")
    temporal_weight: float = train_setting(
        0.0, help="Weight of the temporal stability term (0 = off): output of a moved crop "
        "against the moved output, mean squared RGB difference.")
    temporal_shift: float = train_setting(
        12.0, help="Largest shift of the synthetic motion, pixels at the training size.")
    temporal_zoom: float = train_setting(
        0.05, help="Largest relative zoom of the synthetic motion.")
    temporal_rotate: float = train_setting(
        3.0, help="Largest rotation of the synthetic motion, degrees.")

    def __post_init__(self) -> None:
        self._check_types()
        self._range("frames_per_video", 1)
        self._range("num_samples", 0)
        self._range("steps", 0)
        self._range("size", 16)
        self._range("batch", 1)
        self._range("lr", 0, lo_open=True)
        for name in ("style_weight", "content_weight", "tv_weight", "distill_weight",
                     "max_minutes", "temporal_weight", "temporal_shift", "temporal_rotate"):
            self._range(name, 0)
        self._range("style_exponent", -10, 10)
        self._range("style_size", 16)
        self._range("eval_size", 16)
        self._range("num_res_blocks", 0)
        self._range("checkpoint_every", 0)
        self._range("log_every", 1)
        self._range("adjustable_default", 0, 1)
        self._range("adjustable_onehot", 0, 1)
        self._range("ema_decay", 0, 0.9999)
        self._range("weight_average", 0, 0.9999)
        self._range("conditioner_hidden", 1)
        self._range("conditioner_lr", 0, lo_open=True)
        self._range("temporal_zoom", 0, 0.5)
        validate(self)

    def _name(self, name: str) -> str:
        return FLAGS.get(name) or f"{name} (--set {name}=...)"

    @property
    def style_lambda(self) -> float:
        """lambda_s = style_weight * 10**style_exponent."""
        return self.style_weight * 10.0**self.style_exponent

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (lists for tuples) for checkpoints, logs and manifests."""
        return {
            k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()
        }


#: The ``vidstyle train`` option of each TrainConfig field that has one (from the fields'
#: metadata); every other field is set with ``--set field=value``.
FLAGS: dict[str, str] = {
    f.name: flag_of(f) for f in dataclasses.fields(TrainConfig) if flag_of(f) is not None
}


def flag(field: str) -> str:
    """How a user sets ``field``: its option (``--content-dir``) or ``--set field=...``."""
    return FLAGS.get(field, f"--set {field}=...")


#: The settings that shape a run: a resume must not change them.
_RESUME_KEYS = (
    "styles",
    "size",
    "batch",
    "style_layers",
    "content_layers",
    "channels",
    "num_res_blocks",
    "outer_kernel",
    "space_to_depth",
    "add_style",
    "seed",
    "teacher",
    "adjustable",
    "adjustable_frozen",
    "conditioner_hidden",
)


def validate(config: TrainConfig) -> None:
    """Raise UsageError (naming the options) for combinations of settings no run can use
    (``TrainConfig.__post_init__`` calls it after the type and range checks)."""
    if not config.style_layers:
        raise UsageError(f"{flag('style_layers')} needs at least one layer")
    if config.style_layer_weights and len(config.style_layer_weights) != len(config.style_layers):
        raise UsageError(
            f"{flag('style_layer_weights')} needs one weight per style layer "
            f"({len(config.style_layers)})"
        )
    if len(config.channels) != 3 or min(config.channels) < 1:
        raise UsageError(f"{flag('channels')} takes 3 widths >= 1, got {config.channels}")
    if config.outer_kernel < 1 or config.outer_kernel % 2 != 1:
        raise UsageError(f"{flag('outer_kernel')} must be odd, got {config.outer_kernel}")
    if config.space_to_depth not in SPACE_TO_DEPTH_FACTORS:
        raise UsageError(f"{flag('space_to_depth')} takes one of {SPACE_TO_DEPTH_FACTORS}, "
                         f"got {config.space_to_depth}")
    if config.tie_output_phases and config.space_to_depth == 1:
        raise UsageError(f"{flag('tie_output_phases')} needs {flag('space_to_depth')} 2 or 4")
    if config.adjustable and config.space_to_depth != 1:
        raise UsageError(f"{flag('space_to_depth')} is not supported with "
                         f"{flag('adjustable')} yet")
    if config.adjustable and (config.add_style or config.teacher):
        raise UsageError(f"{flag('adjustable')} does not go with {flag('add_style')} or "
                         f"{flag('teacher')} (start it from a model with {flag('from_model')})")
    if config.adjustable and config.temporal_weight > 0:
        raise UsageError(f"{flag('temporal_weight')} is not supported with "
                         f"{flag('adjustable')} yet")
    if config.adjustable_frozen and not (config.adjustable and config.from_model):
        raise UsageError(f"{flag('adjustable_frozen')} needs {flag('adjustable')} "
                         f"{flag('from_model')} MODEL (the transformer it keeps)")
    if config.adjustable_default + config.adjustable_onehot > 1:
        raise UsageError("adjustable_default + adjustable_onehot must be <= 1 "
                         f"({flag('adjustable_default')}, {flag('adjustable_onehot')})")
    if config.from_model and not (config.add_style or config.adjustable or config.teacher):
        raise UsageError(f"{flag('from_model')} goes with {flag('add_style')}, "
                         f"{flag('adjustable')} or {flag('teacher')}")
    if config.add_style and not config.from_model:
        raise UsageError(
            f"{flag('add_style')} needs {flag('from_model')}: "
            f"{flag('add_style')} NAME=IMAGE {flag('from_model')} MODEL"
        )
    if config.add_style and "=" not in config.add_style:
        raise UsageError(f"{flag('add_style')} takes NAME=IMAGE, got {config.add_style!r}")
    if config.resume and config.overwrite:
        raise UsageError(f"{flag('resume')} and {flag('overwrite')} do not go together")
    if config.teacher and config.add_style:
        raise UsageError(f"{flag('teacher')} and {flag('add_style')} do not go together")
    if config.teacher and config.distill_weight <= 0:
        raise UsageError(
            f"distill_weight must be > 0 with {flag('teacher')} ({flag('distill_weight')})"
        )


# --- key=value pairs (``--set``, ``python -m vidstyle.fast.train``) ----------------------


def _hints() -> dict[str, Any]:
    return typing.get_type_hints(TrainConfig)


def _optional(hint: Any) -> Any | None:
    """X for a hint ``X | None``, else None."""
    if get_origin(hint) in (typing.Union, types.UnionType) and type(None) in get_args(hint):
        inner = [a for a in get_args(hint) if a is not type(None)]
        return inner[0] if len(inner) == 1 else None
    return None


def _parse(raw: str, hint: Any) -> Any:
    """The text of a ``--set`` value as the field's type (ValueError when it is not);
    choices and ranges are TrainConfig's to check. An empty optional value is None."""
    inner = _optional(hint)
    if inner is not None:
        return None if raw == "" else _parse(raw, inner)
    if hint is bool:
        if raw.lower() not in ("1", "0", "true", "false", "yes", "no"):
            raise ValueError(raw)
        return raw.lower() in ("1", "true", "yes")
    if hint is int:
        return int(raw)
    if hint is float:
        return float(raw)
    if get_origin(hint) is tuple:
        return tuple(_parse(part, get_args(hint)[0]) for part in raw.split(",") if part)
    return raw


def parse_pairs(pairs: Sequence[str]) -> dict[str, Any]:
    """``["steps=100", "styles=starry,wave", ...]`` -> {field: value} (UsageError if a name
    is not a TrainConfig field or a value not of its type); lists are comma-separated."""
    hints = _hints()
    changes: dict[str, Any] = {}
    for item in pairs:
        key, sep, raw = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or key not in hints:
            raise UsageError(f"expected field=value with a TrainConfig field, got {item!r}")
        try:
            changes[key] = _parse(raw, hints[key])
        except ValueError:
            raise UsageError(f"bad value for {key}: {raw!r}") from None
    return changes


def config_from_pairs(pairs: Sequence[str], base: TrainConfig | None = None) -> TrainConfig:
    """``["steps=100", "styles=starry,wave", ...]`` -> TrainConfig (UsageError if bad)."""
    return dataclasses.replace(base or TrainConfig(), **parse_pairs(pairs))


# --- settings stored in a checkpoint -----------------------------------------------------

#: Settings of one invocation (a time limit, the machine), not of the run: a resume does not
#: inherit them from the checkpoint.
_PER_INVOCATION = ("max_minutes", "device", "precision", "overwrite")


def stored_values(stored: Mapping[str, Any]) -> dict[str, Any]:
    """The TrainConfig values of a checkpoint's ``config`` dict (:meth:`TrainConfig.to_dict`
    of any version): unknown old keys dropped, lists as tuples, and ``""`` as None for the
    optional settings (checkpoints before None meant "not given" stored "")."""
    hints = _hints()
    values: dict[str, Any] = {}
    for key, value in stored.items():
        if key not in hints:
            continue
        if get_origin(hints[key]) is tuple and isinstance(value, list):
            value = tuple(value)
        elif value == "" and _optional(hints[key]) is not None:
            value = None
        values[key] = value
    return values


def resume_conflicts(stored: Mapping[str, Any], config: TrainConfig) -> list[str]:
    """The fields that shape a run (:data:`_RESUME_KEYS`) whose value in ``config`` differs
    from a checkpoint's ``config`` dict (a field newer than the checkpoint counts as its
    default)."""
    old = stored_values(stored)
    defaults = TrainConfig()
    return [k for k in _RESUME_KEYS if old.get(k, getattr(defaults, k)) != getattr(config, k)]


def saved_config(out_dir: str | Path) -> TrainConfig | None:
    """The settings stored in ``out_dir/checkpoint.pt`` (None when there is none).

    What ``vidstyle train --out DIR --resume`` continues with: the run's own settings, so a
    resume needs no repeat of the original options (those given again override these).
    Fields newer than the checkpoint take their defaults; unknown old fields are ignored;
    the per-invocation settings (time limit, device, precision, overwrite) are not carried
    over.
    """
    import torch  # heavy: the settings themselves load without it (the CLI's options)

    path = Path(out_dir) / "checkpoint.pt"
    if not path.is_file():
        return None
    try:
        ck = torch.load(path, map_location="cpu", weights_only=True)
        stored = dict(ck["config"])
    except Exception as exc:  # noqa: BLE001 - any unreadable checkpoint is one user error
        raise InputError(f"cannot read checkpoint {path}: {exc}") from None
    values = {k: v for k, v in stored_values(stored).items() if k not in _PER_INVOCATION}
    values.update(out_dir=str(out_dir), resume=True)
    return dataclasses.replace(TrainConfig(), **values)
