"""Training of the multi-style network (:mod:`vidstyle.fast.net`).

Loss (Johnson et al. / Dumoulin et al.): for a batch of content crops x and style ids s,
``y = net(x, onehot(s))`` and

    L = content_weight * sum_l mean((phi_l(y) - phi_l(x))^2)             (content layers)
      + lambda_s * mean_b sum_l w_l * mean((G(phi_l(y_b)) - G_l[s_b])^2)  (style layers)
      + tv_weight * tv(y)

with lambda_s = style_weight * 10**style_exponent (the paper's strength exponent epsilon),
Grams G normalized by C*H*W (:func:`vidstyle.losses.gram`) and Gram targets of each style
image computed once. Adam. Each sample of a batch draws its own style.

``add_style`` + ``from_model`` (``--add-style`` + ``--from``) train one new style into an
existing model: a new (gamma, beta) row per CIN layer, everything else frozen, so the other
styles' outputs do not change.

Modules, by responsibility:

- :mod:`.config`: :class:`TrainConfig` (every default, valid value, help text and CLI
  option), its checks, ``field=value`` parsing, the settings stored in a checkpoint.
- :mod:`.data`: style images, the training crops (photos and video frames), held-out images.
- :mod:`.objective`: the loss above, written once (training step and evaluation).
- :mod:`.surgery`: adding a style row, training only it, initializing from a teacher.
- :mod:`.loop`: :func:`train` (setup, steps, checkpoints and exact resume, final model).
- :mod:`.report`: progress, result, loss curves and the sample sheet.

Run: :func:`train` with a :class:`TrainConfig` (the CLI ``vidstyle train`` wraps it), or
``python -m vidstyle.fast.train key=value ...`` with TrainConfig field names
(tuples comma-separated, e.g. ``styles=starry,wave content_dirs=/data/train``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .config import (
    DEFAULT_STYLES,
    FLAGS,
    TRAIN_GROUPS,
    TrainConfig,
    config_from_pairs,
    flag,
    parse_pairs,
    resume_conflicts,
    saved_config,
    stored_values,
    validate,
)

if TYPE_CHECKING:
    from .data import (
        KIT_STYLE_FILES,
        PACKAGED_STYLE_DIR,
        holdout_images,
        list_images,
        resolve_style,
        sample_video_frames,
        style_image,
    )
    from .loop import train
    from .objective import (
        LossNet,
        evaluate,
        loss_features,
        perceptual_terms,
        style_layer_weights,
        style_targets,
        training_terms,
    )
    from .report import (
        TrainProgress,
        TrainResult,
        console_progress,
        format_progress,
        plot_curves,
        sample_sheet,
    )
    from .surgery import extend_styles, init_from_teacher, train_only_last_style

#: The names of the modules that use torch, by module: loaded on first use (PEP 562), so
#: that the settings (:mod:`.config`, which the CLI builds its ``train`` options from) load
#: without torch.
_LAZY: dict[str, tuple[str, ...]] = {
    "data": ("KIT_STYLE_FILES", "PACKAGED_STYLE_DIR", "holdout_images", "list_images",
             "resolve_style", "sample_video_frames", "style_image"),
    "loop": ("train",),
    "objective": ("LossNet", "evaluate", "loss_features", "perceptual_terms",
                  "style_layer_weights", "style_targets", "training_terms"),
    "report": ("TrainProgress", "TrainResult", "console_progress", "format_progress",
               "plot_curves", "sample_sheet"),
    "surgery": ("extend_styles", "init_from_teacher", "train_only_last_style"),
}


def __getattr__(name: str) -> Any:
    """The training machinery's names, imported on first use (torch is heavy)."""
    module = next((m for m, names in _LAZY.items() if name in names), None)
    if module == "data":
        from . import data as mod
    elif module == "loop":
        from . import loop as mod
    elif module == "objective":
        from . import objective as mod
    elif module == "report":
        from . import report as mod
    elif module == "surgery":
        from . import surgery as mod
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(mod, name)


__all__ = [
    "DEFAULT_STYLES",
    "FLAGS",
    "KIT_STYLE_FILES",
    "PACKAGED_STYLE_DIR",
    "TRAIN_GROUPS",
    "LossNet",
    "TrainConfig",
    "TrainProgress",
    "TrainResult",
    "config_from_pairs",
    "console_progress",
    "evaluate",
    "extend_styles",
    "flag",
    "format_progress",
    "holdout_images",
    "init_from_teacher",
    "list_images",
    "loss_features",
    "parse_pairs",
    "perceptual_terms",
    "plot_curves",
    "resolve_style",
    "resume_conflicts",
    "sample_sheet",
    "sample_video_frames",
    "saved_config",
    "stored_values",
    "style_image",
    "style_layer_weights",
    "style_targets",
    "train",
    "train_only_last_style",
    "training_terms",
    "validate",
]
