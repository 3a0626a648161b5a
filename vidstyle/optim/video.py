"""Temporally consistent video stylization by optimization (Ruder, Dosovitskiy & Brox 2016).

The whole clip is one unit of work (:meth:`TemporalOptimStylizer.run_stage`, called by
:func:`vidstyle.pipeline.run`), because frame i depends on the stylized frames before it:

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
- **shot cuts**: an adjacent pair whose consistency mask is mostly empty
  (:func:`vidstyle.flow.is_cut`) starts a new shot; nothing temporal crosses it (no warped
  init, no temporal loss, no long-term reference from the other shot, no blend).

Iterations: frames without a usable neighbour (the first frame, frames after a cut) get
the full ``optim.iters`` with the coarse-to-fine schedule; warm-started frames get
``later_frame_iters * iters`` at the working size only.

Work directory (every artifact written atomically; a killed run resumes at the first
unfinished frame of the unfinished pass):

- ``decode/``: the content frames at working size as PNG (``frame_NNNNNN.png``) plus
  ``index.json`` (frame count, working size and a SHA-256 per frame) once complete, so
  passes in either direction stream frames from disk instead of holding the clip.
- ``flow/``: ``pair_<hash a>_<hash b>.npz``, the forward (a -> b) and backward (b -> a) flow
  of two frames (float16), named by the frames' content hashes; its fingerprint holds only
  the flow settings, so flows are reused across runs and styles.
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

import hashlib
import json
import logging
import shutil
import threading
import weakref
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vidstyle.config import RunConfig, fingerprint_of
from vidstyle.errors import InputError, UsageError
from vidstyle.fileio import atomic_write_bytes, sha256_file
from vidstyle.flow import (
    consistency_mask,
    is_cut,
    load_flow,
    long_term_weights,
    make_flow,
    save_flow,
    warp,
)
from vidstyle.flow.estimate import FlowEstimator
from vidstyle.imageops import load_image, resize
from vidstyle.optim.image import GatysStylizer, IterationEvent, TemporalTerms
from vidstyle.tensors import to_tensor, to_uint8
from vidstyle.workdir import Stage, WorkDir, load_png, save_png

log = logging.getLogger(__name__)

MODES = ("none", "short", "long")
#: How many frames ahead (in processing order) the flow worker prefetches.
PREFETCH_FRAMES = 2


def frame_unit(i: int) -> str:
    """Artifact name of frame ``i`` (same as :func:`vidstyle.pipeline.frame_unit`)."""
    return f"frame_{i:06d}.png"


def frame_hash(rgb: np.ndarray) -> str:
    """SHA-256 (hex) of an (H, W, 3) uint8 frame's shape and pixels."""
    h = hashlib.sha256(repr(rgb.shape).encode())
    h.update(np.ascontiguousarray(rgb).tobytes())
    return h.hexdigest()


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


