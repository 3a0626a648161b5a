"""Inference copy of the multi-style network (:class:`InferenceNet`): the network the
runtimes run, in a chosen dtype and layout, with feature hooks for stabilization and
normalization statistics for tiling.

:class:`InferenceNet` is faster than ``StyleNet.forward`` even in float32: the conv bias
is dropped (instance normalization cancels it), the normalization runs as one native
``batch_norm`` call instead of ``var_mean`` + arithmetic, the upsampling convs run at
low resolution (sub-pixel form) and the thin full-resolution output conv (c0 -> 3) runs
in phase form (:data:`PHASE_FACTOR`).

Images are (B, 3, H, W) float32 RGB in [0, 1]; style weights are (B, S) float32 rows.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from vidstyle.fast.net import StyleNet, from_depth, to_depth

# --------------------------------------------------------------------------- network

#: ``hook(point, features) -> features`` at the named points of :meth:`InferenceNet.forward`.
FeatureHook = Callable[[str, torch.Tensor], torch.Tensor]


#: The kxk output conv (c0 -> 3 channels, stride 1) runs as one stride-f conv whose f*f
#: output phases come out as channels, put back by ``pixel_shuffle`` (the same sums: the
#: extra taps multiply zeros). Blocked conv kernels (oneDNN, ONNX Runtime) waste most of
#: their work on 3 output channels; 48 fill them. Measured at 640x360 (RESULTS.md, "Fast
#: path on every CPU"): the layer alone 1.25-1.8x faster in torch fp32, 2x in bf16, ONNX
#: Runtime's decoder graph 0.7x the time. 0 or 1: the plain conv.
PHASE_FACTOR = 4
#: Layers with at most this many output channels use the phase form.
PHASE_MAX_CHANNELS = 3


@dataclass(frozen=True)
class _StyleMap:
    """Per-pixel style weights (1, S, H, W) at the input resolution, kept as the styles
    that have weight somewhere (``active``: (A,) indices into S, ``weights``: (1, A, H,
    W)), and pooled once per layer size (``at``): a frame uses a few of the model's
    styles, and many layers share a size.

    ``base``: (A,) the column of the map found at most pixels (the background's style
    row, in practice; see :func:`_most_common_column`); :meth:`regions` gives, per layer
    size, the rectangles outside which the pooled map equals ``base`` (the people's
    boxes), so the normalization can run per channel (fused) with ``base``'s (gamma,
    beta) and per pixel only inside them.
    """

    weights: torch.Tensor
    active: torch.Tensor
    base: torch.Tensor
    pooled: dict[tuple[int, int], torch.Tensor] = field(default_factory=dict)
    rects: dict[tuple[int, int], list[tuple[int, int, int, int]] | None] = field(
        default_factory=dict)
    cols: dict[tuple[int, int], list[torch.Tensor]] = field(default_factory=dict)

    @classmethod
    def of(cls, style_map: torch.Tensor) -> _StyleMap:
        """From a full style map (1, S, H, W)."""
        m = style_map.to(torch.float32)
        active = torch.nonzero(m.flatten(2).amax(dim=-1)[0] > 0).flatten()
        if active.numel() == 0:  # no weight anywhere: gamma = beta = 0 (style 0's column)
            active = torch.zeros(1, dtype=torch.long, device=m.device)
        weights = m[:, active].contiguous()
        return cls(weights, active, _most_common_column(weights[0]))

    def at(self, size: Sequence[int]) -> torch.Tensor:
        """The active weights (1, A, h, w) averaged down (area) to ``size``."""
        key = (int(size[0]), int(size[1]))
        if key not in self.pooled:
            m = self.weights
            if tuple(m.shape[-2:]) != key:
                m = F.adaptive_avg_pool2d(m, key)
            self.pooled[key] = m
        return self.pooled[key]

    def columns(self, size: Sequence[int]) -> list[torch.Tensor]:
        """The pooled weights inside each rectangle of :meth:`regions` at ``size`` as
        (h * w, A) float32 rows (row-major over the rectangle), made once per size."""
        key = (int(size[0]), int(size[1]))
        if key not in self.cols:
            m = self.at(size)[0]
            self.cols[key] = [m[:, t:b, lft:r].permute(1, 2, 0).reshape(-1, m.shape[0])
                              for t, b, lft, r in self.regions(size) or []]
        return self.cols[key]

    def regions(self, size: Sequence[int]) -> list[tuple[int, int, int, int]] | None:
        """Rectangles (top, bottom, left, right), end-exclusive, at ``size`` that hold
        every pixel whose pooled weights differ from :attr:`base` (by more than
        :data:`MAP_TOLERANCE`); [] when none does; None when they would cover more than
        :data:`MAP_REGION_SHARE` of the frame (then every pixel takes the per-pixel
        path)."""
        key = (int(size[0]), int(size[1]))
        if key not in self.rects:
            self.rects[key] = _deviation_rects(self.at(key), self.base)
        return self.rects[key]


def _most_common_column(m: torch.Tensor, samples: int = 32) -> torch.Tensor:
    """The column (A,) of (A, H, W) ``m`` found at most of a ``samples`` x ``samples`` grid
    of pixels (the background's style row, when people cover less than half the frame;
    mixes included)."""
    h, w = m.shape[-2:]
    ys = torch.linspace(0, h - 1, min(h, samples), device=m.device).round().long()
    xs = torch.linspace(0, w - 1, min(w, samples), device=m.device).round().long()
    cols = m[:, ys][:, :, xs].flatten(1)  # (A, K)
    uniq, counts = torch.unique((cols / MAP_TOLERANCE).round(), dim=1, return_counts=True)
    best = uniq[:, int(counts.argmax())]
    # an actual column of the map (not the rounded key) near the most common one
    k = int(((cols / MAP_TOLERANCE).round() - best[:, None]).abs().sum(0).argmin())
    return cols[:, k].clone()


#: Pooled style weights within this of the base column count as the base style.
MAP_TOLERANCE = 1e-6
#: Above this share of the frame in per-pixel rectangles, the whole frame is per-pixel.
MAP_REGION_SHARE = 0.6


def _deviation_rects(m: torch.Tensor, base: torch.Tensor
                     ) -> list[tuple[int, int, int, int]] | None:
    """Bounding rectangles of the connected regions of (1, A, h, w) ``m`` that differ from
    the column ``base`` (A,), overlapping ones merged; see :meth:`_StyleMap.regions`."""
    h, w = m.shape[-2:]
    off = (m[0] - base.view(-1, 1, 1)).abs().amax(dim=0) > MAP_TOLERANCE  # (h, w)
    if not bool(off.any()):
        return []
    n, _, stats, _ = cv2.connectedComponentsWithStats(off.cpu().numpy().astype(np.uint8),
                                                      connectivity=8)
    rects = [(int(t), int(t + hh), int(lft), int(lft + ww))
             for lft, t, ww, hh, _ in stats[1:n]]
    merged = True
    while merged:  # merge overlapping rectangles until none overlap
        merged = False
        out: list[tuple[int, int, int, int]] = []
        for r in rects:
            for k, q in enumerate(out):
                if r[0] < q[1] and q[0] < r[1] and r[2] < q[3] and q[2] < r[3]:
                    out[k] = (min(r[0], q[0]), max(r[1], q[1]), min(r[2], q[2]),
                              max(r[3], q[3]))
                    merged = True
                    break
            else:
                out.append(r)
        rects = out
    if sum((b - t) * (r - lft) for t, b, lft, r in rects) > MAP_REGION_SHARE * h * w:
        return None
    return rects


@dataclass(frozen=True)
class _LayerSpec:
    pad: int
    stride: int
    upsample: bool
    relu: bool
    eps: float


class InferenceNet(nn.Module):
    """Inference-only copy of a :class:`StyleNet` in a chosen dtype and memory layout.

    forward(x, style_weights): x (B, 3, H, W) float in [0, 1], style_weights (B, S) or
    (1, S) -> (B, 3, H, W) float32 in [0, 1], equal to ``StyleNet.forward`` up to rounding.

    A *style map* (1, S, H, W) instead of rows paints different styles in different places
    in one pass (Dumoulin et al. 2017, spatial style interpolation): each pixel's column
    holds convex style weights; every conditional normalization then takes per-pixel
    (gamma, beta), the map averaged down to that layer's resolution. A map constant over
    the frame gives the same output as the equal row.

    :meth:`forward_stats` also exposes the normalization statistics (for tiling): it can
    use given per-layer (mean, var) instead of the image's own, and report the statistics
    of a sub-rectangle (the tile's core).
    """

    def __init__(
        self, net: StyleNet, *, dtype: torch.dtype = torch.float32, channels_last: bool = False
    ) -> None:
        super().__init__()
        self.dtype = dtype
        self.channels_last = channels_last
        self.num_styles = net.num_styles
        #: the network's pixel (un)shuffle factor (:class:`StyleNet`'s ``space_to_depth``)
        self.space_to_depth = net.space_to_depth
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        blocks = [net.conv_in, net.down1, net.down2]
        for r in net.res:
            blocks += [r.a, r.b]
        blocks += [net.up1, net.up2, net.conv_out]
        self.num_res = len(net.res)
        self.specs: list[_LayerSpec] = []
        self.weights = nn.ParameterList()
        self.subpixel = nn.ParameterDict()
        self.phase = nn.ParameterDict()
        gammas, betas = [], []
        for b in blocks:
            conv = b.conv
            self.specs.append(
                _LayerSpec(b.pad, int(conv.stride[0]), b.upsample, b.relu, float(b.norm.eps))
            )
            # The conv bias is a per-channel constant that instance normalization removes.
            w = conv.weight.detach().to(dtype).contiguous(memory_format=fmt)
            self.weights.append(nn.Parameter(w, requires_grad=False))
            if b.upsample and conv.kernel_size == (3, 3):
                sub = _subpixel_kernel(conv.weight.detach().float())
                self.subpixel[str(len(self.specs) - 1)] = nn.Parameter(
                    sub.to(dtype).contiguous(memory_format=fmt), requires_grad=False
                )
            if (PHASE_FACTOR > 1 and not b.upsample and conv.stride == (1, 1)
                    and conv.out_channels <= PHASE_MAX_CHANNELS and conv.kernel_size[0] > 1):
                ph = _phase_kernel(conv.weight.detach().float(), PHASE_FACTOR)
                self.phase[str(len(self.specs) - 1)] = nn.Parameter(
                    ph.to(dtype).contiguous(memory_format=fmt), requires_grad=False
                )
            gammas.append(b.norm.gamma.detach().float().clone())
            betas.append(b.norm.beta.detach().float().clone())
        # frozen parameters, so that .to(device) moves them with the conv weights
        self.gammas = nn.ParameterList(nn.Parameter(g, requires_grad=False) for g in gammas)
        self.betas = nn.ParameterList(nn.Parameter(b, requires_grad=False) for b in betas)
        # strides: the resolution factor (1, 2, 4, times the space-to-depth factor) of each
        # layer's output
        factors, f = [], self.space_to_depth
        for s in self.specs:
            f = f // 2 if s.upsample else f * s.stride
            factors.append(f)
        self.factors = tuple(factors)
        self.requires_grad_(False)
        self.eval()

    @property
    def num_layers(self) -> int:
        return len(self.specs)

    @property
    def alignment(self) -> int:
        """Input pixels per 1/4-resolution feature pixel (4 x ``space_to_depth``): crops
        starting at multiples of it sample the same grid as the whole frame."""
        return 4 * self.space_to_depth

    def affine(self, style_weights: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per-layer (gamma, beta), each (B, C) float32, of the style rows (B, S)."""
        w = style_weights.to(torch.float32)
        return [(w @ g, w @ b) for g, b in zip(self.gammas, self.betas, strict=True)]

    def affine_map(self, i: int, style_map: torch.Tensor, size: Sequence[int]
                   ) -> tuple[torch.Tensor, torch.Tensor]:
        """(gamma, beta) maps (1, C, h, w) float32 of layer ``i`` for a style map
        (1, S, H, W), averaged down (area) to the layer's size (h, w)."""
        m = style_map.to(torch.float32)
        if tuple(m.shape[-2:]) != tuple(size):
            m = F.adaptive_avg_pool2d(m, tuple(size))
        g = torch.einsum("sc,bshw->bchw", self.gammas[i], m)
        b = torch.einsum("sc,bshw->bchw", self.betas[i], m)
        return g, b

    def _prep(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.dtype)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def _conv(self, i: int, x: torch.Tensor, size: Sequence[int] | None) -> torch.Tensor:
        s = self.specs[i]
        key = str(i)
        if key in self.phase:
            # stride-f conv of the padded input -> f*f phases as channels -> pixel shuffle
            f = PHASE_FACTOR
            k = self.phase[key]
            h, w = x.shape[-2:]
            # ceil(h / f) with non-negative operands: a traced (ONNX) integer division
            # truncates, which differs from floor division for negative numbers
            rows = f * ((h + f - 1) // f) + k.shape[-2] - f
            cols = f * ((w + f - 1) // f) + k.shape[-1] - f
            xp = F.pad(x, (s.pad,) * 4, mode="reflect")
            xp = F.pad(xp, (0, cols - xp.shape[-1], 0, rows - xp.shape[-2]))
            y = F.pixel_shuffle(F.conv2d(xp, k, stride=f), f)[:, :, :h, :w]
            return y.contiguous(memory_format=torch.channels_last) if self.channels_last else y
        if (s.upsample and key in self.subpixel and s.pad == 1
                and tuple(size) == (2 * x.shape[-2], 2 * x.shape[-1])):
            # nearest x2 + reflect pad 1 + conv 3x3 == replicate pad 1 at low resolution,
            # a conv with 4x the outputs (one per output phase), pixel shuffle: the same
            # sums without the 4x larger upsampled and padded copies
            y = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), self.subpixel[key])
            y = F.pixel_shuffle(y, 2)
            return y.contiguous(memory_format=torch.channels_last) if self.channels_last else y
        if s.upsample:
            x = F.interpolate(x, size=tuple(size), mode="nearest")
        if s.pad:
            x = F.pad(x, (s.pad,) * 4, mode="reflect")
        return F.conv2d(x, self.weights[i], None, stride=s.stride)

    def _norm(
        self,
        i: int,
        y: torch.Tensor,
        gb: Sequence[tuple[torch.Tensor, torch.Tensor]] | _StyleMap,
        stats: Sequence[tuple[torch.Tensor, torch.Tensor]] | None,
    ) -> torch.Tensor:
        s = self.specs[i]
        if isinstance(gb, _StyleMap):
            z = self._norm_map(i, y, gb)
            return F.relu(z, inplace=True) if s.relu else z
        g, b = gb[i]
        outs = []
        for k in range(y.shape[0]):
            gk = g[k if g.shape[0] > 1 else 0]
            bk = b[k if b.shape[0] > 1 else 0]
            if stats is None:
                z = F.batch_norm(y[k : k + 1], None, None, gk, bk, True, 0.0, s.eps)
            else:
                mean, var = stats[i]
                z = F.batch_norm(
                    y[k : k + 1], mean[k].to(y.device), var[k].to(y.device), gk, bk,
                    False, 0.0, s.eps,
                )
            outs.append(z)
        z = outs[0] if len(outs) == 1 else torch.cat(outs)
        return F.relu(z, inplace=True) if s.relu else z

    def _norm_map(self, i: int, y: torch.Tensor, gb: _StyleMap) -> torch.Tensor:
        """Instance normalization of layer ``i`` with per-pixel (gamma, beta) from a style
        map: per channel (one fused call) with the base column's (gamma, beta), then per
        pixel only inside the rectangles where the map differs (the same sums there)."""
        eps = self.specs[i].eps
        gam, bet = self.gammas[i][gb.active], self.betas[i][gb.active]  # (A, C)
        m = gb.at(y.shape[-2:])
        rects = gb.regions(y.shape[-2:])
        if rects is None:  # most of the frame differs: per pixel everywhere
            g = torch.einsum("sc,bshw->bchw", gam, m)
            b = torch.einsum("sc,bshw->bchw", bet, m)
            z = F.batch_norm(y, None, None, None, None, True, 0.0, eps)
            return torch.addcmul(b.to(z.dtype), z, g.to(z.dtype))
        base = gb.base.to(gam.device)
        z, mean, rstd = torch.native_batch_norm(y, base @ gam, base @ bet, None, None,
                                                True, 0.0, eps)
        # z = gamma * (y - mean) * rstd + beta = y * G + B per pixel, with G and B the
        # map's mix of gam * rstd and bet - mean * rstd * gam (linear in the weights)
        mean, rstd = mean.view(1, -1, 1, 1), rstd.view(1, -1, 1, 1)
        for (top, bottom, left, right), cols in zip(rects, gb.columns(y.shape[-2:]),
                                                   strict=True):
            # float32 inside, in the formula's order ((y - mean) * rstd first): y * G + B
            # in bf16 loses precision where |mean| >> std and would show at the border
            hw = (1, bottom - top, right - left, -1)
            g = (cols @ gam).view(hw).permute(0, 3, 1, 2)  # (1, C, h, w), channels last
            b = (cols @ bet).view(hw).permute(0, 3, 1, 2)
            zn = (y[:, :, top:bottom, left:right].float() - mean) * rstd
            z[:, :, top:bottom, left:right] = torch.addcmul(b, zn, g)
        return z

    def _run(
        self,
        x: torch.Tensor,
        style_weights: torch.Tensor,
        stats: Sequence[tuple[torch.Tensor, torch.Tensor]] | None = None,
        record: Callable[[int, torch.Tensor], None] | None = None,
        hook: FeatureHook | None = None,
    ) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"expected (B, 3, H, W) images, got {tuple(x.shape)}")
        gb: Sequence[tuple[torch.Tensor, torch.Tensor]] | _StyleMap
        if style_weights.dim() == 4:  # a style map (1, S, H, W)
            if (style_weights.shape[:2] != (1, self.num_styles) or x.shape[0] != 1
                    or style_weights.shape[-2:] != x.shape[-2:] or stats is not None):
                raise ValueError(f"a style map must be (1, {self.num_styles}, H, W) for one "
                                 f"image (H, W), got {tuple(style_weights.shape)} for "
                                 f"{tuple(x.shape)}")
            gb = _StyleMap.of(style_weights.to(x.device))
        elif style_weights.dim() != 2 or style_weights.shape[1] != self.num_styles:
            raise ValueError(
                f"expected (B, {self.num_styles}) style weights, got {tuple(style_weights.shape)}"
            )
        else:
            gb = self.affine(style_weights.to(x.device))
        size = x.shape[-2:]
        x = self._prep(to_depth(x, self.space_to_depth))
        n = self.num_layers

        def layer(i: int, h: torch.Tensor, size: Sequence[int] | None = None) -> torch.Tensor:
            y = self._conv(i, h, size)
            if record is not None:
                record(i, y)
            return self._norm(i, y, gb, stats)

        h0 = layer(0, x)
        h1 = layer(1, h0)
        h = layer(2, h1)
        if hook is not None:
            h = hook("pre_res", h)
        for r in range(self.num_res):
            h = h + layer(4 + 2 * r, layer(3 + 2 * r, h))
        if hook is not None:
            h = hook("post_res", h)
        h = layer(n - 3, h, h1.shape[-2:])
        h = layer(n - 2, h, h0.shape[-2:])
        h = layer(n - 1, h)
        return torch.sigmoid(from_depth(h.float(), self.space_to_depth, size))

    def forward(
        self, x: torch.Tensor, style_weights: torch.Tensor, hook: FeatureHook | None = None
    ) -> torch.Tensor:
        """hook(name, features) -> features, called with the 1/4-resolution features (of
        the network's input: 1 / :attr:`alignment` of the image's) before ("pre_res") and
        after ("post_res") the residual blocks (flow stabilization of video blends them
        with the previous frame's; see vidstyle.fast.stabilize)."""
        return self._run(x, style_weights, hook=hook)

    def forward_stats(
        self,
        x: torch.Tensor,
        style_weights: torch.Tensor,
        *,
        stats: Sequence[tuple[torch.Tensor, torch.Tensor]] | None = None,
        core: tuple[int, int, int, int] | None = None,
    ) -> tuple[torch.Tensor, list[tuple[float, torch.Tensor, torch.Tensor]]]:
        """Forward with explicit normalization statistics.

        stats: per layer (mean, var), each (B, C) float32; None = the image's own.
        core: (y0, y1, x0, x1) in input pixels (multiples of :attr:`alignment` except at the
          far edges):
          the region whose pre-normalization statistics are reported.
        Returns (output (B, 3, H, W) float32, per layer (count, mean (B, C), M2 (B, C)))
        with float64 mean and M2 = sum of squared deviations over the core region.
        """
        h, w = x.shape[-2:]
        y0, y1, x0, x1 = core if core is not None else (0, h, 0, w)
        recorded: list[tuple[float, torch.Tensor, torch.Tensor]] = []

        def rec(i: int, y: torch.Tensor) -> None:
            f = self.factors[i]
            r0, c0 = y0 // f, x0 // f
            r1 = y.shape[-2] if y1 >= h else y1 // f
            c1 = y.shape[-1] if x1 >= w else x1 // f
            part = y[:, :, r0:r1, c0:c1].double()
            cnt = float(part.shape[-2] * part.shape[-1])
            mean = part.mean(dim=(2, 3))
            m2 = (part - mean[:, :, None, None]).pow(2).sum(dim=(2, 3))
            recorded.append((cnt, mean, m2))

        out = self._run(x, style_weights, stats=stats, record=rec)
        return out, recorded


