"""Adjustable style at inference: per-layer style-loss weights as inputs of the network.

After Babaeizadeh and Ghiasi, "Adjustable Real-time Style Transfer" (ICLR 2020): a small
conditioning network Lambda maps alpha, one weight per style layer of the loss (the content
weight fixed to 1), to the (gamma, beta) of every conditional instance norm of the
transformer, so one trained network draws the whole family of stylizations those loss
weights describe, in real time.

Combination with the multi-style network (:class:`~vidstyle.fast.net.StyleNet`, Dumoulin
et al.): for style rows w (B, S) and alpha (B, L)::

    gamma = w @ gamma_table + Lambda_gamma([alpha, w])
    beta  = w @ beta_table  + Lambda_beta([alpha, w])

Why this form (and not Lambda(alpha) alone, nor one network per style):

- The style tables stay as trained (a model starts from a plain fast model), and Lambda's
  last layer starts at zero, so a fresh adjustable network is exactly the plain one for
  every alpha and fine-tuning starts from a good network instead of from noise.
- Lambda sees the style too: what a layer's weight does depends on the style (the layers'
  losses differ per style by 10x and more), so a style-blind offset could not fit all.
- One model serves all its styles (the shared transformer is the expensive part); mixes
  remain convex rows w fed to both the tables and Lambda.

alpha is in [0, 1] per layer as trained (Eq. 9 of the paper: each layer's style loss is
divided by its exponential moving average, see :mod:`vidstyle.fast.train.adjustable`).
The *default* alpha of style s reproduces the plain training objective: alpha_l =
ema[s, l] / sum_l ema[s, l] (the layer's share of the plain style loss), so a run without
``--layer-weights`` looks like the plain model.

At inference the network is *baked* (:meth:`AdjustableStyleNet.bake`): Lambda runs once per
(style, alpha) look and the result is a plain :class:`StyleNet` with one row per look, so
every runtime, tiling, stabilization and per-person style map works unchanged and the
per-pixel cost is the plain network's.

Images are float RGB in [0, 1], (B, 3, H, W); style weights (B, S); alpha (B, L).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from vidstyle.config import MAX_LAYER_WEIGHT
from vidstyle.errors import UsageError
from vidstyle.fast.net import StyleNet, _ConvCIN

__all__ = [
    "ADJUSTABLE_FORMAT",
    "AdjustableStyleNet",
    "Conditioner",
    "check_layer_weights",
    "spread_alphas",
]

#: ``format`` of an adjustable model file (see :mod:`vidstyle.fast.model_io`).
ADJUSTABLE_FORMAT = "vidstyle.adjustable"
#: State entries a model file keeps in float32 whatever its dtype (loss averages, counts).
FP32_KEYS = ("loss_ema", "ema_count")


class Conditioner(nn.Module):
    """Lambda: [alpha (B, L), style weights (B, S)] -> per-CIN-layer (dgamma, dbeta).

    A 3-layer MLP (SiLU) whose last layer starts at zero. ``channels``: the widths of the
    transformer's CIN layers in forward order. Returns a list of ((B, C_i), (B, C_i)).
    SiLU, not ReLU: with ReLU, Adam at a fine-tuning learning rate killed nearly all the
    second layer's units within 100 steps (2 of 128 still active), leaving the output
    almost independent of alpha; SiLU has no dead zone.
    """

    def __init__(self, *, num_layers: int, num_styles: int, channels: Sequence[int],
                 hidden: int = 128) -> None:
        super().__init__()
        self.num_layers = num_layers
        self.num_styles = num_styles
        self.channels = tuple(int(c) for c in channels)
        self.hidden = hidden
        self.mlp = nn.Sequential(
            nn.Linear(num_layers + num_styles, hidden),
            nn.SiLU(),
            nn.Linear(hidden, hidden),
            nn.SiLU(),
            nn.Linear(hidden, 2 * sum(self.channels)),
        )
        nn.init.zeros_(self.mlp[-1].weight)
        nn.init.zeros_(self.mlp[-1].bias)

    def forward(self, alpha: torch.Tensor, style_weights: torch.Tensor
                ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        out = self.mlp(torch.cat([alpha, style_weights], dim=1).float())
        parts, start = [], 0
        for c in self.channels:
            parts.append((out[:, start : start + c], out[:, start + c : start + 2 * c]))
            start += 2 * c
        return parts


def _blocks(net: StyleNet) -> list[_ConvCIN]:
    """The transformer's conv+CIN blocks in forward order (as :meth:`StyleNet.cin_modules`)."""
    blocks = [net.conv_in, net.down1, net.down2]
    for r in net.res:
        blocks += [r.a, r.b]
    return [*blocks, net.up1, net.up2, net.conv_out]


