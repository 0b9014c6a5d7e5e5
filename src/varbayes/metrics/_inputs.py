"""Input conversion and validation shared by the metric functions.

Metrics take torch tensors, numpy arrays or nested lists, convert them to float64 CPU tensors
(metrics are end-of-run numbers; float64 keeps sums over many examples exact enough to compare
with other libraries) and raise `VarbayesError` with one line naming the problem.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from varbayes.errors import VarbayesError

ROW_SUM_TOL = 1e-3
"""Rows of class probabilities must sum to 1 within this absolute tolerance (float32 softmax
over thousands of classes stays far inside it; logits or unnormalised scores do not)."""


def as_float(x: Any, name: str) -> torch.Tensor:
    """`x` as a float64 CPU tensor, refusing non-numeric input, complex values, NaN and Inf."""
    try:  # lists go through numpy so Python floats stay float64 (torch would make them float32)
        t = x.detach() if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))
    except (TypeError, ValueError, RuntimeError):
        raise VarbayesError(f"{name} must be a numeric tensor or array") from None
    if t.is_complex() or t.dtype not in _REAL_DTYPES:
        raise VarbayesError(f"{name} must be real-valued; got dtype {t.dtype}")
    t = t.cpu().to(torch.float64)
    if not torch.isfinite(t).all():
        raise VarbayesError(f"{name} contains NaN or Inf; all values must be finite")
    return t


_REAL_DTYPES = {
    torch.bool, torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64,
    torch.float16, torch.bfloat16, torch.float32, torch.float64,
}  # fmt: skip


def check_nonempty(t: torch.Tensor, name: str) -> None:
    if t.numel() == 0:
        raise VarbayesError(f"{name} is empty (shape {tuple(t.shape)}); need at least one value")


def as_probs(x: Any, name: str = "probs", ndim: int = 2) -> torch.Tensor:
    """Class probabilities with `ndim` dims, the classes last: values in [0, 1], rows sum to 1."""
    p = as_float(x, name)
    if p.ndim != ndim:
        want = "(N, C)" if ndim == 2 else "(S, N, C)"
        raise VarbayesError(f"{name} must have shape {want}; got shape {tuple(p.shape)}")
    check_nonempty(p, name)
    if p.min() < 0 or p.max() > 1:
        raise VarbayesError(f"{name} must be probabilities in [0, 1]; got values in "
                            f"[{p.min().item():.4g}, {p.max().item():.4g}] (logits? apply softmax)")
    dev = (p.sum(-1) - 1).abs().max().item()
    if dev > ROW_SUM_TOL:
        raise VarbayesError(f"{name} rows must sum to 1 within {ROW_SUM_TOL:g}; the worst row "
                            f"is off by {dev:.4g}")
    return p


def as_labels(x: Any, n: int, n_classes: int, name: str = "labels") -> torch.Tensor:
    """Integer class labels of shape (n,) in [0, n_classes); integral floats are accepted."""
    y = as_float(x, name)
    if y.ndim != 1 or y.shape[0] != n:
        raise VarbayesError(f"{name} must have shape ({n},) to match probs; "
                            f"got shape {tuple(y.shape)}")
    if not torch.equal(y, y.round()):
        raise VarbayesError(f"{name} must be integer class indices")
    if y.min() < 0 or y.max() >= n_classes:
        raise VarbayesError(f"{name} must lie in [0, {n_classes - 1}] for {n_classes} classes; got "
                            f"values in [{int(y.min())}, {int(y.max())}]")
    return y.long()


def probs_and_labels(probs: Any, labels: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """Checked float64 (N, C) probabilities and int64 (N,) labels."""
    p = as_probs(probs)
    return p, as_labels(labels, p.shape[0], p.shape[1])


def as_count(x: Any, name: str, minimum: int = 1) -> int:
    """A Python int >= `minimum` (bools refused)."""
    if isinstance(x, bool) or not isinstance(x, int) or x < minimum:
        raise VarbayesError(f"{name} must be an integer >= {minimum}; got {short(x)}")
    return x


def as_bins(n_bins: Any) -> int:
    return as_count(n_bins, "n_bins")


def as_number(x: Any, name: str, positive: bool = False) -> float:
    """A finite Python float (and > 0 when `positive`), from a number or a one-element tensor."""
    try:
        v = float(x)
    except (TypeError, ValueError, RuntimeError):
        raise VarbayesError(f"{name} must be a single number; got {short(x)}") from None
    if not math.isfinite(v) or (positive and v <= 0):
        bound = " > 0" if positive else ""
        raise VarbayesError(f"{name} must be a finite number{bound}; got {short(x)}")
    return v


def short(x: Any, limit: int = 60) -> str:
    """A one-line, bounded description of a value for an error message."""
    if hasattr(x, "shape") and getattr(x, "ndim", 0) > 0:
        return f"an array of shape {tuple(x.shape)}"
    text = " ".join(repr(x).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
