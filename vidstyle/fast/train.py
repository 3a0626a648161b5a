"""Training of the multi-style network (:mod:`vidstyle.fast.net`).

Loss (Johnson et al. / Dumoulin et al.): for a batch of content crops x and style ids s,
``y = net(x, onehot(s))`` and

    L = content_weight * sum_l mean((phi_l(y) - phi_l(x))^2)             (content layers)
      + lambda_s * mean_b sum_l w_l * mean((G(phi_l(y_b)) - G_l[s_b])^2)  (style layers)
      + tv_weight * tv(y)

with lambda_s = style_weight * 10**style_exponent (the paper's strength exponent epsilon),
Grams G normalized by C*H*W (:func:`vidstyle.losses.gram`) and Gram targets of each style
image computed once. Adam. Each sample of a batch draws its own style.

``add_style`` + ``from_model`` train one new style into an existing model: a new
(gamma, beta) row per CIN layer, everything else frozen, so the other styles' outputs do
not change.

Run: :func:`train` with a :class:`TrainConfig` (the CLI wraps it), or
``python -m vidstyle.fast.train key=value ...`` with TrainConfig field names
(tuples comma-separated, e.g. ``styles=starry,wave content_dirs=/data/train``).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw

from vidstyle.errors import InputError, Interrupted, StyleError, UsageError
from vidstyle.fast import model_io
from vidstyle.fast.net import StyleNet
from vidstyle.losses import gram, tv_loss
from vidstyle.workdir import atomic_path

log = logging.getLogger(__name__)

#: The seven named styles of the shipped model, in model order.
DEFAULT_STYLES: tuple[str, ...] = (
    "starry",
    "scream",
    "wave",
    "composition_vii",
    "shipwreck",
    "udnie",
    "woman_with_hat",
)
#: Packaged style images, <name>.<ext>.
PACKAGED_STYLE_DIR = Path(__file__).resolve().parents[1] / "data" / "styles"
#: File names of the named styles in the test-data kit's styles/ folder.
KIT_STYLE_FILES: dict[str, str] = {
    "starry": "starry_night.jpg",
    "scream": "the_scream.jpg",
    "wave": "wave.jpg",
    "composition_vii": "composition_vii.jpg",
    "shipwreck": "shipwreck.jpg",
    "udnie": "udnie.jpg",
    "woman_with_hat": "woman-with-hat-matisse.jpg",
}
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp")
VIDEO_SUFFIXES = (".mp4", ".avi", ".webm", ".mkv", ".mov", ".m4v")


@dataclass(frozen=True)
class TrainConfig:
    """Every setting of a training run. Paths are strings; tuples for lists."""

    #: style names (packaged or found in ``style_dirs``) or ``name=path`` items
    styles: tuple[str, ...] = DEFAULT_STYLES
    #: extra folders searched for ``<name>.*`` and kit file names (after the packaged ones)
    style_dirs: tuple[str, ...] = ()
    #: folders of training photos (searched recursively)
    content_dirs: tuple[str, ...] = ()
    #: video files or folders of videos to sample training frames from (PyAV)
    videos: tuple[str, ...] = ()
    #: frames sampled evenly from each video
    frames_per_video: int = 40
    #: folders never trained on; their images are the held-out samples and evaluation set
    holdout_dirs: tuple[str, ...] = ()
    #: number of held-out images in the sample sheet / evaluation
    num_samples: int = 3
    steps: int = 20000
    #: square crop side in pixels; images are first resized to short side 1.25 * size
    size: int = 256
    batch: int = 8
    lr: float = 1e-3
    #: lambda_s0 (see style_exponent)
    style_weight: float = 1e5
    #: the paper's strength exponent epsilon: lambda_s = style_weight * 10**style_exponent
    style_exponent: float = 0.0
    content_weight: float = 1.0
    tv_weight: float = 0.0
    style_layers: tuple[str, ...] = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
    #: per-style-layer weights (default: all 1/len(style_layers), as vidstyle.optim)
    style_layer_weights: tuple[float, ...] = ()
    content_layers: tuple[str, ...] = ("relu4_2",)
    vgg: str = "vgg19"
    #: explicit loss-network weights file (default: vidstyle.weights resolves it)
    vgg_weights: str = ""
    #: long side of the style images for the Gram targets
    style_size: int = 512
    #: long side of the held-out images in the samples and evaluation
    eval_size: int = 512
    channels: tuple[int, ...] = (16, 32, 64)
    num_res_blocks: int = 3
    outer_kernel: int = 9
    checkpoint_every: int = 1000
    log_every: int = 20
    seed: int = 0
    #: stop cleanly (checkpoint, final model) after this many minutes; 0 = no limit
    max_minutes: float = 0.0
    out_dir: str = "out/train"
    #: continue from out_dir/checkpoint.pt
    resume: bool = False
    #: ``name=image``: train one new style into ``from_model`` (all else frozen)
    add_style: str = ""
    from_model: str = ""
    #: "auto", "cpu" or "cuda"
    device: str = "auto"
    #: "auto" (bf16 autocast where supported), "bf16" or "fp32"
    precision: str = "auto"
    #: dtype of the weights in the final model file: "fp16" or "fp32"
    model_dtype: str = "fp16"
    #: distillation: a model (file or shipped name) whose output the new network learns to
    #: reproduce (mean squared RGB difference times ``distill_weight``, added to the
    #: content/style terms; with content_weight = style_weight = 0 the step skips the VGG,
    #: several times cheaper). The styles are the teacher's. The new network starts from
    #: the teacher's weights where the shapes allow (a smaller outer kernel takes the
    #: centre of the teacher's), so a cheaper architecture is a short fine-tune.
    teacher: str = ""
    distill_weight: float = 1.0

    @property
    def style_lambda(self) -> float:
        """lambda_s = style_weight * 10**style_exponent."""
        return self.style_weight * 10.0**self.style_exponent

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (lists for tuples) for checkpoints, logs and manifests."""
        return {
            k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()
        }


