"""Settings of a training run: :class:`TrainConfig`, its checks, ``field=value`` parsing and
the settings stored in a checkpoint.

Messages name what the user typed: the ``vidstyle train`` option of a field
(:data:`FLAGS`, e.g. ``content_dirs`` -> ``--content-dir``), or ``--set field=...`` for the
fields without one.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

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


@dataclass(frozen=True)
class TrainConfig:
    """Every setting of a training run. Paths are strings; tuples for lists."""

    #: style names (packaged or found in ``style_dirs``) or ``name=path`` items
    styles: tuple[str, ...] = DEFAULT_STYLES
    #: extra folders searched for ``<name>.*`` and kit file names (after the packaged ones)
    style_dirs: tuple[str, ...] = ()
    #: folders of training photos (searched recursively)
    content_dirs: tuple[str, ...] = ()
    #: video files or folders of videos to sample training frames from (PyAV)
    videos: tuple[str, ...] = ()
    #: frames sampled evenly from each video
    frames_per_video: int = 40
    #: folders never trained on; their images are the held-out samples and evaluation set
    holdout_dirs: tuple[str, ...] = ()
    #: number of held-out images in the sample sheet / evaluation
    num_samples: int = 3
    steps: int = 20000
    #: square crop side in pixels; images are first resized to short side 1.25 * size
    size: int = 256
    batch: int = 8
    lr: float = 1e-3
    #: lambda_s0 (see style_exponent)
    style_weight: float = 1e5
    #: the paper's strength exponent epsilon: lambda_s = style_weight * 10**style_exponent
    style_exponent: float = 0.0
    content_weight: float = 1.0
    tv_weight: float = 0.0
    style_layers: tuple[str, ...] = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
    #: per-style-layer weights (default: all 1/len(style_layers), as vidstyle.optim)
    style_layer_weights: tuple[float, ...] = ()
    content_layers: tuple[str, ...] = ("relu4_2",)
    vgg: str = "vgg19"
    #: explicit loss-network weights file (default: vidstyle.weights resolves it)
    vgg_weights: str = ""
    #: long side of the style images for the Gram targets
    style_size: int = 512
    #: long side of the held-out images in the samples and evaluation
    eval_size: int = 512
    channels: tuple[int, ...] = (16, 32, 64)
    num_res_blocks: int = 3
    outer_kernel: int = 9
    checkpoint_every: int = 1000
    log_every: int = 20
    seed: int = 0
    #: stop cleanly (checkpoint, final model) after this many minutes; 0 = no limit
    max_minutes: float = 0.0
    out_dir: str = "out/train"
    #: continue from out_dir/checkpoint.pt
    resume: bool = False
    #: start afresh in an out_dir that holds an earlier run's checkpoint (replacing it and
    #: its losses.jsonl); without it (or ``resume``) such a folder is refused
    overwrite: bool = False
    #: ``name=image``: train one new style into ``from_model`` (all else frozen)
    add_style: str = ""
    from_model: str = ""
    #: "auto", "cpu" or "cuda"
    device: str = "auto"
    #: "auto" (bf16 autocast where supported), "bf16" or "fp32"
    precision: str = "auto"
    #: dtype of the weights in the final model file: "fp16" or "fp32"
    model_dtype: str = "fp16"
    #: distillation: a model (file or shipped name) whose output the new network learns to
    #: reproduce (mean squared RGB difference times ``distill_weight``, added to the
    #: content/style terms; with content_weight = style_weight = 0 the step skips the VGG,
    #: several times cheaper). The styles are the teacher's. The new network starts from
    #: the teacher's weights where the shapes allow (a smaller outer kernel takes the
    #: centre of the teacher's), so a cheaper architecture is a short fine-tune.
    teacher: str = ""
    distill_weight: float = 1.0

    @property
    def style_lambda(self) -> float:
        """lambda_s = style_weight * 10**style_exponent."""
        return self.style_weight * 10.0**self.style_exponent

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (lists for tuples) for checkpoints, logs and manifests."""
        return {
            k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()
        }


#: The ``vidstyle train`` option of each TrainConfig field that has one (tests check this
#: against the command); every other field is set with ``--set field=value``.
FLAGS: dict[str, str] = {
    "styles": "--styles",
    "content_dirs": "--content-dir",
    "videos": "--video",
    "holdout_dirs": "--holdout-dir",
    "steps": "--steps",
    "size": "--size",
    "batch": "--batch",
    "style_weight": "--style-weight",
    "style_exponent": "--style-exponent",
    "out_dir": "--out",
    "resume": "--resume",
    "overwrite": "--overwrite",
    "add_style": "--add-style",
    "from_model": "--from",
    "teacher": "--teacher",
    "max_minutes": "--max-minutes",
    "device": "--device",
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
    "add_style",
    "seed",
    "teacher",
)


