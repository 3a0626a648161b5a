"""Masks stage: instance-mask quality on COCO photos with ground truth, and speed.

Run: ``python -m benchmarks.bench_masks [--data DIR] [--tiles 0.6,0.4] [--no-refine]
[--only NAME[,NAME]] [--per-image] [--matte]``.

Rows: ``mediapipe`` (the offline default), ``mediapipe, whole frame`` (no tiles, as
MediaPipe's own pipeline), ``matte`` (with ``--matte``: the whole-frame matte split into
people, :mod:`vidstyle.segment.matte`) and ``ceiling: ground truth boxes`` (the default's crops and
masks placed at the true person boxes: what its mask model allows whatever the
detector; not a backend). A backend that runs here is one more entry in
:func:`backends`.

Data: ``<data>/persons/`` (18 COCO photos, 95 people; ``masks/<stem>.png`` with pixel
value = person id, 0 = background; see its SOURCES.md). For each image the segmenter's
soft masks are thresholded at ``--threshold`` (0.5) and matched one-to-one to the ground
truth people by the Hungarian method on mask IoU; a person is *found* when its match has
IoU >= 0.5. Reported apart: people covering at least 0.5 % of the image (the acceptance:
recall >= 0.8, mean IoU of the found >= 0.7) and the smaller ones. False positives are
predictions matched to no person at IoU >= 0.5. Speed: mean ms per photo (about 640x480),
and median ms per 640x360 frame (frames of ``video/vtest_000-010s.avi`` resized), each
after one warm-up call, on this machine's CPU (its model is recorded).

The data is used to measure, never to tune per image: only global parameters (tile
sizes, thresholds) were chosen by these overall numbers. Writes
``benchmarks/results/bench_masks.json``.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from scipy.optimize import linear_sum_assignment  # noqa: E402

from benchmarks import RESULTS, write_json  # noqa: E402
from vidstyle.contracts import Instances  # noqa: E402
from vidstyle.segment import Segmenter  # noqa: E402
from vidstyle.segment.matte import MatteSegmenter  # noqa: E402
from vidstyle.segment.mediapipe import MediaPipeSegmenter  # noqa: E402

DEFAULT_DATA = Path(
    os.environ.get(
        "VIDSTYLE_TEST_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data"
    )
)
PERSONS = "persons"
VIDEO = "video/vtest_000-010s.avi"
#: People covering at least this fraction of the image count for the acceptance recall.
MIN_FRACTION = 0.005
FOUND_IOU = 0.5


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (else platform's guess)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def to_frame(rgb: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 RGB -> (1, 3, H, W) float32 in [0, 1]."""
    return torch.from_numpy(rgb).permute(2, 0, 1)[None].float().div(255.0)


