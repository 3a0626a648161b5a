"""VGG loss networks: named feature maps of an RGB image, with each model's preprocessing.

``load_vgg("vgg19")`` gives the Caffe VGG19 of Gatys et al. (when the offline weights are
converted; see :mod:`vidstyle.weights`), ``load_vgg("vgg16")`` torchvision's VGG16 of
Johnson et al. Both take float32 RGB in [0, 1], shape (B, 3, H, W), and convert it to what
the weights were trained on inside :meth:`VGGFeatures.forward`.

Layer names follow the papers: ``conv<block>_<k>``, ``relu<block>_<k>``, ``pool<block>``.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from vidstyle.errors import UsageError

# Convs per block of the two networks (Simonyan & Zisserman 2015, configurations E and D).
_BLOCKS = {"vgg19": (2, 2, 4, 4, 4), "vgg16": (2, 2, 3, 3, 3)}


def _names_for_blocks(blocks: Sequence[int]) -> tuple[str, ...]:
    names: list[str] = []
    for b, n in enumerate(blocks, start=1):
        for k in range(1, n + 1):
            names += [f"conv{b}_{k}", f"relu{b}_{k}"]
        names.append(f"pool{b}")
    return tuple(names)


#: Every layer name of each network, in forward order (37 for VGG19, 31 for VGG16).
LAYER_NAMES: dict[str, tuple[str, ...]] = {k: _names_for_blocks(v) for k, v in _BLOCKS.items()}

#: Published layer choices.
#: VGG19: Gatys, Ecker & Bethge, "Image Style Transfer Using Convolutional Neural Networks"
#: (CVPR 2016): style on relu1_1..relu5_1, content on relu4_2 (also Ruder et al. 2016).
#: VGG16: Johnson, Alahi & Fei-Fei, "Perceptual Losses for Real-Time Style Transfer and
#: Super-Resolution" (ECCV 2016): style on relu1_2, relu2_2, relu3_3, relu4_3; content relu3_3.
DEFAULT_LAYERS: dict[str, dict[str, tuple[str, ...]]] = {
    "vgg19": {
        "style": ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"),
        "content": ("relu4_2",),
    },
    "vgg16": {
        "style": ("relu1_2", "relu2_2", "relu3_3", "relu4_3"),
        "content": ("relu3_3",),
    },
}

# Caffe VGG: BGR, 0-255, per-channel mean (B, G, R) of the ILSVRC training set.
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
# torchvision: RGB in [0, 1], ImageNet mean and std.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
PREPROCESSINGS = ("caffe_bgr", "torchvision")


def vgg_layer_names(features: nn.Sequential) -> tuple[str, ...]:
    """Name each module of a VGG-style ``features`` stack: conv1_1, relu1_1, ..., pool1, ...

    Accepts Conv2d, ReLU and Max/AvgPool2d modules only (any count per block); a pool ends a
    block. Raises ValueError on any other module.
    """
    names: list[str] = []
    block, k = 1, 0
    for m in features:
        if isinstance(m, nn.Conv2d):
            k += 1
            names.append(f"conv{block}_{k}")
        elif isinstance(m, nn.ReLU):
            if k == 0:
                raise ValueError(f"ReLU before any conv in block {block}")
            names.append(f"relu{block}_{k}")
        elif isinstance(m, (nn.MaxPool2d, nn.AvgPool2d)):
            names.append(f"pool{block}")
            block, k = block + 1, 0
        else:
            raise ValueError(f"unexpected module in VGG features: {type(m).__name__}")
    return tuple(names)


class VGGFeatures(nn.Module):
    """A frozen VGG feature extractor returning named activations.

    Built from parts (no disk access): ``features`` is a torchvision-style ``nn.Sequential``
    of Conv2d / ReLU / pooling layers whose parameters are shared, not copied;
    ``preprocessing`` is "caffe_bgr" or "torchvision"; ``pool`` "max" (default) or "avg"
    replaces every pooling layer by a 2x2/stride-2 pool of that kind (Gatys et al. found
    average pooling gives slightly more appealing results). Parameters never require
    grad and the module stays in eval mode; gradients still flow to the input.
    """

    def __init__(
        self,
        *,
        name: str,
        features: nn.Sequential,
        preprocessing: str,
        weights_sha256: str = "",
        pool: str = "max",
    ) -> None:
        super().__init__()
        if preprocessing not in PREPROCESSINGS:
            raise ValueError(f"unknown preprocessing {preprocessing!r}: use {PREPROCESSINGS}")
        if pool not in ("max", "avg"):
            raise ValueError(f"unknown pool {pool!r}: use 'max' or 'avg'")
        self.name = name
        self.preprocessing = preprocessing
        self.weights_sha256 = weights_sha256
        self.pool = pool
        names = vgg_layer_names(features)
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        for layer_name, m in zip(names, features, strict=True):
            if isinstance(m, nn.ReLU):
                m = nn.ReLU()  # in-place or not is decided per call in forward
            elif isinstance(m, (nn.MaxPool2d, nn.AvgPool2d)):
                m = nn.MaxPool2d(2, 2) if pool == "max" else nn.AvgPool2d(2, 2)
            layers[layer_name] = m
        self.layers = nn.Sequential(layers)
        self.layer_names: tuple[str, ...] = names
        self._index = {n: i for i, n in enumerate(names)}

        if preprocessing == "caffe_bgr":
            perm = [2, 1, 0]
            scale = [255.0] * 3
            shift = [-m for m in CAFFE_MEAN_BGR]
        else:
            perm = [0, 1, 2]
            scale = [1.0 / s for s in IMAGENET_STD]
            shift = [-m / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD, strict=True)]
        self._perm = perm
        self.register_buffer("_scale", torch.tensor(scale).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("_shift", torch.tensor(shift).view(1, 3, 1, 1), persistent=False)
        for p in self.parameters():
            p.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> VGGFeatures:
        """Always stays in eval mode (the loss network is frozen)."""
        return super().train(False)

    def preprocess(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) RGB in [0, 1] -> the network's input convention, same shape.

        caffe_bgr: channels reversed to BGR, times 255, minus the Caffe mean.
        torchvision: (x - ImageNet mean) / ImageNet std.
        """
        if self._perm != [0, 1, 2]:
            x = x[:, self._perm]
        return x * self._scale + self._shift

    def forward(self, x: torch.Tensor, layers: Sequence[str]) -> dict[str, torch.Tensor]:
        """Activations of ``layers`` for images ``x``.

        x: (B, 3, H, W) float RGB in [0, 1]. Returns {layer: (B, C, H/2^p, W/2^p)} in the
        order of ``layers``; computation stops at the deepest requested layer. Raises
        UsageError for an unknown layer name.
        """
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"expected (B, 3, H, W) images, got {tuple(x.shape)}")
        if isinstance(layers, str):
            layers = (layers,)
        if not layers:
            raise UsageError("no VGG layers requested")
        unknown = [n for n in layers if n not in self._index]
        if unknown:
            raise UsageError(
                f"unknown {self.name} layer(s) {', '.join(unknown)}; "
                f"known: {self.layer_names[0]} ... {self.layer_names[-1]}"
            )
        wanted = set(layers)
        stop = max(self._index[n] for n in layers)
        out: dict[str, torch.Tensor] = {}
        h = self.preprocess(x)
        prev_kept = True  # the preprocessed input is ours; never modify in place anyway
        for i, (layer_name, m) in enumerate(self.layers.named_children()):
            if i > stop:
                break
            if isinstance(m, nn.ReLU):
                # In place saves memory unless the conv output was handed out to the caller.
                h = F.relu(h, inplace=not prev_kept)
            else:
                h = m(h)
            prev_kept = layer_name in wanted
            if prev_kept:
                out[layer_name] = h
        return {n: out[n] for n in layers}

    def extra_repr(self) -> str:
        sha = self.weights_sha256[:12] or "none"
        return (
            f"name={self.name}, preprocessing={self.preprocessing}, pool={self.pool}, "
            f"weights={sha}"
        )


