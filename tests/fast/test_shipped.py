"""The shipped fast-network weights: hash, size, and that they stylize a held-out photo."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from vidstyle.config import DEFAULT_ADJUSTABLE_MODEL
from vidstyle.fast.adjustable import AdjustableStyleNet
from vidstyle.fast.model_io import DEFAULT_WEIGHTS_DIR, load_shipped, read_manifest
from vidstyle.fast.net import one_hot_styles
from vidstyle.fast.train import DEFAULT_STYLES
from vidstyle.fileio import sha256_file

MANIFEST = DEFAULT_WEIGHTS_DIR / "manifest.toml"


def _fast_models() -> dict[str, dict]:
    models = read_manifest(MANIFEST).get("models", {})
    return {
        k: v for k, v in models.items()
        if str(v.get("kind", "")).startswith(("vidstyle.stylenet", "vidstyle.adjustable"))
    }


def test_shipped_weights_match_manifest() -> None:
    models = _fast_models()
    assert {"fast7", "fast7_strong", "fast7_s2d", DEFAULT_ADJUSTABLE_MODEL} <= set(models), (
        f"shipped models missing from {MANIFEST}")
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


def test_shipped_space_to_depth_student_paints_each_style_as_fast7_does(data_dir: Path) -> None:
    """``fast7_s2d`` (the option for CPUs without bf16) has no full-resolution layer, and
    for every style its output on a held-out photo is nearer fast7's output of that style
    than any of its own other styles' outputs: each style keeps the teacher's look."""
    from PIL import Image

    teacher, student = load_shipped("fast7"), load_shipped("fast7_s2d")
    assert student.style_names == teacher.style_names == DEFAULT_STYLES
    assert student.net.space_to_depth == 2
    with Image.open(data_dir / "content" / "chicago.jpg") as im:
        im = im.convert("RGB").resize((160, 106))
    x = torch.from_numpy(np.asarray(im).copy()).permute(2, 0, 1)[None] / 255.0
    n = len(DEFAULT_STYLES)
    with torch.no_grad():
        ours = [student.net(x, one_hot_styles(s, n)) for s in range(n)]
        theirs = [teacher.net(x, one_hot_styles(s, n)) for s in range(n)]
    for s in range(n):
        assert ours[s].shape == x.shape and torch.isfinite(ours[s]).all()
        to_teacher = float((ours[s] - theirs[s]).abs().mean())
        to_others = min(float((ours[s] - ours[t]).abs().mean()) for t in range(n) if t != s)
        assert to_teacher < to_others, (DEFAULT_STYLES[s], to_teacher, to_others)


def test_shipped_adjustable_model_is_fast7_at_its_default_and_moves_with_the_weights(
        data_dir: Path) -> None:
    from PIL import Image

    adj = load_shipped(DEFAULT_ADJUSTABLE_MODEL)
    plain = load_shipped(read_manifest(MANIFEST)["models"][DEFAULT_ADJUSTABLE_MODEL]["from"])
    net = adj.net
    assert isinstance(net, AdjustableStyleNet) and net.anchored
    assert {"starry", "scream", "wave"} <= set(adj.style_names)
    with Image.open(data_dir / "content" / "kodim04.png") as im:
        im = im.convert("RGB").resize((96, 64))
    x = torch.from_numpy(np.asarray(im).copy()).permute(2, 0, 1)[None] / 255.0
    with torch.no_grad():
        for s, name in enumerate(adj.style_names):
            row = one_hot_styles(s, net.num_styles)
            want = plain.net(x, one_hot_styles(plain.style_names.index(name),
                                               plain.net.num_styles))
            assert torch.allclose(net(x, row), want, atol=2e-3), name  # fp16 weights
            fine = torch.tensor([[1.0, 1.0, 0.0, 0.0, 0.0]])
            coarse = torch.tensor([[0.0, 0.0, 0.0, 1.0, 1.0]])
            # the trained range's ends give looks that differ visibly (> 2/255 on average)
            assert float((net(x, row, fine) - net(x, row, coarse)).abs().mean()) > 2 / 255
