"""KL terms: against torch.distributions, non-negativity, zero at q = p, the scale-mixture bound."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.distributions import Normal, kl_divergence

from varbayes.errors import VarbayesError
from varbayes.nn.priors import GaussianPrior, ScaleMixturePrior, gaussian_kl, prior_from_dict

sigmas = st.floats(1e-8, 10.0)
means = st.floats(-1e4, 1e4)
prior_stds = st.floats(1e-3, 10.0)


def _kl(mu: float, sigma: float, m: float, s: float, dtype=torch.float32) -> torch.Tensor:
    mu_t = torch.tensor([mu], dtype=dtype)
    sigma_t = torch.tensor([sigma], dtype=dtype)
    return gaussian_kl(mu_t, sigma_t, m, s)


def test_gaussian_kl_matches_torch_distributions() -> None:
    g = torch.Generator().manual_seed(0)
    mu = torch.randn(1000, generator=g, dtype=torch.float64) * 3
    sigma = torch.exp(torch.randn(1000, generator=g, dtype=torch.float64) * 2)
    for m, s in ((0.0, 1.0), (0.5, 0.1), (-2.0, 5.0), (0.0, 0.005)):
        ours = gaussian_kl(mu, sigma, m, s)
        prior = Normal(torch.full_like(mu, m), torch.full_like(mu, s))
        ref = kl_divergence(Normal(mu, sigma), prior)
        torch.testing.assert_close(ours, ref, rtol=1e-10, atol=1e-10)


@settings(max_examples=300, deadline=None)
@given(mu=means, sigma=sigmas, m=st.floats(-10, 10), s=prior_stds)
def test_gaussian_kl_is_finite_nonnegative_with_finite_gradients(mu: float, sigma: float,
                                                                 m: float, s: float) -> None:
    mu_t = torch.tensor([mu], requires_grad=True)
    rho = torch.tensor([math.log(sigma)], requires_grad=True)  # sigma = exp(rho)
    kl = gaussian_kl(mu_t, rho.exp(), m, s)
    kl.sum().backward()
    assert torch.isfinite(kl).all() and float(kl.detach()) >= 0.0
    assert torch.isfinite(mu_t.grad).all() and torch.isfinite(rho.grad).all()


@settings(max_examples=100, deadline=None)
@given(m=st.floats(-10, 10), s=prior_stds)
def test_kl_is_exactly_zero_when_q_equals_p(m: float, s: float) -> None:
    assert float(_kl(m, s, m, s)) == 0.0
    assert float(GaussianPrior(m, s).kl(torch.tensor([m]), torch.tensor([s]))) == 0.0


def _quadrature_kl(mu: float, sigma: float, prior: ScaleMixturePrior) -> float:
    """KL(q || p) by the trapezoidal rule on a fine float64 grid over q's support."""
    w = torch.linspace(mu - 12 * sigma, mu + 12 * sigma, 200_001, dtype=torch.float64)
    log_q = Normal(torch.tensor(mu, dtype=torch.float64),
                   torch.tensor(sigma, dtype=torch.float64)).log_prob(w)
    integrand = log_q.exp() * (log_q - prior.log_prob(w))
    return float(torch.trapezoid(integrand, w))


@pytest.mark.parametrize("mu,sigma", [(0.0, 0.1), (0.3, 0.01), (-1.0, 0.5), (0.02, 0.003)])
def test_scale_mixture_bound_is_above_the_exact_kl_and_mc_is_unbiased(mu: float,
                                                                      sigma: float) -> None:
    prior = ScaleMixturePrior(pi=0.5, std1=1.0, std2=0.0025)
    exact = _quadrature_kl(mu, sigma, prior)
    t = lambda v: torch.tensor([v], dtype=torch.float64)  # noqa: E731
    bound = float(prior.kl(t(mu), t(sigma)))
    assert exact >= -1e-9
    assert bound >= exact - 1e-9
    torch.manual_seed(0)
    mc_prior = ScaleMixturePrior(0.5, 1.0, 0.0025, kl_estimate="mc")
    n = 200_000
    draws = mc_prior.kl(t(mu).expand(n), t(sigma).expand(n))
    se = float(draws.std()) / math.sqrt(n)
    assert abs(float(draws.mean()) - exact) < 5 * se + 1e-6


def test_scale_mixture_bound_is_exact_for_one_component() -> None:
    mu, sigma = torch.tensor([0.4, -1.0]), torch.tensor([0.2, 2.0])
    one = ScaleMixturePrior(pi=1.0, std1=0.7, std2=0.01)
    same = ScaleMixturePrior(pi=0.3, std1=0.7, std2=0.7)
    ref = GaussianPrior(0.0, 0.7).kl(mu, sigma)
    torch.testing.assert_close(one.kl(mu, sigma), ref)
    torch.testing.assert_close(same.kl(mu, sigma), ref)


@settings(max_examples=100, deadline=None)
@given(mu=means, sigma=sigmas, pi=st.floats(0, 1))
def test_scale_mixture_bound_finite_and_nonnegative(mu: float, sigma: float, pi: float) -> None:
    prior = ScaleMixturePrior(pi=pi, std1=1.0, std2=0.01)
    mu_t = torch.tensor([mu], requires_grad=True)
    rho = torch.tensor([math.log(sigma)], requires_grad=True)
    kl = prior.kl(mu_t, rho.exp())
    kl.sum().backward()
    assert torch.isfinite(kl).all() and float(kl.detach()) >= 0.0
    assert torch.isfinite(mu_t.grad).all() and torch.isfinite(rho.grad).all()


@pytest.mark.parametrize("prior", [GaussianPrior(0.0, 1.0), GaussianPrior(0.3, 0.05),
                                   ScaleMixturePrior(0.25, 1.0, 0.01)])
def test_summed_kl_equals_the_sum_of_elementwise_kls(prior) -> None:
    g = torch.Generator().manual_seed(0)
    mu = torch.randn(4, 50, generator=g, dtype=torch.float64)
    sigma = torch.exp(torch.randn(4, 50, generator=g, dtype=torch.float64) - 2)
    torch.testing.assert_close(prior.kl_sum(mu, sigma), prior.kl(mu, sigma).sum())
    assert float(GaussianPrior(0.2, 0.5).kl_sum(torch.full((9,), 0.2),
                                               torch.full((9,), 0.5))) == pytest.approx(0, abs=1e-6)


def test_priors_round_trip_through_dicts_and_reject_bad_values() -> None:
    for p in (GaussianPrior(0.1, 0.5), ScaleMixturePrior(0.25, 1.0, 0.01, "mc")):
        assert prior_from_dict(p.to_dict()) == p
    with pytest.raises(VarbayesError, match="std > 0"):
        GaussianPrior(0.0, 0.0)
    with pytest.raises(VarbayesError, match="pi"):
        ScaleMixturePrior(pi=1.5)
    with pytest.raises(VarbayesError, match="unknown prior type"):
        prior_from_dict({"type": "laplace"})
