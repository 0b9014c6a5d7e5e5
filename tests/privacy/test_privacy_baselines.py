"""Clopper-Pearson and Jeffreys baselines: closed forms, nesting, and the epsilon rectangle."""

from __future__ import annotations

import math

import numpy as np
import pytest

from varbayes.privacy import (
    epsilon_posterior,
    implied_epsilon,
    jeffreys_interval,
    rate_interval,
    separate_interval,
)


@pytest.mark.parametrize("n", [1, 10, 500])
def test_clopper_pearson_closed_forms_at_the_edges(n: int) -> None:
    alpha = 0.05
    assert rate_interval(0, n, alpha) == pytest.approx((0.0, 1 - (alpha / 2) ** (1 / n)))
    assert rate_interval(n, n, alpha) == pytest.approx(((alpha / 2) ** (1 / n), 1.0))


def test_jeffreys_nests_inside_clopper_pearson() -> None:
    for n in (5, 50, 1000):
        for k in range(0, n + 1, max(1, n // 10)):
            cp = rate_interval(k, n, 0.05, "clopper-pearson")
            jf = rate_interval(k, n, 0.05, "jeffreys")
            assert cp[0] <= jf[0] + 1e-12 and jf[1] <= cp[1] + 1e-12


def test_no_trials_give_the_whole_unit_interval() -> None:
    assert rate_interval(0, 0, 0.05) == (0.0, 1.0)


def test_epsilon_rectangle_corners_by_hand() -> None:
    tp, fn, fp, tn = 900, 100, 50, 950
    fnr = rate_interval(fn, 1000, 0.025)
    fpr = rate_interval(fp, 1000, 0.025)
    lo, hi = separate_interval(tp, fn, fp, tn, alpha=0.05)
    assert lo == pytest.approx(math.log((1 - fnr[1]) / fpr[1]))  # largest rates: smallest eps
    assert hi == pytest.approx(math.log((1 - fnr[0]) / fpr[0]))  # smallest rates: largest eps
    assert lo < implied_epsilon(fp / 1000, fn / 1000) < hi


def test_rectangle_across_the_chance_line_starts_at_zero() -> None:
    assert separate_interval(52, 48, 49, 51, alpha=0.05)[0] == 0.0


def test_bayesian_interval_is_narrower_on_a_typical_audit() -> None:
    counts = {"tp": 440, "fn": 60, "fp": 60, "tn": 440}
    b_lo, b_hi = epsilon_posterior(**counts).interval(0.05)
    c_lo, c_hi = separate_interval(**counts, alpha=0.05)
    j_lo, j_hi = jeffreys_interval(**counts, alpha=0.05)
    assert b_hi - b_lo < 0.75 * (c_hi - c_lo)
    assert j_hi - j_lo < c_hi - c_lo
    assert c_lo < b_lo and b_hi < c_hi


def test_inverted_attack_gives_the_same_baseline() -> None:
    # flipping every guess swaps TP<->FN and FP<->TN: the same evidence about epsilon
    a = separate_interval(440, 60, 60, 440, alpha=0.05)
    b = separate_interval(60, 440, 440, 60, alpha=0.05)
    np.testing.assert_allclose(a, b, rtol=1e-9)


# Values computed with the paper's package, privacy-estimates 0.1.0.post1
# (compute_eps_lo_hi with method "beta" and "jeffreys"), a second implementation.
PEER = [
    ((440, 60, 60, 440, 0.0, 0.05), (1.6849617914998134, 2.3214205747681773),
     (1.693386654471866, 2.310702303455058)),
    ((5, 5, 5, 5, 0.01, 0.05), (0.0, 1.6574652625104669), (0.0, 1.4244064354084272)),
    ((154, 5, 144, 17, 1e-05, 0.05), (0.0, 2.999772504163533), (0.0, 2.8039889442288444)),
    ((900, 100, 50, 950, 1e-05, 0.05), (2.561113707654563, 3.248052354532711),
     (2.5702007408715484, 3.2357369772867335)),
]


@pytest.mark.parametrize(("case", "cp", "jf"), PEER)
def test_baselines_match_the_papers_package(case: tuple, cp: tuple, jf: tuple) -> None:
    *counts, delta, alpha = case
    np.testing.assert_allclose(separate_interval(*counts, delta, alpha, "clopper-pearson"), cp,
                               rtol=1e-9)
    np.testing.assert_allclose(jeffreys_interval(*counts, delta=delta, alpha=alpha), jf, rtol=1e-9)
