"""Flow tests run torch on one thread (see the ``one_torch_thread`` fixture of
tests/conftest.py): the flow code is mostly OpenCV plus small elementwise torch ops."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _one_torch_thread(one_torch_thread):
    yield
