"""Measurements: optical-flow accuracy (EPE), temporal consistency (warping error), cuts.

- :func:`endpoint_error` and :func:`evaluate_flow_dir` score flow backends against ground
  truth laid out like MPI-Sintel ``training/`` or FlyingChairs.
- :func:`warp_error` is the warping error of Lai et al. 2018 ("Learning blind video
  temporal consistency"): how much a stylized video changes along the motion of its source.
- :func:`find_cuts` streams a clip and lists the frames that start a new shot
  (:func:`cuts_of_file` for a video file, with scores).
"""

from __future__ import annotations

import csv
import io
import itertools
import logging
import math
import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFont

from vidstyle import media
from vidstyle.errors import InputError, OutputError, UsageError
from vidstyle.fileio import atomic_write_bytes
from vidstyle.flow.consistency import consistency_mask
from vidstyle.flow.cuts import CutScore, shot_cut
from vidstyle.flow.estimate import FlowEstimator, make_flow
from vidstyle.flow.io import read_flo
from vidstyle.flow.pair import frame_pair
from vidstyle.flow.warp import warp
from vidstyle.imageops import load_image, resize_uint8, working_size

log = logging.getLogger(__name__)

Frame = np.ndarray | torch.Tensor


# --------------------------------------------------------------------------- flow EPE


def endpoint_error(
    flow: torch.Tensor, gt: torch.Tensor, valid: torch.Tensor | None = None
) -> float:
    """Mean end-point error |flow - gt| in pixels.

    flow, gt: (B, 2, H, W) in pixels. valid: optional (B, 1, H, W) or (B, H, W) bool/0-1
    mask of the pixels to average over (default all). NaN/inf in ``gt`` are excluded.
    """
    if flow.shape != gt.shape:
        raise ValueError(f"flow {tuple(flow.shape)} and gt {tuple(gt.shape)} differ in shape")
    err = (flow.float() - gt.float().to(flow.device)).norm(dim=1)  # (B, H, W)
    keep = torch.isfinite(gt.float().to(flow.device)).all(dim=1)
    if valid is not None:
        v = valid.to(flow.device)
        keep = keep & (v.squeeze(1) if v.dim() == 4 else v).bool()
    if not bool(keep.any()):
        return float("nan")
    return float(err[keep].mean())


def _read_rgb(path: Path) -> torch.Tensor:
    """Image file -> (1, 3, H, W) float32 in [0, 1], read as every image is
    (:func:`~vidstyle.imageops.load_image`); InputError when unreadable."""
    return load_image(path, error=InputError)


def _read_mask(path: Path) -> torch.Tensor:
    """8-bit mask PNG (255 = set) -> (1, 1, H, W) bool."""
    with Image.open(path) as im:
        arr = np.array(im.convert("L"))
    return torch.from_numpy(arr > 127)[None, None]


@dataclass(frozen=True)
class _GTPair:
    dataset: str
    sequence: str
    pass_: str
    a: Path
    b: Path
    gt: Path
    occlusions: Path | None
    invalid: Path | None


def _sintel_pairs(root: Path, passes: Sequence[str]) -> list[_GTPair]:
    pairs = []
    for seq_dir in sorted(p for p in (root / "flow").iterdir() if p.is_dir()):
        for flo in sorted(seq_dir.glob("frame_*.flo")):
            n = int(flo.stem.split("_")[1])
            for pass_ in passes:
                frames = root / pass_ / seq_dir.name
                a, b = frames / f"frame_{n:04d}.png", frames / f"frame_{n + 1:04d}.png"
                if not (a.is_file() and b.is_file()):
                    continue
                occ = root / "occlusions" / seq_dir.name / f"{flo.stem}.png"
                inv = root / "invalid" / seq_dir.name / f"{flo.stem}.png"
                pairs.append(
                    _GTPair(
                        "sintel",
                        seq_dir.name,
                        pass_,
                        a,
                        b,
                        flo,
                        occ if occ.is_file() else None,
                        inv if inv.is_file() else None,
                    )
                )
    return pairs


def _chairs_pairs(root: Path) -> list[_GTPair]:
    pairs = []
    for flo in sorted(root.glob("*-gt.flo")):
        stem = flo.name[: -len("-gt.flo")]
        a, b = root / f"{stem}-img0.ppm", root / f"{stem}-img1.ppm"
        if a.is_file() and b.is_file():
            pairs.append(_GTPair("flyingchairs", stem, "-", a, b, flo, None, None))
    return pairs


