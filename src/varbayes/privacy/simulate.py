"""Simulated audits whose true epsilon is known exactly, and the interval study run on them.

Two settings, both from the statistics spec:

- a trade-off audit: the attack's error rates sit on the (epsilon, 0) boundary at the equal
  error point, FPR = FNR = 1 / (1 + e^eps), with n member and n non-member trials;
- the Gaussian mechanism: a sum query of sensitivity 1 released with N(0, sigma^2) noise,
  sigma from the analytic Gaussian mechanism (Balle and Wang, 2018) for (epsilon, delta), audited
  by the likelihood-ratio attack thresholded at the equal-error point 1/2. That single-threshold
  attack can only certify its operating point's epsilon,
  eps_op = log((1 - delta - FNR*) / FPR*) with FPR* = FNR* = Phi(-1 / (2 sigma)).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import optimize, special

from varbayes.errors import VarbayesError, one_of
from varbayes.privacy.baselines import separate_interval
from varbayes.privacy.counts import AuditCounts, check_alpha, check_delta
from varbayes.privacy.posterior import EpsilonPosterior


def tradeoff_counts(epsilon: float, n: int, repeats: int, seed: int = 0) -> list[AuditCounts]:
    """`repeats` audits with n members and n non-members whose true rates are
    FPR = FNR = 1 / (1 + e^epsilon) (so the true epsilon at delta = 0 is `epsilon`)."""
    rng = np.random.default_rng(seed)
    rate = 1.0 / (1.0 + math.exp(epsilon))
    fn, fp = rng.binomial(n, rate, repeats), rng.binomial(n, rate, repeats)
    return [AuditCounts(tp=n - int(a), fn=int(a), fp=int(b), tn=n - int(b)) for a, b in zip(fn, fp)]


def analytic_gaussian_sigma(epsilon: float, delta: float) -> float:
    """The smallest noise sigma for which the Gaussian mechanism with sensitivity 1 is
    (epsilon, delta)-DP: the root of Phi(1/(2s) - eps s) - e^eps Phi(-1/(2s) - eps s) = delta."""
    delta = check_delta(delta)
    if delta <= 0:
        raise VarbayesError("the Gaussian mechanism needs delta > 0; got delta = 0")

    def excess(log_s: float) -> float:
        s = math.exp(log_s)
        a = special.ndtr(1 / (2 * s) - epsilon * s)
        b = math.exp(epsilon + special.log_ndtr(-1 / (2 * s) - epsilon * s))
        return float(a - b - delta)

    return math.exp(optimize.brentq(excess, math.log(1e-4), math.log(1e4), xtol=1e-12))


def gaussian_operating_epsilon(sigma: float, delta: float) -> float:
    """The epsilon implied by the equal-error operating point of the likelihood-ratio attack on
    the Gaussian mechanism: log((1 - delta - r) / r) with r = Phi(-1 / (2 sigma))."""
    log_r = float(special.log_ndtr(-1 / (2 * sigma)))
    return math.log1p(-(delta + math.exp(log_r))) - log_r


def gaussian_mechanism_counts(sigma: float, n: int, repeats: int, seed: int = 0) -> list[
    AuditCounts
]:
    """`repeats` audits of n member runs (output 1 + noise) and n non-member runs (output 0 +
    noise), each guessing "member" when the output is at least 1/2."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(repeats):
        members = 1.0 + sigma * rng.standard_normal(n)
        non_members = sigma * rng.standard_normal(n)
        tp, fp = int(np.sum(members >= 0.5)), int(np.sum(non_members >= 0.5))
        out.append(AuditCounts(tp=tp, fn=n - tp, fp=fp, tn=n - fp))
    return out


@dataclass(frozen=True)
class IntervalStudy:
    """Mean width and coverage of the true epsilon for each interval construction."""

    truth: float
    repeats: int
    width: dict[str, float]
    coverage: dict[str, float]

    @property
    def width_ratio(self) -> float:
        """Mean joint-beta width over mean Clopper-Pearson width."""
        cp = self.width["clopper-pearson"]
        return self.width["joint-beta"] / cp if cp > 0 else math.nan


def interval_study(counts: Sequence[AuditCounts], truth: float, delta: float = 0.0,
                   alpha: float = 0.05, method: Literal["quadrature", "sampling"] = "quadrature",
                   samples: int = 20_000) -> IntervalStudy:
    """Equal-tailed joint-beta credible intervals and the separate-interval baselines at the same
    level on every audit, scored against the true epsilon. The joint-beta interval comes from
    quadrature (the reference) or from `samples` push-forward draws (faster, Monte-Carlo error)."""
    delta, alpha = check_delta(delta), check_alpha(alpha)
    if method not in ("quadrature", "sampling"):
        raise one_of("interval method", method, ["quadrature", "sampling"])
    rows: dict[str, list[tuple[float, float]]] = {"joint-beta": [], "clopper-pearson": [],
                                                  "jeffreys": []}
    for i, c in enumerate(counts):
        post = EpsilonPosterior(c, delta)
        rows["joint-beta"].append(post.interval(alpha) if method == "quadrature"
                                  else post.sample_interval(alpha, samples, seed=i))
        for method in ("clopper-pearson", "jeffreys"):
            rows[method].append(separate_interval(**c.as_dict(), delta=delta, alpha=alpha,
                                                  method=method))
    width = {k: float(np.mean([hi - lo for lo, hi in v])) for k, v in rows.items()}
    coverage = {k: float(np.mean([lo <= truth <= hi for lo, hi in v])) for k, v in rows.items()}
    return IntervalStudy(truth, len(counts), width, coverage)
