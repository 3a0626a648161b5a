"""Flow under large displacement (issue 20): accuracy per second of DIS presets and
coarse-to-fine alternatives, and how much of the picture the consistency mask keeps.

Run: ``python -m benchmarks.bench_flow_large [--scales 1,0.375] [--clips 2]``.

- Sintel (the kit's alley_1, cave_2 and market_5, clean and final, GT flow frame 2 -> 3):
  EPE (all / non-occluded, full-size pixels) and ms per pair at each scale; with the
  consistency mask of :func:`vidstyle.flow.consistency_mask` at the Ruder et al.
  coefficients and at relaxed ones: the share of non-occluded pixels it keeps (recall)
  and the EPE of the kept pixels.
- Frame-skipped clips (every 3rd frame of bikes.mp4 and vtest_000-010s.avi, 384 px; no
  ground truth): the fraction of consistent pixels and the photometric error
  mean |I_t - warp(I_t+3, forward)| (RGB in [0, 1]) over in-frame pixels.
"""

from __future__ import annotations

import argparse
import itertools
import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from vidstyle.evaluate import _read_mask, _read_rgb, _sintel_pairs, endpoint_error
from vidstyle.flow import make_flow, read_flo, warp
from vidstyle.flow.consistency import flow_gradient_sqnorm
from vidstyle.flow.estimate import _OpenCVEstimator
from vidstyle.flow.warp import valid_mask
from vidstyle.media import iter_frames

DEFAULT_DATA = Path(os.environ.get(
    "VIDSTYLE_TEST_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data"))


class _Custom(_OpenCVEstimator):
    """An OpenCV DenseOpticalFlow built by ``factory`` (benchmark variants only)."""

    def __init__(self, label: str, factory: Callable[[], Any], *, scale: float = 1.0) -> None:
        super().__init__(scale=scale)
        self.name = label
        self._factory = factory

    def _create(self) -> Any:
        return self._factory()


def _dis(preset: int, **kw: int) -> Callable[[], Any]:
    def make() -> Any:
        d = cv2.DISOpticalFlow_create(preset)
        for k, v in kw.items():
            getattr(d, f"set{k}")(v)
        return d
    return make


def _farneback() -> Any:
    return cv2.optflow.createOptFlow_Farneback()


METHODS: dict[str, Callable[[float], Any]] = {
    "dis:ultrafast": lambda s: make_flow("dis", preset="ultrafast", scale=s),
    "dis:fast": lambda s: make_flow("dis", preset="fast", scale=s),
    "dis:medium": lambda s: make_flow("dis", preset="medium", scale=s),
    "dis:fast finest 1": lambda s: _Custom("dis-fast-fs1", _dis(
        cv2.DISOPTICAL_FLOW_PRESET_FAST, FinestScale=1), scale=s),
    "dis:medium finest 2": lambda s: _Custom("dis-medium-fs2", _dis(
        cv2.DISOPTICAL_FLOW_PRESET_MEDIUM, FinestScale=2), scale=s),
    "dis:fast patch 12": lambda s: _Custom("dis-fast-p12", _dis(
        cv2.DISOPTICAL_FLOW_PRESET_FAST, PatchSize=12, PatchStride=4,
        GradientDescentIterations=25), scale=s),
    "farneback (contrib)": lambda s: _Custom("farneback", _farneback, scale=s),
    "deepflow": lambda s: make_flow("deepflow", scale=s),
}

RUDER = (0.01, 0.5, 0.01, 0.002)
RELAXED = (0.05, 1.0, 0.05, 0.01)


def _mask(fwd: torch.Tensor, bwd: torch.Tensor, coef: tuple[float, ...]) -> torch.Tensor:
    """Consistency mask on the second frame's grid with coefficients
    (occlusion rel, abs, boundary rel, abs); (B, 1, H, W) {0, 1}."""
    orel, oabs, brel, babs = coef
    wt = warp(fwd, bwd, padding="border")
    sq = lambda f: f.pow(2).sum(1, keepdim=True)  # noqa: E731
    occ = sq(wt + bwd) > orel * (sq(wt) + sq(bwd)) + oabs
    mb = flow_gradient_sqnorm(bwd) > brel * sq(bwd) + babs
    bad = occ | mb | (valid_mask(bwd) < 0.5)
    return (~bad).float()


