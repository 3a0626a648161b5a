"""`vidstyle batch`: folder in, folder out, resumable, redoes exactly what changed."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.media.helpers import make_clip
from vidstyle.batch import STATE_DIR, plan_batch, run_batch
from vidstyle.cli import cli
from vidstyle.config import FastConfig, RunConfig
from vidstyle.engine import make_stylizer
from vidstyle.errors import Interrupted, UsageError
from vidstyle.media import iter_frames


def _config(**fast: object) -> RunConfig:
    return RunConfig(style="wave", method="fast", device="cpu",
                     fast=FastConfig(size=64, **fast))  # type: ignore[arg-type]


@pytest.fixture
def in_dir(tmp_path: Path, data_dir: Path) -> Path:
    d = tmp_path / "in"
    (d / "sub").mkdir(parents=True)
    shutil.copy(data_dir / "content" / "chicago.jpg", d / "a.jpg")
    make_clip(d / "sub" / "clip.mp4", n=6, size=(80, 48))
    shutil.copy(data_dir / "content" / "chicago.jpg", d / ".hidden.jpg")  # ignored
    (d / "notes.txt").write_text("not media")  # ignored
    return d


class _Counting:
    """A stylizer factory that counts the stylizers it makes (one to check the settings
    before the items, then one per computed item)."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, **kw: object):  # noqa: ANN204
        self.calls += 1
        return make_stylizer(**kw)


def test_mirrors_the_folder_then_skips_what_is_done(in_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    count = _Counting()
    res = run_batch(in_dir, out, _config(), stylizer_factory=count)
    assert res.done == [Path("a.jpg"), Path("sub/clip.mp4")] and not res.failed
    assert count.calls == 1 + 2
    assert (out / "a.jpg").is_file() and (out / "sub" / "clip.mp4").is_file()
    assert len(list(iter_frames(out / "sub" / "clip.mp4"))) == 6
    assert (out / STATE_DIR / "receipts" / "sub" / "clip.mp4.json").is_file()
    assert not (out / STATE_DIR / "work" / "sub" / "clip.mp4").exists()  # cleaned up
    report = out / STATE_DIR / "report.json"  # the driver's own: rewritten by each run
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file() and p != report}

    again = run_batch(in_dir, out, _config(), stylizer_factory=count)
    assert again.skipped == res.done and again.done == [] and count.calls == 3 + 1
    assert stamps == {p: p.stat().st_mtime_ns for p in out.rglob("*")
                      if p.is_file() and p != report}
    assert json.loads(report.read_text())["counts"] == {"done": 0, "skipped": 2, "failed": 0,
                                                        "total": 2}


def test_redoes_exactly_what_changed(in_dir: Path, tmp_path: Path, data_dir: Path) -> None:
    out = tmp_path / "out"
    run_batch(in_dir, out, _config())
    shutil.copy(data_dir / "content" / "golden_gate.jpg", in_dir / "a.jpg")  # new input
    (out / "sub" / "clip.mp4").unlink()  # lost output
    assert run_batch(in_dir, out, _config()).done == [Path("a.jpg"), Path("sub/clip.mp4")]
    with (out / "a.jpg").open("ab") as f:  # altered output
        f.write(b"x")
    res = run_batch(in_dir, out, _config())
    assert res.done == [Path("a.jpg")] and res.skipped == [Path("sub/clip.mp4")]
    res = run_batch(in_dir, out, _config(strength=0.5))  # other settings: all redone
    assert res.done == [Path("a.jpg"), Path("sub/clip.mp4")]


def test_interrupted_item_leaves_no_partial_output_and_resumes(in_dir: Path,
                                                               tmp_path: Path) -> None:
    out = tmp_path / "out"

    def progress(ev) -> None:  # noqa: ANN001 - the kill arrives during the clip
        if ev.stage == "stylize" and ev.done == 3 and ev.total == 6:
            raise KeyboardInterrupt

    with pytest.raises(Interrupted):
        run_batch(in_dir, out, _config(), progress=progress)
    assert (out / "a.jpg").is_file()
    leftovers = [p.name for p in (out / "sub").iterdir()] if (out / "sub").exists() else []
    assert leftovers == []  # neither the output nor a partial file
    res = run_batch(in_dir, out, _config())
    assert res.skipped == [Path("a.jpg")] and res.done == [Path("sub/clip.mp4")]


