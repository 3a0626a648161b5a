"""Optical-flow backends behind one call: ``make_flow(method).estimate(a, b)``.

Every backend takes frames as float32 RGB tensors (B, 3, H, W) in [0, 1] and returns the
flow from ``a`` to ``b`` as float32 (B, 2, H, W) in pixels (channel 0 = x, 1 = y) on the
device of ``a``: pixel x of ``a`` moves to x + flow(x) in ``b``. A batch holds B
independent pairs. OpenCV backends see uint8 grayscale; the conversion happens here, at
the edge.

Backends:
- ``dis``: OpenCV DIS (Kroeger et al. 2016), presets ultrafast / fast / medium.
- ``deepflow``: OpenCV-contrib DeepFlow (Weinzaepfel et al. 2013), the flow of Ruder et al.
- ``dualtvl1``: OpenCV-contrib TV-L1 (Zach et al. 2007), slow.
- ``raft``: torchvision RAFT, presets large / small; needs its weights locally.

Constructors touch neither disk nor network; OpenCV objects and RAFT weights are created
on first use. ``scale`` < 1 estimates at a reduced size and rescales the vectors back.
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
import torch.nn.functional as F

from vidstyle.config import DEFAULT_FLOW_PRESET, FLOW_PRESETS, FlowConfig
from vidstyle.errors import InputError, UsageError, WeightsError

log = logging.getLogger(__name__)

METHODS = tuple(FLOW_PRESETS)
DIS_PRESETS = FLOW_PRESETS["dis"]
RAFT_PRESETS = FLOW_PRESETS["raft"]
OPENCV_THREADS = 2


@runtime_checkable
class FlowEstimator(Protocol):
    """Anything that estimates dense optical flow between two frames."""

    name: str

    def fingerprint(self) -> str:
        """A string naming the method and every parameter that changes the result."""
        ...

    def estimate(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Flow from ``a`` to ``b``: (B, 3, H, W) float [0, 1] each -> (B, 2, H, W) pixels."""
        ...


def _check_pair(a: torch.Tensor, b: torch.Tensor) -> None:
    if a.dim() != 4 or a.shape[1] != 3:
        raise ValueError(f"frames must be (B, 3, H, W), got {tuple(a.shape)}")
    if a.shape != b.shape:
        raise ValueError(f"frame shapes differ: {tuple(a.shape)} vs {tuple(b.shape)}")


#: Frames are never estimated below this many pixels a side (DIS needs at least 12).
MIN_SIDE = 16


def _reduced_size(h: int, w: int, scale: float) -> tuple[int, int]:
    return min(h, max(MIN_SIDE, round(h * scale))), min(w, max(MIN_SIDE, round(w * scale)))


