"""Acceptance of an adjustable model (per-layer style weights as inputs), per style.

On the held-out photos (never trained on; all ten of the kit by default), with VGG19 Gram
losses as in training (style image at long side 512, ``vidstyle.optim``'s layer weights
1/5 for the "style loss" total):

1. sweep: for each style layer l, alpha_l in {0, 0.25, 0.5, 0.75, 1} with the other layers
   at ``--base`` (0.5, the middle of the trained range, or ``default``): every layer's
   style loss of the output. Pass: layer l's loss falls monotonically (a rise of at most
   ``--tol`` relative between neighbours counts as noise) and falls more, relatively, than
   the mean of the other layers' (``drop`` = 1 - loss(alpha=1) / loss(alpha=0)).
2. variations: K seeded random alphas (the ``--variations`` draw): mean absolute
   difference of every pair of outputs (0..255) above ``--min-diff``, and each output's
   style loss within 2x of the default alpha's.
3. default vs plain: the default alpha's style and content loss against the plain model
   the adjustable one started from (``--plain``), same photos.
4. overhead at 640x360: the bake (conditioner once per look) and the per-frame time of the
   baked network against the plain one, alternated in one process.

Run: ``python -m benchmarks.eval_adjustable --model weights/checkpoints/adjustable/model.pt
--json benchmarks/results/adjustable.json``.
"""

from __future__ import annotations

import argparse
import itertools
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from benchmarks import write_json  # noqa: E402
from vidstyle.fast.adjustable import AdjustableStyleNet  # noqa: E402
from vidstyle.fast.inference import InferenceNet  # noqa: E402
from vidstyle.fast.looks import variation_weights  # noqa: E402
from vidstyle.fast.net import one_hot_styles  # noqa: E402
from vidstyle.fast.stylizer import resolve_model  # noqa: E402
from vidstyle.fast.train.adjustable import per_layer_style  # noqa: E402
from vidstyle.fast.train.config import TrainConfig  # noqa: E402
from vidstyle.fast.train.data import resolve_style  # noqa: E402
from vidstyle.fast.train.objective import style_targets  # noqa: E402
from vidstyle.imageops import load_image, working_size  # noqa: E402
from vidstyle.vgg import load_vgg  # noqa: E402

DATA = Path(os.environ.get("VIDSTYLE_TEST_DATA",
                           Path(__file__).resolve().parents[1].parent / "shared" / "data"))
#: The evaluation's photos: every held-out photo of the kit (``content/``; none is in
#: ``train/``). Sessions 6-10 used three of them (amber, kodim04, tubingen), then three
#: others (chicago, golden_gate, kodim12): a sweep's end point moved across that split.
PHOTOS = ("amber.jpg", "astronaut.png", "chicago.jpg", "golden_gate.jpg",
          "hoovertowernight.jpg", "kodim04.png", "kodim05.png", "kodim12.png", "kodim14.png",
          "tubingen.jpg")
POINTS = (0.0, 0.25, 0.5, 0.75, 1.0)


def _photos(names: list[str], size: int) -> list[torch.Tensor]:
    out = []
    for n in names:
        x = load_image(DATA / "content" / n)
        hw = working_size(*x.shape[-2:], size)
        out.append(F.interpolate(x, size=hw, mode="bilinear", antialias=True,
                                 align_corners=False))
    return out


class Scorer:
    """Per-layer style losses and the content loss of outputs (VGG19, as training)."""

    def __init__(self, style_names: list[str], layers: tuple[str, ...]) -> None:
        self.layers = layers
        self.cfg = TrainConfig(styles=tuple(style_names), style_layers=layers)
        self.vgg = load_vgg("vgg19", truncate_after="relu5_1")
        paths = [resolve_style(s)[1] for s in style_names]
        self.targets = style_targets(self.vgg, paths, self.cfg, torch.device("cpu"))

    @torch.no_grad()
    def losses(self, x: torch.Tensor, y: torch.Tensor, style: int) -> tuple[list[float], float]:
        """(per-layer unweighted style losses, content loss) of output y for input x."""
        feats = self.vgg(y, [*self.layers, "relu4_2"])
        fx = self.vgg(x, ["relu4_2"])
        per = per_layer_style(feats, torch.tensor([style]), self.targets, list(self.layers))
        content = float(torch.mean((feats["relu4_2"] - fx["relu4_2"]) ** 2))
        return per[0].tolist(), content