def _timed(est: Any, a: torch.Tensor, b: torch.Tensor, repeat: int) -> tuple[torch.Tensor, float]:
    best = math.inf
    out = None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = est.estimate(a, b)
        best = min(best, time.perf_counter() - t0)
    return out, best * 1000


def sintel(data: Path, scales: list[float]) -> list[dict[str, Any]]:
    rows = []
    pairs = _sintel_pairs(data / "flow/sintel/training", ("clean", "final"))
    for scale, (label, make) in itertools.product(scales, METHODS.items()):
        est = make(scale)
        repeat = 1 if label in ("deepflow",) else 2
        for p in pairs:
            a, b = _read_rgb(p.a), _read_rgb(p.b)
            gt = read_flo(p.gt)
            occ = _read_mask(p.occlusions) if p.occlusions else torch.zeros(1, 1, *a.shape[-2:],
                                                                           dtype=torch.bool)
            fwd, ms = _timed(est, a, b, repeat)
            bwd = est.estimate(b, a)
            noc = ~occ
            row = {"scale": scale, "method": label, "seq": p.sequence, "pass": p.pass_,
                   "epe_all": endpoint_error(fwd, gt), "epe_noc": endpoint_error(fwd, gt, noc),
                   "ms": ms}
            # mask on frame a's grid: a plays "B" -> forward=bwd (b -> a), backward=fwd
            for name, coef in (("ruder", RUDER), ("relaxed", RELAXED)):
                m = _mask(bwd, fwd, coef).bool()
                row[f"recall_{name}"] = float((m & noc).sum() / noc.sum())
                row[f"epe_kept_{name}"] = endpoint_error(fwd, gt, m & noc)
            rows.append(row)
            print(row, flush=True)
    return rows


def clips(data: Path, n_pairs: int) -> list[dict[str, Any]]:
    rows = []
    for clip in ("bikes.mp4", "vtest_000-010s.avi"):
        frames = []
        for f in itertools.islice(iter_frames(data / "video" / clip), 0, 110):
            h, w = f.rgb.shape[:2]
            s = 384 / max(h, w)
            rgb = cv2.resize(f.rgb, (round(w * s), round(h * s)), interpolation=cv2.INTER_AREA)
            frames.append(torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255)
        starts = [t for t in range(0, len(frames) - 3, 6)][:n_pairs]
        if clip == "bikes.mp4":  # inside shots only (cuts at 30 and 76), fast pans at 67-102
            starts = [t for t in range(80, 103, 3)][:n_pairs]
        for label, make in METHODS.items():
            est = make(1.0)
            cons, photo, ms_all = [], [], []
            for t in starts:
                a, b = frames[t], frames[t + 3]
                fwd, ms = _timed(est, a, b, 1)
                bwd = est.estimate(b, a)
                m = _mask(fwd, bwd, RUDER)  # on b's grid
                cons.append(float(m.mean()))
                v = valid_mask(fwd)
                err = (a - warp(b, fwd)).abs().mean(1, keepdim=True)
                photo.append(float((err * v).sum() / v.sum()))
                ms_all.append(ms)
            row = {"clip": clip, "method": label, "consistent": float(np.mean(cons)),
                   "min_consistent": float(np.min(cons)), "photo": float(np.mean(photo)),
                   "ms": float(np.median(ms_all))}
            rows.append(row)
            print(row, flush=True)
    return rows


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--scales", default="1,0.375")
    ap.add_argument("--clips", type=int, default=6, help="3x pairs per clip (0: none)")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.clips:
        clips(args.data, args.clips)
    sintel(args.data, [float(s) for s in args.scales.split(",")])


if __name__ == "__main__":
    main()
