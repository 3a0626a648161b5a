"""Fixtures of the weights tests: the converted session home, and an isolated one."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.weights._home import converted_home


@pytest.fixture(scope="session")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return converted_home(tmp_path_factory)


@pytest.fixture()
def isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """An empty VIDSTYLE_HOME and torch hub dir, so the user's caches never leak in."""
    monkeypatch.setenv("VIDSTYLE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv("VIDSTYLE_OFFLINE", raising=False)
    return tmp_path / "home"