def _as_estimator(method: str | FlowEstimator) -> tuple[str, FlowEstimator]:
    """Turn "dis", "dis:fast", "raft:small" or an estimator into (label, estimator)."""
    if isinstance(method, str):
        name, _, preset = method.partition(":")
        est = make_flow(name, preset=preset) if preset else make_flow(name)
        return method, est
    return method.fingerprint(), method


def evaluate_flow_dir(
    root: str | os.PathLike[str],
    methods: Sequence[str | FlowEstimator],
    *,
    passes: Sequence[str] = ("clean", "final"),
    sequences: Sequence[str] | None = None,
    repeat: int = 1,
) -> list[dict[str, Any]]:
    """Score flow methods on every ground-truth pair under ``root``.

    root: an MPI-Sintel ``training`` directory (``{pass}/<seq>/frame_NNNN.png``,
      ``flow/<seq>/frame_NNNN.flo`` mapping frame N to N+1, optional ``occlusions/`` and
      ``invalid/`` PNGs with 255 = occluded / invalid) or a FlyingChairs directory
      (``<id>-img0.ppm``, ``<id>-img1.ppm``, ``<id>-gt.flo``).
    methods: names as for :func:`make_flow`, optionally "name:preset", or estimators.
    passes: Sintel render passes to use. sequences: only these sequences / pair ids.
    repeat: time each pair this many times and report the fastest (less noise from load).
    Returns one dict per (method, pair): method, dataset, sequence, pass, epe_all (px,
    over valid pixels), epe_noc (px, over valid non-occluded pixels; NaN without
    occlusion masks), ms_per_pair (wall time of ``estimate``, after one warm-up call;
    the fastest of ``repeat`` runs).
    """
    root = Path(root)
    if (root / "flow").is_dir():
        pairs = _sintel_pairs(root, passes)
    else:
        pairs = _chairs_pairs(root)
    if sequences is not None:
        pairs = [p for p in pairs if p.sequence in sequences]
    if not pairs:
        raise InputError(f"no ground-truth flow pairs found under {root}")
    rows: list[dict[str, Any]] = []
    for method in methods:
        label, est = _as_estimator(method)
        warm = torch.rand(1, 3, 128, 128, generator=torch.Generator().manual_seed(0))
        est.estimate(warm, warm.roll(2, dims=3))
        for p in pairs:
            a, b, gt = _read_rgb(p.a), _read_rgb(p.b), read_flo(p.gt)
            ms = math.inf
            for _ in range(max(1, repeat)):
                t0 = time.perf_counter()
                flow = est.estimate(a, b)
                ms = min(ms, (time.perf_counter() - t0) * 1000.0)
            valid = torch.ones_like(gt[:, :1], dtype=torch.bool)
            if p.invalid is not None:
                valid &= ~_read_mask(p.invalid)
            epe_noc = float("nan")
            if p.occlusions is not None:
                epe_noc = endpoint_error(flow, gt, valid & ~_read_mask(p.occlusions))
            rows.append(
                {
                    "method": label,
                    "dataset": p.dataset,
                    "sequence": p.sequence,
                    "pass": p.pass_,
                    "epe_all": endpoint_error(flow, gt, valid),
                    "epe_noc": epe_noc,
                    "ms_per_pair": ms,
                }
            )
            log.info(
                "%s %s/%s %s: %.3f px", label, p.dataset, p.sequence, p.pass_, rows[-1]["epe_all"]
            )
    return rows


# --------------------------------------------------------------------- warping error


def as_frame(frame: Frame) -> torch.Tensor:
    """(H, W, 3) uint8 array, (H, W, 3) uint8 tensor, (3, H, W) or (1, 3, H, W) float tensor
    in [0, 1] -> (1, 3, H, W) float32 in [0, 1] on the CPU."""
    if isinstance(frame, np.ndarray):
        if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
            raise InputError(f"expected an (H, W, 3) uint8 frame, got {frame.shape} {frame.dtype}")
        return torch.from_numpy(np.ascontiguousarray(frame)).permute(2, 0, 1)[None].float() / 255
    if not isinstance(frame, torch.Tensor):
        raise InputError(f"expected a frame array or tensor, got {type(frame).__name__}")
    t = frame.detach().cpu()
    if t.dtype == torch.uint8:
        if t.dim() != 3 or t.shape[2] != 3:
            raise InputError(f"expected an (H, W, 3) uint8 frame, got {tuple(t.shape)}")
        return t.permute(2, 0, 1)[None].float() / 255
    if t.dim() == 3:
        t = t[None]
    if t.dim() != 4 or t.shape[:2] != (1, 3):
        raise InputError(f"expected a (1, 3, H, W) frame, got {tuple(frame.shape)}")
    return t.float()


