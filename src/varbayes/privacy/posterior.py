"""The posterior over epsilon given the confusion counts of a membership-inference audit.

Following Zanella-Béguelin et al., "Bayesian Estimation of Differential Privacy" (ICML 2023):
the attack's false-negative and false-positive rates get independent Beta posteriors under
Jeffreys priors ("joint-beta"), FNR ~ Beta(0.5 + FN, 0.5 + TP) and FPR ~ Beta(0.5 + FP, 0.5 + TN),
and epsilon's posterior CDF is the posterior mass of the privacy region,
F(e) = P[(FNR, FPR) in R(e, delta)]. It has an atom at 0 (the band around the chance line) and
no mass at infinity. `interval(alpha)` is the equal-tailed credible interval
[F^-1(alpha/2), F^-1(1 - alpha/2)].

How F is computed (the reference; `sample` gives the Monte-Carlo push-forward as a check):
the region is a vertical band lower(x) <= y <= upper(x), so the inner integral over FPR is a
difference of Beta CDFs and F(e) = int_0^1 [G(upper(Q(u))) - G(lower(Q(u)))] du, where Q is the
FNR posterior's quantile function. Both terms are monotone in u, so on [u_i, u_i+1] the trapezoid
rule errs by at most (u_i+1 - u_i) |change of the term| / 2; intervals where that exceeds a
tolerance are bisected, which finds every sharp step however narrow (posteriors from 10^6
counts, epsilon up to 20 and beyond) without guessing where it is. The density is the
boundary flux: the mass of the thin strip the region's boundary sweeps as epsilon moves, over the
strip's width (see `_pdf_one`).
"""

from __future__ import annotations

import math
import numbers

import numpy as np
from numpy.typing import ArrayLike
from scipy import optimize, special, stats

from varbayes.data.validate import check_seed
from varbayes.errors import VarbayesError
from varbayes.privacy.counts import AuditCounts, check_alpha, check_counts, check_delta
from varbayes.privacy.region import fpr_bounds, implied_epsilon

EPS_MAX = 50.0
"""Quantiles above this epsilon are reported as infinity (e^50 is 5e21: no audit of fewer than
about 10^20 trials can tell such values apart)."""

_BASE_INTERVALS = 2048  # initial uniform grid in the FNR posterior's quantile u
_STEP_TOL = 1e-7  # bisect a grid interval while width * change of a CDF term exceeds this
_MAX_LEVELS = 64
_PDF_STEP = 1e-4  # half-width of the strip whose mass over its width is the density


def epsilon_posterior(tp: int, fn: int, fp: int, tn: int, delta: float = 0.0) -> EpsilonPosterior:
    """The posterior over epsilon of an audit with these confusion counts, at the given delta.

    >>> post = epsilon_posterior(tp=487, fn=0, fp=512, tn=1, delta=1e-5)
    >>> lo, hi = post.interval(alpha=0.1)   # about (0.145, 6.399)
    """
    return EpsilonPosterior(check_counts(tp, fn, fp, tn), check_delta(delta))


