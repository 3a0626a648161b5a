"""Temporally consistent video stylization by optimization (Ruder, Dosovitskiy & Brox 2016).

The whole clip is one unit of work (:meth:`TemporalOptimStylizer.stylize_clip`, a clip
stylizer of :mod:`vidstyle.engine`), because frame i depends on the stylized frames
before it:

- **short-term** (``mode="short"``): frame i starts from the stylized frame i-1 warped onto
  frame i by the backward flow (i -> i-1) where the consistency mask c is 1, and (with
  ``optim.init="content"``) from the content frame where c is 0 -- the paper keeps the
  warped pixels there too, but with few iterations they leave trails behind moving
  objects. The loss gains
  gamma / D * sum c * (x - warp(x(i-1)))^2 with the consistency mask c of the pair
  (0 at disocclusions, motion boundaries and pixels that flow out of the frame).
- **long-term** (``mode="long"``): the temporal loss sums over the stylized frames i-j,
  j in ``long_term`` (paper: 1, 10, 20, 40), each weighted by c_long
  (:func:`vidstyle.flow.long_term_weights`: a frame further back only counts where no
  nearer frame is reliable). Flows between frames i-j and i are estimated directly.
- **multi-pass** (``passes`` > 1): passes over the clip in alternating directions
  (even passes forward, odd passes backward). Pass 0 is the sequential algorithm without
  temporal loss; in pass k >= 1 frame i starts from the blend
  x'(i) = delta * c * warp(x(i-1)) + (1 - delta + delta * (1 - c)) * x(i), where x(i) is
  frame i of pass k-1 and x(i-1) the neighbour already processed in pass k ("i-1" in the
  current direction). The temporal loss is on in passes k >= passes // 2 (the later half,
  as the reference implementation's ``use_temporalLoss_after``); with one pass it is on.
- **shot cuts**: an adjacent pair whose flow breaks *and* whose appearance changes
  (:func:`vidstyle.flow.shot_cut`; fast motion breaks only the flow) starts a new shot;
  nothing temporal crosses it (no warped init, no temporal loss, no long-term reference
  from the other shot, no blend).

Iterations: frames without a usable neighbour (the first frame, frames after a cut) get
the full ``optim.iters`` with the coarse-to-fine schedule; warm-started frames get
``later_frame_iters * iters`` at the working size only.

Work directory (every artifact written atomically; a killed run resumes at the first
unfinished frame of the unfinished pass):

- ``decode/`` (the engine's decode stage): the content frames at working size as PNG,
  so passes in either direction stream frames from disk instead of holding the clip.
- ``flow/`` (the engine's flow stage, :class:`vidstyle.flow.cache.PairFlowCache`): the
  forward and backward flow of two frames, named by the frames' content hashes, reused
  across runs and styles.
- ``pass_K/``: the frames of intermediate pass K; the last pass writes into the pipeline's
  stylize stage. Intermediate passes are deleted when the last one is complete.

Determinism: the "previous output" of frame i is always re-read from its saved uint8 PNG
and flows are always the float16 values read back from the cache, so a resumed run gives
the same frames as an uninterrupted one with the same seed.

Flows for the frames ahead are estimated in a worker thread while the current frame is
optimized (OpenCV releases the GIL). Memory stays bounded: at most the current frame, the
references of one frame and the flows of the next few frames are held, never the clip.
"""

from __future__ import annotations

import logging
import shutil
import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import torch

from vidstyle.config import RunConfig, fingerprint_of
from vidstyle.contracts import (
    ClipSource,
    Instances,
    ProgressEvent,
    ProgressFn,
    StylizerNeeds,
    frame_unit,
)
from vidstyle.flow import (
    consistency_mask,
    flow_confidence,
    long_term_weights,
    shot_cut,
    warp,
)
from vidstyle.flow.cache import PairFlowCache
from vidstyle.optim.frame import OptimStylizerBase
from vidstyle.optim.image import IterationEvent, TemporalTerms
from vidstyle.tensors import to_tensor, to_uint8
from vidstyle.workdir import Stage, WorkDir, load_png, save_png

log = logging.getLogger(__name__)

MODES = ("none", "short", "long")
#: Softness of the per-pixel weight c (:func:`vidstyle.flow.flow_confidence`) of the
#: temporal loss and the warm start: 0 = Ruder et al.'s binary mask; s > 0 keeps a
#: weight falling linearly to 0 where the forward-backward error is up to (1 + s) times
#: their tolerance (relative to the flow's magnitude), so the terms keep working where fast
#: motion leaves the binary mask sparse (benchmarks/RESULTS.md, issue 20).
CONFIDENCE_SOFTNESS = 0.0
#: How many frames ahead (in processing order) the flow worker prefetches.
PREFETCH_FRAMES = 2


