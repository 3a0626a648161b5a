"""Per-person styles on video (issue 17): speed, id stability, edge flicker, a contact sheet.

Run: ``python -m benchmarks.bench_people [--frames 40] [--track-frames 100] [--size 640]
[--no-sheet]``.

Clip: ``video/vtest_000-010s.avi`` (768x576, 10 fps, people walking and crossing),
stylized at longest side ``--size`` (640 -> 640x480). The per-person run is
``--style wave --instance 2=wave --instance 3=scream --instance 4=udnie --background none``
(ids 2, 3, 4 are the three walkers present from the first frame; `vidstyle masks` shows
id 1 is a jacket lying on the grass, taken for a person); the single-style run is
``--style wave``. Everything goes through :func:`vidstyle.engine.run` with a config from
:func:`vidstyle.engine.build_config`, as `vidstyle run` does, with ``$VIDSTYLE_HOME``
pointed at a temporary folder (its ``models/`` and ``weights/`` linked to the real ones)
so the segment cache starts empty.

1. **Speed**, end to end (model load, segment pass, decode, flow, network, encode), in one
   process, A/B alternated: single style, per-person with an empty segment cache (the
   MediaPipe segmentation runs), single style, per-person with the raw segmentations
   cached (tracking, smoothing and their flow still run), single style, per-person with
   mask smoothing off (cached raw), per-person with the work folder's people stage kept
   from an earlier run (a second style on the same clip: only the stylize pass).
   The segment pass and the stylize pass are split by the progress events. Also the
   network alone (``FastStylizer.stylize_tensor``: one pass with a per-pixel style map,
   feathering and compositing included, against the plain pass), alternated per frame.
   Target (issue): per-person at most 1.5x the single-style time.
2. **Id stability**: no ground truth exists for vtest, so (a) a proxy over the tracked
   clip (``--track-frames``; tracked twice, the second pass with every raw segmentation
   from the cache, as a run after `vidstyle masks` sees them): *fragmentations*, a track
   that ends and, within :data:`FRAGMENT_GAP` frames, a new id whose first box overlaps
   the ended track's last box (likely the same person renumbered); ids seen in at most 2
   frames; distinct ids against the people counted by eye (:data:`EYE_COUNT`); (b) a
   small ground truth made by eye (:data:`GT_BOXES`: every walker taller than ~40 px in
   4 frames 15 apart, boxes read off a 20 px grid, +-3 px), matched with
   :func:`vidstyle.segment.track.match_to_ground_truth` (box against box: both are
   rasterized as filled boxes, IoU >= :data:`GT_IOU`) and
   :func:`~vidstyle.segment.track.count_id_switches`; (c) whether the per-person run with
   an empty segment cache and the same run with it filled gave the same people the same
   ids (frame by frame, boxes and ids).
3. **Warping error near mask edges** (Lai et al., the computation of
   :func:`vidstyle.evaluate.warp_error` with a region mask added: DIS ``medium`` flow on the
   original frames, forward-backward consistency and motion boundaries): on the decoded
   outputs (x264 crf 18) of the single-style run and of the per-person runs with mask
   smoothing on (default) and off, inside :func:`vidstyle.segment.ops.edge_band` of the
   people masks (the union of both per-person runs' masks at frame t, so the same pixels),
   and elsewhere. Also the masks' own flicker (the same error of the summed people masks).
4. **Contact sheet** (``results/people_contact_sheet.png``): vtest frames (the overlay of
   `vidstyle masks` above the per-person frame, and a crop around the frame's largest
   person) and ``content/kodim12.png`` with ``--instance 1=wave --instance 2=scream --background
   none`` (original, overlay, result); the largest change outside every feathered mask is
   reported (it should be 0).

Writes ``benchmarks/results/bench_people.json``. Timings on a shared machine are noisy:
compare ratios within one run.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import logging
import math
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402

from benchmarks import RESULTS, write_json  # noqa: E402
from vidstyle import media  # noqa: E402
from vidstyle.contracts import Instances, ProgressEvent  # noqa: E402
from vidstyle.engine import build_config, run  # noqa: E402
from vidstyle.engine.people import load_people, make_segmenter, track_people  # noqa: E402
from vidstyle.fast.stylizer import make_fast_stylizer  # noqa: E402
from vidstyle.fileio import sha256_file  # noqa: E402
from vidstyle.flow import FlowEstimator, flow_from_config  # noqa: E402
from vidstyle.flow.consistency import consistency_mask  # noqa: E402
from vidstyle.flow.estimate import make_flow  # noqa: E402
from vidstyle.flow.pair import frame_pair  # noqa: E402
from vidstyle.flow.warp import warp  # noqa: E402
from vidstyle.imageops import resize_uint8, working_size  # noqa: E402
from vidstyle.segment.ops import box_iou, edge_band, feather, mask_boxes  # noqa: E402
from vidstyle.segment.render import overlay  # noqa: E402
from vidstyle.segment.track import count_id_switches, match_to_ground_truth  # noqa: E402
from vidstyle.tensors import to_tensor  # noqa: E402
from vidstyle.weights.cache import vidstyle_home  # noqa: E402
from vidstyle.workdir import WorkDir  # noqa: E402

log = logging.getLogger(__name__)

DATA = Path(os.environ.get("VIDSTYLE_TEST_DATA",
                           Path(__file__).resolve().parents[1].parent / "shared" / "data"))
CLIP = "video/vtest_000-010s.avi"
PHOTO = "content/kodim12.png"
#: The single style, and the per-person spec (ids of three walkers of the first frame).
STYLE = "wave"
INSTANCES = ("2=wave", "3=scream", "4=udnie")
PHOTO_INSTANCES = ("1=wave", "2=scream")
#: Issue 17's target: per-person time at most this times the single-style time.
TARGET_RATIO = 1.5
#: Edge bands (half-widths in pixels at the working size) for the warping error.
BAND_WIDTHS = (5, 10)
#: A new id starting within this many frames of a track's end, its first box overlapping
#: that track's last box, counts as a fragmentation.
FRAGMENT_GAP = 10
#: Least box IoU for a ground-truth person (box by eye) to match a predicted person.
GT_IOU = 0.4

#: Ground truth by eye at 640x480 (``--size 640``): frame -> {person: (x0, y0, x1, y1)}.
#: Read off a 20 px grid drawn on the frames (+-3 px); every walker taller than ~40 px and
#: not hidden. People: D dark jacket, dark trousers (starts left); J dark jacket, jeans
#: (starts top centre); K all black, hood (starts right, walks down, turns back); R red
#: jacket, white paper; W woman, black coat, fair hair (R and W enter at the right about
#: frame 13); N dark jacket, jeans (enters at the right about frame 38); S black suit
#: (enters at the left about frame 65).
GT_BOXES: dict[int, dict[str, tuple[int, int, int, int]]] = {
    25: {"D": (310, 157, 335, 228), "J": (325, 146, 347, 212), "K": (342, 200, 369, 258),
         "R": (552, 217, 579, 305), "W": (577, 215, 609, 299)},
    40: {"J": (312, 147, 334, 215), "D": (332, 154, 356, 219), "K": (365, 161, 384, 227),
         "R": (474, 196, 504, 277), "W": (501, 192, 529, 270), "N": (613, 238, 640, 332)},
    55: {"J": (312, 149, 334, 215), "D": (336, 147, 356, 219), "R": (405, 175, 433, 249),
         "W": (441, 172, 468, 245), "N": (534, 206, 566, 299)},
    70: {"S": (241, 141, 273, 196), "J": (305, 150, 335, 216), "D": (339, 151, 358, 219),
         "R": (370, 159, 398, 230), "W": (399, 156, 422, 223), "N": (489, 174, 518, 256)},
}
#: People in the 100 frames counted by eye: the seven above, plus one far walker on the
#: path at the top left (about 15 px tall, from about frame 70).
EYE_COUNT = 8


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (else platform's guess)."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


@contextlib.contextmanager
def temp_home(root: Path) -> Iterator[Path]:
    """``$VIDSTYLE_HOME`` set to ``root/home`` for the block: ``models/`` and ``weights/``
    linked to the current home's, nothing else (an empty segment cache)."""
    real = vidstyle_home()
    home = root / "home"
    home.mkdir(parents=True, exist_ok=True)
    for name in ("models", "weights"):
        if (real / name).exists() and not (home / name).exists():
            (home / name).symlink_to(real / name, target_is_directory=True)
    old = os.environ.get("VIDSTYLE_HOME")
    os.environ["VIDSTYLE_HOME"] = str(home)
    try:
        yield home
    finally:
        if old is None:
            os.environ.pop("VIDSTYLE_HOME", None)
        else:
            os.environ["VIDSTYLE_HOME"] = old


