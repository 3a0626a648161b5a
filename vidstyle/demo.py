"""The bundled demo: Big Buck Bunny (CC-BY 3.0, Blender Foundation) stylized with audio."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from vidstyle.config import FastConfig, OptimConfig, RunConfig
from vidstyle.contracts import StyleSpec
from vidstyle.engine import resolve_method


def demo_input() -> Path:
    return Path(str(resources.files("vidstyle") / "data" / "bigbuckbunny.mp4"))


def demo_config(style: str = "starry") -> RunConfig:
    """The fast network at 640 px when it is shipped for ``style``; else a small
    optimization run (160 px, 10 iterations)."""
    spec = StyleSpec.parse(style)
    if resolve_method(spec) == "fast":
        return RunConfig(style=spec, method="fast", fast=FastConfig(size=640))
    return RunConfig(style=spec, method="optim",
                     optim=OptimConfig(size=160, iters=10, multiscale=1))
