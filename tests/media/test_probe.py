"""probe() on the real clips of the data kit and on synthetic files."""

from __future__ import annotations

from fractions import Fraction

import av
import pytest

from vidstyle.errors import InputError
from vidstyle.media import MediaInfo, probe


def _decoded_count(path) -> int:
    with av.open(str(path)) as c:
        return sum(1 for _ in c.decode(video=0))


def test_probe_mp4_with_aac(data_dir):
    info = probe(data_dir / "video" / "bigbuckbunny.mp4")
    assert isinstance(info, MediaInfo)
    assert (info.kind, info.width, info.height) == ("video", 1280, 720)
    assert info.frame_count == _decoded_count(info.path) == 132
    assert info.fps == Fraction(25)
    assert info.time_base == Fraction(1, 12800)
    assert info.duration_s == pytest.approx(132 / 25, abs=1 / 25)
    assert (info.video_codec, info.audio_codec, info.audio_sample_rate) == ("h264", "aac", 48000)
    assert info.rotation == 0 and info.has_alpha is False
    text = info.describe()
    assert "1280x720" in text and "132" in text and "aac" in text and len(text.splitlines()) > 5


def test_probe_webm_counts_packets(data_dir):
    # WebM has no frame count in its header: probe must count (48 per ffprobe -count_frames).
    info = probe(data_dir / "video" / "tears_of_steel_2s.webm")
    assert info.frame_count == _decoded_count(info.path) == 48
    assert info.fps == Fraction(24)
    assert (info.video_codec, info.audio_codec, info.audio_sample_rate) == ("vp8", "vorbis", 44100)
    assert info.duration_s == pytest.approx(2.0, abs=1 / 24)


def test_probe_avi_without_audio(data_dir):
    info = probe(data_dir / "video" / "vtest_000-010s.avi")
    assert (info.width, info.height, info.frame_count, info.fps) == (768, 576, 100, 10)
    assert info.audio_codec is None and "audio:     none" in info.describe()


def test_probe_rotation_and_odd_size(clips):
    rot = probe(clips["rot90"])
    assert rot.rotation == 90
    assert (rot.width, rot.height) == (96, 64)  # stored size, rotation not applied
    assert "shown 64x96" in rot.describe()
    assert probe(clips["rot180_mkv"]).rotation in (180, -180)
    odd = probe(clips["odd"])
    assert (odd.width, odd.height) == (321, 241)


def test_probe_image(data_dir):
    info = probe(data_dir / "content" / "kodim12.png")
    assert (info.kind, info.width, info.height, info.frame_count) == ("image", 768, 512, 1)
    assert info.fps is None and info.time_base is None and info.video_codec == "png"
    assert "image" in info.describe()


@pytest.mark.parametrize("case", ["audio_only", "zero"])
def test_probe_rejects_files_without_frames(clips, case):
    with pytest.raises(InputError) as e:
        probe(clips[case])
    msg = str(e.value)
    assert "\n" not in msg and clips[case].name in msg
    assert ("no video stream" in msg) if case == "audio_only" else ("zero frames" in msg)