# ------------------------------------------------------------------------------ speed


def run_values(*, frames: int, size: int, people: bool, smooth: bool = True) -> dict[str, Any]:
    """Command-line values of one benchmark run (see the module docstring)."""
    values: dict[str, Any] = {"--style": STYLE, "--method": "fast", "--size": size,
                              "--max-frames": frames}
    if people:
        values.update({"--instance": INSTANCES, "--background": "none",
                       "--mask-smoothing": smooth})
    return values


def timed_run(input_path: Path, output: Path, values: Mapping[str, Any],
              work_dir: Path) -> dict[str, Any]:
    """One :func:`vidstyle.engine.run` (a per-person run's work folder kept in
    ``work_dir``): wall seconds, and the segment pass's share (up to its last progress
    event)."""
    cfg, spec = build_config(values)
    last: dict[str, float] = {}

    def progress(ev: ProgressEvent) -> None:
        last[ev.stage] = time.perf_counter()

    t0 = time.perf_counter()
    keeps = cfg.style.per_person  # a plain fast run keeps no work folder (and refuses one)
    res = run(input_path, output, cfg, pipeline=spec, work_dir=work_dir if keeps else None,
              progress=progress, overwrite=True, keep_work=keeps)
    total = time.perf_counter() - t0
    segment = last["segment"] - t0 if "segment" in last else 0.0
    return {"seconds": total, "segment_s": segment, "stylize_s": total - segment,
            "frames": res.frames, "fps": res.frames / total,
            "stylize_fps": res.frames / (total - segment)}


