"""Every gradient strategy is unbiased in value and gradient against a closed form.

Each check draws n independent estimates at once: every element gets its own copy of the
parameters (a plate of size n), so one backward pass yields n per-sample gradients, whose mean
must lie within a few standard errors of the exact gradient.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import Bernoulli, Beta, Categorical, Gamma, Independent, Normal

from varbayes import infer

N = 20_000


def per_sample(program, params, *, n=N, strategies=None):
    """(values, gradients (n, len(params))) of n independent estimates of E[program]."""
    theta = [torch.full((n,), float(v), dtype=torch.float64, requires_grad=True) for v in params]
    est = infer.estimate(program, *theta, plates=1, strategies=strategies)
    grads = torch.stack(torch.autograd.grad(est.surrogate.sum(), theta), -1)
    return est.value, grads


def assert_unbiased(samples: torch.Tensor, exact, z: float = 4.0) -> None:
    mean = samples.mean(0)
    se = samples.std(0) / math.sqrt(len(samples))
    exact = torch.as_tensor(exact, dtype=mean.dtype)
    assert torch.all((mean - exact).abs() <= z * se + 1e-9), (mean, exact, se)


def test_reparam_normal_value_and_gradient():
    def program(mu, sigma):
        x = infer.sample("x", Normal(mu, sigma))
        return x**2

    torch.manual_seed(0)
    values, grads = per_sample(program, (0.7, 1.3))
    assert_unbiased(values[:, None], [0.7**2 + 1.3**2])
    assert_unbiased(grads, [2 * 0.7, 2 * 1.3])  # d/dmu, d/dsigma of mu^2 + sigma^2


@pytest.mark.parametrize("dist, params, mean, grad", [
    # Gamma(a, b): E[x^2] = a(a+1)/b^2
    (Gamma, (2.5, 1.5), 2.5 * 3.5 / 1.5**2, [(2 * 2.5 + 1) / 1.5**2, -2 * 2.5 * 3.5 / 1.5**3]),
    # Beta(a, b): E[x^2] = a(a+1)/((a+b)(a+b+1))
    (Beta, (2.0, 3.0), 2 * 3 / (5 * 6), None),
])
def test_implicit_reparam_gamma_beta(dist, params, mean, grad):
    def program(a, b):
        x = infer.sample("x", dist(a, b), strategy=infer.reparam())
        return x**2

    torch.manual_seed(1)
    values, grads = per_sample(program, params)
    assert_unbiased(values[:, None], [mean])
    if grad is None:  # Beta: differentiate the closed form
        ab = torch.tensor(params, dtype=torch.float64, requires_grad=True)
        a, b = ab
        grad = torch.autograd.grad(a * (a + 1) / ((a + b) * (a + b + 1)), ab)[0]
    assert_unbiased(grads, grad)


def _bernoulli_program(strategy):
    def program(p, c):
        v = infer.sample("v", Bernoulli(probs=p), strategy=strategy)
        return (v - c) ** 2 * 3.0 + v * c  # g(1) = 3(1-c)^2 + c, g(0) = 3c^2

    return program


def _bernoulli_exact(p, c):
    g1, g0 = 3 * (1 - c) ** 2 + c, 3 * c**2
    value = p * g1 + (1 - p) * g0
    dg1, dg0 = -6 * (1 - c) + 1, 6 * c
    return value, [g1 - g0, p * dg1 + (1 - p) * dg0]


@pytest.mark.parametrize("strategy", [infer.reinforce(), infer.mvd()])
def test_bernoulli_estimators_unbiased(strategy):
    torch.manual_seed(2)
    values, grads = per_sample(_bernoulli_program(strategy), (0.3, 0.4))
    value, grad = _bernoulli_exact(0.3, 0.4)
    assert_unbiased(values[:, None], [value])
    assert_unbiased(grads, grad)


@pytest.mark.parametrize("parallel", [False, True])
def test_enumeration_is_exact(parallel):
    values, grads = per_sample(_bernoulli_program(infer.enum(parallel)), (0.3, 0.4), n=4)
    value, grad = _bernoulli_exact(0.3, 0.4)
    assert torch.allclose(values, torch.tensor(value, dtype=torch.float64))
    assert torch.allclose(grads, torch.tensor(grad, dtype=torch.float64).expand(4, 2))


def _categorical_program(strategy):
    f = torch.tensor([1.0, -2.0, 4.0], dtype=torch.float64)

    def program(a, b):
        logits = torch.stack([a, b, torch.zeros_like(a)], -1)
        v = infer.sample("v", Categorical(logits=logits), strategy=strategy)
        return f[v] * a  # depends on the parameters directly too

    return program, f


def _categorical_exact(a, b, f):
    ab = torch.tensor([a, b], dtype=torch.float64, requires_grad=True)
    probs = torch.softmax(torch.stack([ab[0], ab[1], torch.tensor(0.0, dtype=torch.float64)]), 0)
    value = (probs * f).sum() * ab[0]
    return float(value.detach()), torch.autograd.grad(value, ab)[0]


@pytest.mark.parametrize("strategy", [infer.reinforce(), infer.mvd(), infer.enum(),
                                      infer.enum(parallel=True)])
def test_categorical_estimators_unbiased(strategy):
    program, f = _categorical_program(strategy)
    torch.manual_seed(3)
    values, grads = per_sample(program, (0.5, -0.3))
    value, grad = _categorical_exact(0.5, -0.3, f)
    if isinstance(strategy, infer.strategies.Enum):
        assert torch.allclose(values, torch.tensor(value, dtype=torch.float64))
        assert torch.allclose(grads, grad.expand(N, 2))
    else:
        assert_unbiased(values[:, None], [value])
        assert_unbiased(grads, grad)


def test_reinforce_baseline_keeps_the_mean_and_lowers_variance():
    program = _bernoulli_program(None)
    value, grad = _bernoulli_exact(0.3, 0.4)
    torch.manual_seed(4)
    _, plain = per_sample(program, (0.3, 0.4), strategies={"v": infer.reinforce()})
    torch.manual_seed(4)
    baseline = torch.tensor(value, dtype=torch.float64)
    _, based = per_sample(program, (0.3, 0.4),
                          strategies={"v": infer.reinforce(baseline=baseline)})
    assert_unbiased(based, grad)
    assert based[:, 0].var() < 0.5 * plain[:, 0].var()


def test_learned_baseline_is_fitted_towards_the_mean_value():
    b = infer.Baseline()
    opt = torch.optim.SGD(b.parameters(), lr=0.1)
    p = torch.tensor(0.3, dtype=torch.float64)
    for _ in range(200):
        opt.zero_grad()
        est = infer.estimate(_bernoulli_program(None), p, torch.tensor(0.4), samples=16,
                             strategies={"v": infer.reinforce(baseline=b)})
        est.loss().backward()
        opt.step()
    assert abs(float(b.value.detach()) - _bernoulli_exact(0.3, 0.4)[0]) < 0.15


def test_nested_enumeration_and_mvd_compose():
    """Two discrete sites, different strategies: the estimate stays unbiased."""
    def program(p, q):
        a = infer.sample("a", Bernoulli(probs=p))
        b = infer.sample("b", Bernoulli(probs=q * (0.5 + 0.5 * a)))
        x = infer.sample("x", Normal(a + 2 * b, 1.0))
        return x * p + a * b

    def exact(pq):
        p, q = pq
        total = 0
        for a in (0.0, 1.0):
            for b in (0.0, 1.0):
                qa = q * (0.5 + 0.5 * a)
                w = (p if a else 1 - p) * (qa if b else 1 - qa)
                total = total + w * ((a + 2 * b) * p + a * b)
        return total

    pq = torch.tensor([0.4, 0.7], dtype=torch.float64, requires_grad=True)
    grad = torch.autograd.grad(exact(pq), pq)[0]
    par = infer.enum(parallel=True)
    for strategies in ({"a": infer.enum(), "b": infer.mvd()},
                       {"a": infer.mvd(), "b": infer.enum()},
                       {"a": infer.enum(), "b": infer.enum()},
                       {"a": infer.reinforce(), "b": infer.mvd()},
                       {"a": par, "b": par}, {"a": par, "b": infer.mvd()},
                       {"a": infer.mvd(), "b": par}, {"a": par, "b": infer.reinforce()},
                       {"a": infer.enum(), "b": par}):
        torch.manual_seed(5)
        values, grads = per_sample(program, (0.4, 0.7), strategies=strategies)
        assert_unbiased(values[:, None], [float(exact(pq).detach())])
        assert_unbiased(grads, grad)


def test_minibatch_elbo_is_unbiased_for_the_full_data_elbo():
    """Per-example ELBO on every minibatch of size 2 averages to the full-batch one (same
    weight draw), the minibatch-sum estimate with a global KL divided by N."""
    x = torch.tensor([0.5, -1.0, 2.0, 0.3, 1.1, -0.4])

    def model(xb):
        w = infer.sample("w", Normal(0.0, 1.0))
        infer.sample("y", Normal(w * xb, 1.0), obs=2 * xb)

    def guide(xb):
        infer.sample("w", Normal(torch.tensor(0.8), torch.tensor(0.3)))

    def per_example(idx, data_size):
        torch.manual_seed(7)
        return infer.estimate(infer.elbo(), model, guide, x[idx], plates=1,
                              data_size=data_size).value.mean()

    full = per_example(torch.arange(6), None)
    subsets = [torch.tensor([i, j]) for i in range(6) for j in range(i + 1, 6)]
    average = torch.stack([per_example(s, 6) for s in subsets]).mean()
    assert torch.allclose(average, full, atol=1e-6)


def test_average_of_n_copies_scores_each_copy():
    """samples=n keeps a particle dim: REINFORCE scores each copy with its own value."""
    torch.manual_seed(8)
    p = torch.tensor(0.3, dtype=torch.float64, requires_grad=True)
    est = infer.estimate(_bernoulli_program(infer.reinforce()), p, torch.tensor(0.4),
                         samples=50_000)
    assert est.value.shape == (50_000,)
    (g,) = torch.autograd.grad(est.surrogate.mean(), p)
    _, grad = _bernoulli_exact(0.3, 0.4)
    assert abs(float(g) - grad[0]) < 0.1


@pytest.mark.parametrize("prior_batch", [True, False])
def test_parallel_enumeration_of_a_mixture_elbo_is_exact(prior_batch):
    """Guide and model Categoricals over one assignment per point: parallel enumeration (the
    model's prior read straight off its logits, or by torch's log_prob when its batch dims
    differ) gives the exact ELBO and gradient, as sequential enumeration does."""
    torch.manual_seed(0)
    x = torch.randn(6, 2, dtype=torch.float64)
    means = torch.randn(3, 2, dtype=torch.float64, requires_grad=True)
    guide_logits = torch.randn(6, 3, dtype=torch.float64, requires_grad=True)
    prior_logits = torch.randn(3, dtype=torch.float64)

    def model(xb):
        logits = prior_logits.expand(len(xb), 3) if prior_batch else prior_logits
        c = infer.sample("c", Categorical(logits=logits, validate_args=False))
        infer.sample("x", Independent(Normal(means[c], 1.0, validate_args=False), 1), obs=xb)

    def guide(xb):
        infer.sample("c", Categorical(logits=guide_logits, validate_args=False))

    logq = torch.log_softmax(guide_logits, -1)
    loglik = Normal(means, 1.0).log_prob(x[:, None, :]).sum(-1)
    exact = (logq.exp() * (loglik + torch.log_softmax(prior_logits, -1) - logq)).sum(-1)
    grads = torch.autograd.grad(exact.mean(), [means, guide_logits])
    for parallel in (True, False):
        est = infer.estimate(infer.elbo(), model, guide, x, plates=1,
                             strategies={"c": infer.enum(parallel=parallel)})
        torch.testing.assert_close(est.value, exact.detach())
        got = torch.autograd.grad(-est.loss(), [means, guide_logits])
        for g, r in zip(got, grads):
            torch.testing.assert_close(g, r)
