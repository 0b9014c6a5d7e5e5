"""Atomic file writes and safe model files.

Everything varbayes writes goes to a temporary file in the target folder and is renamed into
place, so a crash never leaves a half-written result, checkpoint or model. Model weights are
safetensors (no code runs on load) next to a JSON description.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from varbayes.errors import VarbayesError


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write `data` to `path` through a temporary file in the same folder and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write UTF-8 text atomically."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def to_jsonable(obj: Any) -> Any:
    """Turn tensors, numpy values, paths and dataclass-like objects into plain JSON values.

    Non-finite floats become strings ("nan", "inf", "-inf") so the file stays strict JSON.
    """
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, torch.Tensor):
        return to_jsonable(obj.detach().cpu().tolist())
    if hasattr(obj, "item") and hasattr(obj, "dtype"):  # numpy scalars and 0-d arrays
        return to_jsonable(obj.item() if getattr(obj, "ndim", 0) == 0 else obj.tolist())
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, float) and not math.isfinite(obj):
        return str(obj)
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    if hasattr(obj, "__dataclass_fields__"):
        return {k: to_jsonable(getattr(obj, k)) for k in obj.__dataclass_fields__}
    return str(obj)


def atomic_write_json(path: str | Path, obj: Any) -> Path:
    """Write `obj` as indented, strict JSON, atomically."""
    text = json.dumps(to_jsonable(obj), indent=2, allow_nan=False) + "\n"
    return atomic_write_text(path, text)


def read_json(path: str | Path) -> Any:
    """Read a JSON file, with a one-line error when it is missing or malformed."""
    path = Path(path)
    if not path.is_file():
        raise VarbayesError(f"missing file {path}")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise VarbayesError(f"{path} is not valid JSON ({e.msg} at line {e.lineno})") from None


def save_tensors(path: str | Path, tensors: Mapping[str, torch.Tensor]) -> Path:
    """Save named tensors as safetensors, atomically (contiguous CPU copies)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


_SAFETENSORS_MAX_HEADER = 100_000_000


def load_tensors(path: str | Path) -> dict[str, torch.Tensor]:
    """Load a safetensors file onto the CPU; anything else (a pickle, say) is refused."""
    path = Path(path)
    if not path.is_file():
        raise VarbayesError(f"missing model file {path}")
    with open(path, "rb") as f:
        head = f.read(8)
        n = int.from_bytes(head, "little") if len(head) == 8 else -1
        brace = f.read(1)
    if n <= 0 or n > _SAFETENSORS_MAX_HEADER or brace != b"{":
        raise VarbayesError(f"{path} is not a safetensors file; varbayes loads only safetensors")
    try:
        return load_file(str(path), device="cpu")
    except Exception as e:  # safetensors raises its own error types for corrupt files
        raise VarbayesError(f"{path} is not a valid safetensors file ({e})") from None
