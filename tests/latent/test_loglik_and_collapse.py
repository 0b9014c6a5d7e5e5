"""Importance-sampled log-likelihood against an exact marginal, and both collapse statistics."""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import Independent, MultivariateNormal, Normal

from varbayes.errors import VarbayesError
from varbayes.latent import (
    CVAE,
    VAESpec,
    collapse_report,
    diagnose_collapse,
    log_likelihood,
    programs,
)


def _linear_gaussian(seed: int = 0):  # noqa: ANN202
    """p(z) = N(0, I_2), p(x | z) = N(U z + b, 0.3^2 I_3): log p(x) is exact."""
    g = torch.Generator().manual_seed(seed)
    U, b = torch.randn(3, 2, generator=g, dtype=torch.float64), torch.randn(3, dtype=torch.float64)
    x = torch.randn(6, 3, generator=g, dtype=torch.float64)
    exact = MultivariateNormal(b, U @ U.T + 0.09 * torch.eye(3, dtype=torch.float64)).log_prob(x)
    # a deliberately imperfect diagonal proposal around the exact posterior mean
    post_cov = torch.linalg.inv(torch.eye(2, dtype=torch.float64) + U.T @ U / 0.09)
    post_mean = (x - b) @ U @ post_cov.T / 0.09
    target = programs(
        lambda x_, c: Normal(post_mean, 1.3 * post_cov.diagonal().sqrt().expand_as(post_mean)),
        lambda c, n: Normal(torch.zeros(n, 2, dtype=torch.float64),
                            torch.ones(n, 2, dtype=torch.float64)),
        lambda z, c: Independent(Normal(z @ U.T + b, 0.3 * torch.ones(3, dtype=torch.float64)), 1))
    return target, x, exact


def test_importance_sampled_log_likelihood_converges_to_the_exact_marginal() -> None:
    target, x, exact = _linear_gaussian()
    torch.manual_seed(0)
    one = log_likelihood(target, x, samples=1)
    many = log_likelihood(target, x, samples=5000)
    assert many.shape == (6,)
    assert float((many - exact).abs().max()) < 0.02
    assert float(one.mean()) < float(many.mean())  # the ELBO is the looser bound


def test_log_likelihood_uses_the_prior_network_density() -> None:
    torch.manual_seed(0)
    vae = CVAE(VAESpec(x_dim=4, d_z=2, c_dim=3, hidden=(8,), prior="conditional"))
    x, c = torch.rand(5, 4), torch.rand(5, 3)
    base = log_likelihood(vae, x, c, samples=64)
    with torch.no_grad():
        vae.prior_net.net[-1].bias[:2] += 3.0  # move p(z | c) away from q
    assert float(log_likelihood(vae, x, c, samples=64).mean()) < float(base.mean()) - 0.5
    with pytest.raises(VarbayesError, match="positive integer"):
        log_likelihood(vae, x, c, samples=0)


def test_collapse_report_by_hand() -> None:
    n = 1000
    torch.manual_seed(0)
    signal = torch.randn(n)
    # dim 0 informative, dim 1 exactly the prior (collapsed), dim 2 mean varies but tiny
    q_mean = torch.stack([signal, torch.zeros(n), 0.01 * signal], 1)
    q_var = torch.stack([torch.full((n,), 0.1), torch.ones(n), torch.ones(n)], 1)
    r = collapse_report(q_mean, q_var, beta=1.0)
    expected0 = 0.5 * ((0.1 + signal**2) - math.log(0.1) - 1).mean()
    assert math.isclose(float(r.kl_per_dim[0]), float(expected0), rel_tol=1e-5)
    assert r.collapsed == [1, 2] and r.n_active == 1 and r.active_units == 1
    kl0 = 0.5 * ((0.1 + signal**2) - math.log(0.1) - 1)
    assert math.isclose(r.kl_active_fraction, float((kl0 >= 0.01).double().mean()) / 3,
                        rel_tol=1e-9)
    assert "collapsed" in r.table() and r.to_dict()["active_units"] == 1


def test_the_two_statistics_disagree_under_a_conditional_prior() -> None:
    """Posterior means vary across the data (Burda: active) but each equals its example's
    conditional prior mean (KL rule: collapsed)."""
    means = torch.randn(500, 2)
    r = collapse_report(means, torch.ones(500, 2), means, 1.0)
    assert r.n_active == 0 and r.active_units == 2 and r.kl_active_fraction == 0.0


def test_diagnose_collapse_on_models_and_encoder_functions() -> None:
    torch.manual_seed(0)
    x = torch.rand(50, 4)
    vae = CVAE(VAESpec(x_dim=4, d_z=3, hidden=(8,)))
    r = diagnose_collapse(vae, x)
    q = vae.posterior(x)
    assert torch.allclose(r.kl_per_dim, collapse_report(q.mean, q.variance).kl_per_dim)
    assert vae.training  # the mode is restored

    def encoder(x_: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.cat([x_[:, :1] * 5, torch.zeros(len(x_), 1)], 1), torch.zeros(len(x_), 2)

    r2 = diagnose_collapse(encoder, x, prior=1.0)
    assert r2.collapsed == [1] and r2.active_units == 1
    r3 = diagnose_collapse(encoder, x, prior=2.0)  # KL against N(0, 4): nothing is exactly 0
    assert float(r3.kl_per_dim[1]) > 0.1
    with pytest.raises(VarbayesError, match="Normal or a \\(mean, log_var\\)"):
        diagnose_collapse(lambda x_: x_, x)
    with pytest.raises(VarbayesError, match="at least 2 examples"):
        diagnose_collapse(vae, x[:1])
    with pytest.raises(VarbayesError, match="beta must be > 0"):
        diagnose_collapse(vae, x, beta=0.0)


def test_diagnose_collapse_refuses_nan_data() -> None:
    x = torch.randn(10, 4)
    x[3, 1] = float("nan")
    with pytest.raises(VarbayesError, match="x contains 1 NaN"):
        diagnose_collapse(lambda x: (x[:, :2], x[:, 2:]), x)
