"""Stages as data, run in order with resumable per-frame artifacts.

A pipeline is a list of stages (decode -> flow -> masks -> stylize -> encode) read from
``pipelines/*.toml`` (or the built-in default of a method); its stage parameters fill
the config dataclasses of :mod:`vidstyle.config`, and command-line options override
them. :func:`run` executes it: stylized frames are cached in the work directory under the
stylize stage's fingerprint (config + input hash + style hash + weights hash + version),
so a killed run resumes at the first unfinished frame and a changed setting recomputes.
"""

from __future__ import annotations

import dataclasses
import glob
import logging
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path
from typing import Any

import torch

from vidstyle import __version__
from vidstyle.config import (
    EncodeConfig,
    FlowConfig,
    OptimConfig,
    RunConfig,
    TemporalConfig,
    fingerprint_of,
)
from vidstyle.errors import UsageError
from vidstyle.workdir import WorkDir, default_work_dir, load_png, save_png, sha256_file

log = logging.getLogger(__name__)

STAGE_KINDS = ("decode", "flow", "masks", "stylize", "encode")
PIPELINES_DIR = Path(str(files("vidstyle") / "data" / "pipelines"))  # package data


@dataclass(frozen=True)
class StageSpec:
    """One stage of a pipeline: its kind and its parameters (TOML table)."""

    kind: str
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class PipelineSpec:
    name: str
    stages: tuple[StageSpec, ...]

    @classmethod
    def from_toml(cls, path: str | Path) -> PipelineSpec:
        """Parse a pipeline file; unknown stage kinds are a usage error."""
        try:
            data = tomllib.loads(Path(path).read_text())
        except FileNotFoundError as exc:
            raise UsageError(f"pipeline file not found: {path}") from exc
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise UsageError(f"bad pipeline file {path}: {exc}") from exc
        stages = []
        for raw in data.get("stage", []):
            raw = dict(raw)
            kind = raw.pop("kind", None)
            if kind not in STAGE_KINDS:
                raise UsageError(f"{path}: unknown stage kind {kind!r} (use {STAGE_KINDS})")
            stages.append(StageSpec(kind, raw))
        if not stages or stages[0].kind != "decode" or stages[-1].kind != "encode":
            raise UsageError(f"{path}: a pipeline starts with decode and ends with encode")
        return cls(str(data.get("name", Path(path).stem)), tuple(stages))

    @classmethod
    def builtin(cls, method: str) -> PipelineSpec:
        """The default pipeline of ``method`` (``pipelines/<method>.toml`` when present)."""
        path = PIPELINES_DIR / f"{method}.toml"
        if path.is_file():
            return cls.from_toml(path)
        if method not in ("optim", "fast"):
            raise UsageError(f"unknown --method {method!r}: use optim or fast")
        return cls(method, (StageSpec("decode"), StageSpec("stylize", {"method": method}),
                            StageSpec("encode")))

    def stage(self, kind: str) -> StageSpec | None:
        return next((s for s in self.stages if s.kind == kind), None)

    def apply(self, config: RunConfig) -> RunConfig:
        """Fill ``config`` with this pipeline's stage parameters (pipeline wins over defaults)."""
        cfg = config
        sty = self.stage("stylize")
        if sty is not None:
            params = dict(sty.params)
            method = params.pop("method", cfg.method)
            temporal = {k: params.pop(k) for k in list(params) if k in _fields(TemporalConfig)}
            for k in ("style", "device"):
                if k in params:
                    cfg = dataclasses.replace(cfg, **{k: params.pop(k)})
            if method == "fast":
                cfg = dataclasses.replace(cfg, method=method,
                                          fast=_update(cfg.fast, params, "stylize"))
            else:
                cfg = dataclasses.replace(
                    cfg,
                    method=method,
                    optim=_update(cfg.optim, params, "stylize"),
                    temporal=_update(cfg.temporal, temporal, "stylize"),
                )
        fl = self.stage("flow")
        if fl is not None:
            cfg = dataclasses.replace(cfg, flow=_update(cfg.flow, fl.params, "flow"))
        enc = self.stage("encode")
        if enc is not None:
            cfg = dataclasses.replace(cfg, encode=_update(cfg.encode, enc.params, "encode"))
        return cfg


def _fields(cls: type) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)}


def _update(obj: Any, params: dict[str, Any], where: str) -> Any:
    unknown = set(params) - _fields(type(obj))
    if unknown:
        raise UsageError(f"pipeline stage {where}: unknown setting(s) {sorted(unknown)}")
    fixed = {k: tuple(v) if isinstance(v, list) else v for k, v in params.items()}
    return dataclasses.replace(obj, **fixed)


# -- progress -------------------------------------------------------------------------


@dataclass(frozen=True)
class ProgressEvent:
    """What the library reports: stage name, unit done/total, and optional detail."""

    stage: str
    done: int
    total: int | None
    detail: str = ""
    iteration: int | None = None
    iterations: int | None = None


ProgressFn = Callable[[ProgressEvent], None]


def _noop(_: ProgressEvent) -> None:
    return None


# -- running --------------------------------------------------------------------------


@dataclass
class RunResult:
    output: Path
    work_dir: Path | None  # None: streamed, nothing cached
    frames: int
    computed: int
    reused: int


def frame_unit(i: int) -> str:
    return f"frame_{i:06d}.png"


