"""ONNX Runtime runtimes (optional onnxruntime): equivalence with eager, the feature hook
between the split graphs, the fallback without the package, and how "auto" chooses."""

from __future__ import annotations

import sys

import pytest
import torch

from vidstyle.fast import ort, runtimes
from vidstyle.fast.inference import InferenceNet
from vidstyle.fast.net import StyleNet
from vidstyle.fast.runtimes import (
    Runtime,
    TorchRuntime,
    auto_candidates,
    build_runtime,
    clear_runtime_cache,
    resolve_runtime,
    select_runtime,
)

#: ``ort`` (float32) against eager float32: max abs difference, RGB in [0, 1].
ORT_TOLERANCE = 1e-4
#: ``ort-int8`` against eager float32 on a random-weight net: max abs difference.
INT8_TOLERANCE = 0.15


def _net(seed: int = 0, space_to_depth: int = 1) -> StyleNet:
    torch.manual_seed(seed)
    net = StyleNet(num_styles=3, channels=(4, 8, 16), num_res_blocks=2,
                   space_to_depth=space_to_depth, outer_kernel=9 if space_to_depth == 1 else 5)
    with torch.no_grad():
        for m in net.cin_modules().values():
            m.gamma.copy_(1.0 + 0.5 * torch.randn_like(m.gamma))
            m.beta.copy_(0.3 * torch.randn_like(m.beta))
    return net.eval()


def _halving_hook(seen: list[tuple[str, tuple[int, ...], float]]):  # noqa: ANN202
    def hook(point: str, h: torch.Tensor) -> torch.Tensor:
        seen.append((point, tuple(h.shape), float(h.float().abs().mean())))
        return h * 0.5 if point == "pre_res" else h + 0.25
    return hook


@pytest.mark.parametrize(("size", "space_to_depth"), [((40, 56), 1), ((37, 53), 1),
                                                      ((37, 53), 2)])
def test_ort_matches_eager_with_and_without_hooks(size: tuple[int, int],
                                                  space_to_depth: int) -> None:
    pytest.importorskip("onnxruntime")
    net = _net(1, space_to_depth)
    x = torch.rand(2, 3, *size)
    w = torch.tensor([[1.0, 0.0, 0.0], [0.2, 0.5, 0.3]])
    eager = InferenceNet(net)
    rt = build_runtime("ort", net)
    assert rt.name == "ort" and rt.supports_hooks and not rt.supports_style_maps
    with torch.inference_mode():
        ref = eager(x, w)
    out = rt(x, w)
    assert out.dtype == torch.float32 and out.shape == ref.shape
    assert (out - ref).abs().max() < ORT_TOLERANCE
    # the hook sees the same features at the same points, and its changes take effect
    seen_e: list[tuple[str, tuple[int, ...], float]] = []
    seen_o: list[tuple[str, tuple[int, ...], float]] = []
    with torch.inference_mode():
        ref_h = eager(x[:1], w[1:], _halving_hook(seen_e))
    out_h = rt(x[:1], w[1:], _halving_hook(seen_o))
    assert [s[:2] for s in seen_o] == [s[:2] for s in seen_e]
    assert [s[0] for s in seen_o] == ["pre_res", "post_res"]
    for (_, _, a), (_, _, b) in zip(seen_e, seen_o, strict=True):
        assert abs(a - b) < 1e-4
    assert (out_h - ref_h).abs().max() < ORT_TOLERANCE
    assert (out_h - ref[1:]).abs().max() > 10 * ORT_TOLERANCE  # the hook changed it


def test_ort_int8_stays_near_fp32() -> None:
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    net = _net(2)
    x = torch.rand(1, 3, 48, 64)
    w = torch.tensor([[0.0, 1.0, 0.0]])
    with torch.inference_mode():
        ref = InferenceNet(net)(x, w)
    out = build_runtime("ort-int8", net)(x, w)
    err = (out - ref).abs()
    assert 0.0 < float(err.max()) < INT8_TOLERANCE  # quantized (not identical), yet close


