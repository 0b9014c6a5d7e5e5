"""UCE, error-variance correlation and PSNR against direct computations."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from varbayes.errors import VarbayesError
from varbayes.metrics import error_variance_correlation, psnr, uncertainty_calibration_error


def loop_uce(err: np.ndarray, var: np.ndarray, n_bins: int, key: np.ndarray) -> float:
    """A second, loop-based implementation with numpy's histogram edges."""
    edges = np.linspace(key.min(), key.max(), n_bins + 1)
    total = 0.0
    for b in range(n_bins):
        last = b == n_bins - 1
        sel = (key >= edges[b]) & ((key <= edges[b + 1]) if last else (key < edges[b + 1]))
        if sel.any():
            total += sel.sum() / len(key) * abs(err[sel].mean() - var[sel].mean())
    return total


@pytest.mark.parametrize("bin_by", ["variance", "error"])
def test_uce_against_a_loop(bin_by: str) -> None:
    rng = np.random.default_rng(1)
    mean, y = rng.normal(size=(40, 16)), rng.normal(size=(40, 16))
    var = rng.gamma(2.0, 0.5, size=(40, 16))
    err = (mean - y) ** 2
    key = var if bin_by == "variance" else err
    expected = loop_uce(err.ravel(), var.ravel(), 37, key.ravel())
    assert uncertainty_calibration_error(mean, var, y, n_bins=37, bin_by=bin_by) == \
        pytest.approx(expected, rel=1e-9)


def test_uce_closed_forms() -> None:
    rng = np.random.default_rng(2)
    mean, y = rng.normal(size=500), rng.normal(size=500)
    err = (mean - y) ** 2 + 1e-9
    assert uncertainty_calibration_error(mean, err, y, bin_by="variance") == pytest.approx(
        0, abs=1e-8)
    # a constant offset c between variance and error costs exactly c
    assert uncertainty_calibration_error(mean, err + 0.3, y) == pytest.approx(0.3, abs=1e-8)
    # one bin: |mean error - mean variance|
    var = rng.uniform(0.1, 1, 500)
    assert uncertainty_calibration_error(mean, var, y, n_bins=1) == pytest.approx(
        abs(((mean - y) ** 2).mean() - var.mean()))


def test_correlation_against_numpy() -> None:
    rng = np.random.default_rng(3)
    mean, y = rng.normal(size=(30, 8)), rng.normal(size=(30, 8))
    var = (mean - y) ** 2 * rng.uniform(0.5, 1.5, size=(30, 8)) + rng.uniform(0, 0.5, (30, 8))
    expected = np.corrcoef(((mean - y) ** 2).ravel(), var.ravel())[0, 1]
    assert error_variance_correlation(mean, var, y) == pytest.approx(expected, rel=1e-10)
    assert math.isnan(error_variance_correlation(mean, np.ones((30, 8)), y))


def test_rank_and_per_example_correlation() -> None:
    from scipy.stats import spearmanr

    rng = np.random.default_rng(4)
    mean, y = rng.normal(size=(40, 6)), rng.normal(size=(40, 6))
    var = np.exp(rng.normal(size=(40, 6))) + (mean - y) ** 2
    err = (mean - y) ** 2
    assert error_variance_correlation(mean, var, y, rank=True) == pytest.approx(
        spearmanr(err.ravel(), var.ravel())[0], rel=1e-10)
    assert error_variance_correlation(mean, var, y, per="example") == pytest.approx(
        np.corrcoef(err.mean(1), var.mean(1))[0, 1], rel=1e-10)
    tied = np.round(var, 1)  # ties share their average rank, as in scipy
    assert error_variance_correlation(mean, tied, y, rank=True) == pytest.approx(
        spearmanr(err.ravel(), tied.ravel())[0], rel=1e-10)
    assert math.isnan(error_variance_correlation(mean, np.ones((40, 6)), y, rank=True))
    with pytest.raises(VarbayesError, match="per must be"):
        error_variance_correlation(mean, var, y, per="pixel")


def test_psnr_per_image_mean() -> None:
    t = torch.zeros(2, 4)
    p = torch.tensor([[0.1] * 4, [0.01] * 4])
    assert psnr(p, t) == pytest.approx((20 + 40) / 2)
    assert psnr(p * 2, t, data_range=2.0) == pytest.approx(30)
    with pytest.raises(VarbayesError, match="infinite"):
        psnr(t, t)


def test_bad_input_is_one_line() -> None:
    with pytest.raises(VarbayesError, match="bin_by"):
        uncertainty_calibration_error([0.0, 1.0], [1.0, 1.0], [0.0, 0.0], bin_by="pixels")
    with pytest.raises(VarbayesError, match="var must be > 0"):
        uncertainty_calibration_error([0.0], [0.0], [1.0])
    with pytest.raises(VarbayesError, match="NaN"):
        error_variance_correlation([0.0, 1.0], [1.0, 2.0], [float("nan"), 0.0])
