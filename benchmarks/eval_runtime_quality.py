"""Whether a fast runtime keeps the output: difference from eager float32 and style loss.

``python -m benchmarks.eval_runtime_quality [--runtimes ort,ort-int8] [--size 384]``

For each style of the model and each held-out photo (center-cropped to 3:2 and resized
to ``--size`` x 2/3 ``--size``, one size so that int8 calibrates once): the output of
every runtime named, its max / mean absolute difference from eager float32 (RGB in
[0, 1]), and its style loss (VGG19 Gram, the optimization's layers and weights, as
``benchmarks/eval_fast_quality.py``) relative to eager's. The int8 gate of issue 18: max
difference <= :data:`MAX_DIFF`, mean <= :data:`MEAN_DIFF` and the style loss of every style
(mean over the photos) within :data:`STYLE_LOSS_TOLERANCE` of eager's. Writes
``results/runtime_quality.json``.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from benchmarks import RESULTS, write_json
from vidstyle.config import OptimConfig
from vidstyle.fast.runtimes import build_runtime
from vidstyle.fast.stylizer import resolve_model
from vidstyle.imageops import load_image
from vidstyle.optim.image import GatysStylizer
from vidstyle.styles import resolve_style
from vidstyle.vgg import DEFAULT_LAYERS, load_vgg

DATA = Path(os.environ.get("VIDSTYLE_TEST_DATA",
                           Path(__file__).resolve().parents[1].parent / "shared" / "data"))
#: The gate: max and mean absolute difference from eager float32, RGB in [0, 1].
MAX_DIFF = 0.1
MEAN_DIFF = 0.01
#: The gate: |style loss / eager's - 1| per style (mean over the photos).
STYLE_LOSS_TOLERANCE = 0.05


def _photo(path: Path, size: int) -> torch.Tensor:
    x = load_image(path)
    h, w = x.shape[-2:]
    ch, cw = (h, round(h * 1.5)) if w >= 1.5 * h else (round(w / 1.5), w)
    y0, x0 = (h - ch) // 2, (w - cw) // 2
    x = x[..., y0 : y0 + ch, x0 : x0 + cw]
    return F.interpolate(x, size=(round(size * 2 / 3), size), mode="area")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runtimes", default="ort,ort-int8")
    p.add_argument("--model", default=None)
    p.add_argument("--size", type=int, default=384)
    p.add_argument("--photos", default="chicago,golden_gate")
    p.add_argument("--styles", default="", help="comma list (default: all of the model)")
    p.add_argument("--json", default=str(RESULTS / "runtime_quality.json"))
    a = p.parse_args(argv)
    model = resolve_model(a.model)[0]
    net = model.net.float().eval()
    eager = build_runtime("eager", net)
    names = [n for n in a.runtimes.split(",") if n]
    rts = {n: build_runtime(n, net) for n in names}
    vgg = load_vgg("vgg19", device="cpu", truncate_after="relu5_1")
    layers = DEFAULT_LAYERS["vgg19"]
    photos = {n: _photo(DATA / "content" / f"{n}.jpg", a.size) for n in a.photos.split(",")}
    styles = [s for s in a.styles.split(",") if s] or list(model.style_names)
    res: dict[str, Any] = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                           "size": list(next(iter(photos.values())).shape[-2:]),
                           "gate": {"max_diff": MAX_DIFF, "mean_diff": MEAN_DIFF,
                                    "style_loss_tolerance": STYLE_LOSS_TOLERANCE},
                           "runtimes": {n: {"styles": {}} for n in names}}
    for s in styles:
        g = GatysStylizer(net=vgg, style_image=load_image(resolve_style(s).path),
                          config=OptimConfig(size=a.size), style_layers=layers["style"],
                          content_layers=layers["content"], device="cpu")
        w = torch.zeros(1, len(model.style_names))
        w[0, model.style_index(s)] = 1.0
        for n, rt in rts.items():
            rows = []
            for pn, x in photos.items():
                ref = eager(x, w)
                out = rt(x, w)
                d = (out - ref).abs()
                le, lr = g.style_loss_of(ref), g.style_loss_of(out)
                rows.append({"photo": pn, "max_diff": float(d.max()),
                             "mean_diff": float(d.mean()), "style_loss_eager": le,
                             "style_loss": lr, "ratio": lr / le})
                print(s, n, pn, {k: round(v, 4) for k, v in rows[-1].items()
                                 if isinstance(v, float)}, flush=True)
            res["runtimes"][n]["styles"][s] = {
                "photos": rows, "ratio": sum(r["ratio"] for r in rows) / len(rows)}
    for n in names:
        st = res["runtimes"][n]["styles"]
        rows = [r for v in st.values() for r in v["photos"]]
        mx = max(r["max_diff"] for r in rows)
        mean = sum(r["mean_diff"] for r in rows) / len(rows)
        worst = max(abs(v["ratio"] - 1.0) for v in st.values())
        res["runtimes"][n].update(max_diff=mx, mean_diff=mean, worst_style_loss_change=worst,
                                  passes=bool(mx <= MAX_DIFF and mean <= MEAN_DIFF
                                              and worst <= STYLE_LOSS_TOLERANCE))
        print(f"{n}: max diff {mx:.4f}, mean {mean:.5f}, worst style-loss change "
              f"{worst:+.3f} -> gate {'passed' if res['runtimes'][n]['passes'] else 'failed'}")
    write_json(a.json, res)
    return res


if __name__ == "__main__":
    main()
