"""The training run: :func:`train` sets up the network, the inputs and the optimizer, runs
Adam steps on the objective of :mod:`.objective`, checkpoints (exact resume) and writes the
final model and reports."""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from vidstyle.device import pick_device
from vidstyle.errors import Interrupted, UsageError
from vidstyle.fast import model_io
from vidstyle.fast.adjustable import AdjustableStyleNet
from vidstyle.fast.net import StyleNet
from vidstyle.vgg import load_vgg

from .adjustable import adjustable_terms, init_adjustable, sample_alpha
from .config import TrainConfig, flag, resume_conflicts
from .data import build_pool, holdout_images, resolve_style
from .objective import (
    LossNet,
    evaluate,
    style_layer_weights,
    style_targets,
    synthetic_motion,
    training_terms,
)
from .report import (
    TrainProgress,
    TrainResult,
    atomic_write_text,
    plot_curves,
    sample_sheet,
)
from .surgery import (
    extend_styles,
    init_from_teacher,
    load_teacher,
    tie_output_phases_,
    train_only_last_style,
)

log = logging.getLogger(__name__)


def _use_bf16(precision: str, device: torch.device) -> bool:
    """Whether to train in bf16 autocast (``precision`` "auto": where supported)."""
    if precision != "auto":
        return precision == "bf16"
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
    order = [f"relu{b}_{i}" for b in range(1, 6) for i in range(1, 5)]
    last = max(layers, key=lambda name: order.index(name) if name in order else -1)
    return load_vgg(
        config.vgg,
        device=device,
        weights_path=config.vgg_weights,
        truncate_after=last,
    )


def _network(
    config: TrainConfig, *, fresh: bool = True,
) -> tuple[StyleNet | AdjustableStyleNet, tuple[str, ...], list[Path],
           model_io.LoadedModel | None]:
    """(network on the CPU, style names, images of the styles to train, teacher or None).

    fresh: False when a checkpoint will replace the weights (a resume): a student is then
    not initialized (its ``--from`` file need not exist any more)."""
    if config.add_style:
        base = model_io.load_model(config.from_model)
        new_name, new_path = resolve_style(config.add_style, config.style_dirs)
        if new_name in base.style_names:
            raise UsageError(f"model already has a style named {new_name!r}")
        torch.manual_seed(config.seed)
        return extend_styles(base.net, 1), (*base.style_names, new_name), [new_path], None
    teacher = load_teacher(config.teacher) if config.teacher else None
    styles = teacher.style_names if teacher is not None else config.styles
    resolved = [resolve_style(s, config.style_dirs) for s in styles]
    style_names = tuple(n for n, _ in resolved)
    if len(set(style_names)) != len(style_names):
        raise UsageError(f"duplicate style names: {style_names}")
    torch.manual_seed(config.seed)
    if config.adjustable:
        return init_adjustable(config, style_names), style_names, [p for _, p in resolved], None
    net = StyleNet(
        num_styles=len(style_names),
        channels=config.channels,
        num_res_blocks=config.num_res_blocks,
        outer_kernel=config.outer_kernel,
        space_to_depth=config.space_to_depth,
    )
    if teacher is not None and fresh and config.from_model:
        start = load_teacher(config.from_model)
        if start.style_names != teacher.style_names or start.net.arch() != net.arch():
            raise UsageError(f"{flag('from_model')} {config.from_model} is not a student of "
                             f"this shape: it needs the teacher's styles and the network "
                             f"settings given ({start.net.arch()} vs {net.arch()})")
        net.load_state_dict({k: v.float() for k, v in start.net.state_dict().items()})
        log.info("student initialized from %s", config.from_model)
    elif teacher is not None and fresh:
        copied = init_from_teacher(net, teacher.net)
        log.info("student initialized from the teacher: %d of %d tensors", copied,
                 len(net.state_dict()))
    return net, style_names, [p for _, p in resolved], teacher


def _to_cpu(obj: Any) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_to_cpu(v) for v in obj]
    return obj