def references(
    i: int, direction: int, offsets: tuple[int, ...], n: int
) -> list[tuple[int, int]]:
    """Frames that frame ``i`` may refer to: [(j, i - direction * j)] for j in ``offsets``
    inside 0..n-1, nearest first (shot cuts are not considered here)."""
    out = []
    for j in sorted(offsets):
        r = i - direction * j
        if 0 <= r < n:
            out.append((j, r))
    return out


def blend(
    previous: torch.Tensor, warped: torch.Tensor, mask: torch.Tensor, delta: float
) -> torch.Tensor:
    """Multi-pass initialization of Ruder et al.: delta*c*w + (1 - delta + delta*(1-c))*x.

    previous: x(i) of the last pass (1, 3, H, W); warped: the neighbour of this pass warped
    onto frame i (1, 3, H, W); mask: c (1, 1, H, W) in [0, 1]; delta in [0, 1].
    Where c = 0 the result is x(i); where c = 1 it is delta*w + (1-delta)*x(i).
    """
    return delta * mask * warped + (1.0 - delta + delta * (1.0 - mask)) * previous


class FrameStore:
    """Reads frames (content and stylized) from PNG artifacts on demand, as tensors.

    Nothing is cached: every call re-reads the file, so memory holds only what callers
    keep. ``held`` counts the returned tensors still alive and ``peak`` its maximum (used by
    the tests to check that the clip is streamed).
    """

    def __init__(self, *, device: torch.device) -> None:
        self.device = device
        self.held = 0
        self.peak = 0
        self._lock = threading.Lock()

    def _release(self) -> None:
        with self._lock:
            self.held -= 1

    def load(self, path: Path) -> torch.Tensor:
        """PNG at ``path`` -> (1, 3, H, W) float32 in [0, 1] on the store's device."""
        t = to_tensor(load_png(path), self.device).contiguous()
        with self._lock:
            self.held += 1
            self.peak = max(self.peak, self.held)
        weakref.finalize(t, self._release)
        return t


@dataclass(frozen=True)
class FrameTrace:
    """What frame ``frame`` of pass ``pass_`` was computed from (recorded for inspection).

    init: "cold" (full iterations, coarse-to-fine), "warp" (warped neighbour), "blend"
    (multi-pass blend) or "previous" (last pass's frame, no usable neighbour); refs: the
    frames whose warped outputs entered the temporal loss; iterations: optimizer steps.
    """

    frame: int
    pass_: int
    init: str
    refs: tuple[int, ...]
    iterations: int


