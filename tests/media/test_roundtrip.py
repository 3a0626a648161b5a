"""Decode -> MediaWriter round trips keep timing, audio, rotation, size and colours."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from vidstyle.config import EncodeConfig
from vidstyle.media import iter_frames, probe

from .helpers import audio_summary, decoded_pts, psnr, synthetic_rgb, transcode

CASES = {
    # name: (input in the kit, output suffix, expected output audio codec or "copy")
    "bbb_mp4": ("bigbuckbunny.mp4", ".mp4", "copy"),
    "tos_mp4": ("tears_of_steel_2s.webm", ".mp4", "aac"),  # Vorbis is not for MP4
    "tos_webm": ("tears_of_steel_2s.webm", ".webm", "copy"),
    "tos_mkv": ("tears_of_steel_2s.webm", ".mkv", "copy"),
    "tos_avi": ("tears_of_steel_2s.webm", ".avi", "mp3"),  # AVI: 1/fps time base
}


@pytest.fixture(scope="module")
def outputs(data_dir, tmp_path_factory):
    d = tmp_path_factory.mktemp("roundtrip")
    made = {}
    for key, (name, suffix, _) in CASES.items():
        src = data_dir / "video" / name
        # The 720p clip uses ultrafast to keep the suite fast; the others use the default
        # (veryfast, with B-frames, which exercises timestamp reordering).
        preset = "ultrafast" if key == "bbb_mp4" else "veryfast"
        made[key] = (src, transcode(src, d / f"{key}{suffix}", preset=preset))
    return made


def _rescaled(pts, src_tb: Fraction, dst_tb: Fraction) -> list[int]:
    return [round(p * src_tb / dst_tb) for p in pts]


@pytest.mark.parametrize("key", list(CASES))
def test_timing_is_kept(outputs, key):
    src, out = outputs[key]
    a, b = probe(src), probe(out)
    assert b.frame_count == a.frame_count
    assert float(b.fps) == pytest.approx(float(a.fps), rel=1e-3)
    assert b.duration_s == pytest.approx(a.duration_s, abs=float(1 / a.fps))
    src_pts, src_tb = decoded_pts(src)
    out_pts, out_tb = decoded_pts(out)
    assert len(out_pts) == len(src_pts) == a.frame_count
    if out.suffix == ".avi":
        # AVI stores no timestamps: frames are 1/fps apart (FFmpeg's demuxer may start at 1).
        assert out_tb == 1 / a.fps and out_pts[0] in (0, 1)
        assert out_pts == list(range(out_pts[0], out_pts[0] + len(out_pts)))
    else:
        assert out_pts == _rescaled(src_pts, src_tb, out_tb)
    assert (b.width, b.height) == (a.width, a.height)


@pytest.mark.parametrize("key", list(CASES))
def test_audio_is_carried(outputs, key):
    src, out = outputs[key]
    mode = CASES[key][2]
    s_codec, s_count, s_dur = audio_summary(src)
    o_codec, o_count, o_dur = audio_summary(out)
    if mode == "copy":
        assert o_codec == s_codec and o_count == s_count
        assert o_dur == pytest.approx(s_dur, abs=1e-3)
    else:
        assert o_codec == mode != s_codec
        assert o_dur == pytest.approx(s_dur, abs=0.05)  # plus/minus encoder frame padding


@pytest.mark.parametrize("key", ["bbb_mp4", "tos_webm"])
def test_pictures_survive(outputs, key):
    src, out = outputs[key]
    for a, b in zip(iter_frames(src), iter_frames(out), strict=True):
        if a.index % 16 == 0:
            assert psnr(a.rgb, b.rgb) > 30, a.index


def test_vfr_stays_vfr(clips, tmp_path):
    src = clips["vfr"]
    out = transcode(src, tmp_path / "vfr.mkv")
    src_pts, src_tb = decoded_pts(src)
    out_pts, out_tb = decoded_pts(out)
    src_ms = [p * src_tb * 1000 for p in src_pts]
    out_ms = [p * out_tb * 1000 for p in out_pts]
    assert len(set(np.diff(src_ms))) > 3  # the input really is VFR
    assert out_ms == src_ms
    # Same through an mp4 (different muxer time base).
    out2 = transcode(src, tmp_path / "vfr.mp4")
    pts2, tb2 = decoded_pts(out2)
    assert [p * tb2 * 1000 for p in pts2] == src_ms


@pytest.mark.parametrize("suffix", [".mp4", ".mov", ".mkv", ".webm"])
def test_rotation_is_kept(clips, tmp_path, suffix):
    out = transcode(clips["rot90"], tmp_path / f"rot{suffix}")
    info = probe(out)
    assert info.rotation == 90 and (info.width, info.height) == (96, 64)


@pytest.mark.parametrize("suffix", [".mp4", ".webm", ".mkv"])
def test_odd_size_is_kept_exactly(clips, tmp_path, suffix):
    out = transcode(clips["odd"], tmp_path / f"odd{suffix}")
    frames = list(iter_frames(out))
    assert len(frames) == 6
    for f in frames:
        assert f.rgb.shape == (241, 321, 3)
        assert psnr(f.rgb, synthetic_rgb(f.index, 321, 241)) > 30


def test_ndarray_frames_get_source_rate(tmp_path, data_dir):
    """Plain arrays (no pts) are spaced 1/fps apart, colours survive an SD (BT.601) size."""
    from vidstyle.media import MediaWriter

    info = probe(data_dir / "video" / "vtest_000-010s.avi")
    out = tmp_path / "arrays.mp4"
    with MediaWriter(out, source=info) as w:
        for i in range(10):
            w.write(synthetic_rgb(i, 160, 120))
    got = probe(out)
    assert got.frame_count == 10 and got.fps == 10 and (got.width, got.height) == (160, 120)
    pts, tb = decoded_pts(out)
    assert [p * tb for p in pts] == [Fraction(i, 10) for i in range(10)]
    for f in iter_frames(out):
        ref = synthetic_rgb(f.index, 160, 120)
        assert psnr(f.rgb, ref) > 28  # 4:2:0 smears chroma at the square's saturated edges
        # Flat areas must keep their colour: a BT.601/BT.709 mix-up shifts yellow by ~10.
        y0, x0 = (3 * f.index) % 90 + 15, (7 * f.index) % 130 + 15  # square centre
        assert np.abs(f.rgb[y0, x0].astype(int) - (240, 240, 40)).max() <= 4
        assert np.abs(f.rgb[110, 5].astype(int) - ref[110, 5]).max() <= 4


def test_colours_match_for_hd_size(tmp_path, data_dir):
    """HD sizes use BT.709 (the matrix players assume there); colours must round-trip."""
    from vidstyle.media import MediaWriter

    info = probe(data_dir / "video" / "bigbuckbunny.mp4")
    out = tmp_path / "hd.mkv"
    with MediaWriter(out, source=info,
                     encode=EncodeConfig(copy_audio=False, preset="ultrafast")) as w:
        w.write(synthetic_rgb(0, 1280, 720))
    (f,) = list(iter_frames(out))
    y0, x0 = 90, 90  # centre of the 180 px square at frame 0
    assert np.abs(f.rgb[y0, x0].astype(int) - (240, 240, 40)).max() <= 4
    assert psnr(f.rgb, synthetic_rgb(0, 1280, 720)) > 35


def test_audio_falls_back_to_transcoding_when_copy_fails(data_dir, tmp_path, monkeypatch):
    """If the muxer refuses a copied codec at header time, the writer transcodes instead."""
    import dataclasses

    from vidstyle.media import MediaWriter, encode

    # Pretend WebM accepts any audio codec, so the writer first tries to copy AAC into it.
    spec = dataclasses.replace(encode._SPECS["webm"], audio_copy=None)
    monkeypatch.setitem(encode._SPECS, "webm", spec)
    src = data_dir / "video" / "bigbuckbunny.mp4"
    out = tmp_path / "fallback.webm"
    with MediaWriter(out, source=probe(src), encode=EncodeConfig(preset="ultrafast")) as w:
        for f in iter_frames(src):
            if f.index >= 3:
                break
            w.write(f)
    assert w.audio_mode == "transcode"
    codec, count, dur = audio_summary(out)
    # 3 of 132 frames written: the audio is cut at the end of the picture (0.12 s).
    assert codec == "opus" and count >= 3 and dur == pytest.approx(0.12, abs=0.05)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fallback.webm"]


def test_short_output_cuts_copied_audio(data_dir, tmp_path):
    from vidstyle.media import MediaWriter

    src = data_dir / "video" / "bigbuckbunny.mp4"
    out = tmp_path / "first_second.mkv"
    with MediaWriter(out, source=probe(src), encode=EncodeConfig(preset="ultrafast")) as w:
        for f in iter_frames(src):
            if f.index >= 25:
                break
            w.write(f)
    codec, count, dur = audio_summary(out)
    assert codec == "aac" and dur == pytest.approx(1.0, abs=0.05)  # 1024-sample packets
    assert probe(out).duration_s == pytest.approx(1.0, abs=0.05)