class EpsilonPosterior:
    """Posterior over epsilon: `cdf`, `pdf`, `ppf`, `interval`, and posterior samples."""

    def __init__(self, counts: AuditCounts, delta: float = 0.0) -> None:
        self.counts = counts
        self.delta = float(delta)
        # Jeffreys prior Beta(1/2, 1/2) on each rate; x = FNR, y = FPR as in the region.
        self._ax, self._bx = 0.5 + counts.fn, 0.5 + counts.tp
        self._ay, self._by = 0.5 + counts.fp, 0.5 + counts.tn
        self.fnr = stats.beta(self._ax, self._bx)
        self.fpr = stats.beta(self._ay, self._by)
        u = np.linspace(0.0, 1.0, _BASE_INTERVALS + 1)
        self._u0, self._x0 = u, self._quantile_x(u)
        self._guesses: np.ndarray | None = None
        self._atom: float | None = None

    # --- distribution functions --------------------------------------------------------------

    def cdf(self, epsilon: ArrayLike) -> np.ndarray | float:
        """P[eps <= epsilon]; includes the atom at 0, and is 0 below 0."""
        return _elementwise(self._cdf_one, _checked(epsilon, "epsilon", -math.inf, math.inf))

    def pdf(self, epsilon: ArrayLike) -> np.ndarray | float:
        """The density of epsilon on (0, inf) (the atom at 0, `cdf(0)`, is not part of it)."""
        return _elementwise(self._pdf_one, _checked(epsilon, "epsilon", -math.inf, math.inf))

    def ppf(self, q: ArrayLike) -> np.ndarray | float:
        """The smallest epsilon with cdf(epsilon) >= q: 0 when the atom at 0 covers q, infinity
        when the quantile lies above `EPS_MAX`."""
        return _elementwise(self._ppf_one, _checked(q, "q", 0.0, 1.0))

    def interval(self, alpha: float = 0.05) -> tuple[float, float]:
        """Equal-tailed credible interval [F^-1(alpha/2), F^-1(1 - alpha/2)] (level 1 - alpha)."""
        a = check_alpha(alpha)
        return float(self._ppf_one(a / 2)), float(self._ppf_one(1 - a / 2))

    def median(self) -> float:
        return float(self._ppf_one(0.5))

    # --- Monte-Carlo push-forward ------------------------------------------------------------

    def sample_rates(self, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """`n` posterior draws of (FPR, FNR)."""
        if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1:
            raise VarbayesError(f"n must be a positive number of draws; got {n!r}")
        rng = np.random.default_rng(check_seed(seed))
        return rng.beta(self._ay, self._by, n), rng.beta(self._ax, self._bx, n)

    def sample(self, n: int = 20_000, seed: int = 0) -> np.ndarray:
        """`n` posterior draws of epsilon: (FPR, FNR) draws pushed through `implied_epsilon`
        (each reflected first when worse than chance; infinity where a rate is 0)."""
        fpr, fnr = self.sample_rates(n, seed)
        return np.asarray(implied_epsilon(fpr, fnr, self.delta))

    def sample_interval(self, alpha: float = 0.05, n: int = 20_000, seed: int = 0) -> tuple[
        float, float
    ]:
        """The equal-tailed interval from `n` push-forward samples (empirical quantiles, which
        keep the atom at 0 and any infinite draws)."""
        a = check_alpha(alpha)
        q = np.quantile(self.sample(n, seed), [a / 2, 1 - a / 2], method="inverted_cdf")
        return float(q[0]), float(q[1])

    # --- quadrature --------------------------------------------------------------------------

    def _quantile_x(self, u: np.ndarray) -> np.ndarray:
        return special.betaincinv(self._ax, self._bx, u)

    def _terms(self, x: np.ndarray, eps: float) -> tuple[np.ndarray, np.ndarray]:
        """G(upper(x)) and G(lower(x)), G the FPR posterior CDF."""
        lower, upper = fpr_bounds(x, eps, self.delta)
        g = special.betainc
        return g(self._ay, self._by, upper), g(self._ay, self._by, lower)

    def _grid(self, *eps: float) -> tuple[np.ndarray, list[tuple[np.ndarray, np.ndarray]]]:
        """The adaptive grid in u for these epsilons: u and, per epsilon, (G(upper), G(lower))."""
        u, x = self._u0, self._x0
        terms = [self._terms(x, e) for e in eps]
        for _ in range(_MAX_LEVELS):
            w = np.diff(u)
            bound = sum(w * (np.abs(np.diff(hi)) + np.abs(np.diff(lo))) for hi, lo in terms)
            split = np.flatnonzero(bound > _STEP_TOL)
            if split.size == 0:
                break
            # k pieces per flagged interval: sqrt(bound / tol) fixes a smooth stretch (its
            # bound falls as width^2) in one level; a step needs several levels of at most 16.
            k = np.clip(np.ceil(np.sqrt(bound[split] / _STEP_TOL)), 2, 16).astype(int)
            at = np.repeat(split + 1, k - 1)
            frac = (np.arange(at.size) - np.repeat(np.cumsum(k - 1) - (k - 1), k - 1) + 1) / (
                np.repeat(k, k - 1))
            # new nodes are placed in x and mapped to u by the cheap forward CDF (the inverse
            # costs five times more); the trapezoid rule needs only consistent (u, x) pairs
            mid_x = x[at - 1] + frac * (x[at] - x[at - 1])
            mid_u = special.betainc(self._ax, self._bx, mid_x)
            u, x = np.insert(u, at, mid_u), np.insert(x, at, mid_x)
            terms = [
                (np.insert(hi, at, m_hi), np.insert(lo, at, m_lo))
                for (hi, lo), e in zip(terms, eps)
                for m_hi, m_lo in [self._terms(mid_x, e)]
            ]
        return u, terms

    def _cdf_one(self, eps: float) -> float:
        if math.isnan(eps):
            return math.nan
        if eps < 0:
            return 0.0
        if math.isinf(eps):
            return 1.0
        u, [(hi, lo)] = self._grid(eps)
        return float(np.clip(np.trapezoid(hi - lo, u), 0.0, 1.0))

    def _pdf_one(self, eps: float) -> float:
        # The boundary flux as the posterior mass of the thin strip that the region's boundary
        # sweeps between eps - h and eps + h, over 2h, on one grid refined for both: unlike the
        # pointwise flux integrand g(bound) * d bound / d eps, the strip's mass stays finite where
        # the Beta density is infinite (at rates 0 and 1), so the trapezoid rule stays accurate.
        if math.isnan(eps):
            return math.nan
        if eps <= 0 or math.isinf(eps):
            return 0.0
        h = _PDF_STEP * min(eps, 1.0)
        u, [(hi_p, lo_p), (hi_m, lo_m)] = self._grid(eps + h, eps - h)
        strip = (hi_p - hi_m) - (lo_p - lo_m)
        return float(max(np.trapezoid(strip, u) / (2 * h), 0.0))

    def _ppf_one(self, q: float) -> float:
        if not 0.0 <= q <= 1.0:
            return math.nan
        if self._atom_at_zero() >= q:
            return 0.0
        lo, hi = self._bracket(q)
        if math.isinf(hi):
            return math.inf
        return float(optimize.brentq(lambda e: self._cdf_one(e) - q, lo, hi, xtol=1e-8,
                                     rtol=1e-8))

    def _atom_at_zero(self) -> float:
        if self._atom is None:
            self._atom = self._cdf_one(0.0)
        return self._atom

    def _bracket(self, q: float) -> tuple[float, float]:
        """An interval [lo, hi] with F(lo) < q <= F(hi), started around the push-forward
        quantile of a few thousand draws (a guess only; the root is found on F itself), and
        widened until it brackets; hi is infinity when F(EPS_MAX) < q."""
        if self._guesses is None:
            self._guesses = np.sort(self.sample(4000, seed=12345))
        guess = float(np.quantile(self._guesses, q, method="inverted_cdf"))
        guess = min(guess, EPS_MAX) if math.isfinite(guess) else EPS_MAX
        lo, hi = max(0.0, 0.9 * guess - 0.02), min(1.1 * guess + 0.02, EPS_MAX)
        while lo > 0.0 and self._cdf_one(lo) >= q:
            lo, hi = max(0.0, 2 * lo - hi), lo
        while self._cdf_one(hi) < q:
            if hi >= EPS_MAX:
                return lo, math.inf
            lo, hi = hi, min(EPS_MAX, hi + 2 * (hi - lo) + 0.1)
        return lo, hi


def _checked(values: ArrayLike, name: str, lo: float, hi: float) -> np.ndarray:
    """`values` as floats in [lo, hi] (NaN never is), or one line naming the problem."""
    try:
        arr = np.asarray(values, dtype=float)
    except (TypeError, ValueError):
        raise VarbayesError(f"{name} must be numbers; got {values!r}") from None
    if not bool(np.all((arr >= lo) & (arr <= hi))):
        bad = float(arr[~((arr >= lo) & (arr <= hi))].ravel()[0])
        raise VarbayesError(f"{name} must be numbers in [{lo:g}, {hi:g}]; got {bad:g}")
    return arr


def _elementwise(fn, values: ArrayLike) -> np.ndarray | float:  # noqa: ANN001
    arr = np.asarray(values, dtype=float)
    out = np.array([fn(float(v)) for v in arr.ravel()]).reshape(arr.shape)
    return float(out) if out.ndim == 0 else out
