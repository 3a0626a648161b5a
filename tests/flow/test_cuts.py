from __future__ import annotations

import pytest

from tests.flow._clips import decode
from vidstyle.evaluate import cut_scores, find_cuts
from vidstyle.flow import CUT_THRESHOLD, make_flow


def test_hard_cut_in_tears_of_steel(data_dir):
    """The clip cuts from a city shot to a dark interior at frame 2."""
    frames = decode(data_dir / "video/tears_of_steel_2s.webm", max_side=384, limit=8)
    scores = cut_scores(frames, flow=make_flow("dis"))
    assert len(scores) == 7
    cut_pairs = [i + 1 for i, s in enumerate(scores) if s < CUT_THRESHOLD]
    assert cut_pairs == [2]
    assert min(s for i, s in enumerate(scores) if i != 1) > 0.6


def test_no_cut_in_consecutive_vtest_frames(data_dir):
    frames = decode(data_dir / "video/vtest_000-010s.avi", max_side=384, limit=15)
    scores = cut_scores(frames, flow=make_flow("dis"))
    assert len(scores) == 14
    assert min(scores) > 0.8  # measured: >= 0.92 over all 100 frames


@pytest.mark.slow
def test_bikes_cuts(data_dir):
    """bikes.mp4 has cuts at frames 30, 76, 137, 187 and 242 (checked by eye)."""
    frames = decode(data_dir / "video/bikes.mp4", max_side=384)
    assert find_cuts(frames, flow=make_flow("dis")) == [30, 76, 137, 187, 242]
