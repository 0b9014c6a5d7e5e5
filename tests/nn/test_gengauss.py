"""The generalised Gaussian against scipy's gennorm, and the reference's linear residual."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.stats import gennorm

from varbayes.nn.gengauss import gg_linear_residual_loss, gg_nll, gg_variance


def grid() -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(0)
    y = torch.randn(200, generator=g, dtype=torch.float64) * 2
    mean = torch.randn(200, generator=g, dtype=torch.float64)
    inv_alpha = torch.rand(200, generator=g, dtype=torch.float64) * 5 + 0.1
    beta = torch.rand(200, generator=g, dtype=torch.float64) * 3 + 0.2
    return y, mean, inv_alpha, beta


def test_nll_and_variance_match_scipy() -> None:
    y, mean, a, b = grid()
    expected = -gennorm.logpdf(y.numpy(), b.numpy(), loc=mean.numpy(), scale=1 / a.numpy())
    np.testing.assert_allclose(gg_nll(y, mean, a, b).numpy(), expected, rtol=1e-10)
    var = gennorm.var(b.numpy(), scale=1 / a.numpy())
    np.testing.assert_allclose(gg_variance(a, b).numpy(), var, rtol=1e-10)


def test_special_cases_gaussian_and_laplace() -> None:
    a = torch.tensor([2.0], dtype=torch.float64)
    # beta = 2 is a Gaussian with variance alpha^2 / 2; beta = 1 a Laplace with 2 alpha^2
    assert gg_variance(a, torch.tensor([2.0], dtype=torch.float64)).item() == pytest.approx(
        0.25 / 2)
    assert gg_variance(a, torch.tensor([1.0], dtype=torch.float64)).item() == pytest.approx(
        2 * 0.25)


def test_variance_is_finite_for_tiny_shape_in_float32() -> None:
    var = gg_variance(torch.tensor([1.0]), torch.tensor([0.1]))
    assert var.dtype == torch.float32 and bool(torch.isfinite(var).all())
    assert var.item() == pytest.approx(math.exp(math.lgamma(30) - math.lgamma(10)), rel=1e-5)


def test_variance_of_extreme_shape_is_clamped_not_inf() -> None:
    var = gg_variance(torch.tensor([1.0]), torch.tensor([0.01]))
    assert var.item() == torch.finfo(torch.float32).max


def test_nll_gradients_finite_at_zero_residual() -> None:
    mean = torch.zeros(3, requires_grad=True)
    a = torch.ones(3, requires_grad=True)
    b = torch.tensor([0.3, 1.0, 2.0], requires_grad=True)
    gg_nll(torch.zeros(3), mean, a, b).sum().backward()
    for p in (mean, a, b):
        assert bool(torch.isfinite(p.grad).all())


def test_linear_residual_matches_its_formula() -> None:
    y, mean, a, b = grid()
    r = ((y - mean).abs() * a * b).clamp(1e-4, 1e3)
    expected = r - torch.log(a) + torch.lgamma(1 / b) - torch.log(b)
    assert torch.allclose(gg_linear_residual_loss(y, mean, a, b), expected)
    # the clamp: an exact prediction still pays the floor 1e-4
    zero = gg_linear_residual_loss(torch.zeros(1), torch.zeros(1), torch.ones(1), torch.ones(1))
    assert zero.item() == pytest.approx(1e-4)
