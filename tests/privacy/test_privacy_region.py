"""The (epsilon, delta) privacy region and the epsilon a point implies, against closed forms."""

from __future__ import annotations

import math

import numpy as np
import pytest

from varbayes.privacy import fpr_bounds, implied_epsilon, in_region


def test_region_at_zero_epsilon_is_the_chance_line() -> None:
    x = np.linspace(0, 1, 11)
    lower, upper = fpr_bounds(x, 0.0, 0.0)
    np.testing.assert_allclose(lower, 1 - x)
    np.testing.assert_allclose(upper, 1 - x)


def test_region_bounds_closed_form() -> None:
    # eps = log 4, delta = 0: lower = max(1 - 4x, (1 - x)/4), upper = min(1 - x/4, 4(1 - x))
    x = np.array([0.0, 0.1, 0.2, 0.5, 0.9, 1.0])
    lower, upper = fpr_bounds(x, math.log(4), 0.0)
    np.testing.assert_allclose(lower, np.maximum(1 - 4 * x, (1 - x) / 4))
    np.testing.assert_allclose(upper, np.minimum(1 - x / 4, 4 * (1 - x)))
    assert np.all(lower <= 1 - x) and np.all(1 - x <= upper)


def test_randomized_response_sits_on_the_boundary() -> None:
    for eps in (0.5, 1.0, 3.0, 8.0):
        r = 1 / (1 + math.exp(eps))
        assert in_region(r, r, eps + 1e-9)
        assert not in_region(r, r, eps - 1e-3)
        assert implied_epsilon(r, r) == pytest.approx(eps, rel=1e-9)


def test_implied_epsilon_closed_forms() -> None:
    assert implied_epsilon(0.1, 0.2) == pytest.approx(math.log(0.8 / 0.1))
    assert implied_epsilon(0.1, 0.2, delta=0.05) == pytest.approx(math.log(0.75 / 0.1))
    assert implied_epsilon(0.5, 0.5) == 0.0  # chance
    assert implied_epsilon(0.5, 0.495, delta=0.01) == 0.0  # r_hi > 1 - delta - r_lo
    assert implied_epsilon(0.6, 0.45) == pytest.approx(math.log(0.45 / 0.4))  # reflected
    assert implied_epsilon(0.0, 0.3) == math.inf  # a rate of 0 rules out every finite epsilon
    assert implied_epsilon(1.0, 0.0) == 0.0  # "always member": chance


def test_worse_than_chance_points_are_reflected() -> None:
    rng = np.random.default_rng(0)
    fpr, fnr = rng.uniform(size=500), rng.uniform(size=500)
    for delta in (0.0, 1e-3):
        a = implied_epsilon(fpr, fnr, delta)
        b = implied_epsilon(1 - fnr, 1 - fpr, delta)  # the attack with its guesses flipped
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)
        assert np.all(a >= 0) and not np.any(np.isnan(a))


def test_implied_epsilon_is_the_smallest_region_holding_the_point() -> None:
    rng = np.random.default_rng(1)
    fpr, fnr = rng.uniform(size=300) ** 3, rng.uniform(size=300) ** 3
    for delta in (0.0, 1e-5, 0.01):
        eps = implied_epsilon(fpr, fnr, delta)
        finite = np.isfinite(eps)
        for bump in (1e-6, 0.3):
            inside = np.array([in_region(y, x, e + bump, delta)
                               for y, x, e in zip(fpr[finite], fnr[finite], eps[finite])])
            assert inside.all()
        positive = finite & (eps > 1e-3)
        outside = np.array([in_region(y, x, e - 1e-4, delta)
                            for y, x, e in zip(fpr[positive], fnr[positive], eps[positive])])
        assert not outside.any()


def test_region_grows_with_epsilon_and_delta() -> None:
    x = np.linspace(0, 1, 101)
    prev_lo, prev_hi = fpr_bounds(x, 0.0, 0.0)
    for eps in (0.1, 0.5, 1, 2, 5, 20, 60):
        lo, hi = fpr_bounds(x, eps, 0.0)
        assert np.all(lo <= prev_lo + 1e-15) and np.all(hi >= prev_hi - 1e-15)
        prev_lo, prev_hi = lo, hi
    lo_d, hi_d = fpr_bounds(x, 1.0, 0.1)
    lo_0, hi_0 = fpr_bounds(x, 1.0, 0.0)
    assert np.all(lo_d <= lo_0) and np.all(hi_d >= hi_0)


def test_huge_epsilon_does_not_overflow() -> None:
    lower, upper = fpr_bounds(np.array([0.0, 1e-300, 0.5, 1.0]), 1e4, 0.0)
    assert np.all(np.isfinite(lower)) and np.all(np.isfinite(upper))
    np.testing.assert_allclose(lower[1:], 0.0, atol=1e-12)
