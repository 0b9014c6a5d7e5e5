"""The (epsilon, delta)-DP privacy region in the (FNR, FPR) plane, and the epsilon a point implies.

By the hypothesis-testing characterisation of differential privacy (Kairouz, Oh and Viswanath,
2015), every membership-inference attack on an (epsilon, delta)-DP mechanism has a false-negative
rate x and false-positive rate y inside

    R(epsilon, delta) = { max(0, 1 - delta - x e^eps, (1 - delta - x) e^-eps) <= y
                          <= min(1, 1 + (delta - x) e^-eps, delta + (1 - x) e^eps) }.

The region grows with epsilon, so a point (x, y) implies the smallest epsilon whose region holds
it; `implied_epsilon` computes that in closed form and `in_region` tests membership.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

# e^eps overflows a double above about 709; every region is the whole square long before that.
_MAX_EXPONENT = 700.0


def fpr_bounds(fnr: ArrayLike, epsilon: float, delta: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """The lowest and highest false-positive rate an (epsilon, delta)-DP mechanism allows at the
    false-negative rate `fnr` (the vertical slice of the privacy region)."""
    x = np.asarray(fnr, dtype=float)
    e_pos = np.exp(min(float(epsilon), _MAX_EXPONENT))
    e_neg = np.exp(-min(float(epsilon), _MAX_EXPONENT))
    zero, one = np.zeros_like(x), np.ones_like(x)
    lower = np.maximum.reduce([zero, 1.0 - delta - x * e_pos, (1.0 - delta - x) * e_neg])
    upper = np.minimum.reduce([one, 1.0 + (delta - x) * e_neg, delta + (1.0 - x) * e_pos])
    return lower, upper


def in_region(fpr: ArrayLike, fnr: ArrayLike, epsilon: float, delta: float = 0.0) -> np.ndarray:
    """Whether each (FPR, FNR) point lies in the (epsilon, delta) privacy region."""
    lower, upper = fpr_bounds(fnr, epsilon, delta)
    y = np.asarray(fpr, dtype=float)
    return (lower <= y) & (y <= upper)


def implied_epsilon(fpr: ArrayLike, fnr: ArrayLike, delta: float = 0.0) -> np.ndarray | float:
    """The smallest epsilon whose (epsilon, delta) region contains each (FPR, FNR) point.

    Worse-than-chance points (fpr > 1 - fnr) are first reflected to (1 - fnr, 1 - fpr), the
    symmetric attack that flips its guesses; then with r_lo <= r_hi the two rates,
    epsilon = log((1 - delta - r_hi) / r_lo), 0 when that is negative and infinity when r_lo = 0.
    Scalars in give a float out.
    """
    y = np.asarray(fpr, dtype=float)
    x = np.asarray(fnr, dtype=float)
    flip = y > 1.0 - x
    x, y = np.where(flip, 1.0 - y, x), np.where(flip, 1.0 - x, y)
    lo, hi = np.minimum(x, y), np.maximum(x, y)
    slack = 1.0 - delta - hi
    with np.errstate(divide="ignore", invalid="ignore"):
        # log1p keeps 1 - delta - hi accurate when delta + hi is tiny.
        eps = np.log1p(-(delta + hi)) - np.log(lo)
    eps = np.where(slack <= lo, 0.0, np.where(lo <= 0.0, np.inf, eps))
    return float(eps) if eps.ndim == 0 else eps
