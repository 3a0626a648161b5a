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
from vidstyle.imageops import box_mean

#: Coefficients of the disocclusion test (Sundaram et al. 2010, as used by Ruder et al.).
OCCLUSION_REL = 0.01
OCCLUSION_ABS = 0.5
#: Coefficients of the motion-boundary test.
BOUNDARY_REL = 0.01
BOUNDARY_ABS = 0.002


def _sqnorm(flow: torch.Tensor) -> torch.Tensor:
    """(B, 2, H, W) -> (B, 1, H, W) squared length of each vector."""
    u, v = flow[:, :1], flow[:, 1:]
    return (u * u).add_(v * v)  # = pow(2).sum(dim=1) exactly, without a strided reduction


def flow_gradient_sqnorm(flow: torch.Tensor) -> torch.Tensor:
    """|grad u|^2 + |grad v|^2 with central differences (f(x+1) - f(x-1)) / 2.

    flow: (B, 2, H, W) in pixels. The border is replicated, so the outermost pixels get
    half a one-sided difference. Returns (B, 1, H, W) in px^2 per px^2.
    """
    padded = F.pad(flow, (1, 1, 1, 1), mode="replicate")
    dx = padded[:, :, 1:-1, 2:] - padded[:, :, 1:-1, :-2]
    dy = padded[:, :, 2:, 1:-1] - padded[:, :, :-2, 1:-1]
    # (d / 2)^2 = d^2 / 4 exactly in binary floating point; in place: fewer buffers
    sq = dx.square_().add_(dy.square_())
    return (sq[:, :1] + sq[:, 1:]).mul_(0.25)