@dataclass(frozen=True)
class TrainProgress:
    """One progress report: interval means of the loss terms (already weighted)."""

    step: int
    total_steps: int
    losses: dict[str, float]
    elapsed_s: float


@dataclass(frozen=True)
class TrainResult:
    """What a finished (or time-limited) run wrote."""

    model_path: Path
    model_sha256: str
    checkpoint_path: Path
    log_path: Path
    curves_path: Path | None
    samples_path: Path | None
    steps: int
    stopped_early: bool
    style_names: tuple[str, ...]
    #: last logged interval means of the weighted loss terms
    final_losses: dict[str, float]
    #: per style: mean unweighted style/content loss on the held-out images
    eval_losses: dict[str, dict[str, float]]
    elapsed_s: float


class LossNet(Protocol):
    """What training needs of a loss network (e.g. :class:`vidstyle.vgg.VGGFeatures`)."""

    def __call__(
        self, x: torch.Tensor, layers: Sequence[str]
    ) -> dict[str, torch.Tensor]: ...  # pragma: no cover


# --- inputs -------------------------------------------------------------------------------


def resolve_style(spec: str, style_dirs: Sequence[str] = ()) -> tuple[str, Path]:
    """``name`` or ``name=path`` -> (name, image path). Raises StyleError if not found.

    A bare name is looked up as ``<name>.<ext>`` in the packaged styles, then in each of
    ``style_dirs`` (also under its test-kit file name, e.g. starry -> starry_night.jpg).
    """
    if "=" in spec:
        name, _, p = spec.partition("=")
        path = Path(p).expanduser()
        if not name or not path.is_file():
            raise StyleError(f"style image not found for {spec!r}")
        return name, path
    name = spec
    for d in (PACKAGED_STYLE_DIR, *map(Path, style_dirs)):
        candidates = [d / f"{name}{ext}" for ext in IMAGE_SUFFIXES]
        if name in KIT_STYLE_FILES:
            candidates.append(d / KIT_STYLE_FILES[name])
        for c in candidates:
            if c.is_file():
                return name, c
    raise StyleError(f"unknown style {name!r}: no image found (use name=path)")


def _load_rgb(path: Path) -> Image.Image:
    try:
        with Image.open(path) as im:
            return im.convert("RGB")
    except OSError as e:
        raise InputError(f"cannot read image {path}: {e}") from e


def _resize_short(im: Image.Image, short: int) -> Image.Image:
    w, h = im.size
    s = short / min(w, h)
    return im.resize((max(short, round(w * s)), max(short, round(h * s))), Image.BICUBIC)


def _resize_long(im: Image.Image, long: int) -> Image.Image:
    w, h = im.size
    s = long / max(w, h)
    return im.resize((max(1, round(w * s)), max(1, round(h * s))), Image.BICUBIC)


def _pil_to_tensor(im: Image.Image) -> torch.Tensor:
    """PIL RGB -> (3, H, W) uint8."""
    return torch.from_numpy(np.asarray(im, dtype=np.uint8).copy()).permute(2, 0, 1).contiguous()


def _under(path: Path, dirs: Sequence[Path]) -> bool:
    rp = path.resolve()
    return any(rp == d or d in rp.parents for d in dirs)


def list_images(dirs: Sequence[str], exclude: Sequence[str] = ()) -> list[Path]:
    """Image files under ``dirs`` (recursive, sorted), minus any under ``exclude``."""
    ex = [Path(d).resolve() for d in exclude]
    out: list[Path] = []
    for d in dirs:
        p = Path(d)
        if not p.is_dir():
            raise InputError(f"content folder not found: {p}")
        for f in sorted(p.rglob("*")):
            if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file():
                if _under(f, ex):
                    log.warning("skipping held-out image %s", f)
                    continue
                out.append(f)
    return out


