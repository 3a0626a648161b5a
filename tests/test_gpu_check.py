"""The GPU check of issue 22 (benchmarks/gpu_check.py, scripts/gpu_check.sh), on the CPU."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from benchmarks import gpu_check

REPO = Path(__file__).resolve().parents[1]
FAST_KEYS = {"size", "frames", "wall_s", "fps_end_to_end", "fps_steady", "s_per_frame",
             "cpu_ms_per_frame", "peak_gpu_mib"}
OPTIM_KEYS = {"size", "temporal", "iters", "frames", "wall_s", "fps_end_to_end",
              "s_per_frame", "s_per_frame_steady", "cpu_ms_per_frame", "peak_gpu_mib"}
TRAIN_KEYS = {"steps", "size", "batch", "wall_s", "elapsed_s", "steps_per_s",
              "steps_per_s_steady", "peak_gpu_mib"}


def _result(device: str = "cuda", dry_run: bool = False, fps_1080: float = 31.0,
            optim_s: float = 12.0) -> dict:
    env = {"date": "2026-12-01", "torch": "2.x", "cuda": "13.0", "cudnn": 1, "av": "18",
           "cv2": "5", "cpu_count": 16, "gpu_name": "NVIDIA H200" if device == "cuda" else None}
    fast = [{"size": s, "frames": 120, "fps_end_to_end": f, "fps_steady": f + 5,
             "cpu_ms_per_frame": 20.0, "peak_gpu_mib": 300.0}
            for s, f in (("640x360", 90.0), ("1920x1080", fps_1080))]
    optim = [{"size": "640x360", "temporal": t, "iters": "default", "frames": 3,
              "s_per_frame": optim_s, "s_per_frame_steady": optim_s - 1,
              "cpu_ms_per_frame": 900.0, "peak_gpu_mib": 2000.0} for t in ("none", "short")]
    res = {"device": device, "dry_run": dry_run, "env": env, "fast": fast, "optim": optim,
           "train": {"steps": 20, "size": 256, "batch": 4, "steps_per_s": 9.5,
                     "steps_per_s_steady": 11.0, "peak_gpu_mib": 4000.0},
           "tests": {"rc": 0, "summary": "12 passed"}, "errors": {}}
    res["acceptance"] = gpu_check.acceptance(res)
    return res


def test_acceptance_judges_only_real_gpu_runs() -> None:
    ok = _result()["acceptance"]
    assert ok == {"fast_1080p_fps_at_least_30": True, "optim_360p_s_per_frame_at_most_10": False}
    assert _result(fps_1080=29.9, optim_s=9.0)["acceptance"] == {
        "fast_1080p_fps_at_least_30": False, "optim_360p_s_per_frame_at_most_10": True}
    for res in (_result(device="cpu"), _result(dry_run=True)):
        assert set(res["acceptance"].values()) == {None}


def test_outputs_hold_every_figure_in_json_and_markdown(tmp_path: Path) -> None:
    res = _result()
    res["errors"]["train"] = "Traceback ...\nWeightsError: no vgg19 weights found"
    js, md = gpu_check.write_outputs(res, tmp_path / "out")
    assert json.loads(js.read_text()) == res
    text = md.read_text()
    assert "NVIDIA H200" in text and "CUDA 13.0" in text and "12 passed" in text
    assert "| 1920x1080 | 120 | 31 | 36 | 20 | 300 |" in text
    assert "| 640x360 | short | default | 3 | 12 | 11 | 900 | 2000 |" in text
    assert "| 256 px, batch 4 | 20 | 9.5 | 11 | 4000 |" in text
    assert "ERROR in train: WeightsError: no vgg19 weights found" in text


def test_ticks_rate_is_units_per_second_between_first_and_last_event() -> None:
    class Ev:
        def __init__(self, stage: str, done: int) -> None:
            self.stage, self.done = stage, done

    t = gpu_check.Ticks("stylize")
    t(Ev("stylize", 1))
    assert t.rate() is None
    t(Ev("encode", 5))  # another stage: ignored
    t.ticks.append((t.ticks[0][0] + 2.0, 9))
    assert t.rate() == pytest.approx(4.0)


def test_fast_section_runs_the_engine_on_resized_clips(tmp_path: Path) -> None:
    rows = gpu_check.check_fast(gpu_check.DRY, torch.device("cpu"), gpu_check.CLIP, tmp_path)
    assert [r["size"] for r in rows] == ["128x72", "192x108", "256x144"]
    for r in rows:
        assert set(r) == FAST_KEYS
        assert r["frames"] == gpu_check.DRY.fast_frames and r["fps_end_to_end"] > 0
        assert r["cpu_ms_per_frame"] > 0 and r["peak_gpu_mib"] == 0.0
    assert (tmp_path / "fast_256x144.mp4").is_file()


@pytest.mark.slow
def test_the_scripts_cpu_dry_run_writes_every_figure(tmp_path: Path) -> None:
    out = tmp_path / "out"
    r = subprocess.run(["bash", str(REPO / "scripts" / "gpu_check.sh"), str(out), "--dry-run"],
                       capture_output=True, text=True, timeout=600,
                       env={"PATH": "/usr/bin:/bin", "PYTHON": sys.executable,
                            "HOME": str(Path.home()), "VIDSTYLE_OFFLINE": "1"})
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    res = json.loads((out / "gpu_check.json").read_text())
    assert res["device"] == "cpu" and res["dry_run"] is True and res["errors"] == {}
    assert res["env"]["torch"] == torch.__version__
    assert res["tests"]["rc"] == 0 and "passed" in res["tests"]["summary"]
    assert [set(r) for r in res["fast"]] == [FAST_KEYS] * 3
    assert [r["temporal"] for r in res["optim"]] == ["none", "short"]
    assert all(set(r) == OPTIM_KEYS and r["s_per_frame"] > 0 for r in res["optim"])
    assert set(res["train"]) == TRAIN_KEYS and res["train"]["steps"] == 2
    assert res["train"]["steps_per_s"] > 0
    assert (out / "gpu_check.md").read_text().startswith("## GPU check (dry run, cpu")
    assert "| optimization |" in r.stdout