def resize_flow(flow: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Resample a flow (B, 2, h, w) to ``size`` = (H, W) and rescale its vectors to match.

    Bilinear on the pixel-centre grid; the x component is multiplied by W / w, y by H / h.
    """
    h, w = flow.shape[-2:]
    if (h, w) == tuple(size):
        return flow
    out = F.interpolate(flow, size=size, mode="bilinear", align_corners=False)
    ratio = torch.tensor([size[1] / w, size[0] / h], dtype=out.dtype, device=out.device)
    return out * ratio.view(1, 2, 1, 1)


class _Estimator:
    """Shared plumbing: input checks, reduced-size estimation, output device."""

    name = "base"

    def __init__(self, *, scale: float = 1.0) -> None:
        if not (0.0 < scale <= 1.0):
            raise UsageError(f"flow scale must be in (0, 1], got {scale}")
        self.scale = float(scale)

    def _params(self) -> str:  # pragma: no cover - overridden
        return ""

    def fingerprint(self) -> str:
        return f"{self.name}({self._params()},scale={self.scale:g})"

    def __repr__(self) -> str:
        return f"<FlowEstimator {self.fingerprint()}>"

    def check(self) -> None:
        """Raise now what would fail at the first estimate (missing weights or modules)."""
        return None

    def estimate(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        _check_pair(a, b)
        h, w = a.shape[-2:]
        if min(h, w) < MIN_SIDE:
            raise InputError(f"frames of {w}x{h} px are too small for optical flow")
        small = _reduced_size(h, w, self.scale)
        if small != (h, w):
            a = F.interpolate(a.float(), size=small, mode="bilinear", antialias=True)
            b = F.interpolate(b.float(), size=small, mode="bilinear", antialias=True)
        flow = self._estimate(a, b)
        return resize_flow(flow, (h, w)).to(device=a.device, dtype=torch.float32)

    def _estimate(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError


def to_gray_uint8(frames: torch.Tensor) -> list[np.ndarray]:
    """(B, 3, H, W) float RGB in [0, 1] -> B arrays (H, W) uint8 (Rec. 601 luma, rounded).

    Done in NumPy on purpose: single-threaded, it avoids torch's OpenMP start-up and
    contention costs, which dominate for one small elementwise op next to OpenCV.
    """
    arr = frames.detach().to("cpu", torch.float32).numpy()
    out = []
    for rgb in arr:
        gray = rgb[0] * np.float32(0.299 * 255.0)
        gray += rgb[1] * np.float32(0.587 * 255.0)
        gray += rgb[2] * np.float32(0.114 * 255.0)
        out.append(np.clip(np.rint(gray), 0, 255).astype(np.uint8))
    return out


def _version(t: torch.Tensor) -> int:
    """The tensor's in-place modification counter; -1 for inference-mode tensors, which
    have none (frames are never modified in place in this package)."""
    return -1 if t.is_inference() else t._version


class _OpenCVEstimator(_Estimator):
    """A backend around an OpenCV ``DenseOpticalFlow`` object (created lazily)."""

    def __init__(self, *, scale: float = 1.0) -> None:
        super().__init__(scale=scale)
        self._algo: Any = None
        # the grayscale conversions of the last two frames: video callers estimate both
        # directions per pair and reuse each frame in the next pair (4 conversions -> 1)
        self._gray_cache: list[tuple[torch.Tensor, int, list[np.ndarray]]] = []

    def _gray(self, frames: torch.Tensor) -> list[np.ndarray]:
        version = _version(frames)
        for t, v, gray in self._gray_cache:
            if t is frames and v == version:  # the same tensor, not modified since
                return gray
        gray = to_gray_uint8(frames)
        self._gray_cache = [(frames, version, gray), *self._gray_cache[:1]]
        return gray

    def _create(self) -> Any:  # pragma: no cover - overridden
        raise NotImplementedError

    def check(self) -> None:
        self._create()  # raises UsageError when OpenCV's contrib modules are missing

    def estimate(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        # Resizing happens in OpenCV on the uint8 grayscale frames: cheaper than torch,
        # and free of torch's thread-pool start-up cost for these small images.
        import cv2

        _check_pair(a, b)
        h, w = a.shape[-2:]
        if min(h, w) < MIN_SIDE:
            raise InputError(f"frames of {w}x{h} px are too small for optical flow")
        if self._algo is None:
            cv2.setNumThreads(OPENCV_THREADS)
            self._algo = self._create()
        sh, sw = _reduced_size(h, w, self.scale)
        flows = []
        for ga, gb in zip(self._gray(a), self._gray(b), strict=True):
            if (sh, sw) != (h, w):
                ga = cv2.resize(ga, (sw, sh), interpolation=cv2.INTER_AREA)
                gb = cv2.resize(gb, (sw, sh), interpolation=cv2.INTER_AREA)
            f = self._algo.calc(ga, gb, None)
            if (sh, sw) != (h, w):
                f = cv2.resize(f, (w, h), interpolation=cv2.INTER_LINEAR)
                f *= np.array([w / sw, h / sh], dtype=np.float32)
            flows.append(f)
        arr = np.stack(flows).transpose(0, 3, 1, 2)  # (B, H, W, 2) -> (B, 2, H, W)
        out = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32))
        return out.to(a.device)

    def _params(self) -> str:
        import cv2

        return f"opencv={cv2.__version__}"


class DISFlow(_OpenCVEstimator):
    """OpenCV DIS optical flow on grayscale frames. Fast (tens of ms at 1024x436, CPU)."""

    name = "dis"

    def __init__(self, *, preset: str, scale: float = 1.0) -> None:
        """preset: "ultrafast" | "fast" | "medium" (the default is
        :data:`vidstyle.config.DEFAULT_FLOW_PRESET`'s, applied by :func:`make_flow`)."""
        if preset not in DIS_PRESETS:
            raise UsageError(f"unknown DIS preset {preset!r}: use one of {', '.join(DIS_PRESETS)}")
        super().__init__(scale=scale)
        self.preset = preset

    def _create(self) -> Any:
        import cv2

        code = {
            "ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST,
            "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
            "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM,
        }[self.preset]
        return cv2.DISOpticalFlow_create(code)

    def _params(self) -> str:
        return f"preset={self.preset},{super()._params()}"


def _optflow_module() -> Any:
    import cv2

    if not hasattr(cv2, "optflow"):
        raise UsageError(
            "this flow method needs OpenCV's contrib modules: install "
            "opencv-contrib-python-headless instead of opencv-python"
        )
    return cv2.optflow


class DeepFlow(_OpenCVEstimator):
    """OpenCV-contrib DeepFlow on grayscale frames (about 1.3 s per 1024x436 pair)."""

    name = "deepflow"

    def _create(self) -> Any:
        return _optflow_module().createOptFlow_DeepFlow()


class DualTVL1Flow(_OpenCVEstimator):
    """OpenCV-contrib Dual TV-L1 on grayscale frames, default parameters (slow)."""

    name = "dualtvl1"

    def _create(self) -> Any:
        return _optflow_module().DualTVL1OpticalFlow_create()


def raft_weights_enum(preset: str) -> Any:
    """The torchvision weight enum (``DEFAULT``) of RAFT ``preset`` ("large" or "small")."""
    from torchvision.models.optical_flow import Raft_Large_Weights, Raft_Small_Weights

    return (Raft_Large_Weights if preset == "large" else Raft_Small_Weights).DEFAULT


def raft_cache_path(preset: str) -> Path:
    """Where torch hub keeps the downloaded RAFT ``preset`` checkpoint (may not exist)."""
    import torch.hub

    url = raft_weights_enum(preset).url
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)


def pad_for_raft(x: torch.Tensor, multiple: int = 8, minimum: int = 128) -> torch.Tensor:
    """Replicate-pad (B, C, H, W) at the right and bottom to a multiple of ``multiple``
    that is at least ``minimum`` pixels in each direction."""
    h, w = x.shape[-2:]
    th = max(minimum, math.ceil(h / multiple) * multiple)
    tw = max(minimum, math.ceil(w / multiple) * multiple)
    if (th, tw) == (h, w):
        return x
    return F.pad(x, (0, tw - w, 0, th - h), mode="replicate")


class RaftFlow(_Estimator):
    """torchvision RAFT (Teed & Deng 2020), ``raft_large`` or ``raft_small``.

    Weights, in order: ``weights_path`` (a state dict saved with ``torch.save``), else the
    torchvision checkpoint of ``Raft_*_Weights.DEFAULT`` if it is already in the torch hub
    cache (``raft_cache_path``). Nothing is ever downloaded: without weights the first
    ``estimate`` raises :class:`WeightsError`. ``random_weights=True`` builds an untrained
    network (tests only). ``preset``: "large" | "small" (the default is
    :data:`vidstyle.config.DEFAULT_FLOW_PRESET`'s, applied by :func:`make_flow`). Input
    is replicate-padded to a multiple of 8 and at least 128 px, and the flow is cropped
    back.
    """

    name = "raft"

    def __init__(
        self,
        *,
        preset: str,
        scale: float = 1.0,
        weights_path: str | os.PathLike[str] | None = None,
        device: torch.device | str = "cpu",
        num_flow_updates: int = 12,
        random_weights: bool = False,
    ) -> None:
        if preset not in RAFT_PRESETS:
            raise UsageError(f"unknown RAFT preset {preset!r}: use large or small")
        super().__init__(scale=scale)
        self.preset = preset
        self.weights_path = None if weights_path is None else Path(weights_path)
        self.device = torch.device(device)
        self.num_flow_updates = int(num_flow_updates)
        self.random_weights = bool(random_weights)
        self._model: torch.nn.Module | None = None
        self._transforms: Any = None

    def _params(self) -> str:
        if self.random_weights:
            weights = "random"
        elif self.weights_path is not None:
            weights = f"file:{self.weights_path.name}"
        else:
            weights = str(raft_weights_enum(self.preset))
        return f"preset={self.preset},weights={weights},iters={self.num_flow_updates}"

    def check(self) -> None:
        self.load()

    def load(self) -> torch.nn.Module:
        """Build the network and load its weights (first call only). Raises WeightsError."""
        if self._model is not None:
            return self._model
        from torchvision.models.optical_flow import raft_large, raft_small

        build = raft_large if self.preset == "large" else raft_small
        transforms = None
        if self.random_weights:
            model = build(weights=None, progress=False)
        elif self.weights_path is not None:
            model = build(weights=None, progress=False)
            try:
                state = torch.load(self.weights_path, map_location="cpu", weights_only=True)
                model.load_state_dict(state)
            except FileNotFoundError as exc:
                raise WeightsError(f"RAFT weights file {self.weights_path} not found") from exc
            except (OSError, RuntimeError, KeyError, ValueError) as exc:
                raise WeightsError(
                    f"RAFT weights file {self.weights_path} is not a raft_{self.preset} "
                    f"state dict: {str(exc).splitlines()[0]}"
                ) from exc
        else:
            enum = raft_weights_enum(self.preset)
            cached = raft_cache_path(self.preset)
            if not cached.is_file():
                raise WeightsError(
                    f"RAFT {self.preset} weights not found at {cached}; vidstyle never "
                    f"downloads them: fetch {enum.url} there, or give a RAFT weights file "
                    "with --flow-weights"
                )
            try:
                model = build(weights=enum, progress=False)
            except (OSError, RuntimeError, KeyError, ValueError) as exc:
                raise WeightsError(
                    f"RAFT {self.preset} weights at {cached} are unusable (corrupt, or do not "
                    f"match their hash): {str(exc).splitlines()[0]}"
                ) from exc
            transforms = enum.transforms()
        model.eval().to(self.device)
        log.debug("RAFT %s ready on %s", self.preset, self.device)
        self._model, self._transforms = model, transforms
        return model

    def _estimate(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        model = self.load()
        h, w = a.shape[-2:]
        a = pad_for_raft(a.to(self.device, torch.float32))
        b = pad_for_raft(b.to(self.device, torch.float32))
        if self._transforms is not None:
            a, b = self._transforms(a, b)
        else:
            a, b = a * 2.0 - 1.0, b * 2.0 - 1.0
        with torch.inference_mode():
            flows = model(a.contiguous(), b.contiguous(), num_flow_updates=self.num_flow_updates)
        return flows[-1][:, :, :h, :w].float().clone()


def make_flow(
    method: str = "dis",
    *,
    preset: str | None = None,
    scale: float = 1.0,
    weights_path: str | os.PathLike[str] | None = None,
    device: torch.device | str = "cpu",
) -> FlowEstimator:
    """Build a flow backend by name.

    method: "dis" | "deepflow" | "dualtvl1" | "raft".
    preset: DIS: "ultrafast" | "fast" | "medium"; RAFT: "large" | "small"; DeepFlow and
      TV-L1 have none. None: the method's default (:data:`vidstyle.config.DEFAULT_FLOW_PRESET`,
      the one table of flow defaults).
    scale: in (0, 1]; < 1 estimates at that fraction of the frame size.
    weights_path, device: RAFT only (OpenCV backends run on the CPU).
    Raises UsageError for an unknown method or preset.
    """
    if method not in METHODS:
        raise UsageError(f"unknown flow method {method!r}: use one of {', '.join(METHODS)}")
    if preset is None:
        preset = DEFAULT_FLOW_PRESET[method]
    if method == "dis":
        return DISFlow(preset=str(preset), scale=scale)
    if method == "raft":
        return RaftFlow(preset=str(preset), scale=scale, weights_path=weights_path,
                        device=device)
    if preset is not None:
        raise UsageError(f"--flow {method} has no presets (got {preset!r})")
    return DeepFlow(scale=scale) if method == "deepflow" else DualTVL1Flow(scale=scale)


def flow_from_config(config: FlowConfig, *, device: torch.device | str = "cpu") -> FlowEstimator:
    """The flow backend of a :class:`~vidstyle.config.FlowConfig`."""
    return make_flow(config.method, preset=config.resolved_preset, scale=config.scale,
                     weights_path=config.weights_path, device=device)
