"""Media I/O benchmark: decode+encode cost per frame, and peak memory vs clip length.

Run:  python benchmarks/bench_media.py [--frames 60]

Prints a small table:
- decode-only and decode+encode ms/frame at 640x360 and 1280x720, libx264 preset veryfast
  and medium (CRF 18, audio stream-copied as in real use);
- peak RSS of a child process that decodes+encodes 30 vs 300 frames of a 640x360 clip.
  Streaming means both peaks should be about the same.

The 1280x720 input is the kit's bigbuckbunny.mp4; the 640x360 one and the 300-frame clip
are made from it first (not timed). Importing this module does nothing.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from vidstyle.config import EncodeConfig

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("VIDSTYLE_TEST_DATA", REPO.parent / "shared" / "data"))

# Peak RSS is read from VmHWM: ru_maxrss survives exec() and would report the parent's
# (forked) footprint instead of the child's own.
_CHILD = r"""
import sys
from vidstyle.media import MediaWriter, iter_frames, probe
src, out, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
info = probe(src)
with MediaWriter(out, source=info, encode=EncodeConfig(preset="veryfast")) as w:
    for f in iter_frames(src):
        if f.index >= n:
            break
        w.write(f)
with open("/proc/self/status") as fh:
    print([ln.split()[1] for ln in fh if ln.startswith("VmHWM:")][0])
"""


def _make_clip(src: Path, out: Path, size: tuple[int, int], frames: int) -> Path:
    """Resize ``src`` to ``size`` (looping it to reach ``frames``); ultrafast, not timed."""
    import cv2

    from vidstyle.media import MediaWriter, iter_frames, probe

    info = probe(src)
    step = int(round(1 / (info.fps * info.time_base)))
    with MediaWriter(out, source=info,
                     encode=EncodeConfig(preset="ultrafast", copy_audio=False)) as w:
        n = 0
        while n < frames:
            for f in iter_frames(src):
                if n >= frames:
                    break
                w.write(cv2.resize(f.rgb, size, interpolation=cv2.INTER_AREA), pts=n * step)
                n += 1
    return out


def _time_decode(src: Path, frames: int) -> float:
    from vidstyle.media import iter_frames

    t = time.perf_counter()
    n = 0
    for f in iter_frames(src):
        if f.index >= frames:
            break
        n += 1
    return (time.perf_counter() - t) / n * 1000


def _time_transcode(src: Path, out: Path, preset: str, frames: int) -> float:
    from vidstyle.media import MediaWriter, iter_frames, probe

    info = probe(src)
    t = time.perf_counter()
    n = 0
    with MediaWriter(out, source=info, encode=EncodeConfig(preset=preset)) as w:
        for f in iter_frames(src):
            if f.index >= frames:
                break
            w.write(f)
            n += 1
    return (time.perf_counter() - t) / n * 1000


def _peak_rss_mib(src: Path, out: Path, frames: int) -> float:
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    res = subprocess.run([sys.executable, "-c", _CHILD, str(src), str(out), str(frames)],
                         capture_output=True, text=True, check=True, env=env)
    return int(res.stdout.strip().splitlines()[-1]) / 1024  # VmHWM is in KiB


def run(report: Callable[[str], None] = print, *, frames: int = 60) -> dict[str, float]:
    """Run the benchmark, report a table line by line, and return the numbers."""
    import av

    bbb = DATA / "video" / "bigbuckbunny.mp4"
    if not bbb.exists():
        raise SystemExit(f"test data not found: {bbb}")
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    results: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="bench_media_") as tmp:
        d = Path(tmp)
        small = _make_clip(bbb, d / "in_360.mp4", (640, 360), frames)
        sources = {"640x360": small, "1280x720": bbb}
        report(f"media benchmark: PyAV {av.__version__}, {cpus} CPUs, first {frames} frames, "
               "CRF 18, audio copied where present")
        report(f"{'size':<10} {'decode ms/f':>12} {'veryfast ms/f':>14} {'medium ms/f':>12}")
        for size, src in sources.items():
            dec = _time_decode(src, frames)
            row = {"decode": dec}
            for preset in ("veryfast", "medium"):
                row[preset] = _time_transcode(src, d / f"out_{size}_{preset}.mp4", preset,
                                              frames)
            for k, v in row.items():
                results[f"{size}_{k}_ms"] = v
            report(f"{size:<10} {dec:>12.1f} {row['veryfast']:>14.1f} {row['medium']:>12.1f}")
        long_clip = _make_clip(small, d / "long_360.mp4", (640, 360), 300)
        report("peak RSS, decode+encode 640x360 veryfast in a fresh process:")
        for n in (30, 300):
            mib = _peak_rss_mib(long_clip, d / f"rss_{n}.mp4", n)
            results[f"rss_{n}_mib"] = mib
            report(f"  {n:>3} frames: {mib:7.1f} MiB")
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=60, help="frames timed per case")
    run(frames=ap.parse_args().frames)


if __name__ == "__main__":
    main()
