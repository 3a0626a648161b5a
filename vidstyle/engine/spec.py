"""Pipelines as data: which stages run, in which order, with which overrides.

A pipeline file (``vidstyle/data/pipelines/<method>.toml`` for the built-in ones, or a
user's ``--pipeline FILE``) lists stages in the order decode -> flow -> masks -> segment
-> stylize -> encode; flow and masks may be left out (no optical flow: no temporal
terms, no stabilization; flow settings are then errors). The masks stage (forward-backward
consistency, shot cuts) needs the flow stage, and temporal optimization (``--temporal
short|long``) needs both: a pipeline with flow but no masks runs the optimization method
only with ``--temporal none``, and the fast method stabilizes without cut detection. The
segment stage (instance masks of people, tracked) runs only when a per-person style asks
for it. Each stage's keys override fields of that stage's config dataclass
(:mod:`vidstyle.config`, the one home of defaults); unknown keys are errors. Settings are
resolved defaults <- pipeline file <- command line (:func:`build_config`).
"""

from __future__ import annotations

import dataclasses
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal, get_args

from vidstyle.config import (
    RunConfig,
    apply_params,
    check_applicable,
    check_people,
    settings,
    with_settings,
)
from vidstyle.contracts import StyleSpec
from vidstyle.errors import UsageError, VidstyleError
from vidstyle.fast.model_io import shipped_style_names

StageKind = Literal["decode", "flow", "masks", "segment", "stylize", "encode"]
STAGE_ORDER: tuple[str, ...] = get_args(StageKind)


def pipelines_dir() -> Path:
    """Folder of the built-in pipeline files (package data)."""
    return Path(str(resources.files("vidstyle") / "data" / "pipelines"))


@dataclass(frozen=True)
class StageSpec:
    """One stage of a pipeline: its kind and its parameters (TOML table)."""

    kind: StageKind
    params: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class PipelineSpec:
    """An ordered, validated list of stages (see the module docstring)."""

    name: str
    stages: tuple[StageSpec, ...]

    def __post_init__(self) -> None:
        kinds = [s.kind for s in self.stages]
        for k in kinds:
            if k not in STAGE_ORDER:
                raise UsageError(f"pipeline {self.name}: unknown stage kind {k!r} (use "
                                 f"{', '.join(STAGE_ORDER)})")
        if len(set(kinds)) != len(kinds):
            raise UsageError(f"pipeline {self.name}: a stage kind appears twice")
        if kinds != sorted(kinds, key=STAGE_ORDER.index):
            raise UsageError(f"pipeline {self.name}: stages must come in the order "
                             f"{' -> '.join(STAGE_ORDER)}")
        for needed in ("decode", "stylize", "encode"):
            if needed not in kinds:
                raise UsageError(f"pipeline {self.name}: a pipeline needs a {needed} stage")
        if "masks" in kinds and "flow" not in kinds:
            raise UsageError(f"pipeline {self.name}: the masks stage needs a flow stage")
        for s in self.stages:
            if s.kind in ("decode", "masks", "segment") and s.params:
                raise UsageError(f"pipeline {self.name}: stage {s.kind} takes no settings "
                                 f"(got {', '.join(sorted(s.params))})")
        method = self.stage("stylize").params.get("method")  # type: ignore[union-attr]
        if method is not None and (not isinstance(method, str)
                                   or method not in ("optim", "fast")):
            raise UsageError(f"pipeline {self.name}: unknown method {method!r}")

    @classmethod
    def from_toml(cls, path: str | Path) -> PipelineSpec:
        """Parse and validate a pipeline file."""
        try:
            data = tomllib.loads(Path(path).read_text())
        except FileNotFoundError:
            raise UsageError(f"pipeline file not found: {path}") from None
        except IsADirectoryError:
            raise UsageError(f"pipeline file is a folder: {path}") from None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise UsageError(f"bad pipeline file {path}: {exc}") from None
        unknown = set(data) - {"name", "stage"}
        if unknown:
            raise UsageError(f"{path}: unknown key(s) {', '.join(sorted(unknown))} (use name "
                             "and [[stage]] tables)")
        name = data.get("name", Path(path).stem)
        if not isinstance(name, str):
            raise UsageError(f"{path}: name must be a text, got {name!r}")
        tables = data.get("stage", [])
        if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
            raise UsageError(f"{path}: stage must be a list of [[stage]] tables, each with "
                             f"a kind ({', '.join(STAGE_ORDER)}), got {tables!r}")
        stages = []
        for raw in tables:
            raw = dict(raw)
            kind = raw.pop("kind", None)
            if not isinstance(kind, str) or kind not in STAGE_ORDER:
                raise UsageError(f"{path}: unknown stage kind {kind!r} (use "
                                 f"{', '.join(STAGE_ORDER)})")
            stages.append(StageSpec(kind, raw))  # type: ignore[arg-type]
        return cls(name, tuple(stages))

    @classmethod
    def builtin(cls, method: str) -> PipelineSpec:
        """The built-in pipeline of ``method`` ("optim" or "fast")."""
        if method not in ("optim", "fast"):
            raise UsageError(f"unknown --method {method!r}: use optim or fast")
        return cls.from_toml(pipelines_dir() / f"{method}.toml")

    @property
    def method(self) -> str | None:
        """The method the stylize stage names, if any."""
        return self.stage("stylize").params.get("method")  # type: ignore[union-attr]

    def stage(self, kind: str) -> StageSpec | None:
        return next((s for s in self.stages if s.kind == kind), None)

    def has(self, kind: str) -> bool:
        return self.stage(kind) is not None

    @property
    def kinds(self) -> frozenset[str]:
        """The kinds of the stages this pipeline has."""
        return frozenset(s.kind for s in self.stages)

    def configure(self, config: RunConfig) -> RunConfig:
        """``config`` with this pipeline's settings (pipeline wins over defaults).

        ``config.method`` must be resolved ("optim" or "fast"); stylize keys are fields of
        the method's configs (optim: OptimConfig and TemporalConfig; fast: FastConfig) or
        ``style``/``device``; flow keys FlowConfig's; encode keys EncodeConfig's.
        """
        method = config.method
        if self.method is not None and self.method != method:
            raise UsageError(f"pipeline {self.name} is for --method {self.method}, not {method}")
        cfg = config
        where = f"pipeline {self.name}, stage"
        sty = dict(self.stage("stylize").params)  # type: ignore[union-attr]
        sty.pop("method", None)
        top = {k: sty.pop(k) for k in ("style", "device") if k in sty}
        if top:
            cfg = dataclasses.replace(cfg, **top)
        if "stability" in sty and not self.has("flow"):
            raise UsageError(f"{where} stylize: stability has no effect without a flow stage")
        if method == "fast":
            cfg = dataclasses.replace(cfg, fast=apply_params(cfg.fast, sty, f"{where} stylize"))
        else:
            tnames = {f.name for f in dataclasses.fields(cfg.temporal)}
            temporal = {k: sty.pop(k) for k in list(sty) if k in tnames}
            cfg = dataclasses.replace(
                cfg, optim=apply_params(cfg.optim, sty, f"{where} stylize"),
                temporal=apply_params(cfg.temporal, temporal, f"{where} stylize"))
        fl = self.stage("flow")
        if fl is not None:
            cfg = dataclasses.replace(cfg, flow=apply_params(cfg.flow, fl.params, f"{where} flow"))
        enc = self.stage("encode")
        if enc is not None:
            cfg = dataclasses.replace(cfg, encode=apply_params(cfg.encode, enc.params,
                                                               f"{where} encode"))
        return cfg

    def check(self, config: RunConfig) -> None:
        """Settings this pipeline cannot honour: temporal optimization needs the flow and
        masks stages (its temporal terms are weighted by the consistency masks), per-person
        styles the segment stage."""
        if config.method == "optim" and config.temporal.mode != "none":
            if not self.has("flow"):
                raise UsageError(f"--temporal {config.temporal.mode} needs optical flow, but "
                                 f"pipeline {self.name} has no flow stage")
            if not self.has("masks"):
                raise UsageError(f"temporal optimization needs the masks stage (consistency "
                                 f"masks weight its temporal terms), but pipeline "
                                 f"{self.name} has none: add it, or use --temporal none")
        if config.style.per_person and not self.has("segment"):
            raise UsageError(f"per-person styles need instance masks, but pipeline "
                             f"{self.name} has no segment stage")


