"""Training: loss goes down, exact resume, adding a style, config parsing, artifacts."""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

import click
import numpy as np
import pytest
import torch
from PIL import Image

from vidstyle.errors import InputError, Interrupted, UsageError
from vidstyle.fast.model_io import load_model
from vidstyle.fast.net import StyleNet, one_hot_styles
from vidstyle.fast.train import (
    FLAGS,
    TrainConfig,
    config_from_pairs,
    flag,
    list_images,
    resume_conflicts,
    saved_config,
    style_image,
    style_targets,
    train,
)
from vidstyle.imageops import load_image
from vidstyle.losses import gram


def _config(data: dict[str, Path], out: str, **kw) -> TrainConfig:
    s = data["styles"]
    base = TrainConfig(
        styles=(f"starry={s / 'starry.png'}", f"wave={s / 'wave.png'}"),
        content_dirs=(str(data["train"]),),
        holdout_dirs=(str(data["holdout"]),),
        num_samples=1,
        steps=4,
        size=32,
        batch=2,
        lr=1e-2,
        style_weight=30.0,
        content_weight=1.0,
        tv_weight=1e-3,
        style_layers=("a", "b"),
        content_layers=("b",),
        style_size=48,
        eval_size=40,
        channels=(4, 8, 8),
        num_res_blocks=1,
        outer_kernel=3,
        checkpoint_every=0,
        log_every=1,
        seed=3,
        out_dir=str(data["root"] / out),
        device="cpu",
        precision="fp32",
        model_dtype="fp32",
    )
    return dataclasses.replace(base, **kw)