@dataclass(frozen=True)
class PairFlow:
    """Flows between frames a < b, as read back from the cache (float32, pixels).

    forward: (1, 2, H, W) a -> b on a's grid; backward: (1, 2, H, W) b -> a on b's grid.
    """

    a: int
    b: int
    forward: torch.Tensor
    backward: torch.Tensor

    def to_frame(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(flow i -> other, flow other -> i) for ``i`` in {a, b}."""
        if i == self.b:
            return self.backward, self.forward
        if i == self.a:
            return self.forward, self.backward
        raise ValueError(f"frame {i} is not in pair ({self.a}, {self.b})")


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


@dataclass
class _Clip:
    """What the decode stage produced: frame count, working size, per-frame hashes."""

    n: int
    size: tuple[int, int]
    hashes: list[str]
    decode: Stage


class TemporalOptimStylizer:
    """Clip-level Gatys stylizer with Ruder et al.'s temporal terms (see module docstring).

    Built by :func:`vidstyle.stylize.make_stylizer` for ``config.temporal.mode`` "short" or
    "long" ("none" is accepted too: independent frames, used for comparisons). ``flow``
    overrides the estimator built from ``config.flow``. Constructing touches no disk.
    """

    def __init__(
        self,
        *,
        config: RunConfig,
        device: torch.device | str,
        net: Any,
        style_path: str,
        style_layers: tuple[str, ...] | list[str],
        content_layers: tuple[str, ...] | list[str],
        flow: FlowEstimator | None = None,
    ) -> None:
        t = config.temporal
        if t.mode not in MODES:
            raise UsageError(f"unknown --temporal {t.mode!r}: use one of {', '.join(MODES)}")
        if t.passes < 1:
            raise UsageError(f"--passes must be at least 1, got {t.passes}")
        if t.mode == "long" and (not t.long_term or min(t.long_term) < 1):
            raise UsageError(f"long-term offsets must be >= 1, got {t.long_term}")
        if not 0.0 <= t.blend_delta <= 1.0:
            raise UsageError(f"blend delta must be in [0, 1], got {t.blend_delta}")
        if not 0.0 < t.later_frame_iters <= 1.0:
            raise UsageError(f"later-frame iterations must be in (0, 1], got {t.later_frame_iters}")
        if t.temporal_weight < 0:
            raise UsageError(f"temporal weight must be >= 0, got {t.temporal_weight}")
        self.config = config
        self.device = torch.device(device)
        self.net = net
        self.style_path = style_path
        self.style_layers = tuple(style_layers)
        self.content_layers = tuple(content_layers)
        self._flow = flow
        self._gatys: GatysStylizer | None = None
        self._style_sha: str | None = None
        self.store = FrameStore(device=self.device)
        #: cut_before[i] is True when the pair (i-1, i) is a shot cut (memo of this run).
        self.cut_before: dict[int, bool] = {}
        #: per computed frame of the last run_stage, in order (small: no pixels)
        self.trace: list[FrameTrace] = []
        #: counters of the last run_stage: frames computed (all passes), flow pairs
        #: estimated, worker seconds estimating, seconds the optimizer waited for flow.
        self.stats: dict[str, float] = {}

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

    def flow_estimator(self) -> FlowEstimator:
        if self._flow is None:
            f = self.config.flow
            self._flow = make_flow(f.method, preset=f.preset, scale=f.scale,
                                   weights_path=f.weights_path, device=self.device)
        return self._flow

    @property
    def gatys(self) -> GatysStylizer:
        if self._gatys is None:
            self._gatys = GatysStylizer(
                net=self.net,
                style_image=load_image(self.style_path),
                config=self.config.optim,
                style_layers=self.style_layers,
                content_layers=self.content_layers,
                device=self.device,
            )
        return self._gatys

    def fingerprint(self) -> str:
        """Style image and loss-network weights (the run config is hashed by the pipeline)."""
        if self._style_sha is None:
            self._style_sha = sha256_file(self.style_path)
        weights = getattr(self.net, "weights_sha256", "")
        return fingerprint_of("optim-temporal", self._style_sha, weights)

    # -- the stage ---------------------------------------------------------------------
    def run_stage(
        self,
        *,
        frames: Callable[[], Iterator[Any]],
        stage: Stage,
        work: WorkDir,
        n_frames: int | None,
        progress: Callable[[Any], None],
    ) -> tuple[int, int]:
        """Stylize the clip ``frames()`` into ``stage`` (``frame_NNNNNN.png`` at working size).

        Returns (frames computed in the last pass, frames of the last pass reused from a
        previous run). Intermediate artifacts go to other stages of ``work``.
        """
        from vidstyle.pipeline import ProgressEvent

        self.cut_before = {}
        self.trace = []
        clip = self._decode(frames, stage, work, n_frames, progress)
        n = clip.n
        if n == 0:
            return 0, 0
        passes = self.passes
        final_done = sum(stage.has(frame_unit(i)) for i in range(n))
        if final_done == n:
            log.info("all %d frames already stylized", n)
            progress(ProgressEvent("stylize", n * passes, n * passes))
            return 0, n
        pass_stages = [
            work.stage(f"pass_{k}", fingerprint_of("temporal-pass", stage.fingerprint, k))
            for k in range(passes - 1)
        ] + [stage]
        complete = [all(s.has(frame_unit(i)) for i in range(n)) for s in pass_stages]
        start = max((k + 1 for k in range(passes) if complete[k]), default=0)
        flows = _FlowCache(
            estimator=self.flow_estimator() if self.offsets else None,
            work=work, clip=clip, config_fp=self.config.flow.fingerprint(),
        )
        self.stats = {"computed": 0}
        try:
            for k in range(start, passes):
                self._run_pass(k, clip, pass_stages, flows, progress)
        finally:
            flows.close()
            self.stats.update(flow_pairs=flows.estimated, flow_seconds=flows.seconds,
                              flow_wait_seconds=flows.wait_seconds)
        for s in pass_stages[:-1]:
            shutil.rmtree(s.dir, ignore_errors=True)
        return n - final_done, final_done

    # -- decode ------------------------------------------------------------------------
    def _decode(
        self,
        frames: Callable[[], Iterator[Any]],
        stage: Stage,
        work: WorkDir,
        n_frames: int | None,
        progress: Callable[[Any], None],
    ) -> _Clip:
        """Working-size content frames as PNGs in the decode stage (streamed, resumable)."""
        from vidstyle.pipeline import ProgressEvent
        from vidstyle.stylize import working_size

        size_opt = self.config.optim.size
        dec = work.stage("decode", fingerprint_of("temporal-decode", stage.fingerprint, size_opt))
        index = dec.path("index.json")
        if index.is_file():
            meta = json.loads(index.read_text())
            return _Clip(int(meta["n"]), tuple(meta["size"]), list(meta["hashes"]), dec)
        hashes: list[str] = []
        size: tuple[int, int] | None = None
        src_shape: tuple[int, ...] = ()
        for frame in frames():
            if frame.index != len(hashes):
                raise InputError(f"frames out of order: got {frame.index}, want {len(hashes)}")
            if size is None:
                src_shape = frame.rgb.shape[:2]
                size = working_size(src_shape[0], src_shape[1], size_opt)
            elif frame.rgb.shape[:2] != src_shape:
                raise InputError(
                    f"frame {frame.index} is {frame.rgb.shape[1]}x{frame.rgb.shape[0]}, "
                    "but the clip changes size mid-stream"
                )
            rgb = frame.rgb
            if tuple(rgb.shape[:2]) != size:
                rgb = to_uint8(resize(to_tensor(rgb), size))
            unit = frame_unit(frame.index)
            save_png(dec.path(unit), rgb)
            hashes.append(frame_hash(rgb))
            progress(ProgressEvent("decode", len(hashes), n_frames))
        meta = {"n": len(hashes), "size": list(size or (0, 0)), "hashes": hashes}
        atomic_write_bytes(index, json.dumps(meta).encode())
        return _Clip(len(hashes), size or (0, 0), hashes, dec)

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

    def _same_shot(self, a: int, b: int, flows: _FlowCache) -> bool:
        """No cut between frames a and b (checks, and memoizes, every adjacent pair)."""
        lo, hi = min(a, b), max(a, b)
        for m in range(hi, lo, -1):
            if m not in self.cut_before:
                pf = flows.get(m - 1, m)
                mask = consistency_mask(forward=pf.forward, backward=pf.backward)
                self.cut_before[m] = is_cut(mask)
                if self.cut_before[m]:
                    log.info("shot cut between frames %d and %d", m - 1, m)
            if self.cut_before[m]:
                return False
        return True

    def _run_pass(
        self,
        k: int,
        clip: _Clip,
        stages: list[Stage],
        flows: _FlowCache,
        progress: Callable[[Any], None],
    ) -> None:
        from vidstyle.pipeline import ProgressEvent

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
        clip: _Clip,
        stages: list[Stage],
        flows: _FlowCache,
        progress: Callable[[Any], None],
    ) -> np.ndarray:
        """Optimize frame ``i`` of pass ``k`` -> (H, W, 3) uint8."""
        from vidstyle.pipeline import ProgressEvent

        cfg, tcfg = self.config.optim, self.config.temporal
        n, passes = clip.n, self.passes
        direction = 1 if k % 2 == 0 else -1
        content = self.store.load(clip.decode.path(frame_unit(i)))
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
            if self._same_shot(r, i, flows)
        ]
        neighbour = next((r for j, r in refs if j == 1), None)
        current = stages[k]

        init: torch.Tensor | None = None
        kind = "cold"
        if neighbour is not None:
            pf = flows.get(min(i, neighbour), max(i, neighbour))
            to_nb, from_nb = pf.to_frame(i)
            warped_nb = warp(self.store.load(current.path(frame_unit(neighbour))), to_nb)
            c = consistency_mask(forward=from_nb, backward=to_nb)
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
                masks[j] = consistency_mask(forward=from_r, backward=to_r)
                warped[j] = warp(self.store.load(current.path(frame_unit(r))), to_r)
            if masks:
                weights = long_term_weights(masks)
                js = sorted(masks)
                used = tuple(r for j, r in refs if j in masks)
                temporal = TemporalTerms([warped[j] for j in js], [weights[j] for j in js],
                                         tcfg.temporal_weight)

        if init is None:
            result = gatys.stylize(content, seed=seed)
        else:
            result = gatys.stylize(content, init=init, iters=self.warm_iters,
                                   temporal=temporal, seed=seed)
        self.trace.append(FrameTrace(i, k, kind, used if temporal else (), result.iterations))
        log.debug("frame %d pass %d (%s): %s", i, k, kind, result.losses)
        return to_uint8(result.image)


class _FlowCache:
    """Pair flows from the ``flow`` stage, estimated on a worker thread ahead of use.

    Files are named by the two frames' content hashes; values returned are always the ones
    read back from the file (float16-rounded), whether just computed or cached.
    """

    def __init__(
        self, *, estimator: FlowEstimator | None, work: WorkDir, clip: _Clip, config_fp: str
    ) -> None:
        self.estimator = estimator
        self.clip = clip
        self.stage: Stage | None = None
        if estimator is not None:
            fp = fingerprint_of("flow", estimator.fingerprint(), config_fp, list(clip.size))
            self.stage = work.stage("flow", fp)
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="vidstyle-flow")
        self._pending: dict[tuple[int, int], Future[PairFlow]] = {}
        #: pairs estimated (not read from the cache), worker seconds spent estimating them,
        #: and seconds the optimizing thread waited for flows.
        self.estimated = 0
        self.seconds = 0.0
        self.wait_seconds = 0.0

    def unit(self, a: int, b: int) -> str:
        h = self.clip.hashes
        return f"pair_{h[a][:20]}_{h[b][:20]}.npz"

    def _compute(self, a: int, b: int) -> PairFlow:
        import time

        assert self.stage is not None and self.estimator is not None
        path = self.stage.path(self.unit(a, b))
        if not path.is_file():
            t0 = time.perf_counter()
            fa = to_tensor(load_png(self.clip.decode.path(frame_unit(a))))
            fb = to_tensor(load_png(self.clip.decode.path(frame_unit(b))))
            both = self.estimator.estimate(torch.cat([fa, fb]), torch.cat([fb, fa]))
            save_flow(path, both)
            self.estimated += 1
            self.seconds += time.perf_counter() - t0
        both = load_flow(path)
        return PairFlow(a, b, both[:1], both[1:2])

    def prefetch(self, pairs: list[tuple[int, int]]) -> None:
        """Queue the pairs (a < b) on the worker thread (no-op for queued ones)."""
        for pair in pairs:
            if pair not in self._pending:
                self._pending[pair] = self._pool.submit(self._compute, *pair)

    def retain(self, pairs: set[tuple[int, int]]) -> None:
        """Forget queued or finished pairs not in ``pairs`` (their files stay cached)."""
        for pair in [p for p in self._pending if p not in pairs]:
            del self._pending[pair]

    def get(self, a: int, b: int) -> PairFlow:
        """Flows of frames a < b: from the worker (waiting if needed) or the cache file."""
        import time

        self.prefetch([(a, b)])
        t0 = time.perf_counter()
        pf = self._pending[(a, b)].result()
        self.wait_seconds += time.perf_counter() - t0
        return pf

    def close(self) -> None:
        for fut in self._pending.values():
            fut.cancel()
        self._pool.shutdown(wait=True)
        self._pending.clear()
