"""Quality bar of the shipped fast network against optimization, per style.

For every style of the model and each held-out photo (never trained on), at one size:
style loss (VGG19 Gram, vidstyle.optim's layer weights) and content loss (its content
layers, mean squared difference to the photo's features) of the fast output, and of a
300-iteration Gatys optimization (default multi-scale schedule and weights). The bar:
fast <= 2x optimization. Writes ``fast_quality.json`` and contact sheets (fast outputs:
rows = photos, columns = styles; and the optimization outputs) into ``--out``.

Runs on CUDA when present (a lent GPU makes this take minutes instead of an hour):
``python -m benchmarks.eval_fast_quality --size 384 --out benchmarks/results``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import torchvision
from PIL import Image

from benchmarks import write_json
from vidstyle.config import OptimConfig
from vidstyle.fast.model_io import DEFAULT_MODEL
from vidstyle.fast.stylizer import resolve_model
from vidstyle.imageops import load_image, resize_longest
from vidstyle.losses import content_loss
from vidstyle.optim.image import GatysStylizer
from vidstyle.styles import resolve_style
from vidstyle.tensors import to_uint8
from vidstyle.vgg import DEFAULT_LAYERS, VGGFeatures, load_vgg

ROOT = Path(__file__).resolve().parents[1]
#: The contact sheet's photos (shown in the README: no photo of unknown licence; the
#: figures in RESULTS.md up to 2026-12-01 used tubingen in place of kodim12).
PHOTOS = ("astronaut", "kodim04", "kodim12")


def _content_loss(vgg: VGGFeatures, layers: list[str] | tuple[str, ...], x: torch.Tensor,
                  y: torch.Tensor) -> float:
    """Content loss (mean squared feature difference, summed over ``layers``) of output
    ``y`` against its source ``x``, both (1, 3, H, W) in [0, 1]."""
    with torch.no_grad():
        fx, fy = vgg(x, list(layers)), vgg(y, list(layers))
    return float(sum(content_loss(fy[k], fx[k]) for k in layers))


def nyquist_share(image: torch.Tensor, cutoff: float = 0.45) -> float:
    """Share of the luminance's spectral energy (mean removed) at frequencies above
    ``cutoff`` cycles per pixel in either direction: the 2-pixel patterns a sub-pixel
    (pixel-shuffle) output can invent, for image (1, 3, H, W) in [0, 1]."""
    g = image.float().mean(1)[0]
    power = torch.fft.fft2(g - g.mean()).abs().pow(2)
    fy = torch.fft.fftfreq(g.shape[0], device=g.device).abs()[:, None]
    fx = torch.fft.fftfreq(g.shape[1], device=g.device).abs()[None, :]
    return float(power[(fy > cutoff) | (fx > cutoff)].sum() / power.sum().clamp_min(1e-12))


def _vgg(device: torch.device, vgg_file: str | None) -> VGGFeatures:
    if not vgg_file:
        return load_vgg("vgg19", device=device, truncate_after="relu5_1")
    state = torch.load(vgg_file, map_location="cpu", weights_only=True)
    n = 2 + max(int(k.split(".")[0]) for k in state)
    feats = torchvision.models.vgg19(weights=None).features[:n]
    feats.load_state_dict({k: v.float() for k, v in state.items()})
    return VGGFeatures(name="vgg19", features=feats, preprocessing="caffe_bgr").to(device)


def _photo(folder: Path, stem: str) -> Path:
    for suffix in (".png", ".jpg"):
        if (folder / f"{stem}{suffix}").is_file():
            return folder / f"{stem}{suffix}"
    raise FileNotFoundError(f"{stem} not in {folder}")


def _sheet(rows: list[list[torch.Tensor]], cell: int) -> Image.Image:
    pad = 4
    cols = max(len(r) for r in rows)
    sheet = Image.new("RGB", (cols * (cell + pad) + pad, len(rows) * (cell + pad) + pad),
                      "white")
    for r, row in enumerate(rows):
        for c, t in enumerate(row):
            im = Image.fromarray(to_uint8(t.cpu()))
            im.thumbnail((cell, cell))
            sheet.paste(im, (pad + c * (cell + pad), pad + r * (cell + pad)))
    return sheet


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--size", type=int, default=384)
    p.add_argument("--iters", type=int, default=300)
    p.add_argument("--photos", default=str(ROOT.parent / "shared" / "data" / "content"))
    p.add_argument("--photo-names", default=",".join(PHOTOS))
    p.add_argument("--styles", default="", help="comma list (default: all of the model)")
    p.add_argument("--model", default=DEFAULT_MODEL)
    p.add_argument("--vgg-file", default=None, help="VGG19 features state dict (Caffe)")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    p.add_argument("--budget-s", type=float, default=1e9, help="stop optimizing after this")
    p.add_argument("--optim-from", default=None,
                   help="reuse the optimization losses of an earlier fast_quality.json (same "
                        "size, iterations, photos and styles) instead of optimizing again")
    a = p.parse_args(argv)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.backends.cudnn.benchmark = True
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    vgg = _vgg(device, a.vgg_file)
    model = resolve_model(a.model, device)[0]
    net = model.net.float().eval()
    styles = [s for s in a.styles.split(",") if s] or list(model.style_names)
    photos = {n: resize_longest(load_image(_photo(Path(a.photos), n)), a.size).to(device)
              for n in a.photo_names.split(",")}
    layers = DEFAULT_LAYERS["vgg19"]
    earlier = json.loads(Path(a.optim_from).read_text()) if a.optim_from else None
    if earlier and (earlier["size"], earlier["iters"]) != (a.size, a.iters):
        raise SystemExit(f"{a.optim_from} was measured at size {earlier['size']}, "
                         f"{earlier['iters']} iterations")
    results: dict = {"size": a.size, "iters": a.iters, "model": a.model,
                     "optim_from": a.optim_from,
                     "device": torch.cuda.get_device_name(0) if device.type == "cuda" else "cpu",
                     "styles": {}}
    fast_rows = [list(photos.values())]
    optim_rows = [list(photos.values())]
    for s in styles:
        g = GatysStylizer(net=vgg, style_image=load_image(resolve_style(s).path),
                          config=OptimConfig(size=a.size, iters=a.iters),
                          style_layers=layers["style"], content_layers=layers["content"],
                          device=device)
        w = torch.zeros(1, len(model.style_names), device=device)
        w[0, model.style_index(s)] = 1.0
        row: dict = {}
        fr, orow = [], []
        for name, x in photos.items():
            with torch.no_grad():
                y = net(x, w).clamp(0, 1)
            entry = {"input": g.style_loss_of(x), "fast": g.style_loss_of(y),
                     "fast_content": _content_loss(vgg, layers["content"], x, y),
                     "fast_nyquist": nyquist_share(y)}
            if earlier is not None:
                old = earlier["styles"].get(s, {}).get("photos", {}).get(name, {})
                if "optim" in old:
                    entry["optim"] = old["optim"]
                    entry["ratio"] = entry["fast"] / entry["optim"]
            elif time.time() - t0 < a.budget_s:
                o = g.stylize(x).image
                entry["optim"] = g.style_loss_of(o)
                entry["ratio"] = entry["fast"] / entry["optim"]
                orow.append(o)
            row[name] = entry
            fr.append(y)
            print(s, name, {k: round(v, 3) for k, v in entry.items()}, flush=True)
        ratios = [e["ratio"] for e in row.values() if "ratio" in e]
        results["styles"][s] = {"photos": row,
                                "mean_ratio": sum(ratios) / len(ratios) if ratios else None,
                                "mean_fast_style": sum(e["fast"] for e in row.values())
                                / len(row),
                                "mean_fast_content": sum(e["fast_content"] for e in row.values())
                                / len(row),
                                "mean_fast_nyquist": sum(e["fast_nyquist"] for e in row.values())
                                / len(row)}
        fast_rows.append(fr)
        if orow:
            optim_rows.append(orow)
        write_json(out / "fast_quality.json", results)
    # transpose: rows = photos, columns = styles (first column: input)
    def cols_to_rows(rows: list[list[torch.Tensor]]) -> list[list[torch.Tensor]]:
        return [list(col) for col in zip(*rows, strict=False)]

    _sheet(cols_to_rows(fast_rows), 200).save(out / "fast_contact_sheet.png")
    if len(optim_rows) > 1:
        _sheet(cols_to_rows(optim_rows), 200).save(out / "fast_vs_optim_optim_sheet.png")
    results["wall_s"] = time.time() - t0
    write_json(out / "fast_quality.json", results)
    print("style            mean fast/optim style-loss ratio (bar <= 2) | mean style loss | "
          "mean content loss (relu4_2) | 2-px pattern energy share")
    for s, r in results["styles"].items():
        mr = r["mean_ratio"]
        print(f"{s:<16} {mr:.2f}" if mr is not None else f"{s:<16} (not optimized)",
              f"| {r['mean_fast_style']:.0f} | {r['mean_fast_content']:.4g} | "
              f"{r['mean_fast_nyquist']:.4f}")
    print(f"wall {results['wall_s']:.0f}s on {results['device']}")


if __name__ == "__main__":
    main()
