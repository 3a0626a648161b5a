"""Flow backends on MPI-Sintel ground truth: EPE (clean/final, all/non-occluded), ms/pair.

Run: ``python -m benchmarks.bench_flow [--tvl1] [--data DIR]``. Prints a Markdown table and
returns its rows from :func:`bench_flow`. RAFT is benchmarked only when its weights are
already on this machine (torch hub cache); otherwise its row says so. Timings are wall
time of one ``estimate`` call per 1024x436 pair on this machine's CPU, after a warm-up.
"""

from __future__ import annotations

import argparse
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from vidstyle.evaluate import evaluate_flow_dir
from vidstyle.flow.estimate import make_flow, raft_cache_path

DEFAULT_DATA = Path(
    os.environ.get(
        "VIDSTYLE_TEST_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data"
    )
)
SINTEL = "flow/sintel/training"
METHODS = ("dis:ultrafast", "dis:fast", "dis:medium", "deepflow")


def _fmt(v: float) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.2f}"


def bench_flow(
    data_dir: str | os.PathLike[str] = DEFAULT_DATA,
    methods: Sequence[str] = METHODS,
    *,
    tvl1: bool = False,
    tvl1_sequences: Sequence[str] = ("alley_1",),
    raft: bool = True,
    scale: float = 1.0,
    repeat: int = 3,
) -> list[dict[str, Any]]:
    """Evaluate ``methods`` on every Sintel sequence, print a table, return its rows.

    Each row: method, sequence, clean_all, clean_noc, final_all, final_noc (EPE in px),
    ms_per_pair (mean over the passes), note. ``tvl1`` adds Dual TV-L1 on
    ``tvl1_sequences`` only (about 30 s per pair here). RAFT (large) is added when its
    weights are cached, else a row noting "no weights offline". ``scale`` < 1 estimates
    at that fraction of 1024x436 (EPE stays in full-size pixels). Fast methods (DIS) are
    timed as the fastest of ``repeat`` runs per pair, slow ones once.
    """
    root = Path(data_dir) / SINTEL

    def run(specs: Sequence[str], **kw: Any) -> list[dict[str, Any]]:
        out = []
        for spec in specs:
            name, _, preset = spec.partition(":")
            est = make_flow(name, preset=preset, scale=scale)
            rows = evaluate_flow_dir(root, [est], repeat=repeat if name == "dis" else 1, **kw)
            label = spec if scale == 1.0 else f"{spec}@{scale:g}"
            out += [{**r, "method": label} for r in rows]
        return out

    raw = run(methods)
    if tvl1:
        raw += run(["dualtvl1"], sequences=tvl1_sequences)
    notes: list[dict[str, Any]] = []
    if raft:
        if raft_cache_path("large").is_file():
            raw += run(["raft:large"])
        else:
            notes.append(
                {
                    "method": "raft:large",
                    "sequence": "all",
                    "note": f"no weights offline ({raft_cache_path('large')} missing)",
                }
            )
    rows: list[dict[str, Any]] = []
    keys = list(dict.fromkeys((r["method"], r["sequence"]) for r in raw))
    for method, seq in keys:
        rs = {r["pass"]: r for r in raw if r["method"] == method and r["sequence"] == seq}
        row: dict[str, Any] = {"method": method, "sequence": seq, "note": ""}
        for p in ("clean", "final"):
            row[f"{p}_all"] = rs[p]["epe_all"] if p in rs else float("nan")
            row[f"{p}_noc"] = rs[p]["epe_noc"] if p in rs else float("nan")
        row["ms_per_pair"] = sum(r["ms_per_pair"] for r in rs.values()) / len(rs)
        rows.append(row)
    for n in notes:
        rows.append(
            {
                **{
                    k: float("nan")
                    for k in ("clean_all", "clean_noc", "final_all", "final_noc", "ms_per_pair")
                },
                **n,
            }
        )
    print("| method | sequence | clean all | clean noc | final all | final noc | ms/pair |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        ms = "-" if math.isnan(r["ms_per_pair"]) else f"{r['ms_per_pair']:.0f}"
        tail = f" {r['note']}" if r["note"] else ""
        print(
            f"| {r['method']} | {r['sequence']} | {_fmt(r['clean_all'])} | "
            f"{_fmt(r['clean_noc'])} | {_fmt(r['final_all'])} | {_fmt(r['final_noc'])} | "
            f"{ms}{tail} |"
        )
    return rows


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="test-data kit root")
    ap.add_argument("--tvl1", action="store_true", help="add Dual TV-L1 (slow) on alley_1")
    ap.add_argument("--scale", type=float, default=1.0, help="estimate at this fraction")
    ap.add_argument("--repeat", type=int, default=3, help="timing runs per pair (DIS)")
    args = ap.parse_args(argv)
    bench_flow(args.data, tvl1=args.tvl1, scale=args.scale, repeat=args.repeat)


if __name__ == "__main__":
    main()