def people_stage(work_dir: Path) -> Path:
    """The folder of per-frame people (``people_NNNNNN.npz``) a kept work folder holds."""
    found = sorted(work_dir.rglob("seen.json"))
    if not found:
        raise FileNotFoundError(f"no segment stage in {work_dir}")
    return found[0].parent


def load_track(folder: Path, frames: int) -> list[Instances]:
    """People of frames 0..frames-1 from a segment stage folder."""
    return [load_people(folder / f"people_{i:06d}.npz") for i in range(frames)]


def network_only(sources: Sequence[torch.Tensor], people: Sequence[Instances], *,
                 size: int) -> dict[str, Any]:
    """Median seconds per frame of the plain pass and of the per-person pass (style map:
    feathering, layout, one network pass, compositing), alternated frame by frame
    (which goes first alternates too), and of the layout alone."""
    single_cfg, _ = build_config(run_values(frames=len(sources), size=size, people=False))
    people_cfg, _ = build_config(run_values(frames=len(sources), size=size, people=True))
    single = make_fast_stylizer(config=single_cfg)
    per = make_fast_stylizer(config=people_cfg)
    size_hw = tuple(sources[0].shape[-2:])
    single.stylize_tensor(sources[0])  # warm up (runtime choice, allocations)
    per.stylize_tensor(sources[0], instances=people[0])
    t_single, t_per, t_layout = [], [], []

    def t_one(x: torch.Tensor, _inst: Instances) -> None:
        t0 = time.perf_counter()
        single.stylize_tensor(x)
        t_single.append(time.perf_counter() - t0)

    def t_per_person(x: torch.Tensor, inst: Instances) -> None:
        t0 = time.perf_counter()
        per.stylize_tensor(x, instances=inst)
        t_per.append(time.perf_counter() - t0)

    for i, (x, inst) in enumerate(zip(sources, people, strict=True)):
        for fn in ((t_one, t_per_person) if i % 2 == 0 else (t_per_person, t_one)):
            fn(x, inst)
        t0 = time.perf_counter()
        per.layout(inst, size_hw)
        t_layout.append(time.perf_counter() - t0)
    runtime = single.runtime_choice.name if single.runtime_choice else "?"
    return {"frames": len(sources), "runtime": runtime,
            "single_s": statistics.median(t_single), "people_s": statistics.median(t_per),
            "layout_s": statistics.median(t_layout),
            "ratio": statistics.median(t_per) / statistics.median(t_single)}


# ----------------------------------------------------------------------- id stability


def tracks_of(people: Sequence[Instances]) -> dict[int, dict[str, Any]]:
    """Per id: frames seen, first and last frame, and the boxes there."""
    out: dict[int, dict[str, Any]] = {}
    for t, inst in enumerate(people):
        for k, pid in enumerate(inst.ids):
            box = [float(v) for v in inst.boxes[k]]
            tr = out.setdefault(pid, {"frames": [], "first": t, "first_box": box})
            tr["frames"].append(t)
            tr["last"], tr["last_box"] = t, box
    return out


def fragmentations(tracks: Mapping[int, Mapping[str, Any]], n_frames: int, *,
                   gap: int = FRAGMENT_GAP) -> list[dict[str, Any]]:
    """Likely renumberings: track A ends (its last frame before the clip's last), and a
    new id B starts within ``gap`` frames after that with a first box that overlaps A's
    last box (box IoU > 0). Each ended track and each new track is used once, the
    closest start first. Returns one row per pair: ended id, new id, gap, box IoU."""
    ended = sorted((tr["last"], pid) for pid, tr in tracks.items() if tr["last"] < n_frames - 1)
    used_new: set[int] = set()
    out = []
    for end, pid in ended:
        last_box = torch.tensor([tracks[pid]["last_box"]])
        best: tuple[int, float, int] | None = None
        for qid, tr in tracks.items():
            if qid == pid or qid in used_new or not 0 < tr["first"] - end <= gap:
                continue
            iou = float(box_iou(last_box, torch.tensor([tr["first_box"]]))[0, 0])
            if iou > 0 and (best is None or (tr["first"] - end, -iou) < (best[0], -best[1])):
                best = (tr["first"] - end, iou, qid)
        if best is not None:
            used_new.add(best[2])
            out.append({"ended": pid, "new": best[2], "gap": best[0], "box_iou": best[1]})
    return out


def box_masks(boxes: Sequence[Sequence[float]], size: tuple[int, int]) -> torch.Tensor:
    """Filled boxes (x0, y0, x1, y1) in pixels -> (N, H, W) float32 binary masks."""
    h, w = size
    out = torch.zeros((len(boxes), h, w), dtype=torch.float32)
    for i, (x0, y0, x1, y1) in enumerate(boxes):
        xa, xb = max(0, round(x0)), min(w, round(x1))
        ya, yb = max(0, round(y0)), min(h, round(y1))
        out[i, ya:yb, xa:xb] = 1.0
    return out


