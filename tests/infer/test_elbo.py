"""The one ELBO: `elbo_loss` keeps its behaviour, and the site-based ELBO reduces to it."""

from __future__ import annotations

import torch
from torch.distributions import Independent, Normal, kl_divergence

from varbayes import infer


def test_elbo_loss_is_mean_nll_plus_kl_over_n():
    nll = torch.tensor([0.5, 1.5, 2.0])
    kl = torch.tensor(30.0)
    loss = infer.elbo_loss(nll, kl, n_train=100, kl_weight=0.5, warmup=0.4)
    assert torch.allclose(loss, nll.mean() + 0.5 * 0.4 * 30.0 / 100)


def test_elbo_terms_keep_a_local_kl_with_its_example():
    terms = infer.elbo_terms(torch.tensor([-1.0, -2.0]), 10.0, 5, local_kl=torch.tensor([0.5,
                                                                                          1.0]))
    assert torch.allclose(terms, torch.tensor([-1.0 - 0.5 - 2.0, -2.0 - 1.0 - 2.0]))


def test_site_elbo_of_a_bayesian_regression_is_minus_elbo_loss():
    """A Bayesian linear model written with sites, trained on a minibatch: the trace ELBO
    with an analytic KL is exactly -elbo_loss(nll, KL, N) for the same weight draw."""
    torch.manual_seed(0)
    x, y = torch.randn(8, 3), torch.randn(8)
    loc, scale = torch.randn(3, requires_grad=True), torch.rand(3) + 0.5
    prior = Independent(Normal(torch.zeros(3), torch.ones(3)), 1)

    def model(xb, yb):
        w = infer.sample("w", prior)
        infer.sample("y", Normal(xb @ w, 0.3), obs=yb)

    def guide(xb, yb):
        infer.sample("w", Independent(Normal(loc, scale), 1))

    torch.manual_seed(1)
    est = infer.estimate(infer.elbo(kl_weight=0.7, analytic_kl=True), model, guide, x, y,
                         plates=1, data_size=1000)
    torch.manual_seed(1)
    w = Normal(loc, scale).rsample()
    nll = -Normal(x @ w, 0.3).log_prob(y)
    kl = kl_divergence(Independent(Normal(loc, scale), 1), prior)
    expected = infer.elbo_loss(nll, kl, 1000, kl_weight=0.7)
    assert torch.allclose(est.loss(), expected, atol=1e-6)
    g1 = torch.autograd.grad(est.loss(), loc)[0]
    g2 = torch.autograd.grad(expected, loc)[0]
    assert torch.allclose(g1, g2, atol=1e-6)


def test_plate_size_is_the_number_of_examples_in_the_plate_dims() -> None:
    """The data size `log_weight` uses when none is declared: the product of the plate dims
    (one plate read by index, several by product), 1 without plates or plate dims."""
    from varbayes.infer.primitives import _plate_size

    t = torch.zeros(5, 3, 4)
    assert [_plate_size(t, k) for k in (0, 1, 2, 3)] == [1, 4, 12, 60]
    assert _plate_size(torch.zeros(4), 2) == 1 and _plate_size(None, 1) == 1
