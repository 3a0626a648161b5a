"""Flow-guided stabilization of per-frame network output (the fast method's video mode).

For frame t with source S_t, raw stylized frame N_t and the previous OUTPUT O_{t-1}:

    O_t = (1 - s * c) * N_t + s * c * warp(O_{t-1}, backward_t)

where backward_t is the optical flow from S_t to S_{t-1} (pixels, on frame t's grid),
c = flow_confidence(forward = flow(S_{t-1} -> S_t), backward = backward_t) in [0, 1] (the
binary consistency mask with a soft margin, :data:`CONFIDENCE_SOFTNESS`: under fast motion
pixels just outside the mask are still blended a little), raised to the pair's photometric
agreement where the backward flow alone reproduces S_t (:data:`USE_AGREEMENT`), and s =
``stability`` in [0, 1].
Where the flow is not trustworthy (disocclusions, motion boundaries, out of frame) c = 0
and the fresh frame is used. When the two source frames are different shots
(:func:`vidstyle.flow.shot_cut`: broken flow and changed appearance) the blend is off for
that frame (O_t = N_t), so nothing smears across a cut.

Feature-level blending (``feature_blend=True``; what ``vidstyle run`` uses when the
network runtime exposes its features): the same blend is also applied inside the network,
to its 1/4-resolution features before and after the residual blocks, against the previous
frame's features warped by the (downscaled) flow with bicubic sampling. The decoder then
paints coherent brush strokes from the blended features, so most of the stabilization
happens there and the output-level blend can be light. Blending output pixels alone
averages two unrelated stroke patterns and measurably washes the style out (on bikes.mp4
at s = 0.7 the Gram style loss rose 2.8x); blending features keeps it within a few percent
at a lower warping error (benchmarks/RESULTS.md). The weights at each point are
``min(1, gain * s)`` with the gains of :data:`FEATURE_GAINS` and
:data:`OUTPUT_GAIN_WITH_FEATURES`, raised by :data:`YOUNG_GAIN_WITH_FEATURES` for the first
:data:`YOUNG_FRAMES` blends of each pixel's chain (its age travels with the flow): fast
motion's flicker sits in young chains, while long chains under slow motion would lose
texture to a stronger blend. All these weights are also multiplied by the agreement of
the network's own encoder features with the previous frame's warped ones
(:func:`feature_agreement`): where a consistent flow is still wrong (deforming bodies,
smooth regions carried along) the frame keeps its own strokes. Without feature blending
the output blend has weight s
(texture-preserving in both cases, :func:`texture_preserving_blend`).

Flow is computed on the source frames (DIS, :func:`default_flow`).
The work splits in two so that a pipeline can overlap it with the network:
:meth:`Stabilizer.prepare` needs only source frames (flow + mask), :meth:`Stabilizer.apply`
needs the stylized frame. :meth:`Stabilizer.step` does both.

Frames are (1, 3, H, W) float32 RGB in [0, 1].
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from vidstyle.config import FlowConfig
from vidstyle.contracts import FramePair
from vidstyle.flow import (
    bicubic_plan,
    confidence_from_inconsistency,
    flow_confidence,
    flow_from_config,
    frame_pair,
    photometric_agreement,
    resize_flow,
    transposed_copy,
    warp,
    warp_hwc,
    warp_with_plan,
)
from vidstyle.flow.estimate import FlowEstimator
from vidstyle.imageops import box_mean

log = logging.getLogger(__name__)

#: With feature-level blending, the blend weight at each network point is min(1, gain * s).
#: Tuned on vtest_000-010s.avi and bikes.mp4 (benchmarks/eval_fast_temporal.py): at the
#: default s = 0.7 they are 0.9 before and 0.5 after the residual blocks, 0.3 at the output
#: (texture-preserving: a plain lerp at 0.2 gave the same warping error and style loss on
#: the two clips at a quarter of the cost, but kept only 0.79 of the fine-detail energy of
#: a panning photo, against 0.92).
FEATURE_GAINS = {"pre_res": 9 / 7, "post_res": 5 / 7}
OUTPUT_GAIN_WITH_FEATURES = 3 / 7
#: Soft photometric confidence exp(-|S_t - warp(S_{t-1})|^2 / sigma^2) (RGB in [0, 1],
#: mean over channels) multiplied into the mask; None (the default) disables it. With
#: feature blending it did not help (session 3: warping error equal or lower without it, on
#: both clips) and cost a full-frame warp per frame; 0.05 was the earlier default.
PHOTOMETRIC_SIGMA: float | None = None
#: Softness of the flow-confidence weight (:func:`vidstyle.flow.flow_confidence`) that
#: scales both blends: 0 = the binary consistency mask; s > 0 keeps blending, with a
#: weight falling linearly to 0, where the forward-backward error is up to (1 + s) times
#: Ruder et al.'s tolerance (relative to the flow's magnitude). Every 3rd frame, 30
#: frames, s = 0.7: warping error 0.54 -> 0.52 x raw on bikes.mp4, 0.25 -> 0.23 on vtest,
#: style loss not higher (benchmarks/RESULTS.md, issue 20).
CONFIDENCE_SOFTNESS = 3.0
#: Blend also where the backward flow reproduces the source frame (the pair's photometric
#: agreement, :func:`vidstyle.flow.photometric_agreement`) though the forward-backward test
#: fails: the weight is max(flow confidence, agreement). Fast motion breaks the forward
#: flow where the backward one is still right. Every 3rd frame, 30 frames, s = 0.7:
#: warping error 0.46 -> 0.42 x raw on bikes.mp4 (0.24 -> 0.22 at 1x), vtest 0.23 -> 0.22
#: (benchmarks/RESULTS.md, issue 20).
USE_AGREEMENT = True
#: With feature blending, the output blend pulls harder where the pixel's chain of blends
#: is young: weight c * (OUTPUT_GAIN_WITH_FEATURES + YOUNG_GAIN_WITH_FEATURES * [age <
#: YOUNG_FRAMES]) * s, where the age counts the consecutive frames the pixel was blended
#: (c > 0.5), carried along the flow. A stronger blend everywhere lowers the warping error
#: under fast motion but washes the texture out under slow motion, where the chains grow
#: long (each blend resamples and mixes two stroke patterns); young chains are those of
#: newly revealed or fast-changing regions, where fast motion leaves its flicker.
YOUNG_GAIN_WITH_FEATURES = 4 / 7
YOUNG_FRAMES = 2
#: With feature blending, every blend's weight is also multiplied by the agreement of the
#: network's own encoder features (:func:`feature_agreement` at :data:`AGREEMENT_POINT`,
#: before any blend) with the previous frame's, warped by the flow: where the flow is
#: consistent but wrong (a deforming body, a large smooth region carried along) the
#: features disagree and the frame keeps its own strokes, instead of a mix of two stroke
#: patterns that washes the style out. None disables it. With 2 (and the young gain raised
#: from 2/7 to 4/7 to win back the warping error) the style loss of the stabilized output,
#: x raw, fell on the kit's smooth clips (bigbuckbunny 3x 1.34 -> 1.17, tears 3x 1.29 ->
#: 1.10, carphone 1x 1.39 -> 1.32) with the warping error within 0.40x raw on every clip
#: (benchmarks/RESULTS.md, issue 20, session 10).
FEATURE_AGREEMENT_SIGMA: float | None = 2.0
AGREEMENT_POINT = "pre_res"


def blend_settings() -> tuple[object, ...]:
    """The module's blend constants, for fingerprints: output made with other values
    differs, so a resumed run must not reuse it."""
    return (sorted(FEATURE_GAINS.items()), OUTPUT_GAIN_WITH_FEATURES, PHOTOMETRIC_SIGMA,
            CONFIDENCE_SOFTNESS, USE_AGREEMENT, YOUNG_GAIN_WITH_FEATURES, YOUNG_FRAMES,
            FEATURE_AGREEMENT_SIGMA, AGREEMENT_POINT)


def default_flow() -> FlowEstimator:
    """The flow of :class:`~vidstyle.config.FlowConfig`'s defaults (DIS ``fast`` at the frame
    size; half size costs less but raised the warping error of stabilized bikes.mp4 output
    by a third)."""
    return flow_from_config(FlowConfig())


def feature_agreement(
    current: torch.Tensor, warped_previous: torch.Tensor, sigma: float
) -> torch.Tensor:
    """How well the previous frame's network features, warped onto this frame, agree with
    this frame's: exp(-d / sigma) with d = mean over channels of (current - warped)^2 /
    var_c, var_c the variance of channel c of ``current`` over the frame.

    current, warped_previous: (1, C, h, w), any float dtype. Returns (1, 1, h, w) float32 in
    (0, 1]: 1 where they are equal; d is about 2 for unrelated features of the same
    statistics (exp(-1) at sigma = 2). Motion the flow gets right moves the encoder's
    features with the picture, so a low agreement marks pixels where the flow is wrong or
    the content changed, even where the forward-backward check passes.
    """
    _, c, h, w = current.shape
    cur = current[0].float().reshape(c, h * w)
    # the variance as E[x^2] - E[x]^2: torch's var is ~20x slower at one thread on CPU
    mean = cur.mean(dim=1)
    var = (cur.square().mean(dim=1) - mean.square()).clamp_(min=0.0) * (h * w / max(h * w - 1, 1))
    inv = 1.0 / ((var + 1e-6) * (c * sigma))  # (C,): the mean over channels and sigma folded in
    sq = (cur - warped_previous[0].float().reshape(c, h * w)).square_()
    return torch.exp(-(inv @ sq)).reshape(1, 1, h, w)


#: Radius (pixels) of the texture-preserving output blend's local means and energies.
TPB_RADIUS = 3


def texture_preserving_blend(
    new: torch.Tensor, old: torch.Tensor, weight: torch.Tensor, radius: int = TPB_RADIUS
) -> torch.Tensor:
    """Blend ``new`` toward ``old`` by ``weight`` without washing out texture.

    new, old: (B, 3, H, W); weight: (B, 1, H, W) in [0, 1]. The local means (box filter of
    ``radius``) blend linearly; the detail (image minus local mean) blends linearly too and
    is then rescaled so its local energy is the weighted mean of the two inputs' energies.
    Averaging two uncorrelated brush-stroke textures halves their energy (a plain lerp
    blurs the style away over a few frames); correlated (aligned) textures keep their energy
    with a gain of 1. The gain is clamped to [1, 2]. (On the CPU the energy is that of all
    three channels together, see :func:`_tpb_hwc`; elsewhere per channel.)
    """
    if new.device.type == "cpu" and new.dtype == torch.float32 and new.shape[1] == 3:
        return torch.cat([
            _tpb_hwc(new[b].permute(1, 2, 0).contiguous(), old[b].permute(1, 2, 0).contiguous(),
                     weight[b if weight.shape[0] > 1 else 0].permute(1, 2, 0).float(), radius)
            .permute(2, 0, 1)[None]
            for b in range(new.shape[0])
        ])
    mn, mo = box_mean(new, radius), box_mean(old, radius)
    dn, do = new - mn, old - mo
    low = torch.lerp(mn, mo, weight)
    detail = torch.lerp(dn, do, weight)
    e_target = torch.lerp(box_mean(dn.pow(2), radius), box_mean(do.pow(2), radius), weight)
    e_blend = box_mean(detail.pow(2), radius)
    gain = (e_target.clamp(min=0.0) / (e_blend.clamp(min=0.0) + 1e-6)).sqrt().clamp(1.0, 2.0)
    return (low + gain * detail).clamp(0.0, 1.0)


_RGB_SUM = np.ones((1, 3), np.float32)


def _rgb_energy(d: torch.Tensor) -> np.ndarray:
    """(H, W, 3) float32 CPU -> (H, W) sum of squares over RGB (OpenCV: several times
    faster than a torch sum over a 3-long last axis)."""
    a = d.numpy()
    return cv2.transform(cv2.multiply(a, a), _RGB_SUM)


def _tpb_hwc(
    new: torch.Tensor, old: torch.Tensor, weight: torch.Tensor, radius: int
) -> torch.Tensor:
    """:func:`texture_preserving_blend` of (H, W, 3) float32 CPU images, weight (H, W, 1),
    with OpenCV's 3-channel box filter (its fast path) on the interleaved layout. One
    difference: the detail energy is summed over RGB, so one gain per pixel serves all
    three channels (three box passes instead of five)."""
    k = (2 * radius + 1, 2 * radius + 1)

    def box(x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(cv2.blur(x.numpy(), k, borderType=cv2.BORDER_REPLICATE))

    w = weight.expand_as(new).contiguous()  # a broadcast weight is 7x slower
    mn, mo = box(new), box(old)
    dn, do = new - mn, old - mo
    # in place where a temporary is done with: each fresh image-sized buffer costs its
    # page faults again
    low = mo.sub_(mn).mul_(w).add_(mn)  # lerp(mn, mo, w)
    en, eo = _rgb_energy(dn), _rgb_energy(do)
    detail = do.sub_(dn).mul_(w).add_(dn)  # lerp(dn, do, w)
    # the three local energies (summed over RGB) as the channels of one box filter pass
    energy = cv2.blur(cv2.merge([en, eo, _rgb_energy(detail)]), k,
                      borderType=cv2.BORDER_REPLICATE)
    e_new, e_old, e_blend = energy[..., 0], energy[..., 1], energy[..., 2]
    # running-sum box filters can round a flat area's energy slightly below zero: clamp,
    # or the square root gives NaN there (and the next frames' warps spread it)
    e_target = np.maximum(e_new + weight[..., 0].numpy() * (e_old - e_new), 0.0)
    gain = np.sqrt(e_target / (np.maximum(e_blend, 0.0) + 3e-6))
    gain = torch.from_numpy(gain).clamp_(1.0, 2.0)
    return detail.mul_(gain[..., None]).add_(low).clamp_(0.0, 1.0)


def _interleaved_fits(image: torch.Tensor, flow: torch.Tensor) -> bool:
    """Whether the output blend can run in the interleaved layout: one float32 RGB CPU
    image without autograd, a CPU flow."""
    return (image.device.type == "cpu" and image.dtype == torch.float32
            and image.shape[:2] == (1, 3) and not image.requires_grad
            and flow.device.type == "cpu")


def _interleaved(image: torch.Tensor) -> np.ndarray:
    """(1, 3, H, W) float32 CPU -> (H, W, 3) array: a view where the tensor is a
    channels-last view already (the previous output of :meth:`Stabilizer.apply`), else
    a :func:`vidstyle.flow.transposed_copy`."""
    hwc = image[0].permute(1, 2, 0)
    if hwc.is_contiguous():
        return hwc.numpy()
    return transposed_copy(image[0], (1, 2, 0)).numpy()


@dataclass(frozen=True)
class FlowContext:
    """What :meth:`Stabilizer.prepare` found for one frame.

    backward: (1, 2, H, W) flow from this source frame to the previous one, or None for the
    first frame; mask: (1, 1, H, W) consistency in {0, 1} or None; score: fraction of
    consistent pixels (1.0 for the first frame); cut: the frame starts a new shot.
    """

    index: int
    backward: torch.Tensor | None
    mask: torch.Tensor | None
    score: float
    cut: bool


#: Motion of one frame as the stabilizer reads it: the engine's pair or :meth:`prepare`'s.
Motion = FlowContext | FramePair


class Stabilizer:
    """Blends each new stylized frame with the flow-warped previous output.

    flow: any :class:`~vidstyle.flow.FlowEstimator` (e.g. :func:`default_flow`).
    stability: s in [0, 1]; 0 disables blending. Shot cuts are those of
    :func:`vidstyle.flow.frame_pair` (:func:`vidstyle.flow.shot_cut`). feature_blend: the
    caller passes :meth:`feature_hook` to the network (see the module docstring); the
    output blend is then lighter. preserve_texture: the output blend is
    :func:`texture_preserving_blend` (True) or a plain lerp (False).

    ``prepare`` must be called for frames in order, and so must ``apply`` (each may run in
    its own thread: they share no state).
    """

    def __init__(
        self,
        *,
        flow: FlowEstimator | None,
        stability: float,
        softness: float | None = None,
        photometric_sigma: float | None = PHOTOMETRIC_SIGMA,
        preserve_texture: bool = True,
        feature_blend: bool = False,
        agreement: bool = USE_AGREEMENT,
    ) -> None:
        if not 0.0 <= stability <= 1.0:
            raise ValueError(f"stability must be in [0, 1], got {stability}")
        self.flow = flow
        self.stability = float(stability)
        self.softness = CONFIDENCE_SOFTNESS if softness is None else float(softness)
        self.agreement = agreement
        self._weights: list[tuple[Motion, torch.Tensor]] = []
        self._weights_lock = threading.Lock()
        self.photometric_sigma = photometric_sigma
        self.preserve_texture = preserve_texture
        self.feature_blend = feature_blend
        self._prev_features: dict[str, torch.Tensor] = {}
        self._prev_raw: torch.Tensor | None = None  # unblended features at AGREEMENT_POINT
        # feature agreement of frames whose network ran but whose output blend has not
        # (the hook may run ahead of apply, in another thread); apply takes its frame's
        self._agreements: list[tuple[Motion, torch.Tensor]] = []
        self._prev_source: torch.Tensor | None = None
        self._prev_out: torch.Tensor | None = None
        self._age: torch.Tensor | None = None  # (1, 1, H, W): frames each chain was blended
        self._count = 0
        self.cuts: list[int] = []

    def reset(self) -> None:
        """Forget the history (the next frame is treated as the first one)."""
        self._prev_source = None
        self._prev_out = None
        self._age = None
        self._prev_features = {}
        self._prev_raw = None
        self._agreements = []
        self._weights = []
        self._count = 0
        self.cuts = []

    def confidence(self, ctx: Motion) -> torch.Tensor:
        """Per-pixel blend confidence (1, 1, H, W) in [0, 1] of a frame's motion: the
        binary consistency mask (softness 0, motion without a forward flow, or a pair
        whose masks stage did not run), else :func:`vidstyle.flow.flow_confidence` of the
        pair, raised to the pair's photometric agreement where that is higher (with
        ``agreement``; see :data:`USE_AGREEMENT`). Computed once per pair: the feature
        hook and the output blend share it."""
        if self.softness == 0 or not isinstance(ctx, FramePair) or not ctx.checked:
            return ctx.mask
        with self._weights_lock:
            for c, w in self._weights:
                if c is ctx:
                    return w
        w = (flow_confidence(ctx.forward, ctx.backward, softness=self.softness)
             if ctx.inconsistency is None else
             confidence_from_inconsistency(ctx.inconsistency, softness=self.softness))
        if self.agreement and ctx.agreement is not None:
            w = torch.maximum(w, ctx.agreement.to(w))
        with self._weights_lock:
            self._weights = [(ctx, w), *self._weights[:1]]
        return w

    @property
    def output_weight(self) -> float:
        """Blend weight of the warped previous output (times the mask)."""
        if self.feature_blend:
            return min(1.0, OUTPUT_GAIN_WITH_FEATURES * self.stability)
        return self.stability

    @property
    def young_weight(self) -> float:
        """Extra blend weight (times the mask) where a pixel's chain of blends is younger
        than :data:`YOUNG_FRAMES` (with feature blending; see :data:`YOUNG_GAIN_WITH_FEATURES`)."""
        if not self.feature_blend:
            return 0.0
        return max(0.0, min(1.0, (OUTPUT_GAIN_WITH_FEATURES + YOUNG_GAIN_WITH_FEATURES)
                            * self.stability) - self.output_weight)

    def _agreement(self, ctx: Motion, *, take: bool) -> torch.Tensor | None:
        """The feature agreement the hook found for ``ctx`` (removed with ``take``)."""
        with self._weights_lock:
            for i, (c, a) in enumerate(self._agreements):
                if c is ctx:
                    if take:
                        del self._agreements[i]
                    return a
        return None

    def feature_hook(self, ctx: Motion | None) -> Callable[[str, torch.Tensor], torch.Tensor]:
        """A network feature hook for this frame (``InferenceNet.forward(..., hook=)``).

        At each point it blends the features (1, C, h, w) with the previous frame's features
        at that point, warped by ``ctx.backward`` resized to (h, w) (bicubic), weighted by
        the area-averaged mask times min(1, FEATURE_GAINS[point] * s), times the
        :func:`feature_agreement` of the unblended features at :data:`AGREEMENT_POINT`
        (which the output blend then uses too); it remembers the result for the next
        frame. Call it for frames in order, from one thread.
        """

        Plan = tuple[tuple[torch.Tensor, torch.Tensor], torch.Tensor]  # (warp plan, mask)
        plans: dict[tuple[int, int], Plan] = {}

        def plan(size: tuple[int, int], device: torch.device) -> Plan:
            # one bicubic warp plan and mask per feature size, shared by the points, on
            # the features' device (the flow comes from the CPU)
            if size not in plans:
                flow = resize_flow(ctx.backward.float().to(device), size)
                mask = F.interpolate(self.confidence(ctx).float().to(device), size=size,
                                     mode="area")
                plans[size] = (bicubic_plan(flow), mask)
            return plans[size]

        def hook(point: str, features: torch.Tensor) -> torch.Tensor:
            prev = self._prev_features.get(point)
            out = features
            prev_raw = None
            if (FEATURE_AGREEMENT_SIGMA is not None and point == AGREEMENT_POINT
                    and features.shape[0] == 1):
                prev_raw, self._prev_raw = self._prev_raw, features
            if (
                prev is not None
                and ctx is not None
                and ctx.backward is not None
                and ctx.mask is not None
                and not ctx.cut
                and prev.shape == features.shape
                and features.shape[0] == 1
            ):
                gain = min(1.0, FEATURE_GAINS.get(point, 0.0) * self.stability)
                warp_plan, mask = plan(tuple(features.shape[-2:]), features.device)
                if prev_raw is not None and prev_raw.shape == features.shape:
                    # bicubic (repeated warps stay sharp); one gather for both
                    both = warp_with_plan(torch.cat([prev, prev_raw], dim=1), warp_plan)
                    warped = both[:, : prev.shape[1]]
                    agreement = feature_agreement(features, both[:, prev.shape[1]:],
                                                  FEATURE_AGREEMENT_SIGMA)
                    with self._weights_lock:
                        self._agreements = [*self._agreements[-15:], (ctx, agreement)]
                else:
                    warped = warp_with_plan(prev, warp_plan)
                    agreement = self._agreement(ctx, take=False)
                if agreement is not None and agreement.shape[-2:] == mask.shape[-2:]:
                    mask = mask * agreement.to(mask)
                out = torch.lerp(features, warped.to(features.dtype),
                                 (mask * gain).to(features.dtype))
            self._prev_features[point] = out
            return out

        return hook

    def prepare(self, source: torch.Tensor) -> FlowContext:
        """Flow and consistency between the previous source frame and ``source`` (1,3,H,W)."""
        index = self._count
        self._count += 1
        prev, self._prev_source = self._prev_source, source
        if prev is None or prev.shape != source.shape or self.stability == 0.0:
            return FlowContext(index, None, None, 1.0, prev is not None)
        if self.flow is None:
            raise ValueError("this Stabilizer has no flow estimator: pass the engine's motion")
        pair = frame_pair(prev, source, flow=self.flow)
        mask = self.confidence(pair)
        if self.photometric_sigma:
            # flow errors the forward-backward check misses show as a residual between the
            # source frame and its warped predecessor: trust the flow less there
            # (per pixel: radius 0; its zeros on motion boundaries and out of frame are
            # zeros of the mask already)
            mask = mask * photometric_agreement(prev, source, pair.backward,
                                                sigma=self.photometric_sigma, radius=0)
        if pair.cut:
            self.cuts.append(index)
            log.debug("frame %d: shot cut (consistent %.2f), no blending", index, pair.score)
        return FlowContext(index, pair.backward, mask, pair.score, pair.cut)

    def apply(self, ctx: Motion | None, stylized: torch.Tensor) -> torch.Tensor:
        """Blend ``stylized`` (1, 3, H, W) with the warped previous output; returns O_t."""
        prev = self._prev_out
        out = stylized
        if (
            prev is not None
            and ctx is not None
            and ctx.backward is not None
            and not ctx.cut
            and prev.shape == stylized.shape
        ):
            c = self.confidence(ctx).to(stylized.dtype)  # (1, 1, H, W)
            agreement = self._agreement(ctx, take=True)
            if agreement is not None:
                c = c * F.interpolate(agreement.to(c.device), size=c.shape[-2:],
                                      mode="bilinear", align_corners=False).to(c.dtype)
            flow = ctx.backward.to(stylized.dtype)
            young = self.young_weight
            # the chains' ages travel with the output (one warp for both); made from the
            # last frame: prev's size
            age = self._age if young > 0 else None
            if self.preserve_texture and _interleaved_fits(stylized, flow):
                out, age = self._blend_interleaved(stylized, prev, flow, c, age)
            else:
                if age is not None:
                    both = warp(torch.cat([prev, age.to(prev.dtype)], dim=1), flow)
                    warped, age = both[:, :3], both[:, 3:]
                else:
                    warped = warp(prev, flow)
                weight = self._output_blend_weight(c, age)
                out = (texture_preserving_blend(stylized, warped, weight)
                       if self.preserve_texture else torch.lerp(stylized, warped, weight))
            if young > 0 and age is None:  # no chains yet (the blends just began): age 0
                age = torch.zeros_like(c)
            self._age = None if young == 0 else (age + 1) * (c > 0.5).to(c.dtype)
        else:
            self._age = torch.zeros_like(stylized[:, :1]) if self.young_weight > 0 else None
        self._prev_out = out
        return out

    def _output_blend_weight(self, c: torch.Tensor, age: torch.Tensor | None) -> torch.Tensor:
        """The output blend's weight (1, 1, H, W): the confidence ``c`` times the output
        weight, plus the young weight where the warped ``age`` of a pixel's chain of blends
        is below :data:`YOUNG_FRAMES` (None: no young weight)."""
        if age is None:
            return c * self.output_weight
        # ages are whole frames; the warp interpolates them: round to the nearest
        is_young = (age < YOUNG_FRAMES - 0.5).to(c.dtype)
        return c * (self.output_weight + self.young_weight * is_young)

    def _blend_interleaved(
        self, stylized: torch.Tensor, prev: torch.Tensor, flow: torch.Tensor,
        c: torch.Tensor, age: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """:meth:`apply`'s texture-preserving blend on the CPU in the interleaved (H, W, 3)
        layout: the same values as the channels-first path without its three transposing
        copies. The output is a (1, 3, H, W) view of (H, W, 3) memory (what the uint8
        conversion for the encoder and the next frame's warp read without a copy).
        Returns (output, the warped ``age`` or None)."""
        warped = torch.from_numpy(warp_hwc(_interleaved(prev), flow))
        if age is not None:
            age = torch.from_numpy(warp_hwc(age[0, 0].float().contiguous().numpy(), flow))
            age = age[None, None]
        weight = self._output_blend_weight(c, age)
        new = torch.from_numpy(_interleaved(stylized))
        out = _tpb_hwc(new, warped, weight[0].permute(1, 2, 0).float(), TPB_RADIUS)
        return out.permute(2, 0, 1)[None], age

    def step(self, source: torch.Tensor, stylized: torch.Tensor) -> torch.Tensor:
        """``apply(prepare(source), stylized)``: one frame, source and raw stylized output."""
        return self.apply(self.prepare(source), stylized)


__all__ = ["AGREEMENT_POINT", "FEATURE_AGREEMENT_SIGMA", "FEATURE_GAINS",
           "OUTPUT_GAIN_WITH_FEATURES", "USE_AGREEMENT", "YOUNG_FRAMES",
           "YOUNG_GAIN_WITH_FEATURES", "FlowContext", "Motion", "Stabilizer", "blend_settings",
           "default_flow", "feature_agreement"]
