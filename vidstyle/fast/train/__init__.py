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

- :mod:`.config`: :class:`TrainConfig`, its checks, ``field=value`` parsing, the settings
  stored in a checkpoint, and the CLI option of each field (for messages).
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

from .config import (
    DEFAULT_STYLES,
    FLAGS,
    TrainConfig,
    config_from_pairs,
    flag,
    saved_config,
    validate,
)
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

__all__ = [
    "DEFAULT_STYLES",
    "FLAGS",
    "KIT_STYLE_FILES",
    "PACKAGED_STYLE_DIR",
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
    "perceptual_terms",
    "plot_curves",
    "resolve_style",
    "sample_sheet",
    "sample_video_frames",
    "saved_config",
    "style_image",
    "style_layer_weights",
    "style_targets",
    "train",
    "train_only_last_style",
    "training_terms",
    "validate",
]
