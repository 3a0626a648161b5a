"""Model files of the fast network, and the shipped-weights manifest.

A model file is a ``torch.save`` of a plain dict that loads with ``weights_only=True``::

    {"format": "vidstyle.stylenet", "version": 1,
     "arch": {"num_styles", "channels", "num_res_blocks", "outer_kernel",
              "space_to_depth" (only when not 1)},
     "style_names": [str, ...], "state_dict": {name: fp16/fp32 tensor},
     "info": {...}}          # training config, steps, losses: str/int/float/list/dict only

An adjustable model (:mod:`vidstyle.fast.adjustable`) has ``"format":
"vidstyle.adjustable"`` and its ``arch`` adds ``style_layers`` and ``hidden``; its
``state_dict`` holds the transformer (``transformer.*``), the conditioner and the loss
averages that define its default layer weights. Both kinds load with :func:`load_model`.

``vidstyle/data/weights/manifest.toml`` (package data) holds one table per shipped model
under ``[models.<name>]`` with at least ``file`` (relative to the manifest) and ``sha256``.
"""

from __future__ import annotations

import logging
import math
import os
import pickle
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path
from typing import Any

import torch

from vidstyle.config import DEFAULT_MODEL
from vidstyle.errors import StyleError, WeightsError, describe
from vidstyle.fast.adjustable import ADJUSTABLE_FORMAT, FP32_KEYS, AdjustableStyleNet
from vidstyle.fast.net import StyleNet
from vidstyle.fileio import atomic_path, atomic_write_text, sha256_file

log = logging.getLogger(__name__)

FORMAT = "vidstyle.stylenet"
VERSION = 1
#: The folder of shipped weights (holds manifest.toml): package data, so it is there in a
#: wheel install as well as in a checkout. vidstyle is always installed as plain files (never
#: imported from a zip), so the resource is a real folder.
DEFAULT_WEIGHTS_DIR = Path(str(files("vidstyle") / "data" / "weights"))


@dataclass(frozen=True)
class LoadedModel:
    """A network ready for inference with its style names and recorded metadata."""

    net: StyleNet | AdjustableStyleNet
    style_names: tuple[str, ...]
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def adjustable(self) -> bool:
        """Whether the layer weights are inputs (an :class:`AdjustableStyleNet`)."""
        return isinstance(self.net, AdjustableStyleNet)

    def style_index(self, name: str) -> int:
        """Index of style ``name``; raises StyleError for an unknown name."""
        try:
            return self.style_names.index(name)
        except ValueError:
            known = ", ".join(self.style_names)
            raise StyleError(f"unknown style {name!r} for this model (known: {known})") from None


def atomic_torch_save(obj: object, path: Path) -> None:
    """``torch.save`` ``obj`` to ``path`` atomically (see :func:`vidstyle.fileio.atomic_path`)."""
    with atomic_path(path, suffix=".tmp") as tmp:
        torch.save(obj, tmp)


def save_model(
    path: str | os.PathLike[str],
    net: StyleNet | AdjustableStyleNet,
    *,
    style_names: tuple[str, ...] | list[str],
    dtype: torch.dtype = torch.float16,
    info: Mapping[str, Any] | None = None,
) -> str:
    """Write ``net`` (weights cast to ``dtype``) atomically to ``path``; return its sha256."""
    if len(style_names) != net.num_styles:
        raise ValueError(f"{len(style_names)} style names for a {net.num_styles}-style net")
    state = {k: v.detach().to("cpu", torch.float32 if k in FP32_KEYS else dtype).contiguous()
             for k, v in net.state_dict().items()}
    payload = {
        "format": ADJUSTABLE_FORMAT if isinstance(net, AdjustableStyleNet) else FORMAT,
        "version": VERSION,
        "arch": net.arch(),
        "style_names": list(style_names),
        "state_dict": state,
        "info": dict(info or {}),
    }
    out = Path(path)
    atomic_torch_save(payload, out)
    return sha256_file(out)


def load_model(
    path: str | os.PathLike[str],
    *,
    device: torch.device | str = "cpu",
    expected_sha256: str | None = None,
) -> LoadedModel:
    """Load a model file (weights_only) as a float32 eval-mode :class:`StyleNet` on ``device``.

    Raises WeightsError when the file is missing, unreadable, of another format, or its
    sha256 differs from ``expected_sha256``.
    """
    p = Path(path)
    if not p.is_file():
        raise WeightsError(f"model file not found: {p}")
    if expected_sha256 is not None:
        got = sha256_file(p)
        if got != expected_sha256.lower():
            raise WeightsError(f"model file {p} has sha256 {got}, expected {expected_sha256}")
    try:
        payload = torch.load(p, map_location="cpu", weights_only=True)
    except OSError as e:
        raise WeightsError(f"cannot read model file {p}: {describe(e)}") from e
    except Exception as e:  # noqa: BLE001 - any unpickling problem is a bad weights file
        log.debug("torch.load(%s) failed", p, exc_info=True)  # torch's text: debug only
        raise WeightsError(f"{p} is not a vidstyle model file ({_unreadable(p, e)})") from e
    kinds = (FORMAT, ADJUSTABLE_FORMAT)
    if not isinstance(payload, dict) or payload.get("format") not in kinds:
        raise WeightsError(f"{p} is not a vidstyle model file (a PyTorch file of another "
                           "kind)")
    if payload.get("version") != VERSION:
        raise WeightsError(f"{p} has model format version {payload.get('version')}, need 1")
    try:
        arch = payload["arch"]
        common = {"num_styles": int(arch["num_styles"]), "channels": tuple(arch["channels"]),
                  "num_res_blocks": int(arch["num_res_blocks"]),
                  "outer_kernel": int(arch.get("outer_kernel", 9))}
        net: StyleNet | AdjustableStyleNet
        if payload["format"] == ADJUSTABLE_FORMAT:
            net = AdjustableStyleNet(**common, style_layers=tuple(arch["style_layers"]),
                                     hidden=int(arch["hidden"]),
                                     anchored=bool(arch.get("anchored", False)))
        else:
            net = StyleNet(**common, space_to_depth=int(arch.get("space_to_depth", 1)))
        state = {k: v.float() for k, v in payload["state_dict"].items()}
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        log.debug("%s: bad architecture record", p, exc_info=True)
        raise WeightsError(f"{p} is not a vidstyle model file (its architecture or "
                           "weights record is incomplete)") from e
    try:
        net.load_state_dict(state)
    except RuntimeError as e:
        raise WeightsError(f"model file {p} does not match its architecture: {e}") from e
    net.eval().requires_grad_(False).to(device)
    return LoadedModel(
        net=net, style_names=tuple(payload["style_names"]), info=dict(payload.get("info", {}))
    )


