"""Temporal (Ruder et al. 2016) video stylization: consistency, cuts, resume, streaming.

A tiny random-weight VGG-like net stands in for VGG19 (the properties under test do not
depend on the loss network); clips are the first frames of real videos at 64-96 px.
"""

from __future__ import annotations

import dataclasses
import itertools
import weakref
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from vidstyle.config import OptimConfig, RunConfig, TemporalConfig
from vidstyle.contracts import frame_unit
from vidstyle.engine.clip import run_clip
from vidstyle.errors import UsageError
from vidstyle.evaluate import warp_error
from vidstyle.flow import flow_from_config, frame_pair, make_flow
from vidstyle.imageops import load_image
from vidstyle.media import iter_frames
from vidstyle.optim.video import TemporalOptimStylizer, blend, references
from vidstyle.vgg import VGGFeatures
from vidstyle.workdir import WorkDir, load_png

STYLE_LAYERS = ("relu1_1", "relu2_1", "relu3_1")
CONTENT_LAYERS = ("relu2_1",)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """The tiny net is ~50x slower with 2 intra-op threads on a busy 2-core machine."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="module")
def tiny_net() -> VGGFeatures:
    g = torch.Generator().manual_seed(0)
    feats = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
        nn.MaxPool2d(2), nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(),
    )
    for m in feats:
        if isinstance(m, nn.Conv2d):
            with torch.no_grad():
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) * 0.3)
                m.bias.zero_()
    return VGGFeatures(name="tiny", features=feats, preprocessing="torchvision")


def clip(path: Path, n: int, start: int = 0, step: int = 1):
    """A ``frames`` callable: ``n`` frames from ``start``, every ``step``-th (3: a stress
    clip with three times the motion), renumbered from 0."""

    def frames():
        picked = itertools.islice(iter_frames(path, start=start), 0, None, step)
        for k, f in enumerate(itertools.islice(picked, n)):
            yield dataclasses.replace(f, index=k)

    return frames


def make(net, data_dir: Path, *, mode: str, size: int = 96, iters: int = 20, passes: int = 1,
         long_term=(1, 2, 4), style: str = "starry_night.jpg", **temporal):
    cfg = RunConfig(
        optim=OptimConfig(size=size, iters=iters, multiscale=1),
        temporal=TemporalConfig(mode=mode, passes=passes, long_term=long_term, **temporal),
    )
    return TemporalOptimStylizer(
        config=cfg, device="cpu", net=net, style_path=str(data_dir / "styles" / style),
        style_image=load_image(data_dir / "styles" / style),
        style_layers=STYLE_LAYERS, content_layers=CONTENT_LAYERS,
    )


def run(stylizer, frames, root: Path, n: int, progress=None, name: str = "stylize"):
    work = WorkDir(root)
    stage = work.stage(name, stylizer.config.fingerprint() + stylizer.fingerprint())
    events = []

    def on(ev):
        events.append(ev)
        if progress is not None:
            progress(ev)

    counts = run_clip(stylizer, frames=frames, stage=stage, work=work, n_frames=n, progress=on,
                      flow=flow_from_config(stylizer.config.flow))
    outs = [load_png(stage.path(frame_unit(i))) for i in range(n)] if stage.count("frame_*") \
        == n else None
    return counts, outs, events, work


def sources(work: WorkDir, n: int) -> list[np.ndarray]:
    return [load_png(work.root / "decode" / frame_unit(i)) for i in range(n)]


# ------------------------------------------------------------------ pure helpers


def test_references_and_blend():
    assert references(5, 1, (1, 2, 4), 10) == [(1, 4), (2, 3), (4, 1)]
    assert references(5, -1, (1, 2, 4), 8) == [(1, 6), (2, 7)]
    x = torch.full((1, 3, 2, 2), 0.2)
    w = torch.full((1, 3, 2, 2), 1.0)
    c = torch.tensor([[[[0.0, 1.0], [1.0, 0.0]]]])
    out = blend(x, w, c, 0.5)
    assert torch.allclose(out[0, :, 0, 0], torch.tensor(0.2))  # c = 0: last pass kept
    assert torch.allclose(out[0, :, 0, 1], torch.tensor(0.6))  # c = 1: delta mix


def test_bad_settings_are_usage_errors(tiny_net, data_dir):
    for bad in ({"mode": "sideways"}, {"mode": "short", "passes": 0},
                {"mode": "long", "long_term": (0, 1)}, {"mode": "short", "blend_delta": 2.0}):
        kw = {"long_term": bad.pop("long_term", (1, 2, 4))}
        with pytest.raises(UsageError):
            make(tiny_net, data_dir, **bad, **kw)


# ------------------------------------------------------------------ consistency

N_VTEST = 6


@pytest.fixture(scope="module")
def vtest_runs(tiny_net, data_dir, tmp_path_factory):
    """none / short / long+2 passes on the first frames of vtest, same iterations and seed."""
    path = data_dir / "video" / "vtest_000-010s.avi"
    out = {}
    for label, kw in {"none": {"mode": "none"}, "short": {"mode": "short"},
                      "long": {"mode": "long", "passes": 2}}.items():
        st = make(tiny_net, data_dir, **kw)
        counts, frames, events, work = run(st, clip(path, N_VTEST), tmp_path_factory.mktemp(label),
                                           N_VTEST)
        out[label] = {"stylizer": st, "counts": counts, "frames": frames, "events": events,
                      "work": work}
    return out


def test_temporal_modes_lower_the_warping_error(vtest_runs):
    src = sources(vtest_runs["none"]["work"], N_VTEST)
    flow = make_flow("dis")
    err = {k: warp_error(v["frames"], src, flow=flow).mean for k, v in vtest_runs.items()}
    assert err["short"] < 0.5 * err["none"], err
    assert err["long"] <= err["short"], err


def test_iterations_and_trace(vtest_runs):
    short = vtest_runs["short"]["stylizer"]
    assert vtest_runs["short"]["counts"] == (N_VTEST, 0)
    trace = short.trace
    assert [(t.frame, t.init) for t in trace] == [(0, "cold")] + [
        (i, "warp") for i in range(1, N_VTEST)]
    assert trace[0].iterations == 20
    assert all(t.iterations == 10 for t in trace[1:])  # later_frame_iters = 0.5
    assert all(t.refs == (t.frame - 1,) for t in trace[1:])
    long = vtest_runs["long"]["stylizer"]
    assert vtest_runs["long"]["counts"] == (N_VTEST, 0)
    first, second = long.trace[:N_VTEST], long.trace[N_VTEST:]
    # pass 0: warm start, no temporal loss; pass 1 (backward): blend + long-term refs
    assert all(t.pass_ == 0 and t.refs == () for t in first)
    assert [t.frame for t in second] == list(range(N_VTEST - 1, -1, -1))
    assert second[0].init == "previous" and all(t.init == "blend" for t in second[1:])
    assert second[-1].refs == (1, 2, 4)  # frame 0 refers to frames 0+1, 0+2, 0+4
    # intermediate pass folders are removed once the last pass is complete
    assert not (vtest_runs["long"]["work"].root / "pass_0").exists()


def test_progress_events(vtest_runs):
    events = vtest_runs["long"]["events"]
    stages = {e.stage for e in events}
    assert {"decode", "stylize", "optimize"} <= stages
    sty = [e for e in events if e.stage == "stylize"]
    assert [e.done for e in sty] == list(range(1, 2 * N_VTEST + 1))
    assert all(e.total == 2 * N_VTEST for e in sty)
    opt = [e for e in events if e.stage == "optimize"]
    assert all(e.iteration is not None and 1 <= e.iteration <= e.iterations for e in opt)


def test_flows_are_reused_across_runs_and_styles(tiny_net, data_dir, vtest_runs):
    work = vtest_runs["short"]["work"]
    assert vtest_runs["short"]["stylizer"].stats["flow_pairs"] == N_VTEST - 1
    st = make(tiny_net, data_dir, mode="short", style="wave.jpg")
    path = data_dir / "video" / "vtest_000-010s.avi"
    _, frames, _, _ = run(st, clip(path, N_VTEST), work.root, N_VTEST)
    assert st.stats["flow_pairs"] == 0  # every pair came from the flow cache
    assert any(not np.array_equal(a, b)
               for a, b in zip(frames, vtest_runs["short"]["frames"], strict=True))


# ------------------------------------------------------------------ shot cuts


def test_tears_of_steel_cut_switches_temporal_terms_off(tiny_net, data_dir, tmp_path):
    path = data_dir / "video" / "tears_of_steel_2s.webm"
    n = 5
    st = make(tiny_net, data_dir, mode="long", passes=2, iters=10)
    _, frames, _, _ = run(st, clip(path, n), tmp_path / "long", n)
    assert st.cut_before[2] and not any(st.cut_before.get(i, False) for i in (1, 3, 4))
    first = {t.frame: t for t in st.trace if t.pass_ == 0}
    second = {t.frame: t for t in st.trace if t.pass_ == 1}
    assert first[2].init == "cold" and first[2].iterations == 10
    assert first[1].init == "warp" and first[3].init == "warp"
    # backward pass: frame 1's neighbour (2) is across the cut -> last pass's frame only
    assert second[1].init == "previous" and second[4].init == "previous"
    assert second[2].init == "blend" and second[0].init == "blend"
    # no temporal reference reaches across the cut (cut between 1 and 2)
    for t in second.values():
        assert all((r >= 2) == (t.frame >= 2) for r in t.refs), t
    assert second[0].refs == (1,) and second[2].refs == (3, 4)

    # the frame after the cut is a cold start: identical to the per-frame stylization
    none = make(tiny_net, data_dir, mode="none", iters=10)
    _, indep, _, _ = run(none, clip(path, 3), tmp_path / "none", 3)
    short = make(tiny_net, data_dir, mode="short", iters=10)
    _, seq, _, _ = run(short, clip(path, 4), tmp_path / "short", 4)
    assert np.array_equal(seq[2], indep[2])
    assert not np.array_equal(seq[1], indep[1])  # frame 1 was warm-started


def test_bikes_cut_is_detected(tiny_net, data_dir, tmp_path):
    """bikes.mp4 cuts at frame 30 (see tests/flow/test_cuts.py); frames 28-31 here."""
    st = make(tiny_net, data_dir, mode="short", iters=4)
    run(st, clip(data_dir / "video" / "bikes.mp4", 4, start=28), tmp_path, 4)
    assert st.cut_before == {1: False, 2: True, 3: False}
    assert [t.init for t in st.trace] == ["cold", "warp", "cold", "warp"]


def test_fast_motion_is_not_a_cut(tiny_net, data_dir, tmp_path):
    """Every 3rd frame of bikes.mp4 from 98 (a car passing close in front of the camera):
    at 96 px the pairs' consistency masks are nearly empty (the old rule, consistent
    fraction < 0.3, called them cuts) but the picture is the same shot: the temporal terms
    stay on."""
    st = make(tiny_net, data_dir, mode="short", iters=4)
    _, _, _, work = run(st, clip(data_dir / "video" / "bikes.mp4", 3, start=98, step=3),
                        tmp_path, 3)
    assert st.cut_before == {1: False, 2: False}
    assert [t.init for t in st.trace] == ["cold", "warp", "warp"]
    assert [t.refs for t in st.trace] == [(), (0,), (1,)]
    frames = [torch.from_numpy(f).permute(2, 0, 1)[None].float() / 255
              for f in sources(work, 3)]
    scores = [frame_pair(a, b, flow=make_flow("dis")).score
              for a, b in itertools.pairwise(frames)]
    assert min(scores) < 0.3, scores


# ------------------------------------------------------------------ resume


def test_killed_run_resumes_to_identical_frames(tiny_net, data_dir, tmp_path):
    path = data_dir / "video" / "vtest_000-010s.avi"
    n = 5

    def fresh():
        return make(tiny_net, data_dir, mode="long", passes=2, size=64, iters=8,
                    long_term=(1, 2))

    _, whole, _, _ = run(fresh(), clip(path, n), tmp_path / "whole", n)

    class Killed(Exception):
        pass

    def kill_after(k):
        def progress(ev):
            if ev.stage == "stylize" and ev.done == k:
                raise Killed

        return progress

    root = tmp_path / "killed"
    with pytest.raises(Killed):  # dies in pass 0 after 3 frames
        run(fresh(), clip(path, n), root, n, progress=kill_after(3))
    with pytest.raises(Killed):  # resumes pass 0, dies in pass 1 (2 of its frames done)
        run(fresh(), clip(path, n), root, n, progress=kill_after(n + 2))
    assert (root / "pass_0").is_dir() and len(list((root / "stylize").glob("frame_*"))) == 2
    st = fresh()
    counts, resumed, _, _ = run(st, clip(path, n), root, n)
    assert counts == (n - 2, 2)
    assert st.stats["computed"] == n - 2  # pass 0 was not redone
    assert all(np.array_equal(a, b) for a, b in zip(whole, resumed, strict=True))
    st = fresh()
    assert run(st, clip(path, n), root, n)[0] == (0, n)
    assert st.stats.get("computed", 0) == 0


# ------------------------------------------------------------------ streaming


def test_clip_is_streamed_not_held(tiny_net, data_dir, tmp_path):
    path = data_dir / "video" / "vtest_000-010s.avi"
    n, long_term = 12, (1, 2, 4, 8)
    alive = {"now": 0, "peak": 0}

    def dec():
        alive["now"] -= 1

    def frames():
        for f in clip(path, n)():
            alive["now"] += 1
            alive["peak"] = max(alive["peak"], alive["now"])
            weakref.finalize(f.rgb, dec)
            yield f
            del f

    st = make(tiny_net, data_dir, mode="long", passes=2, size=64, iters=4, long_term=long_term)
    run(st, frames, tmp_path, n)
    assert alive["peak"] <= 2  # decoded frames are dropped as soon as they are saved
    assert st.store.held == 0
    # frames loaded at once: the current one, its references, the last pass's frame
    assert 3 <= st.store.peak <= max(long_term) + 2


# ------------------------------------------------------------------ pipeline


def test_pipeline_runs_the_clip_stage(tiny_net, data_dir, tmp_path):
    from vidstyle.engine import run as run_pipeline

    src = data_dir / "video" / "tears_of_steel_2s.webm"
    cfg = RunConfig(optim=OptimConfig(size=64, iters=4, multiscale=1),
                    temporal=TemporalConfig(mode="short"), max_frames=4)

    def factory(*, config, device):
        return TemporalOptimStylizer(
            config=config, device=device, net=tiny_net,
            style_path=str(data_dir / "styles" / "wave.jpg"),
            style_image=load_image(data_dir / "styles" / "wave.jpg"),
            style_layers=STYLE_LAYERS, content_layers=CONTENT_LAYERS)

    out = tmp_path / "out.mp4"
    res = run_pipeline(src, out, cfg, work_dir=tmp_path / "work", stylizer_factory=factory,
                       keep_work=True)
    assert (res.frames, res.computed, res.reused) == (4, 4, 0)
    assert len(list(iter_frames(out))) == 4
    again = run_pipeline(src, out, cfg, work_dir=tmp_path / "work", stylizer_factory=factory,
                         overwrite=True)
    assert (again.computed, again.reused) == (0, 4)
