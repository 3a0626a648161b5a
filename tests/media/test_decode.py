"""Streaming decode: iter_frames on real clips, resume, damaged files, flat memory."""

from __future__ import annotations

import inspect
import logging
from fractions import Fraction

import numpy as np
import pytest

from vidstyle.config import EncodeConfig
from vidstyle.errors import InputError
from vidstyle.media import Frame, iter_frames, probe

from .helpers import decoded_pts


def test_frames_are_streamed_with_timestamps(data_dir):
    path = data_dir / "video" / "tears_of_steel_2s.webm"
    gen = iter_frames(path)
    assert inspect.isgenerator(gen)
    frames = list(gen)
    ref_pts, ref_tb = decoded_pts(path)
    assert [f.index for f in frames] == list(range(48))
    assert [f.pts for f in frames] == ref_pts
    assert all(f.time_base == ref_tb == Fraction(1, 1000) for f in frames)
    f0 = frames[0]
    assert isinstance(f0, Frame) and f0.alpha is None
    assert f0.rgb.shape == (400, 960, 3) and f0.rgb.dtype == np.uint8
    # The clip cuts from a bright city shot to a dark interior at frame 2.
    assert frames[0].rgb.mean() > frames[5].rgb.mean() + 20


def test_start_skips_frames(data_dir):
    path = data_dir / "video" / "tears_of_steel_2s.webm"
    all_frames = list(iter_frames(path))
    tail = list(iter_frames(path, start=45))
    assert [f.index for f in tail] == [45, 46, 47]
    for a, b in zip(tail, all_frames[45:], strict=True):
        assert a.pts == b.pts and np.array_equal(a.rgb, b.rgb)
    assert list(iter_frames(path, start=1000)) == []


def test_image_is_a_one_frame_video(data_dir):
    frames = list(iter_frames(data_dir / "content" / "kodim12.png"))
    assert len(frames) == 1 and frames[0].rgb.shape == (512, 768, 3) and frames[0].pts is None


def _cut(src, dst, nbytes):
    dst.write_bytes(src.read_bytes()[:nbytes])
    return dst


def test_truncated_webm_yields_what_decodes_and_warns(data_dir, tmp_path, caplog):
    src = data_dir / "video" / "tears_of_steel_2s.webm"
    half = _cut(src, tmp_path / "half.webm", src.stat().st_size // 2)
    with caplog.at_level(logging.WARNING, logger="vidstyle.media.decode"):
        frames = list(iter_frames(half))
    assert 5 < len(frames) < 48
    assert any("truncated" in r.getMessage() for r in caplog.records)


def test_truncated_faststart_mp4_yields_some_frames(data_dir, tmp_path, caplog):
    # The kit's mp4 files keep their index at the end, so cutting them loses everything;
    # make a front-indexed (faststart) copy first, as MediaWriter writes mp4.
    from .helpers import transcode

    full = transcode(data_dir / "video" / "carphone_pristine.mp4", tmp_path / "fs.mp4",
                     preset="ultrafast")
    cut = _cut(full, tmp_path / "cut.mp4", full.stat().st_size // 2)
    assert probe(cut).frame_count == 120  # header count; the data is only half there
    with caplog.at_level(logging.WARNING, logger="vidstyle.media.decode"):
        frames = list(iter_frames(cut))
    assert 10 < len(frames) < 120
    assert any("of 120 announced" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(
    "name, nbytes",
    [("bigbuckbunny.mp4", 2048), ("bigbuckbunny.mp4", "half"), ("tears_of_steel_2s.webm", 2048)],
)
def test_truncated_without_any_frame_raises(data_dir, tmp_path, name, nbytes):
    src = data_dir / "video" / name
    if nbytes == "half":
        nbytes = src.stat().st_size // 2  # index (moov) is at the end: nothing decodes
    bad = _cut(src, tmp_path / name, nbytes)
    with pytest.raises(InputError) as e:
        next(iter_frames(bad))
    assert "\n" not in str(e.value) and name in str(e.value)
    with pytest.raises(InputError):
        probe(bad)


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


@pytest.mark.skipif(not __import__("os").path.exists("/proc/self/statm"), reason="needs /proc")
def test_decode_and_encode_memory_is_flat(data_dir, tmp_path):
    """250 frames of 640x272 are 130 MB as RGB; streaming must not hold them."""
    from vidstyle.media import MediaWriter

    src = data_dir / "video" / "bikes.mp4"
    info = probe(src)
    rss = {}
    with MediaWriter(tmp_path / "out.mp4", source=info,
                     encode=EncodeConfig(preset="ultrafast")) as w:
        for f in iter_frames(src):
            w.write(f)
            if f.index in (40, 249):
                rss[f.index] = _rss_bytes()
    assert w.frames_written == 250
    assert rss[249] - rss[40] < 25 * 2**20, rss