def _paired(
    stylized: Iterable[Frame], source: Iterable[Frame]
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Stream (stylized, source) as (1, 3, H, W) tensors; the source is resized to the
    stylized frame's size when they differ. Raises InputError on unequal lengths."""
    it_s, it_o = iter(stylized), iter(source)
    n = 0
    while True:
        s, o = next(it_s, None), next(it_o, None)
        if s is None and o is None:
            return
        if s is None or o is None:
            raise InputError(f"stylized and source clips differ in length (after {n} frames)")
        s_t, o_t = as_frame(s), as_frame(o)
        if o_t.shape[-2:] != s_t.shape[-2:]:
            o_t = F.interpolate(o_t, size=s_t.shape[-2:], mode="bilinear", antialias=True)
        n += 1
        yield s_t, o_t


def pair_flows(
    a: torch.Tensor, b: torch.Tensor, flow: FlowEstimator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward (a -> b) and backward (b -> a) flow of two (1, 3, H, W) frames, in one batch."""
    both = flow.estimate(torch.cat([a, b]), torch.cat([b, a]))
    return both[:1], both[1:]


@dataclass(frozen=True)
class WarpErrorResult:
    """Warping error of a clip.

    per_frame[t] is E_t for the pair (t, t+1), squared RGB difference in [0, 1] units
    (mean over channels, mean over consistent pixels); NaN where no pixel is consistent.
    consistent[t] is the fraction of pixels of frame t that entered the average.
    mean is the mean of the finite per-frame values (NaN if there are none).
    """

    per_frame: tuple[float, ...]
    consistent: tuple[float, ...]
    mean: float

    def to_csv(self, path: str | os.PathLike[str]) -> None:
        """Write ``frame,warp_error,consistent_fraction`` rows (atomically)."""
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["frame", "warp_error", "consistent_fraction"])
        for t, (e, c) in enumerate(zip(self.per_frame, self.consistent, strict=True)):
            w.writerow([t, f"{e:.8g}", f"{c:.6f}"])
        w.writerow(["mean", f"{self.mean:.8g}", ""])
        _write_output(path, buf.getvalue().encode())

    def plot_png(self, path: str | os.PathLike[str], *, title: str = "warping error") -> None:
        """Draw E_t against t as a line plot PNG with axes and labels (atomically)."""
        img = line_plot(
            list(self.per_frame),
            title=f"{title} (mean {self.mean:.3g})",
            xlabel="frame t",
            ylabel="E_t",
        )
        buf = io.BytesIO()
        img.save(buf, format="PNG")
        _write_output(path, buf.getvalue())


def warp_error(
    stylized_frames: Iterable[Frame],
    source_frames: Iterable[Frame],
    *,
    flow: FlowEstimator,
    on_pair: Callable[[int, float], None] | None = None,
) -> WarpErrorResult:
    """Warping error (Lai et al. 2018) of a stylized clip against its source clip.

    For each t: forward/backward flow between source frames t and t+1; mask M_t on frame
    t's grid = flow consistency plus motion boundaries (:func:`consistency_mask`, which
    also drops pixels flowing out of frame); E_t = sum M_t * mean_c (V_t - warp(V_{t+1},
    forward_t))^2 / sum M_t with RGB in [0, 1]. Frames are streamed: (H, W, 3) uint8 arrays
    or (1, 3, H, W) / (3, H, W) float tensors; only two of each are held at a time. The
    source is resized to the stylized size if they differ. ``on_pair(t, E_t)`` reports
    progress. Raises InputError for clips of unequal length or fewer than two frames.
    """
    per: list[float] = []
    cons: list[float] = []
    prev: tuple[torch.Tensor, torch.Tensor] | None = None
    for s_t, o_t in _paired(stylized_frames, source_frames):
        if prev is not None:
            v0, o0 = prev
            pair = frame_pair(o0, o_t, flow=flow, masks=False)  # the engine's flow stage
            fwd, bwd = pair.forward, pair.backward
            # mask on frame t's grid: frame t+1 plays "A", frame t plays "B"
            m = consistency_mask(forward=bwd, backward=fwd)
            sq = (v0 - warp(s_t, fwd)).pow(2).mean(dim=1, keepdim=True)
            total = float(m.sum())
            e = float((sq * m).sum()) / total if total > 0 else float("nan")
            per.append(e)
            cons.append(float(m.mean()))
            if on_pair is not None:
                on_pair(len(per) - 1, e)
        prev = (s_t, o_t)
    if not per:
        raise InputError("warping error needs at least two frames")
    finite = [e for e in per if math.isfinite(e)]
    mean = float(np.mean(finite)) if finite else float("nan")
    return WarpErrorResult(per_frame=tuple(per), consistent=tuple(cons), mean=mean)


def _same_aspect(a: tuple[int, int], b: tuple[int, int]) -> bool:
    """True when (w, h) ``a`` is (w, h) ``b`` scaled, up to the rounding of a resize
    (2 px plus 1 % on the dimension derived from the other)."""
    (aw, ah), (bw, bh) = a, b
    return abs(bh * aw / bw - ah) <= 2 + 0.01 * ah or abs(bw * ah / bh - aw) <= 2 + 0.01 * aw


def warp_error_of_files(
    stylized: str | os.PathLike[str],
    source: str | os.PathLike[str],
    *,
    flow: FlowEstimator,
    on_pair: Callable[[int, float], None] | None = None,
) -> WarpErrorResult:
    """:func:`warp_error` of the video file ``stylized`` against the clip it was made from.

    A clip stylized with ``--size`` or ``--max-frames`` is smaller or shorter than its
    source. Then the source frames are resized to the stylized size (the flow, estimated
    on the source, is then on the stylized grid) and only the first min(N_stylized,
    N_source) frames of both are compared (``--max-frames`` keeps the first frames); each
    adjustment is logged as a warning. Raises UsageError when the two clips' aspect ratios
    differ (the stylized clip was not made from ``source`` by resizing), InputError for
    unreadable files or fewer than two common frames.
    """
    a, b = media.probe(stylized), media.probe(source)
    if (a.width, a.height) != (b.width, b.height):
        if not _same_aspect((a.width, a.height), (b.width, b.height)):
            raise UsageError(
                f"{a.path.name} is {a.width}x{a.height} but its source {b.path.name} is "
                f"{b.width}x{b.height}, another shape: compare a stylized clip with the clip "
                "it was made from"
            )
        log.warning("source %s is %dx%d, stylized %dx%d: source frames are resized to %dx%d "
                    "and the flow is estimated at that size", b.path.name, b.width, b.height,
                    a.width, a.height, a.width, a.height)
    n = min(a.frame_count, b.frame_count)
    if a.frame_count != b.frame_count:
        log.warning("%s has %d frames, its source %s %d: comparing the first %d of each",
                    a.path.name, a.frame_count, b.path.name, b.frame_count, n)
    return warp_error(
        itertools.islice((f.rgb for f in media.iter_frames(stylized)), n),
        itertools.islice((f.rgb for f in media.iter_frames(source)), n),
        flow=flow,
        on_pair=on_pair,
    )


# ------------------------------------------------------------------------- shot cuts


def _cut_score(prev: torch.Tensor, cur: torch.Tensor, flow: FlowEstimator) -> CutScore:
    """The engine's pair (:func:`frame_pair`) and its cut decision with both scores."""
    pair = frame_pair(prev, cur, flow=flow, agreement=False)
    return shot_cut(prev, cur, pair.mask)


def cut_scores(frames: Iterable[Frame], *, flow: FlowEstimator) -> list[CutScore]:
    """The shot-cut decision (:func:`vidstyle.flow.shot_cut`) of each consecutive pair
    (t-1, t) of a clip, as the engine's flow stage makes it (:func:`frame_pair`).

    scores[t-1] belongs to the pair (t-1, t). Frames are streamed as in :func:`warp_error`;
    estimate at a reduced size (e.g. ``make_flow("dis", scale=...)``) for speed.
    """
    scores = []
    prev: torch.Tensor | None = None
    for f in frames:
        cur = as_frame(f)
        if prev is not None:
            scores.append(_cut_score(prev, cur, flow))
        prev = cur
    return scores


def find_cuts(frames: Iterable[Frame], *, flow: FlowEstimator) -> list[int]:
    """Indices t of the frames that start a new shot (the pair (t-1, t) is a cut)."""
    return [i + 1 for i, s in enumerate(cut_scores(frames, flow=flow)) if s.cut]


def cuts_of_file(
    path: str | os.PathLike[str],
    *,
    flow: FlowEstimator,
    size: int | None = 384,
    step: int = 1,
    on_pair: Callable[[int, CutScore], None] | None = None,
) -> list[tuple[int, CutScore]]:
    """Shot cuts of the video ``path``: [(t, score)] for each frame t (index in the file)
    whose pair with frame t - ``step`` is a cut.

    Frames are resized to longest side ``size`` px (None: as decoded) and every
    ``step``-th frame is used (``step`` 3 = three times the motion). ``on_pair(t, score)``
    sees every pair. Raises InputError for an unreadable file, UsageError for step < 1.
    """
    if step < 1:
        raise UsageError(f"step must be at least 1, got {step}")
    found: list[tuple[int, CutScore]] = []
    prev: torch.Tensor | None = None
    for f in itertools.islice(media.iter_frames(path), 0, None, step):
        rgb = f.rgb
        h, w = rgb.shape[:2]
        cur = as_frame(resize_uint8(rgb, working_size(h, w, size)))
        if prev is not None and prev.shape == cur.shape:
            score = _cut_score(prev, cur, flow)
            if on_pair is not None:
                on_pair(f.index, score)
            if score.cut:
                found.append((f.index, score))
        prev = cur
    return found


# --------------------------------------------------------------------------- helpers


def _write_output(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically; OutputError when it cannot be written.

    The folder must exist (it is not created for a report file).
    """
    path = Path(path)
    if not path.parent.is_dir():
        raise OutputError(f"cannot write {path}: folder {path.parent} does not exist")
    try:
        atomic_write_bytes(path, data)
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from exc


def _nice_ticks(lo: float, hi: float, n: int = 5, *, integer: bool = False) -> list[float]:
    """About ``n`` round tick values from <= lo to >= hi (whole numbers if ``integer``)."""
    if hi <= lo:
        hi = lo + (abs(lo) or 1.0)
    raw = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)
    if integer:
        step = max(1.0, round(step))
    first, last = math.floor(lo / step + 1e-9), math.ceil(hi / step - 1e-9)
    return [round(k * step, 12) for k in range(first, last + 1)]


def line_plot(
    values: Sequence[float],
    *,
    title: str = "",
    xlabel: str = "",
    ylabel: str = "",
    size: tuple[int, int] = (800, 400),
) -> Image.Image:
    """A minimal line plot (white background, axes, ticks, labels) of ``values`` against
    their index, drawn with PIL. NaN values leave gaps. Returns an RGB image of ``size``."""
    w, h = size
    img = Image.new("RGB", size, "white")
    d = ImageDraw.Draw(img)
    font = ImageFont.load_default()
    left, right, top, bottom = 70, 20, 30, 45
    x0, x1, y0, y1 = left, w - right, top, h - bottom  # plot box, y grows downwards
    ys = np.asarray(values, dtype=np.float64)
    finite = ys[np.isfinite(ys)]
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    lo = min(lo, 0.0)
    yticks = _nice_ticks(lo, hi)
    lo, hi = yticks[0], yticks[-1]
    n = max(len(ys), 2)
    xticks = [t for t in _nice_ticks(0, n - 1, integer=True) if t <= n - 1]

    def px(i: float) -> float:
        return x0 + (x1 - x0) * i / (n - 1)

    def py(v: float) -> float:
        return y1 - (y1 - y0) * (v - lo) / (hi - lo)

    for t in yticks:
        d.line([(x0, py(t)), (x1, py(t))], fill=(225, 225, 225))
        d.line([(x0 - 4, py(t)), (x0, py(t))], fill="black")
        label = f"{t:.3g}"
        d.text((x0 - 8 - d.textlength(label, font=font), py(t) - 5), label, fill="black", font=font)
    for t in xticks:
        d.line([(px(t), y1), (px(t), y1 + 4)], fill="black")
        label = f"{t:g}"
        d.text((px(t) - d.textlength(label, font=font) / 2, y1 + 7), label, fill="black", font=font)
    d.rectangle([x0, y0, x1, y1], outline="black")
    segment: list[tuple[float, float]] = []
    for i, v in enumerate(ys):
        if math.isfinite(v):
            segment.append((px(i), py(v)))
        else:
            if len(segment) > 1:
                d.line(segment, fill=(31, 119, 180), width=2)
            segment = []
    if len(segment) > 1:
        d.line(segment, fill=(31, 119, 180), width=2)
    for x, y in [(px(i), py(v)) for i, v in enumerate(ys) if math.isfinite(v)]:
        d.ellipse([x - 2, y - 2, x + 2, y + 2], fill=(31, 119, 180))
    d.text(((w - d.textlength(title, font=font)) / 2, 8), title, fill="black", font=font)
    d.text(
        ((x0 + x1 - d.textlength(xlabel, font=font)) / 2, h - 18), xlabel, fill="black", font=font
    )
    d.text((8, y0 - 20), ylabel, fill="black", font=font)
    return img
