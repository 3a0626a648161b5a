"""Shot cuts (vidstyle.flow.shot_cut): a cut breaks the flow *and* changes the picture's
appearance; fast motion (every 3rd frame of a clip, Sintel's fast sequences) breaks only
the flow. The stress clips are made here from the kit's clips; no media is committed."""

from __future__ import annotations

import glob
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from tests.cli_helpers import invoke, one_line_error
from tests.flow._clips import decode, read_rgb, smooth_texture
from vidstyle.evaluate import cut_scores, find_cuts
from vidstyle.flow import frame_pair, make_flow, shot_cut
from vidstyle.flow.cuts import APPEARANCE_CUT, FLOW_BREAK

BIKES_CUTS = [30, 76, 137, 187, 242]  # checked by eye on a contact sheet (RESULTS.md)
CLIPS = ["bikes.mp4", "vtest_000-010s.avi", "bigbuckbunny.mp4", "tears_of_steel_2s.webm",
         "carphone_pristine.mp4"]
TRUE_CUTS = {"bikes.mp4": BIKES_CUTS, "tears_of_steel_2s.webm": [2]}


def _pair(a: torch.Tensor, b: torch.Tensor):
    return frame_pair(a, b, flow=make_flow("dis"))


def test_the_decision_needs_a_broken_flow_and_a_changed_appearance() -> None:
    tex = smooth_texture(96, 160, seed=3)
    other = 1.0 - smooth_texture(96, 160, seed=4).flip(1) * 0.6
    empty, full = torch.zeros(1, 1, 96, 160), torch.ones(1, 1, 96, 160)
    shifted = torch.roll(tex, shifts=(7, 23), dims=(2, 3))  # fast motion: same look
    assert not shot_cut(tex, shifted, empty).cut
    assert shot_cut(tex, shifted, empty).appearance < APPEARANCE_CUT
    assert shot_cut(tex, other, empty).cut
    d = shot_cut(tex, other, full)  # the flow explains the picture: no cut
    assert not d.cut and d.appearance >= APPEARANCE_CUT and d.consistent == 1.0
    assert shot_cut(tex, tex, empty).appearance == 0.0
    # the video path skips the appearance where the flow holds; the decisions stay the same
    lazy = shot_cut(tex, other, full, always_compare=False)
    assert not lazy.cut and math.isnan(lazy.appearance)
    assert shot_cut(tex, other, empty, always_compare=False).cut
    assert not shot_cut(tex, shifted, empty, always_compare=False).cut


def test_fast_motion_in_bikes_is_not_a_cut(data_dir: Path) -> None:
    """Every 3rd frame of bikes.mp4 around a car passing close in front of the camera:
    the consistency mask empties (fewer than 30 % consistent pixels, the old cut rule's
    threshold), the picture's appearance stays."""
    frames = list(decode(data_dir / "video/bikes.mp4", start=97, step=3, limit=104))
    assert len(frames) == 3  # frames 97, 100, 103
    for a, b in zip(frames, frames[1:], strict=False):
        pair = _pair(a, b)
        d = shot_cut(a, b, pair.mask)
        assert not pair.cut and not d.cut
        assert d.consistent < FLOW_BREAK  # the flow is broken ...
        assert d.appearance < APPEARANCE_CUT  # ... the appearance is not
    assert min(_pair(a, b).score for a, b in zip(frames, frames[1:], strict=False)) < 0.3


def test_the_true_cuts_of_bikes_at_1x_and_3x(data_dir: Path) -> None:
    path = data_dir / "video/bikes.mp4"
    at_1x = list(decode(path, start=185, limit=189))  # cut 186 -> 187 (the least distinct)
    assert [i + 186 for i, s in enumerate(cut_scores(at_1x, flow=make_flow("dis")))
            if s.cut] == [187]
    at_3x = list(decode(path, start=24, step=3, limit=37))  # 24, 27, 30, 33, 36
    assert find_cuts(at_3x, flow=make_flow("dis")) == [2]  # 27 -> 30


def test_fast_sintel_market_5_is_one_shot(data_dir: Path) -> None:
    """market_5 (about 30 px of motion per frame at 1024 px): frame 1 against frames 2-4."""
    files = sorted(glob.glob(str(data_dir / "flow/sintel/training/final/market_5/*.png")))
    frames = [F.interpolate(read_rgb(Path(f)), size=(164, 384), mode="bilinear",
                            antialias=True) for f in files]
    scores = [shot_cut(frames[0], f, _pair(frames[0], f).mask) for f in frames[1:]]
    assert not any(s.cut for s in scores)
    assert min(s.consistent for s in scores) < 0.3  # the old rule called this a cut


def test_hard_cut_in_tears_of_steel(data_dir: Path) -> None:
    """The clip cuts from a city shot to a dark interior at frame 2."""
    frames = decode(data_dir / "video/tears_of_steel_2s.webm", max_side=384, limit=8)
    scores = cut_scores(frames, flow=make_flow("dis"))
    assert len(scores) == 7
    assert [i + 1 for i, s in enumerate(scores) if s.cut] == [2]


def test_eval_cuts_prints_the_cut_with_its_scores(data_dir: Path) -> None:
    r = invoke("eval", "cuts", str(data_dir / "video/tears_of_steel_2s.webm"), "--size",
               "160", "--step", "3")
    assert r.exit_code == 0, r.output
    lines = r.output.strip().splitlines()
    assert lines[0].startswith("cut frame     0 ->     3")
    assert "consistent 0.0" in lines[0] and "appearance 1.7" in lines[0]
    assert lines[-1] == "1 cut(s) in tears_of_steel_2s.webm (new shots start at frames: 3)"


def test_eval_cuts_errors_are_one_line(tmp_path: Path, data_dir: Path) -> None:
    err = one_line_error(invoke("eval", "cuts", str(tmp_path / "missing.mp4")), 1)
    assert "not found" in err
    err = one_line_error(invoke("eval", "cuts", str(data_dir / "video/bikes.mp4"), "--flow",
                                "deepflow", "--flow-preset", "fast"), 2)
    assert "no preset" in err
    r = invoke("eval", "cuts", str(data_dir / "video/bikes.mp4"), "--step", "0")
    assert r.exit_code == 2


@pytest.mark.slow
@pytest.mark.parametrize("step", [1, 3])
@pytest.mark.parametrize("clip", CLIPS)
def test_no_false_cut_in_the_kit_clips(data_dir: Path, clip: str, step: int) -> None:
    """Every pair (t, t + step) of the whole clip at 384 px: only the true cuts."""
    frames = list(decode(data_dir / "video" / clip, max_side=384))
    found = set()
    for t in range(len(frames) - step):
        if _pair(frames[t], frames[t + step]).cut:
            found.add(t + step)
    true = TRUE_CUTS.get(clip, [])
    expected = {t for t in range(step, len(frames))
                if any(t - step < c <= t for c in true)}
    assert found == expected, sorted(found ^ expected)
