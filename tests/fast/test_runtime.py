"""Fast-method inference: style vectors, strength, batching, runtimes, tiling, streaming."""

from __future__ import annotations

import dataclasses
import itertools
import time
from pathlib import Path

import av
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from vidstyle.config import EncodeConfig, FastConfig, RunConfig
from vidstyle.engine.stream import stream_frames, stylize_sequence
from vidstyle.errors import StyleError, UsageError
from vidstyle.fast import ort, runtimes, tiling
from vidstyle.fast.inference import InferenceNet, _StyleMap
from vidstyle.fast.model_io import save_model
from vidstyle.fast.net import StyleNet
from vidstyle.fast.runtimes import (
    Runtime,
    TorchRuntime,
    auto_runtime,
    build_runtime,
    clear_runtime_cache,
    resolve_runtime,
    select_runtime,
)
from vidstyle.fast.stabilize import default_flow
from vidstyle.fast.stylizer import make_fast_stylizer, style_vector
from vidstyle.media import iter_frames, probe
from vidstyle.tensors import to_tensor

STYLES = ("starry", "wave", "udnie")


def _random_net(seed: int = 0, channels: tuple[int, int, int] = (8, 16, 32)) -> StyleNet:
    torch.manual_seed(seed)
    net = StyleNet(num_styles=len(STYLES), channels=channels, num_res_blocks=2)
    with torch.no_grad():  # distinct, non-trivial style rows
        for m in net.cin_modules().values():
            m.gamma.copy_(1.0 + 0.5 * torch.randn_like(m.gamma))
            m.beta.copy_(0.3 * torch.randn_like(m.beta))
    return net.eval()


@pytest.fixture(scope="module")
def model_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("model") / "tiny.pt"
    save_model(path, _random_net(), style_names=STYLES, dtype=torch.float32)
    return path


def _config(model_file: Path, **fast: object) -> RunConfig:
    f = FastConfig(model=str(model_file), runtime="eager", **fast)  # type: ignore[arg-type]
    return RunConfig(style="starry", method="fast", fast=f)


def _photo(data_dir: Path, name: str = "chicago.jpg", longest: int = 96) -> np.ndarray:
    with Image.open(data_dir / "content" / name) as im:
        im = im.convert("RGB")
        s = longest / max(im.size)
        return np.asarray(im.resize((round(im.size[0] * s), round(im.size[1] * s))))


def test_style_vector_parses_mixes_and_rejects_unknown_styles() -> None:
    assert style_vector("wave", STYLES).tolist() == [0.0, 1.0, 0.0]
    v = style_vector("starry:3,udnie:1", STYLES)
    assert torch.allclose(v, torch.tensor([0.75, 0.0, 0.25]))
    with pytest.raises(StyleError, match="starry, wave, udnie"):
        style_vector("scream", STYLES)
    for bad in ("starry:x", "starry:-1", "starry:0", ""):
        with pytest.raises(StyleError):
            style_vector(bad, STYLES)


def test_mix_endpoints_equal_single_styles(model_file: Path, data_dir: Path) -> None:
    st = make_fast_stylizer(config=_config(model_file), device="cpu")
    x = to_tensor(_photo(data_dir))
    vecs = torch.stack([st.style_vector(s) for s in
                        ("starry", "starry:1.0", "starry:1,wave:0", "wave", "starry:0.5,wave:0.5")])
    out = st.stylize_many(x, vecs)
    assert torch.equal(out[0], out[1]) and torch.equal(out[0], out[2])
    # a 50/50 mix lies strictly between the two styles, not on either
    d_mix_a = float((out[4] - out[0]).abs().mean())
    d_mix_b = float((out[4] - out[3]).abs().mean())
    d_ab = float((out[3] - out[0]).abs().mean())
    assert d_ab > 0.02 and 0.05 * d_ab < d_mix_a < d_ab and 0.05 * d_ab < d_mix_b < d_ab


