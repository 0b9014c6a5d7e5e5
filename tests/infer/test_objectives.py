"""Every objective's bound property on a conjugate Gaussian model with exact evidence.

Model: z ~ N(0, 1), x ~ N(z, 0.5^2), x = 1.3 observed; log p(x) = log N(x; 0, 1.25) exactly,
posterior N(x/1.25, 0.2). A guide N(m, s) gives the ELBO in closed form. A hierarchical guide
u ~ N(0, 1), z ~ N(a + b u, c^2) has the Gaussian marginal N(a, b^2 + c^2), so its exact
ELBO is known too: HVI <= IWHVI(N) <= that ELBO, and DIWHVI(K, N) >= IWHVI(N).
"""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import Normal

from varbayes import infer
from varbayes.train import TrainConfig

X = 1.3
SIGMA = 0.5
LOG_EVIDENCE = float(Normal(0.0, math.sqrt(1 + SIGMA**2)).log_prob(torch.tensor(X)))
POST_MEAN, POST_SD = X / (1 + SIGMA**2), math.sqrt(SIGMA**2 / (1 + SIGMA**2))


def model():
    z = infer.sample("z", Normal(torch.tensor(0.0, dtype=torch.float64), 1.0))
    infer.sample("x", Normal(z, SIGMA), obs=torch.tensor(X, dtype=torch.float64))


def gaussian_guide(m: float, s: float):
    def guide():
        infer.sample("z", Normal(torch.tensor(m, dtype=torch.float64), s))

    return guide


def hierarchical_guide(a: float = 0.2, b: float = 0.6, c: float = 0.3):
    def guide():
        u = infer.sample("u", Normal(torch.tensor(0.0, dtype=torch.float64), 1.0))
        infer.sample("z", Normal(a + b * u, c))

    return guide


def exact_elbo(m: float, s: float) -> float:
    """E_q[log N(x; z, sigma) + log N(z; 0, 1) - log N(z; m, s)] for q = N(m, s)."""
    e_lik = -0.5 * math.log(2 * math.pi * SIGMA**2) - ((X - m) ** 2 + s**2) / (2 * SIGMA**2)
    e_prior = -0.5 * math.log(2 * math.pi) - (m**2 + s**2) / 2
    entropy = 0.5 * math.log(2 * math.pi * math.e * s**2)
    return e_lik + e_prior + entropy


def mean_se(objective, guide, n=40_000):
    est = infer.estimate(objective, model, guide, samples=n)
    return float(est.value.mean()), float(est.value.std() / math.sqrt(n))


def test_elbo_matches_closed_form_and_is_a_bound():
    torch.manual_seed(0)
    value, se = mean_se(infer.elbo(), gaussian_guide(0.3, 0.7))
    assert abs(value - exact_elbo(0.3, 0.7)) < 4 * se
    assert value < LOG_EVIDENCE


def test_elbo_at_the_exact_posterior_is_the_evidence_with_zero_variance():
    est = infer.estimate(infer.elbo(), model, gaussian_guide(POST_MEAN, POST_SD), samples=100)
    assert torch.allclose(est.value, torch.tensor(LOG_EVIDENCE, dtype=torch.float64))


def test_analytic_kl_elbo_has_the_same_mean():
    torch.manual_seed(1)
    value, se = mean_se(infer.elbo(analytic_kl=True), gaussian_guide(0.3, 0.7))
    assert abs(value - exact_elbo(0.3, 0.7)) < 4 * se


def test_iwelbo_increases_with_k_and_stays_below_the_evidence():
    guide = gaussian_guide(0.3, 0.7)
    torch.manual_seed(2)
    values = [mean_se(infer.iwelbo(k), guide) for k in (1, 2, 5, 20)]
    assert abs(values[0][0] - exact_elbo(0.3, 0.7)) < 4 * values[0][1]
    for (lo, se_lo), (hi, se_hi) in zip(values, values[1:]):
        assert hi > lo - 2 * math.hypot(se_lo, se_hi)
    assert values[-1][0] > values[0][0] + 0.05
    assert all(v < LOG_EVIDENCE + 3 * se for v, se in values)


def test_hierarchical_bounds_are_ordered_and_below_the_evidence():
    guide = hierarchical_guide()
    marginal_elbo = exact_elbo(0.2, math.sqrt(0.6**2 + 0.3**2))
    torch.manual_seed(3)
    hvi = mean_se(infer.hvi("u"), guide)
    iwhvi = mean_se(infer.iwhvi("u", 10), guide)
    big = mean_se(infer.iwhvi("u", 200), guide, n=5_000)
    diwhvi = mean_se(infer.diwhvi("u", 5, 10), guide)
    assert hvi[0] < iwhvi[0] < marginal_elbo + 3 * iwhvi[1]
    assert abs(big[0] - marginal_elbo) < 0.02 + 4 * big[1]  # q_hat -> q as N grows
    assert diwhvi[0] > iwhvi[0]
    assert diwhvi[0] < LOG_EVIDENCE + 3 * diwhvi[1]


