"""Edge cases of `vidstyle run` found in review: one-frame temporal runs, work folders
that are not vidstyle's or cannot be made (each test failed before its fix)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import vidstyle.engine
from tests.cli_helpers import OPTIM, invoke, one_line_error
from tests.media.helpers import make_clip
from vidstyle.errors import UsageError
from vidstyle.media import iter_frames
from vidstyle.workdir import WorkDir


@pytest.fixture
def photo(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    p = tmp_path / "photo.png"
    Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(p)
    return p


@pytest.fixture
def no_model(monkeypatch):
    """Building the stylizer (loading a model) fails the test: checks must come first."""

    def boom(**_: object):
        raise AssertionError("the stylizer was built before the check")

    monkeypatch.setattr(vidstyle.engine, "make_stylizer", boom)


# -- 1: temporal optimization of one frame ---------------------------------------------


def test_temporal_optimization_of_a_single_frame_is_stylized_cold(photo: Path,
                                                                  tmp_path: Path) -> None:
    """Was: ValueError "temporal terms need the engine's flows" (no pairs in one frame)."""
    out = tmp_path / "o.png"
    r = invoke("run", photo, "-o", out, *OPTIM, "--temporal", "short")
    assert r.exit_code == 0, r.output + r.stderr
    assert Image.open(out).size == (32, 27)  # --size 32
    clip = make_clip(tmp_path / "c.mp4", n=3, size=(48, 32))
    vid = tmp_path / "o.mp4"
    r = invoke("run", clip, "-o", vid, *OPTIM, "--temporal", "long", "--passes", "2",
               "--max-frames", "1")
    assert r.exit_code == 0, r.output + r.stderr
    assert len(list(iter_frames(vid))) == 1


def test_batch_with_an_image_and_temporal_optimization(photo: Path, tmp_path: Path) -> None:
    """Was: the ValueError aborted the whole batch."""
    src = tmp_path / "in"
    src.mkdir()
    photo.rename(src / "photo.png")
    out = tmp_path / "out"
    r = invoke("batch", src, out, *OPTIM, "--temporal", "short")
    assert r.exit_code == 0, r.output + r.stderr
    assert (out / "photo.png").is_file()


# -- 3: a user's folder inside the work folder --------------------------------------------


def test_a_users_folder_named_like_a_stage_is_never_deleted(photo: Path,
                                                           tmp_path: Path) -> None:
    """Was: `<work>/stylize` without a fingerprint file was rmtree'd with the user's files."""
    wd = tmp_path / "wd"
    (wd / "stylize").mkdir(parents=True)
    (wd / "stylize" / "thesis.txt").write_text("x")
    out = tmp_path / "o.png"
    err = one_line_error(invoke("run", photo, "-o", out, *OPTIM, "--work-dir", wd), 2)
    assert str(wd / "stylize") in err and "not made by vidstyle" in err
    assert (wd / "stylize" / "thesis.txt").read_text() == "x"
    assert not out.exists()


def test_stage_folders_are_replaced_only_when_vidstyle_made_them(tmp_path: Path) -> None:
    work = WorkDir(tmp_path / "w")
    stage = work.stage("stylize", "fp1")
    stage.path("frame_000000.png").write_bytes(b"old")
    again = work.stage("stylize", "fp2")  # vidstyle's own: settings changed, emptied
    assert not again.has("frame_000000.png")
    assert (tmp_path / "w" / "stylize" / "fingerprint").read_text() == "fp2"
    (tmp_path / "w" / "mine").mkdir()
    (tmp_path / "w" / "mine" / "keep.txt").write_text("k")
    with pytest.raises(UsageError, match="not made by vidstyle"):
        work.stage("mine", "fp")
    assert (tmp_path / "w" / "mine" / "keep.txt").read_text() == "k"
    (tmp_path / "w" / "empty").mkdir()  # an empty folder (a kill before the marker)
    assert work.stage("empty", "fp").fingerprint == "fp"
    (tmp_path / "w" / "afile").write_text("f")
    with pytest.raises(UsageError, match="in the way"):
        work.stage("afile", "fp")


# -- 6: a work folder that cannot be created ----------------------------------------------


@pytest.mark.parametrize("where", ["under_a_file", "proc"])
def test_a_work_folder_that_cannot_be_made_is_a_usage_error_before_loading(
        photo: Path, tmp_path: Path, where: str, no_model) -> None:
    """Was: NotADirectoryError / FileNotFoundError tracebacks, after the model loaded."""
    if where == "proc" and not Path("/proc").is_dir():
        pytest.skip("no /proc")
    wd = photo / "sub" if where == "under_a_file" else Path("/proc/vidstyle-wd")
    out = tmp_path / "o.png"
    err = one_line_error(invoke("run", photo, "-o", out, *OPTIM, "--work-dir", wd), 2)
    assert "cannot create the work folder" in err and str(wd) in err
    assert not out.exists()


def test_a_failed_start_leaves_no_work_folder(photo: Path, tmp_path: Path,
                                              no_model) -> None:
    wd = tmp_path / "new" / "wd"
    with pytest.raises(AssertionError, match="built before"):
        invoke("run", photo, "-o", tmp_path / "o.png", *OPTIM, "--work-dir", wd)
    assert not (tmp_path / "new").exists()


# -- 10 (part): work options of a run that keeps no work folder ----------------------------


def test_work_options_of_a_streaming_run_are_errors(photo: Path, tmp_path: Path) -> None:
    """Was: --work-dir and --keep-work silently ignored by the fast method."""
    out = tmp_path / "o.png"
    fast = ["--method", "fast", "--style", "starry", "-q"]
    err = one_line_error(invoke("run", photo, "-o", out, *fast, "--work-dir", tmp_path / "w"), 2)
    assert "--work-dir has no effect" in err and "keeps no work folder" in err
    err = one_line_error(invoke("run", photo, "-o", out, *fast, "--keep-work"), 2)
    assert "--keep-work has no effect" in err
    assert not out.exists() and not (tmp_path / "w").exists()
    src = tmp_path / "in"
    src.mkdir()
    photo.rename(src / "photo.png")
    err = one_line_error(invoke("batch", src, tmp_path / "out", *fast, "--keep-work"), 2)
    assert "--keep-work has no effect" in err


# -- 13: a still image whose suffix vidstyle does not write --------------------------------


def test_a_still_in_a_read_only_format_gets_a_png_by_default(tmp_path: Path) -> None:
    """Was: a one-frame .mp4 (`marple8_01.ppm` -> `..._fast_size64.mp4`)."""
    from vidstyle.engine import build_config, default_output

    ppm = tmp_path / "frame.ppm"
    Image.fromarray(np.full((30, 40, 3), 70, np.uint8)).save(ppm)
    cfg, _ = build_config({"--style": "starry", "--method": "fast", "--size": 32})
    assert default_output(ppm, cfg).name == "frame_starry_fast_size32.png"
    r = invoke("run", ppm, "--style", "starry", "--method", "fast", "--size", "32", "-q")
    assert r.exit_code == 0, r.stderr
    assert Image.open(tmp_path / "frame_starry_fast_size32.png").size == (32, 24)
    clip = make_clip(tmp_path / "c.mkv", n=2, size=(48, 32)).rename(tmp_path / "c.ts")
    assert default_output(clip, cfg).suffix == ".mp4"  # a video stays a video
