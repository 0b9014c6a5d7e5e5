"""The prior-work baseline: separate intervals for FPR and FNR turned into an interval for epsilon.

Each rate gets its own two-sided interval at level 1 - alpha/2 (Clopper-Pearson, exact, or
Jeffreys, the equal-tailed Beta(k + 1/2, n - k + 1/2) interval), so the rectangle they span holds
both true rates with probability >= 1 - alpha by the union bound. Epsilon is monotone in each
rate on either side of the chance line fpr = 1 - fnr, so over the rectangle it is largest at the
corner (fnr_lo, fpr_lo) or (fnr_hi, fpr_hi) and smallest at the other one, or 0 when the
rectangle crosses the chance line.
"""

from __future__ import annotations

from typing import Literal

from scipy import stats

from varbayes.errors import one_of
from varbayes.privacy.counts import check_alpha, check_counts, check_delta
from varbayes.privacy.region import implied_epsilon

RateMethod = Literal["clopper-pearson", "jeffreys"]
RATE_METHODS = ("clopper-pearson", "jeffreys")


def rate_interval(k: int, n: int, alpha: float, method: RateMethod = "clopper-pearson") -> tuple[
    float, float
]:
    """Two-sided level 1 - alpha interval for a binomial proportion with k successes in n trials
    (the whole [0, 1] when n = 0)."""
    if method not in RATE_METHODS:
        raise one_of("rate interval method", method, RATE_METHODS)
    if n == 0:
        return 0.0, 1.0
    if method == "clopper-pearson":
        lo = stats.beta.ppf(alpha / 2, k, n - k + 1) if k > 0 else 0.0
        hi = stats.beta.ppf(1 - alpha / 2, k + 1, n - k) if k < n else 1.0
    else:
        lo = stats.beta.ppf(alpha / 2, k + 0.5, n - k + 0.5) if k > 0 else 0.0
        hi = stats.beta.ppf(1 - alpha / 2, k + 0.5, n - k + 0.5) if k < n else 1.0
    return float(lo), float(hi)


def separate_interval(
    tp: int, fn: int, fp: int, tn: int, delta: float = 0.0, alpha: float = 0.05,
    method: RateMethod = "clopper-pearson",
) -> tuple[float, float]:
    """The baseline interval for epsilon from separate level 1 - alpha/2 intervals on FNR and FPR
    (joint level >= 1 - alpha)."""
    counts = check_counts(tp, fn, fp, tn)
    delta, alpha = check_delta(delta), check_alpha(alpha)
    fnr_lo, fnr_hi = rate_interval(counts.fn, counts.members, alpha / 2, method)
    fpr_lo, fpr_hi = rate_interval(counts.fp, counts.non_members, alpha / 2, method)
    corners = (implied_epsilon(fpr_lo, fnr_lo, delta), implied_epsilon(fpr_hi, fnr_hi, delta))
    crosses = fpr_lo + fnr_lo <= 1.0 <= fpr_hi + fnr_hi
    return (0.0 if crosses else float(min(corners))), float(max(corners))


def clopper_pearson_interval(
    tp: int, fn: int, fp: int, tn: int, delta: float = 0.0, alpha: float = 0.05
) -> tuple[float, float]:
    """`separate_interval` with Clopper-Pearson intervals on the two rates."""
    return separate_interval(tp, fn, fp, tn, delta, alpha, "clopper-pearson")


def jeffreys_interval(
    tp: int, fn: int, fp: int, tn: int, delta: float = 0.0, alpha: float = 0.05
) -> tuple[float, float]:
    """`separate_interval` with Jeffreys intervals on the two rates."""
    return separate_interval(tp, fn, fp, tn, delta, alpha, "jeffreys")