def ground_truth_check(people: Sequence[Instances],
                       gt: Mapping[int, Mapping[str, tuple[int, int, int, int]]] = GT_BOXES,
                       *, threshold: float = GT_IOU) -> dict[str, Any]:
    """Match each ground-truth frame's people (boxes by eye) to the tracked people (their
    masks' tight boxes), box against box; count found people and id switches. Per frame
    also each person's best box IoU with any prediction (missed vs loosely boxed)."""
    labels = sorted({p for frame in gt.values() for p in frame})
    code = {p: i + 1 for i, p in enumerate(labels)}
    per_frame, matches = [], []
    for t in sorted(gt):
        if t >= len(people):
            continue
        inst = people[t]
        boxes = mask_boxes(inst.masks) if len(inst) else torch.zeros((0, 4))
        pred = Instances(masks=box_masks(boxes.tolist(), inst.size), boxes=boxes,
                         scores=inst.scores, ids=inst.ids)
        names = list(gt[t])
        m = match_to_ground_truth(pred, box_masks([gt[t][p] for p in names], inst.size),
                                  [code[p] for p in names], threshold=threshold)
        matches.append(m)
        best = (box_iou(torch.tensor([gt[t][p] for p in names], dtype=torch.float32), boxes)
                .amax(dim=1).tolist() if len(inst) else [0.0] * len(names))
        per_frame.append({"frame": t, "people": len(names), "found": len(m),
                          "ids": {labels[g - 1]: pid for g, pid in sorted(m.items())},
                          "best_iou": {p: round(b, 2) for p, b in zip(names, best, strict=True)}})
    ids_of: dict[str, list[int]] = {}
    for row in per_frame:
        for p, pid in row["ids"].items():
            ids_of.setdefault(p, []).append(pid)
    return {"frames": per_frame, "switches": count_id_switches(matches),
            "people": sum(r["people"] for r in per_frame),
            "found": sum(r["found"] for r in per_frame), "ids_of": ids_of,
            "threshold": threshold}


def id_agreement(a: Sequence[Instances], b: Sequence[Instances]) -> dict[str, Any]:
    """Whether two segment stages of the same frames gave the same people the same ids:
    per frame the (box, id) pairs (boxes rounded to pixels) are compared. Returns the
    frames that differ and each run's people per frame as ``<box x0>,<y0>:<id>``."""
    def key(inst: Instances) -> list[tuple[tuple[int, ...], int]]:
        return sorted((tuple(round(float(v)) for v in box), pid)
                      for box, pid in zip(inst.boxes, inst.ids, strict=True))

    def by_x(inst: Instances) -> list[str]:
        return [f"{box[0]},{box[1]}:{pid}" for box, pid in key(inst)]

    differ = [t for t, (x, y) in enumerate(zip(a, b, strict=True)) if key(x) != key(y)]
    return {"frames": len(a), "differ": differ,
            "ids_a": [by_x(p) for p in a], "ids_b": [by_x(p) for p in b]}


def track_clip(input_path: Path, *, frames: int, size: int, root: Path) -> list[Instances]:
    """The segment stage over the first ``frames`` frames, as a per-person run does it
    (same segmenter, working size, flow, tracking, smoothing); raw results come from the
    segment cache when earlier runs left them."""
    cfg, _ = build_config(run_values(frames=frames, size=size, people=True))
    info = media.probe(input_path)
    h, w = working_size(info.height, info.width, size)
    seg = make_segmenter(cfg.segment, frames=frames, size=(info.height, info.width))
    seg.check()
    stage = WorkDir(root).stage("segment", "bench")
    track = track_people(lambda: media.iter_frames(input_path),
                         prepare=lambda rgb: to_tensor(resize_uint8(rgb, (h, w))),
                         segmenter=seg, flow=flow_from_config(cfg.flow), config=cfg.segment,
                         fps=float(info.fps) if info.fps else None,
                         input_sha256=sha256_file(input_path), stage=stage,
                         max_frames=frames, total=frames, progress=lambda ev: None)
    return [track.load(i) for i in range(track.frames)]


# ------------------------------------------------------------------ warping error