def sample_video_frames(path: Path, count: int) -> list[Image.Image]:
    """About ``count`` RGB frames spread evenly over the video at ``path`` (PyAV)."""
    import av

    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            total = stream.frames or 0
            if total <= 0 and stream.duration and stream.average_rate:
                total = int(stream.duration * stream.time_base * stream.average_rate)
            stride = max(1, total // max(1, count)) if total > 0 else 10
            frames = []
            for i, frame in enumerate(container.decode(stream)):
                if i % stride == 0:
                    frames.append(frame.to_image().convert("RGB"))
                    if len(frames) >= count:
                        break
            return frames
    except av.FFmpegError as e:
        raise InputError(f"cannot decode video {path}: {e}") from e


def _video_files(items: Sequence[str]) -> list[Path]:
    out: list[Path] = []
    for it in items:
        p = Path(it)
        if p.is_dir():
            out += sorted(f for f in p.iterdir() if f.suffix.lower() in VIDEO_SUFFIXES)
        elif p.is_file():
            out.append(p)
        else:
            raise InputError(f"video not found: {p}")
    return out


class _ContentPool:
    """Training images as uint8 (3, H, W) tensors with short side >= crop * 1.25, on device."""

    def __init__(self, images: list[torch.Tensor], size: int) -> None:
        self.images = images
        self.size = size

    def batch(self, n: int, gen: torch.Generator) -> torch.Tensor:
        """Random crops with random horizontal flips -> (n, 3, size, size) float in [0, 1]."""
        idx = torch.randint(len(self.images), (n,), generator=gen).tolist()
        r = torch.rand(n, 3, generator=gen).tolist()
        crops = []
        for i, (ry, rx, rf) in zip(idx, r, strict=True):
            im = self.images[i]
            _, h, w = im.shape
            y = int(ry * (h - self.size + 1))
            x = int(rx * (w - self.size + 1))
            c = im[:, y : y + self.size, x : x + self.size]
            crops.append(c.flip(-1) if rf < 0.5 else c)
        return torch.stack(crops).float().div_(255.0)


def _build_pool(config: TrainConfig, device: torch.device) -> _ContentPool:
    short = round(config.size * 1.25)
    files = list_images(config.content_dirs, exclude=config.holdout_dirs)
    pils: list[Image.Image] = [_load_rgb(f) for f in files]
    n_photos = len(pils)
    for v in _video_files(config.videos):
        if _under(v, [Path(d).resolve() for d in config.holdout_dirs]):
            continue
        pils += sample_video_frames(v, config.frames_per_video)
    if not pils:
        raise InputError("no training images: give content_dirs and/or videos")
    images = [_pil_to_tensor(_resize_short(im, short)).to(device) for im in pils]
    log.info("training pool: %d photos + %d video frames", n_photos, len(pils) - n_photos)
    return _ContentPool(images, config.size)


def holdout_images(config: TrainConfig) -> list[torch.Tensor]:
    """Up to num_samples held-out images, long side eval_size, each (1, 3, H, W) float."""
    files: list[Path] = []
    for d in config.holdout_dirs:
        p = Path(d)
        if p.is_dir():
            files += sorted(f for f in p.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
    if not files or config.num_samples <= 0:
        return []
    # spread the picks over the folder (the kit's first files are similar city shots)
    n = min(config.num_samples, len(files))
    pick = [files[round(i * (len(files) - 1) / max(1, n - 1))] for i in range(n)]
    out = []
    for f in pick:
        im = _resize_long(_load_rgb(f), config.eval_size)
        out.append(_pil_to_tensor(im).unsqueeze(0).float().div_(255.0))
    return out


# --- training -----------------------------------------------------------------------------


def _pick_device(name: str) -> torch.device:
    from vidstyle.device import pick_device

    return pick_device(name)


def _use_bf16(precision: str, device: torch.device) -> bool:
    if precision == "fp32":
        return False
    if precision == "bf16":
        return True
    if precision != "auto":
        raise UsageError(f"precision must be auto, bf16 or fp32, got {precision!r}")
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    try:
        return bool(
            torch.backends.mkldnn.is_available()
            and torch.ops.mkldnn._is_mkldnn_bf16_supported()
        )
    except (AttributeError, RuntimeError):
        return False


def _load_loss_net(config: TrainConfig, device: torch.device, layers: Sequence[str]) -> LossNet:
    from vidstyle.vgg import load_vgg

    order = [f"relu{b}_{i}" for b in range(1, 6) for i in range(1, 5)]
    last = max(layers, key=lambda name: order.index(name) if name in order else -1)
    net = load_vgg(
        config.vgg,
        device=device,
        weights_path=config.vgg_weights or None,
        truncate_after=last,
    )
    return net


def _validate(config: TrainConfig) -> None:
    if config.size < 16 or config.batch < 1 or config.steps < 0 or config.lr <= 0:
        raise UsageError("size >= 16, batch >= 1, steps >= 0 and lr > 0 are required")
    if config.style_layer_weights and len(config.style_layer_weights) != len(config.style_layers):
        raise UsageError("style_layer_weights needs one weight per style layer")
    if bool(config.add_style) != bool(config.from_model):
        raise UsageError("add_style and from_model go together")
    if config.add_style and "=" not in config.add_style:
        raise UsageError("add_style takes name=image")
    if config.model_dtype not in ("fp16", "fp32"):
        raise UsageError("model_dtype must be fp16 or fp32")
    if config.teacher and config.add_style:
        raise UsageError("teacher and add_style do not go together")
    if config.teacher and config.distill_weight <= 0:
        raise UsageError("distill_weight must be > 0 with a teacher")


def _style_targets(
    loss_net: LossNet,
    paths: Sequence[Path],
    config: TrainConfig,
    device: torch.device,
) -> dict[str, torch.Tensor]:
    """Gram targets: layer -> (S, C, C) float32, one row per style image."""
    per_layer: dict[str, list[torch.Tensor]] = {k: [] for k in config.style_layers}
    with torch.no_grad():
        for p in paths:
            im = _resize_long(_load_rgb(p), config.style_size)
            x = _pil_to_tensor(im).unsqueeze(0).float().div_(255.0).to(device)
            feats = loss_net(x, list(config.style_layers))
            for k in config.style_layers:
                per_layer[k].append(gram(feats[k].float())[0])
    return {k: torch.stack(v) for k, v in per_layer.items()}


def _losses(
    net: StyleNet,
    loss_net: LossNet,
    x: torch.Tensor,
    style_ids: torch.Tensor,
    targets: Mapping[str, torch.Tensor],
    config: TrainConfig,
    layer_w: Mapping[str, float],
    bf16: bool,
    teacher: StyleNet | None = None,
) -> dict[str, torch.Tensor]:
    """Weighted loss terms for content batch x (B, 3, H, W) and style ids (B,)."""
    dev = x.device.type
    w = F.one_hot(style_ids, net.num_styles).float()
    layers = list(dict.fromkeys([*config.style_layers, *config.content_layers]))
    perceptual = config.content_weight != 0 or config.style_lambda != 0 or teacher is None
    with torch.autocast(dev, dtype=torch.bfloat16, enabled=bf16):
        y = net(x, w)
        if teacher is not None:
            with torch.no_grad():
                ty = teacher(x, w)
        if perceptual:  # pure distillation needs no loss network at all
            fy = loss_net(y, layers)
            with torch.no_grad():
                fx = loss_net(x, list(config.content_layers))
    with torch.autocast(dev, enabled=False):
        distill = (None if teacher is None
                   else config.distill_weight * torch.mean((y.float() - ty.float()) ** 2))
        if not perceptual:
            zero = distill.new_zeros(())
            return {"content": zero, "style": zero, "tv": zero, "distill": distill,
                    "loss": distill}
        content = sum(
            torch.mean((fy[k].float() - fx[k].float()) ** 2) for k in config.content_layers
        )
        style = y.new_zeros((), dtype=torch.float32)
        for k in config.style_layers:
            g = gram(fy[k].float())
            style = style + layer_w[k] * torch.mean((g - targets[k][style_ids]) ** 2)
        tv = tv_loss(y.float())
        terms = {
            "content": config.content_weight * content,
            "style": config.style_lambda * style,
            "tv": config.tv_weight * tv,
        }
        terms["loss"] = terms["content"] + terms["style"] + terms["tv"]
        if distill is not None:
            terms["distill"] = distill
            terms["loss"] = terms["loss"] + distill
    return terms


def _atomic_write_text(path: Path, text: str) -> None:
    with atomic_path(path, suffix=".tmp") as tmp:
        tmp.write_text(text, encoding="utf-8")


def _atomic_save_png(im: Image.Image, path: Path) -> None:
    with atomic_path(path, suffix=".tmp") as tmp:
        im.save(tmp, format="PNG")


_RESUME_KEYS = (
    "styles",
    "size",
    "batch",
    "style_layers",
    "content_layers",
    "channels",
    "num_res_blocks",
    "outer_kernel",
    "add_style",
    "seed",
    "teacher",
)


def train(
    config: TrainConfig,
    *,
    loss_net: LossNet | None = None,
    progress: Callable[[TrainProgress], None] | None = None,
) -> TrainResult:
    """Train (or resume, or add a style to) a multi-style network as ``config`` says.

    Writes into ``config.out_dir``: checkpoint.pt (every ``checkpoint_every`` steps and at
    the end), losses.jsonl, model.pt (final, fp16 by default), curves.png, samples.png.
    ``loss_net`` replaces the VGG named in the config (tests pass tiny nets).
    ``progress`` is called every ``log_every`` steps. Ctrl-C checkpoints and raises
    :class:`~vidstyle.errors.Interrupted`.
    """
    _validate(config)
    t0 = time.monotonic()
    device = _pick_device(config.device)
    bf16 = _use_bf16(config.precision, device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    out_dir = Path(config.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ckpt_path = out_dir / "checkpoint.pt"
    log_path = out_dir / "losses.jsonl"

    # styles and the network
    adding = bool(config.add_style)
    teacher_model: model_io.LoadedModel | None = None
    if adding:
        base = model_io.load_model(config.from_model)
        new_name, new_path = resolve_style(config.add_style, config.style_dirs)
        if new_name in base.style_names:
            raise UsageError(f"model already has a style named {new_name!r}")
        style_names = (*base.style_names, new_name)
        target_paths = [new_path]
        torch.manual_seed(config.seed)
        net = _extend(base.net, 1)
    else:
        if config.teacher:
            teacher_model = _load_teacher(config.teacher)
        styles = teacher_model.style_names if teacher_model is not None else config.styles
        resolved = [resolve_style(s, config.style_dirs) for s in styles]
        style_names = tuple(n for n, _ in resolved)
        if len(set(style_names)) != len(style_names):
            raise UsageError(f"duplicate style names: {style_names}")
        target_paths = [p for _, p in resolved]
        torch.manual_seed(config.seed)
        net = StyleNet(
            num_styles=len(style_names),
            channels=config.channels,
            num_res_blocks=config.num_res_blocks,
            outer_kernel=config.outer_kernel,
        )
        if teacher_model is not None:
            copied = init_from_teacher(net, teacher_model.net)
            log.info("student initialized from the teacher: %d of %d tensors", copied,
                     len(net.state_dict()))
    teacher = None
    if teacher_model is not None:
        teacher = teacher_model.net.float().eval().requires_grad_(False)
        teacher = teacher.to(device, memory_format=torch.channels_last)
    net.train()
    if adding:
        for name, p in net.named_parameters():
            trainable = name.endswith((".gamma", ".beta"))
            p.requires_grad_(trainable)
        mask = torch.zeros(net.num_styles, 1)
        mask[-1] = 1.0
    net = net.to(device, memory_format=torch.channels_last)
    params = [p for p in net.parameters() if p.requires_grad]
    if adding:
        mask = mask.to(device)
        for p in params:
            p.register_hook(lambda g, m=mask: g * m)
    opt = torch.optim.Adam(params, lr=config.lr)
    gen = torch.Generator().manual_seed(config.seed)

    step = 0
    prior_elapsed = 0.0
    if config.resume and ckpt_path.is_file():
        ck = torch.load(ckpt_path, map_location="cpu", weights_only=True)
        old = ck["config"]
        defaults = TrainConfig().to_dict()  # keys newer than the checkpoint: their default
        diff = [k for k in _RESUME_KEYS if old.get(k, defaults[k]) != config.to_dict()[k]]
        if diff or ck["style_names"] != list(style_names):
            raise UsageError(f"cannot resume {ckpt_path}: settings changed ({', '.join(diff)})")
        net.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        gen.set_state(ck["rng"])
        step = int(ck["step"])
        prior_elapsed = float(ck.get("elapsed_s", 0.0))
        _truncate_log(log_path, step)
        log.info("resumed from %s at step %d", ckpt_path, step)
    elif config.resume:
        log.warning("no checkpoint at %s: starting fresh", ckpt_path)
    if step == 0 and log_path.exists():
        log_path.unlink()

    if loss_net is None:
        loss_net = _load_loss_net(
            config, device, [*config.style_layers, *config.content_layers]
        )
        loss_net = loss_net.to(device, memory_format=torch.channels_last)
    targets = _style_targets(loss_net, target_paths, config, device)
    if adding:  # rows for the old styles are never used: fill with the new one's
        targets = {k: v.expand(net.num_styles, -1, -1).contiguous() for k, v in targets.items()}
    layer_w = dict(
        zip(
            config.style_layers,
            config.style_layer_weights
            or (1.0 / len(config.style_layers),) * len(config.style_layers),
            strict=True,
        )
    )
    pool = _build_pool(config, device)
    holdout = holdout_images(config)

    def save_checkpoint() -> None:
        payload = {
            "format": "vidstyle.train-checkpoint",
            "step": step,
            "style_names": list(style_names),
            "arch": net.arch(),
            "model": {k: v.detach().cpu() for k, v in net.state_dict().items()},
            "optimizer": _to_cpu(opt.state_dict()),
            "rng": gen.get_state(),
            "config": config.to_dict(),
            "elapsed_s": prior_elapsed + time.monotonic() - t_start,
        }
        model_io._atomic_torch_save(payload, ckpt_path)

    t_start = time.monotonic()
    limit_s = config.max_minutes * 60.0 if config.max_minutes > 0 else math.inf
    sums: dict[str, torch.Tensor] = {}
    count = 0
    last: dict[str, float] = {}
    stopped_early = False
    log_f = open(log_path, "a", encoding="utf-8")  # noqa: SIM115 - closed in finally
    try:
        while step < config.steps:
            if time.monotonic() - t0 >= limit_s:
                stopped_early = True
                log.info("time limit reached at step %d", step)
                break
            x = pool.batch(config.batch, gen).to(device, memory_format=torch.channels_last)
            if adding:
                ids = torch.full((config.batch,), net.num_styles - 1, dtype=torch.long)
            else:
                ids = torch.randint(net.num_styles, (config.batch,), generator=gen)
            ids = ids.to(device)
            terms = _losses(net, loss_net, x, ids, targets, config, layer_w, bf16, teacher)
            opt.zero_grad(set_to_none=True)
            terms["loss"].backward()
            opt.step()
            step += 1
            for k, v in terms.items():
                sums[k] = sums.get(k, 0.0) + v.detach()
            count += 1
            if step % config.log_every == 0 or step == config.steps:
                last = {k: float(v) / count for k, v in sums.items()}
                if not all(math.isfinite(v) for v in last.values()):
                    raise UsageError(f"training diverged at step {step}: {last}")
                elapsed = prior_elapsed + time.monotonic() - t_start
                rec = {"step": step, **last, "elapsed_s": round(elapsed, 2)}
                log_f.write(json.dumps(rec) + "\n")
                log_f.flush()
                sums, count = {}, 0
                if progress is not None:
                    progress(TrainProgress(step, config.steps, dict(last), elapsed))
            if config.checkpoint_every > 0 and step % config.checkpoint_every == 0:
                save_checkpoint()
    except KeyboardInterrupt:
        save_checkpoint()
        raise Interrupted(f"training interrupted at step {step}; resume with resume=true") from None
    finally:
        log_f.close()
    if count:  # the steps after the last log record (time limit, or steps % log_every)
        last = {k: float(v) / count for k, v in sums.items()}
        elapsed = prior_elapsed + time.monotonic() - t_start
        with open(log_path, "a", encoding="utf-8") as f:
            f.write(json.dumps({"step": step, **last, "elapsed_s": round(elapsed, 2)}) + "\n")
    save_checkpoint()

    net.eval()
    info = {
        "steps": step,
        "config": config.to_dict(),
        "final_losses": last,
        "bf16": bf16,
        "device": str(device),
    }
    eval_losses = _evaluate(
        net, loss_net, holdout, targets, config, layer_w, device, style_names
    )
    info["eval_losses"] = eval_losses
    model_path = out_dir / "model.pt"
    sha = model_io.save_model(
        model_path,
        net,
        style_names=style_names,
        dtype=torch.float16 if config.model_dtype == "fp16" else torch.float32,
        info=info,
    )
    curves_path = out_dir / "curves.png"
    plot_curves(log_path, curves_path)
    samples_path: Path | None = None
    if holdout:
        samples_path = out_dir / "samples.png"
        sample_sheet(net, holdout, style_names, samples_path, device)
    return TrainResult(
        model_path=model_path,
        model_sha256=sha,
        checkpoint_path=ckpt_path,
        log_path=log_path,
        curves_path=curves_path if curves_path.exists() else None,
        samples_path=samples_path,
        steps=step,
        stopped_early=stopped_early,
        style_names=style_names,
        final_losses=last,
        eval_losses=eval_losses,
        elapsed_s=time.monotonic() - t0,
    )


def _to_cpu(obj: Any) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_to_cpu(v) for v in obj]
    return obj


def _load_teacher(spec: str) -> model_io.LoadedModel:
    """A model file or a shipped model name (see ``vidstyle styles``)."""
    from vidstyle.fast.runtime import resolve_model

    return resolve_model(spec, "cpu")[0]


def init_from_teacher(student: StyleNet, teacher: StyleNet) -> int:
    """Copy the teacher's weights into ``student`` where they fit; returns how many tensors.

    Same-shape tensors are copied; a conv kernel larger in the teacher (e.g. the 9x9 outer
    convolutions into a 5x5 student) contributes its centre. Everything else keeps the
    student's initialization. Both networks need the same number of styles.
    """
    if student.num_styles != teacher.num_styles:
        raise UsageError("the student and the teacher need the same styles")
    own = student.state_dict()
    copied = 0
    with torch.no_grad():
        for k, v in teacher.state_dict().items():
            if k not in own:
                continue
            dst, src = own[k], v.float()
            if dst.shape == src.shape:
                dst.copy_(src)
            elif (dst.dim() == 4 and dst.shape[:2] == src.shape[:2]
                  and src.shape[2] > dst.shape[2] and src.shape[3] > dst.shape[3]):
                oy = (src.shape[2] - dst.shape[2]) // 2
                ox = (src.shape[3] - dst.shape[3]) // 2
                dst.copy_(src[:, :, oy : oy + dst.shape[2], ox : ox + dst.shape[3]])
            else:
                continue
            copied += 1
    return copied


def _extend(net: StyleNet, extra: int) -> StyleNet:
    """Copy of ``net`` with ``extra`` new style rows, each the mean of the existing rows."""
    new = StyleNet(
        num_styles=net.num_styles + extra,
        channels=net.channels,
        num_res_blocks=net.num_res_blocks,
        outer_kernel=net.outer_kernel,
    )
    state = {}
    for k, v in net.state_dict().items():
        if k.endswith((".gamma", ".beta")):
            v = torch.cat([v, v.mean(0, keepdim=True).expand(extra, -1)])
        state[k] = v.float()
    new.load_state_dict(state)
    return new


def _truncate_log(path: Path, step: int) -> None:
    """Drop log records after ``step`` (written after the checkpoint we resume from)."""
    if not path.exists():
        return
    keep = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            if json.loads(line)["step"] <= step:
                keep.append(line)
        except (ValueError, KeyError):
            continue
    _atomic_write_text(path, "".join(k + "\n" for k in keep))


@torch.no_grad()
def _evaluate(
    net: StyleNet,
    loss_net: LossNet,
    images: Sequence[torch.Tensor],
    targets: Mapping[str, torch.Tensor],
    config: TrainConfig,
    layer_w: Mapping[str, float],
    device: torch.device,
    style_names: Sequence[str],
) -> dict[str, dict[str, float]]:
    """Per style name: mean unweighted style and content loss on the held-out images."""
    if not images:
        return {}
    out: dict[str, dict[str, float]] = {}
    for s, name in enumerate(style_names):
        st = ct = 0.0
        for im in images:
            x = im.to(device)
            w = F.one_hot(torch.tensor([s], device=device), net.num_styles).float()
            y = net(x, w)
            layers = list(dict.fromkeys([*config.style_layers, *config.content_layers]))
            fy = loss_net(y, layers)
            fx = loss_net(x, list(config.content_layers))
            for k in config.style_layers:
                g = gram(fy[k].float())
                st += layer_w[k] * float(torch.mean((g - targets[k][s : s + 1]) ** 2))
            ct += sum(float(torch.mean((fy[k] - fx[k]) ** 2)) for k in config.content_layers)
        out[name] = {"style": st / len(images), "content": ct / len(images)}
    return out


# --- pictures (PIL only: no matplotlib) ---------------------------------------------------


def plot_curves(log_path: Path, out: Path, width: int = 900, height: int = 500) -> None:
    """log10 of each loss term against the step, drawn with PIL."""
    recs = []
    if log_path.exists():
        for line in log_path.read_text(encoding="utf-8").splitlines():
            try:
                recs.append(json.loads(line))
            except ValueError:
                continue
    if len(recs) < 2:
        return
    keys = [k for k in ("loss", "content", "style", "tv") if k in recs[0]]
    colors = {"loss": (0, 0, 0), "content": (31, 119, 180), "style": (214, 39, 40),
              "tv": (44, 160, 44)}
    steps = [r["step"] for r in recs]
    series = {
        k: [math.log10(r[k]) if r.get(k, 0) > 0 else None for r in recs] for k in keys
    }
    vals = [v for s in series.values() for v in s if v is not None]
    lo, hi = math.floor(min(vals)), math.ceil(max(vals))
    hi = max(hi, lo + 1)
    im = Image.new("RGB", (width, height), "white")
    d = ImageDraw.Draw(im)
    left, right, top, bottom = 60, width - 20, 20, height - 40
    d.rectangle([left, top, right, bottom], outline=(0, 0, 0))

    def px(s: float, v: float) -> tuple[float, float]:
        x = left + (s - steps[0]) / max(1, steps[-1] - steps[0]) * (right - left)
        y = bottom - (v - lo) / (hi - lo) * (bottom - top)
        return x, y

    for e in range(lo, hi + 1):
        _, y = px(steps[0], e)
        d.line([left, y, right, y], fill=(225, 225, 225))
        d.text((5, y - 6), f"1e{e}", fill=(0, 0, 0))
    for i in range(5):
        s = steps[0] + (steps[-1] - steps[0]) * i / 4
        x, _ = px(s, lo)
        d.text((x - 15, bottom + 5), f"{int(s)}", fill=(0, 0, 0))
    d.text(((left + right) // 2 - 15, bottom + 22), "step", fill=(0, 0, 0))
    for j, k in enumerate(keys):
        pts = [px(s, v) for s, v in zip(steps, series[k], strict=True) if v is not None]
        if len(pts) > 1:
            d.line(pts, fill=colors[k], width=2)
        d.text((right - 120, top + 8 + 14 * j), f"{k} (log10)", fill=colors[k])
    out.parent.mkdir(parents=True, exist_ok=True)
    _atomic_save_png(im, out)


@torch.no_grad()
def sample_sheet(
    net: StyleNet,
    images: Sequence[torch.Tensor],
    style_names: Sequence[str],
    out: Path,
    device: torch.device,
    cell: tuple[int, int] = (240, 320),
) -> None:
    """Grid: one row per held-out image; the input, then each style's output.

    Every cell is a (height, width) = ``cell`` box with the image fitted inside on white.
    """
    ch, cw = cell
    label_h = 16
    cols = 1 + net.num_styles
    sheet = Image.new("RGB", (cols * cw, label_h + len(images) * ch), "white")
    d = ImageDraw.Draw(sheet)
    for j, name in enumerate(["input", *style_names]):
        d.text((j * cw + 4, 2), name, fill=(0, 0, 0))
    for i, im in enumerate(images):
        x = im.to(device)
        cells = [x]
        for s in range(net.num_styles):
            w = F.one_hot(torch.tensor([s], device=device), net.num_styles).float()
            cells.append(net(x, w))
        h, w_ = x.shape[-2:]
        scale = min(ch / h, cw / w_)
        size = (max(1, round(h * scale)), max(1, round(w_ * scale)))
        for j, c in enumerate(cells):
            c = F.interpolate(c.float(), size=size, mode="bilinear", antialias=True,
                              align_corners=False)
            arr = c[0].clamp(0, 1).mul(255).round().byte().permute(1, 2, 0).cpu().numpy()
            top = label_h + i * ch + (ch - size[0]) // 2
            left = j * cw + (cw - size[1]) // 2
            sheet.paste(Image.fromarray(arr), (left, top))
    _atomic_save_png(sheet, out)


# --- command-line entry (no argparse: key=value pairs of TrainConfig fields) --------------


def config_from_pairs(pairs: Sequence[str], base: TrainConfig | None = None) -> TrainConfig:
    """``["steps=100", "styles=starry,wave", ...]`` -> TrainConfig (UsageError if bad)."""
    cfg = base or TrainConfig()
    defaults = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(TrainConfig)}
    changes: dict[str, Any] = {}
    for item in pairs:
        key, sep, raw = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or key not in defaults:
            raise UsageError(f"expected field=value with a TrainConfig field, got {item!r}")
        cur = defaults[key]
        try:
            if isinstance(cur, bool):
                if raw.lower() not in ("1", "0", "true", "false", "yes", "no"):
                    raise ValueError(raw)
                val: Any = raw.lower() in ("1", "true", "yes")
            elif isinstance(cur, int):
                val = int(raw)
            elif isinstance(cur, float):
                val = float(raw)
            elif isinstance(cur, tuple):
                parts = [p for p in raw.split(",") if p]
                if key == "channels":
                    val = tuple(int(p) for p in parts)
                elif key == "style_layer_weights":
                    val = tuple(float(p) for p in parts)
                else:
                    val = tuple(parts)
            else:
                val = raw
        except ValueError:
            raise UsageError(f"bad value for {key}: {raw!r}") from None
        changes[key] = val
    return dataclasses.replace(cfg, **changes)


#: Settings of one invocation (a time limit, the machine), not of the run: a resume does not
#: inherit them from the checkpoint.
_PER_INVOCATION = ("max_minutes", "device", "precision")


def saved_config(out_dir: str | Path) -> TrainConfig | None:
    """The settings stored in ``out_dir/checkpoint.pt`` (None when there is none).

    What ``vidstyle train --out DIR --resume`` continues with: the run's own settings, so a
    resume needs no repeat of the original options (those given again override these).
    Fields newer than the checkpoint take their defaults; unknown old fields are ignored;
    the per-invocation settings (time limit, device, precision) are not carried over.
    """
    path = Path(out_dir) / "checkpoint.pt"
    if not path.is_file():
        return None
    try:
        ck = torch.load(path, map_location="cpu", weights_only=True)
        stored = dict(ck["config"])
    except Exception as exc:  # noqa: BLE001 - any unreadable checkpoint is one user error
        raise InputError(f"cannot read checkpoint {path}: {exc}") from None
    fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    defaults = TrainConfig()
    values: dict[str, Any] = {}
    for key, value in stored.items():
        if key not in fields or key in _PER_INVOCATION:
            continue
        if isinstance(getattr(defaults, key), tuple) and isinstance(value, list):
            value = tuple(value)
        values[key] = value
    values.update(out_dir=str(out_dir), resume=True)
    return dataclasses.replace(defaults, **values)


def _cli_progress() -> Callable[[TrainProgress], None]:
    """tqdm bar when tqdm is importable, else a line per report on stderr."""
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover - the device image may lack it
        tqdm = None
    state: dict[str, Any] = {}

    def report(p: TrainProgress) -> None:
        text = " ".join(f"{k}={v:.4g}" for k, v in p.losses.items())
        if tqdm is None or not sys.stderr.isatty():
            print(f"step {p.step}/{p.total_steps} {p.elapsed_s:.0f}s {text}", file=sys.stderr,
                  flush=True)
            return
        bar = state.get("bar")
        if bar is None:
            bar = state["bar"] = tqdm(total=p.total_steps, initial=0, unit="step")
        bar.update(p.step - bar.n)
        bar.set_postfix_str(text)

    return report


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m vidstyle.fast.train field=value ...``; prints a JSON summary last."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    config = config_from_pairs(list(sys.argv[1:] if argv is None else argv))
    result = train(config, progress=_cli_progress())
    summary = {
        k: (str(v) if isinstance(v, Path) else v)
        for k, v in dataclasses.asdict(result).items()
    }
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
