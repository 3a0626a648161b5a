"""Adjustable model (per-layer style weights as inputs): the network, its model file, and
its training (the conditioner trains; raising a layer's weight lowers that layer's loss)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from vidstyle.errors import UsageError
from vidstyle.fast.adjustable import (
    AdjustableStyleNet,
    _blocks,
    check_layer_weights,
    spread_alphas,
)
from vidstyle.fast.model_io import load_model, save_model
from vidstyle.fast.net import StyleNet, one_hot_styles
from vidstyle.fast.train import train
from vidstyle.fast.train.adjustable import per_layer_style
from vidstyle.fast.train.data import holdout_images
from vidstyle.fast.train.objective import style_targets

from .test_train import _config


def _adjustable(seed: int = 0, styles: int = 2) -> AdjustableStyleNet:
    torch.manual_seed(seed)
    return AdjustableStyleNet(num_styles=styles, style_layers=("a", "b", "c"),
                              channels=(4, 8, 8), num_res_blocks=1, outer_kernel=3, hidden=16)


def _randomize_conditioner(net: AdjustableStyleNet) -> None:
    with torch.no_grad():
        for p in net.conditioner.parameters():
            p.normal_(0, 0.3)


def test_fresh_network_is_the_plain_one_for_every_alpha() -> None:
    net = _adjustable()
    x = torch.rand(2, 3, 21, 30)
    w = one_hot_styles([0, 1], 2)
    plain = net.transformer(x, w)
    for alpha in (torch.zeros(2, 3), torch.ones(2, 3), torch.rand(2, 3)):
        assert torch.allclose(net(x, w, alpha), plain, atol=1e-6)


def test_bake_equals_forward_and_alpha_changes_the_output() -> None:
    net = _adjustable()
    _randomize_conditioner(net)
    x = torch.rand(1, 3, 24, 20)
    rows = torch.tensor([[1.0, 0.0], [0.3, 0.7], [0.0, 1.0]])
    alpha = torch.tensor([[0.0, 0.5, 1.0], [1.0, 1.0, 1.0], [0.2, 0.0, 0.9]])
    baked = net.bake(rows, alpha)
    assert isinstance(baked, StyleNet) and baked.num_styles == 3
    for k in range(3):
        want = net(x, rows[k : k + 1], alpha[k : k + 1])
        got = baked(x, one_hot_styles(k, 3))
        assert torch.allclose(got, want, atol=1e-5)
    a0 = net(x, rows[:1], torch.zeros(1, 3))
    a1 = net(x, rows[:1], torch.ones(1, 3))
    assert (a0 - a1).abs().mean() > 1e-3


def test_model_file_round_trip_keeps_the_kind_and_loss_averages(tmp_path: Path) -> None:
    net = _adjustable()
    _randomize_conditioner(net)
    net.loss_ema.copy_(torch.tensor([[1e-3, 2.0, 7e4], [5.0, 6.0, 7.0]]))
    path = tmp_path / "adj.pt"
    save_model(path, net, style_names=("s1", "s2"), dtype=torch.float16)
    m = load_model(path)
    assert m.adjustable and isinstance(m.net, AdjustableStyleNet)
    assert m.net.style_layers == ("a", "b", "c")
    assert torch.equal(m.net.loss_ema, net.loss_ema)  # fp32 even in an fp16 file
    x = torch.rand(1, 3, 16, 16)
    w = one_hot_styles(1, 2)
    a0, a1 = torch.zeros(1, 3), torch.ones(1, 3)
    assert torch.allclose(m.net(x, w, a0), net(x, w, a0), atol=2e-2)
    assert not torch.allclose(m.net(x, w, a0), m.net(x, w, a1), atol=1e-3)
    # default alpha: each layer's share of the style's loss
    d = m.net.default_alpha(one_hot_styles(0, 2))
    assert torch.allclose(d, net.loss_ema[:1] / net.loss_ema[:1].sum())


def test_plain_model_files_still_load_as_plain(tmp_path: Path) -> None:
    torch.manual_seed(0)
    plain = StyleNet(num_styles=2, channels=(4, 8, 8), num_res_blocks=1, outer_kernel=3)
    save_model(tmp_path / "p.pt", plain, style_names=("a", "b"))
    m = load_model(tmp_path / "p.pt")
    assert not m.adjustable and isinstance(m.net, StyleNet)


def test_layer_weights_checks() -> None:
    layers = ("relu1_1", "relu2_1", "relu3_1")
    assert check_layer_weights((0.0, 0.5, 1.0), layers) == []
    warn = check_layer_weights((0.0, 1.5, 1.0), layers)
    assert len(warn) == 1 and "relu2_1" in warn[0]
    for bad, words in (((1.0, 1.0), "3 values"), ((1.0, -0.1, 1.0), "relu2_1"),
                       ((1.0, 1.0, 2.5), "relu3_1"), ((float("nan"), 1, 1), "relu1_1")):
        with pytest.raises(UsageError, match="--layer-weights") as e:
            check_layer_weights(bad, layers)
        assert words in str(e.value)


def test_spread_alphas_are_seeded_stratified_and_farther_apart_than_independent_draws(
) -> None:
    a = spread_alphas(4, 5, seed=1)
    assert a.shape == (4, 5) and torch.equal(a, spread_alphas(4, 5, seed=1))
    assert not torch.equal(a, spread_alphas(4, 5, seed=2))
    assert float(a.min()) >= 0 and float(a.max()) <= 1
    # a Latin hypercube: each layer has one value in each quarter of [0, 1]
    assert all(sorted((a[:, k] * 4).floor().int().tolist()) == [0, 1, 2, 3] for k in range(5))

    def closest(rows: torch.Tensor) -> float:
        return float(torch.cdist(rows, rows, p=1).fill_diagonal_(float("inf")).min())

    gen = torch.Generator().manual_seed(0)
    independent = [closest(torch.rand(4, 5, generator=gen)) for _ in range(50)]
    spread = [closest(spread_alphas(4, 5, seed=s)) for s in range(50)]
    assert min(spread) > sorted(independent)[25]  # worst spread draw beats the median one
    assert spread_alphas(1, 3, seed=0).shape == (1, 3)


def _layer_losses(net: AdjustableStyleNet, loss_net, images, targets, alpha: list[float]
                  ) -> torch.Tensor:
    """Per-layer style loss (L,) of the outputs for ``alpha``, summed over the images and
    styles."""
    layers = list(net.style_layers)
    acc = torch.zeros(net.num_layers)
    for s in range(net.num_styles):
        for im in images:
            with torch.no_grad():
                y = net(im, one_hot_styles(s, net.num_styles), torch.tensor([alpha]))
                acc += per_layer_style(loss_net(y, layers), torch.tensor([s]), targets,
                                       layers)[0]
    return acc


def test_tiny_training_trains_the_conditioner_with_a_per_layer_effect(
        tiny_data, tiny_loss_net) -> None:
    cfg = _config(tiny_data, "adj", adjustable=True, steps=160, log_every=40, batch=4,
                  size=24, style_weight=300.0, conditioner_hidden=32, conditioner_lr=5e-3,
                  lr=5e-3)
    res = train(cfg, loss_net=tiny_loss_net)
    m = load_model(res.model_path)
    net = m.net
    assert isinstance(net, AdjustableStyleNet)
    # the conditioner trained: its last layer left zero, the others their initialization
    torch.manual_seed(cfg.seed)
    fresh = AdjustableStyleNet(num_styles=2, style_layers=cfg.style_layers,
                               channels=cfg.channels, num_res_blocks=cfg.num_res_blocks,
                               outer_kernel=cfg.outer_kernel, hidden=32)
    for (name, p), q in zip(net.conditioner.named_parameters(),
                            fresh.conditioner.parameters(), strict=True):
        assert (p - q).abs().max() > 1e-3, name
    assert float(net.ema_count.min()) > 0 and not torch.equal(net.loss_ema, fresh.loss_ema)
    paths = [Path(p.partition("=")[2]) for p in cfg.styles]
    targets = style_targets(tiny_loss_net, paths, cfg, torch.device("cpu"))
    images = holdout_images(cfg)
    # raising alpha of layer a (b fixed) lowers layer a's loss monotonically, more than b's
    sweep = torch.stack([_layer_losses(net, tiny_loss_net, images, targets, [v, 0.5])
                         for v in (0.0, 0.25, 0.5, 0.75, 1.0)])
    assert bool((sweep[1:, 0] < sweep[:-1, 0]).all()), sweep
    drop = 1 - sweep[-1] / sweep[0]
    assert drop[0] > 0.2 and drop[0] > drop[1], sweep
    # and raising alpha of layer b (a fixed) lowers layer b's loss monotonically
    sweep_b = torch.stack([_layer_losses(net, tiny_loss_net, images, targets, [0.5, v])
                           for v in (0.0, 0.25, 0.5, 0.75, 1.0)])
    assert bool((sweep_b[1:, 1] < sweep_b[:-1, 1]).all()), sweep_b


def test_adjustable_training_settings_are_checked(tiny_data, tmp_path: Path) -> None:
    from tests.cli_helpers import invoke, one_line_error

    err = one_line_error(invoke("train", "--from", "m.pt", "--out", tmp_path / "o"), 2)
    assert "--from" in err and "--adjustable" in err
    err = one_line_error(invoke("train", "--adjustable", "--teacher", "fast7", "--out",
                                tmp_path / "o"), 2)
    assert "--adjustable" in err and "--teacher" in err
    err = one_line_error(invoke("train", "--adjustable", "--set", "adjustable_default=0.8",
                                "--set", "adjustable_onehot=0.5", "--out", tmp_path / "o"), 2)
    assert "adjustable_default" in err
    assert not (tmp_path / "o").exists()
    # --from a model without one of the styles
    torch.manual_seed(0)
    plain = StyleNet(num_styles=2, channels=(4, 8, 8), num_res_blocks=1, outer_kernel=3)
    save_model(tmp_path / "p.pt", plain, style_names=("starry", "udnie"))
    cfg = _config(tiny_data, "x", adjustable=True, from_model=str(tmp_path / "p.pt"))
    with pytest.raises(UsageError, match="no style wave"):
        train(cfg)


def test_from_a_plain_model_starts_as_that_model(tiny_data, tmp_path: Path) -> None:
    from vidstyle.fast.train.adjustable import init_adjustable

    torch.manual_seed(0)
    plain = StyleNet(num_styles=3, channels=(4, 8, 8), num_res_blocks=1, outer_kernel=3)
    save_model(tmp_path / "p.pt", plain, style_names=("udnie", "wave", "starry"),
               dtype=torch.float32)
    cfg = _config(tiny_data, "x", adjustable=True, from_model=str(tmp_path / "p.pt"))
    net = init_adjustable(cfg, ("starry", "wave"))
    x = torch.rand(1, 3, 20, 20)
    for mine, theirs in ((0, 2), (1, 1)):
        want = plain(x, one_hot_styles(theirs, 3))
        got = net(x, one_hot_styles(mine, 2), torch.rand(1, 2))
        assert torch.allclose(got, want, atol=1e-5)


def test_a_resume_takes_the_learning_rates_given_again(tiny_data, tiny_loss_net) -> None:
    kw = {"adjustable": True, "conditioner_hidden": 8, "conditioner_lr": 2e-2}
    train(_config(tiny_data, "b", steps=2, **kw), loss_net=tiny_loss_net)
    res = train(_config(tiny_data, "b", steps=3, resume=True, **{**kw, "conditioner_lr": 1e-4},
                        lr=3e-4), loss_net=tiny_loss_net)
    ck = torch.load(res.checkpoint_path, weights_only=True)
    assert [g["lr"] for g in ck["optimizer"]["param_groups"]] == [3e-4, 1e-4]


def test_look_features_spread_variations_where_the_conditioner_reacts() -> None:
    torch.manual_seed(0)
    net = AdjustableStyleNet(num_styles=2, style_layers=("l1", "l2", "l3"),
                             channels=(4, 8, 8), num_res_blocks=1, outer_kernel=3, hidden=16)
    with torch.no_grad():  # a conditioner that reads layer l1 only
        for p in net.conditioner.parameters():
            p.normal_(0, 0.5)
        net.conditioner.mlp[0].weight[:, 1:3].zero_()
    a = torch.rand(4, 3)
    f = net.look_features(a)
    assert f.shape == (4, 2 * 2 * sum(b.norm.channels for b in _blocks(net.transformer)))
    b = a.clone()
    b[:, 1:] = torch.rand(4, 2)
    assert torch.allclose(net.look_features(b), f)  # l2, l3 unused: same looks
    spread = spread_alphas(4, 3, seed=0, embed=net.look_features)
    l1 = spread[:, 0].sort().values
    assert float((l1[1:] - l1[:-1]).min()) > 0.1  # the used layer's values kept apart


def test_frozen_training_keeps_the_plain_model_at_the_default_setting(
        tiny_data, tiny_loss_net, tmp_path: Path) -> None:
    torch.manual_seed(0)
    plain = StyleNet(num_styles=3, channels=(4, 8, 8), num_res_blocks=1, outer_kernel=3)
    save_model(tmp_path / "p.pt", plain, style_names=("udnie", "wave", "starry"),
               dtype=torch.float32)
    cfg = _config(tiny_data, "frozen", adjustable=True, adjustable_frozen=True,
                  from_model=str(tmp_path / "p.pt"), steps=60, batch=4, size=24,
                  style_weight=300.0, conditioner_hidden=32, conditioner_lr=5e-3,
                  adjustable_default=0.0)
    res = train(cfg, loss_net=tiny_loss_net)
    net = load_model(res.model_path).net
    assert isinstance(net, AdjustableStyleNet) and net.anchored
    assert float(net.conditioner.mlp[-1].weight.abs().max()) > 1e-3  # it trained
    x = torch.rand(1, 3, 20, 20)
    # the styles' rows are --styles order: starry, wave (the kit's tiny style images)
    names = load_model(res.model_path).style_names
    for mine, style in enumerate(names):
        want = plain(x, one_hot_styles(("udnie", "wave", "starry").index(style), 3))
        row = one_hot_styles(mine, len(names))
        assert torch.allclose(net(x, row), want, atol=1e-5)  # the default: exactly plain
        assert not torch.allclose(net(x, row, torch.ones(1, 2)), want, atol=1e-3)
        baked = net.bake(row, net.default_alpha(row))
        assert torch.allclose(baked(x, one_hot_styles(0, 1)), want, atol=1e-5)
    with pytest.raises(UsageError, match="adjustable_frozen"):
        _config(tiny_data, "y", adjustable=True, adjustable_frozen=True)


def test_from_an_adjustable_model_continues_its_conditioner(tiny_data, tmp_path: Path) -> None:
    from vidstyle.fast.train.adjustable import init_adjustable

    torch.manual_seed(0)
    base = AdjustableStyleNet(num_styles=3, style_layers=("a", "b"), channels=(4, 8, 8),
                              num_res_blocks=1, outer_kernel=3, hidden=16, anchored=True)
    _randomize_conditioner(base)
    with torch.no_grad():
        base.loss_ema.copy_(torch.tensor([[1.0, 9.0], [2.0, 2.0], [5.0, 1.0]]))
        base.ema_count.fill_(3)
    save_model(tmp_path / "a.pt", base, style_names=("udnie", "wave", "starry"),
               dtype=torch.float32)
    cfg = _config(tiny_data, "x", adjustable=True, adjustable_frozen=True,
                  from_model=str(tmp_path / "a.pt"), conditioner_hidden=16)
    net = init_adjustable(cfg, ("starry", "wave"))
    x, alpha = torch.rand(1, 3, 20, 20), torch.tensor([[0.9, 0.2]])
    with torch.no_grad():
        for mine, theirs in ((0, 2), (1, 1)):
            want = base(x, one_hot_styles(theirs, 3), alpha)
            got = net(x, one_hot_styles(mine, 2), alpha)
            assert torch.allclose(got, want, atol=1e-5)
            assert not torch.allclose(got, base(x, one_hot_styles(theirs, 3)), atol=1e-3)
    assert torch.equal(net.loss_ema, base.loss_ema[[2, 1]])
    other = _config(tiny_data, "y", adjustable=True, from_model=str(tmp_path / "a.pt"),
                    conditioner_hidden=16)  # not frozen: not anchored
    with pytest.raises(UsageError, match="adjustable_frozen"):
        init_adjustable(other, ("starry", "wave"))
