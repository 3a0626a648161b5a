"""The engine's resumable stages: kill -9 midway, rerun, same output; changed settings
recompute; pipeline files are data."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests.media.helpers import make_clip
from vidstyle.config import OptimConfig, RunConfig
from vidstyle.engine import PipelineSpec, build_config, run
from vidstyle.engine.spec import pipelines_dir
from vidstyle.errors import UsageError
from vidstyle.media import iter_frames
from vidstyle.workdir import load_png

REPO = Path(__file__).resolve().parents[1]
N = 16


def cfg(**optim) -> RunConfig:
    base = dict(size=48, iters=6, multiscale=1, seed=3)
    base.update(optim)
    return RunConfig(style="wave", method="optim", device="cpu", optim=OptimConfig(**base))


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return make_clip(tmp_path_factory.mktemp("clip") / "clip.mp4", n=N, size=(80, 48))


def frames_of(stage_dir: Path) -> list[np.ndarray]:
    return [load_png(p) for p in sorted(stage_dir.glob("frame_*.png"))]


def _start_and_wait(clip: Path, out: Path, work: Path, frames: int) -> subprocess.Popen:
    """Start `vidstyle run` in a subprocess; return once ``frames`` frames are finished."""
    cmd = [sys.executable, "-m", "vidstyle", "run", str(clip), "-o", str(out),
           "--work-dir", str(work), "--style", "wave", "--method", "optim", "--size", "48",
           "--iters", "6", "--multiscale", "1", "--seed", "3", "--device", "cpu", "--quiet"]
    # a background shell starts children with SIGINT ignored; give this one the default
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    stage = work / "stylize"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if stage.is_dir() and len(list(stage.glob("frame_*.png"))) >= frames:
            break
        time.sleep(0.02)
    assert proc.poll() is None, "run finished before it could be interrupted"
    return proc


def test_ctrl_c_stops_cleanly_and_keeps_finished_frames(clip, tmp_path):
    out, work = tmp_path / "out.mp4", tmp_path / "work"
    proc = _start_and_wait(clip, out, work, frames=2)
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert "interrupted" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err
    assert not out.exists()
    assert len(list((work / "stylize").glob("frame_*.png"))) >= 2
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]


def test_kill_9_then_resume_matches_uninterrupted(clip, tmp_path):
    ref = run(clip, tmp_path / "ref.mp4", cfg(), work_dir=tmp_path / "ref_work",
              keep_work=True)
    assert ref.frames == N and ref.computed == N

    out, work = tmp_path / "resumed.mp4", tmp_path / "work"
    proc = _start_and_wait(clip, out, work, frames=3)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    stage = work / "stylize"
    done = len(list(stage.glob("frame_*.png")))
    assert 3 <= done < N
    assert not out.exists(), "a killed run must not leave an output file"

    resumed = run(clip, out, cfg(), work_dir=work, keep_work=True)
    assert resumed.reused == done
    assert resumed.computed == N - done  # redoes at most the unfinished frame(s)
    a, b = frames_of(tmp_path / "ref_work" / "stylize"), frames_of(stage)
    assert len(a) == len(b) == N
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    # the encoded output carries exactly those frames (x264 itself is not bit-repeatable
    # across runs with threads, so compare with the artifacts within coding error)
    got = [f for f in iter_frames(out)]
    want = [f for f in iter_frames(tmp_path / "ref.mp4")]
    assert [f.pts for f in got] == [f.pts for f in want]
    for i, f in enumerate(got):
        errs = [np.abs(f.rgb.astype(int) - art).mean() for art in b]
        assert int(np.argmin(errs)) == i and errs[i] < 6
    # leftovers: no temp files in the stage folder
    assert not [p for p in stage.iterdir() if p.name.startswith(".")]


def test_changed_setting_recomputes_and_same_setting_reuses(clip, tmp_path):
    work = tmp_path / "w"
    first = run(clip, tmp_path / "a.mp4", cfg(iters=2), work_dir=work, keep_work=True)
    again = run(clip, tmp_path / "b.mp4", cfg(iters=2), work_dir=work, keep_work=True)
    assert first.computed == N and again.reused == N and again.computed == 0
    changed = run(clip, tmp_path / "c.mp4", cfg(iters=3), work_dir=work, keep_work=True)
    assert changed.computed == N and changed.reused == 0
    style = run(clip, tmp_path / "d.mp4",
                cfg(iters=3).replace(style="udnie"), work_dir=work, keep_work=True)
    assert style.computed == N


def test_pipeline_files_are_data(tmp_path):
    for method in ("optim", "fast"):
        spec = PipelineSpec.builtin(method)
        assert [s.kind for s in spec.stages] == ["decode", "flow", "masks", "segment",
                                                 "stylize", "encode"]
    p = tmp_path / "p.toml"
    p.write_text('name = "mine"\n[[stage]]\nkind = "decode"\n[[stage]]\nkind = "stylize"\n'
                 'method = "optim"\niters = 7\nsize = 99\n[[stage]]\nkind = "encode"\ncrf = 30\n')
    c, spec = build_config({}, pipeline=p)
    assert (c.method, c.optim.iters, c.optim.size, c.encode.crf) == ("optim", 7, 99, 30)
    assert not spec.has("flow")
    c, _ = build_config({"--iters": 9}, pipeline=p)  # the command line wins
    assert c.optim.iters == 9
    p.write_text('[[stage]]\nkind = "decode"\n[[stage]]\nkind = "stylize"\nbogus = 1\n'
                 '[[stage]]\nkind = "encode"\n')
    with pytest.raises(UsageError, match="bogus"):
        build_config({"--method": "optim"}, pipeline=p)
    p.write_text('[[stage]]\nkind = "teleport"\n')
    with pytest.raises(UsageError, match="teleport"):
        PipelineSpec.from_toml(p)


def test_still_image_is_one_frame_video(tmp_path, data_dir):
    src = data_dir / "content" / "chicago.jpg"
    out = tmp_path / "chicago.png"
    res = run(src, out, cfg(size=40, iters=2))
    assert res.frames == 1 and out.is_file()
    mp4 = run(src, tmp_path / "chicago.mp4", cfg(size=40, iters=2))
    assert mp4.frames == 1


def test_builtin_pipeline_files_hold_no_defaults():
    """The config classes are the one home of defaults: a built-in pipeline restates none
    of them (its stylize stage names only the method), so loading it changes nothing."""
    assert {p.name for p in pipelines_dir().glob("*.toml")} == {"fast.toml", "optim.toml"}
    for method in ("optim", "fast"):
        spec = PipelineSpec.builtin(method)
        assert {s.kind: dict(s.params) for s in spec.stages} == {
            "decode": {}, "flow": {}, "masks": {}, "segment": {}, "stylize": {"method": method},
            "encode": {}}
        base = RunConfig(method=method)
        assert spec.configure(base) == base


def test_partial_outputs_with_glob_characters_in_the_name_are_swept(tmp_path):
    from vidstyle.engine import _sweep_partial_outputs

    out = tmp_path / "A [1].jpg"
    left = tmp_path / ".A [1].k3j2.part.jpg"  # what a killed encode leaves (hidden_temp_path)
    left.write_bytes(b"partial")
    keep = tmp_path / ".A 1.k3j2.part.jpg"  # another output's partial file
    keep.write_bytes(b"other")
    _sweep_partial_outputs(out)
    assert not left.exists() and keep.exists()
