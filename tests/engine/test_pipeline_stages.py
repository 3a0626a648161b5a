"""Pipeline files mean what their stage list says: malformed files are usage errors, flow
settings need a flow stage, temporal optimization needs the masks stage (each test
failed before its fix)."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from vidstyle.cli import cli
from vidstyle.engine import PipelineSpec, build_config, default_output
from vidstyle.errors import UsageError

STAGES = {
    "noflow": ["decode", "stylize", "encode"],
    "nomasks": ["decode", "flow", "stylize", "encode"],
}


def pipeline(tmp_path: Path, name: str, method: str, extra: str = "") -> Path:
    text = f'name = "{name}"\n'
    for kind in STAGES[name]:
        text += f'[[stage]]\nkind = "{kind}"\n'
        if kind == "stylize":
            text += f'method = "{method}"\n{extra}'
    p = tmp_path / f"{name}_{method}.toml"
    p.write_text(text)
    return p


# -- 7: malformed files ------------------------------------------------------------------


@pytest.mark.parametrize("text, words", [
    ("stage = 3\n", "list of [[stage]] tables"),
    ("stage = [1]\n", "list of [[stage]] tables"),
    ('stage = ["decode"]\n', "list of [[stage]] tables"),
    ("[[stage]]\nkind = 3\n", "unknown stage kind 3"),
    ('[[stage]]\nkind = ["decode"]\n', "unknown stage kind"),
    ("name = 5\n[[stage]]\nkind = 'decode'\n", "name must be a text"),
    ("[[stage]]\nkind='decode'\n[[stage]]\nkind='stylize'\nmethod=[1]\n[[stage]]\n"
     "kind='encode'\n", "unknown method"),
])
def test_malformed_pipeline_files_are_usage_errors(tmp_path: Path, text: str,
                                                   words: str) -> None:
    p = tmp_path / "bad.toml"
    p.write_text(text)
    with pytest.raises(UsageError, match=words.replace("[", r"\[")):
        PipelineSpec.from_toml(p)
    r = CliRunner().invoke(cli, ["run", str(tmp_path / "x.png"), "--pipeline", str(p)],
                           catch_exceptions=False)
    assert r.exit_code == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr


# -- 9: flow settings without a flow stage -------------------------------------------------


@pytest.mark.parametrize("method, values", [
    ("fast", {"--flow": "deepflow"}),
    ("fast", {"--flow-scale": 0.5}),
    ("fast", {"--stability": 0.9}),
    ("optim", {"--flow-preset": "medium"}),
])
def test_flow_settings_without_a_flow_stage_are_errors(tmp_path: Path, method: str,
                                                       values: dict) -> None:
    p = pipeline(tmp_path, "noflow", method)
    with pytest.raises(UsageError, match=f"{next(iter(values))} has no effect: the "
                                         "pipeline has no flow stage"):
        build_config({"--method": method, **values}, pipeline=p)
    build_config({"--method": method}, pipeline=p)  # without them: fine


def test_stability_in_a_pipeline_without_flow_is_an_error(tmp_path: Path) -> None:
    p = pipeline(tmp_path, "noflow", "fast", "stability = 0.9\n")
    with pytest.raises(UsageError, match="stability has no effect without a flow stage"):
        build_config({}, pipeline=p)


def test_default_names_hold_no_flow_settings_without_a_flow_stage(tmp_path: Path) -> None:
    cfg, spec = build_config({"--method": "fast", "--style": "wave"},
                             pipeline=pipeline(tmp_path, "noflow", "fast"))
    cfg = cfg.replace(fast=cfg.fast.replace(stability=0.9),
                      flow=cfg.flow.replace(method="deepflow"))
    assert default_output("clip.mp4", cfg, pipeline=spec).name == "clip_wave_fast.mp4"
    assert default_output("clip.mp4", cfg).name == "clip_wave_fast_stability0.9_flowdeepflow.mp4"


# -- 17: temporal optimization needs the masks stage -------------------------------------


def test_temporal_optimization_needs_the_masks_stage(tmp_path: Path) -> None:
    p = pipeline(tmp_path, "nomasks", "optim")
    with pytest.raises(UsageError, match="temporal optimization needs the masks stage"):
        build_config({"--temporal": "short"}, pipeline=p)
    cfg, spec = build_config({"--temporal": "none"}, pipeline=p)  # per-frame: fine
    assert cfg.method == "optim" and not spec.has("masks")
    fast = pipeline(tmp_path, "nomasks", "fast")  # the fast method stabilizes without
    cfg, _ = build_config({}, pipeline=fast)
    assert cfg.method == "fast" and cfg.uses_flow
