"""The GPU check of issue 22: the figures a lent GPU machine should produce, in one run.

Run: ``bash scripts/gpu_check.sh [OUT_DIR] [--dry-run]`` (or ``python -m
benchmarks.gpu_check --out OUT_DIR [--dry-run]``). Measures, on the device ``--device``
picks (auto: CUDA when present):

1. the CUDA / device tests (``pytest -m 'not slow' tests/fast/test_runtime.py
   tests/fast/test_devices.py -k 'cuda or device'``; the real-GPU ones skip without a GPU);
2. ``vidstyle run --method fast`` at 640x360, 1280x720 and 1920x1080 on clips made from the
   bundled ``bigbuckbunny.mp4`` (1280x720, 132 frames) resized: end-to-end fps (frames /
   wall time of the whole run, model load included), steady fps (between the first and the
   last stylized frame), peak GPU memory (``torch.cuda.max_memory_allocated``, 0 on the
   CPU) and CPU time per frame (``time.process_time``: every thread of this process);
   a short warm-up run at each size comes first (CUDA context, cuDNN, runtime selection);
3. ``vidstyle run --method optim`` at 640x360 with the default iterations, on 2 frames,
   with ``--temporal none`` and ``--temporal short``: seconds per frame, peak GPU memory;
4. ``vidstyle train`` for 20 steps (256 px crops, batch 4, two styles) on 8 frames of the
   clip used as photos: steps per second (steady and overall), peak GPU memory.

Writes ``gpu_check.json`` (every figure, the torch / CUDA / cuDNN versions and the GPU's
name) and ``gpu_check.md`` (the tables) into the output folder and prints the tables.
A section that fails records its error and the others still run; the exit status is 1 then.
``--dry-run`` shrinks everything (tiny sizes, 2 frames, 2 iterations, 2 training steps) so
the whole check runs on a CPU in a minute or two and writes the same keys.
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import os
import platform
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import cv2  # noqa: E402
import torch  # noqa: E402

from vidstyle.config import settings  # noqa: E402
from vidstyle.fast.train import TrainConfig, train  # noqa: E402

log = logging.getLogger("gpu_check")

REPO = Path(__file__).resolve().parents[1]
CLIP = REPO / "vidstyle" / "data" / "bigbuckbunny.mp4"
SCHEMA = 1
#: issue 22's acceptance figures (data-centre GPU only)
TARGET_FAST_1080P_FPS = 30.0
TARGET_OPTIM_360P_S_PER_FRAME = 10.0
TEST_COMMAND = ("-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "not slow",
                "tests/fast/test_runtime.py", "tests/fast/test_devices.py",
                "-k", "cuda or device")


@dataclass(frozen=True, kw_only=True)
class Plan:
    """What one check measures. Sizes are (width, height) in pixels."""

    fast_sizes: tuple[tuple[int, int], ...]
    fast_frames: int
    warmup_frames: int
    optim_size: tuple[int, int]
    optim_frames: int
    optim_iters: int | None  # None: the default (300)
    train_steps: int
    train_size: int
    train_batch: int
    train_photos: int


FULL = Plan(fast_sizes=((640, 360), (1280, 720), (1920, 1080)), fast_frames=120,
            warmup_frames=8, optim_size=(640, 360), optim_frames=3, optim_iters=None,
            train_steps=20, train_size=256, train_batch=4, train_photos=8)
DRY = Plan(fast_sizes=((128, 72), (192, 108), (256, 144)), fast_frames=2, warmup_frames=2,
           optim_size=(64, 36), optim_frames=2, optim_iters=2, train_steps=2, train_size=32,
           train_batch=1, train_photos=2)


# ----------------------------------------------------------------------------- helpers


def pick_device(name: str) -> torch.device:
    """``auto``: CUDA when available, else the CPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


