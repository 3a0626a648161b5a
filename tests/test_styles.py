"""Named styles: bundled names, the user's $VIDSTYLE_STYLES folder, image paths."""

from __future__ import annotations

from pathlib import Path

import pytest

from vidstyle.media import IMAGE_SUFFIXES, READ_ONLY_VIDEO_SUFFIXES, VIDEO_SUFFIXES
from vidstyle.styles import list_styles, resolve_style


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