def _conv_cin(block: _ConvCIN, x: torch.Tensor, g: torch.Tensor, b: torch.Tensor,
              size: Sequence[int] | None = None) -> torch.Tensor:
    """One block of :class:`StyleNet` with explicit per-sample (gamma, beta), each (B, C)."""
    if block.upsample:
        x = F.interpolate(x, size=tuple(size), mode="nearest")
    if block.pad:
        x = F.pad(x, (block.pad,) * 4, mode="reflect")
    y = block.conv(x)
    yf = y.float()
    var, mean = torch.var_mean(yf, dim=(2, 3), keepdim=True, unbiased=False)
    scale = g[:, :, None, None] * torch.rsqrt(var + block.norm.eps)
    z = (yf * scale + (b[:, :, None, None] - mean * scale)).to(y.dtype)
    return F.relu(z) if block.relu else z


class AdjustableStyleNet(nn.Module):
    """A :class:`StyleNet` (``transformer``) whose CIN parameters also depend on alpha.

    style_layers: the loss layers alpha weights, in order (e.g. relu1_1 ... relu5_1).
    Buffer ``loss_ema`` (S, L): the training's moving averages of each style's per-layer
    weighted style loss (ones before training); it defines the default alpha. Both buffers
    are kept in float32 in model files (see :data:`FP32_KEYS`).

    ``anchored``: the conditioner's offsets are taken relative to its output at the style's
    default alpha, so the default layer weights give exactly the transformer's own (gamma,
    beta): a network trained with its transformer frozen (``adjustable_frozen``) then *is*
    the plain model it started from at the default setting.
    """

    def __init__(self, *, num_styles: int, style_layers: Sequence[str],
                 channels: Sequence[int] = (16, 32, 64), num_res_blocks: int = 3,
                 outer_kernel: int = 9, hidden: int = 128, anchored: bool = False) -> None:
        super().__init__()
        if not style_layers:
            raise ValueError("an adjustable network needs at least one style layer")
        self.style_layers = tuple(style_layers)
        self.anchored = anchored
        self.transformer = StyleNet(num_styles=num_styles, channels=channels,
                                    num_res_blocks=num_res_blocks, outer_kernel=outer_kernel)
        widths = [b.norm.channels for b in _blocks(self.transformer)]
        self.conditioner = Conditioner(num_layers=len(self.style_layers),
                                       num_styles=num_styles, channels=widths, hidden=hidden)
        self.register_buffer("loss_ema", torch.ones(num_styles, len(self.style_layers)))
        #: updates of each style's row of ``loss_ema`` so far (0: not trained)
        self.register_buffer("ema_count", torch.zeros(num_styles))

    # -- the plain network's interface ---------------------------------------------------
    @property
    def num_styles(self) -> int:
        return self.transformer.num_styles

    @property
    def num_layers(self) -> int:
        return len(self.style_layers)

    @property
    def channels(self) -> tuple[int, int, int]:
        return self.transformer.channels

    @property
    def num_res_blocks(self) -> int:
        return self.transformer.num_res_blocks

    @property
    def outer_kernel(self) -> int:
        return self.transformer.outer_kernel

    def arch(self) -> dict[str, object]:
        """Constructor arguments, JSON/TOML-serializable (for model files)."""
        return {**self.transformer.arch(), "style_layers": list(self.style_layers),
                "hidden": self.conditioner.hidden, "anchored": self.anchored}

    # -- alpha -----------------------------------------------------------------------------
    def default_alpha(self, style_weights: torch.Tensor) -> torch.Tensor:
        """(B, S) style rows -> (B, L) default alpha (the plain objective's layer shares)."""
        share = self.loss_ema / self.loss_ema.sum(dim=1, keepdim=True).clamp_min(1e-12)
        return style_weights.to(share) @ share

    def affine(self, style_weights: torch.Tensor, alpha: torch.Tensor | None = None
               ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per-CIN-layer (gamma, beta), each (B, C) float32, for rows (B, S) and alpha
        (B, L) or (1, L) (None: the default alpha of each row)."""
        w = style_weights.to(torch.float32)
        if alpha is None:
            alpha = self.default_alpha(w)
        a = alpha.to(w).expand(w.shape[0], -1) if alpha.shape[0] == 1 else alpha.to(w)
        if a.shape != (w.shape[0], self.num_layers):
            raise ValueError(f"expected ({w.shape[0]}, {self.num_layers}) alpha, got "
                             f"{tuple(alpha.shape)}")
        deltas = self.conditioner(a, w)
        if self.anchored:  # zero offset at the default alpha
            at_default = self.conditioner(self.default_alpha(w), w)
            deltas = [(dg - g0, db - b0) for (dg, db), (g0, b0) in
                      zip(deltas, at_default, strict=True)]
        out = []
        for block, (dg, db) in zip(_blocks(self.transformer), deltas, strict=True):
            out.append((w @ block.norm.gamma + dg, w @ block.norm.beta + db))
        return out

    def forward(self, x: torch.Tensor, style_weights: torch.Tensor,
                alpha: torch.Tensor | None = None) -> torch.Tensor:
        """x (B, 3, H, W) in [0, 1]; rows (B, S) or (1, S); alpha (B, L), (1, L) or None
        (the default) -> (B, 3, H, W) in [0, 1]."""
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"expected (B, 3, H, W) images, got {tuple(x.shape)}")
        w = style_weights.to(device=x.device, dtype=torch.float32)
        if w.dim() != 2 or w.shape[1] != self.num_styles:
            raise ValueError(f"expected (B, {self.num_styles}) style weights, got "
                             f"{tuple(style_weights.shape)}")
        if w.shape[0] == 1 and x.shape[0] > 1:
            w = w.expand(x.shape[0], -1)
        if alpha is not None:
            alpha = alpha.to(device=x.device, dtype=torch.float32)
        gb = self.affine(w, alpha)
        blocks = _blocks(self.transformer)
        net = self.transformer
        h0 = _conv_cin(blocks[0], x, *gb[0])
        h1 = _conv_cin(blocks[1], h0, *gb[1])
        h = _conv_cin(blocks[2], h1, *gb[2])
        i = 3
        for _ in range(net.num_res_blocks):
            h = h + _conv_cin(blocks[i + 1], _conv_cin(blocks[i], h, *gb[i]), *gb[i + 1])
            i += 2
        h = _conv_cin(blocks[i], h, *gb[i], size=h1.shape[-2:])
        h = _conv_cin(blocks[i + 1], h, *gb[i + 1], size=h0.shape[-2:])
        return torch.sigmoid(_conv_cin(blocks[i + 2], h, *gb[i + 2]))

    @torch.no_grad()
    def look_features(self, alpha: torch.Tensor) -> torch.Tensor:
        """alpha (K, L) -> (K, F) float32: every style's CIN (gamma, beta) for each row,
        flattened: how far apart two settings are as the network sees them (a layer weight
        the conditioner barely uses moves them little)."""
        k, s = alpha.shape[0], self.num_styles
        dev = self.loss_ema.device
        rows = torch.eye(s, device=dev).repeat_interleave(k, dim=0)  # style-major
        gb = self.affine(rows, alpha.to(dev, torch.float32).repeat(s, 1))
        feats = torch.cat([torch.cat([g, b], dim=1) for g, b in gb], dim=1)
        return feats.view(s, k, -1).transpose(0, 1).reshape(k, -1).cpu()

    # -- inference -------------------------------------------------------------------------
    @torch.no_grad()
    def bake(self, style_weights: torch.Tensor, alpha: torch.Tensor) -> StyleNet:
        """A plain :class:`StyleNet` with one style row per look: row k is (style rows[k],
        alpha[k]). style_weights (K, S), alpha (K, L) -> network of K styles (float32, eval,
        on this network's device). Lambda runs here once; the per-pixel cost is the plain
        network's."""
        net = self.transformer
        baked = StyleNet(num_styles=style_weights.shape[0], channels=net.channels,
                         num_res_blocks=net.num_res_blocks, outer_kernel=net.outer_kernel)
        dev = next(self.parameters()).device
        state = {k: v for k, v in net.state_dict().items()
                 if not k.endswith((".norm.gamma", ".norm.beta"))}
        gb = self.affine(style_weights.to(dev), alpha.to(dev))
        for block, (g, b) in zip(_blocks(net), gb, strict=True):
            name = _block_name(net, block)
            state[f"{name}.norm.gamma"] = g
            state[f"{name}.norm.beta"] = b
        baked.load_state_dict({k: v.float() for k, v in state.items()})
        return baked.eval().requires_grad_(False).to(dev)


def _block_name(net: StyleNet, block: _ConvCIN) -> str:
    for name, m in net.named_modules():
        if m is block:
            return name
    raise ValueError("block is not part of the network")  # pragma: no cover


def check_layer_weights(values: Sequence[float], layers: Sequence[str], *,
                        flag: str = "--layer-weights") -> list[str]:
    """Check user layer weights against the model's ``layers``; returns warnings (values in
    (1, 2]: outside the trained range). Raises UsageError naming ``flag`` for a wrong count,
    a value below 0 or above 2, or a value that is not a finite number."""
    if len(values) != len(layers):
        raise UsageError(f"{flag} needs {len(layers)} values, one per style layer "
                         f"({', '.join(layers)}), got {len(values)}")
    warnings = []
    for name, v in zip(layers, values, strict=True):
        if not (v == v) or v < 0 or v > MAX_LAYER_WEIGHT:  # NaN fails v == v
            raise UsageError(f"{flag}: the weight of {name} must be in [0, "
                             f"{MAX_LAYER_WEIGHT:g}], got {v:g}")
        if v > 1.0:
            warnings.append(f"{flag}: {name}={v:g} is above the trained range [0, 1] "
                            "(extrapolation)")
    return warnings


#: Latin hypercube designs drawn per :func:`spread_alphas` call; the most spread one wins.
SPREAD_DESIGNS = 64


def spread_alphas(count: int, num_layers: int, seed: int, *,
                  embed: Callable[[torch.Tensor], torch.Tensor] | None = None,
                  designs: int = SPREAD_DESIGNS) -> torch.Tensor:
    """``count`` seeded alpha rows (count, L) in [0, 1], spread apart: a maximin Latin
    hypercube. Each of ``designs`` candidate designs gives every layer one value in each
    of ``count`` equal strata of [0, 1] (uniform inside the stratum, strata shuffled per
    layer), so each layer's values are U(0, 1) as in training but never bunched; the design
    whose closest pair of rows is farthest apart is returned, distances measured between
    ``embed(rows)`` (count, F) (None: the rows themselves; see
    :meth:`AdjustableStyleNet.look_features`). Independent U(0, 1) draws often give two
    rows that differ little, hence two variations that look alike."""
    if count < 1 or num_layers < 1:
        raise ValueError("count and num_layers must be positive")
    gen = torch.Generator().manual_seed(seed)

    def design() -> torch.Tensor:
        strata = torch.stack([torch.randperm(count, generator=gen)
                              for _ in range(num_layers)], dim=1)
        return (strata + torch.rand(count, num_layers, generator=gen)) / count

    def closest_pair(rows: torch.Tensor) -> float:
        if count == 1:
            return 0.0
        e = (embed(rows) if embed is not None else rows).float()
        return float(torch.cdist(e, e).fill_diagonal_(math.inf).min())

    return max((design() for _ in range(designs)), key=closest_pair)
