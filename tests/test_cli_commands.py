"""`vidstyle demo` and `vidstyle eval`: no silent overwrite, run's flow options, a help
line and an example for every option (each test failed before its fix)."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

import vidstyle.engine
from tests.cli_helpers import invoke, one_line_error
from tests.media.helpers import make_clip
from vidstyle.cli import cli

# -- 4: demo -o ----------------------------------------------------------------------------


def test_demo_never_replaces_a_users_file_without_overwrite(tmp_path: Path,
                                                            monkeypatch) -> None:
    mine = tmp_path / "mine.mp4"
    mine.write_bytes(b"precious")
    err = one_line_error(invoke("demo", "-o", mine, "-q"), 2)
    assert "exists" in err and "--overwrite" in err
    assert mine.read_bytes() == b"precious"

    calls: list[tuple[Path, bool]] = []

    def spy(_input, output, _cfg, *, overwrite: bool, **_kw):  # noqa: ANN202
        calls.append((Path(output), overwrite))
        return vidstyle.engine.RunResult(Path(output), None, 1, 1, 0)

    monkeypatch.setattr(vidstyle.engine, "run", spy)
    monkeypatch.chdir(tmp_path)
    assert invoke("demo", "-o", mine, "--overwrite", "-q").exit_code == 0
    assert invoke("demo", "-q").exit_code == 0  # the demo's own file: always replaced
    assert calls == [(mine, True), (Path("vidstyle_demo.mp4"), True)]


# -- 5, 12: eval warp-error ----------------------------------------------------------------


@pytest.fixture
def clip(tmp_path: Path) -> Path:
    return make_clip(tmp_path / "src.mp4", n=3, size=(64, 48))


def test_warp_error_reports_never_replace_files_without_overwrite(clip: Path,
                                                                  tmp_path: Path) -> None:
    csv, png = tmp_path / "e.csv", tmp_path / "e.png"
    for existing, flag in ((csv, "--csv"), (png, "--plot")):
        existing.write_bytes(b"mine")
        err = one_line_error(invoke("eval", "warp-error", clip, "--source", clip, flag,
                                    existing), 2)
        assert str(existing) in err and "--overwrite" in err
        assert existing.read_bytes() == b"mine"
    r = invoke("eval", "warp-error", clip, "--source", clip, "--csv", csv, "--plot", png,
               "--overwrite")
    assert r.exit_code == 0, r.stderr
    assert csv.read_text().startswith("frame,") and png.read_bytes()[:4] == b"\x89PNG"


def test_warp_error_takes_runs_flow_options(clip: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    err = one_line_error(invoke("eval", "warp-error", clip, "--source", clip, "--flow",
                                "raft"), 1)
    assert "--flow-weights" in err  # the option it names exists here
    err = one_line_error(invoke("eval", "warp-error", clip, "--source", clip, "--flow",
                                "raft", "--flow-weights", tmp_path / "none.pth"), 1)
    assert "none.pth" in err and "not found" in err
    err = one_line_error(invoke("eval", "warp-error", clip, "--source", clip, "--flow",
                                "deepflow", "--flow-preset", "fast"), 2)
    assert "no preset" in err  # validated by FlowConfig, as in `run`
    r = invoke("eval", "warp-error", clip, "--source", clip, "--flow-preset", "ultrafast",
               "--flow-scale", "0.5")
    assert r.exit_code == 0 and "over 2 frame pairs" in r.output, r.stderr


@pytest.mark.parametrize("path", [("demo",), ("eval", "warp-error"), ("eval", "flow"),
                                  ("explore",), ("styles",), ("eval", "cuts")])
def test_every_option_has_a_help_line_and_an_example(path: tuple[str, ...]) -> None:
    cmd = cli
    for name in path:
        cmd = cmd.commands[name]  # type: ignore[attr-defined]
    r = CliRunner().invoke(cli, [*path, "--help"])
    assert r.exit_code == 0
    for p in cmd.params:
        if p.param_type_name != "option" or p.name == "help":
            continue
        assert p.help, (path, p.name)
        assert getattr(p, "example", ""), (path, p.name)
    assert "e.g." in r.output
    if path in (("eval", "warp-error"), ("eval", "cuts")):
        for flag in ("--flow", "--flow-preset", "--flow-scale", "--flow-weights"):
            assert flag in r.output
