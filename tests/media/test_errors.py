"""Output checks and atomic writing: errors raise before heavy work and leave no file."""

from __future__ import annotations

import os

import pytest

from vidstyle.config import EncodeConfig
from vidstyle.errors import InputError, OutputError, UsageError
from vidstyle.media import MediaWriter, check_output_path, iter_frames, probe

from .helpers import synthetic_rgb, transcode


def _leftovers(d):
    return sorted(p.name for p in d.iterdir())


def test_output_equal_to_input_is_a_usage_error(data_dir, tmp_path, monkeypatch):
    src = tmp_path / "clip.mp4"
    src.write_bytes((data_dir / "video" / "carphone_pristine.mp4").read_bytes())
    monkeypatch.chdir(tmp_path)
    for same in ["clip.mp4", "./sub/../clip.mp4", str(src)]:
        (tmp_path / "sub").mkdir(exist_ok=True)
        with pytest.raises(UsageError) as e:
            check_output_path(same, input_path=src)
        assert "\n" not in str(e.value)
    link = tmp_path / "link.mp4"
    link.symlink_to(src)
    with pytest.raises(UsageError):
        check_output_path(link, input_path=src)
    assert src.stat().st_size == (data_dir / "video" / "carphone_pristine.mp4").stat().st_size


def test_unsupported_suffix_and_missing_dir(tmp_path):
    with pytest.raises(OutputError, match="unsupported output suffix"):
        check_output_path(tmp_path / "out.gif", input_path=tmp_path / "in.mp4")
    with pytest.raises(OutputError, match="unsupported output suffix"):
        check_output_path(tmp_path / "out", input_path=tmp_path / "in.mp4")
    with pytest.raises(OutputError, match="does not exist"):
        check_output_path(tmp_path / "nodir" / "out.mp4", input_path=tmp_path / "in.mp4")
    (tmp_path / "adir.mp4").mkdir()
    with pytest.raises(OutputError, match="directory"):
        check_output_path(tmp_path / "adir.mp4", input_path=tmp_path / "in.mp4")
    with pytest.raises(OutputError):
        MediaWriter(tmp_path / "out.xyz", source=None)  # checked before anything else
    assert _leftovers(tmp_path) == ["adir.mp4"]


def _unwritable_dir(tmp_path):
    if os.geteuid() != 0:
        d = tmp_path / "ro"
        d.mkdir()
        d.chmod(0o555)
        return d
    for cand in ("/sys", "/proc/self"):  # root ignores permission bits; try read-only trees
        try:
            fd = os.open(os.path.join(cand, ".vidstyle_probe"), os.O_CREAT | os.O_WRONLY)
        except OSError:
            return cand
        os.close(fd)
        os.unlink(os.path.join(cand, ".vidstyle_probe"))
    pytest.skip("no unwritable directory available as root")


def test_unwritable_directory(tmp_path, data_dir):
    d = _unwritable_dir(tmp_path)
    out = os.path.join(d, "out.mp4")
    with pytest.raises(OutputError) as e:
        check_output_path(out, input_path=data_dir / "video" / "bikes.mp4")
    assert "\n" not in str(e.value)
    info = probe(data_dir / "video" / "carphone_pristine.mp4")
    with pytest.raises(OutputError):
        with MediaWriter(out, source=info) as w:
            w.write(synthetic_rgb(0, 64, 48))
    assert not os.path.exists(out)


@pytest.mark.parametrize("exc", [RuntimeError, KeyboardInterrupt])
def test_exception_inside_with_leaves_nothing(data_dir, tmp_path, exc):
    src = data_dir / "video" / "carphone_pristine.mp4"
    out = tmp_path / "out.mp4"
    with pytest.raises(exc):
        with MediaWriter(out, source=probe(src)) as w:
            for f in iter_frames(src):
                w.write(f)
                if f.index == 20:
                    assert len(_leftovers(tmp_path)) == 1  # the hidden temp file
                    assert _leftovers(tmp_path)[0].startswith(".out.")
                    assert _leftovers(tmp_path)[0].endswith(".mp4")
                    raise exc("stop")
    assert _leftovers(tmp_path) == []


def test_abort_and_empty_close(data_dir, tmp_path):
    info = probe(data_dir / "video" / "carphone_pristine.mp4")
    w = MediaWriter(tmp_path / "a.mkv", source=info)
    w.write(synthetic_rgb(0, 176, 144))
    w.abort()
    with pytest.raises(OutputError, match="no frame"):
        MediaWriter(tmp_path / "b.mp4", source=info).close()
    assert _leftovers(tmp_path) == []
    # A finished file replaces an existing one only at close.
    out = tmp_path / "c.mp4"
    out.write_bytes(b"old")
    with MediaWriter(out, source=info) as w:
        w.write(synthetic_rgb(0, 176, 144))
        assert out.read_bytes() == b"old"
    assert probe(out).frame_count == 1 and _leftovers(tmp_path) == ["c.mp4"]


