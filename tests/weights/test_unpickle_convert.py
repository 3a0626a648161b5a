"""The restricted unpickler and the conversions, and proof that the converted weights
are the real ImageNet-trained ones."""

from __future__ import annotations

import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision

from vidstyle import weights as W
from vidstyle.errors import WeightsError


class _Evil:
    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self) -> tuple:
        return (os.system, (self.command,))


def test_restricted_unpickler_refuses_code(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    payload = pickle.dumps({"VGG16_0": {"Conv_0": _Evil(f"touch {marker}")}})
    with pytest.raises(WeightsError, match="refusing to unpickle"):
        W.restricted_load(payload)
    assert not marker.exists()
    for evil in (pickle.dumps(eval), pickle.dumps(shutil.rmtree)):
        with pytest.raises(WeightsError, match="refusing"):
            W.restricted_load(evil)
    # An object array could smuggle arbitrary objects; refused too.
    with pytest.raises(WeightsError, match="non-numeric"):
        W.restricted_load(pickle.dumps({"a": np.array([1, "x"], dtype=object)}))
    # ... while plain numpy arrays in dicts load fine.
    ok = W.restricted_load(pickle.dumps({"k": {"kernel": np.arange(6, dtype=np.float32)}}))
    assert np.array_equal(ok["k"]["kernel"], np.arange(6, dtype=np.float32))


def test_lpips_conversion_transposes_hwio_to_oihw() -> None:
    """A synthetic flax pickle: element [h, w, i, o] must land at torch [o, i, h, w]."""
    convs = {}
    with torch.device("meta"):
        tv = torchvision.models.vgg16(weights=None).features
    shapes = [tuple(m.weight.shape) for m in tv if isinstance(m, torch.nn.Conv2d)]
    for k, (o, i, h, w) in enumerate(shapes):
        n = h * w * i * o  # distinct values (exact in float32 below 2**24) reveal the layout
        convs[f"Conv_{k}"] = {"kernel": np.arange(n, dtype=np.float32).reshape(h, w, i, o),
                              "bias": np.arange(o, dtype=np.float32) + k}
    state = W.convert_lpips_vgg16(pickle.dumps({"VGG16_0": convs}))
    kernel = convs["Conv_0"]["kernel"]
    assert state["0.weight"][5, 2, 0, 1].item() == kernel[0, 1, 2, 5]
    assert state["0.weight"][7, 1, 2, 0].item() == kernel[2, 0, 1, 7]
    assert torch.equal(state["28.bias"], torch.from_numpy(convs["Conv_12"]["bias"]))


# --------------------------------------------------------------------------- real weights


def _first_layer(home: Path, name: str) -> torch.Tensor:
    path = home / "weights" / W.OFFLINE_SOURCES[name].converted
    return torch.load(path, map_location="cpu", weights_only=True)["0.weight"]


def _channel_agreement(w: torch.Tensor) -> float:
    """Mean correlation of each conv1_1 filter's 3x3 pattern across its colour channels."""
    f = w.reshape(w.shape[0], 3, 9)
    f = f - f.mean(-1, keepdim=True)
    f = f / (f.norm(dim=-1, keepdim=True) + 1e-12)
    pairs = [(f[:, a] * f[:, b]).sum(-1) for a, b in ((0, 1), (0, 2), (1, 2))]
    return torch.stack(pairs).mean().item()


def _best_match(a: torch.Tensor, b: torch.Tensor) -> float:
    """For each filter of ``a`` the best |cosine| with any filter of ``b`` (27-d), averaged."""
    a = a.flatten(1) - a.flatten(1).mean(1, keepdim=True)
    b = b.flatten(1) - b.flatten(1).mean(1, keepdim=True)
    a, b = a / a.norm(dim=1, keepdim=True), b / b.norm(dim=1, keepdim=True)
    return (a @ b.T).abs().max(1).values.mean().item()


def test_first_layers_are_imagenet_trained(home: Path) -> None:
    """conv1_1 of both sources has the structure of learned filters, random init has none.

    1. ImageNet first layers are mostly luminance edge/blob detectors: the same 3x3 pattern
       in R, G and B, so a filter's colour channels correlate strongly (about 0.84 for the
       Caffe VGG19, 0.53 for VGG16). For i.i.d. random init (torchvision's Kaiming normal,
       or any) the expectation is 0; we require > 0.3 and > random + 0.25.
    2. The two files come from independent trainings (Caffe VGG19 of Oxford, VGG16 of
       torchvision), yet first-layer filters converge to the same Gabor/colour-blob
       dictionary: each VGG16 filter has a close counterpart among the VGG19 ones (mean best
       |cos| about 0.72, VGG19 flipped from BGR to RGB input order). Against 64 random
       27-d filters the best |cos| is about 0.48. Both checks fail for shapes-only weights.
    """
    w19, w16 = _first_layer(home, "vgg19"), _first_layer(home, "vgg16")
    generator = torch.Generator().manual_seed(0)
    random_w = torch.randn(64, 3, 3, 3, generator=generator)
    random_agreement = _channel_agreement(random_w)
    assert abs(random_agreement) < 0.15
    for w in (w19, w16):
        assert _channel_agreement(w) > max(0.3, random_agreement + 0.25)
    real = _best_match(w16, w19.flip(1))
    chance = _best_match(w16, random_w)
    assert real > 0.62 and real > chance + 0.15, (real, chance)