def test_marginal_with_an_explicit_proposal_keeps_the_bound():
    """r(u | z) = the exact conditional of u given z: q_hat is exact, IWHVI = marginal ELBO."""
    a, b, c = 0.2, 0.6, 0.3
    var = b**2 + c**2

    def proposal(zs):
        z = zs["z"]
        infer.sample("u", Normal(b * (z - a) / var, math.sqrt(c**2 / var)))

    guide = hierarchical_guide(a, b, c)
    torch.manual_seed(4)
    est = infer.estimate(lambda m, g: infer.elbo()(m, infer.marginal(g, "u", 3, proposal)),
                         model, guide, samples=20_000)
    exact = exact_elbo(a, math.sqrt(var))
    assert abs(float(est.value.mean()) - exact) < 4 * float(est.value.std()) / math.sqrt(20_000)


def test_sir_evidence_is_unbiased_and_resamples_towards_the_posterior():
    torch.manual_seed(5)
    result = infer.sir(model, gaussian_guide(0.0, 1.0), 2_000)
    assert abs(float(result.log_evidence) - LOG_EVIDENCE) < 0.05
    draws = torch.stack([infer.sir(model, gaussian_guide(0.0, 1.0), 500).values["z"]
                         for _ in range(400)])
    assert abs(float(draws.mean()) - POST_MEAN) < 0.08
    assert abs(float(draws.std()) - POST_SD) < 0.08


def test_fit_elbo_recovers_the_exact_posterior():
    class Guide(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.loc = torch.nn.Parameter(torch.tensor(-1.0, dtype=torch.float64))
            self.log_scale = torch.nn.Parameter(torch.tensor(0.5, dtype=torch.float64))

        def forward(self):
            infer.sample("z", Normal(self.loc, self.log_scale.exp()))

    guide = Guide()
    torch.manual_seed(6)
    cfg = TrainConfig(epochs=300, lr=0.1)
    infer.fit(infer.elbo(), model, guide, cfg=cfg, samples=32)
    assert abs(float(guide.loc.detach()) - POST_MEAN) < 0.05
    assert abs(float(guide.log_scale.detach().exp()) - POST_SD) < 0.05


@pytest.mark.parametrize("wake", ["q", "both"])
def test_rws_fits_the_guide_and_the_model(wake):
    """q-wake moves q to the posterior; p-wake moves the prior mean theta to the maximum
    likelihood theta = x (x ~ N(theta, 1.25) marginally)."""
    class Model(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.theta = torch.nn.Parameter(torch.tensor(0.0, dtype=torch.float64))

        def forward(self):
            z = infer.sample("z", Normal(self.theta, 1.0))
            infer.sample("x", Normal(z, SIGMA), obs=torch.tensor(X, dtype=torch.float64))

    class Guide(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.loc = torch.nn.Parameter(torch.tensor(-1.0, dtype=torch.float64))
            self.log_scale = torch.nn.Parameter(torch.tensor(0.0, dtype=torch.float64))

        def forward(self):
            infer.sample("z", Normal(self.loc, self.log_scale.exp()))

    m, g = Model(), Guide()
    torch.manual_seed(7)
    infer.fit(infer.rws(20, wake), m, g, cfg=TrainConfig(epochs=400, lr=0.05))
    theta = float(m.theta.detach())
    if wake == "q":
        assert theta == 0.0
        assert abs(float(g.loc.detach()) - X / (1 + SIGMA**2)) < 0.1
    else:
        assert abs(theta - X) < 0.25
        post_mean = theta + (X - theta) / (1 + SIGMA**2)
        assert abs(float(g.loc.detach()) - post_mean) < 0.15
    assert abs(float(g.log_scale.detach().exp()) - POST_SD) < 0.1


def test_a_user_objective_from_the_primitives():
    """The docs' recipe: a new objective in a few lines (here IWELBO by hand)."""
    def my_iwelbo(model, guide, *args, k=5):
        with infer.particles(k) as dim:
            q = infer.simulate(guide, *args)
            p = infer.density(model, q, *args)
        return infer.logmeanexp(infer.log_weight(p, q), dim)

    guide = gaussian_guide(0.3, 0.7)
    torch.manual_seed(8)
    mine = mean_se(my_iwelbo, guide)
    torch.manual_seed(9)
    builtin = mean_se(infer.iwelbo(5), guide)
    assert abs(mine[0] - builtin[0]) < 4 * math.hypot(mine[1], builtin[1])


def test_marginal_density_overestimates_log_q_because_it_keeps_the_generating_u():
    """E[log q_hat(z)] >= log q(z) when u_0 (the auxiliary that generated z) is one of the
    terms, and the gap shrinks with N. Without u_0 the estimate would be biased downwards and
    the 'bound' could exceed log p(x)."""
    a, b, c = 0.2, 0.6, 0.3
    guide = hierarchical_guide(a, b, c)
    torch.manual_seed(10)
    gaps = []
    for n in (1, 4, 32):
        with infer.scope(), infer.particles(20_000):
            t = infer.simulate(infer.marginal(guide, "u", n))
        gap = t.log_prob() - Normal(a, math.sqrt(b**2 + c**2)).log_prob(t["z"])
        se = float(gap.std()) / math.sqrt(len(gap))
        assert float(gap.mean()) > -3 * se
        gaps.append(float(gap.mean()))
    assert gaps[0] > gaps[1] > gaps[2]
