"""The epsilon posterior: the published example, CDF properties, a second implementation
(adaptive quadrature over FNR, and Monte-Carlo push-forward), the density and the extremes."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import integrate, special, stats

from varbayes.privacy import (
    clopper_pearson_interval,
    epsilon_posterior,
    fpr_bounds,
    jeffreys_interval,
)

README = {"tp": 487, "fn": 0, "fp": 512, "tn": 1}

CASES = [
    (487, 0, 512, 1, 1e-5),  # the published example (worse than chance, FN = 0)
    (440, 60, 60, 440, 0.0),  # a moderate audit
    (50, 50, 50, 50, 0.0),  # chance: an atom at 0
    (5, 5, 5, 5, 0.01),  # few counts, large delta
]
EXTREMES = [
    (10**6, 0, 0, 10**6, 0.0),  # a perfect attack on 2e6 trials: epsilon beyond 20 in the tail
    (10**6, 3000, 1000, 999_000, 1e-5),  # very concentrated rates
    (10**6, 10**6, 10**6, 10**6, 1e-5),  # chance with 4e6 trials: epsilon ~ 1e-3
    (0, 0, 0, 1, 0.0),  # a single trial
]


def test_published_example_interval() -> None:
    post = epsilon_posterior(**README, delta=1e-5)
    lo, hi = post.interval(alpha=0.1)
    assert lo == pytest.approx(0.145, abs=0.02)
    assert hi == pytest.approx(6.399, abs=0.02)
    assert clopper_pearson_interval(**README, delta=1e-5, alpha=0.1) == (0.0, math.inf)
    assert jeffreys_interval(**README, delta=1e-5, alpha=0.1) == (0.0, math.inf)


def _reference_cdf(tp: int, fn: int, fp: int, tn: int, delta: float, eps: float) -> float:
    """A second implementation: adaptive Gauss-Kronrod over FNR = t^2 (removing the t^-1/2
    singularity of the Beta(1/2, .) density at 0) of the FPR posterior's mass in the slice."""
    ax, bx, ay, by = 0.5 + fn, 0.5 + tp, 0.5 + fp, 0.5 + tn

    def integrand(t: float) -> float:
        x = t * t
        lo, hi = fpr_bounds(x, eps, delta)
        dens = 2 * math.exp((ax - 0.5) * math.log(x) + (bx - 1) * math.log1p(-x)
                            - special.betaln(ax, bx)) if 0 < x < 1 else 0.0
        return dens * float(special.betainc(ay, by, hi) - special.betainc(ay, by, lo))

    edges = np.sqrt(np.concatenate([np.linspace(0, 0.05, 60), [0.2, 0.5, 1.0]]))
    return sum(integrate.quad(integrand, a, b, epsabs=1e-12, epsrel=1e-10, limit=200)[0]
               for a, b in zip(edges[:-1], edges[1:]))


@pytest.mark.parametrize("eps", [0.1439, 6.399])
def test_cdf_matches_a_second_quadrature(eps: float) -> None:
    post = epsilon_posterior(**README, delta=1e-5)
    assert post.cdf(eps) == pytest.approx(_reference_cdf(**README, delta=1e-5, eps=eps), abs=1e-6)


@pytest.mark.parametrize("case", CASES + EXTREMES)
def test_cdf_is_a_distribution_function(case: tuple) -> None:
    *counts, delta = case
    post = epsilon_posterior(*counts, delta=delta)
    grid = np.concatenate([[-1.0, 0.0], np.geomspace(1e-5, 30, 40), [math.inf]])
    cdf = post.cdf(grid)
    assert not np.any(np.isnan(cdf))
    assert cdf[0] == 0.0 and cdf[-1] == 1.0
    assert np.all((cdf >= 0) & (cdf <= 1))
    assert np.all(np.diff(cdf) >= -1e-7)  # monotone up to the quadrature tolerance


@pytest.mark.parametrize("case", CASES + EXTREMES)
def test_interval_matches_monte_carlo_push_forward(case: tuple) -> None:
    *counts, delta = case
    post = epsilon_posterior(*counts, delta=delta)
    lo, hi = post.interval(0.05)
    draws = post.sample(200_000, seed=3)
    # the empirical CDF of the draws at the quadrature quantiles is 0.025 and 0.975 within MC
    # error (binomial sd ~3.5e-4); at a lower end of 0 the atom must hold at least 0.025
    if lo > 0:
        assert np.mean(draws <= lo) == pytest.approx(0.025, abs=0.002)
    else:
        assert np.mean(draws == 0) >= 0.025 - 0.002
    assert np.mean(draws <= hi) == pytest.approx(0.975, abs=0.002)
    assert 0 <= lo <= hi < math.inf


def test_ppf_inverts_cdf_and_keeps_the_atom_at_zero() -> None:
    post = epsilon_posterior(50, 50, 50, 50, delta=0.02)
    atom = post.cdf(0.0)
    # a chance-level attack: the band |fnr + fpr - 1| <= delta holds epsilon = 0
    assert atom > 0.1
    assert epsilon_posterior(50, 50, 50, 50, delta=0.0).cdf(0.0) == 0.0  # no band, no atom
    assert post.ppf(atom / 2) == 0.0
    assert post.interval(0.05)[0] == 0.0
    for q in (atom + 0.01, 0.5, 0.9, 0.99):
        assert post.cdf(post.ppf(q)) == pytest.approx(q, abs=1e-6)


@pytest.mark.parametrize("case", [CASES[0], CASES[1], CASES[3], EXTREMES[0]])
def test_density_integrates_to_the_cdf(case: tuple) -> None:
    *counts, delta = case
    post = epsilon_posterior(*counts, delta=delta)
    lo, hi = post.interval(0.2)
    grid = np.linspace(max(lo, 1e-9), hi, 41)
    mass = integrate.simpson(post.pdf(grid), x=grid)
    assert mass == pytest.approx(post.cdf(hi) - post.cdf(lo), rel=2e-3)
    h = 1e-2 * (hi - lo)
    mid = 0.5 * (lo + hi)
    diff = (post.cdf(mid + h) - post.cdf(mid - h)) / (2 * h)
    assert post.pdf(mid) == pytest.approx(diff, rel=2e-3)


def test_extreme_counts_reach_epsilon_twenty() -> None:
    post = epsilon_posterior(10**6, 0, 0, 10**6)
    lo, hi = post.interval(0.05)
    assert 13 < lo < 15 and 20 < hi < 23  # a perfect attack on 10^6 + 10^6 trials
    assert 0.8 < post.cdf(20.0) < 1.0
    assert 0 < post.pdf(20.0) < 1 and math.isfinite(post.pdf(20.0))
    # at rates of 1e-3 the posterior sits near log(999/1) and is narrow
    post = epsilon_posterior(10**6 - 1000, 1000, 1000, 10**6 - 1000)
    lo, hi = post.interval(0.05)
    target = math.log((1 - 1e-3) / 1e-3)
    assert lo < target < hi and hi - lo < 0.2


def test_posterior_matches_beta_marginals() -> None:
    post = epsilon_posterior(tp=30, fn=10, fp=5, tn=55)
    assert post.fnr.mean() == pytest.approx(stats.beta(10.5, 30.5).mean())
    assert post.fpr.mean() == pytest.approx(stats.beta(5.5, 55.5).mean())
