"""Losses of style transfer as pure functions on tensors.

Feature maps are (B, C, H, W) float tensors from a loss network (see :mod:`vidstyle.vgg`);
images are (B, 3, H, W) float RGB in [0, 1].
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch


def gram(features: torch.Tensor) -> torch.Tensor:
    """Gram matrix normalized by C*H*W.

    features: (B, C, H, W) -> (B, C, C). The normalization keeps the loss independent
    of the image size and layer width (unnormalized Grams make L-BFGS diverge).
    """
    b, c, h, w = features.shape
    f = features.reshape(b, c, h * w)
    return torch.bmm(f, f.transpose(1, 2)) / (c * h * w)


def content_loss(features: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared difference of two (B, C, H, W) feature maps -> scalar."""
    return torch.mean((features - target) ** 2)


def style_loss(
    features: Mapping[str, torch.Tensor],
    target_grams: Mapping[str, torch.Tensor],
    weights: Mapping[str, float] | None = None,
) -> torch.Tensor:
    """Weighted sum over layers of the squared Frobenius distance of Gram matrices.

    features: layer -> (B, C, H, W); target_grams: layer -> (B or 1, C, C).
    The per-layer distance is the mean over the C*C entries (then summed over batch).
    weights: layer -> weight (default 1 for every target layer). Returns a scalar.
    """
    total = features[next(iter(target_grams))].new_zeros(())
    for layer, target in target_grams.items():
        w = 1.0 if weights is None else weights.get(layer, 0.0)
        if w == 0.0:
            continue
        g = gram(features[layer])
        total = total + w * torch.mean((g - target) ** 2, dim=(1, 2)).sum()
    return total


def masked_gram(features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Gram matrix of the features inside a soft region, normalized by C * the region's
    area (so a region's Gram is on the scale of :func:`gram` of a whole image).

    features: (B, C, H, W); mask: (B or 1, 1, H, W) weights in [0, 1] at the features'
    resolution -> (B, C, C). Each feature vector is weighted by its pixel's mask value
    (Gatys et al. 2017, spatial control).
    """
    b, c, h, w = features.shape
    f = (features * mask).reshape(b, c, h * w)
    area = mask.reshape(mask.shape[0], -1).sum(dim=1).clamp(min=1.0)  # (B or 1,)
    return torch.bmm(f, f.transpose(1, 2)) / (c * area.view(-1, 1, 1))


def region_style_loss(
    features: Mapping[str, torch.Tensor],
    regions: Sequence[tuple[torch.Tensor, Mapping[str, torch.Tensor]]],
    weights: Mapping[str, float] | None = None,
) -> torch.Tensor:
    """Style loss of several regions, each with its own Gram targets.

    regions: (mask (1, 1, H, W) in [0, 1] at image resolution, target grams layer ->
    (1, C, C)). Each region's loss is :func:`style_loss` with :func:`masked_gram` (the
    mask averaged down to each layer's size), weighted by the region's share of the
    image area, so one region covering the whole image equals :func:`style_loss`.
    """
    first = features[next(iter(regions[0][1]))]
    total = first.new_zeros(())
    for mask, targets in regions:
        share = float(mask.mean())
        if share <= 0.0:
            continue
        for layer, target in targets.items():
            w = 1.0 if weights is None else weights.get(layer, 0.0)
            if w == 0.0:
                continue
            f = features[layer]
            m = torch.nn.functional.adaptive_avg_pool2d(mask.to(f), tuple(f.shape[-2:]))
            g = masked_gram(f, m)
            total = total + share * w * torch.mean((g - target) ** 2, dim=(1, 2)).sum()
    return total


def tv_loss(image: torch.Tensor) -> torch.Tensor:
    """Total variation (mean squared neighbour difference) of (B, C, H, W) -> scalar."""
    dx = image[:, :, :, 1:] - image[:, :, :, :-1]
    dy = image[:, :, 1:, :] - image[:, :, :-1, :]
    return torch.mean(dx**2) + torch.mean(dy**2)


def temporal_loss(
    image: torch.Tensor,
    warped: Sequence[torch.Tensor],
    weights: Sequence[torch.Tensor],
) -> torch.Tensor:
    """Ruder et al.'s temporal loss: 1/D * sum_k c_k * (x - w_k)^2.

    image: (B, 3, H, W); warped: previous stylized frames warped to this frame, each
    (B, 3, H, W); weights: per-pixel consistency weights c_k in [0, 1], each (B, 1, H, W).
    D = B*3*H*W. Returns a scalar (zero when ``warped`` is empty).
    """
    total = image.new_zeros(())
    d = image.numel()
    for w, c in zip(warped, weights, strict=True):
        total = total + torch.sum(c * (image - w) ** 2) / d
    return total
