"""A file that is not a vidstyle model gives one fixed line in words (was: torch's text,
e.g. "cannot read model file fake.pt: 101" or its multi-line weights_only advice)."""

from __future__ import annotations

import fractions
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from vidstyle.cli import cli
from vidstyle.errors import WeightsError
from vidstyle.fast.model_io import DEFAULT_WEIGHTS_DIR, load_model


def _files(tmp: Path, data_dir: Path) -> dict[str, tuple[Path, str]]:
    fake = tmp / "fake.pt"
    fake.write_text("hello\n")
    empty = tmp / "empty.pt"
    empty.write_bytes(b"")
    jpg = data_dir / "content" / "amber.jpg"
    shipped = (DEFAULT_WEIGHTS_DIR / "fast7.pt").read_bytes()
    trunc = tmp / "trunc.pt"
    trunc.write_bytes(shipped[: len(shipped) // 2])
    objects = tmp / "objects.pt"
    torch.save({"format": fractions.Fraction(1, 2)}, objects)
    other = tmp / "other.pt"
    torch.save({"weights": torch.zeros(3)}, other)
    return {
        "text": (fake, "not a PyTorch file"),
        "empty": (empty, "the file is empty"),
        "jpeg": (jpg, "not a PyTorch file"),
        "truncated": (trunc, "a damaged or truncated PyTorch file"),
        "objects": (objects, "it holds Python objects, not only tensors"),
        "other": (other, "a PyTorch file of another kind"),
    }


@pytest.mark.parametrize("case", ["text", "empty", "jpeg", "truncated", "objects", "other"])
def test_not_a_model_file_is_one_line_in_words(case: str, tmp_path: Path,
                                                data_dir: Path) -> None:
    path, reason = _files(tmp_path, data_dir)[case]
    with pytest.raises(WeightsError) as info:
        load_model(path)
    msg = str(info.value)
    assert msg.startswith(f"{path} is not a vidstyle model file ({reason}")
    assert len(msg.splitlines()) == 1
    for leak in ("weights_only", "101", "Unpickl", "PytorchStreamReader", "Error"):
        assert leak not in msg.replace(str(path), ""), msg


def test_the_cli_says_it_in_one_line(tmp_path: Path, data_dir: Path) -> None:
    photo = tmp_path / "p.png"
    Image.fromarray(np.full((24, 32, 3), 90, np.uint8)).save(photo)
    for case in ("text", "jpeg"):
        path, reason = _files(tmp_path, data_dir)[case]
        r = CliRunner().invoke(cli, ["run", str(photo), "-o", str(tmp_path / "o.png"),
                                     "--method", "fast", "--style", "starry", "--model",
                                     str(path), "-q"], catch_exceptions=False)
        assert r.exit_code == 1
        assert r.stderr.strip() == (f"vidstyle: error: {path} is not a vidstyle model file "
                                    f"({reason})")