def shipped_fast_styles() -> frozenset[str]:
    """Style names of the shipped fast model (empty when it cannot be read)."""
    try:
        return frozenset(shipped_style_names())
    except VidstyleError:
        return frozenset()


def resolve_method(style: StyleSpec, given: set[str] | None = None) -> str:
    """The method "auto" means: optim when the user gave optim-only settings, fast when
    fast-only ones; else fast when the shipped network knows every style of ``style``,
    else optim (image paths, or styles the network was not trained on)."""
    table = {s.flag: s for s in settings()}
    wants: set[str] = set()
    for flag in given or set():
        methods = table[flag].methods if flag in table else ()
        if len(methods) == 1:
            wants.add(methods[0])
    if len(wants) == 1:
        return next(iter(wants))
    if len(wants) > 1:
        raise UsageError("the options given mix optim-only and fast-only settings: choose "
                         "one with --method")
    known = shipped_fast_styles()
    return "fast" if known and all(r in known for r in style.refs()) else "optim"


def build_config(values: Mapping[str, Any], *, pipeline: str | Path | None = None,
                 base: RunConfig | None = None) -> tuple[RunConfig, PipelineSpec]:
    """Settings of a run: ``base`` (defaults) <- the pipeline file (or the method's built-in
    pipeline) <- ``values`` (command-line flags such as ``--iters`` -> value; None means
    not given). Validates everything: the returned config runs as it is."""
    base = base or RunConfig()
    given = {k for k, v in values.items() if v is not None}
    style = StyleSpec.parse(values["--style"]) if values.get("--style") is not None \
        else base.style
    style = style.with_people(values.get("--instance") or (), values.get("--background"))
    spec = PipelineSpec.from_toml(pipeline) if pipeline else None
    method = values.get("--method") or (spec.method if spec else None) or base.method
    if method == "auto":
        method = resolve_method(style, given - {"--method"})
    spec = spec or PipelineSpec.builtin(method)
    cfg = spec.configure(dataclasses.replace(base, method=method))
    rest = {k: v for k, v in values.items() if k not in ("--method", "--instance",
                                                         "--background")}
    cfg = with_settings(cfg, rest, method=method)
    if cfg.fast.layer_weights:  # the look of the whole frame (see StyleSpec.layer_weights)
        style = dataclasses.replace(style, layer_weights=cfg.fast.layer_weights)
    cfg = dataclasses.replace(cfg, style=style)
    check_applicable(cfg, given, stages=spec.kinds)
    check_people(cfg, given)
    spec.check(cfg)
    return cfg, spec


__all__ = [
    "STAGE_ORDER",
    "PipelineSpec",
    "StageSpec",
    "build_config",
    "pipelines_dir",
    "resolve_method",
    "shipped_fast_styles",
]