def test_strength_zero_returns_the_input(model_file: Path, data_dir: Path) -> None:
    rgb = _photo(data_dir)
    st0 = make_fast_stylizer(config=_config(model_file, strength=0.0), device="cpu")
    assert np.array_equal(st0.stylize_rgb(rgb), rgb)
    st1 = make_fast_stylizer(config=_config(model_file, strength=1.0), device="cpu")
    sth = make_fast_stylizer(config=_config(model_file, strength=0.5), device="cpu")
    full = st1.stylize_rgb(rgb).astype(float)
    half = sth.stylize_rgb(rgb).astype(float)
    assert np.abs(full - rgb).mean() > 5
    assert np.abs(half - (full + rgb) / 2).max() <= 1.0  # a pixel blend (rounding only)
    assert st0.fingerprint() != st1.fingerprint()


def test_stylize_many_equals_separate_calls(model_file: Path, data_dir: Path) -> None:
    st = make_fast_stylizer(config=_config(model_file), device="cpu")
    x = to_tensor(_photo(data_dir, "golden_gate.jpg", 80))
    vecs = torch.stack([st.style_vector(s) for s in ("starry", "wave", "udnie:0.3,wave:0.7")])
    batch = st.stylize_many(x, vecs)
    assert batch.shape == (3, 3, *x.shape[-2:])
    for k in range(3):
        single = st.stylize_many(x, vecs[k : k + 1])
        assert torch.allclose(batch[k : k + 1], single, atol=1e-5)
    assert float((batch[0] - batch[1]).abs().mean()) > 0.02


def test_inference_net_matches_stylenet_in_fp32_and_bf16() -> None:
    net = _random_net(1)
    x = torch.rand(2, 3, 45, 61, generator=torch.Generator().manual_seed(0))
    w = torch.tensor([[1.0, 0, 0], [0.2, 0.3, 0.5]])
    with torch.inference_mode():
        ref = net(x, w)
        fp32 = InferenceNet(net)(x, w)
        bf16 = InferenceNet(net, dtype=torch.bfloat16, channels_last=True)(x, w)
    assert float((fp32 - ref).abs().max()) < 1e-5
    assert float((bf16 - ref).abs().max()) < 0.1
    assert float((bf16 - ref).abs().mean()) < 0.01


def test_style_map_uses_only_the_styles_it_weights() -> None:
    """A style map that weights a few of the model's styles gives what the per-pixel
    formula over all styles gives (styles without weight are skipped, each layer size is
    pooled once), and a uniform map gives the plain pass of its row."""
    net = _random_net(1)
    x = torch.rand(1, 3, 45, 61, generator=torch.Generator().manual_seed(0))
    left = (torch.arange(61) < 30).float().expand(45, 61)
    m = torch.zeros(1, 3, 45, 61)
    m[0, 0], m[0, 2] = left, 1.0 - left  # style 1 has no weight anywhere
    inet = InferenceNet(net)
    with torch.inference_mode():
        got = inet(x, m)
        uniform = inet(x, torch.tensor([0.2, 0.0, 0.8]).view(1, 3, 1, 1).expand(1, 3, 45, 61))
        rows = inet(x, torch.tensor([[0.2, 0.0, 0.8]]))
        ref = _map_by_formula(inet, x, m)
    assert float((got - ref).abs().max()) < 1e-5
    assert float((uniform - rows).abs().max()) < 1e-5