class WeightAverage:
    """Exponential moving average of a network's trainable parameters (Polyak averaging):
    after each optimizer step avg = decay * avg + (1 - decay) * param. It starts at the
    parameters it is created with (or a resumed run's average)."""

    def __init__(self, net: torch.nn.Module, decay: float) -> None:
        self.decay = decay
        self.params = {k: p for k, p in net.named_parameters() if p.requires_grad}
        self.avg = {k: p.detach().clone() for k, p in self.params.items()}

    @torch.no_grad()
    def reset(self) -> None:
        """Start over from the parameters' current values (e.g. just after a resume)."""
        for k, p in self.params.items():
            self.avg[k].copy_(p.detach())

    @torch.no_grad()
    def update(self) -> None:
        for k, p in self.params.items():
            self.avg[k].lerp_(p.detach(), 1.0 - self.decay)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().cpu() for k, v in self.avg.items()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """The averages of a checkpoint; parameters it lacks (averaging just turned on, or
        other trainable ones) keep their current values."""
        for k, v in state.items():
            if k in self.avg and self.avg[k].shape == v.shape:
                self.avg[k].copy_(v)

    @torch.no_grad()
    def copy_to_model(self) -> None:
        for k, p in self.params.items():
            p.copy_(self.avg[k])


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
    atomic_write_text(path, "".join(k + "\n" for k in keep))


