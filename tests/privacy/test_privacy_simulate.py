"""Simulated audits: the analytic Gaussian mechanism, its operating point, the trade-off counts,
and the threshold attack."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from varbayes.privacy import calibrate_threshold, confusion_counts
from varbayes.privacy.simulate import (
    analytic_gaussian_sigma,
    gaussian_mechanism_counts,
    gaussian_operating_epsilon,
    interval_study,
    tradeoff_counts,
)


@pytest.mark.parametrize(("eps", "delta"), [(0.5, 1e-5), (2.0, 1e-5), (8.0, 1e-6), (1.0, 0.1)])
def test_analytic_gaussian_sigma_solves_its_equation(eps: float, delta: float) -> None:
    s = analytic_gaussian_sigma(eps, delta)
    achieved = stats.norm.cdf(1 / (2 * s) - eps * s) - math.exp(eps) * stats.norm.cdf(
        -1 / (2 * s) - eps * s)
    assert achieved == pytest.approx(delta, rel=1e-6)
    # the classical bound sigma = sqrt(2 log(1.25/delta)) / eps (eps < 1) is never tighter
    if eps < 1:
        assert s <= math.sqrt(2 * math.log(1.25 / delta)) / eps


def test_operating_point_certifies_less_than_the_mechanism() -> None:
    s = analytic_gaussian_sigma(2.0, 1e-5)
    eps_op = gaussian_operating_epsilon(s, 1e-5)
    r = stats.norm.cdf(-1 / (2 * s))
    assert eps_op == pytest.approx(math.log((1 - 1e-5 - r) / r), rel=1e-10)
    assert 0 < eps_op < 2.0


def test_gaussian_mechanism_counts_have_the_equal_error_rates() -> None:
    s = analytic_gaussian_sigma(2.0, 1e-5)
    counts = gaussian_mechanism_counts(s, 1000, 50, seed=1)
    fnr = np.mean([c.fn / c.members for c in counts])
    fpr = np.mean([c.fp / c.non_members for c in counts])
    r = stats.norm.cdf(-1 / (2 * s))
    assert fnr == pytest.approx(r, abs=0.01) and fpr == pytest.approx(r, abs=0.01)


def test_tradeoff_counts_rates_and_a_small_study() -> None:
    counts = tradeoff_counts(2.0, 400, 60, seed=0)
    assert all(c.members == 400 and c.non_members == 400 for c in counts)
    rate = np.mean([c.fn for c in counts]) / 400
    assert rate == pytest.approx(1 / (1 + math.e**2), abs=0.01)
    study = interval_study(counts, 2.0, method="sampling", samples=5000)
    assert study.width_ratio < 0.8
    assert study.coverage["clopper-pearson"] >= 0.9


def test_threshold_attack_on_separable_scores() -> None:
    members, non_members = np.array([2.0, 3.0, 4.0]), np.array([-1.0, 0.0, 1.0])
    t = calibrate_threshold(members, non_members)
    assert 1.0 < t < 2.0
    c = confusion_counts(members, non_members, t)
    assert (c.tp, c.fn, c.fp, c.tn) == (3, 0, 0, 3)
    c = confusion_counts(members, non_members, 2.5)
    assert (c.tp, c.fn, c.fp, c.tn) == (2, 1, 0, 3)
