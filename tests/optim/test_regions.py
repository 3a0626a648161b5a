"""Per-region styles in optimization (Gatys et al. 2017 spatial control)."""

from __future__ import annotations

import pytest
import torch

from vidstyle.config import OptimConfig
from vidstyle.imageops import load_image, resize
from vidstyle.losses import gram, masked_gram, region_style_loss, style_loss
from vidstyle.optim.image import GatysStylizer, StyleRegion
from vidstyle.vgg import DEFAULT_LAYERS, load_vgg

LAYERS = DEFAULT_LAYERS["vgg19"]


def test_a_region_covering_everything_is_the_plain_style_loss() -> None:
    f = {"a": torch.rand(1, 8, 10, 12), "b": torch.rand(1, 4, 5, 6)}
    t = {"a": torch.rand(1, 8, 8), "b": torch.rand(1, 4, 4)}
    ones = torch.ones(1, 1, 40, 48)
    assert torch.allclose(region_style_loss(f, [(ones, t)]), style_loss(f, t))
    assert torch.allclose(masked_gram(f["a"], torch.ones(1, 1, 10, 12)), gram(f["a"]))
    # a zero region contributes nothing
    assert float(region_style_loss(f, [(torch.zeros(1, 1, 40, 48), t)])) == 0.0


def test_each_half_takes_its_own_style(data_dir) -> None:
    try:
        net = load_vgg("vgg19", truncate_after="relu5_1")
    except Exception as exc:  # noqa: BLE001
        pytest.skip(f"VGG19 weights not available: {exc}")
    cfg = OptimConfig(size=96, iters=40, multiscale=1)
    content = resize(load_image(data_dir / "content" / "kodim12.png"), (64, 96))

    def stylizer(name: str) -> GatysStylizer:
        return GatysStylizer(net=net, style_image=load_image(data_dir / "styles" / name),
                             config=cfg, style_layers=LAYERS["style"],
                             content_layers=LAYERS["content"])

    wave, scream = stylizer("wave.jpg"), stylizer("the_scream.jpg")
    left = torch.zeros(1, 1, 64, 96)
    left[..., :48] = 1
    out = wave.stylize(content, seed=0, regions=[StyleRegion(left, wave),
                                                 StyleRegion(1 - left, scream)]).image

    def loss(st: GatysStylizer, img: torch.Tensor) -> float:
        return st.style_loss_of(img)

    lhalf, rhalf = out[..., :, 8:40], out[..., :, 56:88]
    assert loss(wave, lhalf) < loss(scream, lhalf)
    assert loss(scream, rhalf) < loss(wave, rhalf)