def _style_total(per: list[float]) -> float:
    return sum(per) / len(per)  # vidstyle.optim's weights: 1/L each


@torch.no_grad()
def _out(net: AdjustableStyleNet, x: torch.Tensor, s: int, alpha: list[float] | None
         ) -> torch.Tensor:
    w = one_hot_styles(s, net.num_styles)
    return net(x, w, None if alpha is None else torch.tensor([alpha]))


def sweep(net: AdjustableStyleNet, scorer: Scorer, photos: list[torch.Tensor], s: int,
          base: str, tol: float) -> dict[str, Any]:
    n = net.num_layers
    default = net.default_alpha(one_hot_styles(s, net.num_styles))[0].tolist()
    start = default if base == "default" else [float(base)] * n
    out: dict[str, Any] = {}
    for li, layer in enumerate(net.style_layers):
        rows = []
        per_photo: list[list[float]] = [[] for _ in photos]  # the swept layer's loss
        for v in POINTS:
            a = list(start)
            a[li] = v
            acc = [0.0] * n
            for k, x in enumerate(photos):
                per, _ = scorer.losses(x, _out(net, x, s, a), s)
                per_photo[k].append(per[li])
                acc = [p + q / len(photos) for p, q in zip(acc, per, strict=True)]
            rows.append(acc)
        mine = [r[li] for r in rows]
        drops = [1 - rows[-1][k] / rows[0][k] for k in range(n)]
        others = [d for k, d in enumerate(drops) if k != li]
        mono = all(b <= a * (1 + tol) for a, b in itertools.pairwise(mine))
        out[layer] = {"losses": rows, "swept": mine, "swept_per_photo": per_photo,
                      # photos whose own sweep falls at every step (no tolerance)
                      "photos_strictly_falling": sum(
                          all(b < a for a, b in itertools.pairwise(pp)) for pp in per_photo),
                      "drop": drops[li],
                      "others_mean_drop": statistics.mean(others),
                      "others_max_drop": max(others), "monotonic": mono,
                      "pass": mono and drops[li] > 0 and drops[li] > statistics.mean(others)}
    return out


def variations(net: AdjustableStyleNet, scorer: Scorer, photos: list[torch.Tensor], s: int,
               k: int, seed: int, min_diff: float) -> dict[str, Any]:
    alphas = [list(a) for a in variation_weights(net, k, seed)]
    outs = [[_out(net, x, s, a) for x in photos] for a in alphas]
    diffs = []
    for i, j in itertools.combinations(range(k), 2):
        d = statistics.mean(float((outs[i][p] - outs[j][p]).abs().mean() * 255)
                            for p in range(len(photos)))
        diffs.append(d)
    def_style = statistics.mean(_style_total(scorer.losses(x, _out(net, x, s, None), s)[0])
                                for x in photos)
    ratios = []
    for i in range(k):
        st = statistics.mean(_style_total(scorer.losses(x, outs[i][p], s)[0])
                             for p, x in enumerate(photos))
        ratios.append(st / def_style)
    return {"alphas": alphas, "pair_mean_abs_diff": diffs, "min_pair_diff": min(diffs),
            "style_ratio_to_default": ratios, "default_style": def_style,
            "pass": min(diffs) > min_diff and max(ratios) <= 2.0}