def test_without_onnxruntime_auto_and_ort_fall_back_to_torch(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import raises ImportError
    monkeypatch.setattr(runtimes, "cpu_flags", lambda: frozenset({"avx512f", "avx512_vnni"}))
    assert not ort.available()
    assert auto_candidates("cpu") == ("eager",)
    assert resolve_runtime("auto", "cpu") == "eager"
    net = _net(3)
    with pytest.raises(ImportError):
        build_runtime("ort", net)
    clear_runtime_cache()
    for requested in ("ort", "ort-int8", "auto"):
        choice, rt = select_runtime(net, requested, repeats=1)
        assert choice.name == rt.name == "eager", requested
        if requested != "auto":
            assert "onnxruntime" in choice.failed[requested], requested
    clear_runtime_cache()


class _Fake(TorchRuntime):
    """An fp32 torch runtime under another name (stands for "ort" in timing tests)."""


_REAL_TIME_CALL = runtimes._time_call
_REAL_CPU_FLAGS = runtimes.cpu_flags


def _timed(times: dict[str, float]):  # noqa: ANN202
    real = _REAL_TIME_CALL

    def timed(rt: Runtime, x: torch.Tensor, w: torch.Tensor, repeats: int):  # noqa: ANN202
        _, out = real(rt, x, w, 0)
        return times[rt.name], out

    return timed


def _builder(built: list[str]):  # noqa: ANN202
    def builder(name: str, n: StyleNet) -> Runtime:
        built.append(name)
        if name == "ort":
            return _Fake(name="ort", module=InferenceNet(n))
        return build_runtime(name, n)
    return builder


def test_auto_times_fp32_runtimes_only_where_the_cpu_has_no_bf16(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(ort, "available", lambda: True)
    net = _net(4)
    # a float32-only CPU: eager and ort are timed; ort wins only by the margin
    monkeypatch.setattr(runtimes, "cpu_flags", lambda: frozenset({"avx512f", "avx512_vnni"}))
    assert resolve_runtime("auto", "cpu") == "auto:eager,ort"
    for ort_ms, want in ((50.0, "ort"), (95.0, "eager"), (200.0, "eager")):
        monkeypatch.setattr(runtimes, "_time_call", _timed({"eager": 100.0, "ort": ort_ms}))
        clear_runtime_cache()
        built: list[str] = []
        choice, rt = select_runtime(net, "auto", builder=_builder(built))
        assert choice.name == rt.name == want, ort_ms
        assert built == ["eager", "ort"] and choice.ms == {"eager": 100.0, "ort": ort_ms}
        assert choice.target == "auto:eager,ort"
    # a CPU with native bf16: the flags decide, ort is never built, timing never decides
    monkeypatch.setattr(runtimes, "cpu_flags", lambda: frozenset({"avx512_bf16"}))
    monkeypatch.setattr(runtimes, "_time_call", _timed({"eager": 1.0, "ort": 1.0,
                                                        "bf16": 500.0}))
    clear_runtime_cache()
    built = []
    choice, _ = select_runtime(net, "auto", builder=_builder(built))
    assert choice.name == "bf16" and built == ["eager", "bf16"], choice.failed
    # hiding the bf16 flag (how the benchmark measures a float32-only CPU) makes it timed
    monkeypatch.setattr(runtimes, "cpu_flags", _REAL_CPU_FLAGS.__wrapped__)
    monkeypatch.setattr(runtimes.torch.cpu, "get_capabilities", lambda: {"avx512_bf16": True})
    monkeypatch.setenv(runtimes.HIDE_FLAGS_ENV, "avx512_bf16, amx_bf16")
    assert not runtimes.cpu_flags() & runtimes.BF16_CPU_FLAGS
    assert auto_candidates("cpu") == ("eager", "ort")
    clear_runtime_cache()


def test_auto_compares_best_calls_and_gives_cheap_networks_more_rounds(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A busy machine only adds time: one slow call must not make a faster runtime lose
    (the median of three would); and short calls get more rounds, up to the cap."""
    monkeypatch.setattr(ort, "available", lambda: True)
    monkeypatch.setattr(runtimes, "cpu_flags", lambda: frozenset({"avx512f"}))
    calls: dict[str, int] = {}

    def timed(seqs: dict[str, list[float]]):  # noqa: ANN202
        def fn(rt: Runtime, x: torch.Tensor, w: torch.Tensor, repeats: int):  # noqa: ANN202
            _, out = _REAL_TIME_CALL(rt, x, w, 0)
            i = calls.get(rt.name, 0)
            calls[rt.name] = i + 1
            seq = seqs[rt.name]
            return seq[min(i, len(seq) - 1)], out
        return fn

    # ort: two calls disturbed by the load, then its real 50 ms; eager a steady 100 ms
    monkeypatch.setattr(runtimes, "_time_call",
                        timed({"eager": [100.0], "ort": [300.0, 300.0, 50.0]}))
    clear_runtime_cache()
    choice, _ = select_runtime(_net(4), "auto", builder=_builder([]))
    assert choice.name == "ort" and choice.ms == {"eager": 100.0, "ort": 50.0}
    # the first call (with the error check) is round 1; after 3 rounds eager has 300 ms
    # of samples, under AUTO_BUDGET_MS: a 4th round
    assert calls == {"eager": 4, "ort": 4}
    # 10 ms calls: rounds go on until each has AUTO_BUDGET_MS of samples, at most the cap
    calls.clear()
    monkeypatch.setattr(runtimes, "_time_call", timed({"eager": [10.0], "ort": [10.0]}))
    clear_runtime_cache()
    choice, _ = select_runtime(_net(4), "auto", builder=_builder([]))
    assert choice.name == "eager"  # equal: eager stays
    assert calls == {"eager": runtimes.AUTO_MAX_ROUNDS, "ort": runtimes.AUTO_MAX_ROUNDS}
    clear_runtime_cache()


@pytest.mark.parametrize("size", [(40, 56), (37, 53), (9, 5)])
def test_phase_form_output_conv_equals_the_plain_conv(
    size: tuple[int, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The thin kxk output conv as a stride-4 phase conv + pixel shuffle: the same
    function (float32 and the bf16 channels-last module), odd and tiny sizes too."""
    from vidstyle.fast import inference

    net = _net(5)
    x = torch.rand(1, 3, *size)
    w = torch.tensor([[0.3, 0.3, 0.4]])
    with torch.inference_mode():
        ref = net(x, w)
        for dtype, tol in ((torch.float32, 1e-5), (torch.bfloat16, 0.05)):
            fast = InferenceNet(net, dtype=dtype, channels_last=dtype == torch.bfloat16)
            assert list(fast.phase) == [str(fast.num_layers - 1)]
            assert (fast(x, w) - ref).abs().max() < tol, dtype
    monkeypatch.setattr(inference, "PHASE_FACTOR", 0)
    assert len(InferenceNet(net).phase) == 0
