"""What a training run reports: progress records and lines, the result, the loss curves
and the sample sheet (pictures drawn with PIL only: no matplotlib)."""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw

from vidstyle.fast.adjustable import AdjustableStyleNet
from vidstyle.fast.net import StyleNet
from vidstyle.fileio import atomic_path


@dataclass(frozen=True)
class TrainProgress:
    """One progress report: interval means of the loss terms (already weighted)."""

    step: int
    total_steps: int
    losses: dict[str, float]
    elapsed_s: float


@dataclass(frozen=True)
class TrainResult:
    """What a finished (or time-limited) run wrote."""

    model_path: Path
    model_sha256: str
    checkpoint_path: Path
    log_path: Path
    curves_path: Path | None
    samples_path: Path | None
    steps: int
    stopped_early: bool
    style_names: tuple[str, ...]
    #: last logged interval means of the weighted loss terms
    final_losses: dict[str, float]
    #: per style: mean unweighted style/content loss on the held-out images
    eval_losses: dict[str, dict[str, float]]
    elapsed_s: float


def format_progress(p: TrainProgress) -> str:
    """``step 20/100 content=1.2 style=3.4 tv=0 loss=4.6 (12s)``: one progress line."""
    losses = " ".join(f"{k}={v:.4g}" for k, v in p.losses.items())
    return f"step {p.step}/{p.total_steps} {losses} ({p.elapsed_s:.0f}s)"


def console_progress() -> Callable[[TrainProgress], None]:
    """Progress for ``python -m vidstyle.fast.train``: a tqdm bar on a terminal when tqdm
    is importable, else one :func:`format_progress` line per report on stderr."""
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover - the device image may lack it
        tqdm = None
    state: dict[str, Any] = {}

    def report(p: TrainProgress) -> None:
        if tqdm is None or not sys.stderr.isatty():
            print(format_progress(p), file=sys.stderr, flush=True)
            return
        bar = state.get("bar")
        if bar is None:
            bar = state["bar"] = tqdm(total=p.total_steps, initial=0, unit="step")
        bar.update(p.step - bar.n)
        bar.set_postfix_str(" ".join(f"{k}={v:.4g}" for k, v in p.losses.items()))

    return report


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` through a temporary file."""
    with atomic_path(path, suffix=".tmp") as tmp:
        tmp.write_text(text, encoding="utf-8")


def _atomic_save_png(im: Image.Image, path: Path) -> None:
    with atomic_path(path, suffix=".tmp") as tmp:
        im.save(tmp, format="PNG")


def plot_curves(log_path: Path, out: Path, width: int = 900, height: int = 500) -> None:
    """log10 of each loss term against the step, drawn with PIL."""
    recs = []
    if log_path.exists():
        for line in log_path.read_text(encoding="utf-8").splitlines():
            try:
                recs.append(json.loads(line))
            except ValueError:
                continue
    if len(recs) < 2:
        return
    keys = [k for k in ("loss", "content", "style", "tv") if k in recs[0]]
    colors = {"loss": (0, 0, 0), "content": (31, 119, 180), "style": (214, 39, 40),
              "tv": (44, 160, 44)}
    steps = [r["step"] for r in recs]
    series = {
        k: [math.log10(r[k]) if r.get(k, 0) > 0 else None for r in recs] for k in keys
    }
    vals = [v for s in series.values() for v in s if v is not None]
    lo, hi = math.floor(min(vals)), math.ceil(max(vals))
    hi = max(hi, lo + 1)
    im = Image.new("RGB", (width, height), "white")
    d = ImageDraw.Draw(im)
    left, right, top, bottom = 60, width - 20, 20, height - 40
    d.rectangle([left, top, right, bottom], outline=(0, 0, 0))

    def px(s: float, v: float) -> tuple[float, float]:
        x = left + (s - steps[0]) / max(1, steps[-1] - steps[0]) * (right - left)
        y = bottom - (v - lo) / (hi - lo) * (bottom - top)
        return x, y

    for e in range(lo, hi + 1):
        _, y = px(steps[0], e)
        d.line([left, y, right, y], fill=(225, 225, 225))
        d.text((5, y - 6), f"1e{e}", fill=(0, 0, 0))
    for i in range(5):
        s = steps[0] + (steps[-1] - steps[0]) * i / 4
        x, _ = px(s, lo)
        d.text((x - 15, bottom + 5), f"{int(s)}", fill=(0, 0, 0))
    d.text(((left + right) // 2 - 15, bottom + 22), "step", fill=(0, 0, 0))
    for j, k in enumerate(keys):
        pts = [px(s, v) for s, v in zip(steps, series[k], strict=True) if v is not None]
        if len(pts) > 1:
            d.line(pts, fill=colors[k], width=2)
        d.text((right - 120, top + 8 + 14 * j), f"{k} (log10)", fill=colors[k])
    out.parent.mkdir(parents=True, exist_ok=True)
    _atomic_save_png(im, out)


@torch.no_grad()
def sample_sheet(
    net: StyleNet | AdjustableStyleNet,
    images: Sequence[torch.Tensor],
    style_names: Sequence[str],
    out: Path,
    device: torch.device,
    cell: tuple[int, int] = (240, 320),
) -> None:
    """Grid: one row per held-out image; the input, then each style's output.

    Every cell is a (height, width) = ``cell`` box with the image fitted inside on white.
    """
    ch, cw = cell
    label_h = 16
    cols = 1 + net.num_styles
    sheet = Image.new("RGB", (cols * cw, label_h + len(images) * ch), "white")
    d = ImageDraw.Draw(sheet)
    for j, name in enumerate(["input", *style_names]):
        d.text((j * cw + 4, 2), name, fill=(0, 0, 0))
    for i, im in enumerate(images):
        x = im.to(device)
        cells = [x]
        for s in range(net.num_styles):
            w = F.one_hot(torch.tensor([s], device=device), net.num_styles).float()
            cells.append(net(x, w))
        h, w_ = x.shape[-2:]
        scale = min(ch / h, cw / w_)
        size = (max(1, round(h * scale)), max(1, round(w_ * scale)))
        for j, c in enumerate(cells):
            c = F.interpolate(c.float(), size=size, mode="bilinear", antialias=True,
                              align_corners=False)
            arr = c[0].clamp(0, 1).mul(255).round().byte().permute(1, 2, 0).cpu().numpy()
            top = label_h + i * ch + (ch - size[0]) // 2
            left = j * cw + (cw - size[1]) // 2
            sheet.paste(Image.fromarray(arr), (left, top))
    _atomic_save_png(sheet, out)
