"""Using an adjustable model: --layer-weights (whole frame and per person), --variations,
vidstyle explore and vidstyle styles --layers."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests.cli_helpers import invoke, one_line_error
from vidstyle.config import FastConfig, RunConfig
from vidstyle.contracts import FrameContext, Instances, StyleSpec
from vidstyle.errors import StyleError, UsageError
from vidstyle.fast.adjustable import AdjustableStyleNet
from vidstyle.fast.looks import bake_looks, variation_weights
from vidstyle.fast.model_io import load_model, save_model
from vidstyle.fast.net import StyleNet, one_hot_styles
from vidstyle.fast.stylizer import make_fast_stylizer, style_vector
from vidstyle.fast.variations import variation_plan

STYLES = ("starry", "scream", "wave")


@pytest.fixture(scope="module")
def adj_model(tmp_path_factory) -> Path:
    """A small adjustable model of 3 styles whose conditioner clearly reacts to alpha."""
    torch.manual_seed(0)
    net = AdjustableStyleNet(num_styles=3, style_layers=("l1", "l2", "l3"),
                             channels=(4, 8, 8), num_res_blocks=1, outer_kernel=3, hidden=16)
    with torch.no_grad():
        for p in net.conditioner.parameters():
            p.normal_(0, 0.5)
        net.loss_ema.copy_(torch.tensor([[1.0, 10.0, 100.0], [5.0, 5.0, 5.0],
                                         [100.0, 1.0, 1.0]]))
    path = tmp_path_factory.mktemp("adj") / "adj.pt"
    save_model(path, net, style_names=STYLES, dtype=torch.float32)
    return path


@pytest.fixture(scope="module")
def plain_model(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    net = StyleNet(num_styles=3, channels=(4, 8, 8), num_res_blocks=1, outer_kernel=3)
    path = tmp_path_factory.mktemp("plain") / "plain.pt"
    save_model(path, net, style_names=STYLES, dtype=torch.float32)
    return path


def _config(model: Path, style: StyleSpec | str = "starry", **fast) -> RunConfig:
    spec = StyleSpec.parse(style)
    if fast.get("layer_weights"):
        import dataclasses

        spec = dataclasses.replace(spec, layer_weights=tuple(fast["layer_weights"]))
    return RunConfig(style=spec, method="fast",
                     fast=FastConfig(model=str(model), stability=0.0, runtime="eager", **fast))


def _photo(tmp_path: Path, size=(48, 40)) -> Path:
    rng = np.random.default_rng(0)
    arr = (rng.random((size[1], size[0], 3)) * 255).astype(np.uint8)
    p = tmp_path / "photo.png"
    Image.fromarray(arr).save(p)
    return p


def test_layer_weights_reach_the_network(adj_model: Path) -> None:
    m = load_model(adj_model)
    x = torch.rand(1, 3, 32, 40)
    st = make_fast_stylizer(config=_config(adj_model, layer_weights=(0.2, 1.0, 0.5)))
    want = m.net(x, one_hot_styles(0, 3), torch.tensor([[0.2, 1.0, 0.5]]))
    got = st.stylize_tensor(x)
    assert torch.allclose(got, want, atol=1e-4)
    # no layer weights: the style's default (its share of the plain loss)
    st_d = make_fast_stylizer(config=_config(adj_model))
    default = torch.tensor([[1.0, 10.0, 100.0]]) / 111.0
    assert torch.allclose(st_d.stylize_tensor(x), m.net(x, one_hot_styles(0, 3), default),
                          atol=1e-4)
    assert st.fingerprint() != st_d.fingerprint()
    other = make_fast_stylizer(config=_config(adj_model, layer_weights=(0.2, 1.0, 0.6)))
    assert other.fingerprint() != st.fingerprint()
    assert (other.stylize_tensor(x) - got).abs().mean() > 1e-4


def test_layer_weights_checks(adj_model: Path, plain_model: Path, caplog) -> None:
    with pytest.raises(UsageError, match="--layer-weights needs 3 values"):
        make_fast_stylizer(config=_config(adj_model, layer_weights=(1.0, 1.0)))
    with pytest.raises(UsageError, match="plain"):
        make_fast_stylizer(config=_config(plain_model, layer_weights=(1.0, 1.0, 1.0)))
    with pytest.raises(UsageError, match="--layer-weights"):
        FastConfig(layer_weights=(1.0, 2.5, 1.0))
    with pytest.raises(UsageError, match="--layer-weights"):
        FastConfig(layer_weights=(1.0, -0.1, 1.0))
    with caplog.at_level(logging.WARNING):
        make_fast_stylizer(config=_config(adj_model, layer_weights=(1.0, 1.5, 1.0)))
    assert any("l2=1.5" in r.getMessage() and "trained range" in r.getMessage()
               for r in caplog.records)


def test_instance_spec_carries_its_own_layer_weights(adj_model: Path) -> None:
    spec = StyleSpec.parse("starry").with_people(["1=wave@0.1,0.9,0.3", "2=scream"])
    assert spec.instance_layers == ((1, (0.1, 0.9, 0.3)),)
    assert spec.layers_for(1) == (0.1, 0.9, 0.3) and spec.layers_for(2) == ()
    assert "@0.1,0.9,0.3" in str(spec) and "," not in spec.slug() and not spec.is_plain
    with pytest.raises(StyleError, match="layer weights"):
        StyleSpec.parse("starry").with_people(["1=wave@0.1,x"])
    m = load_model(adj_model)
    baked, new_spec, _ = bake_looks(m, spec, lambda mix: style_vector(mix, m.style_names))
    assert len(baked.style_names) == 3  # starry@default, wave@..., scream@default
    x = torch.rand(1, 3, 24, 24)
    row = baked.style_names.index(dict(new_spec.instances)[1].parts[0][0])
    want = m.net(x, one_hot_styles(2, 3), torch.tensor([[0.1, 0.9, 0.3]]))
    assert torch.allclose(baked.net(x, one_hot_styles(row, 3)), want, atol=1e-4)
    # the person's look reaches the frame through the style map: where the person is
    x = torch.rand(1, 3, 64, 64)
    masks = torch.zeros(1, 64, 64)
    masks[0, :, :32] = 1.0
    inst = Instances(masks=masks, boxes=torch.tensor([[0.0, 0.0, 32.0, 64.0]]),
                     scores=torch.ones(1), ids=(1,))
    outs = []
    for s in (spec, StyleSpec.parse("starry").with_people(["1=wave", "2=scream"])):
        st = make_fast_stylizer(config=_config(adj_model, s))
        outs.append(st.stylize(x, FrameContext(index=0, size=(64, 64), instances=inst)))
    diff = (outs[0] - outs[1]).abs()
    # (the background moves too: the normalization statistics are the whole frame's)
    assert diff[..., :24].mean() > 1e-2 and diff[..., :24].mean() > 1.5 * diff[..., 40:].mean()


def test_variations_draw_seeded_different_weights(adj_model: Path, tmp_path: Path) -> None:
    cfg = _config(adj_model, variations=3, seed=5)
    plan = variation_plan(cfg, tmp_path / "out.png")
    assert [p.name for _, p, _ in plan] == ["out_v1.png", "out_v2.png", "out_v3.png"]
    weights = [w for _, _, w in plan]
    adj_net = load_model(adj_model).net
    assert weights == variation_weights(adj_net, 3, 5) and len(set(weights)) == 3
    for c, _, w in plan:
        assert c.fast.variations == 0 and c.fast.layer_weights == w == c.style.layer_weights
    assert variation_weights(adj_net, 3, 6) != weights
    with pytest.raises(UsageError, match="--variations"):
        FastConfig(variations=2, layer_weights=(1.0, 1.0, 1.0))


def test_cli_variations_explore_and_layers(adj_model: Path, plain_model: Path,
                                           tmp_path: Path) -> None:
    photo = _photo(tmp_path)
    out = tmp_path / "v.png"
    r = invoke("run", photo, "-o", out, "--model", adj_model, "--variations", "3",
               "--seed", "2", "--stability", "0", "-q")
    assert r.exit_code == 0, r.stderr
    imgs = [np.asarray(Image.open(tmp_path / f"v_v{k}.png"), dtype=np.float32)
            for k in (1, 2, 3)]
    for i in range(3):
        for j in range(i + 1, 3):
            assert np.abs(imgs[i] - imgs[j]).mean() > 0.5  # pairwise different (0..255)
    err = one_line_error(invoke("run", photo, "-o", out, "--model", adj_model,
                                "--variations", "3", "-q"), 2)
    assert "v_v1.png exists" in err
    err = one_line_error(invoke("run", photo, "-o", tmp_path / "p.png", "--model",
                                plain_model, "--layer-weights", "1,1,1", "-q"), 2)
    assert "--layer-weights" in err and "plain" in err
    err = one_line_error(invoke("run", photo, "-o", tmp_path / "p.png", "--model",
                                adj_model, "--layer-weights", "1,3,1", "-q"), 2)
    assert "--layer-weights" in err
    grid = tmp_path / "grid.png"
    r = invoke("explore", photo, "--model", adj_model, "--style", "scream", "--rows", "l1",
               "--cols", "l3", "--steps", "3", "--size", "40", "-o", grid)
    assert r.exit_code == 0, r.stderr
    with Image.open(grid) as im:
        assert im.width > 3 * 40 and im.height > 3 * 32
    err = one_line_error(invoke("explore", photo, "--model", adj_model, "--rows", "relu9",
                                "-o", tmp_path / "g2.png"), 2)
    assert "relu9" in err and "l1" in err
    r = invoke("styles", "--layers", "--model", adj_model)
    assert r.exit_code == 0, r.stderr
    lines = r.output.splitlines()
    assert [ln.split()[1] for ln in lines[2:]] == ["l1", "l2", "l3"]
    assert "starry" in lines[1] and "wave" in lines[1]


def test_video_with_layer_weights_and_variations(adj_model: Path, tmp_path: Path) -> None:
    from tests.media.helpers import make_clip
    from vidstyle.media import probe

    clip = make_clip(tmp_path / "c.mp4", n=3, size=(64, 48))
    out = tmp_path / "o.mp4"
    r = invoke("run", clip, "-o", out, "--model", adj_model, "--layer-weights", "0.1,0.9,1",
               "--stability", "0.7", "-q")
    assert r.exit_code == 0, r.stderr
    assert probe(out).frame_count == 3
    r = invoke("run", clip, "-o", out, "--model", adj_model, "--variations", "2", "-q")
    assert r.exit_code == 0, r.stderr
    assert [probe(tmp_path / f"o_v{k}.mp4").frame_count for k in (1, 2)] == [3, 3]
    assert r.output.count("layer weights") == 2


def test_batch_refuses_variations(adj_model: Path, tmp_path: Path) -> None:
    src = tmp_path / "in"
    src.mkdir()
    _photo(src)
    err = one_line_error(invoke("batch", src, tmp_path / "out", "--model", adj_model,
                                "--variations", "2", "-q"), 2)
    assert "--variations" in err and "vidstyle run" in err
