"""The CIN transformer: layer math, style mixing, shapes and the model file."""

from __future__ import annotations

import pytest
import torch

from vidstyle.fast.model_io import load_model, save_model
from vidstyle.fast.net import (
    ConditionalInstanceNorm2d,
    StyleNet,
    blend_strength,
    one_hot_styles,
)


def _randomize_cin(net: StyleNet, seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in net.cin_modules().values():
            m.gamma.copy_(1 + 0.5 * torch.randn(m.gamma.shape, generator=g))
            m.beta.copy_(0.5 * torch.randn(m.beta.shape, generator=g))


def test_cin_matches_formula_by_hand() -> None:
    torch.manual_seed(0)
    cin = ConditionalInstanceNorm2d(num_styles=3, channels=4)
    with torch.no_grad():
        cin.gamma.copy_(torch.randn(3, 4))
        cin.beta.copy_(torch.randn(3, 4))
    x = torch.randn(2, 4, 5, 7) * 3 + 1
    w = torch.tensor([[0.0, 1.0, 0.0], [0.25, 0.25, 0.5]])
    got = cin(x, w)
    for b in range(2):
        gamma = sum(w[b, s] * cin.gamma[s] for s in range(3))
        beta = sum(w[b, s] * cin.beta[s] for s in range(3))
        for c in range(4):
            v = x[b, c]
            mu = v.mean()
            sigma = ((v - mu) ** 2).mean().add(cin.eps).sqrt()  # biased variance
            want = gamma[c] * (v - mu) / sigma + beta[c]
            torch.testing.assert_close(got[b, c], want, rtol=1e-5, atol=1e-5)


def test_mixing_endpoints_equal_single_styles() -> None:
    torch.manual_seed(1)
    net = StyleNet(num_styles=2, channels=(4, 8, 8), num_res_blocks=1, outer_kernel=3).eval()
    _randomize_cin(net)
    x = torch.rand(1, 3, 21, 30)
    with torch.no_grad():
        s0 = net(x, one_hot_styles(0, 2))
        s1 = net(x, one_hot_styles(1, 2))
        m0 = net(x, torch.tensor([[1.0, 0.0]]))
        m1 = net(x, torch.tensor([[0.0, 1.0]]))
        half = net(x, torch.tensor([[0.5, 0.5]]))
    torch.testing.assert_close(m0, s0, rtol=0, atol=0)
    torch.testing.assert_close(m1, s1, rtol=0, atol=0)
    assert (s0 - s1).abs().max() > 1e-3  # the two styles differ ...
    assert (half - s0).abs().max() > 1e-4 and (half - s1).abs().max() > 1e-4  # mix is neither


def test_output_shape_range_odd_sizes_and_batch_styles() -> None:
    net = StyleNet(num_styles=3, channels=(4, 8, 8), num_res_blocks=2, outer_kernel=5).eval()
    _randomize_cin(net)
    x = torch.rand(2, 3, 37, 53)
    with torch.no_grad():
        y = net(x, one_hot_styles([0, 2], 3))
        y0 = net(x[:1], one_hot_styles(0, 3))
    assert y.shape == x.shape
    assert float(y.min()) >= 0.0 and float(y.max()) <= 1.0
    torch.testing.assert_close(y[:1], y0, rtol=1e-5, atol=1e-6)  # per-sample styles
    with pytest.raises(ValueError):
        net(x, one_hot_styles(0, 2))


def test_cin_modules_are_named_and_complete() -> None:
    net = StyleNet(num_styles=2, channels=(4, 8, 8), num_res_blocks=2)
    cins = net.cin_modules()
    # conv_in, down1, down2, 2 per residual block, up1, up2, conv_out
    assert len(cins) == 3 + 2 * 2 + 3
    assert "conv_in.norm" in cins and "res.1.b.norm" in cins and "conv_out.norm" in cins
    assert all(m.gamma.shape == (2, m.channels) for m in cins.values())


def test_blend_strength_endpoints() -> None:
    a, b = torch.rand(1, 3, 4, 4), torch.rand(1, 3, 4, 4)
    assert torch.equal(blend_strength(a, b, 1.0), a)
    torch.testing.assert_close(blend_strength(a, b, 0.0), b)
    torch.testing.assert_close(blend_strength(a, b, 0.25), 0.25 * a + 0.75 * b)
    with pytest.raises(ValueError):
        blend_strength(a, b, 1.5)


def test_model_file_roundtrip_weights_only(tmp_path) -> None:
    net = StyleNet(num_styles=2, channels=(4, 8, 8), num_res_blocks=1).eval()
    _randomize_cin(net)
    path = tmp_path / "m.pt"
    sha = save_model(path, net, style_names=["a", "b"], info={"steps": 3}, dtype=torch.float32)
    loaded = load_model(path, expected_sha256=sha)
    assert loaded.style_names == ("a", "b") and loaded.info["steps"] == 3
    x = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        want = net(x, one_hot_styles(1, 2))
        torch.testing.assert_close(loaded.net(x, one_hot_styles(1, 2)), want)
    from vidstyle.errors import StyleError, WeightsError

    with pytest.raises(WeightsError):
        load_model(path, expected_sha256="0" * 64)
    with pytest.raises(StyleError):
        loaded.style_index("c")


@pytest.mark.parametrize("factor", [2, 4])
def test_space_to_depth_network_has_no_full_resolution_layer(factor: int, tmp_path) -> None:
    from vidstyle.fast.inference import InferenceNet

    net = StyleNet(num_styles=2, channels=(4, 8, 8), num_res_blocks=1, outer_kernel=3,
                   space_to_depth=factor).eval()
    _randomize_cin(net)
    sizes: list[tuple[int, ...]] = []

    def record(module, args, out) -> None:  # noqa: ANN001
        sizes.append(tuple(out.shape[-2:]))

    for m in net.modules():
        if isinstance(m, torch.nn.Conv2d):
            m.register_forward_hook(record)
    x = torch.rand(1, 3, 45, 67)  # sides not multiples of the factor
    w = one_hot_styles(1, 2)
    with torch.no_grad():
        y = net(x, w)
    assert y.shape == x.shape and float(y.min()) >= 0.0 and float(y.max()) <= 1.0
    assert max(sizes) == (-(-45 // factor), -(-67 // factor))  # no conv at 45 x 67
    # the deployed copy computes the same, with its hooks at 1/(4 f) of the image
    seen: list[tuple[int, ...]] = []
    inet = InferenceNet(net, channels_last=True)
    with torch.no_grad():
        z = inet(x, w, hook=lambda p, h: seen.append(tuple(h.shape[-2:])) or h)
    torch.testing.assert_close(z, y, rtol=0, atol=1e-5)
    assert inet.alignment == 4 * factor and seen[0] == sizes[2]
    # the model file keeps the factor; files without the key load as plain networks
    path = tmp_path / "s2d.pt"
    save_model(path, net, style_names=["a", "b"], dtype=torch.float32)
    loaded = load_model(path).net
    assert loaded.space_to_depth == factor
    with torch.no_grad():
        torch.testing.assert_close(loaded(x, w), y)
    assert "space_to_depth" not in StyleNet(num_styles=1).arch()
    with pytest.raises(ValueError, match="space_to_depth"):
        StyleNet(num_styles=1, space_to_depth=3)
