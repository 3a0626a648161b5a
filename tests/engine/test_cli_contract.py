"""Settings, outputs and early checks of `vidstyle run` (the engine-redesign defects):
each test failed on the old engine."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from tests.cli_helpers import OPTIM, invoke, one_line_error
from tests.media.helpers import make_clip
from vidstyle.cli import cli
from vidstyle.config import FlowConfig, OptimConfig, RunConfig, settings
from vidstyle.engine import build_config, default_output
from vidstyle.errors import UsageError
from vidstyle.flow import flow_from_config


@pytest.fixture
def photo(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    p = tmp_path / "photo.png"
    base = np.linspace(0, 255, 48 * 64 * 3).reshape(48, 64, 3)
    Image.fromarray((base * 0.7 + rng.integers(0, 70, base.shape)).astype(np.uint8)).save(p)
    return p


# -- settings ------------------------------------------------------------------------------


def test_deepflow_and_other_flows_work_with_temporal_optimization() -> None:
    """Was: "flow method 'deepflow' has no preset 'fast'" after decoding."""
    for method in ("deepflow", "dualtvl1", "raft"):
        cfg, _ = build_config({"--method": "optim", "--temporal": "short", "--flow": method})
        assert cfg.flow.method == method and cfg.flow.resolved_preset in (None, "large")
    est = flow_from_config(FlowConfig(method="deepflow"))
    import torch

    a = torch.rand(1, 3, 32, 40)
    assert est.estimate(a, a.roll(2, dims=-1)).shape == (1, 2, 32, 40)
    with pytest.raises(UsageError, match="no preset"):
        FlowConfig(method="deepflow", preset="fast")


def test_options_that_do_not_apply_are_errors(photo: Path, tmp_path: Path) -> None:
    out = tmp_path / "o.png"
    err = one_line_error(invoke("run", photo, "-o", out, "--method", "fast", "--temporal",
                                "short"), 2)
    assert "--temporal applies to the optim method only" in err
    err = one_line_error(invoke("run", photo, "-o", out, "--method", "optim", "--strength",
                                "0.5"), 2)
    assert "--strength applies to the fast method only" in err
    err = one_line_error(invoke("run", photo, "-o", out, "--method", "optim", "--flow",
                                "deepflow"), 2)
    assert "--flow has no effect with --temporal none" in err
    err = one_line_error(invoke("run", photo, "-o", out, "--style", "starry:0.5,wave:0.5",
                                "--method", "optim"), 2)
    assert "mixes" in err and "fast" in err
    assert not out.exists()
    # without --method, an optim-only option picks the optimization method
    cfg, _ = build_config({"--iters": 5, "--style": "starry"})
    assert cfg.method == "optim" and cfg.optim.iters == 5
    cfg, _ = build_config({"--strength": 0.5, "--style": "starry"})
    assert cfg.method == "fast"


def test_preserve_color_works_with_the_fast_method(photo: Path, tmp_path: Path) -> None:
    plain, kept = tmp_path / "plain.png", tmp_path / "kept.png"
    assert invoke("run", photo, "-o", plain, "--style", "starry", "-q").exit_code == 0
    assert invoke("run", photo, "-o", kept, "--style", "starry", "--preserve-color",
                  "-q").exit_code == 0

    def chroma(p: Path) -> np.ndarray:
        return np.asarray(Image.open(p).convert("YCbCr"), dtype=float)[..., 1:]

    src = chroma(photo)
    assert np.abs(chroma(kept) - src).mean() < 0.5 * np.abs(chroma(plain) - src).mean()


@pytest.mark.parametrize("args, words", [
    (["--style-scale", "0", *OPTIM], "--style-scale must be > 0"),
    (["--size", "5"], "--size must be >= 16"),
    (["--stability", "2"], "--stability must be"),
    (["--crf", "99"], "--crf must be"),
])
def test_bad_values_are_one_line_usage_errors(photo: Path, tmp_path: Path, args, words) -> None:
    out = tmp_path / "o.png"
    assert words in one_line_error(invoke("run", photo, "-o", out, *args), 2)
    assert not out.exists()


def test_tiny_image_with_the_fast_method_is_a_clean_error(tmp_path: Path) -> None:
    tiny = tmp_path / "tiny.png"
    Image.fromarray(np.zeros((1, 1, 3), np.uint8)).save(tiny)
    out = tmp_path / "o.png"
    assert "1x1" in one_line_error(invoke("run", tiny, "-o", out, "--style", "starry"), 2)
    assert not out.exists()


def test_work_dir_naming_a_file_is_a_usage_error(photo: Path, tmp_path: Path) -> None:
    f = tmp_path / "afile"
    f.write_text("x")
    err = one_line_error(invoke("run", photo, "-o", tmp_path / "o.png", "--work-dir", f,
                                *OPTIM), 2)
    assert "is a file" in err
    assert f.read_text() == "x"


def test_flow_problems_fail_before_any_work(tmp_path: Path, monkeypatch) -> None:
    """RAFT without weights: the error comes before decoding, and no work folder or
    output is left."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    clip = make_clip(tmp_path / "c.mp4", n=3, size=(48, 32))
    out = tmp_path / "o.mp4"
    err = one_line_error(invoke("run", clip, "-o", out, *OPTIM, "--temporal", "short",
                                "--flow", "raft"), 1)
    assert "RAFT" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.mp4", "torch"] or \
        sorted(p.name for p in tmp_path.iterdir()) == ["c.mp4"]