def pair_weights(o0: torch.Tensor, o1: torch.Tensor, flow: FlowEstimator
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """The warping error's flow and weights for source frames t, t+1 (1, 3, H, W): the
    forward flow (1, 2, H, W) and the consistency mask (1, 1, H, W) on frame t's grid, as
    in :func:`vidstyle.evaluate.warp_error`."""
    pair = frame_pair(o0, o1, flow=flow, masks=False)
    m = consistency_mask(forward=pair.backward, backward=pair.forward)
    return pair.forward, m


def region_error(v0: torch.Tensor, v1: torch.Tensor, forward: torch.Tensor,
                 weights: torch.Tensor, region: torch.Tensor | None = None
                 ) -> tuple[float, float]:
    """Warping error of stylized frames t, t+1 (1, C, H, W) inside ``region`` ((H, W)
    bool, None = everywhere): (sum of w * mean_c (v0 - warp(v1))^2, sum of w) with
    w = consistency weights * region; their ratio is E_t of that region."""
    sq = (v0 - warp(v1, forward)).pow(2).mean(dim=1, keepdim=True)
    w = weights if region is None else weights * region.to(weights.dtype)[None, None]
    return float((sq * w).sum()), float(w.sum())


def regions_of(masks: Sequence[torch.Tensor], widths: Sequence[int]) -> dict[str, torch.Tensor]:
    """Regions of one frame from the people masks of several runs ((N_k, H, W) each):
    ``band N``: within N px of any run's mask edge; ``people``: covered by some mask,
    beyond the narrowest band (walkers here are 20-30 px wide); ``background``:
    covered by no mask, beyond the widest band."""
    h, w = masks[0].shape[-2:]
    out: dict[str, torch.Tensor] = {}
    for width in widths:
        band = torch.zeros((h, w), dtype=torch.bool)
        for m in masks:
            band |= edge_band(m, width)
        out[f"band {width}"] = band
    covered = torch.zeros((h, w), dtype=torch.bool)
    for m in masks:
        if m.shape[0]:
            covered |= (m > 0.5).any(dim=0)
    out["people"] = covered & ~out[f"band {min(widths)}"]
    out["background"] = ~covered & ~out[f"band {max(widths)}"]
    return out


def warp_errors(outputs: Mapping[str, Sequence[torch.Tensor]], sources: Sequence[torch.Tensor],
                regions: Callable[[int], Mapping[str, torch.Tensor]], flow: FlowEstimator
                ) -> dict[str, dict[str, dict[str, float]]]:
    """Per output and region: ``mean`` (mean over pairs of E_t, pairs with no weight
    skipped, as :func:`vidstyle.evaluate.warp_error`), ``pooled`` (all pairs' squared
    errors over all their weights) and ``pixels`` (mean weight per pair). The flow and
    its weights are computed once per pair, on ``sources``."""
    acc: dict[str, dict[str, list[tuple[float, float]]]] = {k: {} for k in outputs}
    for t in range(len(sources) - 1):
        fwd, m = pair_weights(sources[t], sources[t + 1], flow)
        regs = {"frame": None, **regions(t)}
        for name, frames in outputs.items():
            for rname, reg in regs.items():
                acc[name].setdefault(rname, []).append(
                    region_error(frames[t], frames[t + 1], fwd, m, reg))
    out: dict[str, dict[str, dict[str, float]]] = {}
    for name, per_region in acc.items():
        out[name] = {}
        for rname, vals in per_region.items():
            per = [s / w for s, w in vals if w > 0]
            total_w = sum(w for _, w in vals)
            out[name][rname] = {
                "mean": float(np.mean(per)) if per else math.nan,
                "pooled": sum(s for s, _ in vals) / total_w if total_w > 0 else math.nan,
                "pixels": total_w / len(vals)}
    return out


def people_map(inst: Instances) -> torch.Tensor:
    """(1, 1, H, W) the summed people masks, clamped to 1 (for the masks' own flicker)."""
    if not len(inst):
        return torch.zeros((1, 1, *inst.size))
    return inst.masks.sum(dim=0).clamp(max=1.0)[None, None]


# ------------------------------------------------------------------- contact sheet


def decoded(path: Path, frames: int | None = None) -> list[torch.Tensor]:
    """The first ``frames`` frames of a video (or a still) as (1, 3, H, W) tensors."""
    out = []
    for f in media.iter_frames(path):
        if frames is not None and len(out) >= frames:
            break
        out.append(to_tensor(f.rgb))
    return out


def _img(t: torch.Tensor | np.ndarray) -> Image.Image:
    if isinstance(t, np.ndarray):
        return Image.fromarray(t)
    return Image.fromarray((t[0].clamp(0, 1) * 255).round().to(torch.uint8)
                           .permute(1, 2, 0).numpy())


def crop_box(insts: Sequence[Instances], ids: Sequence[int], size: tuple[int, int], *,
             pad: int = 24, aspect: float = 4 / 3) -> tuple[int, int, int, int]:
    """A box (x0, y0, x1, y1) around the people ``ids`` of ``insts`` (union, padded,
    widened to ``aspect``), inside the frame of ``size`` (h, w)."""
    h, w = size
    boxes = [mask_boxes(inst.masks)[k] for inst in insts for k, pid in enumerate(inst.ids)
             if pid in ids]
    if not boxes:
        return 0, 0, w, h
    b = torch.stack(boxes)
    x0, y0 = float(b[:, 0].min()) - pad, float(b[:, 1].min()) - pad
    x1, y1 = float(b[:, 2].max()) + pad, float(b[:, 3].max()) + pad
    cw, ch = x1 - x0, y1 - y0
    if cw / ch < aspect:
        cw = ch * aspect
    else:
        ch = cw / aspect
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    cw, ch = min(cw, w), min(ch, h)
    x0 = int(min(max(0.0, cx - cw / 2), w - cw))
    y0 = int(min(max(0.0, cy - ch / 2), h - ch))
    return x0, y0, x0 + int(cw), y0 + int(ch)


def sheet(rows: Sequence[Sequence[tuple[Image.Image, str]]], *, cell_w: int = 320) -> Image.Image:
    """Rows of (image, caption): each image scaled to ``cell_w`` wide, caption above."""
    pad, cap = 4, 14
    scaled = [[(im.resize((cell_w, round(im.height * cell_w / im.width)), Image.LANCZOS), c)
               for im, c in row] for row in rows]
    heights = [max(im.height for im, _ in row) + cap + pad for row in scaled]
    width = max(len(r) for r in scaled) * (cell_w + pad) + pad
    out = Image.new("RGB", (width, sum(heights) + pad), "white")
    draw = ImageDraw.Draw(out)
    y = pad
    for row, rh in zip(scaled, heights, strict=True):
        for c, (im, caption) in enumerate(row):
            x = pad + c * (cell_w + pad)
            draw.text((x + 2, y), caption, fill="black")
            out.paste(im, (x, y + cap))
        y += rh
    return out


def photo_run(root: Path, data: Path = DATA) -> dict[str, Any]:
    """kodim12 (under the data kit ``data``) with two people in two styles, background
    kept: original, overlay, result, and the largest change (0..255) outside every
    feathered mask."""
    photo = data / PHOTO
    values = {"--instance": PHOTO_INSTANCES, "--background": "none", "--method": "fast"}
    out = root / "kodim12_people.png"
    work = root / "work_photo"
    timing = timed_run(photo, out, values, work)
    inst = load_people(people_stage(work) / "people_000000.npz")
    result = np.asarray(Image.open(out).convert("RGB"))
    original = resize_uint8(np.asarray(Image.open(photo).convert("RGB")), inst.size)
    cfg, _ = build_config(values)
    h, w = inst.size
    reach = feather(inst.masks, cfg.segment.feather * math.hypot(h, w)).sum(dim=0) > 0
    outside = ~reach.numpy()
    diff = np.abs(result.astype(np.int16) - original.astype(np.int16)).max(axis=2)
    return {"original": original, "overlay": overlay(original, inst), "result": result,
            "ids": list(inst.ids), "seconds": timing["seconds"],
            "max_change_outside": int(diff[outside].max()) if outside.any() else 0,
            "outside_fraction": float(outside.mean())}


# ---------------------------------------------------------------------------- main


def bench_people(args: argparse.Namespace) -> dict[str, Any]:
    """Everything of the module docstring; prints Markdown tables, returns the results."""
    clip = Path(args.data) / CLIP
    n = args.frames
    with contextlib.ExitStack() as stack:
        if args.work:
            tmp = Path(args.work)
            if tmp.exists() and any(tmp.iterdir()):
                raise SystemExit(f"--work {tmp} is not empty (the segment cache must start "
                                 "empty)")
            tmp.mkdir(parents=True, exist_ok=True)
        else:
            tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench_people_")))
        with temp_home(tmp):
            res = _bench(args, clip, n, tmp)
    _print(res)
    if args.out:
        write_json(Path(args.out), res)
    return res


def _bench(args: argparse.Namespace, clip: Path, n: int, tmp: Path) -> dict[str, Any]:
    size = args.size
    info = media.probe(clip)
    h, w = working_size(info.height, info.width, size)
    res: dict[str, Any] = {
        "date": str(datetime.date.today()), "cpu": cpu_model(), "cpus": os.cpu_count(),
        "load_average_start": list(os.getloadavg()), "clip": CLIP, "frames": n,
        "size": [w, h], "style": STYLE, "instances": list(INSTANCES), "background": "none",
        "detect_every": build_config(run_values(frames=n, size=size, people=True))[0]
        .segment.detect_every}
    # warm-up: the runtime choice (cached per process) and first-call costs
    timed_run(clip, tmp / "warm.mp4", run_values(frames=3, size=size, people=False),
              tmp / "work_warm")
    plan = [("single 1", False, True), ("people, empty segment cache", True, True),
            ("single 2", False, True), ("people, raw segmentations cached", True, True),
            ("single 3", False, True), ("people, cached, no mask smoothing", True, False),
            ("people, people stage kept (second style)", True, True)]
    runs: dict[str, dict[str, Any]] = {}
    for i, (label, people, smooth) in enumerate(plan):
        work = tmp / f"work_{i}"
        if label.startswith("people, people stage kept"):
            work = tmp / "work_3"  # the cached run's folder: its people stage is reused
        out = tmp / f"run_{i}.mp4"
        log.info("run %s", label)
        r = timed_run(clip, out, run_values(frames=n, size=size, people=people,
                                            smooth=smooth), work)
        runs[label] = {**r, "output": str(out), "work": str(work),
                       "load_average": list(os.getloadavg())}
        print(f"  {label}: {r['seconds']:.1f} s (segment {r['segment_s']:.1f} s)", flush=True)
    single = [runs[f"single {k}"]["seconds"] for k in (1, 2, 3)]
    res["runs"] = runs
    res["ratios"] = {
        "empty cache / mean(single 1, 2)":
            runs["people, empty segment cache"]["seconds"] / statistics.fmean(single[:2]),
        "raw cached / mean(single 2, 3)":
            runs["people, raw segmentations cached"]["seconds"] / statistics.fmean(single[1:]),
        "no smoothing / single 3": runs["people, cached, no mask smoothing"]["seconds"]
            / single[2],
        "people stage kept / single 3": runs["people, people stage kept (second style)"][
            "seconds"] / single[2],
        "stylize pass, raw cached / mean(single 2, 3)":
            runs["people, raw segmentations cached"]["stylize_s"] / statistics.fmean(single[1:]),
    }
    on = load_track(people_stage(Path(runs["people, raw segmentations cached"]["work"])), n)
    off = load_track(people_stage(Path(runs["people, cached, no mask smoothing"]["work"])), n)
    sources = [to_tensor(resize_uint8(f.rgb, (h, w)))
               for f, _ in zip(media.iter_frames(clip), range(n), strict=False)]
    res["network_only"] = network_only(sources[: args.net_frames], on[: args.net_frames],
                                       size=size)
    print("  network only done", flush=True)

    # id stability over the clip
    # the first pass fills the segment cache (frames past --frames are segmented now);
    # the second reads every frame from it, as a run after `vidstyle masks` does
    track_clip(clip, frames=args.track_frames, size=size, root=tmp / "track_fill")
    track = track_clip(clip, frames=args.track_frames, size=size, root=tmp / "track")
    tracks = tracks_of(track)
    frag = fragmentations(tracks, len(track))
    res["ids"] = {
        "frames": len(track), "distinct_ids": len(tracks), "eye_count": EYE_COUNT,
        "short_ids": sorted(pid for pid, tr in tracks.items() if len(tr["frames"]) <= 2),
        "fragmentations": frag, "fragment_gap": FRAGMENT_GAP,
        "people_per_frame": statistics.fmean(len(p) for p in track),
        "tracks": {str(pid): {"first": tr["first"], "last": tr["last"],
                              "frames": len(tr["frames"])} for pid, tr in tracks.items()},
        "ground_truth": ground_truth_check(track),
        "cold_vs_cached": id_agreement(
            load_track(people_stage(Path(runs["people, empty segment cache"]["work"])), n), on)}
    print("  ids done", flush=True)

    # warping error near mask edges
    judge = make_flow("dis", preset="medium")
    outputs = {"single style": decoded(Path(runs["single 3"]["output"]), n),
               "people, smoothing on": decoded(
                   Path(runs["people, raw segmentations cached"]["output"]), n),
               "people, smoothing off": decoded(
                   Path(runs["people, cached, no mask smoothing"]["output"]), n)}
    res["warp_error"] = warp_errors(outputs, sources,
                                    lambda t: regions_of([on[t].masks, off[t].masks],
                                                         BAND_WIDTHS), judge)
    res["mask_flicker"] = warp_errors(
        {"smoothing on": [people_map(p) for p in on],
         "smoothing off": [people_map(p) for p in off]}, sources,
        lambda t: regions_of([on[t].masks, off[t].masks], BAND_WIDTHS), judge)
    res["band_widths"] = list(BAND_WIDTHS)
    print("  warping error done", flush=True)

    if args.sheet:
        res["photo"] = _contact_sheet(args, outputs["people, smoothing on"], sources, on, tmp)
    res["load_average_end"] = list(os.getloadavg())
    return res


def _contact_sheet(args: argparse.Namespace, styled: Sequence[torch.Tensor],
                   sources: Sequence[torch.Tensor], people: Sequence[Instances],
                   tmp: Path) -> dict[str, Any]:
    n = len(styled)
    picks = sorted({round(k * (n - 1) / 4) for k in range(5)})
    top, mid, zoom = [], [], []
    for t in picks:
        rgb = (sources[t][0].permute(1, 2, 0) * 255).round().to(torch.uint8).numpy()
        top.append((_img(overlay(rgb, people[t])), f"vtest frame {t}: masks (overlay)"))
        mid.append((_img(styled[t]), f"frame {t}: 2=wave 3=scream 4=udnie, bg none"))
        area = people[t].masks.flatten(1).sum(dim=1) if len(people[t]) else torch.zeros(0)
        pid = people[t].ids[int(area.argmax())] if len(area) else -1
        box = crop_box([people[t]], [pid], tuple(styled[t].shape[-2:]), pad=30)
        crop = _img(styled[t]).crop(box)
        zoom.append((crop, f"frame {t}: id {pid} (largest), x{box[0]}-{box[2]} "
                           f"y{box[1]}-{box[3]}"))
    photo = photo_run(tmp, Path(args.data))
    bottom = [(_img(photo["original"]), "kodim12"),
              (_img(photo["overlay"]), f"masks: ids {photo['ids']}"),
              (_img(photo["result"]), "1=wave 2=scream, background none")]
    path = Path(args.sheet)
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet([top, mid, zoom, bottom]).save(path)
    return {k: photo[k] for k in ("ids", "seconds", "max_change_outside", "outside_fraction")} \
        | {"sheet": _shown(path), "frames": picks}


def _shown(path: Path) -> str:
    """``path`` relative to the repository when inside it (results stay portable)."""
    root = Path(__file__).resolve().parents[1]
    path = path.resolve()
    return str(path.relative_to(root)) if path.is_relative_to(root) else str(path)


def _print(res: dict[str, Any]) -> None:
    w, h = res["size"]
    print(f"\nPer-person styles on {res['clip']}, {res['frames']} frames at {w}x{h}, "
          f"{res['cpu']}, {res['cpus']} CPUs, {res['date']}, load average "
          f"{res['load_average_start'][0]:.1f} -> {res['load_average_end'][0]:.1f}\n")
    print("| run (in order) | seconds | fps | segment pass s | stylize pass s |")
    print("|---|---:|---:|---:|---:|")
    for label, r in res["runs"].items():
        print(f"| {label} | {r['seconds']:.1f} | {r['fps']:.2f} | {r['segment_s']:.1f} | "
              f"{r['stylize_s']:.1f} |")
    print()
    head = res["ratios"]["empty cache / mean(single 1, 2)"]
    print(f"**End to end with an empty segment cache (MediaPipe, full detection every "
          f"{res['detect_every']} frames): {head:.2f}x the single-style time** (issue "
          f"target <= {TARGET_RATIO}: {'met' if head <= TARGET_RATIO else 'not met'})\n")
    for k, v in res["ratios"].items():
        print(f"- {k}: **{v:.2f}x** (target <= {TARGET_RATIO})")
    net = res["network_only"]
    print(f"- network alone ({net['runtime']}, median of {net['frames']} alternated frames): "
          f"single {1000 * net['single_s']:.0f} ms, per-person {1000 * net['people_s']:.0f} ms "
          f"(layout {1000 * net['layout_s']:.0f} ms): **{net['ratio']:.2f}x**")
    ids = res["ids"]
    gt = ids["ground_truth"]
    print(f"\nIds over {ids['frames']} frames: {ids['distinct_ids']} distinct ids "
          f"(people by eye: {ids['eye_count']}), {len(ids['short_ids'])} seen in <= 2 "
          f"frames, {len(ids['fragmentations'])} fragmentations (new id within "
          f"{ids['fragment_gap']} frames overlapping an ended track), "
          f"{ids['people_per_frame']:.1f} people per frame")
    for f in ids["fragmentations"]:
        print(f"  - {f['ended']} -> {f['new']} after {f['gap']} frames (box IoU "
              f"{f['box_iou']:.2f})")
    print(f"Ground truth by eye (box IoU >= {gt['threshold']}): {gt['found']}/{gt['people']} "
          f"found, {gt['switches']} id switches; ids per person: {gt['ids_of']}")
    for row in gt["frames"]:
        print(f"  - frame {row['frame']}: {row['found']}/{row['people']} {row['ids']}, best "
              f"box IoU {row['best_iou']}")
    agree = ids["cold_vs_cached"]
    print(f"Same command, empty vs filled segment cache: (box, id) pairs differ in "
          f"{len(agree['differ'])}/{agree['frames']} frames {agree['differ'][:12]}")
    shown = [agree["differ"][0]] if agree["differ"] else []
    for t in sorted({0, *shown, 10, 20, agree["frames"] - 1}):
        if t < agree["frames"]:
            print(f"  - frame {t} (box x0,y0:id): {agree['ids_a'][t]} (empty cache) vs "
                  f"{agree['ids_b'][t]} (cached)")
    print("\nWarping error (x 1e-3, mean over pairs; DIS medium on the original frames):\n")
    regions = list(next(iter(res["warp_error"].values())))
    print("| output | " + " | ".join(regions) + " |")
    print("|---|" + "---:|" * len(regions))
    for name, per in res["warp_error"].items():
        print(f"| {name} | " + " | ".join(f"{1000 * per[r]['mean']:.2f}" for r in regions)
              + " |")
    for name, per in res["mask_flicker"].items():
        print(f"| masks' own flicker, {name} | "
              + " | ".join(f"{1000 * per[r]['mean']:.2f}" for r in regions) + " |")
    if "photo" in res:
        p = res["photo"]
        print(f"\nkodim12: ids {p['ids']}, largest change outside the feathered masks "
              f"{p['max_change_outside']} (of 255) over {p['outside_fraction']:.0%} of the "
              f"image; sheet {p['sheet']}")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DATA, help="test-data kit root")
    ap.add_argument("--frames", type=int, default=40, help="frames of the timed runs")
    ap.add_argument("--track-frames", type=int, default=100, help="frames tracked for ids")
    ap.add_argument("--net-frames", type=int, default=16, help="frames of the network timing")
    ap.add_argument("--size", type=int, default=640, help="longest side")
    ap.add_argument("--work", default="", help="keep the runs' files in this (new or empty) "
                    "folder instead of a temporary one")
    ap.add_argument("--no-sheet", dest="sheet", action="store_const", const="",
                    default=str(RESULTS / "people_contact_sheet.png"), help="no contact sheet")
    ap.add_argument("--out", default=str(RESULTS / "bench_people.json"),
                    help="JSON results ('' for none)")
    logging.basicConfig(level=logging.WARNING)
    return bench_people(ap.parse_args(argv))


if __name__ == "__main__":
    main()
