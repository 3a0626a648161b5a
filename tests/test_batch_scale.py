"""`vidstyle batch` beyond one process: the shared unit of work, the OUT_DIR lock, the
``--jobs N`` process pool and long videos split into chunks (the Ray backend's own tests
are in test_batch_ray.py)."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from tests.media.helpers import audio_summary, decoded_pts, make_clip
from vidstyle.batch import STATE_DIR, plan_batch, process_item, run_batch
from vidstyle.batch.lock import BatchLock
from vidstyle.batch.work import ItemSettings, chunks_of, plan_chunks
from vidstyle.cli import cli
from vidstyle.config import BatchConfig, FastConfig, RunConfig
from vidstyle.contracts import limited
from vidstyle.engine import PipelineSpec, make_stylizer
from vidstyle.errors import OutputError
from vidstyle.evaluate import warp_error_of_files
from vidstyle.flow import flow_from_config
from vidstyle.imageops import resize_uint8
from vidstyle.media import MediaWriter, iter_frames, probe

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "vidstyle" / "data" / "bigbuckbunny.mp4"


#: The eager runtime: its outputs do not depend on torch's thread count (a worker runs
#: --cpus-per-item threads, this process all); bf16's differ by ~3 levels on average
#: between 1 and 2 threads, amplified by the stabilization (measured on a bunny clip).
EAGER = "eager"


def _config(**fast: object) -> RunConfig:
    fast.setdefault("runtime", EAGER)
    return RunConfig(style="wave", method="fast", device="cpu",
                     fast=FastConfig(size=64, **fast))  # type: ignore[arg-type]


def frames(path: Path) -> list[np.ndarray]:
    return [f.rgb.astype(np.int16) for f in iter_frames(path)]


def small_demo(path: Path, n: int, width: int = 128) -> Path:
    """The first ``n`` frames of the packaged demo clip at ``width`` pixels, with its
    audio up to the end of the last frame and its timestamps."""
    info = probe(DEMO)
    with MediaWriter(path, source=info) as w:
        for f in limited(iter_frames(DEMO), n):
            h = round(f.rgb.shape[0] * width / f.rgb.shape[1] / 2) * 2
            w.write(dataclasses.replace(f, rgb=resize_uint8(f.rgb, (h, width))))
    return path


def test_importing_batch_and_cli_does_not_import_ray() -> None:
    code = ("import sys, vidstyle.batch, vidstyle.cli; "
            "bad = sorted(m for m in sys.modules if m == 'ray' or m.startswith('ray.')); "
            "print(bad); sys.exit(1 if bad else 0)")
    res = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                         text=True, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr


def test_any_exception_of_an_item_is_its_failure_and_the_batch_goes_on(
        tmp_path: Path) -> None:
    """A bug inside one item (not a VidstyleError) fails that item only (was: it stopped
    the batch with a traceback)."""
    src = tmp_path / "in"
    src.mkdir()
    make_clip(src / "a.mp4", n=3, size=(48, 32))
    make_clip(src / "b.mp4", n=3, size=(48, 32))
    calls = [0]

    def factory(**kw: object):  # noqa: ANN202 - the probe, a.mp4 (fails), b.mp4
        calls[0] += 1
        if calls[0] == 2:
            raise RuntimeError("boom in the stylizer")
        return make_stylizer(**kw)

    res = run_batch(src, tmp_path / "out", _config(), stylizer_factory=factory)
    assert res.done == [Path("b.mp4")]
    assert res.failed == {Path("a.mp4"): "RuntimeError: boom in the stylizer"}
    report = json.loads(res.report.read_text())
    assert [(i["item"], i["status"]) for i in report["items"]] == [("a.mp4", "failed"),
                                                                  ("b.mp4", "done")]


def test_process_item_writes_its_output_and_receipt_and_then_skips(tmp_path: Path) -> None:
    src = tmp_path / "in"
    src.mkdir()
    make_clip(src / "a.mp4", n=4, size=(48, 32))
    item = plan_batch(src, tmp_path / "out")[0]
    from vidstyle.batch import settings_fingerprint

    cfg = _config()
    settings = ItemSettings(config=cfg, pipeline=PipelineSpec.builtin("fast"),
                            fingerprint=settings_fingerprint(cfg))
    first = process_item(item, settings)
    assert (first.status, first.frames) == ("done", 4) and item.receipt.is_file()
    assert process_item(item, settings).status == "skipped"


def test_a_second_driver_on_one_out_dir_is_refused(tmp_path: Path) -> None:
    src = tmp_path / "in"
    src.mkdir()
    make_clip(src / "a.mp4", n=2, size=(48, 32))
    out = tmp_path / "out"
    with BatchLock(out / STATE_DIR, shown=out):  # another driver holds OUT_DIR
        with pytest.raises(OutputError, match="in use by another vidstyle batch"):
            run_batch(src, out, _config())
        res = CliRunner().invoke(cli, ["batch", str(src), str(out), "--style", "wave",
                                       "--size", "64", "--device", "cpu", "-q"])
        assert res.exit_code == 1 and res.output.count("\n") == 1, res.output
        assert not (out / "a.mp4").exists()
    assert run_batch(src, out, _config()).done == [Path("a.mp4")]  # released


def test_batch_options_come_from_the_config_and_are_checked(tmp_path: Path) -> None:
    import dataclasses as dc

    from vidstyle.config import flag_of

    help_text = CliRunner().invoke(cli, ["batch", "--help"]).output
    flags = [flag_of(f) for f in dc.fields(BatchConfig)]
    assert flags and all(f is not None and f in help_text for f in flags)
    assert "Batch options:" in help_text
    for bad, msg in ((["--jobs", "0"], "--jobs must be >= 1"),
                     (["--ray-address", "h:1"], "--ray-address applies to --backend ray")):
        res = CliRunner().invoke(cli, ["batch", str(tmp_path), str(tmp_path / "o"), *bad])
        assert res.exit_code == 2 and msg in res.output, res.output


def test_chunks_cover_every_frame_once() -> None:
    chunks = chunks_of(10, 4, open_end=True)
    assert [(c.start, c.end) for c in chunks] == [(0, 4), (4, 8), (8, None)]
    assert [(c.start, c.end) for c in chunks_of(8, 4, open_end=False)] == [(0, 4), (4, 8)]


def test_jobs_2_outputs_equal_one_jobs(tmp_path: Path, data_dir: Path) -> None:
    """The process pool runs the same unit of work: the same outputs, the broken file
    reported, exit code 1."""
    src = tmp_path / "in"
    src.mkdir()
    make_clip(src / "a.mp4", n=5, size=(64, 40))
    (src / "broken.mp4").write_bytes(b"not a video")
    (src / "p.jpg").write_bytes((data_dir / "content" / "chicago.jpg").read_bytes())
    args = ["--style", "wave", "--size", "64", "--device", "cpu", "--runtime", EAGER, "-q"]
    one = CliRunner().invoke(cli, ["batch", str(src), str(tmp_path / "one"), *args])
    two = CliRunner().invoke(cli, ["batch", str(src), str(tmp_path / "two"), *args,
                                   "--jobs", "2"])
    for res in (one, two):
        assert res.exit_code == 1 and "broken.mp4: failed:" in res.output, res.output
    for name in ("a.mp4", "p.jpg"):
        a, b = frames(tmp_path / "one" / name), frames(tmp_path / "two" / name)
        assert len(a) == len(b) and all(np.abs(x - y).max() <= 2 for x, y in zip(a, b, strict=True))
    report = json.loads((tmp_path / "two" / STATE_DIR / "report.json").read_text())
    assert report["jobs"] == 2 and report["counts"]["failed"] == 1


def chunked_run(tmp_path: Path, clip: Path, n_chunk: int, warmup: int, *,
                jobs: int, backend: str = "local") -> tuple[Path, Path]:
    """``clip`` (in tmp_path/in) stylized whole in this process and in chunks."""
    src = tmp_path / "in"
    cfg = _config(stability=0.7)
    whole = run_batch(src, tmp_path / "whole", cfg)
    assert whole.done == [Path(clip.name)]
    batch = BatchConfig(backend=backend, jobs=jobs, chunk_frames=n_chunk,  # type: ignore[arg-type]
                        warmup=warmup)
    res = run_batch(src, tmp_path / "chunked", cfg, batch=batch)
    assert res.done == [Path(clip.name)] and res.outcomes[0].chunks > 1, res
    return tmp_path / "whole" / clip.name, tmp_path / "chunked" / clip.name


def check_chunked(clip: Path, whole: Path, chunked: Path, n_chunk: int) -> None:
    """Frame count, timestamps and audio of ``chunked`` are the input's; its frames are
    one process's within coding error; the warping error at each join is no worse than
    inside the chunks."""
    assert decoded_pts(chunked) == decoded_pts(clip)
    assert audio_summary(chunked) == audio_summary(clip) is not None
    a, b = frames(whole), frames(chunked)
    assert len(a) == len(b) == probe(clip).frame_count
    diff = [float(np.abs(x - y).mean()) for x, y in zip(a, b, strict=True)]
    # The stabilization is a feedback loop that does not forget a small difference: after
    # a join both runs settle ~3.5 levels apart on average (the same size as bf16's
    # 1-thread vs 2-thread difference), however long the warm-up; without a warm-up
    # the first frame after a join is 7.4 levels off (bunny, 96 px, chunks of 20).
    assert max(diff) < 5.0, diff
    flow = flow_from_config(RunConfig().flow)
    err = warp_error_of_files(chunked, clip, flow=flow).per_frame
    joins = set(range(n_chunk - 1, len(err), n_chunk))  # pair (start - 1, start)
    inside = [e for t, e in enumerate(err) if t not in joins]
    assert joins and all(err[t] <= max(inside) for t in joins), (sorted(joins), err)


def test_a_long_clip_in_chunks_equals_one_process(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    clip = small_demo(tmp_path / "in" / "bunny.mp4", 30, width=96)
    whole, chunked = chunked_run(tmp_path, clip, 10, 8, jobs=2)
    check_chunked(clip, whole, chunked, 10)
    assert not (tmp_path / "chunked" / STATE_DIR / "work" / "bunny.mp4").exists()


def test_finished_chunks_are_kept_and_reused(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """A killed chunked item resumes from its finished chunks: the rerun stylizes only
    the others, and the output has every frame."""
    from vidstyle.batch import settings_fingerprint, work

    src = tmp_path / "in"
    src.mkdir()
    make_clip(src / "c.mp4", n=12, size=(64, 40))
    out = tmp_path / "out"
    cfg = _config()
    settings = ItemSettings(config=cfg, pipeline=PipelineSpec.builtin("fast"),
                            fingerprint=settings_fingerprint(cfg), chunk_frames=5, warmup=2)
    item = plan_batch(src, out)[0]
    item.output.parent.mkdir(parents=True)
    plan = plan_chunks(item, settings)
    assert plan is not None and [c.start for c in plan.chunks] == [0, 5, 10]
    assert work.process_chunk(item, settings, plan, plan.chunks[1]).frames == 5  # then killed
    made: list[int] = []

    def counting(**kw: object):  # noqa: ANN202
        made.append(1)
        return make_stylizer(**kw)

    monkeypatch.setattr(work, "make_stylizer", counting)
    res = run_batch(src, out, cfg, batch=BatchConfig(chunk_frames=5, warmup=2))
    assert res.done == [Path("c.mp4")] and res.outcomes[0].chunks == 3
    assert len(made) == 2  # chunks 0 and 2; chunk 1 was kept
    assert len(frames(out / "c.mp4")) == 12 and not item.work_dir.exists()


@pytest.mark.slow
def test_a_300_frame_clip_in_4_chunks_equals_one_process(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    src = tmp_path / "in" / "bunny300.mp4"
    info = probe(DEMO)
    demo = [dataclasses.replace(f, rgb=resize_uint8(f.rgb, (72, 128)))
            for f in iter_frames(DEMO)]
    loop = round(float(info.duration_s) / info.time_base)  # the clip again after its end
    with MediaWriter(src, source=info) as w:  # 132 frames, looped to 300 (pts go on)
        for k in range(300):
            f = demo[k % len(demo)]
            w.write(dataclasses.replace(f, pts=f.pts + (k // len(demo)) * loop))
    whole, chunked = chunked_run(tmp_path, src, 75, 12, jobs=2)
    check_chunked(src, whole, chunked, 75)


def _pool_worker_pids() -> list[int]:
    """This process's spawned pool workers (not multiprocessing's resource tracker)."""
    me = str(os.getpid())
    pids = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text().rsplit(")", 1)[1].split()
            cmd = (d / "cmdline").read_bytes()
        except OSError:
            continue
        if stat[1] == me and b"spawn_main" in cmd:
            pids.append(int(d.name))
    return pids


def test_a_pool_worker_killed_during_an_item_is_replaced_and_the_item_resumes(
        tmp_path: Path) -> None:
    """SIGKILL of a --jobs worker mid-item: a new pool runs the item again, from its
    finished frames, and the batch completes with the uninterrupted run's output."""
    src = tmp_path / "in"
    src.mkdir()
    make_clip(src / "clip.mp4", n=8, size=(64, 40))
    cfg = RunConfig(style="wave", method="optim", device="cpu")
    cfg = cfg.replace(optim=cfg.optim.replace(size=40, iters=6, multiscale=1, seed=3))
    jobs = BatchConfig(jobs=2)
    # the reference in this process: fp32 optimization does not depend on the thread count
    assert run_batch(src, tmp_path / "ref", cfg).done == [Path("clip.mp4")]
    out = tmp_path / "out"
    result: dict[str, object] = {}
    thread = threading.Thread(target=lambda: result.update(
        res=run_batch(src, out, cfg, batch=jobs)))
    thread.start()
    work = out / STATE_DIR / "work" / "clip.mp4"
    killed = 0
    deadline = time.monotonic() + 300
    while not killed and time.monotonic() < deadline and thread.is_alive():
        if len(list(work.rglob("frame_*.png"))) >= 3:
            for pid in _pool_worker_pids():
                os.kill(pid, signal.SIGKILL)
                killed += 1
        time.sleep(0.05)
    thread.join(timeout=600)
    assert killed, "the item finished before its worker could be killed"
    res = result["res"]
    assert res.done == [Path("clip.mp4")] and not res.failed  # type: ignore[attr-defined]
    a, b = frames(tmp_path / "ref" / "clip.mp4"), frames(out / "clip.mp4")
    assert len(a) == len(b) == 8 and all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))


