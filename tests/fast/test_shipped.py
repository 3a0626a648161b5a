"""The shipped fast-network weights: hash, size, and that they stylize a held-out photo."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from vidstyle.fast.model_io import DEFAULT_WEIGHTS_DIR, load_shipped, read_manifest
from vidstyle.fast.net import one_hot_styles
from vidstyle.fast.train import DEFAULT_STYLES
from vidstyle.fileio import sha256_file

MANIFEST = DEFAULT_WEIGHTS_DIR / "manifest.toml"


def _fast_models() -> dict[str, dict]:
    models = read_manifest(MANIFEST).get("models", {})
    return {
        k: v for k, v in models.items() if str(v.get("kind", "")).startswith("vidstyle.stylenet")
    }


def test_shipped_weights_match_manifest() -> None:
    models = _fast_models()
    assert {"fast7", "fast7_strong"} <= set(models), f"shipped models missing from {MANIFEST}"
    for name, entry in models.items():
        path = MANIFEST.parent / entry["file"]
        assert path.is_file(), name
        assert path.stat().st_size <= 10 * 2**20, name
        assert sha256_file(path) == entry["sha256"], name
        assert entry["steps"] > 0 and entry["command"] and entry["data"]


def test_shipped_model_stylizes_a_held_out_photo(data_dir: Path) -> None:
    from PIL import Image

    m = load_shipped("fast7")
    assert m.style_names == DEFAULT_STYLES
    with Image.open(data_dir / "content" / "chicago.jpg") as im:
        im = im.convert("RGB").resize((160, 106))
    x = torch.from_numpy(np.asarray(im).copy()).permute(2, 0, 1)[None] / 255.0
    with torch.no_grad():
        outs = [m.net(x, one_hot_styles(s, 7)) for s in (0, 2)]
        mixed = m.net(x, torch.tensor([[0.5, 0, 0.5, 0, 0, 0, 0]]))
    for y in outs:
        assert y.shape == x.shape and torch.isfinite(y).all()
        assert float((y - x).abs().mean()) > 0.05  # it changes the photo
    assert float((outs[0] - outs[1]).abs().mean()) > 0.05  # starry differs from wave
    assert float((mixed - outs[0]).abs().mean()) > 0.01
