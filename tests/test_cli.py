"""Command-line contract: bad input gives one line on stderr, a non-zero exit code, no
traceback and no output file; good input writes output and reports it."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import av
import pytest
from click.testing import CliRunner

from tests.media.helpers import make_clip
from vidstyle.cli import cli
from vidstyle.config import EncodeConfig

FAST = ["--method", "optim", "--size", "32", "--iters", "1", "--multiscale", "1", "--quiet"]


def invoke(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def assert_clean_error(result, out: Path | None, code: int | None = None) -> None:
    assert result.exit_code != 0
    if code is not None:
        assert result.exit_code == code
    err = result.stderr.strip()
    assert err, "expected a message on stderr"
    assert len(err.splitlines()) == 1, err
    assert "Traceback" not in result.output + result.stderr
    if out is not None:
        assert not out.exists()
        if out.parent.is_dir():
            leftovers = [p for p in out.parent.iterdir()
                         if p.name.startswith(f".{out.stem}") and "part" in p.name]
            assert not leftovers


@pytest.fixture(scope="module")
def media_dir(tmp_path_factory, data_dir) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("bad")
    text = d / "notes.mp4"
    text.write_text("this is not a video\n" * 50)
    bbb = data_dir / "video" / "bigbuckbunny.mp4"
    trunc = d / "truncated.mp4"
    trunc.write_bytes(bbb.read_bytes()[:2048])
    zero = d / "zero.avi"
    with av.open(str(zero), "w") as c:
        s = c.add_stream("libx264", rate=25)
        s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
        c.start_encoding()
    bad_style = d / "bad_style.jpg"
    bad_style.write_bytes(b"\xff\xd8 not really a jpeg")
    clip = make_clip(d / "clip.mp4", n=3)
    return {"text": text, "trunc": trunc, "zero": zero, "bad_style": bad_style, "clip": clip,
            "dir": d}


@pytest.mark.parametrize(
    "case",
    ["missing", "directory", "text", "truncated", "zero_frames"],
)
def test_bad_inputs(case, media_dir, tmp_path):
    src = {
        "missing": tmp_path / "nope.mp4",
        "directory": media_dir["dir"],
        "text": media_dir["text"],
        "truncated": media_dir["trunc"],
        "zero_frames": media_dir["zero"],
    }[case]
    out = tmp_path / "out.mp4"
    assert_clean_error(invoke("run", str(src), "-o", str(out), *FAST), out)


@pytest.mark.parametrize("method", ["optim", "fast"])
def test_unknown_style_is_a_usage_error(media_dir, tmp_path, method):
    out = tmp_path / "out.mp4"
    args = FAST if method == "optim" else ["--method", "fast", "--size", "32", "--quiet"]
    r = invoke("run", str(media_dir["clip"]), "-o", str(out), "--style", "nosuchstyle", *args)
    assert_clean_error(r, out, code=2)
    assert "nosuchstyle" in r.stderr


def test_unreadable_style_image(media_dir, tmp_path):
    """A style image that exists but cannot be read is not a usage error: exit code 1."""
    out = tmp_path / "out.mp4"
    r = invoke("run", str(media_dir["clip"]), "-o", str(out), "--style",
               str(media_dir["bad_style"]), *FAST)
    assert_clean_error(r, out, code=1)
    assert "Error" not in r.stderr and "not an image" in r.stderr  # words, no class name


@pytest.mark.parametrize("case", ["suffix", "no_suffix", "missing_folder", "folder_as_file"])
def test_bad_output_path_is_a_usage_error(media_dir, tmp_path, case):
    out = {
        "suffix": tmp_path / "out.xyz",
        "no_suffix": tmp_path / "out",
        "missing_folder": tmp_path / "no" / "such" / "out.mp4",
        "folder_as_file": tmp_path / "adir.mp4",
    }[case]
    if case == "folder_as_file":
        out.mkdir()
    r = invoke("run", str(media_dir["clip"]), "-o", str(out), *FAST)
    assert_clean_error(r, None, code=2)
    assert str(out.parent if case == "missing_folder" else out.name) in r.stderr
    assert not (tmp_path / "no").exists()


def test_unwritable_output(media_dir, tmp_path):
    not_a_dir = tmp_path / "plain_file"
    not_a_dir.write_text("x")
    out = not_a_dir / "out.mp4"
    r = invoke("run", str(media_dir["clip"]), "-o", str(out), *FAST)
    assert_clean_error(r, out)


def test_output_equal_to_input(media_dir, tmp_path):
    src = tmp_path / "same.mp4"
    shutil.copy(media_dir["clip"], src)
    before = src.read_bytes()
    r = invoke("run", str(src), "-o", str(src), *FAST)
    assert_clean_error(r, None, code=2)
    assert src.read_bytes() == before


@pytest.mark.parametrize("size", ["0", "100000", "-5"])
def test_absurd_size(media_dir, tmp_path, size):
    out = tmp_path / "out.mp4"
    r = invoke("run", str(media_dir["clip"]), "-o", str(out), "--size", size, "--iters", "1",
               "--quiet")
    assert_clean_error(r, out, code=2)


def test_usage_error_exit_code(tmp_path):
    r = invoke("run", str(tmp_path / "x.mp4"), "--method", "bogus")
    assert r.exit_code == 2


def test_run_video_and_info(media_dir, tmp_path):
    out = tmp_path / "styled.mp4"
    r = invoke("run", str(media_dir["clip"]), "-o", str(out), "--style", "wave", *FAST)
    assert r.exit_code == 0, r.output + r.stderr
    assert out.is_file()
    info = invoke("info", str(out))
    assert info.exit_code == 0
    assert "frames" in info.output
    with av.open(str(out)) as c:
        assert sum(1 for _ in c.decode(video=0)) == 3


def test_styles_lists_the_seven(tmp_path):
    r = invoke("styles")
    assert r.exit_code == 0
    for name in ("starry", "scream", "wave", "composition_vii", "shipwreck", "udnie",
                 "woman_with_hat"):
        assert name in r.output


def test_user_styles_folder(media_dir, tmp_path, monkeypatch):
    user = tmp_path / "mystyles"
    user.mkdir()
    shutil.copy(Path(__file__).resolve().parents[1] / "vidstyle/data/styles/udnie.jpg",
                user / "myart.jpg")
    monkeypatch.setenv("VIDSTYLE_STYLES", str(user))
    assert "myart" in invoke("styles").output
    out = tmp_path / "o.png"
    img = media_dir["dir"] / "still.png"
    if not img.exists():
        from tests.media.helpers import synthetic_rgb
        from vidstyle.media import write_image

        write_image(img, synthetic_rgb(0, 48, 40))
    r = invoke("run", str(img), "-o", str(out), "--style", "myart", *FAST)
    assert r.exit_code == 0, r.stderr
    assert out.is_file()


def test_help_has_examples():
    for cmd in ("run", "info", "styles", "setup", "demo", "train", "eval", "explore"):
        r = invoke(cmd, "--help")
        assert r.exit_code == 0
        assert "Example" in r.output
    assert os.environ.get("VIDSTYLE_OFFLINE") == "1"


def test_eval_flow_on_sintel(data_dir):
    r = invoke("eval", "flow", str(data_dir / "flow" / "sintel" / "training"), "--methods",
               "dis:ultrafast")
    assert r.exit_code == 0, r.stderr
    lines = [ln for ln in r.output.splitlines() if "alley_1" in ln]
    assert lines
    epe = float(lines[0].split()[4])
    assert epe < 1.0  # DIS ultrafast on alley_1: about 0.6 px


def test_eval_warp_error_orders_stable_below_flicker(tmp_path):
    import numpy as np

    from tests.media.helpers import make_clip, synthetic_rgb
    from vidstyle.media import MediaWriter, probe

    src = make_clip(tmp_path / "src.mp4", n=8, size=(96, 64))
    flick = tmp_path / "flicker.mp4"
    rng = np.random.default_rng(0)
    with MediaWriter(flick, source=probe(src), encode=EncodeConfig(crf=10)) as w:
        for i in range(8):
            img = synthetic_rgb(i, 96, 64).astype(int) + int(rng.integers(-40, 40))
            w.write(np.clip(img, 0, 255).astype(np.uint8))
    stable = invoke("eval", "warp-error", str(src), "--source", str(src))
    noisy = invoke("eval", "warp-error", str(flick), "--source", str(src),
                   "--plot", str(tmp_path / "e.png"), "--csv", str(tmp_path / "e.csv"))
    assert stable.exit_code == 0 and noisy.exit_code == 0, noisy.stderr
    assert float(stable.output.split()[2]) < float(noisy.output.split()[2])
    assert (tmp_path / "e.png").is_file() and (tmp_path / "e.csv").is_file()



def test_eval_warp_error_of_a_clip_made_with_size_and_max_frames(tmp_path, caplog):
    """It failed with a bare "sizes differ": the source is now resized to the stylized
    size and cut to its length, and both are logged."""
    import logging

    src = make_clip(tmp_path / "src.mp4", n=8, size=(96, 64))
    out = tmp_path / "styled.mp4"
    r = invoke("run", str(src), "-o", str(out), "--method", "fast", "--style", "wave",
               "--size", "48", "--max-frames", "5", "--quiet")
    assert r.exit_code == 0, r.stderr
    with caplog.at_level(logging.WARNING, logger="vidstyle.evaluate"):
        ev = invoke("eval", "warp-error", str(out), "--source", str(src),
                    "--csv", str(tmp_path / "e.csv"))
    assert ev.exit_code == 0, ev.stderr
    assert "over 4 frame pairs" in ev.output  # 5 common frames
    assert float(ev.output.split()[2]) >= 0
    logged = " ".join(r.getMessage() for r in caplog.records)
    assert "resized to 48x32" in logged and "first 5" in logged
    assert len((tmp_path / "e.csv").read_text().splitlines()) == 1 + 4 + 1


def test_eval_warp_error_of_another_shape_is_a_usage_error(tmp_path):
    src = make_clip(tmp_path / "src.mp4", n=4, size=(96, 64))
    other = make_clip(tmp_path / "other.mp4", n=4, size=(64, 64))
    r = invoke("eval", "warp-error", str(other), "--source", str(src))
    assert_clean_error(r, None, code=2)
    assert "96x64" in r.stderr and "64x64" in r.stderr

def test_video_to_still_image_output_is_a_usage_error(media_dir, tmp_path):
    out = tmp_path / "frame.png"
    r = invoke("run", str(media_dir["clip"]), "-o", str(out), *FAST)
    assert_clean_error(r, out, code=2)
    ok = invoke("run", str(media_dir["clip"]), "-o", str(out), "--max-frames", "1", *FAST)
    assert ok.exit_code == 0, ok.stderr
    assert out.is_file()


def test_leftover_partial_output_of_a_killed_run_is_swept(media_dir, tmp_path):
    out = tmp_path / "o.mp4"
    stale = tmp_path / ".o.x1y2z3.part.mp4"
    stale.write_bytes(b"half a video")
    r = invoke("run", str(media_dir["clip"]), "-o", str(out), *FAST)
    assert r.exit_code == 0, r.stderr
    assert out.is_file() and not stale.exists()
