"""Frozen configuration dataclasses. Defaults live here once; the CLI reads them.

Every config has ``fingerprint()``: a short stable hash of its fields plus the package
version, used to decide whether cached work is still valid.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from vidstyle import __version__


def fingerprint_of(*parts: Any) -> str:
    """Stable 16-hex-digit hash of JSON-serializable parts (dataclasses are expanded)."""

    def norm(x: Any) -> Any:
        if dataclasses.is_dataclass(x) and not isinstance(x, type):
            return {f.name: norm(getattr(x, f.name)) for f in dataclasses.fields(x)}
        if isinstance(x, dict):
            return {str(k): norm(v) for k, v in sorted(x.items())}
        if isinstance(x, (list, tuple)):
            return [norm(v) for v in x]
        if isinstance(x, float):
            return repr(x)
        return x

    blob = json.dumps([__version__, [norm(p) for p in parts]], sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


class _Fingerprinted:
    def fingerprint(self) -> str:
        return fingerprint_of(self)

    def replace(self, **changes: Any):  # noqa: ANN201 - returns same type
        return dataclasses.replace(self, **changes)  # type: ignore[type-var]


@dataclass(frozen=True)
class OptimConfig(_Fingerprinted):
    """Gatys et al. optimization settings (per frame).

    Layer defaults are Gatys et al. 2016 for VGG19 (style relu1_1..relu5_1, content
    relu4_2) and Johnson et al. 2016 for VGG16; ``None`` means the network's default.
    Weights are for Gram matrices normalized by C*H*W and mean-squared content error.
    """

    vgg: str = "vgg19"
    size: int = 512
    iters: int = 300
    style_weight: float = 30.0
    content_weight: float = 1.0
    tv_weight: float = 1e3
    style_scale: float = 1.0
    style_layers: tuple[str, ...] | None = None
    content_layers: tuple[str, ...] | None = None
    init: str = "content"
    optimizer: str = "lbfgs"
    lr: float = 0.02
    preserve_color: bool = False
    multiscale: int = 0
    seed: int = 0
    pool: str = "max"

    def levels(self, longest: int) -> list[int]:
        """Longest side of each coarse-to-fine level ending at ``longest``.

        ``multiscale`` 0 means automatic: halve while the level stays >= 128 px, at most
        3 levels; 1 means single scale.
        """
        n = self.multiscale or 3
        sizes = [longest]
        while len(sizes) < n and sizes[-1] // 2 >= 128:
            sizes.append(sizes[-1] // 2)
        return sizes[::-1]


@dataclass(frozen=True)
class TemporalConfig(_Fingerprinted):
    """Ruder et al. 2016 video settings for the optimization method."""

    mode: str = "none"  # none | short | long
    passes: int = 1
    # gamma of the temporal loss (RGB in [0, 1], content_weight 1, Caffe VGG features).
    # The paper's gamma/alpha = 200/5 on 0-255 pixels is 2.6e6 here; tuned to 1e8 with
    # benchmarks/eval_temporal.py, since warm-started frames get few iterations.
    temporal_weight: float = 1e8
    long_term: tuple[int, ...] = (1, 10, 20, 40)
    blend_delta: float = 0.8  # tuned: long+passes <= short on vtest and bikes (RESULTS.md)
    later_frame_iters: float = 0.5  # fraction of iters for warm-started frames


@dataclass(frozen=True)
class FlowConfig(_Fingerprinted):
    method: str = "dis"
    preset: str = "fast"
    scale: float = 1.0
    weights_path: str | None = None


@dataclass(frozen=True)
class EncodeConfig(_Fingerprinted):
    crf: int = 18
    preset: str = "veryfast"
    copy_audio: bool = True


@dataclass(frozen=True)
class FastConfig(_Fingerprinted):
    """Feed-forward network settings (inference)."""

    model: str | None = None  # None: the shipped model (vidstyle/data/weights/)
    size: int | None = None  # longest side; None keeps the input size
    strength: float = 1.0
    stability: float = 0.7  # flow stabilization strength (see vidstyle.fast.stabilize)
    runtime: str = "auto"  # auto | eager | bf16 | fp16 (CUDA) | compile | openvino
    tile: int = 0  # 0: automatic tiling only when a frame is too large


@dataclass(frozen=True)
class RunConfig(_Fingerprinted):
    """Everything a `vidstyle run` needs besides the paths."""

    style: str = "starry"
    method: str = "optim"
    device: str = "auto"
    optim: OptimConfig = field(default_factory=OptimConfig)
    temporal: TemporalConfig = field(default_factory=TemporalConfig)
    flow: FlowConfig = field(default_factory=FlowConfig)
    encode: EncodeConfig = field(default_factory=EncodeConfig)
    fast: FastConfig = field(default_factory=FastConfig)
    max_frames: int | None = None

    def stylize_fingerprint(self) -> str:
        """Fingerprint of what determines stylized frames (not encoding, device, limits)."""
        if self.method == "fast":
            return fingerprint_of(self.method, self.style, self.fast)
        temporal = self.temporal if self.temporal.mode != "none" else None
        flow = self.flow if temporal is not None else None
        return fingerprint_of(self.method, self.style, self.optim, temporal, flow)
