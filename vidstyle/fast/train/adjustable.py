"""Training of the adjustable network (:mod:`vidstyle.fast.adjustable`): the objective with
per-layer style weights alpha as inputs (Babaeizadeh and Ghiasi, Eq. 9).

For content crops x (B, 3, H, W), style ids s (B,) and alpha (B, L) drawn per sample,
``y = net(x, onehot(s), alpha)`` and

    L = content_weight * content(y, x)
      + lambda_s * mean_b sum_l alpha_bl * E[s_b] / N[s_b, l] * w_l * L_l(y_b, s_b)
      + tv_weight * tv(y)

with L_l the Gram loss of layer l, w_l the plain layer weights, N[s, l] the exponential
moving average of w_l * L_l over the samples of style s (``net.loss_ema``, updated every
step before it is used, no gradient) and E[s] = sum_l N[s, l]. Dividing by N makes layers
whose losses differ by 1000x count alike (the paper's normalization); the factor E[s]
keeps the scale of the plain objective, so that alpha_l = N[s, l] / E[s] (the model's
default alpha) *is* the plain objective and alpha in [0, 1]^L spans the looks around it.

Alpha of each sample: with probability ``adjustable_default`` the default alpha of its
style, with ``adjustable_onehot`` a one-hot vector (a single layer), else U(0, 1) per layer.
Every parameter trains, the conditioner included (the optimizer gets ``net.parameters()``);
with ``adjustable_frozen`` only the conditioner does, anchored so that the default alpha
adds nothing (the samples drawn at the default then carry no gradient: set
``adjustable_default`` to 0 there).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F

from vidstyle.errors import UsageError
from vidstyle.fast.adjustable import AdjustableStyleNet
from vidstyle.losses import gram, tv_loss

from .config import TrainConfig, flag
from .objective import LossNet, loss_features
from .surgery import load_teacher

__all__ = [
    "adjustable_terms",
    "init_adjustable",
    "per_layer_style",
    "sample_alpha",
    "update_loss_ema",
]


def init_adjustable(config: TrainConfig, style_names: Sequence[str]) -> AdjustableStyleNet:
    """A new adjustable network for ``style_names``: from ``config.from_model`` (a file or
    a shipped name: its transformer and those styles' rows; the conditioner starts at zero,
    so the network is the plain one for every alpha, or where the model is adjustable
    itself, from its conditioner and loss averages) or freshly initialized; anchored at
    the default alpha with ``adjustable_frozen``."""
    net = AdjustableStyleNet(
        num_styles=len(style_names), style_layers=config.style_layers,
        channels=config.channels, num_res_blocks=config.num_res_blocks,
        outer_kernel=config.outer_kernel, hidden=config.conditioner_hidden,
        anchored=config.adjustable_frozen)
    if not config.from_model:
        return net
    base = load_teacher(config.from_model)  # a file or a shipped name
    plain = base.net.transformer if isinstance(base.net, AdjustableStyleNet) else base.net
    missing = [s for s in style_names if s not in base.style_names]
    if missing:
        raise UsageError(f"{flag('from_model')} {config.from_model} has no style "
                         f"{', '.join(missing)} (it has: {', '.join(base.style_names)})")
    rows = torch.tensor([base.style_names.index(s) for s in style_names])
    state = {}
    for k, v in plain.state_dict().items():
        state[k] = v[rows].float() if k.endswith((".norm.gamma", ".norm.beta")) else v.float()
    try:
        net.transformer.load_state_dict(state)
    except RuntimeError as e:
        raise UsageError(f"{flag('from_model')} {config.from_model} does not fit the "
                         f"network settings ({flag('channels')}, {flag('num_res_blocks')}, "
                         f"{flag('outer_kernel')}): {e}") from None
    if isinstance(base.net, AdjustableStyleNet):
        _continue_conditioner(net, base.net, rows, config)
    return net


def _continue_conditioner(net: AdjustableStyleNet, base: AdjustableStyleNet,
                          rows: torch.Tensor, config: TrainConfig) -> None:
    """Start ``net``'s conditioner and loss averages from adjustable model ``base`` (e.g.
    to go on at a larger crop size): its first layer's style columns and the loss
    averages taken at ``rows`` (the base's index of each of ``net``'s styles). The layers,
    the width and the anchoring must match."""
    if (base.style_layers != net.style_layers or base.conditioner.hidden != net.conditioner.hidden
            or base.anchored != net.anchored):
        raise UsageError(
            f"{flag('from_model')} {config.from_model} is an adjustable model of other "
            f"settings ({flag('style_layers')}, {flag('conditioner_hidden')} or "
            f"{flag('adjustable_frozen')}): start from a plain model instead")
    state = {k: v.float() for k, v in base.conditioner.state_dict().items()}
    first = state["mlp.0.weight"]  # (hidden, L + S_base): alpha columns, then styles
    n = base.num_layers
    state["mlp.0.weight"] = torch.cat([first[:, :n], first[:, n:][:, rows]], dim=1)
    net.conditioner.load_state_dict(state)
    with torch.no_grad():
        net.loss_ema.copy_(base.loss_ema[rows].float())
        net.ema_count.copy_(base.ema_count[rows].float())


def sample_alpha(net: AdjustableStyleNet, ids: torch.Tensor, config: TrainConfig,
                 gen: torch.Generator) -> torch.Tensor:
    """Alpha (B, L) for style ids (B,): the style's default (``adjustable_default``), a
    one-hot layer (``adjustable_onehot``) or U(0, 1) per layer, drawn with ``gen``."""
    b, n = ids.shape[0], net.num_layers
    u = torch.rand(b, generator=gen)
    uniform = torch.rand(b, n, generator=gen)
    layer = torch.randint(n, (b,), generator=gen)
    onehot = F.one_hot(layer, n).float()
    with torch.no_grad():
        default = net.default_alpha(F.one_hot(ids.cpu(), net.num_styles).float()
                                    .to(net.loss_ema.device)).cpu()
    p_def, p_one = config.adjustable_default, config.adjustable_onehot
    pick_def = (u < p_def)[:, None]
    pick_one = ((u >= p_def) & (u < p_def + p_one))[:, None]
    return torch.where(pick_def, default, torch.where(pick_one, onehot, uniform))


def per_layer_style(fy: Mapping[str, torch.Tensor], style_ids: torch.Tensor,
                    targets: Mapping[str, torch.Tensor], layers: Sequence[str]
                    ) -> torch.Tensor:
    """Unweighted Gram loss of every sample and style layer: (B, L) float32, each the mean
    over the C*C entries of (G(phi_l(y_b)) - G_l[s_b])^2 (differentiable in the features)."""
    cols = []
    for k in layers:
        g = gram(fy[k].float())  # (B, C, C)
        cols.append(((g - targets[k][style_ids]) ** 2).mean(dim=(1, 2)))
    return torch.stack(cols, dim=1)


@torch.no_grad()
def update_loss_ema(net: AdjustableStyleNet, style_ids: torch.Tensor, weighted: torch.Tensor,
                    decay: float) -> None:
    """Move ``net.loss_ema[s]`` toward the batch mean of ``weighted`` (B, L) (= w_l * L_l)
    over the samples of each style s in the batch; the first value is taken as is."""
    for s in style_ids.unique().tolist():
        obs = weighted[style_ids == s].mean(dim=0).to(net.loss_ema)
        if int(net.ema_count[s]) == 0:
            net.loss_ema[s] = obs
        else:
            net.loss_ema[s] = decay * net.loss_ema[s] + (1.0 - decay) * obs
        net.ema_count[s] += 1


def adjustable_terms(
    net: AdjustableStyleNet,
    loss_net: LossNet,
    x: torch.Tensor,
    style_ids: torch.Tensor,
    alpha: torch.Tensor,
    targets: Mapping[str, torch.Tensor],
    config: TrainConfig,
    layer_w: Mapping[str, float],
    bf16: bool,
    *,
    update: bool = True,
) -> dict[str, torch.Tensor]:
    """Weighted loss terms of one step (see the module docstring): ``content``, ``style``,
    ``tv``, their sum ``loss``, and ``style_<layer>`` (the batch mean of w_l * L_l,
    unnormalized, for the log). ``update``: move the loss averages first (training)."""
    dev = x.device.type
    w = F.one_hot(style_ids, net.num_styles).float()
    with torch.autocast(dev, dtype=torch.bfloat16, enabled=bf16):
        y = net(x, w, alpha.to(x.device))
    fy, fx = loss_features(loss_net, x, y, config, bf16=bf16)
    layers = list(config.style_layers)
    with torch.autocast(dev, enabled=False):
        lw = torch.tensor([layer_w[k] for k in layers], device=x.device)
        weighted = per_layer_style(fy, style_ids, targets, layers) * lw  # (B, L)
        if update:
            update_loss_ema(net, style_ids, weighted.detach(), config.ema_decay)
        ema = net.loss_ema[style_ids].clamp_min(1e-12)  # (B, L)
        norm = ema.sum(dim=1, keepdim=True) / ema
        style = (alpha.to(weighted) * norm * weighted).sum(dim=1).mean()
        content = sum(torch.mean((fy[k].float() - fx[k].float()) ** 2)
                      for k in config.content_layers)
        terms = {
            "content": config.content_weight * content,
            "style": config.style_lambda * style,
            "tv": config.tv_weight * tv_loss(y.float()),
        }
        terms["loss"] = terms["content"] + terms["style"] + terms["tv"]
        for i, k in enumerate(layers):
            terms[f"style_{k}"] = weighted[:, i].detach().mean()
    return terms