def validate(config: TrainConfig) -> None:
    """Raise UsageError (naming the options) for settings no run can use."""
    if config.size < 16 or config.batch < 1 or config.steps < 0 or config.lr <= 0:
        raise UsageError(
            f"{flag('size')} >= 16, {flag('batch')} >= 1, {flag('steps')} >= 0 and "
            f"lr > 0 ({flag('lr')}) are required"
        )
    if config.style_layer_weights and len(config.style_layer_weights) != len(config.style_layers):
        raise UsageError(
            f"{flag('style_layer_weights')} needs one weight per style layer "
            f"({len(config.style_layers)})"
        )
    if bool(config.add_style) != bool(config.from_model):
        raise UsageError(
            f"{flag('add_style')} and {flag('from_model')} go together: "
            f"{flag('add_style')} NAME=IMAGE {flag('from_model')} MODEL"
        )
    if config.add_style and "=" not in config.add_style:
        raise UsageError(f"{flag('add_style')} takes NAME=IMAGE, got {config.add_style!r}")
    if config.model_dtype not in ("fp16", "fp32"):
        raise UsageError(f"model_dtype must be fp16 or fp32 ({flag('model_dtype')})")
    if config.resume and config.overwrite:
        raise UsageError(f"{flag('resume')} and {flag('overwrite')} do not go together")
    if config.teacher and config.add_style:
        raise UsageError(f"{flag('teacher')} and {flag('add_style')} do not go together")
    if config.teacher and config.distill_weight <= 0:
        raise UsageError(
            f"distill_weight must be > 0 with {flag('teacher')} ({flag('distill_weight')})"
        )


# --- key=value pairs (``--set``, ``python -m vidstyle.fast.train``) ----------------------


def config_from_pairs(pairs: Sequence[str], base: TrainConfig | None = None) -> TrainConfig:
    """``["steps=100", "styles=starry,wave", ...]`` -> TrainConfig (UsageError if bad)."""
    cfg = base or TrainConfig()
    defaults = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(TrainConfig)}
    changes: dict[str, Any] = {}
    for item in pairs:
        key, sep, raw = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or key not in defaults:
            raise UsageError(f"expected field=value with a TrainConfig field, got {item!r}")
        cur = defaults[key]
        try:
            if isinstance(cur, bool):
                if raw.lower() not in ("1", "0", "true", "false", "yes", "no"):
                    raise ValueError(raw)
                val: Any = raw.lower() in ("1", "true", "yes")
            elif isinstance(cur, int):
                val = int(raw)
            elif isinstance(cur, float):
                val = float(raw)
            elif isinstance(cur, tuple):
                parts = [p for p in raw.split(",") if p]
                if key == "channels":
                    val = tuple(int(p) for p in parts)
                elif key == "style_layer_weights":
                    val = tuple(float(p) for p in parts)
                else:
                    val = tuple(parts)
            else:
                val = raw
        except ValueError:
            raise UsageError(f"bad value for {key}: {raw!r}") from None
        changes[key] = val
    return dataclasses.replace(cfg, **changes)


#: Settings of one invocation (a time limit, the machine), not of the run: a resume does not
#: inherit them from the checkpoint.
_PER_INVOCATION = ("max_minutes", "device", "precision", "overwrite")


def saved_config(out_dir: str | Path) -> TrainConfig | None:
    """The settings stored in ``out_dir/checkpoint.pt`` (None when there is none).

    What ``vidstyle train --out DIR --resume`` continues with: the run's own settings, so a
    resume needs no repeat of the original options (those given again override these).
    Fields newer than the checkpoint take their defaults; unknown old fields are ignored;
    the per-invocation settings (time limit, device, precision, overwrite) are not carried
    over.
    """
    path = Path(out_dir) / "checkpoint.pt"
    if not path.is_file():
        return None
    try:
        ck = torch.load(path, map_location="cpu", weights_only=True)
        stored = dict(ck["config"])
    except Exception as exc:  # noqa: BLE001 - any unreadable checkpoint is one user error
        raise InputError(f"cannot read checkpoint {path}: {exc}") from None
    fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    defaults = TrainConfig()
    values: dict[str, Any] = {}
    for key, value in stored.items():
        if key not in fields or key in _PER_INVOCATION:
            continue
        if isinstance(getattr(defaults, key), tuple) and isinstance(value, list):
            value = tuple(value)
        values[key] = value
    values.update(out_dir=str(out_dir), resume=True)
    return dataclasses.replace(defaults, **values)