def environment(device: torch.device) -> dict[str, Any]:
    """Versions and the machine: torch, CUDA, cuDNN, the GPU's name, PyAV, OpenCV."""
    env: dict[str, Any] = {
        "date": datetime.date.today().isoformat(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "gpu_name": None,
        "gpu_memory_gib": None,
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        env["gpu_name"] = torch.cuda.get_device_name(device)
        env["gpu_memory_gib"] = round(props.total_memory / 2**30, 1)
    for mod in ("av", "cv2"):
        try:
            env[mod] = __import__(mod).__version__
        except ImportError:
            env[mod] = None
    return env


class Meter:
    """Wall time, CPU time (all threads of this process) and peak GPU memory of a block."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.wall_s = self.cpu_s = 0.0
        self.peak_gpu_mib = 0.0

    def __enter__(self) -> Meter:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        self._t0, self._c0 = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.peak_gpu_mib = torch.cuda.max_memory_allocated(self.device) / 2**20
        self.wall_s = time.perf_counter() - self._t0
        self.cpu_s = time.process_time() - self._c0


class Ticks:
    """A progress callback that timestamps the events of one stage: (time, done)."""

    def __init__(self, stage: str) -> None:
        self.stage = stage
        self.ticks: list[tuple[float, int]] = []

    def __call__(self, ev: Any) -> None:
        if ev.stage == self.stage:
            self.ticks.append((time.perf_counter(), ev.done))

    def rate(self) -> float | None:
        """Units per second between the first and the last event (None: fewer than two)."""
        if len(self.ticks) < 2 or self.ticks[-1][0] <= self.ticks[0][0]:
            return None
        (t0, d0), (t1, d1) = self.ticks[0], self.ticks[-1]
        return (d1 - d0) / (t1 - t0)


def make_clip(src: Path, dst: Path, size: tuple[int, int], frames: int) -> Path:
    """``src``'s first ``frames`` frames resized to ``size`` (w, h), H.264 CRF 18, 25 fps."""
    import av  # the device machine may lack PyAV: only this section then fails

    w, h = size
    with av.open(str(src)) as inp, av.open(str(dst), "w") as out:
        vs = out.add_stream("libx264", rate=25)
        vs.width, vs.height, vs.pix_fmt = w, h, "yuv420p"
        vs.options = {"crf": "18", "preset": "veryfast"}
        for i, frame in enumerate(inp.decode(video=0)):
            if i >= frames:
                break
            for pkt in vs.encode(frame.reformat(width=w, height=h, format="yuv420p")):
                out.mux(pkt)
        for pkt in vs.encode():
            out.mux(pkt)
    return dst


def run_video(clip: Path, out: Path, device: torch.device, flags: dict[str, Any],
              stage: str) -> dict[str, Any]:
    """``vidstyle run CLIP -o OUT <flags>`` in this process (the CLI's own config path):
    wall and CPU time, steady rate of ``stage`` events, peak GPU memory."""
    # the engine imports PyAV, which the device machine may lack: only this section fails
    from vidstyle.engine import build_config
    from vidstyle.engine import run as run_engine

    values: dict[str, Any] = {s.flag: None for s in settings()}
    values.update({"--instance": None, "--background": None, "--device": device.type})
    values.update(flags)
    cfg, spec = build_config(values)
    ticks = Ticks(stage)
    with Meter(device) as m:
        res = run_engine(clip, out, cfg, pipeline=spec, progress=ticks, overwrite=True)
    n = max(res.frames, 1)
    return {"frames": res.frames, "wall_s": round(m.wall_s, 3),
            "fps_end_to_end": round(res.frames / m.wall_s, 3),
            "fps_steady": None if ticks.rate() is None else round(ticks.rate() or 0.0, 3),
            "s_per_frame": round(m.wall_s / n, 3),
            "cpu_ms_per_frame": round(m.cpu_s * 1e3 / n, 1),
            "peak_gpu_mib": round(m.peak_gpu_mib, 1)}


# ----------------------------------------------------------------------------- sections


def check_tests(device: torch.device) -> dict[str, Any]:
    """The CUDA / device tests in a child process: exit status and pytest's summary line."""
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, *TEST_COMMAND], cwd=REPO, capture_output=True,
                       text=True, timeout=600)
    lines = [ln for ln in r.stdout.splitlines() if ln.strip()]
    return {"command": "python " + " ".join(TEST_COMMAND), "rc": r.returncode,
            "summary": lines[-1] if lines else r.stderr.strip()[-300:],
            "wall_s": round(time.perf_counter() - t0, 1)}


def check_fast(plan: Plan, device: torch.device, clip: Path, tmp: Path) -> list[dict[str, Any]]:
    """``vidstyle run --method fast`` at each size: one warm-up run, then the measured one."""
    rows = []
    for w, h in plan.fast_sizes:
        src = make_clip(clip, tmp / f"clip_{w}x{h}.mp4", (w, h), plan.fast_frames)
        flags = {"--method": "fast", "--style": "starry"}
        run_video(src, tmp / "warm.mp4", device, {**flags, "--max-frames": plan.warmup_frames},
                  "stylize")
        row = run_video(src, tmp / f"fast_{w}x{h}.mp4", device,
                        {**flags, "--max-frames": plan.fast_frames}, "stylize")
        rows.append({"size": f"{w}x{h}", **row})
        log.info("fast %dx%d: %s", w, h, row)
    return rows


