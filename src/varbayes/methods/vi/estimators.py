"""Gradient-estimator check on a model with a discrete and a continuous choice (spec 5.2).

Model: v ~ Bern(0.8); (r, s) = (2, 1) if v else (3, 0.5); x ~ N(r, s); 4 ~ N(x^2, 0.1)
observed. Guide: v ~ Bern(p); x ~ N(mu1, 1) if v else N(mu2, 1). The exact ELBO gradient in
(p, mu1, mu2) comes from enumerating v and Gauss-Hermite quadrature over x (exact here: the
integrand is a polynomial of degree 4 in x); REINFORCE, enumeration and MVD on v (x
reparameterised) must each average to it, and their variances on d/dp are reported.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch.distributions import Bernoulli, Normal

from varbayes import infer

PARAMS = (0.6, 1.8, 2.1)  # (p, mu1, mu2) where the gradient is checked
STRATEGIES = {"reinforce": infer.reinforce, "enum": infer.enum, "mvd": infer.mvd}


def model(*_: torch.Tensor) -> None:
    """The model; it ignores the guide's parameters, which the objective passes to both."""
    v = infer.sample("v", Bernoulli(torch.tensor(0.8, dtype=torch.float64)))
    r = torch.where(v > 0, 2.0, 3.0).double()
    s = torch.where(v > 0, 1.0, 0.5).double()
    x = infer.sample("x", Normal(r, s))
    infer.sample("y", Normal(x**2, 0.1), obs=torch.tensor(4.0, dtype=torch.float64))


def guide(p: torch.Tensor, mu1: torch.Tensor, mu2: torch.Tensor) -> None:
    v = infer.sample("v", Bernoulli(probs=p))
    infer.sample("x", Normal(torch.where(v > 0, mu1, mu2), 1.0))


def exact_elbo(p: torch.Tensor, mu1: torch.Tensor, mu2: torch.Tensor) -> torch.Tensor:
    """The ELBO in closed form: enumeration over v, Gauss-Hermite quadrature over x."""
    nodes, weights = np.polynomial.hermite_e.hermegauss(20)
    t = torch.tensor(nodes, dtype=torch.float64)
    w = torch.tensor(weights / math.sqrt(2 * math.pi), dtype=torch.float64)

    def inner(mu: torch.Tensor, r: float, s: float) -> torch.Tensor:
        x = mu + t
        f = (Normal(r, s).log_prob(x) + Normal(x**2, 0.1).log_prob(torch.tensor(4.0))
             - Normal(mu, 1.0).log_prob(x))
        return (w * f).sum()

    return (p * (math.log(0.8) - torch.log(p) + inner(mu1, 2.0, 1.0))
            + (1 - p) * (math.log(0.2) - torch.log(1 - p) + inner(mu2, 3.0, 0.5)))


def exact_gradient(params: tuple[float, float, float] = PARAMS) -> torch.Tensor:
    """d ELBO / d (p, mu1, mu2), exactly."""
    theta = torch.tensor(params, dtype=torch.float64, requires_grad=True)
    (grad,) = torch.autograd.grad(exact_elbo(*theta), theta)
    return grad


@dataclass
class EstimatorStats:
    """Mean, standard error, variance (and the variance estimate's standard error, from the
    fourth central moment) of n per-sample gradient estimates (p, mu1, mu2), and the mean
    value estimate."""

    strategy: str
    mean: list[float]
    stderr: list[float]
    variance: list[float]
    variance_se: list[float]
    value: float
    value_stderr: float


def gradient_estimates(strategy: str, n: int,
                       params: tuple[float, float, float] = PARAMS) -> EstimatorStats:
    """n independent ELBO-gradient estimates with `strategy` on v (x reparameterised).

    Each of the n elements gets its own copy of the parameters, so one backward pass gives
    n per-sample gradients.
    """
    theta = [torch.full((n,), v, dtype=torch.float64, requires_grad=True) for v in params]
    est = infer.estimate(infer.elbo(), model, guide, *theta, plates=1,
                         strategies={"v": STRATEGIES[strategy]()})
    grads = torch.stack(torch.autograd.grad(est.surrogate.sum(), theta), -1)  # (n, 3)
    value = est.value
    centred = grads - grads.mean(0)
    var = centred.pow(2).mean(0)
    var_se = ((centred.pow(4).mean(0) - var**2) / n).sqrt()
    return EstimatorStats(
        strategy,
        grads.mean(0).tolist(),
        (grads.std(0) / math.sqrt(n)).tolist(),
        grads.var(0).tolist(),
        var_se.tolist(),
        float(value.mean()),
        float(value.std() / math.sqrt(n)),
    )
