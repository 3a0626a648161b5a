from __future__ import annotations

import numpy as np
import pytest
import torch

from vidstyle.errors import InputError
from vidstyle.flow import load_flow, read_flo, save_flow, write_flo


def test_flo_roundtrip_and_sintel_file(tmp_path, data_dir):
    gt = read_flo(data_dir / "flow/sintel/training/flow/alley_1/frame_0002.flo")
    assert gt.shape == (1, 2, 436, 1024) and gt.dtype == torch.float32
    mag = gt.norm(dim=1)
    assert 2.0 < float(mag.mean()) < 4.0 and float(mag.max()) < 20  # 2.98 / 10.6 per SOURCES
    write_flo(tmp_path / "x.flo", gt)
    assert torch.equal(read_flo(tmp_path / "x.flo"), gt)
    src = (data_dir / "flow/sintel/training/flow/alley_1/frame_0002.flo").read_bytes()
    assert (tmp_path / "x.flo").read_bytes() == src
    assert [p.name for p in tmp_path.iterdir()] == ["x.flo"]  # no temp file left


def test_flow_cache_is_float16_and_small(tmp_path):
    g = torch.Generator().manual_seed(0)
    flow = torch.randn(2, 2, 60, 70, generator=g) * 30
    flow[..., :30, :] = 1.5  # a smooth region compresses well
    path = tmp_path / "f.flow"
    save_flow(path, flow)
    back = load_flow(path)
    assert back.shape == flow.shape and back.dtype == torch.float32
    assert torch.allclose(back, flow, rtol=1e-3, atol=1e-3)
    assert path.stat().st_size < flow.numel() * 2 * 0.95  # below raw float16
    with np.load(path) as data:
        assert data["flow"].dtype == np.float16
    save_flow(path, flow[0] * 0)  # overwrite; (2, H, W) becomes a batch of one
    assert load_flow(path).shape == (1, 2, 60, 70)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.flow"]


def test_bad_files_raise_input_error(tmp_path):
    (tmp_path / "bad.flo").write_bytes(b"PIEH" + b"\0" * 8)
    with pytest.raises(InputError):
        read_flo(tmp_path / "bad.flo")
    with pytest.raises(InputError):
        read_flo(tmp_path / "missing.flo")
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(InputError):
        load_flow(tmp_path / "bad.npz")
    with pytest.raises(InputError):
        load_flow(tmp_path / "missing.npz")