def check_optim(plan: Plan, device: torch.device, clip: Path, tmp: Path) -> list[dict[str, Any]]:
    """``vidstyle run --method optim`` at ``plan.optim_size``, temporal none and short."""
    w, h = plan.optim_size
    src = make_clip(clip, tmp / f"optim_{w}x{h}.mp4", (w, h), plan.optim_frames)
    rows = []
    for temporal in ("none", "short"):
        flags: dict[str, Any] = {"--method": "optim", "--style": "starry", "--size": max(w, h),
                                 "--max-frames": plan.optim_frames, "--temporal": temporal}
        if plan.optim_iters is not None:
            flags["--iters"] = plan.optim_iters
        row = run_video(src, tmp / f"optim_{temporal}.mp4", device, flags, "stylize")
        steady = row.pop("fps_steady")  # from the first frame's end to the last's
        row["s_per_frame_steady"] = None if not steady else round(1.0 / steady, 3)
        rows.append({"size": f"{w}x{h}", "temporal": temporal,
                     "iters": plan.optim_iters or "default", **row})
        log.info("optim %s: %s", temporal, row)
    return rows


def check_train(plan: Plan, device: torch.device, clip: Path, tmp: Path) -> dict[str, Any]:
    """``vidstyle train`` (the library call the command makes) for a few steps."""
    photos = tmp / "photos"
    photos.mkdir()
    # OpenCV's own FFmpeg reads the clip: training needs no PyAV (the device may lack it)
    cap = cv2.VideoCapture(str(clip))
    try:
        step = max(1, int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 100) // plan.train_photos)
        i = saved = 0
        while saved < plan.train_photos:
            ok, frame = cap.read()
            if not ok:
                break
            if i % step == 0:
                cv2.imwrite(str(photos / f"f{i:04d}.png"), frame)
                saved += 1
            i += 1
    finally:
        cap.release()
    if saved == 0:
        raise RuntimeError(f"OpenCV read no frame of {clip}")
    cfg = TrainConfig(styles=("starry", "wave"), content_dirs=(str(photos),), num_samples=1,
                      steps=plan.train_steps, size=plan.train_size, batch=plan.train_batch,
                      style_size=max(plan.train_size, 64), eval_size=max(plan.train_size, 64),
                      checkpoint_every=0, log_every=1, out_dir=str(tmp / "train"),
                      device=device.type)
    ticks: list[tuple[float, int]] = []
    with Meter(device) as m:
        res = train(cfg, progress=lambda p: ticks.append((p.elapsed_s, p.step)))
    steady = None
    if len(ticks) >= 2 and ticks[-1][0] > ticks[0][0]:
        steady = (ticks[-1][1] - ticks[0][1]) / (ticks[-1][0] - ticks[0][0])
    return {"steps": res.steps, "size": plan.train_size, "batch": plan.train_batch,
            "wall_s": round(m.wall_s, 2), "elapsed_s": round(res.elapsed_s, 2),
            "steps_per_s": round(res.steps / max(res.elapsed_s, 1e-9), 3),
            "steps_per_s_steady": None if steady is None else round(steady, 3),
            "peak_gpu_mib": round(m.peak_gpu_mib, 1)}


def acceptance(result: dict[str, Any]) -> dict[str, Any]:
    """Issue 22's figures against its targets; None where not measured on a GPU."""
    gpu = result["device"] == "cuda" and not result["dry_run"]
    fast = {r["size"]: r for r in result.get("fast") or [] if isinstance(r, dict)}
    optim = {r["temporal"]: r for r in result.get("optim") or [] if isinstance(r, dict)}
    f1080 = fast.get("1920x1080", {}).get("fps_end_to_end")
    o360 = optim.get("none", {}).get("s_per_frame")
    return {
        f"fast_1080p_fps_at_least_{TARGET_FAST_1080P_FPS:g}":
            None if not gpu or f1080 is None else f1080 >= TARGET_FAST_1080P_FPS,
        f"optim_360p_s_per_frame_at_most_{TARGET_OPTIM_360P_S_PER_FRAME:g}":
            None if not gpu or o360 is None else o360 <= TARGET_OPTIM_360P_S_PER_FRAME,
    }


# ----------------------------------------------------------------------------- output


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 100 else f"{v:.0f}"
    return str(v)


