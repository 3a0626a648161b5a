"""`vidstyle batch --pipeline FILE` runs the file's stages (was: ignored, every item ran
the built-in pipeline, and the receipts did not tell the two apart)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from click.testing import CliRunner

from tests.media.helpers import make_clip
from vidstyle.batch import settings_fingerprint
from vidstyle.cli import cli
from vidstyle.config import RunConfig
from vidstyle.engine import PipelineSpec
from vidstyle.media import iter_frames

NOFLOW = """name = "noflow"
[[stage]]
kind = "decode"
[[stage]]
kind = "stylize"
method = "fast"
[[stage]]
kind = "encode"
"""
FAST = ["--method", "fast", "--style", "wave", "--size", "64", "-q"]


def invoke(*args: object):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def frames(path: Path) -> list[np.ndarray]:
    return [f.rgb.astype(np.int16) for f in iter_frames(path)]


def test_batch_runs_the_pipeline_files_stages(tmp_path: Path) -> None:
    src = tmp_path / "in"
    src.mkdir()
    make_clip(src / "clip.mp4", n=6, size=(80, 48))
    toml = tmp_path / "noflow.toml"
    toml.write_text(NOFLOW)

    plain = tmp_path / "plain"
    assert invoke("batch", src, plain, *FAST).exit_code == 0
    r = invoke("batch", src, plain, *FAST, "--pipeline", toml)  # other stages: redone
    assert r.exit_code == 0 and "1 done, 0 already done" in r.output, r.output
    unstabilized = frames(plain / "clip.mp4")

    ref = tmp_path / "ref.mp4"  # `run` with the same file: the same frames
    assert invoke("run", src / "clip.mp4", "-o", ref, *FAST, "--pipeline", toml).exit_code == 0
    stabilized = tmp_path / "stab.mp4"
    assert invoke("run", src / "clip.mp4", "-o", stabilized, *FAST).exit_code == 0
    assert all(np.abs(a - b).max() <= 2 for a, b in zip(unstabilized, frames(ref),
                                                         strict=True))
    assert max(np.abs(a - b).mean() for a, b in zip(unstabilized, frames(stabilized),
                                                    strict=True)) > 1.0


def test_the_stage_list_is_part_of_the_batch_fingerprint(tmp_path: Path) -> None:
    toml = tmp_path / "noflow.toml"
    toml.write_text(NOFLOW)
    cfg = RunConfig(style="wave", method="fast")
    assert settings_fingerprint(cfg) == settings_fingerprint(cfg, PipelineSpec.builtin("fast"))
    assert settings_fingerprint(cfg) != settings_fingerprint(cfg, PipelineSpec.from_toml(toml))
