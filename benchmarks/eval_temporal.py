"""Temporal consistency of optimization-based video stylization: none / short / long+passes.

Run: ``python -m benchmarks.eval_temporal [--frames 20] [--size 128] [--iters 20] ...``.

For each clip (first ``--frames`` frames) and each mode, with the real VGG19, the same
size, iterations and seed, it computes the warping error (Lai et al. 2018,
:func:`vidstyle.evaluate.warp_error` with DIS flow on the working-size source frames) and
the Gram style loss of every stylized frame, then prints a Markdown table and writes

- ``<out>/temporal_warp_error.png``: per-frame warping error, one panel per clip, one line
  per mode;
- ``<out>/temporal_contact_sheet.png``: source and stylized frames (rows: source, then the
  modes; columns: a few frames), one block per clip;
- ``<out>/temporal_results.json``: the numbers.

Acceptance targets (issue): short <= 50 % of none's warping error, long+passes <= short,
mean style loss per frame at most 15 % above none's; issue 20 adds the stress clips with
three times the motion (``--step 3``: every 3rd frame, made here, nothing written) and the
content drift (mean squared content-layer VGG feature distance of each stylized frame to
its source) at most 1.25x none's.

The default clips (vtest, bikes) are for internal evaluation only: do not publish these
pictures (see ``benchmarks/results/README.md``).
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import math
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from benchmarks import RESULTS, write_json
from vidstyle.config import OptimConfig, RunConfig, TemporalConfig
from vidstyle.contracts import frame_unit
from vidstyle.engine.clip import run_clip
from vidstyle.evaluate import warp_error
from vidstyle.flow import flow_from_config, make_flow
from vidstyle.imageops import load_image
from vidstyle.media import iter_frames
from vidstyle.optim.frame import load_loss_net
from vidstyle.optim.video import TemporalOptimStylizer
from vidstyle.tensors import to_tensor
from vidstyle.workdir import WorkDir, load_png

DEFAULT_DATA = Path(os.environ.get("VIDSTYLE_TEST_DATA", Path(__file__).resolve().parents[1].parent
                                   / "shared" / "data"))
CLIPS = ("video/vtest_000-010s.avi", "video/bikes.mp4")
MODE_COLOURS = {"none": (214, 39, 40), "short": (31, 119, 180), "long": (44, 160, 44)}


def clip_frames(path: Path, n: int, start: int = 0,
                step: int = 1) -> Callable[[], Iterator[Any]]:
    """A ``frames`` callable for ``run_clip``: ``n`` frames of ``path`` from ``start``,
    every ``step``-th (3: the stress clip with three times the motion, made here, nothing
    written), renumbered from 0."""

    def frames() -> Iterator[Any]:
        picked = itertools.islice(iter_frames(path, start=start), 0, None, step)
        for k, f in enumerate(itertools.islice(picked, n)):
            yield dataclasses.replace(f, index=k)

    return frames


def content_distance(stylizer: TemporalOptimStylizer, out: np.ndarray, src: np.ndarray) -> float:
    """Content drift: the mean squared difference of the loss network's content-layer
    features (relu4_2 for VGG19) of a stylized frame and its source frame, (H, W, 3) uint8
    each."""
    g = stylizer.gatys
    with torch.no_grad():
        a = g.net(to_tensor(out).to(g.device), g.content_layers)
        b = g.net(to_tensor(src).to(g.device), g.content_layers)
    return float(np.mean([float((a[k] - b[k]).pow(2).mean()) for k in g.content_layers]))


def load_net(device: str = "cpu") -> tuple[Any, tuple[str, ...], tuple[str, ...]]:
    """The real VGG19 loss network with Gatys et al.'s layers."""
    return load_loss_net(RunConfig(), torch.device(device))


def mode_config(mode: str, base: RunConfig, passes: int) -> RunConfig:
    """``base`` with temporal mode ``mode`` ("none", "short" or "long" with ``passes``)."""
    t = dataclasses.replace(base.temporal, mode=mode,
                            passes=passes if mode == "long" else 1)
    return dataclasses.replace(base, temporal=t)


def stylize_clip(
    stylizer: TemporalOptimStylizer,
    frames: Callable[[], Iterator[Any]],
    work: WorkDir,
    name: str,
    n: int,
    progress: Callable[[Any], None] | None = None,
) -> tuple[list[np.ndarray], list[np.ndarray], float]:
    """Run ``stylizer`` on a clip in ``work`` (stage ``name``); returns (stylized frames,
    working-size source frames, seconds)."""
    stage = work.stage(name, stylizer.config.fingerprint() + stylizer.fingerprint())
    t0 = time.perf_counter()
    run_clip(stylizer, frames=frames, stage=stage, work=work, n_frames=n,
             progress=progress or (lambda ev: None), flow=flow_from_config(stylizer.config.flow))
    seconds = time.perf_counter() - t0
    count = sum(1 for _ in stage.dir.glob("frame_*.png"))
    out = [load_png(stage.path(frame_unit(i))) for i in range(count)]
    src = [load_png(work.root / "decode" / frame_unit(i)) for i in range(count)]
    return out, src, seconds


