"""The optimization stylizers' shared base: the style image is loaded (checked) when the
stylizer is made, and fingerprints are those of the separate classes before."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from torch import nn

import vidstyle.engine
from tests.media.helpers import make_clip
from vidstyle.cli import cli
from vidstyle.config import OptimConfig, RunConfig, TemporalConfig, fingerprint_of
from vidstyle.engine import make_stylizer
from vidstyle.errors import StyleImageError
from vidstyle.fileio import sha256_file
from vidstyle.imageops import load_image
from vidstyle.optim.frame import OptimFrameStylizer
from vidstyle.optim.video import TemporalOptimStylizer
from vidstyle.vgg import VGGFeatures


@pytest.fixture
def bad_style(tmp_path: Path) -> Path:
    p = tmp_path / "bad_style.jpg"
    p.write_bytes(b"\xff\xd8 not really a jpeg")
    return p


def test_a_broken_style_image_fails_when_the_stylizer_is_made(bad_style: Path,
                                                              monkeypatch) -> None:
    def no_vgg(*_a: object, **_k: object):
        raise AssertionError("the loss network was loaded before the style image")

    monkeypatch.setattr(vidstyle.engine, "load_loss_net", no_vgg)
    for mode in ("none", "short"):
        cfg = RunConfig(style=str(bad_style), method="optim",
                        temporal=TemporalConfig(mode=mode))
        with pytest.raises(StyleImageError, match="not an image"):
            make_stylizer(config=cfg, device=torch.device("cpu"))


def test_a_broken_style_image_fails_before_decoding(bad_style: Path, tmp_path: Path) -> None:
    """Was: the error came after the decode and flow stages and left a work folder."""
    clip = make_clip(tmp_path / "c.mp4", n=3, size=(48, 32))
    out = tmp_path / "o.mp4"
    r = CliRunner().invoke(cli, ["run", str(clip), "-o", str(out), "--style", str(bad_style),
                                 "--method", "optim", "--temporal", "short", "--size", "32",
                                 "--iters", "1", "-q"], catch_exceptions=False)
    assert r.exit_code == 1 and "not an image" in r.stderr, r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad_style.jpg", "c.mp4"]


def test_fingerprints_are_those_of_the_classes_before(data_dir: Path) -> None:
    net = VGGFeatures(name="tiny", features=nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU()),
                      preprocessing="torchvision", weights_sha256="ab" * 32)
    style = data_dir / "styles" / "wave.jpg"
    kw = dict(device="cpu", net=net, style_image=load_image(style), style_path=str(style),
              style_layers=("relu1_1",), content_layers=("relu1_1",))
    cfg = RunConfig(style="wave", method="optim", optim=OptimConfig(size=32))
    frame = OptimFrameStylizer(config=cfg, **kw)
    clip = TemporalOptimStylizer(config=cfg.replace(temporal=TemporalConfig(mode="short")),
                                 **kw)
    sha = sha256_file(style)
    # the formulas of the two classes before they shared a base
    assert frame.fingerprint() == fingerprint_of("optim-frame", sha, "ab" * 32)
    assert clip.fingerprint() == fingerprint_of("optim-temporal", sha, "ab" * 32)
    assert frame.needs.cache and not frame.needs.flow and clip.needs.flow
    x = torch.zeros(20, 30, 3, dtype=torch.uint8).numpy()
    assert frame.prepare(x).shape == clip.prepare(x).shape == (1, 3, 21, 32)
    assert frame.gatys is frame.gatys and frame.gatys is not clip.gatys