def test_a_bad_input_is_reported_and_the_rest_goes_on(in_dir: Path, tmp_path: Path) -> None:
    (in_dir / "broken.png").write_text("not a picture")
    out = tmp_path / "out"
    res = CliRunner().invoke(cli, ["batch", str(in_dir), str(out), "--style", "wave",
                                   "--size", "64", "--device", "cpu", "-q"])
    assert res.exit_code == 1
    assert isinstance(res.exception, SystemExit)  # a handled error, not a crash
    assert "broken.png: failed:" in res.output and "1 item(s) failed" in res.output
    assert (out / "a.jpg").is_file() and (out / "sub" / "clip.mp4").is_file()
    assert not (out / "broken.png").exists()


def test_output_folder_inside_the_input_is_not_read_back(in_dir: Path) -> None:
    out = in_dir / "styled"
    run_batch(in_dir, out, _config())
    assert [i.rel for i in plan_batch(in_dir, out)] == [Path("a.jpg"), Path("sub/clip.mp4")]


def test_animated_gif_becomes_a_video(tmp_path: Path) -> None:
    import numpy as np
    from PIL import Image

    src = tmp_path / "in"
    src.mkdir()
    rng = np.random.default_rng(0)
    frames = [Image.fromarray(rng.integers(0, 255, (40, 56, 3), dtype=np.uint8))
              for _ in range(4)]
    frames[0].save(src / "anim.gif", save_all=True, append_images=frames[1:], duration=100)
    res = run_batch(src, tmp_path / "out", _config())
    assert res.done == [Path("anim.gif")]
    assert len(list(iter_frames(tmp_path / "out" / "anim.gif.mp4"))) == 4


def test_two_inputs_for_one_output_are_refused(tmp_path: Path) -> None:
    (tmp_path / "x.mpg").write_bytes(b"")  # not writable as .mpg: becomes x.mpg.mp4
    (tmp_path / "x.mpg.mp4").write_bytes(b"")
    with pytest.raises(UsageError, match="both be written"):
        plan_batch(tmp_path, tmp_path / "out")


def test_bad_folders_are_usage_errors(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="does not exist"):
        plan_batch(tmp_path / "missing", tmp_path / "out")
    with pytest.raises(UsageError, match="differ"):
        plan_batch(tmp_path, tmp_path)
    res = CliRunner().invoke(cli, ["batch", str(tmp_path / "missing"), str(tmp_path / "o")])
    assert res.exit_code == 2 and "does not exist" in res.output


def test_an_interrupted_optim_video_continues_from_its_finished_frames(tmp_path: Path) -> None:
    src = tmp_path / "in"
    src.mkdir()
    make_clip(src / "clip.mp4", n=5, size=(64, 40))
    out = tmp_path / "out"
    cfg = RunConfig(style="wave", method="optim", device="cpu")
    cfg = cfg.replace(optim=cfg.optim.replace(size=40, iters=4, multiscale=1, seed=1))

    def kill_after_3(ev) -> None:  # noqa: ANN001
        if ev.stage == "stylize" and ev.iteration is None and ev.done == 3:
            raise KeyboardInterrupt

    with pytest.raises(Interrupted):
        run_batch(src, out, cfg, progress=kill_after_3)
    work = out / STATE_DIR / "work" / "clip.mp4"
    assert len(list(work.rglob("frame_*.png"))) == 3 and not (out / "clip.mp4").exists()
    stylized: list[int] = []

    def record(ev) -> None:  # noqa: ANN001 - optimizer iterations only for computed frames
        if ev.iteration == 1:
            stylized.append(ev.done)

    res = run_batch(src, out, cfg, progress=record)
    assert res.done == [Path("clip.mp4")] and len(stylized) == 2  # frames 4 and 5 only
    assert len(list(iter_frames(out / "clip.mp4"))) == 5 and not work.exists()