# -- outputs -----------------------------------------------------------------------------


def test_default_names_tell_settings_apart(tmp_path: Path) -> None:
    src = tmp_path / "photo.jpg"
    names = {}
    for key, values in {
        "plain": {},
        "mix": {"--style": "starry:0.6,wave:0.4"},
        "mix_swapped": {"--style": "starry:0.4,wave:0.6"},
        "mix_equal": {"--style": "starry:1,wave:1"},
        "strength": {"--strength": 0.3},
        "optim": {"--method": "optim"},
        "optim_iters": {"--iters": 50},
    }.items():
        cfg, _ = build_config({"--style": "starry", **values})
        names[key] = default_output(src, cfg).name
    assert names["plain"] == "photo_starry_fast.jpg"
    assert len(set(names.values())) == len(names), names
    for n in names.values():
        assert ":" not in n and "," not in n and " " not in n
    assert names["strength"] == "photo_starry_fast_strength0.3.jpg"


def test_an_existing_output_is_never_overwritten_silently(photo: Path, tmp_path: Path) -> None:
    out = tmp_path / "o.png"
    out.write_bytes(b"precious")
    err = one_line_error(invoke("run", photo, "-o", out, "--style", "starry", "-q"), 2)
    assert "exists" in err and "--overwrite" in err
    assert out.read_bytes() == b"precious"
    r = invoke("run", photo, "-o", out, "--style", "starry", "-q", "--overwrite")
    assert r.exit_code == 0 and out.read_bytes() != b"precious"
    # the default name too: a second run does not replace the first one's file
    first = invoke("run", photo, "--style", "wave", "-q")
    assert first.exit_code == 0
    default = photo.with_name("photo_wave_fast.png")
    before = default.read_bytes()
    one_line_error(invoke("run", photo, "--style", "wave", "-q"), 2)
    assert default.read_bytes() == before


def test_outputs_take_the_umask_mode(photo: Path, tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        out = tmp_path / "o.png"
        assert invoke("run", photo, "-o", out, "--style", "starry", "-q").exit_code == 0
        clip = make_clip(tmp_path / "c.mp4", n=2, size=(48, 32))
        vid = tmp_path / "o.mp4"
        assert invoke("run", clip, "-o", vid, "--style", "starry", "-q").exit_code == 0
    finally:
        os.umask(old)
    for p in (out, vid):
        assert stat.S_IMODE(p.stat().st_mode) == 0o644, oct(p.stat().st_mode)


def test_finished_work_folders_are_removed_unless_kept(tmp_path: Path) -> None:
    clip = make_clip(tmp_path / "c.mp4", n=2, size=(48, 32))
    out = tmp_path / "o.mp4"
    assert invoke("run", clip, "-o", out, *OPTIM).exit_code == 0
    assert not list(tmp_path.glob(".*vidstyle-work")), list(tmp_path.iterdir())
    kept = tmp_path / "k.mp4"
    r = invoke("run", clip, "-o", kept, *OPTIM, "--keep-work")
    assert r.exit_code == 0 and "work kept in" in r.output
    work = tmp_path / ".k.mp4.vidstyle-work"
    assert len(list((work / "stylize").glob("frame_*.png"))) == 2
    # a user's --work-dir keeps the user's own files
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    assert invoke("run", clip, "-o", tmp_path / "m.mp4", *OPTIM, "--work-dir",
                  mine).exit_code == 0
    assert [p.name for p in mine.iterdir()] == ["notes.txt"]


def test_ctrl_c_in_a_fast_run_does_not_promise_kept_work(tmp_path: Path) -> None:
    from vidstyle.engine import run
    from vidstyle.errors import Interrupted

    clip = make_clip(tmp_path / "c.mp4", n=8, size=(48, 32))
    out = tmp_path / "o.mp4"

    def stop(ev) -> None:
        if ev.stage == "stylize" and ev.done == 2:
            raise KeyboardInterrupt

    cfg, _ = build_config({"--style": "starry"})
    with pytest.raises(Interrupted, match="no output was written"):
        run(clip, out, cfg, progress=stop)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.mp4"]


# -- help -------------------------------------------------------------------------------


def test_every_option_has_help_and_an_example_in_sections() -> None:
    for name in ("run", "batch"):
        r = CliRunner().invoke(cli, [name, "--help"])
        assert r.exit_code == 0
        for section in ("Common options:", "Output options:", "Video options:",
                        "Fast network options:", "Optimization options:", "Run options:"):
            assert section in r.output, (name, section)
        cmd = cli.commands[name]
        for p in cmd.params:
            if getattr(p, "hidden", False) or p.param_type_name != "option":
                continue
            assert p.help, p.name
            assert getattr(p, "example", ""), p.name
    flags = {s.flag for s in settings()}
    run_flags = {o for p in cli.commands["run"].params for o in getattr(p, "opts", [])}
    assert flags <= run_flags  # every config setting is an option


def test_config_classes_validate_on_construction() -> None:
    with pytest.raises(UsageError, match="--optimizer"):
        OptimConfig(optimizer="sgd")  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="--iters"):
        OptimConfig(iters=2.5)  # type: ignore[arg-type]
    assert RunConfig(style="wave").style.default.refs == ("wave",)  # parsed once
