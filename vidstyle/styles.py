"""Named styles: the seven bundled public-domain artworks plus a user's own folder.

``resolve_style("starry")`` returns the image path of a named style; any existing image
path is accepted as a style too. ``$VIDSTYLE_STYLES`` names a folder whose images add
names (file stem = name); bundled names win: a user image named like a bundled style is
left out of the names (with a warning) and stays usable by its path.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from vidstyle.errors import StyleError, StyleImageError
from vidstyle.media.common import is_image_path

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StyleInfo:
    """A named style: its image and provenance."""

    name: str
    path: Path
    artist: str = ""
    title: str = ""
    year: str = ""
    source: str = ""


_BUNDLED = (
    ("starry", "Vincent van Gogh", "The Starry Night", "1889", "jcjohnson/neural-style"),
    ("scream", "Edvard Munch", "The Scream", "1893", "jcjohnson/neural-style"),
    ("wave", "Katsushika Hokusai", "The Great Wave off Kanagawa", "c. 1831",
     "jcjohnson/fast-neural-style"),
    ("composition_vii", "Wassily Kandinsky", "Composition VII", "1913",
     "jcjohnson/fast-neural-style"),
    ("shipwreck", "J. M. W. Turner", "The Shipwreck of the Minotaur", "c. 1805",
     "jcjohnson/neural-style"),
    ("udnie", "Francis Picabia", "Udnie", "1913", "pytorch/examples"),
    ("woman_with_hat", "Henri Matisse", "Woman with a Hat", "1905", "jcjohnson/neural-style"),
)


def bundled_dir() -> Path:
    """Folder of the bundled style images inside the package."""
    return Path(str(resources.files("vidstyle") / "data" / "styles"))


def list_styles() -> list[StyleInfo]:
    """All named styles: the bundled ones, then those of ``$VIDSTYLE_STYLES``.

    A user image whose stem is a bundled name does not replace the bundled style: it is
    left out, with a warning naming it (it can still be used by its path).
    """
    styles: dict[str, StyleInfo] = {}
    base = bundled_dir()
    for name, artist, title, year, source in _BUNDLED:
        styles[name] = StyleInfo(name, base / f"{name}.jpg", artist, title, year, source)
    bundled = set(styles)
    user = os.environ.get("VIDSTYLE_STYLES")
    if user and Path(user).is_dir():
        for p in sorted(Path(user).iterdir()):
            if not (is_image_path(p) and p.is_file()):
                continue
            if p.stem in bundled:
                log.warning("$VIDSTYLE_STYLES: %s is not used as style %r, which is a built-in "
                            "style; rename it, or pass its path to --style", p, p.stem)
                continue
            styles[p.stem] = StyleInfo(p.stem, p, source=f"$VIDSTYLE_STYLES ({user})")
    return list(styles.values())


def resolve_style(spec: str) -> StyleInfo:
    """A style name or an image path -> StyleInfo.

    Raises StyleError (exit code 2) for an unknown name, StyleImageError for an image path
    that does not exist or is not a file.
    """
    by_name = {s.name: s for s in list_styles()}
    if spec in by_name:
        return by_name[spec]
    p = Path(spec).expanduser()
    if is_image_path(p) or os.sep in spec:
        if not p.exists():
            raise StyleImageError(f"style image not found: {spec}")
        if not p.is_file():
            raise StyleImageError(f"style image is not a file: {spec}")
        return StyleInfo(p.stem, p.resolve(), source=str(p))
    names = ", ".join(sorted(by_name))
    raise StyleError(f"unknown style {spec!r}: use one of {names}, or an image path")