# ------------------------------------------------------------------------- drawing


def multi_line_plot(
    panels: Sequence[tuple[str, dict[str, Sequence[float]]]],
    *,
    ylabel: str,
    xlabel: str,
    panel_size: tuple[int, int] = (760, 300),
) -> Image.Image:
    """Panels stacked vertically, each with one line per series (legend top right)."""
    from vidstyle.evaluate import _nice_ticks

    w, h = panel_size
    img = Image.new("RGB", (w, h * len(panels)), "white")
    d = ImageDraw.Draw(img)
    font = ImageFont.load_default()
    for p, (title, series) in enumerate(panels):
        oy = p * h
        x0, x1, y0, y1 = 70, w - 20, oy + 30, oy + h - 45
        vals = [v for s in series.values() for v in s if math.isfinite(v)]
        hi = max(vals) if vals else 1.0
        yt = _nice_ticks(0.0, hi)
        lo, hi = yt[0], yt[-1]
        n = max(max((len(s) for s in series.values()), default=2), 2)
        xt = [t for t in _nice_ticks(0, n - 1, integer=True) if t <= n - 1]

        def px(i: float, n: int = n, x0: int = x0, x1: int = x1) -> float:
            return x0 + (x1 - x0) * i / (n - 1)

        def py(v: float, lo: float = lo, hi: float = hi, y0: int = y0, y1: int = y1) -> float:
            return y1 - (y1 - y0) * (v - lo) / (hi - lo)

        for t in yt:
            d.line([(x0, py(t)), (x1, py(t))], fill=(225, 225, 225))
            lab = f"{t:.3g}"
            d.text((x0 - 8 - d.textlength(lab, font=font), py(t) - 5), lab, fill="black",
                   font=font)
        for t in xt:
            d.line([(px(t), y1), (px(t), y1 + 4)], fill="black")
            lab = f"{t:g}"
            d.text((px(t) - d.textlength(lab, font=font) / 2, y1 + 7), lab, fill="black",
                   font=font)
        d.rectangle([x0, y0, x1, y1], outline="black")
        for k, (name, s) in enumerate(series.items()):
            colour = MODE_COLOURS.get(name, (0, 0, 0))
            pts = [(px(i), py(v)) for i, v in enumerate(s) if math.isfinite(v)]
            if len(pts) > 1:
                d.line(pts, fill=colour, width=2)
            for x, y in pts:
                d.ellipse([x - 2, y - 2, x + 2, y + 2], fill=colour)
            lx, ly = x1 - 150, y0 + 8 + 14 * k
            d.line([(lx, ly + 6), (lx + 20, ly + 6)], fill=colour, width=2)
            d.text((lx + 26, ly), name, fill="black", font=font)
        d.text(((w - d.textlength(title, font=font)) / 2, oy + 8), title, fill="black",
               font=font)
        d.text(((x0 + x1 - d.textlength(xlabel, font=font)) / 2, oy + h - 18), xlabel,
               fill="black", font=font)
        d.text((8, y0 - 20), ylabel, fill="black", font=font)
    return img


