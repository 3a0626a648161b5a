"""Still images: read/write round trips per format, grayscale, alpha, bad files."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from vidstyle.errors import InputError, OutputError
from vidstyle.media import MediaWriter, iter_frames, probe, read_image, write_image

from .helpers import psnr

LOSSLESS = [".png", ".bmp", ".tiff", ".tif"]
LOSSY = [".jpg", ".jpeg", ".webp"]


@pytest.fixture(scope="module")
def photo(data_dir):
    frame = read_image(data_dir / "content" / "kodim12.png")
    assert frame.rgb.shape == (512, 768, 3) and frame.alpha is None
    return frame.rgb


@pytest.mark.parametrize("suffix", LOSSLESS + LOSSY)
def test_round_trip(photo, tmp_path, suffix):
    path = write_image(tmp_path / f"out{suffix}", photo)
    back = read_image(path)
    assert back.rgb.shape == photo.shape and back.rgb.dtype == np.uint8
    if suffix in LOSSLESS:
        assert np.array_equal(back.rgb, photo)
    else:
        assert psnr(back.rgb, photo) > 35
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temp file left


def test_reads_jpeg_from_the_kit(data_dir):
    f = read_image(data_dir / "styles" / "starry_night.jpg")
    assert f.rgb.shape == (640, 1024, 3) and f.index == 0 and f.pts is None


def test_grayscale_becomes_rgb(data_dir, tmp_path):
    gray = Image.open(data_dir / "content" / "kodim12.png").convert("L")
    gray.save(tmp_path / "gray.png")
    f = read_image(tmp_path / "gray.png")
    assert f.rgb.shape == (512, 768, 3) and f.alpha is None
    assert np.array_equal(f.rgb[..., 0], np.asarray(gray))
    assert np.array_equal(f.rgb[..., 0], f.rgb[..., 2])
    info = probe(tmp_path / "gray.png")
    assert info.kind == "image" and not info.has_alpha


def test_sixteen_bit_grayscale_is_scaled(tmp_path):
    ramp = (np.arange(256, dtype=np.uint16) * 257).reshape(16, 16)
    Image.fromarray(ramp).save(tmp_path / "g16.png")
    f = read_image(tmp_path / "g16.png")
    assert np.array_equal(f.rgb[..., 1], ramp // 257)


def _rgba_from(data_dir) -> tuple[np.ndarray, np.ndarray]:
    rgb = np.asarray(Image.open(data_dir / "content" / "kodim12.png").convert("RGB"))[:128, :96]
    yy, xx = np.mgrid[0:128, 0:96]
    alpha = ((xx * 255) // 95).astype(np.uint8)
    alpha[yy < 20] = 0
    return np.ascontiguousarray(rgb), alpha


@pytest.mark.parametrize("suffix", [".png", ".webp", ".tiff"])
def test_alpha_is_kept(data_dir, tmp_path, suffix):
    rgb, alpha = _rgba_from(data_dir)
    path = write_image(tmp_path / f"a{suffix}", rgb, alpha)
    assert probe(path).has_alpha
    back = read_image(path)
    assert back.alpha is not None
    if suffix == ".webp":
        assert np.abs(back.alpha.astype(int) - alpha).max() <= 2
        assert psnr(back.rgb[alpha > 128], rgb[alpha > 128]) > 30
    else:
        assert np.array_equal(back.alpha, alpha) and np.array_equal(back.rgb, rgb)


def test_alpha_is_dropped_for_jpeg(data_dir, tmp_path):
    rgb, alpha = _rgba_from(data_dir)
    back = read_image(write_image(tmp_path / "a.jpg", rgb, alpha))
    assert back.alpha is None and psnr(back.rgb, rgb) > 30


def test_rgba_input_passes_through_writer(data_dir, tmp_path):
    rgb, alpha = _rgba_from(data_dir)
    Image.fromarray(np.dstack([rgb, alpha])).save(tmp_path / "in.png")
    src = tmp_path / "in.png"
    (frame,) = list(iter_frames(src))
    out = tmp_path / "out.webp"
    w = MediaWriter(out, source=probe(src))
    w.write(frame)
    assert not out.exists()  # written at close, atomically
    w.close()
    back = read_image(out)
    assert back.alpha is not None and np.abs(back.alpha.astype(int) - alpha).max() <= 2
    with pytest.raises(OutputError):
        with MediaWriter(tmp_path / "two.png", source=probe(src)) as w2:
            w2.write(frame)
            w2.write(frame)
    assert not (tmp_path / "two.png").exists()


def test_exif_orientation_is_applied(data_dir, tmp_path):
    im = Image.open(data_dir / "content" / "kodim12.png").convert("RGB")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 CW to display
    im.save(tmp_path / "o.jpg", exif=exif, quality=95)
    f = read_image(tmp_path / "o.jpg")
    assert f.rgb.shape == (768, 512, 3)
    info = probe(tmp_path / "o.jpg")
    assert (info.width, info.height, info.rotation) == (512, 768, 0)


@pytest.mark.parametrize("case", ["text", "truncated", "missing", "dir"])
def test_unreadable_images_raise_one_line(data_dir, tmp_path, case):
    if case == "text":
        path = tmp_path / "style.jpg"
        path.write_text("this is not a picture\n")
    elif case == "truncated":
        path = tmp_path / "cut.jpg"
        path.write_bytes((data_dir / "styles" / "udnie.jpg").read_bytes()[:3000])
    elif case == "missing":
        path = tmp_path / "nope.png"
    else:
        path = tmp_path
    with pytest.raises(InputError) as e:
        read_image(path)
    assert "\n" not in str(e.value) and str(path) in str(e.value)


def test_write_image_rejects_bad_suffix(tmp_path, photo):
    with pytest.raises(OutputError):
        write_image(tmp_path / "x.gif", photo)
    assert list(tmp_path.iterdir()) == []