def default_vs_plain(net: AdjustableStyleNet, plain: Any, plain_names: tuple[str, ...],
                     names: tuple[str, ...], scorer: Scorer, photos: list[torch.Tensor],
                     s: int) -> dict[str, Any]:
    ps = plain_names.index(names[s])
    st_a = st_p = ct_a = ct_p = 0.0
    for x in photos:
        per, c = scorer.losses(x, _out(net, x, s, None), s)
        st_a += _style_total(per) / len(photos)
        ct_a += c / len(photos)
        with torch.no_grad():
            y = plain(x, one_hot_styles(ps, len(plain_names)))
        per, c = scorer.losses(x, y, s)
        st_p += _style_total(per) / len(photos)
        ct_p += c / len(photos)
    return {"style": st_a, "plain_style": st_p, "content": ct_a, "plain_content": ct_p,
            "style_ratio": st_a / st_p, "content_ratio": ct_a / ct_p,
            "pass": abs(st_a / st_p - 1) <= 0.1 and abs(ct_a / ct_p - 1) <= 0.1}


def overhead(net: AdjustableStyleNet, plain: Any, rounds: int) -> dict[str, Any]:
    x = torch.rand(1, 3, 360, 640)
    t0 = time.perf_counter()
    baked = net.bake(one_hot_styles(0, net.num_styles), torch.full((1, net.num_layers), 0.5))
    bake_ms = (time.perf_counter() - t0) * 1e3
    a, b = InferenceNet(baked), InferenceNet(plain)
    wa, wb = one_hot_styles(0, 1), one_hot_styles(0, plain.num_styles)
    ta, tb = [], []
    with torch.inference_mode():
        a(x, wa), b(x, wb)  # warm-up
        for r in range(rounds):
            # the order alternates: the second call of a pair must not be favoured
            for net_, w_, times in ((a, wa, ta), (b, wb, tb))[:: 1 if r % 2 == 0 else -1]:
                t = time.perf_counter()
                net_(x, w_)
                times.append(time.perf_counter() - t)
    ma, mb = statistics.median(ta) * 1e3, statistics.median(tb) * 1e3
    return {"bake_ms": bake_ms, "baked_frame_ms": ma, "plain_frame_ms": mb,
            "per_frame_overhead": ma / mb - 1, "runtime": "eager float32 InferenceNet"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="weights/checkpoints/adjustable/model.pt")
    ap.add_argument("--plain", default="fast7")
    ap.add_argument("--photos", default=",".join(PHOTOS))
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--base", default="0.5", help="0.5 (or any value) or 'default'")
    ap.add_argument("--tol", type=float, default=0.02)
    ap.add_argument("--variations", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--min-diff", type=float, default=2.0)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--only", default="sweep,variations,default,overhead")
    ap.add_argument("--json", default="")
    args = ap.parse_args()
    torch.manual_seed(0)
    model, _ = resolve_model(args.model)
    net = model.net
    assert isinstance(net, AdjustableStyleNet), "not an adjustable model"
    plain, _ = resolve_model(args.plain)
    photos = _photos(args.photos.split(","), args.size)
    only = set(args.only.split(","))
    scorer = Scorer(list(model.style_names), net.style_layers)
    with open("/proc/loadavg") as f:
        load = f.read().split()[:3]
    result: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "cpu": platform.processor() or "", "load_avg": load, "threads": torch.get_num_threads(),
        "model": args.model, "plain": args.plain, "photos": args.photos.split(","),
        "size": args.size, "base": args.base, "tol": args.tol, "min_diff": args.min_diff,
        "steps": model.info.get("steps"), "styles": {}}
    for s, name in enumerate(model.style_names):
        r: dict[str, Any] = {}
        if "sweep" in only:
            r["sweep"] = sweep(net, scorer, photos, s, args.base, args.tol)
        if "variations" in only:
            r["variations"] = variations(net, scorer, photos, s, args.variations, args.seed,
                                         args.min_diff)
        if "default" in only:
            r["default_vs_plain"] = default_vs_plain(net, plain.net, plain.style_names,
                                                     model.style_names, scorer, photos, s)
        result["styles"][name] = r
        print(name, _summary(r), flush=True)
    if "overhead" in only:
        result["overhead"] = overhead(net, plain.net, args.rounds)
        print("overhead", result["overhead"], flush=True)
    if args.json:
        write_json(args.json, result)
    print(markdown(result))