def load_vgg(
    name: str = "vgg19",
    *,
    device: torch.device | str = "cpu",
    weights_path: Path | None = None,
    allow_download: bool = False,
    truncate_after: str | None = None,
    pool: str = "max",
) -> VGGFeatures:
    """Load a pretrained VGG loss network ("vgg19" or "vgg16") onto ``device``.

    Weights are found by :func:`vidstyle.weights.resolve_vgg` (hash-checked) and loaded
    strictly into ``torchvision.models.<name>().features``. ``truncate_after`` (e.g.
    "relu4_1" for a style/content set that ends there) drops all later layers. Raises
    WeightsError if no weights are found, UsageError for an unknown name or layer.
    """
    import torchvision

    from vidstyle.weights import (
        check_features_state_dict,
        load_features_state_dict,
        resolve_vgg,
    )

    if name not in LAYER_NAMES:
        raise UsageError(f"unknown loss network {name!r}: use one of {', '.join(LAYER_NAMES)}")
    if truncate_after is not None and truncate_after not in LAYER_NAMES[name]:
        raise UsageError(f"unknown {name} layer {truncate_after!r} for truncate_after")
    resolved = resolve_vgg(name, weights_path=weights_path, allow_download=allow_download)
    state = load_features_state_dict(resolved)
    # Shapes and key names only: the file's hash was checked, values were checked at conversion.
    check_features_state_dict(name, state, check_finite=False)
    with torch.device("meta"):
        features = getattr(torchvision.models, name)(weights=None).features
    features.load_state_dict(state, strict=True, assign=True)
    if truncate_after is not None:
        features = features[: LAYER_NAMES[name].index(truncate_after) + 1]
    net = VGGFeatures(
        name=name,
        features=features,
        preprocessing=resolved.preprocessing,
        weights_sha256=resolved.sha256,
        pool=pool,
    )
    return net.to(device=device, dtype=torch.float32)