def _channel_mean(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, 1, H, W) mean over the channels, = ``x.mean(dim=1,
    keepdim=True)`` for the few channels of a frame; 10x faster than torch's reduction
    when ``x`` is in channels-last memory (a decoded frame's layout)."""
    out = x[:, :1].clone()
    for i in range(1, x.shape[1]):
        out.add_(x[:, i : i + 1])
    return out.div_(x.shape[1])


def _error_ratio(forward: torch.Tensor, backward: torch.Tensor) -> torch.Tensor:
    """e / t of the disocclusion test (see :func:`inconsistency`), (B, 1, H, W) float32."""
    forward = forward.to(device=backward.device, dtype=torch.float32)
    backward = backward.to(torch.float32)
    w_tilde = warp(forward, backward, padding="border")
    err = _sqnorm(w_tilde + backward)
    tol = OCCLUSION_REL * (_sqnorm(w_tilde) + _sqnorm(backward)) + OCCLUSION_ABS
    return err / tol


def disocclusion_mask(forward: torch.Tensor, backward: torch.Tensor) -> torch.Tensor:
    """1 where the forward-backward check fails, on frame B's grid.

    forward: (B, 2, H, W) flow A -> B; backward: (B, 2, H, W) flow B -> A, in pixels.
    Returns (B, 1, H, W) float32 in {0, 1} (1 = disoccluded / inconsistent).
    """
    return (_error_ratio(forward, backward) > 1.0).to(torch.float32)


def motion_boundary_mask(backward: torch.Tensor) -> torch.Tensor:
    """1 at motion boundaries of ``backward`` (B, 2, H, W), in pixels.

    Returns (B, 1, H, W) float32 in {0, 1}.
    """
    lhs = flow_gradient_sqnorm(backward)
    rhs = BOUNDARY_REL * _sqnorm(backward) + BOUNDARY_ABS
    return (lhs > rhs).to(torch.float32)


def _check_pair(forward: torch.Tensor, backward: torch.Tensor) -> None:
    if forward.shape != backward.shape or forward.dim() != 4 or forward.shape[1] != 2:
        raise ValueError(
            f"forward and backward must both be (B, 2, H, W), got "
            f"{tuple(forward.shape)} and {tuple(backward.shape)}"
        )


def reliable_region(backward: torch.Tensor) -> torch.Tensor:
    """Where ``backward`` (B, 2, H, W, pixels) can be used at all: 1 off its motion
    boundaries and where x + w^(x) stays inside frame A, else 0 -> (B, 1, H, W) float32."""
    return (1.0 - motion_boundary_mask(backward)) * valid_mask(backward)


def inconsistency(forward: torch.Tensor, backward: torch.Tensor) -> torch.Tensor:
    """The forward-backward error relative to its tolerance, per pixel of frame B.

    forward: (B, 2, H, W) flow A -> B; backward: (B, 2, H, W) flow B -> A, in pixels.
    With e = |w~ + w^|^2 and the disocclusion tolerance t = 0.01 (|w~|^2 + |w^|^2) + 0.5
    (Ruder et al.'s test), returns e / t as (B, 1, H, W) float32, and +inf on motion
    boundaries, where x + w^(x) leaves frame A and where either flow is NaN. Values <= 1
    pass the test: :func:`consistency_mask` and :func:`flow_confidence` are functions of
    this one map (:func:`confidence_from_inconsistency`), so a caller that needs both
    computes it once.
    """
    _check_pair(forward, backward)
    backward = backward.to(torch.float32)
    # a NaN flow is no evidence
    ratio = torch.nan_to_num(_error_ratio(forward, backward), nan=float("inf"))
    return ratio.masked_fill_(reliable_region(backward) == 0, float("inf"))


def confidence_from_inconsistency(ratio: torch.Tensor, *, softness: float) -> torch.Tensor:
    """Blend weight in [0, 1] from :func:`inconsistency`'s map (B, 1, H, W): 1 where the
    ratio is <= 1, falling linearly to 0 at 1 + ``softness``; softness 0 gives the binary
    consistency mask. Returns float32 of the same shape."""
    if softness < 0:
        raise ValueError(f"softness must be >= 0, got {softness}")
    if softness == 0:
        return (ratio <= 1.0).to(torch.float32)
    return (1.0 - (ratio - 1.0) / softness).clamp_(0.0, 1.0)


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
    return confidence_from_inconsistency(inconsistency(forward, backward), softness=0.0)


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
    if softness < 0:
        raise ValueError(f"softness must be >= 0, got {softness}")
    return confidence_from_inconsistency(inconsistency(forward, backward), softness=softness)


#: Patch radius (pixels) of :func:`photometric_agreement`'s mean squared residual.
AGREEMENT_RADIUS = 2
#: The residual scale (RGB in [0, 1]) of the agreement :func:`vidstyle.flow.frame_pair`
#: computes. Chosen on bikes.mp4 at 1x and 3x motion (0.02 and 0.04 gave the same
#: warping error within 1 %; benchmarks/RESULTS.md, issue 20).
AGREEMENT_SIGMA = 0.03


def photometric_agreement(
    previous: torch.Tensor, current: torch.Tensor, backward: torch.Tensor, *,
    sigma: float, radius: int = AGREEMENT_RADIUS, reliable: torch.Tensor | None = None,
) -> torch.Tensor:
    """How well ``backward`` explains frame B by frame A, per pixel of B, in [0, 1].

    previous: (B, 3, H, W) frame A, current: (B, 3, H, W) frame B, RGB in [0, 1];
    backward: (B, 2, H, W) flow B -> A in pixels. With r the squared residual
    |B - warp(A, backward)|^2 (mean over RGB) averaged over a (2 radius + 1)^2 patch, the
    agreement is exp(-r / sigma^2) (sigma in RGB units); 0 on motion boundaries of
    ``backward`` and where x + w^(x) leaves frame A (``reliable``: that region (B, 1, H, W)
    when the caller has it, :func:`reliable_region`). Returns (B, 1, H, W) float32.

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
    res = _channel_mean((current.float() - warp(previous.float(), backward)).square_())
    res = box_mean(res, radius)
    keep = reliable_region(backward) if reliable is None else reliable.to(res)
    # exp(-30) ~ 1e-13 is 0 for every use; unclamped, the deep underflow of exp takes
    # a slow path (20x the time at 640x480)
    return torch.exp((res / -sigma**2).clamp_(min=-30.0)) * keep


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
