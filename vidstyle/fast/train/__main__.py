"""``python -m vidstyle.fast.train field=value ...``: a training run without the CLI; the
fields are :class:`~vidstyle.fast.train.TrainConfig`'s. Prints a JSON summary last."""

from __future__ import annotations

import dataclasses
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from .config import config_from_pairs
from .loop import train
from .report import console_progress


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``field=value`` pairs, train, print the result as JSON; returns the exit code."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    config = config_from_pairs(list(sys.argv[1:] if argv is None else argv))
    result = train(config, progress=console_progress())
    summary = {
        k: (str(v) if isinstance(v, Path) else v)
        for k, v in dataclasses.asdict(result).items()
    }
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