class TemporalOptimStylizer(OptimStylizerBase):
    """Clip-level Gatys stylizer with Ruder et al.'s temporal terms (see module docstring):
    a :class:`~vidstyle.contracts.ClipStylizer` of the engine.

    Built by :func:`vidstyle.engine.make_stylizer` for ``config.temporal.mode`` "short" or
    "long" ("none" is accepted too: independent frames, used for comparisons); the engine
    decodes the clip and supplies the flows (``config.flow``). Takes the keywords of
    :class:`~vidstyle.optim.frame.OptimStylizerBase`; constructing touches no disk.
    """

    kind: ClassVar[Literal["clip"]] = "clip"
    fingerprint_tag: ClassVar[str] = "optim-temporal"

    @staticmethod
    def needs_for(config: RunConfig) -> StylizerNeeds:
        """Pair flows with temporal terms; the clip and its passes in the work folder."""
        people = config.style.per_person
        return StylizerNeeds(flow=config.temporal.mode != "none" or people, cache=True,
                             instances=people)

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self._people: Callable[[int], Instances] | None = None
        self.store = FrameStore(device=self.device)
        #: cut_before[i] is True when the pair (i-1, i) is a shot cut (memo of this run).
        self.cut_before: dict[int, bool] = {}
        #: per computed frame of the last run_stage, in order (small: no pixels)
        self.trace: list[FrameTrace] = []
        #: softness of the per-pixel weight c (see CONFIDENCE_SOFTNESS)
        self.softness = CONFIDENCE_SOFTNESS
        #: counters of the last run_stage: frames computed (all passes), flow pairs
        #: estimated, worker seconds estimating, seconds the optimizer waited for flow.
        self.stats: dict[str, float] = {}

    def fingerprint(self) -> str:
        """The base fingerprint, plus the weight's softness when it is not 0."""
        base = super().fingerprint()
        return base if self.softness == 0 else fingerprint_of(base, "softness", self.softness)

    # -- settings --------------------------------------------------------------------
    @property
    def offsets(self) -> tuple[int, ...]:
        """Frame offsets J of the temporal loss: () for none, (1,) for short, else J."""
        mode = self.config.temporal.mode
        if mode == "none":
            return ()
        if mode == "short":
            return (1,)
        return tuple(sorted(set(self.config.temporal.long_term)))

    @property
    def passes(self) -> int:
        return 1 if self.config.temporal.mode == "none" else self.config.temporal.passes

    def temporal_loss_on(self, k: int) -> bool:
        """Whether pass ``k`` (0-based) uses the temporal loss: k >= passes // 2."""
        return self.config.temporal.mode != "none" and k >= self.passes // 2

    @property
    def warm_iters(self) -> int:
        o = self.config.optim
        return max(1, round(self.config.temporal.later_frame_iters * o.iters))

    # -- the engine's clip protocol -------------------------------------------------------
    def stylize_clip(
        self,
        *,
        clip: ClipSource,
        flows: PairFlowCache | None,
        out: Stage,
        work: WorkDir,
        progress: ProgressFn,
        people: Callable[[int], Instances] | None = None,
    ) -> tuple[int, int]:
        """Stylize the decoded ``clip`` into ``out`` (``frame_NNNNNN.png`` at working size),
        all passes; ``flows`` are the engine's cached pair flows (None without temporal
        terms); ``people(i)``: frame i's tracked people for per-person styles (masked Gram
        losses, see :meth:`regions`; the temporal terms are unchanged). Returns (frames
        computed in the last pass, frames of the last pass reused from a previous run).
        Intermediate passes go to other stages of ``work``.
        """
        self.cut_before = {}
        self.trace = []
        self._people = people
        n = clip.n
        if n == 0:
            return 0, 0
        if self.offsets and flows is None and n > 1:
            # one frame has no pairs: it is stylized cold, like any first frame
            raise ValueError("temporal terms need the engine's flows")
        passes = self.passes
        final_done = sum(out.has(frame_unit(i)) for i in range(n))
        if final_done == n:
            log.info("all %d frames already stylized", n)
            progress(ProgressEvent("stylize", n * passes, n * passes))
            return 0, n
        pass_stages = [
            work.stage(f"pass_{k}", fingerprint_of("temporal-pass", out.fingerprint, k))
            for k in range(passes - 1)
        ] + [out]
        complete = [all(s.has(frame_unit(i)) for i in range(n)) for s in pass_stages]
        start = max((k + 1 for k in range(passes) if complete[k]), default=0)
        self.stats = {"computed": 0}
        for k in range(start, passes):
            self._run_pass(k, clip, pass_stages, flows, progress)
        if flows is not None:
            self.stats.update(flow_pairs=flows.estimated, flow_seconds=flows.seconds,
                              flow_wait_seconds=flows.wait_seconds)
        for s in pass_stages[:-1]:
            shutil.rmtree(s.dir, ignore_errors=True)
        return n - final_done, final_done

    # -- passes ------------------------------------------------------------------------
    def pass_offsets(self, k: int) -> tuple[int, ...]:
        """Offsets whose flows pass ``k`` needs: J and 1 with temporal loss, else 1 only."""
        if not self.offsets:
            return ()
        if not self.temporal_loss_on(k):
            return (1,)
        return tuple(sorted(set(self.offsets) | {1}))

    def _needed_pairs(self, i: int, k: int, n: int) -> list[tuple[int, int]]:
        """Frame pairs (a < b) whose flows frame ``i`` needs in pass ``k``."""
        direction = 1 if k % 2 == 0 else -1
        refs = references(i, direction, self.pass_offsets(k), n)
        return [(min(i, r), max(i, r)) for _, r in refs]

    def _same_shot(self, a: int, b: int, clip: ClipSource, flows: PairFlowCache | None) -> bool:
        """No cut between frames a and b (checks, and memoizes, every adjacent pair)."""
        lo, hi = min(a, b), max(a, b)
        for m in range(hi, lo, -1):
            if m not in self.cut_before:
                pf = flows.get(m - 1, m)
                mask = consistency_mask(forward=pf.forward, backward=pf.backward)
                decision = shot_cut(self.store.load(clip.frame_path(m - 1)),
                                    self.store.load(clip.frame_path(m)), mask)
                self.cut_before[m] = decision.cut
                if decision.cut:
                    log.info("shot cut between frames %d and %d (consistent %.2f, appearance "
                             "%.2f)", m - 1, m, decision.consistent, decision.appearance)
            if self.cut_before[m]:
                return False
        return True

    def _run_pass(
        self,
        k: int,
        clip: ClipSource,
        stages: list[Stage],
        flows: PairFlowCache | None,
        progress: ProgressFn,
    ) -> None:
        n, passes = clip.n, self.passes
        direction = 1 if k % 2 == 0 else -1
        order = list(range(n)) if direction > 0 else list(range(n - 1, -1, -1))
        out = stages[k]
        log.info("pass %d/%d (%s)", k + 1, passes, "forward" if direction > 0 else "backward")
        for p, i in enumerate(order):
            if out.has(frame_unit(i)):
                progress(ProgressEvent("stylize", k * n + p + 1, passes * n,
                                       detail=f"pass {k + 1}/{passes}"))
                continue
            wanted = [pair for q in order[p: p + 1 + PREFETCH_FRAMES]
                      if q == i or not out.has(frame_unit(q))
                      for pair in self._needed_pairs(q, k, n)]
            if flows is not None:
                flows.retain(set(wanted))
                flows.prefetch(wanted)
            rgb = self._stylize_frame(i, k, clip, stages, flows, progress)
            save_png(out.path(frame_unit(i)), rgb)
            self.stats["computed"] += 1
            progress(ProgressEvent("stylize", k * n + p + 1, passes * n,
                                   detail=f"pass {k + 1}/{passes}"))

    def _stylize_frame(
        self,
        i: int,
        k: int,
        clip: ClipSource,
        stages: list[Stage],
        flows: PairFlowCache | None,
        progress: ProgressFn,
    ) -> np.ndarray:
        """Optimize frame ``i`` of pass ``k`` -> (H, W, 3) uint8."""
        cfg, tcfg = self.config.optim, self.config.temporal
        n, passes = clip.n, self.passes
        direction = 1 if k % 2 == 0 else -1
        content = self.store.load(clip.frame_path(i))
        seed = cfg.seed + i
        label = f"pass {k + 1}/{passes} frame {i + 1}/{n}"

        def on_iter(ev: IterationEvent) -> None:
            detail = f"{label} level {ev.level + 1}/{ev.levels} loss {ev.loss:.3g}"
            progress(ProgressEvent("optimize", i, n, detail=detail,
                                   iteration=ev.iteration, iterations=ev.iterations))

        gatys = self.gatys
        gatys.progress = on_iter
        offsets = self.offsets
        refs = [
            (j, r) for j, r in references(i, direction, self.pass_offsets(k), n)
            if self._same_shot(r, i, clip, flows)
        ]
        neighbour = next((r for j, r in refs if j == 1), None)
        current = stages[k]

        init: torch.Tensor | None = None
        kind = "cold"
        if neighbour is not None:
            pf = flows.get(min(i, neighbour), max(i, neighbour))
            to_nb, from_nb = pf.to_frame(i)
            warped_nb = warp(self.store.load(current.path(frame_unit(neighbour))), to_nb)
            c = flow_confidence(from_nb, to_nb, softness=self.softness)
            if k == 0:
                kind = "warp"
                init = warped_nb
                if cfg.init == "content":
                    # disoccluded / unreliable pixels start from the content, like a cold
                    # start, instead of from smeared warped pixels (few iterations cannot
                    # undo those: they leave trails behind moving objects)
                    init = c * warped_nb + (1.0 - c) * content
            else:
                kind = "blend"
                prev = self.store.load(stages[k - 1].path(frame_unit(i)))
                init = blend(prev, warped_nb, c, tcfg.blend_delta)
            del warped_nb
        elif k > 0:
            init, kind = self.store.load(stages[k - 1].path(frame_unit(i))), "previous"

        temporal: TemporalTerms | None = None
        used: tuple[int, ...] = ()
        if init is not None and self.temporal_loss_on(k) and tcfg.temporal_weight > 0:
            masks: dict[int, torch.Tensor] = {}
            warped: dict[int, torch.Tensor] = {}
            for j, r in refs:
                if j not in offsets:
                    continue
                pf = flows.get(min(i, r), max(i, r))
                to_r, from_r = pf.to_frame(i)
                masks[j] = flow_confidence(from_r, to_r, softness=self.softness)
                warped[j] = warp(self.store.load(current.path(frame_unit(r))), to_r)
            if masks:
                weights = long_term_weights(masks)
                js = sorted(masks)
                used = tuple(r for j, r in refs if j in masks)
                temporal = TemporalTerms([warped[j] for j in js], [weights[j] for j in js],
                                         tcfg.temporal_weight)

        regions, keep = None, None
        if self.people_styles and self._people is not None:
            regions, keep = self.regions(self._people(i), tuple(content.shape[-2:]))
        if init is None:
            result = gatys.stylize(content, seed=seed, regions=regions)
        else:
            result = gatys.stylize(content, init=init, iters=self.warm_iters,
                                   temporal=temporal, seed=seed, regions=regions)
        self.trace.append(FrameTrace(i, k, kind, used if temporal else (), result.iterations))
        log.debug("frame %d pass %d (%s): %s", i, k, kind, result.losses)
        image = result.image
        if keep is not None and self.config.style.keep_background:
            image = torch.lerp(content, image.to(content), keep.to(content))
        return to_uint8(image)
