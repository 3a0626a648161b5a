"""A restricted unpickler for third-party weight pickles: numpy arrays in plain
containers only, anything else (code, arbitrary objects) refused before it runs."""

from __future__ import annotations

import importlib
import io
import pickle
import re
from collections.abc import Iterator

from vidstyle.errors import WeightsError


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