def run(
    input_path: str | Path,
    output_path: str | Path,
    config: RunConfig,
    *,
    work_dir: str | Path | None = None,
    progress: ProgressFn | None = None,
    stylizer_factory: Callable[..., Any] | None = None,
) -> RunResult:
    """Stylize ``input_path`` into ``output_path`` (video or still image).

    Raises VidstyleError subclasses for user-facing problems. Finished frames stay in the
    work directory on any interruption; the output appears only when complete.
    """
    from vidstyle import media
    from vidstyle.stylize import make_stylizer

    progress = progress or _noop
    input_path, output_path = Path(input_path), Path(output_path)
    info = media.probe(input_path)
    media.check_output_path(output_path, input_path=input_path)
    wanted = info.frame_count if config.max_frames is None else min(info.frame_count or 1,
                                                                       config.max_frames)
    if media.is_image_path(output_path) and (wanted or 1) > 1:
        raise UsageError(f"{output_path.name} is a still image but {input_path.name} has "
                         f"{wanted} frames: use a video suffix, or --max-frames 1")
    _sweep_partial_outputs(output_path)
    work = WorkDir(work_dir or default_work_dir(output_path))
    device = _device(config.device)

    factory = stylizer_factory or make_stylizer
    stylizer = factory(config=config, device=device)
    if getattr(stylizer, "streaming", False):
        # one pass decode -> stylize -> encode, stages overlapped in threads (fast method)
        count = stylizer.run_stream(input_path, output_path, info=info, encode=config.encode,
                                    max_frames=config.max_frames, progress=progress)
        return RunResult(output_path, None, count, count, 0)
    input_hash = sha256_file(input_path)
    n_total = info.frame_count
    if config.max_frames is not None:
        n_total = min(n_total, config.max_frames) if n_total else config.max_frames
    fp = fingerprint_of("stylize", config.stylize_fingerprint(), stylizer.fingerprint(),
                        input_hash, __version__)
    stage = work.stage("stylize", fp)
    log.info("work directory %s (stylize %s)", work.root, fp)

    if hasattr(stylizer, "run_stage"):
        # clip-level stylizers (temporal multi-pass) drive the stage themselves
        computed, reused = stylizer.run_stage(
            frames=lambda: _limited(media.iter_frames(input_path), config.max_frames),
            stage=stage,
            work=work,
            n_frames=n_total,
            progress=progress,
        )
    else:
        computed, reused = _stylize_frames(
            _limited(media.iter_frames(input_path), config.max_frames),
            stylizer, stage, n_total, progress,
        )
    count = computed + reused
    if count == 0:
        from vidstyle.errors import InputError

        raise InputError(f"{input_path}: no frames could be decoded")

    with media.MediaWriter(
        output_path,
        source=info,
        crf=config.encode.crf,
        preset=config.encode.preset,
        copy_audio=config.encode.copy_audio,
    ) as writer:
        for frame in _limited(media.iter_frames(input_path), count):
            rgb = load_png(stage.path(frame_unit(frame.index)))
            writer.write(dataclasses.replace(frame, rgb=rgb, alpha=_fit_alpha(frame.alpha, rgb)))
            progress(ProgressEvent("encode", frame.index + 1, count))
    log.info("wrote %s (%d frames, %d computed, %d reused)", output_path, count, computed, reused)
    return RunResult(output_path, work.root, count, computed, reused)


def _stylize_frames(frames: Iterator, stylizer: Any, stage: Any, total: int | None,
                    progress: ProgressFn) -> tuple[int, int]:
    """Per-frame loop: reuse each finished artifact, stylize and save the others."""
    computed = reused = 0
    for frame in frames:
        unit = frame_unit(frame.index)
        if stage.has(unit):
            reused += 1
            stylizer.observe(frame, load_png(stage.path(unit)))
        else:
            save_png(stage.path(unit), stylizer.stylize(frame, progress=progress, total=total))
            computed += 1
        progress(ProgressEvent("stylize", frame.index + 1, total))
    return computed, reused


def _sweep_partial_outputs(output: Path) -> None:
    """Remove temp files a killed earlier run to the same output left behind."""
    pattern = f".{glob.escape(output.stem)}.*.part{glob.escape(output.suffix)}"
    for p in output.parent.glob(pattern):
        log.info("removing leftover partial output %s", p)
        p.unlink(missing_ok=True)


def _limited(frames: Iterator, n: int | None) -> Iterator:
    for frame in frames:
        if n is not None and frame.index >= n:
            break
        yield frame


def _fit_alpha(alpha: Any, rgb: Any) -> Any:
    """Resize a source alpha plane to the stylized frame's size (None stays None)."""
    from vidstyle.imageops import resize_uint8

    return None if alpha is None else resize_uint8(alpha, rgb.shape[:2])


def _device(name: str) -> torch.device:
    from vidstyle.device import pick_device

    return pick_device(name)


def load_config(base: RunConfig, pipeline: str | Path | None, method: str | None) -> RunConfig:
    """Defaults <- pipeline file (or the method's built-in pipeline) <- caller's overrides."""
    spec = PipelineSpec.from_toml(pipeline) if pipeline else PipelineSpec.builtin(
        method or base.method
    )
    return spec.apply(base)


__all__ = [
    "EncodeConfig",
    "FlowConfig",
    "OptimConfig",
    "PipelineSpec",
    "ProgressEvent",
    "RunConfig",
    "RunResult",
    "StageSpec",
    "TemporalConfig",
    "load_config",
    "run",
]
