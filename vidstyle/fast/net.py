"""Feed-forward multi-style transformer with conditional instance normalization.

After Dumoulin, Shlens and Kudlur, "A Learned Representation for Artistic Style" (ICLR
2017): one image-transformation network serves many styles; each style owns only the
(gamma, beta) rows of every normalization layer. Mixing styles mixes those rows.

Layout (channels c0, c1, c2; every normalization is a :class:`ConditionalInstanceNorm2d`)::

    reflect-pad conv kxk 3->c0, CIN, ReLU          (k = ``outer_kernel``, 9 by default)
    reflect-pad conv 3x3 stride 2 c0->c1, CIN, ReLU
    reflect-pad conv 3x3 stride 2 c1->c2, CIN, ReLU
    N x residual block (conv 3x3, CIN, ReLU, conv 3x3, CIN, + skip)
    nearest upsample x2, conv 3x3 c2->c1, CIN, ReLU
    nearest upsample x2, conv 3x3 c1->c0, CIN, ReLU
    reflect-pad conv kxk c0->3, CIN, sigmoid

With ``space_to_depth`` f > 1 the image enters as ``pixel_unshuffle(x, f)`` (3 f^2
channels at 1/f resolution) and the last conv gives 3 f^2 channels put back by
``pixel_shuffle``: no layer works at full resolution (full-resolution layers are memory
bound on CPUs: RESULTS.md, "Per layer"), and the network costs about 1/f^2 the FLOPs.
Frames whose sides are not multiples of f are padded (reflection) and cropped back.

No transposed convolutions (no checkerboard artefacts). The upsampling goes back to the
exact encoder sizes, so any H, W >= 4 works, odd sizes too.

Images are float RGB in [0, 1], shape (B, 3, H, W). Style weights are (B, S) rows: one-hot
for a single style, a convex combination to mix styles.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from vidstyle.config import SPACE_TO_DEPTH_FACTORS

__all__ = [
    "ConditionalInstanceNorm2d", "StyleNet", "one_hot_styles", "blend_strength", "to_depth",
    "from_depth",
]


class ConditionalInstanceNorm2d(nn.Module):
    """Instance normalization with one learned (gamma, beta) row per style.

    z = gamma_s * (x - mu) / sigma + beta_s, where mu and sigma are the per-sample,
    per-channel mean and standard deviation over H, W (sigma = sqrt(var + eps), biased var)
    and gamma_s = w @ gamma, beta_s = w @ beta for the style weight row w.

    Parameters ``gamma`` and ``beta`` have shape (num_styles, C).
    ``scale`` is a plain float multiplier of the stylization of this layer at inference,
    1.0 = as trained (a hook for per-layer style scaling; see :meth:`StyleNet.cin_modules`).
    """

    def __init__(self, *, num_styles: int, channels: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.num_styles = num_styles
        self.channels = channels
        self.eps = eps
        self.gamma = nn.Parameter(torch.ones(num_styles, channels))
        self.beta = nn.Parameter(torch.zeros(num_styles, channels))

    def forward(self, x: torch.Tensor, style_weights: torch.Tensor) -> torch.Tensor:
        """x: (B, C, H, W); style_weights: (B, S) or (1, S) -> (B, C, H, W)."""
        # The statistics in float32 even under autocast (bf16 variance is too coarse).
        xf = x.float()
        var, mean = torch.var_mean(xf, dim=(2, 3), keepdim=True, unbiased=False)
        w = style_weights.to(self.gamma.dtype)
        g = (w @ self.gamma)[:, :, None, None]
        b = (w @ self.beta)[:, :, None, None]
        scale = g * torch.rsqrt(var + self.eps)
        return (xf * scale + (b - mean * scale)).to(x.dtype)

    def extra_repr(self) -> str:
        return f"num_styles={self.num_styles}, channels={self.channels}"


class _ConvCIN(nn.Module):
    """Reflection-padded conv (optionally after nearest x2 upsampling) + CIN (+ ReLU)."""

    def __init__(
        self,
        *,
        num_styles: int,
        cin: int,
        cout: int,
        kernel: int,
        stride: int = 1,
        upsample: bool = False,
        relu: bool = True,
    ) -> None:
        super().__init__()
        self.pad = kernel // 2
        self.upsample = upsample
        self.relu = relu
        self.conv = nn.Conv2d(cin, cout, kernel, stride=stride)
        self.norm = ConditionalInstanceNorm2d(num_styles=num_styles, channels=cout)

    def forward(
        self,
        x: torch.Tensor,
        style_weights: torch.Tensor,
        size: tuple[int, int] | None = None,
    ) -> torch.Tensor:
        if self.upsample:
            x = F.interpolate(x, size=size, mode="nearest")
        if self.pad:
            x = F.pad(x, (self.pad,) * 4, mode="reflect")
        x = self.norm(self.conv(x), style_weights)
        return F.relu(x) if self.relu else x


class _Residual(nn.Module):
    def __init__(self, *, num_styles: int, channels: int) -> None:
        super().__init__()
        self.a = _ConvCIN(num_styles=num_styles, cin=channels, cout=channels, kernel=3)
        self.b = _ConvCIN(
            num_styles=num_styles, cin=channels, cout=channels, kernel=3, relu=False
        )

    def forward(self, x: torch.Tensor, style_weights: torch.Tensor) -> torch.Tensor:
        return x + self.b(self.a(x, style_weights), style_weights)


class StyleNet(nn.Module):
    """The multi-style transformer; see the module docstring for the layout.

    num_styles: S, the number of (gamma, beta) rows per CIN layer.
    channels: (c0, c1, c2) widths at full, 1/2 and 1/4 resolution.
    num_res_blocks: residual blocks at 1/4 resolution.
    outer_kernel: kernel size of the first and last convolution (odd).
    space_to_depth: f in (1, 2, 4): the factor of the pixel (un)shuffle around the
      network (1 = none; see the module docstring).
    """

    def __init__(
        self,
        *,
        num_styles: int,
        channels: Sequence[int] = (16, 32, 64),
        num_res_blocks: int = 3,
        outer_kernel: int = 9,
        space_to_depth: int = 1,
    ) -> None:
        super().__init__()
        if num_styles < 1:
            raise ValueError(f"num_styles must be >= 1, got {num_styles}")
        if len(channels) != 3:
            raise ValueError(f"channels must be 3 widths, got {tuple(channels)}")
        if outer_kernel % 2 != 1:
            raise ValueError(f"outer_kernel must be odd, got {outer_kernel}")
        if space_to_depth not in SPACE_TO_DEPTH_FACTORS:
            raise ValueError(f"space_to_depth must be one of {SPACE_TO_DEPTH_FACTORS}, "
                             f"got {space_to_depth}")
        c0, c1, c2 = (int(c) for c in channels)
        s = num_styles
        self.num_styles = s
        self.channels = (c0, c1, c2)
        self.num_res_blocks = num_res_blocks
        self.outer_kernel = outer_kernel
        self.space_to_depth = space_to_depth
        rgb = 3 * space_to_depth**2  # image channels at the network's resolution
        self.conv_in = _ConvCIN(num_styles=s, cin=rgb, cout=c0, kernel=outer_kernel)
        self.down1 = _ConvCIN(num_styles=s, cin=c0, cout=c1, kernel=3, stride=2)
        self.down2 = _ConvCIN(num_styles=s, cin=c1, cout=c2, kernel=3, stride=2)
        self.res = nn.ModuleList(
            _Residual(num_styles=s, channels=c2) for _ in range(num_res_blocks)
        )
        self.up1 = _ConvCIN(num_styles=s, cin=c2, cout=c1, kernel=3, upsample=True)
        self.up2 = _ConvCIN(num_styles=s, cin=c1, cout=c0, kernel=3, upsample=True)
        self.conv_out = _ConvCIN(
            num_styles=s, cin=c0, cout=rgb, kernel=outer_kernel, relu=False
        )

    def arch(self) -> dict[str, object]:
        """Constructor arguments, JSON/TOML-serializable (for model files); the default
        ``space_to_depth`` (1) is left out, so earlier models' files and fingerprints
        stay as they were."""
        arch: dict[str, object] = {
            "num_styles": self.num_styles,
            "channels": list(self.channels),
            "num_res_blocks": self.num_res_blocks,
            "outer_kernel": self.outer_kernel,
        }
        if self.space_to_depth != 1:
            arch["space_to_depth"] = self.space_to_depth
        return arch

    def cin_modules(self) -> dict[str, ConditionalInstanceNorm2d]:
        """Every CIN layer by its qualified module name, in forward order."""
        return {
            name: m
            for name, m in self.named_modules()
            if isinstance(m, ConditionalInstanceNorm2d)
        }

    def forward(self, x: torch.Tensor, style_weights: torch.Tensor) -> torch.Tensor:
        """x: (B, 3, H, W) RGB in [0, 1]; style_weights: (B, S) or (1, S).

        Returns (B, 3, H, W) in [0, 1] (sigmoid output).
        """
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"expected (B, 3, H, W) images, got {tuple(x.shape)}")
        if style_weights.dim() != 2 or style_weights.shape[1] != self.num_styles:
            raise ValueError(
                f"expected (B, {self.num_styles}) style weights, got {tuple(style_weights.shape)}"
            )
        w = style_weights.to(device=x.device, dtype=torch.float32)
        size = x.shape[-2:]
        x = to_depth(x, self.space_to_depth)
        h0 = self.conv_in(x, w)
        h1 = self.down1(h0, w)
        h = self.down2(h1, w)
        for block in self.res:
            h = block(h, w)
        h = self.up1(h, w, size=h1.shape[-2:])
        h = self.up2(h, w, size=h0.shape[-2:])
        return torch.sigmoid(from_depth(self.conv_out(h, w), self.space_to_depth, size))


def to_depth(x: torch.Tensor, f: int) -> torch.Tensor:
    """(B, C, H, W) -> (B, C f^2, ceil(H / f), ceil(W / f)): ``pixel_unshuffle`` of ``x``
    padded by reflection at the bottom and right to multiples of f (f = 1: ``x``)."""
    if f == 1:
        return x
    h, w = x.shape[-2:]
    ph, pw = -h % f, -w % f
    if ph or pw:
        x = F.pad(x, (0, pw, 0, ph), mode="reflect" if min(h, w) > f else "replicate")
    return F.pixel_unshuffle(x, f)


def from_depth(y: torch.Tensor, f: int, size: Sequence[int]) -> torch.Tensor:
    """Inverse of :func:`to_depth`: ``pixel_shuffle`` of (B, C f^2, h, w), cropped to
    ``size`` (H, W)."""
    if f == 1:
        return y
    return F.pixel_shuffle(y, f)[:, :, : size[0], : size[1]]


def one_hot_styles(
    index: int | Sequence[int] | torch.Tensor, num_styles: int, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """Style index (int) or indices (B,) -> (B, num_styles) float32 one-hot rows."""
    idx = torch.as_tensor(index, dtype=torch.long, device=device).reshape(-1)
    if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= num_styles):
        raise ValueError(f"style index out of range 0..{num_styles - 1}: {idx.tolist()}")
    return F.one_hot(idx, num_styles).to(torch.float32)


def blend_strength(
    stylized: torch.Tensor, content: torch.Tensor, strength: float
) -> torch.Tensor:
    """Output blend ``strength * stylized + (1 - strength) * content``.

    stylized, content: (B, 3, H, W) in [0, 1]; strength in [0, 1] (1 = full style).
    A pixel blend rather than a CIN interpolation toward an identity style: the network
    has no identity style row, and the blend is exact at both ends.
    """
    if not 0.0 <= strength <= 1.0:
        raise ValueError(f"strength must be in [0, 1], got {strength}")
    if strength == 1.0:
        return stylized
    return stylized * strength + content * (1.0 - strength)
