"""Pick the compute device: CUDA when present, else the CPU."""

from __future__ import annotations

import torch

from vidstyle.errors import UsageError


def pick_device(name: str = "auto") -> torch.device:
    """Return the torch device for ``name`` in {"auto", "cpu", "cuda"}.

    "auto" picks CUDA when available, else the CPU; "cuda" without a GPU is a usage error.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda asked for, but no CUDA device is available")
    if name not in ("cpu", "cuda"):
        raise UsageError(f"unknown device {name!r}: use auto, cpu or cuda")
    return torch.device(name)
