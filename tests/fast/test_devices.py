"""Device placement of the fast method, checked without a GPU.

Under PyTorch's FakeTensorMode tensors may claim to live on ``cuda:0`` without a GPU and
any op that mixes devices raises, so these tests catch a CPU tensor created inside the
network path (which would fail only on a real GPU). They check placement, not CUDA
kernels' dtype support (tests/fast/test_runtime.py has real-GPU tests, skipped here).
"""

from __future__ import annotations

import pytest
import torch

from vidstyle.config import FastConfig, RunConfig
from vidstyle.contracts import FrameContext
from vidstyle.fast import tiling
from vidstyle.fast.inference import InferenceNet
from vidstyle.fast.model_io import LoadedModel
from vidstyle.fast.net import StyleNet
from vidstyle.fast.runtimes import build_runtime
from vidstyle.fast.stabilize import FlowContext, Stabilizer
from vidstyle.fast.stylizer import FastStylizer

fake_tensor = pytest.importorskip("torch._subclasses.fake_tensor")


@pytest.fixture
def fake_cuda_net():
    with fake_tensor.FakeTensorMode(allow_non_fake_inputs=True):
        with torch.device("cuda"):
            net = StyleNet(num_styles=3, channels=(8, 16, 32), num_res_blocks=1)
        yield net.eval().requires_grad_(False)


def _ctx(h: int, w: int) -> FlowContext:
    return FlowContext(1, torch.rand(1, 2, h, w), torch.ones(1, 1, h, w), 0.9, False)


@pytest.mark.parametrize("size", [(64, 96), (65, 97)])  # sub-pixel and interpolate paths
@pytest.mark.parametrize("name", ["eager", "fp16", "bf16"])
def test_runtimes_and_feature_hook_keep_the_network_on_its_device(fake_cuda_net, name, size):
    rt = build_runtime(name, fake_cuda_net)
    x, sw = torch.rand(1, 3, *size), torch.tensor([[0.2, 0.5, 0.3]])
    out = rt(x, sw)
    assert out.device.type == "cpu" and out.dtype == torch.float32
    stab = Stabilizer(flow=None, stability=0.7, feature_blend=True)  # type: ignore[arg-type]
    rt(x, sw, stab.feature_hook(FlowContext(0, None, None, 1.0, False)))
    out = rt(x, sw, stab.feature_hook(_ctx(*size)))  # warps the previous features
    assert out.device.type == "cpu" and out.shape == (1, 3, *size)
    assert rt(x.expand(3, -1, -1, -1), torch.eye(3)).shape == (3, 3, *size)


def test_tiles_many_styles_and_video_frames_on_the_device(fake_cuda_net):
    model = LoadedModel(net=fake_cuda_net, style_names=("a", "b", "c"))

    def stylizer(runtime: str, tile: int) -> FastStylizer:
        cfg = RunConfig(style="a", method="fast",
                        fast=FastConfig(runtime=runtime, tile=tile, strength=0.8))
        st = FastStylizer(model=model, model_sha256="x", style_weights=torch.tensor(
            [1.0, 0, 0]), config=cfg, device=torch.device("cuda"))
        # set the runtime directly: select_runtime compares outputs' values, which fake
        # tensors do not have
        st._runtime = build_runtime(runtime, fake_cuda_net)
        return st

    big = torch.rand(1, 3, 200, 260)
    tiled = stylizer("eager", 64)
    assert tiled.stylize_tensor(big).device.type == "cpu"
    assert tiled.stylize_many(big, torch.eye(3)).shape == (3, 3, 200, 260)
    out = tiling.tiled_forward(InferenceNet(fake_cuda_net), big, torch.tensor([[1.0, 0, 0]]),
                               tile=64, refine=1)
    assert out.device.type == "cpu"
    st = stylizer("fp16", 0)
    x = torch.rand(1, 3, 64, 96)
    st.stabilizer = Stabilizer(flow=None, stability=0.7, feature_blend=True)
    st._first = False  # the feature blend is decided: on
    st.stylize(x, FrameContext(index=0, size=(64, 96), pair=None))
    assert st.stylize(x, FrameContext(index=1, size=(64, 96), pair=_ctx(64, 96))).device.type \
        == "cpu"


def test_the_check_catches_a_device_mix(fake_cuda_net):
    with pytest.raises(Exception, match="(?i)device"):
        InferenceNet(fake_cuda_net)(torch.rand(1, 3, 64, 96), torch.eye(3)[:1])


def test_inference_net_moves_with_to() -> None:
    """.to() converts every tensor the network uses, the style parameters included."""
    inet = InferenceNet(StyleNet(num_styles=3, channels=(8, 16, 32), num_res_blocks=1).eval())
    inet = inet.to(torch.float64)
    assert all(t.dtype == torch.float64 for t in [*inet.gammas, *inet.betas, *inet.weights])