def train(
    config: TrainConfig,
    *,
    loss_net: LossNet | None = None,
    progress: Callable[[TrainProgress], None] | None = None,
) -> TrainResult:
    """Train (or resume, or add a style to) a multi-style network as ``config`` says.

    Writes into ``config.out_dir``: checkpoint.pt (every ``checkpoint_every`` steps and at
    the end), losses.jsonl, model.pt (final, fp16 by default), curves.png, samples.png.
    A folder that already holds a checkpoint is a UsageError unless ``resume`` (continue
    it) or ``overwrite`` (start over, replacing it).
    ``loss_net`` replaces the VGG named in the config (tests pass tiny nets).
    ``progress`` is called every ``log_every`` steps. Ctrl-C checkpoints and raises
    :class:`~vidstyle.errors.Interrupted`.
    """
    t0 = time.monotonic()
    device = pick_device(config.device)
    bf16 = _use_bf16(config.precision, device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    out_dir = Path(config.out_dir)
    ckpt_path = out_dir / "checkpoint.pt"
    log_path = out_dir / "losses.jsonl"
    if ckpt_path.is_file() and not (config.resume or config.overwrite):
        raise UsageError(
            f"{out_dir} holds the checkpoint of an earlier run: continue it with "
            f"{flag('resume')}, start over with {flag('overwrite')}, or choose another "
            f"{flag('out_dir')}"
        )
    out_dir.mkdir(parents=True, exist_ok=True)

    # styles and the network
    adding = bool(config.add_style)
    net, style_names, target_paths, teacher_model = _network(
        config, fresh=not (config.resume and ckpt_path.is_file()))
    teacher = None
    if teacher_model is not None:
        teacher = teacher_model.net.float().eval().requires_grad_(False)
        teacher = teacher.to(device, memory_format=torch.channels_last)
    net.train()
    net = net.to(device, memory_format=torch.channels_last)
    params: list[Any]
    if adding:
        params = train_only_last_style(net)
    elif isinstance(net, AdjustableStyleNet):  # the conditioner trains too, at its own rate
        conditioner = {"params": list(net.conditioner.parameters()),
                       "lr": config.conditioner_lr or config.lr}
        if config.adjustable_frozen:
            net.transformer.requires_grad_(False)
            params = [conditioner]
        else:
            params = [{"params": list(net.transformer.parameters())}, conditioner]
    else:
        params = [p for p in net.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=config.lr)
    lrs = [group["lr"] for group in opt.param_groups]
    average = WeightAverage(net, config.weight_average) if config.weight_average > 0 else None
    gen = torch.Generator().manual_seed(config.seed)

    step = 0
    prior_elapsed = 0.0
    if config.resume and ckpt_path.is_file():
        ck = torch.load(ckpt_path, map_location="cpu", weights_only=True)
        diff = resume_conflicts(ck["config"], config)
        if diff or ck["style_names"] != list(style_names):
            changed = ", ".join(flag(k) for k in diff) or "the styles"
            raise UsageError(f"cannot resume {ckpt_path}: settings changed ({changed})")
        net.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        for group, fresh in zip(opt.param_groups, lrs, strict=True):
            group["lr"] = fresh  # the rates of this invocation (--set lr=... on a resume)
        gen.set_state(ck["rng"])
        if average is not None:  # from the resumed weights, or the run's own average
            average.reset()
            average.load_state_dict(ck.get("average", {}))
        step = int(ck["step"])
        prior_elapsed = float(ck.get("elapsed_s", 0.0))
        _truncate_log(log_path, step)
        log.info("resumed from %s at step %d", ckpt_path, step)
    elif config.resume:
        log.warning("no checkpoint at %s: starting fresh", ckpt_path)
    tie_phases = config.tie_output_phases and isinstance(net, StyleNet)
    if tie_phases:  # from the first step on (also on a resume of an untied run)
        tie_output_phases_(net)
    if step == 0 and log_path.exists():
        log_path.unlink()

    if loss_net is None:
        loss_net = _load_loss_net(
            config, device, [*config.style_layers, *config.content_layers]
        )
        loss_net = loss_net.to(device, memory_format=torch.channels_last)
    targets = style_targets(loss_net, target_paths, config, device)
    if adding:  # rows for the old styles are never used: fill with the new one's
        targets = {k: v.expand(net.num_styles, -1, -1).contiguous() for k, v in targets.items()}
    layer_w = style_layer_weights(config)
    pool = build_pool(config, device)
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
            **({"average": average.state_dict()} if average is not None else {}),
            "config": config.to_dict(),
            "elapsed_s": prior_elapsed + time.monotonic() - t_start,
        }
        model_io.atomic_torch_save(payload, ckpt_path)

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
            if isinstance(net, AdjustableStyleNet):
                alpha = sample_alpha(net, ids, config, gen)
                terms = adjustable_terms(net, loss_net, x, ids, alpha, targets, config,
                                         layer_w, bf16)
            else:
                motion = None
                if config.temporal_weight > 0:
                    motion = synthetic_motion(
                        config.batch, gen, size=(x.shape[-2], x.shape[-1]),
                        max_shift=config.temporal_shift, max_zoom=config.temporal_zoom,
                        max_rotate=config.temporal_rotate)
                terms = training_terms(net, loss_net, x, ids, targets, config, layer_w, bf16,
                                       teacher, motion)
            opt.zero_grad(set_to_none=True)
            terms["loss"].backward()
            opt.step()
            if tie_phases:
                tie_output_phases_(net)
            if average is not None:
                average.update()
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
        raise Interrupted(
            f"training interrupted at step {step}; resume with "
            f"{flag('out_dir')} {out_dir} {flag('resume')}"
        ) from None
    finally:
        log_f.close()
    if count:  # the steps after the last log record (time limit, or steps % log_every)
        last = {k: float(v) / count for k, v in sums.items()}
        elapsed = prior_elapsed + time.monotonic() - t_start
        with open(log_path, "a", encoding="utf-8") as f:
            f.write(json.dumps({"step": step, **last, "elapsed_s": round(elapsed, 2)}) + "\n")
    save_checkpoint()

    net.eval()
    if average is not None:  # the export takes the averaged weights (the checkpoint both)
        average.copy_to_model()
    info = {
        "steps": step,
        "config": config.to_dict(),
        "final_losses": last,
        "bf16": bf16,
        "device": str(device),
        **({"weight_average": config.weight_average} if average is not None else {}),
    }
    eval_losses = evaluate(net, loss_net, holdout, targets, config, layer_w, device, style_names)
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