def contact_sheet(
    blocks: Sequence[tuple[str, Sequence[tuple[str, Sequence[np.ndarray]]]]],
    columns: Sequence[int],
    *,
    thumb: int = 160,
) -> Image.Image:
    """Blocks (one per clip) of rows (label, frames); ``columns`` are the frame indices."""
    font = ImageFont.load_default()
    label_w, head = 90, 18
    rows_img: list[Image.Image] = []
    for title, rows in blocks:
        first = rows[0][1][0]
        th = max(1, round(first.shape[0] * thumb / first.shape[1]))
        block = Image.new("RGB", (label_w + thumb * len(columns), head + th * len(rows)),
                          "white")
        d = ImageDraw.Draw(block)
        d.text((4, 3), title, fill="black", font=font)
        for c, idx in enumerate(columns):
            d.text((label_w + c * thumb + 4, 3), f"frame {idx}", fill="black", font=font)
        for r, (label, frames) in enumerate(rows):
            d.text((4, head + r * th + th // 2 - 5), label, fill="black", font=font)
            for c, idx in enumerate(columns):
                if idx < len(frames):
                    im = Image.fromarray(frames[idx]).resize((thumb, th), Image.BILINEAR)
                    block.paste(im, (label_w + c * thumb, head + r * th))
        rows_img.append(block)
    w = max(b.width for b in rows_img)
    sheet = Image.new("RGB", (w, sum(b.height + 6 for b in rows_img)), "white")
    y = 0
    for b in rows_img:
        sheet.paste(b, (0, y))
        y += b.height + 6
    return sheet


def _save(img: Image.Image, path: Path) -> None:
    from vidstyle.fileio import atomic_path

    with atomic_path(path) as tmp:
        img.save(tmp, format="PNG")


# ------------------------------------------------------------------------- main


def evaluate(
    *,
    data_dir: Path = DEFAULT_DATA,
    clips: Sequence[str] = CLIPS,
    frames: int = 20,
    size: int = 160,
    iters: int = 24,
    passes: int = 2,
    style: str = "styles/starry_night.jpg",
    temporal: TemporalConfig | None = None,
    out_dir: Path | None = RESULTS,
    work_root: Path | None = None,
    columns: Sequence[int] | None = None,
    step: int = 1,
    modes: Sequence[str] = ("none", "short", "long"),
    softness: float | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Stylize each clip in the three modes and measure; returns the results dict."""
    net, style_layers, content_layers = load_net()
    base = RunConfig(optim=OptimConfig(size=size, iters=iters),
                     temporal=temporal or TemporalConfig())
    flow = make_flow("dis")
    tmp = None
    if work_root is None:
        tmp = tempfile.TemporaryDirectory(prefix="vidstyle-eval-")
        work_root = Path(tmp.name)
    columns = list(columns or sorted({0, frames // 4, frames // 2, (3 * frames) // 4,
                                      frames - 1}))
    results: dict[str, Any] = {
        "settings": {"frames": frames, "step": step, "softness": softness, "size": size,
                     "iters": iters,
                     "passes": passes,
                     "style": style, "temporal": dataclasses.asdict(base.temporal),
                     "optim_seed": base.optim.seed, "threads": torch.get_num_threads()},
        "clips": {},
    }
    sheet_blocks = []
    plot_panels = []
    for clip in clips:
        path = Path(data_dir) / clip
        work = WorkDir(work_root / Path(clip).stem)
        rows: list[tuple[str, list[np.ndarray]]] = []
        per_clip: dict[str, Any] = {}
        for mode in modes:
            cfg = mode_config(mode, base, passes)
            st = TemporalOptimStylizer(
                config=cfg, device="cpu", net=net, style_path=str(Path(data_dir) / style),
                style_image=load_image(Path(data_dir) / style),
                style_layers=style_layers, content_layers=content_layers,
            )
            stage = f"stylize_{mode}"
            if softness is not None and mode != "none":
                st.softness = softness
                stage += f"_soft{softness:g}"
            out, src, seconds = stylize_clip(st, clip_frames(path, frames, step=step), work,
                                             stage, frames)
            we = warp_error(out, src, flow=flow)
            style_losses = [st.gatys.style_loss_of(to_tensor(o)) for o in out]
            drift = float(np.mean([content_distance(st, o, s) for o, s in zip(out, src,
                                                                               strict=True)]))
            label = mode if mode != "long" else f"long+{passes}p"
            per_clip[mode] = {
                "label": label,
                "warp_error": we.mean,
                "warp_error_per_frame": list(we.per_frame),
                "style_loss": float(np.mean(style_losses)),
                "style_loss_per_frame": style_losses,
                "content_distance": drift,
                "seconds": seconds,
                "seconds_per_frame": seconds / max(1, len(out)),
                "stats": dict(st.stats),
                "cuts": sorted(i for i, c in st.cut_before.items() if c),
            }
            log(f"{Path(clip).name} {label}: warp {we.mean:.5f} style {np.mean(style_losses):.4g}"
                f" content {drift:.4g} ({seconds:.0f} s)")
            if not rows:
                rows.append(("source", src))
            rows.append((label, out))
        none = per_clip["none"]
        for mode in [m for m in modes if m != "none"]:
            r = per_clip[mode]
            r["warp_ratio_vs_none"] = r["warp_error"] / none["warp_error"]
            r["style_ratio_vs_none"] = r["style_loss"] / none["style_loss"]
            r["content_ratio_vs_none"] = r["content_distance"] / none["content_distance"]
        others = [per_clip[m] for m in modes if m != "none"]
        per_clip["targets"] = {
            "short_le_half_none": per_clip["short"]["warp_ratio_vs_none"] <= 0.5
            if "short" in per_clip else None,
            "long_le_short": per_clip["long"]["warp_error"] <= per_clip["short"]["warp_error"]
            if "long" in per_clip and "short" in per_clip else None,
            "style_rise_le_15pct": max(r["style_ratio_vs_none"] for r in others) <= 1.15
            if others else None,
            "content_drift_le_1_25": max(r["content_ratio_vs_none"] for r in others) <= 1.25
            if others else None,
        }
        results["clips"][Path(clip).name] = per_clip
        sheet_blocks.append((Path(clip).name, rows))
        plot_panels.append((f"{Path(clip).name}: warping error per frame pair",
                            {per_clip[m]["label"]: per_clip[m]["warp_error_per_frame"]
                             for m in modes}))
    log("")
    log(table(results))
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        colours = {f"long+{passes}p": MODE_COLOURS["long"]}
        MODE_COLOURS.update(colours)
        _save(multi_line_plot(plot_panels, ylabel="E_t (RGB [0,1], squared)",
                              xlabel="frame pair (t, t+1)"), out_dir / "temporal_warp_error.png")
        _save(contact_sheet(sheet_blocks, columns), out_dir / "temporal_contact_sheet.png")
        write_json(out_dir / "temporal_results.json", results)
    if tmp is not None:
        tmp.cleanup()
    return results


def table(results: dict[str, Any]) -> str:
    """Markdown table of the results dict of :func:`evaluate`."""
    lines = ["| clip | mode | warp error | vs none | style loss | vs none | content drift "
             "| vs none | s/frame |", "|---|---|---|---|---|---|---|---|---|"]

    def ratio(v: float | None) -> str:
        return "-" if v is None else f"{v:.2f}"

    for clip, per in results["clips"].items():
        for mode in ("none", "short", "long"):
            if mode not in per:
                continue
            r = per[mode]
            lines.append(
                f"| {clip} | {r['label']} | {r['warp_error']:.5f} | "
                f"{ratio(r.get('warp_ratio_vs_none'))} | {r['style_loss']:.4g} | "
                f"{ratio(r.get('style_ratio_vs_none'))} | {r['content_distance']:.4g} | "
                f"{ratio(r.get('content_ratio_vs_none'))} | {r['seconds_per_frame']:.1f} |"
            )
        t = per["targets"]
        lines.append(f"| {clip} | targets | short<=0.5 none: {t['short_le_half_none']} | "
                     f"long<=short: {t['long_le_short']} | style rise<=15%: "
                     f"{t['style_rise_le_15pct']} | content drift<=1.25: "
                     f"{t['content_drift_le_1_25']} | | | |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--clips", nargs="+", default=list(CLIPS))
    ap.add_argument("--frames", type=int, default=20)
    ap.add_argument("--step", type=int, default=1,
                    help="use every STEP-th frame (3: three times the motion)")
    ap.add_argument("--modes", default="none,short,long", help="comma list, none first")
    ap.add_argument("--softness", type=float, default=None,
                    help="softness of the temporal weight c (default: the module's)")
    ap.add_argument("--size", type=int, default=160)
    ap.add_argument("--iters", type=int, default=24)
    ap.add_argument("--passes", type=int, default=2)
    ap.add_argument("--style", default="styles/starry_night.jpg")
    ap.add_argument("--temporal-weight", type=float, default=None)
    ap.add_argument("--blend-delta", type=float, default=None)
    ap.add_argument("--later-frame-iters", type=float, default=None)
    ap.add_argument("--long-term", default=None, help="comma-separated offsets, e.g. 1,10,20,40")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch intra-op threads (1 is fastest on a busy 2-core machine)")
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--work", type=Path, default=None, help="keep work dirs here")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    t = TemporalConfig()
    changes: dict[str, Any] = {}
    if a.temporal_weight is not None:
        changes["temporal_weight"] = a.temporal_weight
    if a.blend_delta is not None:
        changes["blend_delta"] = a.blend_delta
    if a.later_frame_iters is not None:
        changes["later_frame_iters"] = a.later_frame_iters
    if a.long_term:
        changes["long_term"] = tuple(int(v) for v in a.long_term.split(","))
    t = dataclasses.replace(t, **changes)
    t0 = time.perf_counter()
    evaluate(data_dir=a.data, clips=a.clips, frames=a.frames, size=a.size, iters=a.iters,
             passes=a.passes, style=a.style, temporal=t, out_dir=a.out, work_root=a.work,
             step=a.step, modes=tuple(a.modes.split(",")), softness=a.softness)
    print(f"\ntotal {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