def test_chunks_never_replace_an_output_no_batch_wrote(tmp_path: Path) -> None:
    src = tmp_path / "in"
    src.mkdir()
    make_clip(src / "c.mp4", n=8, size=(48, 32))
    out = tmp_path / "out"
    out.mkdir()
    (out / "c.mp4").write_bytes(b"the user's own file")
    res = run_batch(src, out, _config(), batch=BatchConfig(jobs=2, chunk_frames=4, warmup=1))
    assert "not written by a batch" in res.failed[Path("c.mp4")]
    assert (out / "c.mp4").read_bytes() == b"the user's own file"


def test_a_kill_between_the_output_and_its_receipt_is_resumed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The output appeared, then the process died before the receipt: the rerun (or a
    Ray retry) redoes the item (was: refused it as a file no batch wrote)."""
    from vidstyle.batch import work

    src = tmp_path / "in"
    src.mkdir()
    make_clip(src / "a.mp4", n=3, size=(48, 32))
    out = tmp_path / "out"

    def killed(*_: object) -> None:
        raise KeyboardInterrupt  # stands for SIGKILL at that moment

    with monkeypatch.context() as m:
        m.setattr(work, "write_receipt", killed)
        with pytest.raises(KeyboardInterrupt):
            run_batch(src, out, _config())
    assert (out / "a.mp4").is_file()
    res = run_batch(src, out, _config())
    assert res.done == [Path("a.mp4")] and not res.failed
    assert [p.name for p in (out / STATE_DIR / "receipts").iterdir()] == ["a.mp4.json"]