def markdown(result: dict[str, Any]) -> str:
    """RESULTS.md tables of a result."""
    lines = []
    for name, r in result["styles"].items():
        if "sweep" in r:
            lines += [f"**{name}**: sweep (others at {result['base']}); per-layer style loss "
                      "of the swept layer at alpha = 0, 0.25, 0.5, 0.75, 1; drop = 1 - "
                      "loss(1)/loss(0)", "",
                      "| layer | swept layer's loss | drop | others' mean drop | others' "
                      "max drop | monotonic | pass |", "|---|---|---:|---:|---:|---|---|"]
            for layer, v in r["sweep"].items():
                sw = ", ".join(f"{x:.4g}" for x in v["swept"])
                lines.append(f"| {layer} | {sw} | {v['drop']:+.3f} | "
                             f"{v['others_mean_drop']:+.3f} | {v['others_max_drop']:+.3f} | "
                             f"{'yes' if v['monotonic'] else 'no'} | "
                             f"{'yes' if v['pass'] else 'NO'} |")
            lines.append("")
    rows = [(n, r) for n, r in result["styles"].items() if "variations" in r]
    if rows:
        lines += ["| style | min pair diff (0..255) | pair diffs | style / default | pass |",
                  "|---|---:|---|---|---|"]
        for n, r in rows:
            v = r["variations"]
            lines.append(f"| {n} | {v['min_pair_diff']:.2f} | "
                         f"{', '.join(f'{d:.1f}' for d in v['pair_mean_abs_diff'])} | "
                         f"{', '.join(f'{x:.2f}' for x in v['style_ratio_to_default'])} | "
                         f"{'yes' if v['pass'] else 'NO'} |")
        lines.append("")
    rows = [(n, r) for n, r in result["styles"].items() if "default_vs_plain" in r]
    if rows:
        lines += ["| style | style (default) | style (plain) | ratio | content (default) | "
                  "content (plain) | ratio | within 10% |",
                  "|---|---:|---:|---:|---:|---:|---:|---|"]
        for n, r in rows:
            d = r["default_vs_plain"]
            lines.append(f"| {n} | {d['style']:.4g} | {d['plain_style']:.4g} | "
                         f"{d['style_ratio']:.3f} | {d['content']:.4g} | "
                         f"{d['plain_content']:.4g} | {d['content_ratio']:.3f} | "
                         f"{'yes' if d['pass'] else 'NO'} |")
        lines.append("")
    if "overhead" in result:
        o = result["overhead"]
        lines.append(f"Overhead at 640x360 ({o['runtime']}): bake {o['bake_ms']:.1f} ms once "
                     f"per setting; per frame {o['baked_frame_ms']:.0f} ms baked vs "
                     f"{o['plain_frame_ms']:.0f} ms plain ({o['per_frame_overhead']:+.1%}).")
    return "\n".join(lines)


def _summary(r: dict[str, Any]) -> str:
    parts = []
    if "sweep" in r:
        parts.append("sweep " + " ".join(
            f"{k}:{'ok' if v['pass'] else 'NO'}({v['drop']:+.2f}/{v['others_mean_drop']:+.2f})"
            for k, v in r["sweep"].items()))
    if "variations" in r:
        v = r["variations"]
        parts.append(f"variations min diff {v['min_pair_diff']:.1f} ratios "
                     f"{max(v['style_ratio_to_default']):.2f} {'ok' if v['pass'] else 'NO'}")
    if "default_vs_plain" in r:
        d = r["default_vs_plain"]
        parts.append(f"default/plain style {d['style_ratio']:.3f} content "
                     f"{d['content_ratio']:.3f}")
    return "; ".join(parts)


if __name__ == "__main__":
    main()