def load_persons(root: Path) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(stem, image (H, W, 3) uint8 RGB, ids (H, W) uint8) for each photo of ``root``."""
    out = []
    for mask_path in sorted((root / "masks").glob("*.png")):
        img = cv2.imread(str(root / "images" / f"{mask_path.stem}.jpg"), cv2.IMREAD_COLOR)
        ids = cv2.imread(str(mask_path), cv2.IMREAD_UNCHANGED)
        if img is None or ids is None:
            raise FileNotFoundError(f"unreadable {mask_path.stem} in {root}")
        out.append((mask_path.stem, cv2.cvtColor(img, cv2.COLOR_BGR2RGB), ids))
    return out


def match_people(ids: np.ndarray, pred: np.ndarray) -> tuple[list[dict[str, Any]], int]:
    """Match ground truth ``ids`` (H, W) ints to predicted hard masks ``pred`` (N, H, W).

    One-to-one by the Hungarian method maximising total IoU. Returns one row per ground
    truth person (id, area in px, fraction of the image, IoU of its match or 0) and the
    number of predictions matched to nobody at IoU >= 0.5 (false positives).
    """
    gt_ids = [int(v) for v in np.unique(ids) if v != 0]
    n = len(pred)
    flat_pred = pred.reshape(n, ids.size).astype(np.float32)
    iou = np.zeros((len(gt_ids), n))
    for gi, g in enumerate(gt_ids):
        gmask = (ids == g).reshape(-1).astype(np.float32)
        inter = flat_pred @ gmask
        union = flat_pred.sum(1) + gmask.sum() - inter
        iou[gi] = np.where(union > 0, inter / np.maximum(union, 1), 0.0)
    best = np.zeros(len(gt_ids))
    matched_pred = set()
    if n and gt_ids:
        rows, cols = linear_sum_assignment(-iou)
        for r, c in zip(rows, cols, strict=True):
            best[r] = iou[r, c]
            if iou[r, c] >= FOUND_IOU:
                matched_pred.add(int(c))
    total = ids.size
    people = [
        {"id": g, "area": int((ids == g).sum()), "fraction": float((ids == g).sum() / total),
         "iou": float(best[gi])}
        for gi, g in enumerate(gt_ids)
    ]
    return people, n - len(matched_pred)


Run = Callable[[torch.Tensor, np.ndarray], Instances]


def gt_boxes(ids: np.ndarray) -> np.ndarray:
    """Bounding boxes (K, 4) x0, y0, x1, y1 of every ground truth person of ``ids``."""
    out = []
    for g in np.unique(ids):
        if g != 0:
            ys, xs = np.nonzero(ids == g)
            out.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
    return np.array(out, np.float64).reshape(-1, 4)


def evaluate(
    run: Run, data: list[tuple[str, np.ndarray, np.ndarray]], *, threshold: float = 0.5
) -> dict[str, Any]:
    """``run(frame, ids)`` on every photo (it may use ``ids`` only for a ceiling row);
    the summary row and per-image details."""
    run(to_frame(data[0][1]), data[0][2])  # warm-up (interpreters, caches)
    people: list[dict[str, Any]] = []
    images = []
    times = []
    fps = 0
    for stem, rgb, ids in data:
        t0 = time.perf_counter()
        inst = run(to_frame(rgb), ids)
        times.append(time.perf_counter() - t0)
        pred = (inst.masks.numpy() >= threshold)
        rows, false_pos = match_people(ids, pred)
        fps += false_pos
        people += [{**r, "image": stem} for r in rows]
        images.append({"image": stem, "predicted": len(inst), "people": len(rows),
                       "found": sum(r["iou"] >= FOUND_IOU for r in rows),
                       "false_positives": false_pos, "ms": 1000 * times[-1]})
    large = [p for p in people if p["fraction"] >= MIN_FRACTION]
    small = [p for p in people if p["fraction"] < MIN_FRACTION]
    found = [p for p in large if p["iou"] >= FOUND_IOU]
    small_found = [p for p in small if p["iou"] >= FOUND_IOU]
    return {
        "people": len(large),
        "found": len(found),
        "recall": len(found) / max(1, len(large)),
        "mean_iou_found": float(np.mean([p["iou"] for p in found])) if found else 0.0,
        "small_people": len(small),
        "small_found": len(small_found),
        "small_recall": len(small_found) / max(1, len(small)),
        "false_positives": fps,
        "ms_per_image": 1000 * float(np.mean(times)),
        "images": images,
        "per_person": people,
    }


def time_video(seg: Segmenter, video: Path, *, frames: int = 10,
               size: tuple[int, int] = (640, 360)) -> dict[str, float]:
    """Median and mean ms of ``seg.segment`` per frame of ``video`` resized to ``size``."""
    cap = cv2.VideoCapture(str(video))
    batch = []
    while len(batch) < frames + 1:
        ok, bgr = cap.read()
        if not ok:
            break
        rgb = cv2.cvtColor(cv2.resize(bgr, size, interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB)
        batch.append(to_frame(rgb))
    cap.release()
    if len(batch) < 2:
        raise FileNotFoundError(f"cannot read frames of {video}")
    seg.segment(batch[0])
    times, counts = [], []
    for x in batch[1:]:
        t0 = time.perf_counter()
        counts.append(len(seg.segment(x)))
        times.append(1000 * (time.perf_counter() - t0))
    return {"ms_median": statistics.median(times), "ms_mean": statistics.fmean(times),
            "frames": len(times), "people_mean": statistics.fmean(counts)}


def backends(args: argparse.Namespace) -> dict[str, tuple[Segmenter, Run, bool]]:
    """Rows of the table: name -> (segmenter, how to run it on a photo, timed on video).

    ``mediapipe``: the offline default with the command line's parameters; ``mediapipe,
    whole frame``: no tiles (MediaPipe's own pipeline); ``ceiling``: the same crops and
    masks at the ground truth boxes (no detector), so what the landmark model's masks
    allow whatever the detector; not a backend."""
    tiles = tuple(float(t) for t in args.tiles.split(",") if t)
    kw: dict[str, Any] = dict(tile_overlap=args.overlap, min_score=args.score,
                              refine=not args.no_refine, roi_scale=args.roi_scale,
                              threads=args.threads)
    tiled = MediaPipeSegmenter(tiles=tiles, **kw)
    whole = MediaPipeSegmenter(tiles=(), **kw)
    rows: dict[str, tuple[Segmenter, Run, bool]] = {
        "mediapipe": (tiled, lambda x, _ids: tiled.segment(x), True),
        "mediapipe, whole frame": (whole, lambda x, _ids: whole.segment(x), True),
        "ceiling: ground truth boxes": (
            tiled, lambda x, ids: tiled.segment_boxes(x, gt_boxes(ids)), False),
    }
    if args.matte:
        matte = MatteSegmenter(people=tiled)
        rows["matte"] = (matte, lambda x, _ids: matte.segment(x), True)
    if args.only:
        rows = {k: v for k, v in rows.items() if k in args.only.split(",")}
    return rows


def bench_masks(args: argparse.Namespace) -> dict[str, Any]:
    """Evaluate every row of :func:`backends`; print a Markdown table; return results."""
    data = load_persons(Path(args.data) / PERSONS)
    rows = []
    for name, (seg, run, timed) in backends(args).items():
        seg.check()
        res = evaluate(run, data, threshold=args.threshold)
        res["video"] = time_video(seg, Path(args.data) / VIDEO, frames=args.frames) if timed \
            else None
        res.update(backend=name, fingerprint=seg.fingerprint())
        rows.append(res)
    print(f"Masks stage on {PERSONS}/ ({len(data)} photos), {cpu_model()}, "
          f"{os.cpu_count()} CPUs, {datetime.date.today()}; mask threshold {args.threshold:g}")
    print()
    print("| backend | recall (>= 0.5 % of image) | mean IoU of found | small people found "
          "| false positives | ms/image | ms per 640x360 frame |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        video = f"{r['video']['ms_median']:.0f}" if r["video"] else "-"
        print(f"| {r['backend']} | {r['found']}/{r['people']} = {r['recall']:.2f} | "
              f"{r['mean_iou_found']:.3f} | {r['small_found']}/{r['small_people']} "
              f"= {r['small_recall']:.2f} | {r['false_positives']} | {r['ms_per_image']:.0f} | "
              f"{video} |")
    if args.per_image:
        for r in rows:
            print()
            print(f"{r['backend']}: image, people, found, predicted, false positives, ms")
            for im in r["images"]:
                print(f"  {im['image']} {im['people']} {im['found']} {im['predicted']} "
                      f"{im['false_positives']} {im['ms']:.0f}")
    out = {"date": str(datetime.date.today()), "cpu": cpu_model(), "cpus": os.cpu_count(),
           "threshold": args.threshold, "min_fraction": MIN_FRACTION, "found_iou": FOUND_IOU,
           "backends": rows}
    if args.out:
        write_json(Path(args.out), out)
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="test-data kit root")
    ap.add_argument("--tiles", default="0.6,0.4", help="tile sides, fractions of the long side")
    ap.add_argument("--overlap", type=float, default=0.67, help="tile overlap")
    ap.add_argument("--score", type=float, default=0.5, help="detector score threshold")
    ap.add_argument("--roi-scale", type=float, default=1.25, help="person crop enlargement")
    ap.add_argument("--no-refine", action="store_true", help="one landmark pass per person")
    ap.add_argument("--threshold", type=float, default=0.5, help="mask threshold for IoU")
    ap.add_argument("--threads", type=int, default=2, help="interpreter threads")
    ap.add_argument("--frames", type=int, default=10, help="640x360 frames timed")
    ap.add_argument("--per-image", action="store_true", help="print per-image counts")
    ap.add_argument("--only", default="", help="rows by name, comma-separated")
    ap.add_argument("--matte", action="store_true",
                    help="add the matte row (RVM matte + CenterNet boxes + the mediapipe "
                         "row's people; `python -m vidstyle.segment.human_models fetch`)")
    ap.add_argument("--out", default=str(RESULTS / "bench_masks.json"),
                    help="JSON results ('' for none)")
    return bench_masks(ap.parse_args(argv))


if __name__ == "__main__":
    main()