def test_bad_writer_settings_are_usage_errors(tmp_path, data_dir):
    info = probe(data_dir / "video" / "carphone_pristine.mp4")
    with pytest.raises(UsageError):
        MediaWriter(tmp_path / "x.mp4", source=info, encode=EncodeConfig(crf=99))
    with pytest.raises(UsageError):
        MediaWriter(tmp_path / "x.mp4", source=info, encode=EncodeConfig(preset="warp9"))
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize("case", ["missing", "dir", "text", "cut2k", "cut_half", "zero"])
def test_bad_inputs_raise_and_write_nothing(data_dir, tmp_path, clips, case):
    bbb = data_dir / "video" / "bigbuckbunny.mp4"
    inputs = tmp_path / "in"
    inputs.mkdir()
    src = {
        "missing": inputs / "missing.mp4",
        "dir": inputs,
        "text": inputs / "notes.mp4",
        "cut2k": inputs / "cut2k.mp4",
        "cut_half": inputs / "cut_half.mp4",
        "zero": clips["zero"],
    }[case]
    if case == "text":
        src.write_text("just some text, renamed to .mp4\n" * 50)
    elif case == "cut2k":
        src.write_bytes(bbb.read_bytes()[:2048])
    elif case == "cut_half":
        src.write_bytes(bbb.read_bytes()[: bbb.stat().st_size // 2])
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    with pytest.raises(InputError) as e:
        transcode(src, out_dir / "result.mp4")
    msg = str(e.value)
    assert "\n" not in msg and src.name in msg
    assert _leftovers(out_dir) == []


def _mode(path):
    return path.stat().st_mode & 0o777


def test_finished_outputs_get_the_umask_mode(clips, tmp_path, umask_022):
    """Video and image outputs were left with mkstemp's 0o600 whatever the umask."""
    from vidstyle.media import write_image

    video = transcode(clips["odd"], tmp_path / "out.mp4")
    still = tmp_path / "still.png"
    info = probe(clips["odd"])
    with MediaWriter(still, source=info) as w:
        w.write(next(iter_frames(clips["odd"])))
    direct = write_image(tmp_path / "direct.jpg", synthetic_rgb(0, 32, 24))
    for p in (video, still, direct):
        assert _mode(p) == umask_022, p.name
    assert _leftovers(tmp_path) == ["direct.jpg", "out.mp4", "still.png"]


_LEAKS = ("Error", "Exception", "[Errno", "errno")


def _says_what_in_words(message: str) -> None:
    assert "\n" not in message
    for leak in _LEAKS:
        assert leak not in message, message


def test_write_failures_are_told_in_words(clips, tmp_path, monkeypatch):
    """An OSError/FFmpeg error reached the message as "[Errno 28] ..." with the path again."""
    import av
    from PIL import Image

    from vidstyle.media import write_image

    def disk_full(self, fp, *args, **kwargs):
        raise OSError(28, "No space left on device", str(fp))

    with monkeypatch.context() as m:
        m.setattr(Image.Image, "save", disk_full)
        with pytest.raises(OutputError) as e:
            write_image(tmp_path / "x.png", synthetic_rgb(0, 16, 16))
    _says_what_in_words(str(e.value))
    assert str(e.value).endswith(": No space left on device")

    info = probe(clips["odd"])
    real_open = av.open

    def refuse_writing(file, mode="r", **kwargs):
        if mode == "w":
            raise av.error.PermissionError(13, "Permission denied", file)
        return real_open(file, mode, **kwargs)

    monkeypatch.setattr(av, "open", refuse_writing)
    with pytest.raises(OutputError) as e:
        with MediaWriter(tmp_path / "v.mp4", source=info) as w:
            w.write(next(iter_frames(clips["odd"])))
    _says_what_in_words(str(e.value))
    assert str(e.value).endswith(": Permission denied")
    assert _leftovers(tmp_path) == []


def test_unreadable_images_are_told_in_words(tmp_path, data_dir):
    from vidstyle.errors import StyleImageError
    from vidstyle.imageops import load_image
    from vidstyle.media import read_image

    text = tmp_path / "text.jpg"
    text.write_text("hello, not an image\n")
    trunc = tmp_path / "trunc.jpg"
    trunc.write_bytes((data_dir / "content" / "tubingen.jpg").read_bytes()[:3000])
    for path, words in ((text, "not an image"), (trunc, "truncated")):
        with pytest.raises(StyleImageError) as e:  # style images
            load_image(path)
        _says_what_in_words(str(e.value))
        assert words in str(e.value)
        with pytest.raises(InputError) as e:  # inputs
            read_image(path)
        _says_what_in_words(str(e.value))
        assert words in str(e.value)


def test_describe_and_reason():
    import av

    from vidstyle.errors import describe
    from vidstyle.media.common import reason

    assert describe(OSError(13, "Permission denied", "/x")) == "Permission denied"
    assert describe(OSError(101)) == os.strerror(101)
    assert describe(OSError("image file is truncated")) == "image file is truncated"
    assert describe(ValueError()) == "unknown error"
    bad = av.error.InvalidDataError(1094995529, "Invalid data found when processing input", "f")
    assert reason(bad) == "Invalid data found when processing input"
