"""Fixtures of the fast-network tests: tiny images from the kit and a tiny loss network."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest
import torch
from PIL import Image
from torch import nn


class TinyLossNet(nn.Module):
    """Two random conv layers standing in for VGG: layers "a" (full res) and "b" (1/2)."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.c1 = nn.Conv2d(3, 8, 3, padding=1)
        self.c2 = nn.Conv2d(8, 8, 3, stride=2, padding=1)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.3)
        self.requires_grad_(False)

    def forward(self, x: torch.Tensor, layers: Sequence[str]) -> dict[str, torch.Tensor]:
        a = torch.relu(self.c1(x))
        b = torch.relu(self.c2(a))
        feats = {"a": a, "b": b}
        return {k: feats[k] for k in layers}


@pytest.fixture
def tiny_loss_net() -> TinyLossNet:
    return TinyLossNet()


def _shrink(src: Path, dst: Path, long: int) -> None:
    with Image.open(src) as im:
        im = im.convert("RGB")
        w, h = im.size
        s = long / max(w, h)
        im.resize((max(8, round(w * s)), max(8, round(h * s))), Image.BICUBIC).save(dst)


@pytest.fixture
def tiny_data(data_dir: Path, tmp_path: Path) -> dict[str, Path]:
    """4 small training photos, 1 held-out photo and 2 small style images (from the kit)."""
    train = tmp_path / "train"
    hold = tmp_path / "holdout"
    styles = tmp_path / "styles"
    for d in (train, hold, styles):
        d.mkdir()
    photos = sorted(p for p in (data_dir / "train").iterdir() if p.suffix == ".jpg")[:4]
    for i, p in enumerate(photos):
        _shrink(p, train / f"t{i}.png", 56)
    _shrink(data_dir / "content" / "chicago.jpg", hold / "chicago.png", 40)
    _shrink(data_dir / "styles" / "starry_night.jpg", styles / "starry.png", 48)
    _shrink(data_dir / "styles" / "wave.jpg", styles / "wave.png", 48)
    _shrink(data_dir / "styles" / "udnie.jpg", styles / "udnie.png", 48)
    return {"train": train, "holdout": hold, "styles": styles, "root": tmp_path}
