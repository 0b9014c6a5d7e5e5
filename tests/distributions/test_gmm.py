"""Gaussian-mixture utilities against torch.distributions and closed forms."""

from __future__ import annotations

import math

import torch
from torch.distributions import Categorical, MixtureSameFamily, MultivariateNormal

from varbayes.distributions import (
    GMM,
    cholesky_to_vector,
    kl_monte_carlo,
    linear_gaussian_posterior,
    vector_to_cholesky,
)


def _gmm(b: int = 4, k: int = 3, d: int = 2, seed: int = 0) -> GMM:
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(b, k, d, d, generator=g, dtype=torch.float64)
    cov = a @ a.transpose(-1, -2) + 0.3 * torch.eye(d, dtype=torch.float64)
    w = torch.softmax(torch.randn(b, k, generator=g, dtype=torch.float64), -1)
    return GMM(w, torch.randn(b, k, d, generator=g, dtype=torch.float64),
               torch.linalg.cholesky(cov))


def test_cholesky_vector_round_trip() -> None:
    g = _gmm()
    back = vector_to_cholesky(cholesky_to_vector(g.scale_tril), 2, min_diag=0.0)
    assert torch.allclose(back, g.scale_tril)
    vec = g.to_vectors()
    again = GMM.from_vectors(vec, 2)
    assert torch.allclose(again.weights, g.weights, atol=1e-6)
    assert torch.allclose(again.scale_tril, g.scale_tril, atol=1e-5)
    extreme = vector_to_cholesky(torch.tensor([[-1e4, 1e4]], dtype=torch.float64), 1)
    assert torch.isfinite(extreme).all() and (extreme > 0).all()


def test_log_prob_matches_torch_mixture() -> None:
    g = _gmm()
    ref = MixtureSameFamily(Categorical(g.weights),
                            MultivariateNormal(g.means, scale_tril=g.scale_tril))
    x = torch.randn(7, 4, 2, dtype=torch.float64)
    assert torch.allclose(g.log_prob(x), ref.log_prob(x))


def test_sampling_moments() -> None:
    g = _gmm(b=2)
    x = g.sample(200_000, torch.Generator().manual_seed(1))
    mean = g.mean()
    assert torch.allclose(x.mean(0), mean, atol=0.03)
    second = (g.weights[..., None, None] * (g.covariance + g.means.unsqueeze(-1)
                                            * g.means.unsqueeze(-2))).sum(1)
    cov = second - mean.unsqueeze(-1) * mean.unsqueeze(-2)
    emp = torch.einsum("sbi,sbj->bij", x - mean, x - mean) / len(x)
    assert torch.allclose(emp, cov, atol=0.1)


def test_posterior_is_prior_times_likelihood() -> None:
    g = _gmm()
    z = torch.randn(4, 2, dtype=torch.float64)
    post = linear_gaussian_posterior(g, z, obs_cov=0.5)
    x = torch.randn(9, 4, 2, dtype=torch.float64)
    joint = g.log_prob(x) + MultivariateNormal(x, 0.5 * torch.eye(2, dtype=torch.float64)
                                               ).log_prob(z)
    diff = post.log_prob(x) - joint  # constant in x: the log evidence
    assert torch.allclose(diff, diff[:1].expand_as(diff), atol=1e-9)


def test_one_dimensional_posterior_matches_the_spec_formula() -> None:
    g = _gmm(b=3, k=2, d=1)
    z = torch.tensor([[0.4], [-2.0], [5.0]], dtype=torch.float64)
    post = linear_gaussian_posterior(g, z)
    s = g.covariance[..., 0, 0]
    mu = g.means[..., 0]
    w = g.weights * torch.exp(-0.5 * (z - mu) ** 2 / (s + 1)) / torch.sqrt(s + 1)
    assert torch.allclose(post.weights, w / w.sum(-1, keepdim=True))
    assert torch.allclose(post.means[..., 0], mu + s / (s + 1) * (z - mu))
    assert torch.allclose(post.covariance[..., 0, 0], s - s**2 / (s + 1))


def test_monte_carlo_kl_matches_gaussian_closed_form() -> None:
    p = GMM(torch.ones(1, 1, dtype=torch.float64), torch.zeros(1, 1, 1, dtype=torch.float64),
            torch.ones(1, 1, 1, 1, dtype=torch.float64))
    q = GMM(torch.ones(1, 1, dtype=torch.float64), torch.ones(1, 1, 1, dtype=torch.float64),
            2 * torch.ones(1, 1, 1, 1, dtype=torch.float64))
    closed = math.log(1 / 2) + (4 + 1) / 2 - 0.5
    est = kl_monte_carlo(q, p, 200_000, torch.Generator().manual_seed(0))
    assert abs(float(est) - closed) < 0.02
    assert float(kl_monte_carlo(q, q, 100)) == 0.0