def _map_by_formula(inet: InferenceNet, x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """The style-map pass with (gamma, beta) maps over all styles (``affine_map``)."""

    def norm(i: int, y: torch.Tensor, gb, stats) -> torch.Tensor:
        s = inet.specs[i]
        g, b = inet.affine_map(i, m, y.shape[-2:])
        z = torch.addcmul(b, F.batch_norm(y, None, None, None, None, True, 0.0, s.eps), g)
        return F.relu(z) if s.relu else z

    orig = inet._norm
    inet._norm = norm  # type: ignore[method-assign]
    try:
        return inet(x, m)
    finally:
        inet._norm = orig  # type: ignore[method-assign]


class _Broken(Runtime):
    name = "broken"

    def __call__(self, x: torch.Tensor, style_weights: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("no such kernel")


@pytest.fixture
def bf16_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """A CPU with native bfloat16 (whatever this machine has)."""
    monkeypatch.setattr(runtimes, "cpu_flags", lambda: frozenset({"avx2", "avx512_bf16"}))


def test_runtime_choice_falls_back_to_eager_when_a_runtime_fails(bf16_cpu: None) -> None:
    net = _random_net(2)

    def builder(name: str, n: StyleNet) -> Runtime:
        if name == "bf16":
            raise ImportError("bf16 unavailable")
        if name == "openvino":
            return _Broken()
        if name == "compile":  # "works" but computes something else
            return TorchRuntime(name="compile", module=InferenceNet(_random_net(9)))
        return build_runtime(name, n)

    clear_runtime_cache()
    for requested in ("auto", "bf16", "openvino", "compile"):
        choice, rt = select_runtime(net, requested, builder=builder, repeats=1)
        assert choice.name == "eager" and rt.name == "eager", requested
        assert choice.target in choice.failed, requested
    assert choice.target == "compile" and "differs from eager" in choice.failed["compile"]
    # the decision is cached per process: a second call does not rebuild anything
    calls = []
    choice2, _ = select_runtime(net, "auto",
                                builder=lambda n, m: calls.append(n) or build_runtime(n, m))
    assert calls == [] and choice2.name == "eager"
    clear_runtime_cache()


def test_auto_runtime_is_a_function_of_the_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    """"auto" follows the CPU's native-bf16 flags (CUDA: fp16); never compile/openvino.
    (Without onnxruntime: with it a float32-only CPU times eager and ort, test_ort.py.)"""
    monkeypatch.setattr(ort, "available", lambda: False)
    for flags, want in (({"avx2", "avx512f"}, "eager"), ({"avx512_bf16"}, "bf16"),
                        ({"amx_bf16", "amx_tile"}, "bf16"), (set(), "eager")):
        monkeypatch.setattr(runtimes, "cpu_flags", lambda f=frozenset(flags): f)
        assert [auto_runtime("cpu") for _ in range(3)] == [want] * 3, flags
        assert resolve_runtime("auto", torch.device("cpu")) == want
        assert auto_runtime("cuda") == "fp16"
    for name in ("eager", "bf16", "compile", "openvino"):  # explicit names stay themselves
        assert resolve_runtime(name, "cpu") == name
    with pytest.raises(UsageError, match="--runtime"):
        resolve_runtime("fastest", "cpu")
    monkeypatch.undo()
    monkeypatch.setattr(ort, "available", lambda: False)
    # the real flag source: /proc/cpuinfo and torch's report, the same on every call
    assert runtimes.cpu_flags() == runtimes.cpu_flags()
    assert auto_runtime("cpu") in ("eager", "bf16")


def test_auto_runtime_checks_the_candidate_and_timing_never_decides(
    bf16_cpu: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = runtimes._time_call

    def timed(rt: Runtime, x: torch.Tensor, w: torch.Tensor, repeats: int):  # noqa: ANN202
        _, out = real(rt, x, w, 0)
        return (1.0 if rt.name == "eager" else 50.0), out  # eager looks faster

    monkeypatch.setattr(runtimes, "_time_call", timed)
    clear_runtime_cache()
    choice, rt = select_runtime(_random_net(3), "auto", repeats=1)
    assert choice.name == rt.name == choice.target == "bf16"
    assert choice.ms["eager"] < choice.ms["bf16"]  # measured and reported only
    assert choice.max_err["eager"] == 0.0 and 0.0 < choice.max_err["bf16"] < 0.15
    assert choice.size == runtimes.MEASURE_SIZE
    clear_runtime_cache()


def test_auto_gives_identical_outputs_run_after_run(
    model_file: Path, data_dir: Path, bf16_cpu: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two runs with --runtime auto, the machine's load favouring a different runtime each
    time: the same runtime, fingerprint and output bytes."""
    real = runtimes._time_call
    fastest = ["bf16"]

    def timed(rt: Runtime, x: torch.Tensor, w: torch.Tensor, repeats: int):  # noqa: ANN202
        _, out = real(rt, x, w, 0)
        return (1.0 if rt.name == fastest[0] else 50.0), out

    monkeypatch.setattr(runtimes, "_time_call", timed)
    cfg = RunConfig(style="starry", method="fast",
                    fast=FastConfig(model=str(model_file), runtime="auto"))
    photo = _photo(data_dir)
    outs, names, fps = [], [], []
    for fastest[0] in ("eager", "bf16", "eager"):
        clear_runtime_cache()
        st = make_fast_stylizer(config=cfg, device="cpu")
        outs.append(st.stylize_rgb(photo))
        names.append(st.runtime().name)
        fps.append(st.fingerprint())
    clear_runtime_cache()
    assert names == ["bf16"] * 3 and len(set(fps)) == 1
    assert all(np.array_equal(outs[0], o) for o in outs[1:])


def test_fast_fingerprint_names_the_runtime_that_runs(
    model_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fingerprint(runtime: str) -> str:
        clear_runtime_cache()
        cfg = RunConfig(style="starry", method="fast",
                        fast=FastConfig(model=str(model_file), runtime=runtime))
        return make_fast_stylizer(config=cfg, device="cpu").fingerprint()

    monkeypatch.setattr(runtimes, "cpu_flags", lambda: frozenset())
    monkeypatch.setattr(ort, "available", lambda: False)  # else "auto" times eager and ort
    assert fingerprint("auto") == fingerprint("eager")
    monkeypatch.setattr(runtimes, "cpu_flags", lambda: frozenset({"amx_bf16"}))
    assert fingerprint("auto") == fingerprint("bf16") != fingerprint("eager")
    clear_runtime_cache()


def _grad_energy_cols(img: torch.Tensor) -> torch.Tensor:
    """Mean |horizontal difference| per column boundary: (W-1,)."""
    return (img[..., 1:] - img[..., :-1]).abs().mean(dim=(0, 1, 2))


def test_tiled_output_matches_untiled_without_seams(data_dir: Path) -> None:
    net = InferenceNet(_random_net(4, channels=(4, 8, 16)))
    x = to_tensor(_photo(data_dir, "amber.jpg", 1024))
    w = torch.tensor([[0.0, 1.0, 0.0]])
    tile = 256
    with torch.inference_mode():
        ref = net(x, w)
        exact = tiling.tiled_forward(net, x, w, tile=tile)  # statistics of the whole frame
        shrunk = tiling.tiled_forward(net, x, w, tile=tile, stats_pixels=x[0, 0].numel() // 4)
    assert float((exact - ref).abs().max()) < 1e-4
    d = (shrunk - ref).abs()
    # half-resolution statistics shift colours a little, the same in every tile
    assert float(d.mean()) < 0.06 and float(d.max()) < 0.5
    # no seam: gradient energy across the tile borders is like that of other columns
    grid = tiling.tile_grid(*x.shape[-2:], tile)
    borders = sorted({c[2] for c, _ in grid if c[2] > 0})
    assert borders
    for img in (exact, shrunk):
        g = _grad_energy_cols(img)
        ratio = float(g[[b - 1 for b in borders]].mean() / g.median())
        assert ratio < 1.5, ratio
    # tiles of a naive (per-tile statistics) run do show seams: the check can fail
    naive = torch.zeros_like(ref)
    with torch.inference_mode():
        for core, _ in grid:
            y0, y1, x0, x1 = core
            naive[:, :, y0:y1, x0:x1] = net(x[:, :, y0:y1, x0:x1], w)
    g = _grad_energy_cols(naive)
    assert float(g[[b - 1 for b in borders]].mean() / g.median()) > 1.5


def test_tiles_of_a_space_to_depth_network_match_untiled(data_dir: Path) -> None:
    """Tiles aligned to the coarser grid (and margins scaled) keep a space-to-depth
    network's tiled output equal to its untiled one."""
    torch.manual_seed(0)
    sn = StyleNet(num_styles=3, channels=(4, 8, 16), num_res_blocks=1, outer_kernel=5,
                  space_to_depth=2)
    net = InferenceNet(sn.eval())
    assert net.alignment == 8
    x = to_tensor(_photo(data_dir, "amber.jpg", 640))
    w = torch.tensor([[0.0, 1.0, 0.0]])
    with torch.inference_mode():
        ref = net(x, w)
        tiled = tiling.tiled_forward(net, x, w, tile=200)
    assert len(tiling.tile_grid(*x.shape[-2:], 200, align=8)) > 1
    assert float((tiled - ref).abs().max()) < 1e-4


def test_tile_size_policy() -> None:
    assert tiling.tile_size_for(360, 640, 0) == 0
    assert tiling.tile_size_for(4320, 7680, 0) == tiling.AUTO_TILE
    assert tiling.tile_size_for(360, 640, 512) == 512
    assert tiling.tile_size_for(360, 500, 512) == 0
    for core, ext in tiling.tile_grid(1081, 1919, 500):
        assert core[0] % 4 == 0 and core[2] % 4 == 0 and ext[0] % 4 == 0 and ext[2] % 4 == 0


def _pts(path: Path, n: int) -> list[int]:
    with av.open(str(path)) as c:
        return sorted(f.pts for f in c.decode(video=0))[:n]


def test_stream_frames_keeps_frame_count_pts_and_audio(
    model_file: Path, data_dir: Path, tmp_path: Path
) -> None:
    src = data_dir / "video" / "bigbuckbunny.mp4"
    info = probe(src)
    out = tmp_path / "out.mp4"
    cfg = _config(model_file, size=128)
    st = make_fast_stylizer(config=cfg, device="cpu")
    events = []
    res = stream_frames(st, input_path=src, output_path=out, info=info,
                        encode=EncodeConfig(preset="ultrafast"), max_frames=10,
                        flow=default_flow(), masks=True, cache=None, progress=events.append)
    assert res.frames == 10 and events[-1].done == 10
    got = probe(out)
    assert got.frame_count == 10 and max(got.width, got.height) == 128
    assert got.audio_codec is not None
    src_pts = [f.pts * f.time_base for f in iter_frames(src)][:10]
    out_pts = [p * got.time_base for p in _pts(out, 10)]
    assert np.allclose([float(p - out_pts[0]) for p in out_pts],
                       [float(p - src_pts[0]) for p in src_pts], atol=1e-3)
    assert [p.name for p in tmp_path.iterdir()] == ["out.mp4"]


def test_stream_frames_interrupt_leaves_no_output(
    model_file: Path, data_dir: Path, tmp_path: Path
) -> None:
    src = data_dir / "video" / "bigbuckbunny.mp4"
    out = tmp_path / "out.mp4"
    st = make_fast_stylizer(config=_config(model_file, size=64), device="cpu")

    def progress(ev: object) -> None:
        if ev.done == 3:  # type: ignore[attr-defined]
            raise KeyboardInterrupt

    t0 = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        stream_frames(st, input_path=src, output_path=out, info=probe(src),
                      encode=EncodeConfig(preset="ultrafast"), max_frames=30,
                      flow=default_flow(), masks=True, cache=None, progress=progress)
    assert time.monotonic() - t0 < 20
    assert list(tmp_path.iterdir()) == []


def test_shipped_model_rejects_unknown_style() -> None:
    cfg = RunConfig(style="starry:0.5,nosuchstyle:0.5", method="fast")
    try:
        with pytest.raises(StyleError, match="udnie"):
            make_fast_stylizer(config=cfg, device="cpu")
    except Exception as e:  # noqa: BLE001
        if "model file not found" in str(e) or "no shipped model" in str(e):
            pytest.skip("shipped fast model not present")
        raise


@pytest.mark.slow
def test_full_hd_clip(model_file: Path, data_dir: Path, tmp_path: Path) -> None:
    """A 1920x1080 clip streams through (3 frames), tiled and untiled agree in size."""
    from vidstyle.media import MediaWriter

    src = data_dir / "video" / "bigbuckbunny.mp4"
    hd = tmp_path / "hd.mp4"
    with MediaWriter(hd, source=probe(src),
                     encode=EncodeConfig(preset="ultrafast", copy_audio=False)) as wr:
        for f in iter_frames(src):
            if f.index >= 3:
                break
            big = np.asarray(Image.fromarray(f.rgb).resize((1920, 1080), Image.BILINEAR))
            wr.write(dataclasses.replace(f, rgb=big))
    out = tmp_path / "out.mp4"
    for tile in (0, 768):
        st = make_fast_stylizer(config=_config(model_file, tile=tile), device="cpu")
        res = stream_frames(st, input_path=hd, output_path=out, info=probe(hd),
                            encode=EncodeConfig(preset="ultrafast"), max_frames=None,
                            flow=default_flow(), masks=True, cache=None,
                            progress=lambda ev: None)
        got = probe(out)
        assert res.frames == 3 and (got.width, got.height, got.frame_count) == (1920, 1080, 3)


# --------------------------------------------------------------------------- devices

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.fixture
def no_tf32():
    """Full fp32 convolutions on the GPU (TF32 would differ from the CPU by ~1e-3)."""
    old = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = old


def test_runtimes_take_and_return_cpu_tensors_and_fp16_is_cuda_only(
    bf16_cpu: None,
) -> None:
    net = _random_net(4)
    x = torch.rand(1, 3, 40, 56)
    w = torch.tensor([[1.0, 0.0, 0.0]])
    for name in ("eager", "bf16"):
        out = build_runtime(name, net)(x, w)
        assert out.device.type == "cpu" and out.dtype == torch.float32, name
    with pytest.raises(RuntimeError, match="CUDA"):
        build_runtime("fp16", net)

    def builder(name: str, n: StyleNet) -> Runtime:
        built.append(name)
        return build_runtime(name, n) if name != "openvino" else _Broken()

    built: list[str] = []
    clear_runtime_cache()
    select_runtime(net, "auto", repeats=1, builder=builder)
    assert built == ["eager", "bf16"]  # eager (the reference) and the CPU's choice
    clear_runtime_cache()


@needs_cuda
def test_cuda_runtimes_match_the_cpu(no_tf32: None) -> None:
    clear_runtime_cache()
    net = _random_net(5).cuda()
    x = torch.rand(1, 3, 64, 96)
    w = torch.tensor([[0.2, 0.5, 0.3]])
    ref = build_runtime("eager", _random_net(5))(x, w)
    for name in ("eager", "fp16", "bf16"):
        out = build_runtime(name, net)(x, w)
        assert out.device.type == "cpu"
        assert (out - ref).abs().max() < (1e-4 if name == "eager" else 0.05), name
    clear_runtime_cache()
    choice, _ = select_runtime(net, "auto", repeats=1)
    assert choice.target == choice.name == "fp16" and set(choice.ms) == {"eager", "fp16"}


@needs_cuda
def test_fast_video_on_cuda_matches_the_cpu(
    model_file: Path, data_dir: Path, no_tf32: None
) -> None:
    """The stabilized video path (feature hook on the GPU, flow and blends on the CPU)."""
    clip = data_dir / "video" / "vtest_000-010s.avi"
    frames = [to_tensor(f.rgb[::4, ::4].copy()) for f in itertools.islice(iter_frames(clip), 4)]
    outs = {}
    for dev in ("cpu", "cuda"):
        clear_runtime_cache()
        st = make_fast_stylizer(config=_config(model_file), device=dev)
        assert st.supports_hooks(tuple(frames[0].shape[-2:]))
        outs[dev], _ = stylize_sequence(st, frames, flow=default_flow())
    for a, b in zip(outs["cpu"], outs["cuda"], strict=True):
        assert b.device.type == "cpu" and (a - b).abs().max() < 2e-3
    clear_runtime_cache()


def test_cli_offers_every_runtime() -> None:
    from vidstyle.cli import cli
    from vidstyle.config import RUNTIMES

    opt = next(p for p in cli.commands["run"].params if p.name == "cfg_runtime")
    assert tuple(opt.type.choices) == RUNTIMES


def _people_map(h: int, w: int) -> torch.Tensor:
    """A (1, 3, h, w) style map: style 0 in the background, two feathered "people" (a
    box in style 2 and a disc half style 1, half style 2), as the per-person layout makes."""
    yy, xx = torch.meshgrid(torch.arange(h, dtype=torch.float32),
                            torch.arange(w, dtype=torch.float32), indexing="ij")
    box = ((xx - 12).abs().le(6) & (yy - 20).abs().le(14)).float()
    box = F.avg_pool2d(box[None, None], 5, stride=1, padding=2)[0, 0]  # feathered edge
    disc = (1.0 - ((xx - 47) ** 2 + (yy - 15) ** 2).sqrt().sub(7).clamp(0, 3) / 3) \
        * (((xx - 47) ** 2 + (yy - 15) ** 2) < 100).float()
    m = torch.zeros(1, 3, h, w)
    m[0, 2] = box + 0.5 * disc
    m[0, 1] = 0.5 * disc
    m[0, 0] = 1.0 - box - disc
    return m


def test_style_map_is_per_pixel_only_inside_the_people() -> None:
    """With people in a few places the per-pixel normalization runs only inside their
    rectangles and the per-channel fused one elsewhere: the output is the per-pixel
    formula's (fp32 to rounding, bf16 to bf16 precision), the rectangles cover every
    pixel whose weights differ from the background, and little else."""
    net = _random_net(1)
    x = torch.rand(1, 3, 45, 61, generator=torch.Generator().manual_seed(1))
    m = _people_map(45, 61)
    sm = _StyleMap.of(m)
    assert torch.equal(sm.base, torch.tensor([1.0, 0.0, 0.0]))
    for size in ((45, 61), (23, 31), (12, 16)):
        rects = sm.regions(size)
        assert rects is not None and 1 <= len(rects) <= 2
        inside = torch.zeros(size, dtype=torch.bool)
        for t, b, left, r in rects:
            inside[t:b, left:r] = True
        differs = (sm.at(size)[0] - sm.base.view(-1, 1, 1)).abs().amax(0) > 1e-6
        assert bool(differs.any()) and not bool((differs & ~inside).any())
        assert float(inside.float().mean()) < 0.6
    inet = InferenceNet(net)
    with torch.inference_mode():
        got = inet(x, m)
        ref = _map_by_formula(inet, x, m)
        plain = inet(x, torch.tensor([[1.0, 0.0, 0.0]]))
    assert float((got - ref).abs().max()) < 1e-5
    assert float((got - plain)[0, :, 10:30, 8:16].abs().mean()) > 0.01  # the box's style
    bnet = InferenceNet(net, dtype=torch.bfloat16, channels_last=True)
    with torch.inference_mode():
        bgot = bnet(x, m)
    assert float((bgot - ref).abs().mean()) < 0.01
    # a map of one style everywhere has no per-pixel rectangle at all
    assert _StyleMap.of(torch.tensor([0.2, 0.0, 0.8]).view(1, 3, 1, 1)
                        .expand(1, 3, 45, 61)).regions((12, 16)) == []
    # a mixed background (half style 0, half style 1) with a person in style 0: the base
    # is the background's mix, not the person's column, and the person gets a rectangle
    mixed = torch.zeros(1, 3, 45, 61)
    mixed[0, 0], mixed[0, 1] = 0.5, 0.5
    mixed[0, :, 10:20, 10:20] = torch.tensor([1.0, 0.0, 0.0]).view(3, 1, 1)
    sm = _StyleMap.of(mixed)
    assert torch.allclose(sm.base, torch.tensor([0.5, 0.5]))
    assert sm.regions((45, 61)) == [(10, 20, 10, 20)]
    with torch.inference_mode():
        assert float((inet(x, mixed) - _map_by_formula(inet, x, mixed)).abs().max()) < 1e-5
        # no weight anywhere: gamma = beta = 0 everywhere, as the formula gives
        zero = torch.zeros(1, 3, 45, 61)
        assert float((inet(x, zero) - _map_by_formula(inet, x, zero)).abs().max()) < 1e-6


def test_style_map_in_bf16_has_no_seam_at_the_rectangles() -> None:
    """Features whose channels have a mean far from zero against their spread (where
    y * G + B in bf16 would lose precision): the bf16 per-pixel normalization inside the
    people's rectangles stays as close to the float32 formula as the fused one outside."""
    net = _random_net(1)
    bnet = InferenceNet(net, dtype=torch.bfloat16, channels_last=True)
    g = torch.Generator().manual_seed(3)
    i = 4  # a residual layer: (1, C, h, w) features at a quarter of the frame
    c = bnet.gammas[i].shape[1]
    y = (20.0 + torch.randn(1, c, 23, 31, generator=g)).to(torch.bfloat16)
    y = y.contiguous(memory_format=torch.channels_last)
    m = _people_map(23, 31)
    sm = _StyleMap.of(m)
    with torch.inference_mode():
        got = bnet._norm_map(i, y, sm).float()
        gam, bet = bnet.gammas[i], bnet.betas[i]
        ref = torch.addcmul(torch.einsum("sc,bshw->bchw", bet, m),
                            F.batch_norm(y.float(), None, None, None, None, True, 0.0,
                                         bnet.specs[i].eps),
                            torch.einsum("sc,bshw->bchw", gam, m))
    mask = torch.zeros(23, 31, dtype=torch.bool)
    for t, b, left, r in sm.regions((23, 31)) or []:
        mask[t:b, left:r] = True
    assert bool(mask.any()) and not bool(mask.all())
    err = (got - ref).abs().amax(dim=1)[0]
    assert float(err[mask].max()) <= 1.5 * float(err[~mask].max()), (
        float(err[mask].max()), float(err[~mask].max()))
