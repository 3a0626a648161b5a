"""The per-layer benchmark times the layers the network really runs."""

from __future__ import annotations

import torch

from benchmarks.bench_layers import CANDIDATES, layer_names, per_layer, replay
from vidstyle.fast.inference import InferenceNet
from vidstyle.fast.net import StyleNet, one_hot_styles


def test_replay_reproduces_the_forward_pass_of_every_candidate() -> None:
    x = torch.rand(1, 3, 37, 50, generator=torch.Generator().manual_seed(0))
    for arch in (*CANDIDATES[:3], *(a for a in CANDIDATES if a.space_to_depth > 1)):
        torch.manual_seed(0)
        net = InferenceNet(
            StyleNet(
                num_styles=3,
                channels=arch.channels,
                num_res_blocks=arch.res_blocks,
                outer_kernel=arch.outer_kernel,
                space_to_depth=arch.space_to_depth,
            )
        )
        w = one_hot_styles(1, 3)
        inputs, convs, out = replay(net, x, net.affine(w))
        assert len(inputs) == len(convs) == net.num_layers == len(layer_names(net.num_res))
        with torch.inference_mode():
            assert torch.allclose(out, net(x, w), atol=1e-6), arch.name


def test_per_layer_counts_the_network_s_multiply_accumulates() -> None:
    torch.manual_seed(0)
    net = InferenceNet(
        StyleNet(num_styles=2, channels=(4, 8, 16), num_res_blocks=1, outer_kernel=3)
    )
    rows = per_layer(net, torch.rand(1, 3, 16, 24), rounds=1, reps=1)
    h, w = 16, 24
    expected = [
        h * w * 4 * 3 * 9,
        (h // 2) * (w // 2) * 8 * 4 * 9,
        (h // 4) * (w // 4) * 16 * 8 * 9,
        (h // 4) * (w // 4) * 16 * 16 * 9,
        (h // 4) * (w // 4) * 16 * 16 * 9,
        (h // 2) * (w // 2) * 8 * 16 * 9,
        h * w * 4 * 8 * 9,
        h * w * 3 * 4 * 9,
    ]
    assert [r["macs"] for r in rows] == expected
    assert all(r["conv_ms"] >= 0 and r["norm_ms"] >= 0 for r in rows)
