"""Standardization with training statistics.

Statistics are computed in float64 on the training part only and applied to every part, so no
test information leaks into preprocessing. Constant features get a scale of 1 (they stay at 0
instead of dividing by zero).
"""

from __future__ import annotations

import numpy as np

# Features whose training std is below this are treated as constant.
MIN_STD = 1e-8


def fit_standardizer(
    x_train: np.ndarray, axis: int | tuple[int, ...] | None = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std (ddof 0) of `x_train` over `axis` (kept as size-1 dims for broadcasting,
    without the example axis); std below MIN_STD becomes 1."""
    x = np.asarray(x_train, dtype=np.float64)
    mean = x.mean(axis=axis, keepdims=True)
    std = x.std(axis=axis, keepdims=True)
    std = np.where(std < MIN_STD, 1.0, std)
    if axis is None:
        return mean.reshape(()), std.reshape(())
    return mean[0], std[0]


def standardize(x: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """(x - mean) / std as float32."""
    return ((np.asarray(x, dtype=np.float64) - mean) / std).astype(np.float32)
