"""Bad input to the privacy API: one-line VarbayesErrors naming what would be valid."""

from __future__ import annotations

import math

import pytest

from varbayes.errors import VarbayesError
from varbayes.privacy import (
    calibrate_threshold,
    confusion_counts,
    epsilon_posterior,
    rate_interval,
    separate_interval,
)
from varbayes.privacy.simulate import analytic_gaussian_sigma, interval_study, tradeoff_counts

BAD = [
    ((-1, 0, 0, 1), {}, "count tp must be a non-negative integer"),
    ((1, 2.5, 0, 1), {}, "count fn must be a non-negative integer"),
    ((1, 0, True, 1), {}, "count fp must be a non-negative integer"),
    ((1, 0, 0, "3"), {}, "count tn must be a non-negative integer"),
    ((1, 0, 0, math.nan), {}, "count tn must be a non-negative integer"),
    ((0, 0, 0, 0), {}, "all zero"),
    ((1, 1, 1, 1), {"delta": 1.0}, "delta must be in [0, 1)"),
    ((1, 1, 1, 1), {"delta": -1e-9}, "delta must be in [0, 1)"),
    ((1, 1, 1, 1), {"delta": math.nan}, "delta must be in [0, 1)"),
    ((1, 1, 1, 1), {"delta": "1e-5"}, "delta must be a number"),
]


@pytest.mark.parametrize(("counts", "kw", "message"), BAD)
def test_bad_counts_and_delta(counts: tuple, kw: dict, message: str) -> None:
    with pytest.raises(VarbayesError, match=message.replace("[", r"\[").replace(")", r"\)")) as e:
        epsilon_posterior(*counts, **kw)
    assert "\n" not in str(e.value)
    with pytest.raises(VarbayesError):
        separate_interval(*counts, **kw)


@pytest.mark.parametrize("alpha", [0.0, 1.0, -0.1, math.inf, "0.05"])
def test_bad_alpha(alpha: object) -> None:
    post = epsilon_posterior(10, 2, 3, 9)
    with pytest.raises(VarbayesError, match="alpha must be"):
        post.interval(alpha)  # type: ignore[arg-type]
    with pytest.raises(VarbayesError, match="alpha must be"):
        separate_interval(10, 2, 3, 9, alpha=alpha)  # type: ignore[arg-type]


def test_whole_numbers_as_floats_are_counts() -> None:
    a = epsilon_posterior(10.0, 2.0, 3.0, 9.0).interval()
    b = epsilon_posterior(10, 2, 3, 9).interval()
    assert a == b


def test_bad_scores_and_names() -> None:
    with pytest.raises(VarbayesError, match="member scores are empty"):
        confusion_counts([], [0.1], 0.0)
    with pytest.raises(VarbayesError, match="NaN or infinity"):
        calibrate_threshold([0.1, math.nan], [0.2])
    with pytest.raises(VarbayesError, match="unknown rate interval method"):
        rate_interval(1, 2, 0.05, "wald")  # type: ignore[arg-type]
    with pytest.raises(VarbayesError, match="unknown interval method"):
        interval_study(tradeoff_counts(1.0, 10, 2), 1.0, method="bootstrap")  # type: ignore[arg-type]
    with pytest.raises(VarbayesError, match="delta > 0"):
        analytic_gaussian_sigma(1.0, 0.0)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda p: p.ppf(1.5), r"q must be numbers in \[0, 1\]; got 1.5"),
        (lambda p: p.ppf([0.5, -0.1]), r"q must be numbers in \[0, 1\]; got -0.1"),
        (lambda p: p.ppf("x"), "q must be numbers"),
        (lambda p: p.cdf(math.nan), "epsilon must be numbers .*got nan"),
        (lambda p: p.pdf(math.nan), "epsilon must be numbers .*got nan"),
        (lambda p: p.sample_interval(0.1, 0), "n must be a positive number of draws"),
        (lambda p: p.sample(10, seed=-1), "seed must be a non-negative integer"),
    ],
)
def test_posterior_queries_out_of_their_domain(call: object, message: str) -> None:
    post = epsilon_posterior(5, 1, 5, 1, delta=1e-5)
    with pytest.raises(VarbayesError, match=message) as e:
        call(post)  # type: ignore[operator]
    assert "\n" not in str(e.value)
