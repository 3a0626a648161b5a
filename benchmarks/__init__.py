"""Benchmarks: `python -m benchmarks` runs them all and prints one table per topic."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from vidstyle.fileio import atomic_write_text

#: Where the benchmarks write their JSON results and pictures.
RESULTS = Path(__file__).resolve().parent / "results"


def write_json(path: str | Path, obj: Any) -> Path:
    """Write ``obj`` as indented JSON to ``path`` atomically (parent folders created)."""
    path = Path(path)
    atomic_write_text(path, json.dumps(obj, indent=2) + "\n")
    return path
