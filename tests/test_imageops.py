"""Image helpers: the uint8 resize used on decoded frames agrees with the float resize; the
one image reader (orientation, modes, alpha rule, messages)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from vidstyle.imageops import load_image, resize, resize_uint8
from vidstyle.tensors import to_tensor


def test_resize_uint8_matches_the_antialiased_float_resize_on_a_photo(data_dir: Path) -> None:
    with Image.open(data_dir / "content" / "tubingen.jpg") as im:
        rgb = np.asarray(im.convert("RGB"))
    size = (rgb.shape[0] // 2 - 1, rgb.shape[1] // 2 + 1)
    fast = to_tensor(resize_uint8(rgb, size))
    ref = resize(to_tensor(rgb), size)
    assert fast.shape == ref.shape == (1, 3, *size)
    assert float((fast - ref).abs().mean()) < 0.01  # rounding and filter differences only
    # enlarging, same size, and an alpha plane keep their number of dimensions
    assert resize_uint8(rgb[:10, :12], (20, 24)).shape == (20, 24, 3)
    assert resize_uint8(rgb, rgb.shape[:2]) is rgb
    alpha = np.full((30, 40), 200, np.uint8)
    out = resize_uint8(alpha, (15, 20))
    assert out.shape == (15, 20) and out.dtype == np.uint8 and int(out.min()) == 200
    assert torch.equal(to_tensor(resize_uint8(rgb[:8, :8], (8, 8))), to_tensor(rgb[:8, :8]))


def _exif_rotated_jpeg(path: Path) -> np.ndarray:
    """A 20x40 (h x w) JPEG tagged EXIF Orientation 6 (display rotated 90 degrees
    clockwise, as phones save portrait photos); returns the upright (40, 20, 3) RGB."""
    stored = np.zeros((20, 40, 3), np.uint8)
    stored[:, :20] = (255, 0, 0)  # left half red, right half blue
    stored[:, 20:] = (0, 0, 255)
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(stored).save(path, quality=100, subsampling=0, exif=exif)
    return np.rot90(stored, k=-1)  # clockwise: red on top


def test_a_rotated_phone_photo_is_upright_as_style_content_and_frame(tmp_path: Path) -> None:
    """The one image reader: a photo with an EXIF orientation reads upright through
    load_image (styles, training, optimization), media.read_image (inputs) and the
    evaluation reader, with the same pixels."""
    from vidstyle.evaluate import _read_rgb
    from vidstyle.media import read_image

    path = tmp_path / "phone.jpg"
    upright = _exif_rotated_jpeg(path)
    frame = read_image(path).rgb
    assert frame.shape == upright.shape == (40, 20, 3)
    assert np.abs(frame.astype(int) - upright).max() < 8  # JPEG rounding only
    for tensor in (load_image(path), _read_rgb(path)):
        assert tensor.shape == (1, 3, 40, 20)
        assert torch.equal(tensor, to_tensor(frame))


def test_every_image_reader_tells_a_bad_file_in_the_same_words(tmp_path: Path,
                                                               data_dir: Path) -> None:
    from vidstyle.errors import InputError, StyleImageError
    from vidstyle.evaluate import _read_rgb
    from vidstyle.media import read_image

    text = tmp_path / "notes.png"
    text.write_text("hello, not an image\n")
    trunc = tmp_path / "trunc.jpg"
    trunc.write_bytes((data_dir / "content" / "tubingen.jpg").read_bytes()[:3000])
    for path in (text, trunc, tmp_path / "missing.jpg"):
        messages = []
        for read, error in ((load_image, StyleImageError), (read_image, InputError),
                            (_read_rgb, InputError)):
            with pytest.raises(error) as e:
                read(path)
            messages.append(str(e.value))
        assert len(set(messages)) == 1, messages
        assert str(path) in messages[0] and "PIL " not in messages[0]


def test_styles_keep_the_alpha_on_white_rule_and_16_bit_is_scaled(tmp_path: Path) -> None:
    """load_image composites alpha on white (documented; frames keep their alpha) and
    converts modes as the reader does: 16-bit grayscale scaled to 8 bits, not clipped."""
    from vidstyle.media import read_image

    rgba = np.zeros((4, 6, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[:, :3, 3] = 0
    rgba[:, 3:, 3] = 255
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    x = load_image(tmp_path / "a.png")
    assert float(x[..., :3].min()) == 1.0  # transparent: white
    assert torch.equal(x[0, :, 0, 3:], torch.tensor([[200 / 255] * 3, [0.0] * 3, [0.0] * 3]))
    assert read_image(tmp_path / "a.png").alpha is not None
    g16 = (np.arange(24, dtype=np.uint16).reshape(4, 6) * 2000).astype(np.uint16)
    Image.fromarray(g16).save(tmp_path / "g16.png")
    assert torch.equal(load_image(tmp_path / "g16.png"),
                       to_tensor(read_image(tmp_path / "g16.png").rgb))
    assert float(load_image(tmp_path / "g16.png").max()) > 0.65  # 46000/65535, not clipped