def markdown(result: dict[str, Any]) -> str:
    """The check's figures as Markdown tables (what ``gpu_check.md`` holds)."""
    env = result["env"]
    dev = env["gpu_name"] or "CPU"
    lines = [f"## GPU check ({'dry run, ' if result['dry_run'] else ''}{result['device']}: "
             f"{dev}) {env['date']}", "",
             f"torch {env['torch']}, CUDA {env['cuda'] or '-'}, cuDNN {env['cudnn'] or '-'}, "
             f"PyAV {env['av'] or '-'}, OpenCV {env['cv2'] or '-'}, {env['cpu_count']} CPUs", ""]
    t = result.get("tests")
    if isinstance(t, dict):
        lines += [f"tests (rc {t['rc']}): {t['summary']}", ""]
    lines += ["| fast method | frames | fps end to end | fps steady | CPU ms/frame | "
              "peak GPU MiB |", "|---|---:|---:|---:|---:|---:|"]
    for r in result.get("fast") or []:
        lines.append(f"| {r['size']} | {r['frames']} | {_fmt(r['fps_end_to_end'])} | "
                     f"{_fmt(r['fps_steady'])} | {_fmt(r['cpu_ms_per_frame'])} | "
                     f"{_fmt(r['peak_gpu_mib'])} |")
    lines += ["", "| optimization | temporal | iterations | frames | s/frame | "
              "s/frame steady | CPU ms/frame | peak GPU MiB |",
              "|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in result.get("optim") or []:
        lines.append(f"| {r['size']} | {r['temporal']} | {r['iters']} | {r['frames']} | "
                     f"{_fmt(r['s_per_frame'])} | {_fmt(r['s_per_frame_steady'])} | "
                     f"{_fmt(r['cpu_ms_per_frame'])} | "
                     f"{_fmt(r['peak_gpu_mib'])} |")
    tr = result.get("train")
    if isinstance(tr, dict):
        lines += ["", "| training | steps | steps/s | steps/s steady | peak GPU MiB |",
                  "|---|---:|---:|---:|---:|",
                  f"| {tr['size']} px, batch {tr['batch']} | {tr['steps']} | "
                  f"{_fmt(tr['steps_per_s'])} | {_fmt(tr['steps_per_s_steady'])} | "
                  f"{_fmt(tr['peak_gpu_mib'])} |"]
    lines += ["", "acceptance: " + ", ".join(f"{k} = {_fmt(v)}"
                                             for k, v in result["acceptance"].items())]
    for name, err in result["errors"].items():
        lines.append(f"\nERROR in {name}: {err.splitlines()[-1] if err else ''}")
    return "\n".join(lines) + "\n"


def write_outputs(result: dict[str, Any], out_dir: Path) -> tuple[Path, Path]:
    """``gpu_check.json`` and ``gpu_check.md`` into ``out_dir`` (created)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    js, md = out_dir / "gpu_check.json", out_dir / "gpu_check.md"
    js.write_text(json.dumps(result, indent=1) + "\n")
    md.write_text(markdown(result))
    return js, md


def check(plan: Plan, *, device: torch.device, clip: Path, dry_run: bool,
          sections: Sequence[str]) -> dict[str, Any]:
    """Run ``sections`` of the check; each one's error is recorded, the rest still run."""
    result: dict[str, Any] = {"schema": SCHEMA, "dry_run": dry_run, "device": device.type,
                              "env": environment(device), "clip": str(clip),
                              "plan": {k: v for k, v in vars(plan).items()},
                              "tests": None, "fast": [], "optim": [], "train": None,
                              "errors": {}}
    with tempfile.TemporaryDirectory(prefix="gpu_check_") as tmp_s:
        tmp = Path(tmp_s)
        steps: dict[str, Callable[[], Any]] = {
            "tests": lambda: check_tests(device),
            "fast": lambda: check_fast(plan, device, clip, tmp),
            "optim": lambda: check_optim(plan, device, clip, tmp),
            "train": lambda: check_train(plan, device, clip, tmp),
        }
        for name in sections:
            log.info("-- %s", name)
            try:
                result[name] = steps[name]()
            except Exception:  # recorded, and the exit status says so
                result["errors"][name] = traceback.format_exc(limit=6)
                log.error("%s failed:\n%s", name, result["errors"][name])
    result["acceptance"] = acceptance(result)
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="gpu_check_out", help="output folder")
    p.add_argument("--dry-run", action="store_true", help="tiny sizes, 2 frames, 2 "
                   "iterations, 2 training steps (a CPU check of the check)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--clip", default=str(CLIP), help="source video (resized per size)")
    p.add_argument("--only", default="tests,fast,optim,train",
                   help="comma list of sections: tests,fast,optim,train")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    sections = [s for s in a.only.split(",") if s]
    unknown = set(sections) - {"tests", "fast", "optim", "train"}
    if unknown:
        p.error(f"unknown sections: {', '.join(sorted(unknown))}")
    device = pick_device(a.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    result = check(DRY if a.dry_run else FULL, device=device, clip=Path(a.clip),
                   dry_run=a.dry_run, sections=sections)
    js, md = write_outputs(result, Path(a.out))
    print(md.read_text(), end="")
    print(f"wrote {js} and {md}")
    tests_failed = isinstance(result["tests"], dict) and result["tests"]["rc"] not in (0, 5)
    return 1 if result["errors"] or tests_failed else 0


if __name__ == "__main__":
    sys.exit(main())