def _log(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_training_lowers_the_loss_and_writes_artifacts(tiny_data, tiny_loss_net) -> None:
    cfg = _config(tiny_data, "run", steps=40, log_every=5)
    res = train(cfg, loss_net=tiny_loss_net)
    recs = _log(res.log_path)
    assert [r["step"] for r in recs] == list(range(5, 41, 5))
    assert recs[-1]["loss"] < 0.7 * recs[0]["loss"]
    assert res.steps == 40 and not res.stopped_early
    assert res.curves_path is not None and res.curves_path.stat().st_size > 1000
    assert res.samples_path is not None and res.samples_path.stat().st_size > 1000
    assert set(res.eval_losses) == {"starry", "wave"}
    m = load_model(res.model_path, expected_sha256=res.model_sha256)
    assert m.style_names == ("starry", "wave") and m.info["steps"] == 40


def test_resume_gives_identical_parameters(tiny_data, tiny_loss_net) -> None:
    straight = train(_config(tiny_data, "a", steps=4), loss_net=tiny_loss_net)
    train(_config(tiny_data, "b", steps=2), loss_net=tiny_loss_net)
    resumed = train(_config(tiny_data, "b", steps=4, resume=True), loss_net=tiny_loss_net)
    sa = torch.load(straight.checkpoint_path, weights_only=True)
    sb = torch.load(resumed.checkpoint_path, weights_only=True)
    assert sa["step"] == sb["step"] == 4
    for k, v in sa["model"].items():
        assert torch.equal(v, sb["model"][k]), k
    assert [r["step"] for r in _log(resumed.log_path)] == [1, 2, 3, 4]
    assert _log(resumed.log_path)[-1]["loss"] == _log(straight.log_path)[-1]["loss"]
    # changed settings are refused
    with pytest.raises(UsageError):
        train(_config(tiny_data, "b", steps=6, size=24, resume=True), loss_net=tiny_loss_net)


def test_weight_average_is_exported_and_resumed(tiny_data, tiny_loss_net) -> None:
    kw = {"weight_average": 0.5}
    straight = train(_config(tiny_data, "wa", steps=4, **kw), loss_net=tiny_loss_net)
    train(_config(tiny_data, "wb", steps=2, **kw), loss_net=tiny_loss_net)
    resumed = train(_config(tiny_data, "wb", steps=4, resume=True, **kw),
                    loss_net=tiny_loss_net)
    sa = torch.load(straight.checkpoint_path, weights_only=True)
    sb = torch.load(resumed.checkpoint_path, weights_only=True)
    assert set(sa["average"]) == {k for k, _ in StyleNet(
        num_styles=2, channels=(4, 8, 8), num_res_blocks=1, outer_kernel=3).named_parameters()}
    for k, v in sa["average"].items():
        assert torch.equal(v, sb["average"][k]), k  # the average resumes exactly
    # the checkpoint goes on from the last step's weights, the model takes the average
    exported = load_model(straight.model_path).net.state_dict()
    moved = 0
    for k, v in sa["average"].items():
        assert torch.equal(exported[k], v), k
        moved += not torch.equal(v, sa["model"][k])
    assert moved > 0
    assert load_model(straight.model_path).info["weight_average"] == 0.5
    # turned on at a resume: the average starts from the resumed weights, not the fresh ones
    train(_config(tiny_data, "wc", steps=2), loss_net=tiny_loss_net)
    late = train(_config(tiny_data, "wc", steps=2, resume=True, **kw), loss_net=tiny_loss_net)
    ck = torch.load(late.checkpoint_path, weights_only=True)
    exported = load_model(late.model_path).net.state_dict()
    for k, v in ck["average"].items():
        assert torch.equal(v, ck["model"][k]) and torch.equal(exported[k], v), k


def test_add_style_leaves_other_styles_unchanged(tiny_data, tiny_loss_net) -> None:
    base = train(_config(tiny_data, "base", steps=3), loss_net=tiny_loss_net)
    added = train(
        _config(
            tiny_data,
            "added",
            steps=5,
            add_style=f"udnie={tiny_data['styles'] / 'udnie.png'}",
            from_model=str(base.model_path),
        ),
        loss_net=tiny_loss_net,
    )
    old = load_model(base.model_path).net
    new = load_model(added.model_path)
    assert new.style_names == ("starry", "wave", "udnie")
    x = torch.rand(1, 3, 24, 30)
    with torch.no_grad():
        for s in range(2):
            torch.testing.assert_close(
                new.net(x, one_hot_styles(s, 3)), old(x, one_hot_styles(s, 2)), rtol=0, atol=0
            )
        # the new style was trained: its row moved away from the mean initialisation
        mean_row = [m.gamma[:2].mean(0) for m in new.net.cin_modules().values()]
        moved = [
            float((m.gamma[2] - r).abs().max())
            for m, r in zip(new.net.cin_modules().values(), mean_row, strict=True)
        ]
        assert max(moved) > 1e-4
    # shared convolution weights are bit-identical
    so, sn = old.state_dict(), new.net.state_dict()
    for k, v in so.items():
        if not k.endswith((".gamma", ".beta")):
            assert torch.equal(v, sn[k]), k


def test_time_limit_stops_cleanly(tiny_data, tiny_loss_net) -> None:
    res = train(_config(tiny_data, "t", steps=10_000, max_minutes=1e-9), loss_net=tiny_loss_net)
    assert res.stopped_early and res.steps == 0
    assert res.checkpoint_path.is_file() and res.model_path.is_file()


def test_config_from_pairs() -> None:
    cfg = config_from_pairs(
        ["steps=12", "styles=starry,wave", "channels=8,16,32", "resume=true", "lr=0.01"]
    )
    assert cfg.steps == 12 and cfg.styles == ("starry", "wave")
    assert cfg.channels == (8, 16, 32) and cfg.resume is True and cfg.lr == 0.01
    assert cfg.style_lambda == cfg.style_weight
    assert dataclasses.replace(cfg, style_exponent=1.0).style_lambda == pytest.approx(
        10 * cfg.style_weight
    )
    with pytest.raises(UsageError):
        config_from_pairs(["nope=1"])
    with pytest.raises(UsageError):
        config_from_pairs(["steps=many"])


def _teacher_file(root: Path, outer: int = 5) -> Path:
    from vidstyle.fast.model_io import save_model
    from vidstyle.fast.net import StyleNet

    torch.manual_seed(11)
    t = StyleNet(num_styles=2, channels=(4, 8, 8), num_res_blocks=1, outer_kernel=outer)
    with torch.no_grad():
        for m in t.cin_modules().values():
            m.gamma.copy_(1.0 + 0.5 * torch.randn_like(m.gamma))
            m.beta.copy_(0.3 * torch.randn_like(m.beta))
    path = root / "teacher.pt"
    save_model(path, t, style_names=("starry", "wave"), dtype=torch.float32)
    return path


def test_init_from_teacher_copies_weights_and_crops_larger_kernels(tiny_data) -> None:
    from vidstyle.fast.net import StyleNet
    from vidstyle.fast.train import init_from_teacher

    teacher = load_model(_teacher_file(tiny_data["root"])).net
    student = StyleNet(num_styles=2, channels=(4, 8, 8), num_res_blocks=1, outer_kernel=3)
    n = init_from_teacher(student, teacher)
    assert n == len(student.state_dict())
    t, s = teacher.state_dict(), student.state_dict()
    assert torch.equal(s["conv_in.conv.weight"], t["conv_in.conv.weight"][:, :, 1:4, 1:4])
    assert torch.equal(s["res.0.a.conv.weight"], t["res.0.a.conv.weight"])
    with pytest.raises(UsageError):
        init_from_teacher(StyleNet(num_styles=3, channels=(4, 8, 8)), teacher)


def test_distillation_moves_a_smaller_kernel_student_to_the_teacher(tiny_data) -> None:
    """Pure distillation (no loss network in the step): the loss falls and the student's
    output ends closer to the teacher's than where the initialization left it."""
    from vidstyle.fast.net import StyleNet
    from vidstyle.fast.train import init_from_teacher

    from .conftest import TinyLossNet

    tfile = _teacher_file(tiny_data["root"])
    cfg = _config(tiny_data, "distill", steps=120, log_every=20, teacher=str(tfile), batch=4,
                  style_weight=0.0, content_weight=0.0, tv_weight=0.0, lr=2e-2)
    res = train(cfg, loss_net=TinyLossNet())
    recs = _log(res.log_path)
    assert all(r["style"] == 0.0 for r in recs)
    assert recs[-1]["distill"] < 0.8 * recs[0]["distill"]
    student = load_model(res.model_path).net.float().eval()
    teacher = load_model(tfile).net.float().eval()
    assert student.outer_kernel == 3 and student.num_styles == 2
    init = StyleNet(num_styles=2, channels=(4, 8, 8), num_res_blocks=1, outer_kernel=3)
    init_from_teacher(init, teacher)
    x = torch.rand(2, 3, 40, 40, generator=torch.Generator().manual_seed(0))
    w = one_hot_styles([0, 1], 2)
    with torch.no_grad():
        t = teacher(x, w)
        before = float((init.eval()(x, w) - t).pow(2).mean())
        after = float((student(x, w) - t).pow(2).mean())
    assert after < 0.8 * before, (after, before)
    with pytest.raises(UsageError):
        train(dataclasses.replace(cfg, distill_weight=0.0), loss_net=TinyLossNet())


def test_space_to_depth_kernels_are_exact_rearrangements() -> None:
    """The student's outer kernels compute the teacher's outer convs exactly: the input
    conv at every f-th pixel, the output conv after a nearest upsampling (away from the
    padded border, whose reflection differs at the two resolutions)."""
    import torch.nn.functional as F

    from vidstyle.fast.train.surgery import depth_input_kernel, depth_output_kernel

    g = torch.Generator().manual_seed(0)
    w_in = torch.randn(4, 3, 9, 9, generator=g)
    x = torch.rand(1, 3, 40, 48, generator=g)
    full = F.conv2d(x, w_in, padding=4)[:, :, ::2, ::2]
    low = F.conv2d(F.pixel_unshuffle(x, 2), depth_input_kernel(w_in, 2, 5), padding=2)
    torch.testing.assert_close(low[..., 3:-3, 3:-3], full[..., 3:-3, 3:-3], atol=1e-4,
                               rtol=0)
    w_out = torch.randn(3, 4, 9, 9, generator=g)
    u = torch.rand(1, 4, 20, 24, generator=g)
    full = F.conv2d(F.interpolate(u, scale_factor=2, mode="nearest"), w_out, padding=4)
    low = F.pixel_shuffle(F.conv2d(u, depth_output_kernel(w_out, 2, 5), padding=2), 2)
    torch.testing.assert_close(low[..., 6:-6, 6:-6], full[..., 6:-6, 6:-6], atol=1e-4,
                               rtol=0)
    # a kernel too small for the taps drops them: no longer the same conv
    short = F.conv2d(F.pixel_unshuffle(x, 2), depth_input_kernel(w_in, 2, 3), padding=1)
    assert float((short[..., 3:-3, 3:-3] - F.conv2d(x, w_in, padding=4)[:, :, ::2, ::2][
        ..., 3:-3, 3:-3]).abs().max()) > 0.1


def test_space_to_depth_student_of_fast7_starts_near_it(data_dir: Path) -> None:
    """A space-to-depth student of the shipped fast7 starts from all of its tensors (the
    outer ones re-arranged): on a photo, much nearer fast7's output than a fresh
    network of the same shape."""
    from vidstyle.fast.model_io import load_shipped
    from vidstyle.fast.train import init_from_teacher

    teacher = load_shipped("fast7").net.float().eval()
    x = torch.nn.functional.interpolate(load_image(data_dir / "content" / "tubingen.jpg"),
                                        size=(128, 192), mode="area")
    w = one_hot_styles(0, teacher.num_styles)
    with torch.no_grad():
        target = teacher(x, w)

    def dist(net: StyleNet) -> float:
        with torch.no_grad():
            return float((net.eval()(x, w) - target).pow(2).mean())

    torch.manual_seed(0)
    fresh = StyleNet(num_styles=teacher.num_styles, outer_kernel=5, space_to_depth=2)
    init = StyleNet(num_styles=teacher.num_styles, outer_kernel=5, space_to_depth=2)
    assert init_from_teacher(init, teacher) == len(init.state_dict())
    assert dist(init) < 0.6 * dist(fresh), (dist(init), dist(fresh))
    with pytest.raises(UsageError, match="space-to-depth"):
        init_from_teacher(teacher, init)


def test_distillation_moves_a_space_to_depth_student_to_the_teacher(tiny_data) -> None:
    from vidstyle.fast.train import init_from_teacher

    from .conftest import TinyLossNet

    tfile = _teacher_file(tiny_data["root"])
    teacher = load_model(tfile).net.float().eval()
    x = torch.rand(2, 3, 40, 40, generator=torch.Generator().manual_seed(0))
    w = one_hot_styles([0, 1], 2)

    def dist(net: StyleNet) -> float:
        with torch.no_grad():
            return float((net.eval()(x, w) - teacher(x, w)).pow(2).mean())

    init = StyleNet(num_styles=2, channels=(4, 8, 8), num_res_blocks=1, outer_kernel=3,
                    space_to_depth=2)
    init_from_teacher(init, teacher)
    cfg = _config(tiny_data, "s2d", steps=120, log_every=20, teacher=str(tfile), batch=4,
                  style_weight=0.0, content_weight=0.0, tv_weight=0.0, lr=2e-2,
                  space_to_depth=2)
    res = train(cfg, loss_net=TinyLossNet())
    student = load_model(res.model_path).net.float()
    assert student.space_to_depth == 2
    assert dist(student) < 0.8 * dist(init), (dist(student), dist(init))


def test_a_student_continues_from_an_earlier_student(tiny_data) -> None:
    """--teacher with --from: the student starts from an earlier student (e.g. to go on
    with other loss weights or batch size), not from the teacher's weights."""
    from .conftest import TinyLossNet

    tfile = _teacher_file(tiny_data["root"])
    kw = dict(teacher=str(tfile), batch=4, style_weight=0.0, content_weight=0.0,
              tv_weight=0.0, lr=2e-2, space_to_depth=2)
    first = train(_config(tiny_data, "first", steps=60, **kw), loss_net=TinyLossNet())
    second = train(_config(tiny_data, "second", steps=2, from_model=str(first.model_path),
                           **{**kw, "batch": 2}), loss_net=TinyLossNet())
    start_first = _log(first.log_path)[0]["distill"]
    end_first = _log(first.log_path)[-1]["distill"]
    start_second = _log(second.log_path)[0]["distill"]
    assert start_second < 0.8 * start_first and start_second < 2 * end_first
    with pytest.raises(UsageError, match="not a student of this shape"):
        train(_config(tiny_data, "third", steps=2, from_model=str(first.model_path),
                      **{**kw, "space_to_depth": 1}), loss_net=TinyLossNet())
    # a resume takes the checkpoint's weights: the --from file may be gone by then
    first.model_path.unlink()
    resumed = train(_config(tiny_data, "second", steps=3, from_model=str(first.model_path),
                            resume=True, **{**kw, "batch": 2}), loss_net=TinyLossNet())
    assert [r["step"] for r in _log(resumed.log_path)] == [1, 2, 3]


def test_tied_output_phases_give_flat_regions_no_hatching(tiny_data) -> None:
    """tie_output_phases: the output conv becomes a nearest upsampling + one
    full-resolution conv: a tied kernel is left as it is, any kernel is projected (once is
    enough), a constant input gives the same value in every output phase, and a training
    run keeps it tied after every step."""
    import torch.nn.functional as F

    from vidstyle.fast.train.surgery import depth_output_kernel, tie_output_phases_

    from .conftest import TinyLossNet

    torch.manual_seed(0)
    net = StyleNet(num_styles=2, channels=(4, 8, 8), num_res_blocks=1, outer_kernel=5,
                   space_to_depth=2)
    conv = net.conv_out.conv
    with torch.no_grad():
        conv.weight.copy_(depth_output_kernel(torch.randn(3, 4, 9, 9), 2, 5))
    tied = conv.weight.detach().clone()
    tie_output_phases_(net)
    torch.testing.assert_close(conv.weight.detach(), tied, atol=1e-5, rtol=0)

    def phase_spread(n: StyleNet) -> float:
        c = n.conv_out.conv
        u = torch.ones(1, 4, 12, 12) * torch.randn(1, 4, 1, 1)
        with torch.no_grad():
            y = F.conv2d(u, c.weight, c.bias, padding=c.kernel_size[0] // 2)[..., 3:-3, 3:-3]
        return float(y.reshape(1, 3, 4, 6, 6).std(dim=2).max() / y.abs().mean())

    with torch.no_grad():
        conv.weight.normal_()
        net.conv_out.norm.beta.normal_()
    assert phase_spread(net) > 0.1  # untied: each phase its own response
    tie_output_phases_(net)
    assert phase_spread(net) < 1e-4
    once = conv.weight.detach().clone()
    tie_output_phases_(net)
    torch.testing.assert_close(conv.weight.detach(), once, atol=1e-5, rtol=0)
    beta = net.conv_out.norm.beta.detach().reshape(2, 3, 4)
    assert float((beta - beta[..., :1]).abs().max()) < 1e-6

    tfile = _teacher_file(tiny_data["root"])
    cfg = _config(tiny_data, "tied", steps=5, teacher=str(tfile), batch=2, style_weight=0.0,
                  content_weight=0.0, tv_weight=0.0, lr=2e-2, space_to_depth=2,
                  tie_output_phases=True)
    student = load_model(train(cfg, loss_net=TinyLossNet()).model_path).net.float()
    assert phase_spread(student) < 1e-3
    with pytest.raises(UsageError, match="space_to_depth"):
        dataclasses.replace(cfg, space_to_depth=1)


def test_resume_from_the_command_line_keeps_the_runs_settings(
    tiny_data, tiny_loss_net, monkeypatch
) -> None:
    """``vidstyle train --out DIR --resume`` continues with DIR's settings, not defaults."""
    from click.testing import CliRunner

    import vidstyle.fast.train as train_mod
    from vidstyle.cli import cli

    first = _config(tiny_data, "cli", steps=2, max_minutes=30.0)
    train(first, loss_net=tiny_loss_net)
    assert saved_config(tiny_data["root"] / "nothing") is None
    stored = saved_config(first.out_dir)
    # per invocation, not carried over: the time limit, the device and the precision
    first = dataclasses.replace(first, max_minutes=0.0, device="auto", precision="auto")
    assert stored == dataclasses.replace(first, resume=True)

    seen: list[TrainConfig] = []

    def fake_train(cfg: TrainConfig, progress=None):  # noqa: ANN001, ANN202
        seen.append(cfg)
        return train(cfg, loss_net=tiny_loss_net)

    monkeypatch.setattr(train_mod, "train", fake_train)
    res = CliRunner().invoke(cli, ["train", "--out", first.out_dir, "--resume", "--steps", "3",
                                   "--device", "cpu", "--set", "precision=fp32"])
    assert res.exit_code == 0, res.output
    expect = dataclasses.replace(first, resume=True, steps=3, device="cpu", precision="fp32")
    assert seen[0] == expect
    assert torch.load(Path(first.out_dir) / "checkpoint.pt", weights_only=True)["step"] == 3
    # the folder may also come from --set out_dir=...
    res = CliRunner().invoke(cli, ["train", "--set", f"out_dir={first.out_dir}", "--resume",
                                   "--steps", "4", "--device", "cpu", "--set", "precision=fp32"])
    assert res.exit_code == 0, res.output
    assert seen[1] == dataclasses.replace(expect, steps=4)


def test_messages_name_the_command_line_options(tiny_data, tiny_loss_net) -> None:
    """Errors and the Ctrl-C hint name what a user types (``--content-dir``, ``--resume``),
    not TrainConfig fields (``content_dirs``, ``resume=true``)."""
    with pytest.raises(InputError) as e:
        train(_config(tiny_data, "none", content_dirs=()), loss_net=tiny_loss_net)
    assert "--content-dir" in str(e.value) and "--video" in str(e.value)
    assert "content_dirs" not in str(e.value)
    with pytest.raises(UsageError) as e:
        train(_config(tiny_data, "x", add_style="mine=a.jpg"), loss_net=tiny_loss_net)
    assert "--add-style" in str(e.value) and "--from" in str(e.value)
    assert "from_model" not in str(e.value)

    def interrupt(_p) -> None:  # noqa: ANN001 - Ctrl-C during the first step's report
        raise KeyboardInterrupt

    cfg = _config(tiny_data, "stopped")
    with pytest.raises(Interrupted) as e:
        train(cfg, loss_net=tiny_loss_net, progress=interrupt)
    assert f"--out {cfg.out_dir} --resume" in str(e.value)
    assert "resume=true" not in str(e.value)
    # the hint works: the checkpoint of step 1 is continued
    res = train(dataclasses.replace(cfg, resume=True), loss_net=tiny_loss_net)
    assert [r["step"] for r in _log(res.log_path)] == [1, 2, 3, 4]
    with pytest.raises(UsageError) as e:
        train(dataclasses.replace(cfg, resume=True, size=24, steps=6), loss_net=tiny_loss_net)
    assert "--size" in str(e.value)


def test_an_earlier_run_is_never_overwritten_silently(
    tiny_data, tiny_loss_net, monkeypatch
) -> None:
    """``vidstyle train --out DIR`` where DIR holds a checkpoint: refused (exit 2, one
    line, nothing touched) unless --resume or --overwrite."""
    from click.testing import CliRunner

    import vidstyle.fast.train as train_mod
    from vidstyle.cli import cli

    cfg = _config(tiny_data, "kept", steps=2)
    first = train(cfg, loss_net=tiny_loss_net)
    files = {p: p.read_bytes() for p in (first.checkpoint_path, first.log_path)}
    with pytest.raises(UsageError) as e:
        train(cfg, loss_net=tiny_loss_net)
    assert "--resume" in str(e.value) and "--overwrite" in str(e.value)

    def tiny_train(c: TrainConfig, progress=None):  # noqa: ANN001, ANN202
        return train(dataclasses.replace(cfg, out_dir=c.out_dir, resume=c.resume,
                                         overwrite=c.overwrite, steps=3),
                     loss_net=tiny_loss_net, progress=progress)

    monkeypatch.setattr(train_mod, "train", tiny_train)
    res = CliRunner().invoke(cli, ["train", "--out", cfg.out_dir, "--device", "cpu"])
    assert res.exit_code == 2, res.output
    assert len(res.stderr.strip().splitlines()) == 1 and "--overwrite" in res.stderr
    assert {p: p.read_bytes() for p in files} == files  # checkpoint and log untouched
    res = CliRunner().invoke(cli, ["train", "--out", cfg.out_dir, "--resume", "--overwrite"])
    assert res.exit_code == 2 and "do not go together" in res.stderr
    res = CliRunner().invoke(cli, ["train", "--out", cfg.out_dir, "--device", "cpu",
                                   "--overwrite"])
    assert res.exit_code == 0, res.output
    assert [r["step"] for r in _log(first.log_path)] == [1, 2, 3]  # a fresh run of 3 steps
    assert saved_config(cfg.out_dir).overwrite is False  # per invocation, not stored


def test_option_names_match_the_train_command() -> None:
    """FLAGS (used in messages) is exactly the ``vidstyle train`` options of the fields."""
    from vidstyle.cli import cli

    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    options = {
        p.name: max(p.opts, key=len)
        for p in cli.commands["train"].params
        if isinstance(p, click.Option) and p.name in fields
    }
    assert options == FLAGS
    assert flag("content_dirs") == "--content-dir" and flag("lr") == "--set lr=..."


def test_train_options_have_help_examples_sections_and_the_dataclass_defaults() -> None:
    """Every ``train`` option has a help line and an example, sits in a help section like
    ``run``'s, and shows TrainConfig's default; ``--set`` lists every other field."""
    from click.testing import CliRunner

    from vidstyle.cli import cli
    from vidstyle.fast.train import TRAIN_GROUPS

    cmd = cli.commands["train"]
    ctx = click.Context(cmd)
    records = {p.name: p.get_help_record(ctx) for p in cmd.params if p.name != "help"}
    for name, rec in records.items():
        assert rec is not None and len(rec[1]) > 30 and "e.g. --" in rec[1], name
    d = TrainConfig()
    for name, shown in (("steps", d.steps), ("batch", d.batch), ("size", d.size),
                        ("device", d.device), ("out_dir", d.out_dir),
                        ("style_weight", f"{d.style_weight:g}"), ("teacher", "none"),
                        ("styles", ",".join(d.styles))):
        assert f"[default: {shown}]" in records[name][1], name
    others = [f.name for f in dataclasses.fields(TrainConfig) if f.name not in FLAGS]
    assert all(name in records["pairs"][1] for name in others)
    text = CliRunner().invoke(cli, ["train", "--help"]).output
    heads = [f"{g} options:" for g in TRAIN_GROUPS]
    at = [text.index(h) for h in heads]
    assert at == sorted(at)
    section = {h: text[a:b] for h, a, b in zip(heads, at, at[1:] + [len(text)], strict=True)}
    assert "--steps" in section["Training options:"]
    assert "--content-dir" in section["Styles and data options:"]
    assert "--resume" in section["Output options:"] and "--device" in section["Run options:"]


def test_train_config_checks_its_values_and_names_the_option() -> None:
    """TrainConfig is the one home of valid values: Literal choices, ranges and the rules
    between fields are checked on construction, naming what the user types."""
    for kw, words in (({"device": "gpu"}, "--device"), ({"size": 8}, "--size must be >= 16"),
                      ({"batch": 0}, "--batch"), ({"steps": "many"}, "--steps"),
                      ({"precision": "fp8"}, "precision (--set precision=...)"),
                      ({"model_dtype": "bf16"}, "--set model_dtype="),
                      ({"vgg": "resnet"}, "--set vgg="), ({"lr": 0.0}, "--set lr="),
                      ({"outer_kernel": 4}, "--set outer_kernel="),
                      ({"channels": (8, 16)}, "--set channels="),
                      ({"teacher": "fast7", "distill_weight": 0.0}, "--teacher"),
                      ({"add_style": "mine=a.jpg"}, "--from")):
        with pytest.raises(UsageError) as e:
            TrainConfig(**kw)  # type: ignore[arg-type]
        assert words in str(e.value), kw
    d = TrainConfig()  # None, not "", for what was not given
    assert d.teacher is None and d.add_style is None and d.from_model is None
    assert d.vgg_weights is None
    cfg = TrainConfig(channels=[8, 16, 32], style_weight=10)  # type: ignore[arg-type]
    assert cfg.channels == (8, 16, 32) and isinstance(cfg.style_weight, float)
    cfg = config_from_pairs(["teacher=fast7", "vgg_weights=", "style_layer_weights=1,2,3,4,5",
                             "precision=bf16"])
    assert cfg.teacher == "fast7" and cfg.vgg_weights is None and cfg.precision == "bf16"
    assert cfg.style_layer_weights == (1.0, 2.0, 3.0, 4.0, 5.0)
    with pytest.raises(UsageError, match="precision"):
        config_from_pairs(["precision=fp8"])


def test_bad_train_settings_stop_before_any_work(tmp_path) -> None:
    from click.testing import CliRunner

    from vidstyle.cli import cli

    out = tmp_path / "run"
    for args, words in ((["--size", "8"], "--size must be >= 16"),
                        (["--set", "precision=fp8"], "precision"),
                        (["--teacher", "fast7", "--add-style", "a=b.jpg", "--from", "m.pt"],
                         "do not go together")):
        res = CliRunner().invoke(cli, ["train", "--out", str(out), *args])
        assert res.exit_code == 2, res.output
        assert len(res.stderr.strip().splitlines()) == 1 and words in res.stderr
    assert not out.exists()


REPO = Path(__file__).resolve().parents[2]


def test_checkpoints_from_before_none_still_load_and_resume(tmp_path: Path) -> None:
    """A checkpoint written when "not given" was "" and before --teacher existed (like
    the committed fast7 run's first one) reads back with None and counts as the same
    settings on resume."""
    src = REPO / "weights" / "checkpoints" / "fast7" / "checkpoint.pt"
    if not src.is_file():
        pytest.skip("the committed fast7 checkpoint is not in this checkout")
    ckpt = torch.load(src, map_location="cpu", weights_only=True)
    old = dict(ckpt["config"], add_style="", vgg_weights="", from_model="")
    old.pop("teacher", None)
    ckpt["config"] = old
    run = tmp_path / "fast7"
    run.mkdir()
    torch.save(ckpt, run / "checkpoint.pt")
    stored = old
    cfg = saved_config(run)
    assert cfg is not None and cfg.resume and cfg.out_dir == str(run)
    assert cfg.add_style is None and cfg.from_model is None and cfg.vgg_weights is None
    assert cfg.teacher is None
    assert cfg.styles == tuple(stored["styles"]) and cfg.channels == tuple(stored["channels"])
    assert cfg.max_minutes == 0.0  # per invocation: not carried over
    assert resume_conflicts(stored, cfg) == []
    assert resume_conflicts(stored, dataclasses.replace(cfg, size=128)) == ["size"]


def test_the_cli_loads_without_torch() -> None:
    """The train options come from TrainConfig without importing the training machinery:
    ``vidstyle --help`` stays quick."""
    import subprocess
    import sys

    code = ("import sys, vidstyle.cli; from vidstyle.fast.train import TrainConfig; "
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)


def test_train_command_prints_progress_lines(
    tiny_data, tiny_loss_net, monkeypatch, caplog
) -> None:
    """``vidstyle train`` shows progress as ordinary output ("step N/M loss=..."), not as
    WARNING log records."""
    from click.testing import CliRunner

    import vidstyle.fast.train as train_mod
    from vidstyle.cli import cli

    def tiny_train(cfg: TrainConfig, progress=None):  # noqa: ANN001, ANN202
        tiny = _config(tiny_data, "progress", steps=2, out_dir=cfg.out_dir)
        return train(tiny, loss_net=tiny_loss_net, progress=progress)

    monkeypatch.setattr(train_mod, "train", tiny_train)
    out = tiny_data["root"] / "progress"
    res = CliRunner().invoke(cli, ["train", "--out", str(out), "--device", "cpu"])
    assert res.exit_code == 0, res.output
    lines = res.stdout.splitlines()
    assert [ln.split()[1] for ln in lines if ln.startswith("step ")] == ["1/2", "2/2"]
    assert all("loss=" in ln for ln in lines if ln.startswith("step "))
    assert "WARNING" not in res.output
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_transparent_style_gives_the_gram_targets_of_optimization(tmp_path, tiny_loss_net) -> None:
    """Training reads images with the one loader (imageops.load_image: alpha composited on
    white), so a transparent PNG style gives the same pixels and Gram targets as in
    optimization (which Grams load_image's tensor at this size)."""
    rng = np.random.default_rng(0)
    rgba = rng.integers(0, 256, (20, 28, 4), dtype=np.uint8)
    rgba[:, :7, 3] = 0  # transparent, opaque and half-transparent columns
    rgba[:, 7:14, 3] = 255
    rgba[:, 14:, 3] = 128
    path = tmp_path / "clear.png"
    Image.fromarray(rgba, "RGBA").save(path)
    optim_image = load_image(path)
    assert torch.equal(style_image(path, 28), optim_image)
    assert float(optim_image[0, :, :, :7].min()) == 1.0  # white where transparent
    cfg = TrainConfig(style_layers=("a", "b"), style_size=28)
    targets = style_targets(tiny_loss_net, [path], cfg, torch.device("cpu"))
    feats = tiny_loss_net(optim_image, ["a", "b"])
    for k in ("a", "b"):
        torch.testing.assert_close(targets[k], gram(feats[k]), rtol=1e-6, atol=0)
    # the one suffix table: .tif photos are training photos too
    Image.fromarray(rgba[..., :3]).save(tmp_path / "photo.tif")
    assert [p.name for p in list_images([str(tmp_path)])] == ["clear.png", "photo.tif"]


def test_synthetic_motion_moves_pictures_as_stated() -> None:
    from vidstyle.fast.train.objective import TEMPORAL_MARGIN, move, synthetic_motion

    gen = torch.Generator().manual_seed(0)
    theta = synthetic_motion(64, gen, size=(40, 60), max_shift=5.0, max_zoom=0.1,
                             max_rotate=4.0)
    assert theta.shape == (64, 2, 3)
    # shifts within +-5 px, zooms within 10 %, the same draws for the same seed
    assert float((theta[:, 0, 2] * 60 / 2).abs().max()) <= 5.0
    assert float((theta[:, 1, 2] * 40 / 2).abs().max()) <= 5.0
    det = theta[:, 0, 0] * theta[:, 1, 1] - theta[:, 0, 1] * theta[:, 1, 0]
    assert float(det.min()) >= 1 / 1.1**2 - 1e-6 and float(det.max()) <= 1 / 0.9**2 + 1e-6
    again = synthetic_motion(64, torch.Generator().manual_seed(0), size=(40, 60),
                             max_shift=5.0, max_zoom=0.1, max_rotate=4.0)
    assert torch.equal(theta, again)
    # a whole-pixel shift of (3, -2) moves the picture by exactly that inside
    x = torch.rand(1, 3, 40, 60, generator=gen)
    shift = torch.tensor([[[1.0, 0.0, 2 * 3 / 60], [0.0, 1.0, 2 * -2 / 40]]])
    moved, valid = move(x, shift)
    assert torch.allclose(moved[0, :, 10:30, 10:50], x[0, :, 8:28, 13:53], atol=1e-5)
    assert float(valid[0, 0, :, :TEMPORAL_MARGIN].max()) == 1.0  # content moved left: left kept
    assert float(valid[0, 0, :, -TEMPORAL_MARGIN - 3:].max()) == 0.0
    # under bf16 autocast (training on bf16 CPUs and GPUs) the motion is the same: the
    # grid is not rounded, so a crop and an output move alike
    theta = synthetic_motion(4, gen, size=(40, 60), max_shift=5.0, max_zoom=0.1,
                             max_rotate=4.0)
    xs = x.expand(4, -1, -1, -1)
    plain, v_plain = move(xs, theta, margin=9)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        auto, v_auto = move(xs, theta, margin=9)
    assert torch.equal(v_plain, v_auto) and torch.allclose(plain, auto, atol=1e-6)
    # a wider margin: with the picture moved 3 px left, columns 0-5 sample within 9 px
    # of the original's left edge
    _, v9 = move(x, shift, margin=9)
    assert float(v9[0, 0, :, :6].max()) == 0.0 and float(v9[0, 0, 15:25, 6:48].min()) == 1.0


def test_temporal_term_makes_the_student_follow_moving_pictures(tiny_data) -> None:
    """Distilling a teacher with the temporal term on gives a student whose output of a
    moved photo is closer to its moved output (sub-stride motion: strided networks repaint)
    than a student distilled without it, at a similar distance to the teacher."""
    from vidstyle.fast.train.objective import move, synthetic_motion, temporal_term

    from .conftest import TinyLossNet

    tfile = _teacher_file(tiny_data["root"])
    common = dict(steps=60, log_every=20, teacher=str(tfile), batch=4, style_weight=0.0,
                  content_weight=0.0, tv_weight=0.0, lr=2e-2)
    plain = train(_config(tiny_data, "plain", **common), loss_net=TinyLossNet())
    stable = train(_config(tiny_data, "stable", temporal_weight=20.0, temporal_shift=3.0,
                           **common), loss_net=TinyLossNet())
    recs = _log(stable.log_path)
    assert "temporal" in recs[-1] and recs[-1]["temporal"] < recs[0]["temporal"]
    photo = load_image(tiny_data["holdout"] / "chicago.png")
    x = torch.nn.functional.interpolate(photo, size=(40, 56), mode="bilinear")
    theta = synthetic_motion(8, torch.Generator().manual_seed(5), size=(40, 56),
                             max_shift=3.0, max_zoom=0.0, max_rotate=0.0)
    xs = x.expand(8, -1, -1, -1)
    w = one_hot_styles([0, 1] * 4, 2)
    teacher = load_model(tfile).net.float().eval()

    def shift_error(path: Path) -> tuple[float, float]:
        net = load_model(path).net.float().eval()
        with torch.no_grad():
            y = net(xs, w)
            moved_x, valid = move(xs, theta)
            err = float(temporal_term(move(y, theta)[0], net(moved_x, w), valid))
            return err, float((y - teacher(xs, w)).pow(2).mean())

    e_plain, d_plain = shift_error(plain.model_path)
    e_stable, d_stable = shift_error(stable.model_path)
    assert e_stable < 0.7 * e_plain, (e_stable, e_plain)
    assert d_stable < 3 * d_plain + 1e-3, (d_stable, d_plain)
