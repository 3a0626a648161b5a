"""`vidstyle batch --backend ray` on a one-machine Ray cluster these tests start and stop
(loopback addresses only). Skipped where Ray is not installed (`pip install vidstyle[ray]`;
`make test` installs it)."""

from __future__ import annotations

import importlib.util
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from tests.media.helpers import make_clip
from tests.test_batch_scale import (
    DEMO,
    EAGER,
    check_chunked,
    chunked_run,
    frames,
    small_demo,
)
from vidstyle.batch import STATE_DIR, run_batch
from vidstyle.cli import cli
from vidstyle.config import BatchConfig, FastConfig, RunConfig
from vidstyle.media import iter_frames

pytestmark = pytest.mark.skipif(importlib.util.find_spec("ray") is None,
                                reason="Ray is not installed (pip install 'vidstyle[ray]')")

RAY = BatchConfig(backend="ray", jobs=2)


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[Any]:
    """A local two-CPU cluster for the module's tests (run_batch uses a connection that
    is already open, and leaves it open)."""
    from vidstyle.batch.on_ray import connect

    ray, started = connect(RAY)
    assert started
    addresses = {n["NodeManagerAddress"] for n in ray.nodes()}
    assert addresses == {"127.0.0.1"}, addresses  # loopback only
    yield ray
    ray.shutdown()


def _fast() -> RunConfig:
    return RunConfig(style="wave", method="fast", device="cpu",
                     fast=FastConfig(size=64, runtime=EAGER))


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """3 short clips, 1 photo and 1 broken file."""
    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    small_demo(src / "bunny.mp4", 8, width=96)
    make_clip(src / "sub" / "moving.mp4", n=6, size=(80, 48))
    make_clip(src / "sub" / "short.mkv", n=4, size=(64, 48))
    first = next(iter(iter_frames(DEMO)))
    Image.fromarray(first.rgb[::8, ::8]).save(src / "photo.png")
    (src / "broken.mp4").write_bytes(b"this is not a video")
    return src


def test_ray_outputs_equal_local_broken_reported_rerun_skips(ray_cluster: Any, folder: Path,
                                                             tmp_path: Path) -> None:
    local = run_batch(folder, tmp_path / "local", _fast())
    assert len(local.done) == 4 and list(local.failed) == [Path("broken.mp4")]
    args = ["batch", str(folder), str(tmp_path / "ray"), "--style", "wave", "--size", "64",
            "--device", "cpu", "--runtime", EAGER, "--backend", "ray", "--jobs", "2", "-q"]
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 1, res.output
    assert "broken.mp4: failed:" in res.output and "4 done, 0 already done, 1 failed" \
        in res.output
    for rel in local.done:
        a, b = frames(tmp_path / "local" / rel), frames(tmp_path / "ray" / rel)
        assert len(a) == len(b) > 0
        assert all(float(np.abs(x - y).mean()) < 1.0 for x, y in zip(a, b, strict=True)), rel
    t0 = time.monotonic()
    again = run_batch(folder, tmp_path / "ray", _fast(), batch=RAY)
    assert time.monotonic() - t0 < 5.0
    assert sorted(again.skipped) == sorted(local.done) and list(again.failed) == [
        Path("broken.mp4")]


def _task_pids() -> list[int]:
    """Ray worker processes running a batch task (Ray titles them ray::run_unit)."""
    pids = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if (d / "cmdline").read_bytes().startswith(b"ray::run_unit"):
                    pids.append(int(d.name))
            except OSError:
                continue
    return pids


def test_a_worker_killed_during_an_item_is_retried_and_resumes(ray_cluster: Any,
                                                               tmp_path: Path) -> None:
    src = tmp_path / "in"
    src.mkdir()
    make_clip(src / "clip.mp4", n=8, size=(64, 40))
    cfg = RunConfig(style="wave", method="optim", device="cpu")
    cfg = cfg.replace(optim=cfg.optim.replace(size=40, iters=6, multiscale=1, seed=3))
    reference = run_batch(src, tmp_path / "ref", cfg, batch=RAY)
    assert reference.done == [Path("clip.mp4")]

    out = tmp_path / "out"
    result: dict[str, Any] = {}
    thread = threading.Thread(target=lambda: result.update(
        res=run_batch(src, out, cfg, batch=RAY)))
    thread.start()
    work = out / STATE_DIR / "work" / "clip.mp4"
    killed = None
    deadline = time.monotonic() + 300
    while killed is None and time.monotonic() < deadline and thread.is_alive():
        pids = _task_pids()
        if pids and len(list(work.rglob("frame_*.png"))) >= 3:
            os.kill(pids[0], signal.SIGKILL)
            killed = pids[0]
        time.sleep(0.05)
    thread.join(timeout=600)
    assert killed is not None, "the item finished before its worker could be killed"
    res = result["res"]
    assert res.done == [Path("clip.mp4")] and not res.failed
    assert res.outcomes[0].worker.split(":")[1] != str(killed)  # a new worker finished it
    a, b = frames(tmp_path / "ref" / "clip.mp4"), frames(out / "clip.mp4")
    assert len(a) == len(b) == 8
    diff = [int(np.abs(x - y).max()) for x, y in zip(a, b, strict=True)]
    assert diff == [0] * 8, (diff, sorted(p.name for p in work.parent.rglob("*")))


def test_a_clip_in_chunks_on_ray_workers(ray_cluster: Any, tmp_path: Path) -> None:
    """Chunks as Ray tasks, then their join: frame count, timestamps and audio of the
    input, the join's warping error no worse than inside the chunks."""
    (tmp_path / "in").mkdir()
    clip = small_demo(tmp_path / "in" / "bunny.mp4", 24, width=96)
    whole, chunked = chunked_run(tmp_path, clip, 8, 8, jobs=2, backend="ray")
    check_chunked(clip, whole, chunked, 8)
