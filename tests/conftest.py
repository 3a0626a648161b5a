"""Shared fixtures: paths to the test-data kit and tiny synthetic media."""

from __future__ import annotations

import os

# torch's OpenMP threads spin while waiting; on a busy 2-core machine that makes small
# tensor ops many times slower. Must be set before torch is imported.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("VIDSTYLE_OFFLINE", "1")
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("VIDSTYLE_TEST_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def data_dir() -> Path:
    if not DATA.is_dir():
        pytest.skip(f"test data kit not found at {DATA}")
    return DATA


@pytest.fixture()
def umask_022():
    """Run the test under umask 022 (the old umask is restored); yields the mode a plainly
    created file gets then, 0o644."""
    old = os.umask(0o022)
    try:
        yield 0o644
    finally:
        os.umask(old)


@pytest.fixture()
def one_torch_thread():
    """Run torch on one thread, then restore the setting. On a shared 2-core machine
    torch's OpenMP pool of 2 spinning threads slows small elementwise ops up to 50-fold
    when other processes hold the cores (a 163x384 consistency mask: 230 ms with 2
    threads under load, 4 ms with one)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
