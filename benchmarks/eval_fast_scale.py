"""Stroke size against output resolution: the fast method's look at 720p, 1080p and 4K.

Run: ``python -m benchmarks.eval_fast_scale [--photos tubingen.jpg,golden_gate.jpg]
[--styles starry,udnie] [--sides 720,1080,2160] [--repeats 2] [--out PATH]``.

Each photo of ``shared/data/content`` is resized (Lanczos; enlarged where the photo is
smaller) to each short side of ``--sides`` and stylized by the shipped network twice:
*before* (``--style-scale 0``: the network at the full size, strokes fixed in pixels)
and *after* (the default ``--style-scale 1``: network at the working scale, guided
upsampling). The outputs are shrunk (antialiased) to each short side of ``--common``
(default: the smallest size and half of it) and compared there:

- Gram distance between resolutions: the style loss (VGG19 relu1_1..relu5_1, weights
  1/5, :func:`vidstyle.losses.style_loss`) of each larger output against the Gram
  matrices of the smallest one, relative to the smallest one's own style loss to the
  style image (so 0 = the same texture statistics, 1 = as far apart as the output is
  from the style);
- the style loss of each shrunk output to the style image at that size;
- seconds per frame of ``stylize_tensor`` for every size, wall and process CPU time (all
  threads), before and after, alternated in one process (``--repeats`` each, the median).

Writes ``benchmarks/results/fast_scale.json`` and the contact sheet
``benchmarks/results/fast_scale_sheet.png`` (per photo and style: a row before and a row
after, the sizes side by side shrunk to the same cell, and a 1:1 crop of the largest
size), and prints a table.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402

from benchmarks import RESULTS, write_json  # noqa: E402
from vidstyle.config import FastConfig, RunConfig  # noqa: E402
from vidstyle.fast.stylizer import FastStylizer, make_fast_stylizer  # noqa: E402
from vidstyle.imageops import load_image, resize, resize_longest  # noqa: E402
from vidstyle.losses import gram, style_loss  # noqa: E402
from vidstyle.styles import resolve_style  # noqa: E402
from vidstyle.tensors import to_uint8  # noqa: E402
from vidstyle.vgg import DEFAULT_LAYERS, load_vgg  # noqa: E402

DATA = Path(os.environ.get("VIDSTYLE_TEST_DATA",
                           Path(__file__).resolve().parents[1].parent / "shared" / "data"))


def at_short_side(photo: torch.Tensor, side: int) -> torch.Tensor:
    """(1, 3, H, W) -> short side ``side`` (Lanczos via PIL; enlarged when smaller)."""
    h, w = photo.shape[-2:]
    f = side / min(h, w)
    im = Image.fromarray(to_uint8(photo))
    im = im.resize((round(w * f), round(h * f)), Image.Resampling.LANCZOS)
    return torch.from_numpy(np.asarray(im).copy()).permute(2, 0, 1)[None] / 255.0


def timed(st: FastStylizer, x: torch.Tensor) -> tuple[torch.Tensor, float, float]:
    """``st.stylize_tensor(x)``, its wall seconds and the process's CPU seconds."""
    t0, c0 = time.perf_counter(), time.process_time()
    with torch.inference_mode():
        y = st.stylize_tensor(x)
    return y, time.perf_counter() - t0, time.process_time() - c0


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--photos", default="tubingen.jpg,golden_gate.jpg")
    p.add_argument("--styles", default="starry,udnie")
    p.add_argument("--sides", default="720,1080,2160")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--common", default="", help="short sides to compare at (default: the "
                   "smallest of --sides and half of it)")
    p.add_argument("--cell", type=int, default=256)
    p.add_argument("--out", default=str(RESULTS / "fast_scale"),
                   help="result path without suffix (.json and _sheet.png are added)")
    a = p.parse_args(argv)
    sides = [int(s) for s in a.sides.split(",")]
    commons = ([int(s) for s in a.common.split(",")] if a.common
               else [min(sides), min(sides) // 2])
    layers = DEFAULT_LAYERS["vgg19"]["style"]
    weights = {k: 1.0 / len(layers) for k in layers}
    vgg = load_vgg("vgg19", truncate_after=layers[-1])
    out: dict[str, Any] = {"sides": sides, "load_average_start": list(os.getloadavg()),
                           "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                           "threads": torch.get_num_threads(), "runs": []}
    sheet_rows: list[tuple[str, list[Image.Image]]] = []
    heads = " | ".join(f"rel. Gram distance at {c}" for c in commons)
    print(f"| photo | style | network | {heads} | style loss at {commons[-1]} | s per frame |\n"
          "|---|---|---|" + "---|" * len(commons) + "---|---|")
    for style in a.styles.split(","):
        kinds = {"before": 0.0, "after": 1.0}
        sts = {k: make_fast_stylizer(config=RunConfig(style=style, method="fast",
                                                      fast=FastConfig(style_scale=v)))
               for k, v in kinds.items()}
        for photo_name in a.photos.split(","):
            photo = load_image(DATA / "content" / photo_name)
            inputs = {s: at_short_side(photo, s) for s in sides}
            small = tuple(inputs[min(sides)].shape[-2:])
            times: dict[str, dict[int, list[float]]] = {k: {s: [] for s in sides} for k in kinds}
            cpu: dict[str, dict[int, list[float]]] = {k: {s: [] for s in sides} for k in kinds}
            outs: dict[str, dict[int, torch.Tensor]] = {k: {} for k in kinds}
            for _ in range(a.repeats):
                for s in sides:
                    for k in kinds:  # alternated: before, after, before, ...
                        y, dt, dc = timed(sts[k], inputs[s])
                        times[k][s].append(dt)
                        cpu[k][s].append(dc)
                        outs[k][s] = y
            run: dict[str, Any] = {"photo": photo_name, "style": style,
                                   "sizes": {s: list(inputs[s].shape[-2:]) for s in sides}}
            for k in kinds:
                run[k] = {"seconds": {s: statistics.median(times[k][s]) for s in sides},
                          "cpu_seconds": {s: statistics.median(cpu[k][s]) for s in sides}}
                for c in commons:
                    at = (c, round(c * small[1] / small[0]))
                    style_img = resize_longest(load_image(resolve_style(style).path), max(at))
                    with torch.inference_mode():
                        target = {n: gram(v) for n, v in vgg(style_img, layers).items()}
                        feats = {s: vgg(resize(outs[k][s], at), layers) for s in sides}
                        ref = {n: gram(v) for n, v in feats[min(sides)].items()}
                        to_style = {s: float(style_loss(feats[s], target, weights))
                                    for s in sides}
                        between = {s: float(style_loss(feats[s], ref, weights)) for s in sides}
                    run[k][f"at_{c}"] = {
                        "style_loss": to_style,
                        "gram_distance_to_smallest": between,
                        "relative_gram_distance": {s: between[s] / to_style[min(sides)]
                                                   for s in sides},
                    }
                big = outs[k][max(sides)]
                ch, cw = a.cell, a.cell
                y0, x0 = (big.shape[-2] - ch) // 2, (big.shape[-1] - cw) // 2
                crop = Image.fromarray(to_uint8(big[:, :, y0:y0 + ch, x0:x0 + cw]))
                cells = [Image.fromarray(to_uint8(resize(outs[k][s], small))) for s in sides]
                sheet_rows.append((f"{photo_name} {style} {k}", cells + [crop]))
            out["runs"].append(run)
            log_row(run, sides, commons)
    out["load_average_end"] = list(os.getloadavg())
    labels = [f"{s}p shrunk" for s in sides] + [f"{max(sides)}p 1:1 centre crop"]
    sheet = contact(sheet_rows, labels, a.cell)
    # 128 colours keep the sheet under 1 MB (the full-colour PNG is ~4 MB)
    sheet.quantize(colors=128, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE
                   ).save(f"{a.out}_sheet.png", optimize=True)
    write_json(f"{a.out}.json", out)
    return out


def log_row(run: dict[str, Any], sides: list[int], commons: list[int]) -> None:
    """Print one photo's table rows (markdown)."""
    for k in ("before", "after"):
        r = run[k]
        rel = " | ".join(" / ".join(f"{r[f'at_{c}']['relative_gram_distance'][s]:.3f}"
                                    for s in sides[1:]) for c in commons)
        sec = " / ".join(f"{r['seconds'][s]:.2f}" for s in sides)
        loss = " / ".join(f"{r[f'at_{commons[-1]}']['style_loss'][s]:.4g}" for s in sides)
        print(f"| {run['photo']} | {run['style']} | {k} | {rel} | {loss} | {sec} |", flush=True)


def contact(rows: list[tuple[str, list[Image.Image]]], labels: list[str],
            cell: int) -> Image.Image:
    """Rows of images fitted into cell x cell boxes, a label left of each row and the
    column labels on top."""
    pad, top, left = 4, 18, 150
    cols = max(len(r) for _, r in rows)
    sheet = Image.new("RGB", (left + cols * (cell + pad) + pad,
                              top + len(rows) * (cell + pad) + pad), "white")
    draw = ImageDraw.Draw(sheet)
    for c, label in enumerate(labels):
        draw.text((left + pad + c * (cell + pad) + 2, 3), label, fill="black")
    for r, (name, row) in enumerate(rows):
        y = top + pad + r * (cell + pad)
        draw.multiline_text((4, y + cell // 2 - 12), name.replace(" ", "\n", 1), fill="black")
        for c, im in enumerate(row):
            im = im.copy()
            im.thumbnail((cell, cell))
            sheet.paste(im, (left + pad + c * (cell + pad), y))
    return sheet


if __name__ == "__main__":
    main()