def _unreadable(p: Path, exc: Exception) -> str:
    """Why ``torch.load`` (weights only) could not read ``p``, in words."""
    with open(p, "rb") as f:
        head = f.read(4)
    if not head:
        return "the file is empty"
    if not (head.startswith(b"PK") or head.startswith(b"\x80")):  # zip, or legacy pickle
        return "not a PyTorch file"
    if isinstance(exc, pickle.UnpicklingError):
        return "it holds Python objects, not only tensors, and is never unpickled"
    return "a damaged or truncated PyTorch file"


# --- manifest -----------------------------------------------------------------------------


def read_manifest(path: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """Parse a weights manifest (default: the shipped one); {} when it is absent."""
    import tomllib

    p = Path(path) if path is not None else DEFAULT_WEIGHTS_DIR / "manifest.toml"
    if not p.is_file():
        return {}
    try:
        with open(p, "rb") as f:
            return tomllib.load(f)
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise WeightsError(f"cannot read weights manifest {p}: {e}") from e


def load_shipped(
    name: str,
    *,
    device: torch.device | str = "cpu",
    manifest_path: str | os.PathLike[str] | None = None,
) -> LoadedModel:
    """Load shipped model ``name`` from the manifest, checking its sha256."""
    mp = Path(manifest_path) if manifest_path is not None else DEFAULT_WEIGHTS_DIR / "manifest.toml"
    entry = read_manifest(mp).get("models", {}).get(name)
    if entry is None:
        raise WeightsError(f"no shipped model {name!r} in {mp}")
    return load_model(mp.parent / entry["file"], device=device, expected_sha256=entry["sha256"])


def _toml_key(k: str) -> str:
    if k and all(c.isalnum() or c in "_-" for c in k):
        return k
    return _toml_value(k)


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v) or math.isinf(v):
            return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf")
        return repr(v)
    if isinstance(v, str):
        out = v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\t", "\\t")
        return f'"{out}"'
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if v is None:
        return '""'
    raise TypeError(f"cannot write {type(v).__name__} to TOML")


def _dump_table(prefix: str, table: Mapping[str, Any], lines: list[str]) -> None:
    scalars = {k: v for k, v in table.items() if not isinstance(v, Mapping)}
    subs = {k: v for k, v in table.items() if isinstance(v, Mapping)}
    if prefix and (scalars or not subs):
        lines.append(f"[{prefix}]")
    for k, v in scalars.items():
        lines.append(f"{_toml_key(k)} = {_toml_value(v)}")
    if prefix and scalars:
        lines.append("")
    for k, v in subs.items():
        _dump_table(f"{prefix}.{_toml_key(k)}" if prefix else _toml_key(k), v, lines)


def dumps_toml(data: Mapping[str, Any], header: str = "") -> str:
    """Minimal TOML writer for nested dicts of str/int/float/bool/lists (None -> "")."""
    lines = [f"# {h}" for h in header.splitlines()] if header else []
    if lines:
        lines.append("")
    _dump_table("", data, lines)
    return "\n".join(lines).rstrip() + "\n"


def write_manifest_entry(
    name: str,
    entry: Mapping[str, Any],
    *,
    manifest_path: str | os.PathLike[str] | None = None,
) -> None:
    """Add or replace ``[models.<name>]`` in the manifest (atomic rewrite, other entries kept)."""
    mp = Path(manifest_path) if manifest_path is not None else DEFAULT_WEIGHTS_DIR / "manifest.toml"
    data = read_manifest(mp)
    data.setdefault("models", {})[name] = dict(entry)
    text = dumps_toml(
        data, header="Shipped weights: file (relative to this manifest), sha256, how each was made."
    )
    atomic_write_text(mp, text)


def shipped_style_names(name: str = DEFAULT_MODEL) -> tuple[str, ...]:
    """Style names of shipped model ``name`` from the manifest (no weights loaded);
    empty when the model is not shipped."""
    entry = read_manifest().get("models", {}).get(name)
    if entry is None or not (DEFAULT_WEIGHTS_DIR / entry["file"]).is_file():
        return ()
    return tuple(entry.get("styles", ()))
