"""Temporal consistency of the fast method: raw per-frame output vs flow-stabilized.

Run: ``python -m benchmarks.eval_fast_temporal [--frames 60] [--size 640]
[--stability 0.5,0.7,0.85] [--model fast7] [--style starry] [--style-scale 1] [--step 3]
[--clips ...] [--out fast_temporal.json]``.

``--step 3`` uses every 3rd frame of each clip (three times the motion; the stress clips of
issue 20, made here, nothing written).

For each clip (first ``--frames`` frames at longest side ``--size``) it stylizes every
frame with the fast network (runtime "auto"), raw and then stabilized the way ``vidstyle
run`` does it (:func:`vidstyle.engine.stream.stylize_sequence`: feature-level and output blend;
``--output-only`` adds rows with the output blend alone) for each stability value, and
measures

- the warping error (Lai et al. 2018, :func:`vidstyle.evaluate.warp_error`) with DIS
  ``medium`` flow computed on the ORIGINAL (working-size) frames;
- the Gram style loss (VGG19, Gatys et al. layers relu1_1..relu5_1, weights 1/5) of every
  ``--style-every``-th frame against the style image at the same longest side.

Acceptance (issue 20): with the default stability the warping error within shots (the
pairs across a detected shot cut left out: they compare unrelated pictures) is at most
40 % of the raw output's and the style loss at most 10 % higher, at 1x and 3x motion. Writes
``benchmarks/results/fast_temporal.json`` and prints a table.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import os
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402

from benchmarks import RESULTS, write_json  # noqa: E402
from vidstyle.config import FastConfig, RunConfig  # noqa: E402
from vidstyle.engine.stream import stylize_sequence  # noqa: E402
from vidstyle.evaluate import warp_error  # noqa: E402
from vidstyle.fast.stabilize import default_flow  # noqa: E402
from vidstyle.flow import make_flow  # noqa: E402
from vidstyle.media import iter_frames  # noqa: E402

DATA = Path(os.environ.get("VIDSTYLE_TEST_DATA",
                           Path(__file__).resolve().parents[1].parent / "shared" / "data"))
CLIPS = ("video/vtest_000-010s.avi", "video/bikes.mp4")


def style_losses(frames: list[torch.Tensor], style_image: torch.Tensor, every: int) -> float:
    """Mean Gram style loss (VGG19, 5 layers, weights 1/5) of every ``every``-th frame."""
    from vidstyle.losses import gram, style_loss
    from vidstyle.vgg import DEFAULT_LAYERS, load_vgg

    layers = DEFAULT_LAYERS["vgg19"]["style"]
    net = load_vgg("vgg19", truncate_after=layers[-1])
    with torch.inference_mode():
        targets = {k: gram(v) for k, v in net(style_image, layers).items()}
        weights = {k: 1.0 / len(layers) for k in layers}
        vals = [float(style_loss(net(f, layers), targets, weights)) for f in frames[::every]]
    return sum(vals) / len(vals)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--frames", type=int, default=60)
    p.add_argument("--size", type=int, default=640)
    p.add_argument("--stability", default="0.5,0.7,0.85",
                   help="comma list; the FastConfig default is always included")
    p.add_argument("--model", default=None, help="model file or shipped name (default: fast7)")
    p.add_argument("--style", default="starry")
    p.add_argument("--style-scale", type=float, default=FastConfig().style_scale,
                   help="--style-scale of the runs (the network's working scale; frames "
                   "at --size 1280 with 2 run it at 640x360 and upsample)")
    p.add_argument("--style-every", type=int, default=6)
    p.add_argument("--step", type=int, default=1, help="use every STEP-th frame")
    p.add_argument("--softness", default=None,
                   help="comma list of flow-confidence softness values to compare (default: "
                        "the module's CONFIDENCE_SOFTNESS only)")
    p.add_argument("--clips", nargs="+", default=list(CLIPS), help="paths under the kit")
    p.add_argument("--out", type=Path, default=RESULTS / "fast_temporal.json")
    p.add_argument("--output-only", action="store_true",
                   help="also measure the output-only blend (no feature-level blending)")
    a = p.parse_args(argv)
    from vidstyle.fast.stylizer import make_fast_stylizer
    from vidstyle.imageops import load_image, resize_longest
    from vidstyle.styles import resolve_style

    default_s = FastConfig().stability
    values = sorted({float(v) for v in a.stability.split(",") if v} | {default_s})
    cfg = RunConfig(style=a.style, method="fast",
                    fast=FastConfig(model=a.model, size=a.size, style_scale=a.style_scale))
    st = make_fast_stylizer(config=cfg, device="cpu")
    style_img = resize_longest(load_image(resolve_style(a.style).path), a.size)
    judge = make_flow("dis", preset="medium")
    out: dict[str, Any] = {"model": a.model or "fast7 (shipped)", "style": a.style,
                           "style_scale": a.style_scale,
                           "frames": a.frames, "step": a.step, "size": a.size,
                           "default_stability": default_s,
                           "load_average": list(os.getloadavg()), "clips": {}}
    for clip in a.clips:
        t0 = time.perf_counter()
        picked = itertools.islice(iter_frames(DATA / clip), 0, None, a.step)
        src = [st.prepare(f.rgb) for f in itertools.islice(picked, a.frames)]
        raw = [st.stylize_tensor(x) for x in src]
        net_s = time.perf_counter() - t0
        raw_we = warp_error(raw, src, flow=judge)
        rows = {"raw": {"warp_error": raw_we.mean, "per_frame": list(raw_we.per_frame),
                        "style_loss": style_losses(raw, style_img, a.style_every)}}
        shot_cuts: list[int] = []
        softs = [None] if a.softness is None else [float(v) for v in a.softness.split(",")]
        for s, features, soft in itertools.product(values, (True, False), softs):
            if not features and not a.output_only:
                continue
            st.config = dataclasses.replace(
                st.config, fast=dataclasses.replace(st.config.fast, stability=s))
            st.reset()
            if soft is not None and st.stabilizer is not None:
                st.stabilizer.softness = soft
            if not features:
                st._first = False  # feature blend decided: off (output blend only)
            t1 = time.perf_counter()
            frames, cuts = stylize_sequence(st, src, flow=default_flow())
            stab = st.stabilizer
            assert stab is not None
            key = f"s={s:g}" + ("" if features else " output only") + (
                "" if soft is None else f" softness {soft:g}")
            we = warp_error(frames, src, flow=judge)
            shot_cuts = cuts
            rows[key] = {"warp_error": we.mean, "per_frame": list(we.per_frame),
                         "style_loss": style_losses(frames, style_img, a.style_every),
                         "cuts": cuts, "feature_blend": stab.feature_blend,
                         "s_per_frame": (time.perf_counter() - t1) / len(src)}
        base = rows["raw"]
        for r in rows.values():
            # within shots: the pairs (t-1, t) of a frame t that starts a new shot compare
            # unrelated pictures (no method should blend there); left out
            inside = [e for t, e in enumerate(r["per_frame"])
                      if t + 1 not in shot_cuts and e == e]
            r["warp_error_in_shots"] = sum(inside) / len(inside)
        for r in rows.values():
            r["warp_ratio"] = r["warp_error"] / base["warp_error"]
            r["warp_ratio_in_shots"] = r["warp_error_in_shots"] / base["warp_error_in_shots"]
            r["style_ratio"] = r["style_loss"] / base["style_loss"]
        out["clips"][clip] = {"size": list(src[0].shape[-2:]), "stylize_s": net_s,
                              "network_size": list(st.network_size(tuple(src[0].shape[-2:]))),
                              "cuts": shot_cuts,
                              "runtime": st.runtime_choice.name if st.runtime_choice else "",
                              "rows": rows}
    d = out["clips"]
    key = f"s={default_s:g}"
    ok = all(c["rows"][key]["warp_ratio_in_shots"] <= 0.4 and c["rows"][key]["style_ratio"]
             <= 1.1 for c in d.values()) if all(key in c["rows"] for c in d.values()) else None
    out["acceptance_default"] = ok
    _print(out)
    write_json(a.out, out)
    return out


def _print(out: dict[str, Any]) -> None:
    print(f"## fast method, temporal ({out['model']}, style {out['style']}, "
          f"{out['frames']} frames, every {out['step']}, longest side {out['size']})\n")
    print("| clip | output | warping error | vs raw | in shots | vs raw | style loss | vs raw |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for clip, c in out["clips"].items():
        for name, r in c["rows"].items():
            print(f"| {Path(clip).name} | {name} | {r['warp_error']:.5f} | "
                  f"{r['warp_ratio']:.2f} | {r['warp_error_in_shots']:.5f} | "
                  f"{r['warp_ratio_in_shots']:.2f} | {r['style_loss']:.4g} | "
                  f"{r['style_ratio']:.3f} |")
        print(f"| {Path(clip).name} | cuts (new shots) at {c['cuts']} | | | | | | |")
    verdict = {True: "met", False: "NOT met", None: "not measured"}[out["acceptance_default"]]
    print(f"\ndefault stability {out['default_stability']}: acceptance (warp <= 0.40 x raw, "
          f"style <= 1.10 x raw) {verdict}")


if __name__ == "__main__":
    main()
