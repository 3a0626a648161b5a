"""Flow-consistency masks (Ruder, Dosovitskiy & Brox 2016).

Notation of the paper: ``w`` is the flow from frame A to frame B (``forward``), ``w^`` the
flow from B to A (``backward``). The mask lives on frame B's grid and says where the
content of B can be trusted to come from A:

- disocclusion: |w~ + w^|^2 > 0.01 (|w~|^2 + |w^|^2) + 0.5, where w~ = warp(w, w^) is
  the forward flow sampled at x + w^(x) (the forward flow "warped to the second frame");
- motion boundary: |grad u^|^2 + |grad v^|^2 > 0.01 |w^|^2 + 0.002 (central differences);
- out of frame: x + w^(x) falls outside frame A.

c = 0 at any of these, 1 elsewhere. Unlike the reference implementation we do not blur
the mask: it stays binary, float32 {0, 1}.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F

from vidstyle.flow.warp import valid_mask, warp

#: Coefficients of the disocclusion test (Sundaram et al. 2010, as used by Ruder et al.).
OCCLUSION_REL = 0.01
OCCLUSION_ABS = 0.5
#: Coefficients of the motion-boundary test.
BOUNDARY_REL = 0.01
BOUNDARY_ABS = 0.002


def _sqnorm(flow: torch.Tensor) -> torch.Tensor:
    """(B, 2, H, W) -> (B, 1, H, W) squared length of each vector."""
    return flow.pow(2).sum(dim=1, keepdim=True)


def flow_gradient_sqnorm(flow: torch.Tensor) -> torch.Tensor:
    """|grad u|^2 + |grad v|^2 with central differences (f(x+1) - f(x-1)) / 2.

    flow: (B, 2, H, W) in pixels. The border is replicated, so the outermost pixels get
    half a one-sided difference. Returns (B, 1, H, W) in px^2 per px^2.
    """
    padded = F.pad(flow, (1, 1, 1, 1), mode="replicate")
    dx = (padded[:, :, 1:-1, 2:] - padded[:, :, 1:-1, :-2]) * 0.5
    dy = (padded[:, :, 2:, 1:-1] - padded[:, :, :-2, 1:-1]) * 0.5
    return (dx.pow(2) + dy.pow(2)).sum(dim=1, keepdim=True)


def disocclusion_mask(forward: torch.Tensor, backward: torch.Tensor) -> torch.Tensor:
    """1 where the forward-backward check fails, on frame B's grid.

    forward: (B, 2, H, W) flow A -> B; backward: (B, 2, H, W) flow B -> A, in pixels.
    Returns (B, 1, H, W) float32 in {0, 1} (1 = disoccluded / inconsistent).
    """
    w_tilde = warp(forward, backward, padding="border")
    lhs = _sqnorm(w_tilde + backward)
    rhs = OCCLUSION_REL * (_sqnorm(w_tilde) + _sqnorm(backward)) + OCCLUSION_ABS
    return (lhs > rhs).to(torch.float32)


def motion_boundary_mask(backward: torch.Tensor) -> torch.Tensor:
    """1 at motion boundaries of ``backward`` (B, 2, H, W), in pixels.

    Returns (B, 1, H, W) float32 in {0, 1}.
    """
    lhs = flow_gradient_sqnorm(backward)
    rhs = BOUNDARY_REL * _sqnorm(backward) + BOUNDARY_ABS
    return (lhs > rhs).to(torch.float32)


def consistency_mask(forward: torch.Tensor, backward: torch.Tensor) -> torch.Tensor:
    """Ruder et al.'s per-pixel weight c on frame B's grid.

    forward: (B, 2, H, W) flow from frame A to frame B (pixels, on A's grid).
    backward: (B, 2, H, W) flow from frame B to frame A (pixels, on B's grid).
    Returns (B, 1, H, W) float32 in {0, 1}: 0 where B's pixel is disoccluded, on a motion
    boundary of ``backward``, or maps outside frame A; 1 elsewhere.

    For the temporal loss of frame i against frame i-1, pass
    ``consistency_mask(forward=flow(i-1 -> i), backward=flow(i -> i-1))`` and warp the
    previous output with ``warp(prev, backward)``.
    """
    if forward.shape != backward.shape or forward.dim() != 4 or forward.shape[1] != 2:
        raise ValueError(
            f"forward and backward must both be (B, 2, H, W), got "
            f"{tuple(forward.shape)} and {tuple(backward.shape)}"
        )
    forward = forward.to(device=backward.device, dtype=torch.float32)
    backward = backward.to(torch.float32)
    bad = disocclusion_mask(forward, backward)
    bad = torch.maximum(bad, motion_boundary_mask(backward))
    bad = torch.maximum(bad, 1.0 - valid_mask(backward))
    return 1.0 - bad


def flow_confidence(
    forward: torch.Tensor, backward: torch.Tensor, *, softness: float = 3.0
) -> torch.Tensor:
    """A soft version of :func:`consistency_mask`: per-pixel weight in [0, 1] on frame B's
    grid.

    forward: (B, 2, H, W) flow A -> B; backward: (B, 2, H, W) flow B -> A, in pixels.
    With e = |w~ + w^|^2 and the disocclusion tolerance t = 0.01 (|w~|^2 + |w^|^2) + 0.5
    (relative to the flow's magnitude, as Ruder et al.'s test), the weight is 1 for
    e <= t (where the binary mask is 1) and falls linearly to 0 at e = (1 + softness) t;
    0 on motion boundaries and where x + w^(x) leaves frame A (as the binary mask).
    softness 0 gives the binary mask. Returns (B, 1, H, W) float32.
    """
    if forward.shape != backward.shape or forward.dim() != 4 or forward.shape[1] != 2:
        raise ValueError(
            f"forward and backward must both be (B, 2, H, W), got "
            f"{tuple(forward.shape)} and {tuple(backward.shape)}"
        )
    if softness < 0:
        raise ValueError(f"softness must be >= 0, got {softness}")
    forward = forward.to(device=backward.device, dtype=torch.float32)
    backward = backward.to(torch.float32)
    w_tilde = warp(forward, backward, padding="border")
    err = _sqnorm(w_tilde + backward)
    tol = OCCLUSION_REL * (_sqnorm(w_tilde) + _sqnorm(backward)) + OCCLUSION_ABS
    if softness == 0:
        weight = (err <= tol).to(torch.float32)
    else:
        weight = (1.0 - (err - tol) / (softness * tol)).clamp(0.0, 1.0)
    keep = (1.0 - motion_boundary_mask(backward)) * valid_mask(backward)
    return weight * keep


#: Patch radius (pixels) of :func:`photometric_agreement`'s mean squared residual.
AGREEMENT_RADIUS = 2
#: The residual scale (RGB in [0, 1]) of the agreement :func:`vidstyle.flow.frame_pair`
#: computes. Chosen on bikes.mp4 at 1x and 3x motion (0.02 and 0.04 gave the same
#: warping error within 1 %; benchmarks/RESULTS.md, issue 20).
AGREEMENT_SIGMA = 0.03


def photometric_agreement(
    previous: torch.Tensor, current: torch.Tensor, backward: torch.Tensor, *,
    sigma: float, radius: int = AGREEMENT_RADIUS,
) -> torch.Tensor:
    """How well ``backward`` explains frame B by frame A, per pixel of B, in [0, 1].

    previous: (B, 3, H, W) frame A, current: (B, 3, H, W) frame B, RGB in [0, 1];
    backward: (B, 2, H, W) flow B -> A in pixels. With r the squared residual
    |B - warp(A, backward)|^2 (mean over RGB) averaged over a (2 radius + 1)^2 patch, the
    agreement is exp(-r / sigma^2) (sigma in RGB units); 0 on motion boundaries of
    ``backward`` and where x + w^(x) leaves frame A. Returns (B, 1, H, W) float32.

    Under fast motion the forward-backward test of :func:`consistency_mask` fails wherever
    either flow is wrong, while the backward flow alone may be right: a textured patch
    that the warp reproduces within sigma is evidence that it is (in flat areas it proves
    little, but a wrong flow there moves nothing visible either).
    """
    if previous.shape != current.shape or previous.dim() != 4:
        raise ValueError(f"frames must be two (B, C, H, W) of one shape, got "
                         f"{tuple(previous.shape)} and {tuple(current.shape)}")
    if sigma <= 0 or radius < 0:
        raise ValueError(f"need sigma > 0 and radius >= 0, got {sigma} and {radius}")
    backward = backward.to(device=current.device, dtype=torch.float32)
    res = (current.float() - warp(previous.float(), backward)).pow(2).mean(dim=1,
                                                                            keepdim=True)
    if radius:
        res = F.avg_pool2d(F.pad(res, (radius,) * 4, mode="replicate"), 2 * radius + 1,
                           stride=1)
    keep = (1.0 - motion_boundary_mask(backward)) * valid_mask(backward)
    return torch.exp(-res / sigma**2) * keep


def long_term_weights(masks: Mapping[int, torch.Tensor]) -> dict[int, torch.Tensor]:
    """Long-term weights c_long(i-j, i) = max(c(i-j, i) - sum_{k in J, k < j} c(i-k, i), 0).

    masks: {j: c(i-j, i)} for the frame offsets j in J (j >= 1), each (B, 1, H, W) in
    [0, 1] on frame i's grid. Returns {j: c_long} with the same keys and shapes, so a
    frame further back only counts where no nearer frame is reliable.
    """
    out: dict[int, torch.Tensor] = {}
    nearer: torch.Tensor | None = None
    for j in sorted(masks):
        c = masks[j].to(torch.float32)
        out[j] = c if nearer is None else (c - nearer).clamp_min(0.0)
        nearer = c.clone() if nearer is None else nearer + c
    return out
