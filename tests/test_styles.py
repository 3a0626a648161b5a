"""Named styles: bundled names, the user's $VIDSTYLE_STYLES folder, image paths."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from vidstyle.media import IMAGE_SUFFIXES, READ_ONLY_VIDEO_SUFFIXES, VIDEO_SUFFIXES
from vidstyle.styles import bundled_dir, list_styles, resolve_style


def test_user_style_suffixes_are_the_media_image_suffixes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One suffix table: every still-image suffix media reads (any case) names a style,
    and video suffixes do not."""
    user = tmp_path / "mine"
    user.mkdir()
    images = [f"img{i}{s.upper() if i % 2 else s}" for i, s in enumerate(sorted(IMAGE_SUFFIXES))]
    videos = [f"vid{i}{s}" for i, s in enumerate(sorted(set(VIDEO_SUFFIXES)
                                                         | set(READ_ONLY_VIDEO_SUFFIXES)))]
    for name in images + videos + ["notes.txt"]:
        (user / name).write_bytes(b"x")
    monkeypatch.setenv("VIDSTYLE_STYLES", str(user))
    from_user = {s.path.name for s in list_styles() if s.path.parent == user}
    assert from_user == set(images)
    for name in images:  # a path with an image suffix is taken as a style image
        assert resolve_style(str(user / name)).path == (user / name).resolve()


def test_user_styles_do_not_shadow_built_in_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A user's starry.jpg used to replace the bundled starry silently."""
    user = tmp_path / "mine"
    user.mkdir()
    (user / "starry.jpg").write_bytes(b"my own starry")
    (user / "mine.png").write_bytes(b"a new name")
    monkeypatch.setenv("VIDSTYLE_STYLES", str(user))
    with caplog.at_level(logging.WARNING, logger="vidstyle.styles"):
        starry = resolve_style("starry")
    assert starry.path == bundled_dir() / "starry.jpg"
    assert starry.artist == "Vincent van Gogh"
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and str(user / "starry.jpg") in warnings[0]
    assert "built-in" in warnings[0]
    # The user's file is still usable by its path, and new names are still added.
    assert resolve_style(str(user / "starry.jpg")).path == (user / "starry.jpg").resolve()
    assert resolve_style("mine").path == user / "mine.png"
    names = [s.name for s in list_styles()]
    assert names.count("starry") == 1 and "mine" in names
