"""Options that would have no effect are errors that say why (was: accepted and
silently ignored)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from vidstyle.cli import cli
from vidstyle.engine import build_config
from vidstyle.errors import UsageError


@pytest.mark.parametrize("values, words", [
    ({"--lr": 0.1}, "--lr applies to --optimizer adam only"),
    ({"--lr": 0.1, "--optimizer": "lbfgs"}, "--lr applies to --optimizer adam only"),
    ({"--passes": 2}, "--passes has no effect with --temporal none"),
    ({"--temporal-weight": 1e6}, "--temporal-weight has no effect with --temporal none"),
    ({"--long-term": (1, 5)}, "--long-term has no effect with --temporal none"),
    ({"--long-term": (1, 5), "--temporal": "short"}, "--long-term applies to --temporal long"),
])
def test_optimization_options_without_effect_are_errors(values: dict, words: str) -> None:
    with pytest.raises(UsageError, match=words):
        build_config({"--method": "optim", **values})


def test_the_same_options_where_they_apply_are_fine() -> None:
    cfg, _ = build_config({"--method": "optim", "--optimizer": "adam", "--lr": 0.1})
    assert cfg.optim.lr == 0.1
    cfg, _ = build_config({"--temporal": "long", "--long-term": (1, 5), "--passes": 2,
                           "--temporal-weight": 1e6})
    assert cfg.temporal.long_term == (1, 5) and cfg.temporal.passes == 2
    cfg, _ = build_config({"--temporal": "short", "--passes": 3})
    assert cfg.temporal.passes == 3


@pytest.mark.parametrize("args, flag", [(["--crf", "20"], "--crf"),
                                        (["--x264-preset", "slow"], "--x264-preset"),
                                        (["--no-audio"], "--audio/--no-audio"),
                                        (["--audio"], "--audio/--no-audio")])
def test_encoding_options_for_a_still_image_output_are_errors(tmp_path: Path, args: list[str],
                                                              flag: str) -> None:
    photo = tmp_path / "photo.png"
    Image.fromarray(np.full((32, 40, 3), 128, np.uint8)).save(photo)
    for out in (["-o", str(tmp_path / "o.jpg")], []):  # given, and the default name
        r = CliRunner().invoke(cli, ["run", str(photo), *out, "--style", "starry", "-q",
                                     *args], catch_exceptions=False)
        assert r.exit_code == 2, r.output
        err = r.stderr.strip()
        assert len(err.splitlines()) == 1
        assert f"{flag} applies to video outputs only" in err and "still image" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["photo.png"]
    ok = CliRunner().invoke(cli, ["run", str(photo), "-o", str(tmp_path / "o.mp4"),
                                  "--style", "starry", "-q", *args])
    assert ok.exit_code == 0, ok.stderr  # a one-frame video: they apply
