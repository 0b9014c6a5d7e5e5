"""RMSE and Gaussian NLL against torch.distributions and a direct computation in original units."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn.metrics import mean_squared_error
from torch.distributions import Normal

from varbayes.metrics import gaussian_nll, regression_metrics, rmse


def data(shape: tuple[int, ...], seed: int = 0) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    mean = torch.randn(shape, generator=g, dtype=torch.float64)
    var = torch.rand(shape, generator=g, dtype=torch.float64) + 0.05
    y = mean + var.sqrt() * torch.randn(shape, generator=g, dtype=torch.float64) * 1.5
    return mean, var, y


def test_against_torch_and_sklearn() -> None:
    mean, var, y = data((257,))
    expected = -Normal(mean, var.sqrt()).log_prob(y).mean().item()
    assert gaussian_nll(mean, var, y) == pytest.approx(expected, rel=1e-12)
    assert rmse(mean, y) == pytest.approx(math.sqrt(mean_squared_error(y, mean)), rel=1e-12)
    assert gaussian_nll(mean.float(), var.numpy(), y.tolist()) == pytest.approx(expected, rel=1e-6)


def test_multi_output_sums_over_outputs() -> None:
    mean, var, y = data((50, 3))
    expected = -Normal(mean, var.sqrt()).log_prob(y).sum(1).mean().item()
    assert gaussian_nll(mean, var, y) == pytest.approx(expected, rel=1e-12)
    assert rmse(mean, y) == pytest.approx(((mean - y) ** 2).mean().sqrt().item())


@pytest.mark.parametrize("shape", [(40,), (40, 2)])
def test_metrics_are_reported_in_original_units(shape: tuple[int, ...]) -> None:
    mean, var, y = data(shape, seed=1)
    y_mean, y_std = 12.5, 3.7
    to_orig = lambda t: t * y_std + y_mean  # noqa: E731
    out = regression_metrics(mean, var, y, y_mean=y_mean, y_std=y_std)
    expected_nll = -Normal(to_orig(mean), var.sqrt() * y_std).log_prob(to_orig(y))
    expected_nll = expected_nll.reshape(40, -1).sum(1).mean().item()
    assert out == pytest.approx({"rmse": rmse(to_orig(mean), to_orig(y)), "nll": expected_nll},
                                rel=1e-12)
    assert regression_metrics(mean, var, y) == {"rmse": rmse(mean, y),
                                                "nll": gaussian_nll(mean, var, y)}


def test_single_example() -> None:
    assert gaussian_nll([0.0], [1.0], [0.0]) == pytest.approx(0.5 * math.log(2 * math.pi))
    assert rmse(np.array([1.0]), np.array([-2.0])) == 3.0
