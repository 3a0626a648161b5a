"""The bundled demo: Big Buck Bunny (CC-BY 3.0, Blender Foundation) stylized with audio."""

from __future__ import annotations

import dataclasses
from importlib import resources
from pathlib import Path

from vidstyle.config import FastConfig, OptimConfig, RunConfig


def demo_input() -> Path:
    return Path(str(resources.files("vidstyle") / "data" / "bigbuckbunny.mp4"))


def demo_config(style: str = "starry") -> RunConfig:
    """The fast network when it is shipped for ``style``; else a small optimization run."""
    from vidstyle.stylize import default_method

    if default_method(style) == "fast":
        return RunConfig(style=style, method="fast", fast=FastConfig(size=640))
    optim = dataclasses.replace(OptimConfig(), size=160, iters=10, multiscale=1)
    return RunConfig(style=style, method="optim", optim=optim)
