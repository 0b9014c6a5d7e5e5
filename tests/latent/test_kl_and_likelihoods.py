"""The per-dimension Gaussian KL and the observation models, against closed forms."""

from __future__ import annotations

import math

import pytest
import torch
from torch.nn import functional as F

from varbayes.errors import VarbayesError
from varbayes.latent import BernoulliLikelihood, GaussianLikelihood, gaussian_kl_per_dim
from varbayes.latent.likelihoods import make_likelihood


def test_kl_per_dim_matches_the_formula_and_monte_carlo() -> None:
    torch.manual_seed(0)
    mu_q, var_q = torch.randn(3, 4), torch.rand(3, 4) + 0.2
    mu_p, var_p = torch.randn(3, 4), torch.rand(3, 4) + 0.5
    kl = gaussian_kl_per_dim(mu_q, var_q, mu_p, var_p)
    formula = 0.5 * ((var_q + (mu_q - mu_p) ** 2) / var_p - torch.log(var_q / var_p) - 1)
    assert torch.allclose(kl, formula, atol=1e-6)
    z = mu_q + var_q.sqrt() * torch.randn(200_000, 3, 4)
    log_q = -0.5 * ((z - mu_q) ** 2 / var_q + torch.log(2 * math.pi * var_q))
    log_p = -0.5 * ((z - mu_p) ** 2 / var_p + torch.log(2 * math.pi * var_p))
    assert torch.allclose((log_q - log_p).mean(0), kl, atol=0.02)
    assert float(gaussian_kl_per_dim(torch.zeros(2), torch.ones(2)).abs().max()) == 0.0


def test_bernoulli_log_prob_is_binary_cross_entropy_on_grey_levels() -> None:
    logits, x = torch.randn(2, 5, 64), torch.rand(5, 64)
    lik = BernoulliLikelihood()
    expected = -F.binary_cross_entropy_with_logits(logits, x.expand(2, 5, 64),
                                                   reduction="none").sum(-1)
    assert torch.allclose(lik.distribution(logits).log_prob(x), expected, atol=1e-4)
    assert torch.allclose(lik.mean(logits), torch.sigmoid(logits))


def test_bernoulli_rejects_pixels_outside_the_unit_interval() -> None:
    lik = BernoulliLikelihood()
    lik.check(torch.tensor([[0.0, 1.0, 0.5]]))
    with pytest.raises(VarbayesError, match=r"in \[0, 1\]") as e:
        lik.check(torch.tensor([[0.0, 1.5]]), "images")
    assert "\n" not in str(e.value) and str(e.value).startswith("images")


def test_gaussian_fixed_and_learned_std() -> None:
    lik = GaussianLikelihood(3, std=0.5)
    out, x = torch.randn(4, 3), torch.randn(4, 3)
    expected = (-0.5 * ((x - out) ** 2 / 0.25 + math.log(2 * math.pi * 0.25))).sum(-1)
    assert torch.allclose(lik.distribution(out).log_prob(x), expected, atol=1e-5)
    assert not list(lik.parameters())
    learned = make_likelihood("gaussian", 3, std=2.0, learn_std=True)
    assert [p.shape for p in learned.parameters()] == [torch.Size([3])]
    with pytest.raises(VarbayesError, match="unknown likelihood"):
        make_likelihood("poisson", 3)
    with pytest.raises(VarbayesError, match="std must be > 0"):
        GaussianLikelihood(3, std=0.0)
