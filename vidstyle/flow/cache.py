"""The flow stage's cache: flows between any two frames of a decoded clip, estimated on a
worker thread ahead of use and kept in the work directory.

Files are named by the two frames' content hashes (``pair_<a>_<b>.npz``, float16), so a
flow is reused across runs and styles; values returned are always the ones read back from
the file, whether just computed or cached, so a resumed run sees the same numbers.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import torch

from vidstyle.flow.estimate import FlowEstimator
from vidstyle.flow.io import load_flow, save_flow
from vidstyle.tensors import to_tensor
from vidstyle.workdir import Stage, load_png


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


class PairFlowCache:
    """Pair flows of a clip's frames (see the module docstring).

    estimator: the flow backend; stage: the work-directory stage holding the files (its
    fingerprint must cover the estimator and the frame size); frame_path(i): the PNG of
    frame i; hashes: a content hash per frame (names the files).
    """

    def __init__(self, *, estimator: FlowEstimator, stage: Stage,
                 frame_path: Callable[[int], Path], hashes: list[str]) -> None:
        self.estimator = estimator
        self.stage = stage
        self.frame_path = frame_path
        self.hashes = hashes
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="vidstyle-flow")
        self._pending: dict[tuple[int, int], Future[PairFlow]] = {}
        #: pairs estimated (not read from the cache), worker seconds spent estimating them,
        #: and seconds the consumer waited for flows.
        self.estimated = 0
        self.seconds = 0.0
        self.wait_seconds = 0.0

    def unit(self, a: int, b: int) -> str:
        return f"pair_{self.hashes[a][:20]}_{self.hashes[b][:20]}.npz"

    def _compute(self, a: int, b: int) -> PairFlow:
        path = self.stage.path(self.unit(a, b))
        if not path.is_file():
            t0 = time.perf_counter()
            fa = to_tensor(load_png(self.frame_path(a)))
            fb = to_tensor(load_png(self.frame_path(b)))
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


__all__ = ["PairFlow", "PairFlowCache"]