def _subpixel_kernel(w: torch.Tensor) -> torch.Tensor:
    """(Cout, Cin, 3, 3) kernel of nearest-x2-upsample + conv -> (4 Cout, Cin, 3, 3) kernel
    on the low-resolution input whose output channel c*4 + a*2 + b is output phase (a, b)
    (for ``pixel_shuffle(., 2)``). Phase a=0 rows: tap -1 <- w[0], tap 0 <- w[1] + w[2];
    a=1: tap 0 <- w[0] + w[1], tap +1 <- w[2]; columns likewise."""
    r = torch.tensor(
        [[[1.0, 0, 0], [0, 1, 1], [0, 0, 0]], [[0.0, 0, 0], [1, 1, 0], [0, 0, 1]]],
        dtype=w.dtype, device=w.device,
    )  # (phase, low-res tap, original tap)
    k = torch.einsum("aym,bxn,oimn->oabiyx", r, r, w)
    cout, cin = w.shape[:2]
    return k.reshape(cout * 4, cin, 3, 3)


def _phase_kernel(w: torch.Tensor, f: int) -> torch.Tensor:
    """(Cout, Cin, k, k) stride-1 kernel -> (Cout f^2, Cin, f k', f k') kernel of a
    stride-f conv whose output channel c f^2 + a f + b is output phase (a, b) (for
    ``pixel_shuffle(., f)``), k' = ceil((k + f - 1) / f): output pixel (f Y + a, f X + b)
    takes input pixel (f Y + a + dy, f X + b + dx), tap (a + dy, b + dx) of the window."""
    cout, cin, k, _ = w.shape
    kk = f * -(-(k + f - 1) // f)
    out = torch.zeros(cout, f, f, cin, kk, kk, dtype=w.dtype, device=w.device)
    for a in range(f):
        for b in range(f):
            out[:, a, b, :, a : a + k, b : b + k] = w
    return out.reshape(cout * f * f, cin, kk, kk)


def merge_stats(
    parts: Sequence[list[tuple[float, torch.Tensor, torch.Tensor]]],
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Combine per-tile (count, mean, M2) of each layer into per-layer (mean, biased var).

    Chan et al.'s parallel update; returns float32 (B, C) tensors.
    """
    merged = []
    for layer in zip(*parts, strict=True):
        n, mean, m2 = layer[0]
        for cnt, mu, mm in layer[1:]:
            tot = n + cnt
            delta = mu - mean
            mean = mean + delta * (cnt / tot)
            m2 = m2 + mm + delta.pow(2) * (n * cnt / tot)
            n = tot
        merged.append((mean.float(), (m2 / n).float()))
    return merged

