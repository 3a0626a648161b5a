"""Flow tests run torch on one thread.

The flow code is mostly OpenCV plus small elementwise torch ops; on a shared 2-core
machine, torch's OpenMP pool of 2 spinning threads slows these ops down up to 50-fold
when other processes hold the cores (measured: a 163x384 consistency mask took 230 ms
with 2 threads under load, 4 ms with one). The previous setting is restored afterwards.
"""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_torch_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