def _start_batch_and_wait(src: Path, out: Path, item: str, frames: int) -> tuple[
        subprocess.Popen, list[str]]:
    """Start `vidstyle batch` (optim method) in a subprocess; return once ``frames`` frames
    of ``item`` are finished. Also returns the command's arguments after the program."""
    cmd = [sys.executable, "-m", "vidstyle", "batch", str(src), str(out), "--style", "wave",
           "--method", "optim", "--size", "40", "--iters", "6", "--multiscale", "1",
           "--seed", "3", "--device", "cpu", "--quiet"]
    repo = Path(__file__).resolve().parents[1]
    # a background shell starts children with SIGINT ignored; give this one the default
    proc = subprocess.Popen(cmd, cwd=repo, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    work = out / STATE_DIR / "work" / item
    deadline = time.time() + 180
    while time.time() < deadline and proc.poll() is None:
        if len(list(work.rglob("frame_*.png"))) >= frames:
            break
        time.sleep(0.02)
    assert proc.poll() is None, "the batch finished before it could be interrupted"
    return proc, cmd[3:]


def test_ctrl_c_stops_the_batch_with_one_line(tmp_path: Path) -> None:
    src = tmp_path / "in"
    src.mkdir()
    make_clip(src / "b.mp4", n=8, size=(64, 40))
    proc, _ = _start_batch_and_wait(src, tmp_path / "out", "b.mp4", 2)
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert len(err.strip().splitlines()) == 1 and "interrupted" in err, err
    assert not (tmp_path / "out" / "b.mp4").exists()


def test_kill_9_mid_batch_then_the_same_command_finishes(tmp_path: Path, data_dir: Path) -> None:
    """A real crash: SIGKILL while the second item (a video, optim method) is half done.
    The rerun skips the first item, reuses the finished frames of the second, and leaves
    no partial files."""
    src = tmp_path / "in"
    src.mkdir()
    shutil.copy(data_dir / "content" / "chicago.jpg", src / "a.jpg")
    make_clip(src / "b.mp4", n=8, size=(64, 40))
    out = tmp_path / "out"
    proc, args = _start_batch_and_wait(src, out, "b.mp4", 3)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    work = out / STATE_DIR / "work" / "b.mp4"
    assert (out / "a.jpg").is_file() and not (out / "b.mp4").exists()
    done = len(list(work.rglob("frame_*.png")))

    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 0, res.output
    assert "a.jpg: already done" in res.output and "b.mp4: done" in res.output
    assert len(list(iter_frames(out / "b.mp4"))) == 8 and done >= 3
    assert sorted(p.name for p in out.iterdir()) == [STATE_DIR, "a.jpg", "b.mp4"]


def test_unusable_settings_stop_before_any_item(in_dir: Path, tmp_path: Path) -> None:
    res = CliRunner().invoke(cli, ["batch", str(in_dir), str(tmp_path / "o"), "--style",
                                   "no_such_style", "--device", "cpu", "-q"])
    assert res.exit_code != 0 and isinstance(res.exception, SystemExit)
    assert res.output.count("no_such_style") == 1 and "[1/" not in res.output
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").rglob("*.jpg"))


def test_os_errors_fail_the_item_and_folder_links_are_not_followed(in_dir: Path,
                                                                  tmp_path: Path) -> None:
    (in_dir / "sub" / "loop").symlink_to(in_dir, target_is_directory=True)
    out = tmp_path / "out"
    out.mkdir()
    (out / "sub").write_text("a file where the output folder should be")
    assert [i.rel for i in plan_batch(in_dir, out)] == [Path("a.jpg"), Path("sub/clip.mp4")]
    res = run_batch(in_dir, out, _config())
    assert res.done == [Path("a.jpg")] and list(res.failed) == [Path("sub/clip.mp4")]


def test_a_file_rewritten_with_its_old_size_and_mtime_is_still_redone(in_dir: Path,
                                                                      tmp_path: Path) -> None:
    out = tmp_path / "out"
    run_batch(in_dir, out, _config())
    a = in_dir / "a.jpg"
    st = a.stat()
    data = bytearray(a.read_bytes())
    data[-3] ^= 0xFF  # same size, other content
    a.write_bytes(bytes(data))
    os.utime(a, ns=(st.st_atime_ns, st.st_mtime_ns))  # and the old mtime
    assert run_batch(in_dir, out, _config()).done == [Path("a.jpg")]


def test_replacing_a_style_image_in_place_redoes_everything(in_dir: Path, tmp_path: Path,
                                                           data_dir: Path) -> None:
    style = tmp_path / "mine.jpg"
    shutil.copy(data_dir / "styles" / "wave.jpg", style)
    cfg = RunConfig(style=str(style), method="optim", device="cpu")
    cfg = cfg.replace(optim=cfg.optim.replace(size=32, iters=2, multiscale=1),
                      max_frames=1)
    src = tmp_path / "photos"
    src.mkdir()
    shutil.copy(in_dir / "a.jpg", src / "a.jpg")
    out = tmp_path / "out"
    assert run_batch(src, out, cfg).done == [Path("a.jpg")]
    assert run_batch(src, out, cfg.replace(device="auto")).skipped == [Path("a.jpg")]
    shutil.copy(data_dir / "styles" / "udnie.jpg", style)
    assert run_batch(src, out, cfg).done == [Path("a.jpg")]


def test_dry_run_lists_without_stylizing(in_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    args = ["batch", str(in_dir), str(out), "--style", "wave", "--size", "64", "--device",
            "cpu", "-q"]
    res = CliRunner().invoke(cli, [*args, "--dry-run"])
    assert res.exit_code == 0 and "2 to do, 0 done" in res.output
    assert not out.exists()
    run_batch(in_dir, out, _config())
    (out / "a.jpg").unlink()
    res = CliRunner().invoke(cli, [*args, "--dry-run"])
    assert "a.jpg: to do" in res.output and "sub/clip.mp4: done" in res.output
    assert "1 to do, 1 done" in res.output


def test_plan_picks_media_by_the_media_suffix_table(tmp_path: Path) -> None:
    """Images, writable and read-only videos are items (the latter get .mp4 appended);
    other files are not."""
    from vidstyle.media import IMAGE_SUFFIXES, READ_ONLY_VIDEO_SUFFIXES, VIDEO_SUFFIXES

    src = tmp_path / "in"
    src.mkdir()
    names = [f"f{i}{s}" for i, s in enumerate(sorted(
        set(IMAGE_SUFFIXES) | set(VIDEO_SUFFIXES) | set(READ_ONLY_VIDEO_SUFFIXES)))]
    for name in [*names, "notes.txt", "flow.npz", "model.pt"]:
        (src / name).write_bytes(b"x")
    items = plan_batch(src, tmp_path / "out")
    assert sorted(i.rel.name for i in items) == sorted(names)
    for item in items:
        read_only = item.input.suffix in READ_ONLY_VIDEO_SUFFIXES
        assert item.output.name == item.rel.name + (".mp4" if read_only else "")


def test_receipts_name_the_runtime_that_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    """--runtime auto is resolved for this machine in the settings fingerprint: a machine
    whose auto runs bf16 does not take an eager-made output as done, and vice versa."""
    from vidstyle.batch import settings_fingerprint
    from vidstyle.fast import runtimes

    monkeypatch.setattr(runtimes, "cpu_flags", lambda: frozenset({"avx2"}))
    eager_machine = settings_fingerprint(_config(runtime="auto"))
    assert settings_fingerprint(_config(runtime="auto")) == eager_machine
    monkeypatch.setattr(runtimes, "cpu_flags", lambda: frozenset({"avx512_bf16"}))
    bf16_machine = settings_fingerprint(_config(runtime="auto"))
    assert bf16_machine != eager_machine
    assert settings_fingerprint(_config(runtime="eager")) != settings_fingerprint(
        _config(runtime="bf16"))
