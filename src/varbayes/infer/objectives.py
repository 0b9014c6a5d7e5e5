"""Variational objectives as programs: each is `objective(model, guide, *args) -> values`.

An objective draws from the guide, scores the model and returns per-example values whose mean
is a (stochastic) lower bound on log p(x) per example; `estimate` turns it into a value and an
unbiased gradient with each site's strategy, `fit` maximises it. All of them are a few lines
of the primitives in `varbayes.infer.primitives`, and a new one is written the same way:

    def my_iwelbo(model, guide, *args, k=5):
        with particles(k) as dim:                 # k independent guide draws
            q = simulate(guide, *args)            # z_k ~ q, with their gradient strategies
            p = density(model, q, *args)          # log p(x, z_k)
        return logmeanexp(log_weight(p, q), dim)  # log (1/k) sum_k p/q

The hierarchical family (HVI, IWHVI, DIWHVI) is the same ELBO and IWELBO with a `marginal`
guide. Reweighted wake-sleep and SIR are here too; they are estimators, not bounds.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch.distributions import Categorical

from varbayes.errors import VarbayesError
from varbayes.infer.primitives import (
    density,
    detached,
    log_joint,
    log_weight,
    logmeanexp,
    marginal,
    simulate,
)
from varbayes.infer.sites import Trace, particles, scope

Objective = Callable[..., torch.Tensor]
"""objective(model, guide, *args, **kwargs) -> per-example values (to maximise)."""


def elbo(*, kl_weight: float = 1.0, warmup: float = 1.0, analytic_kl: bool = False) -> Objective:
    """ELBO: E_q[log p(x, z) - log q(z)] (with the KL weight, warm-up and analytic KL options
    of the one ELBO, `varbayes.infer.elbo_terms`)."""
    _check_weight("elbo kl_weight", kl_weight)
    _check_weight("elbo warmup", warmup)

    def objective(model: Callable, guide: Callable, *args: Any, **kwargs: Any) -> torch.Tensor:
        q = simulate(guide, *args, **kwargs)
        p = density(model, q, *args, **kwargs)
        return log_weight(p, q, kl_weight=kl_weight, warmup=warmup, analytic_kl=analytic_kl)

    objective.__name__ = "elbo"
    # its options: `estimate` runs this objective through its fast path (`_plain_elbo`)
    objective.plain_elbo = (kl_weight, warmup, analytic_kl)  # type: ignore[attr-defined]
    return objective


def iwelbo(k: int) -> Objective:
    """IWELBO(K): E[log (1/K) sum_k p(x, z_k)/q(z_k)], z_k iid from q (K = 1: the ELBO)."""
    _check_count("iwelbo K", k)

    def objective(model: Callable, guide: Callable, *args: Any, **kwargs: Any) -> torch.Tensor:
        with particles(k) as dim:
            q = simulate(guide, *args, **kwargs)
            p = density(model, q, *args, **kwargs)
            lw = log_weight(p, q)
        return logmeanexp(_with_dim(lw, dim), dim)

    objective.__name__ = f"iwelbo({k})"
    return objective


def hvi(aux: str | Sequence[str]) -> Objective:
    """HVI: the ELBO of the marginal guide with one auxiliary sample, q_hat = q(z | u_0)."""
    return _named(lambda m, g, *a, **kw: elbo()(m, marginal(g, aux, 1), *a, **kw), "hvi")


def iwhvi(aux: str | Sequence[str], n: int) -> Objective:
    """IWHVI(N): the ELBO with the N-sample importance estimate of the marginal q(z)."""
    _check_count("iwhvi N", n)
    return _named(lambda m, g, *a, **kw: elbo()(m, marginal(g, aux, n), *a, **kw),
                  f"iwhvi({n})")


def diwhvi(aux: str | Sequence[str], k: int, n: int) -> Objective:
    """DIWHVI(K, N): IWELBO(K) where each particle's q(z_k) is an IWHVI(N) estimate."""
    _check_count("diwhvi K", k)
    _check_count("diwhvi N", n)
    return _named(lambda m, g, *a, **kw: iwelbo(k)(m, marginal(g, aux, n), *a, **kw),
                  f"diwhvi({k},{n})")


def rws(n: int, wake: str = "both") -> Objective:
    """Reweighted wake-sleep with n particles and self-normalised weights w_i.

    q-wake maximises sum_i w_i log q(z_i) (fits q to the posterior, forward KL); p-wake
    maximises sum_i w_i log p(x, z_i). The samples and weights carry no gradient. The value
    returned is the IWELBO(n) of the same particles (a bound to monitor); the gradient is that
    of the chosen wake objectives.
    """
    _check_count("rws particles", n)
    if wake not in ("q", "p", "both"):
        raise VarbayesError(f"rws wake must be one of q, p, both; got {wake!r}")

    def objective(model: Callable, guide: Callable, *args: Any, **kwargs: Any) -> torch.Tensor:
        with particles(n) as dim:
            with detached():
                drawn = simulate(guide, *args, **kwargs)
            values = {k: v.detach() for k, v in drawn.values.items()}
            q = _score(guide, values, args, kwargs)
            p = density(model, values, *args, **kwargs)
            lw = _with_dim(log_weight(p, q), dim)
            log_q, log_p = _with_dim(log_joint(q), dim), _with_dim(log_joint(p), dim)
        w = torch.softmax(lw.detach(), dim)
        surrogate = torch.zeros(())
        if wake in ("q", "both"):
            surrogate = surrogate + (w * log_q).sum(dim)
        if wake in ("p", "both"):
            surrogate = surrogate + (w * log_p).sum(dim)
        bound = logmeanexp(lw, dim).detach()
        return bound + (surrogate - surrogate.detach())

    objective.__name__ = f"rws({n},{wake})"
    return objective


def _score(guide: Callable, values: dict[str, torch.Tensor], args: tuple,
           kwargs: dict) -> Trace:
    """The guide's trace at fixed values (log q with gradient to the guide's parameters)."""
    return density(guide, values, *args, **kwargs)


# ---------------------------------------------------------------------------------------------
# SIR as inference


@dataclass
class SIRResult:
    """Sampling-importance-resampling: `log_evidence` (log (1/N) sum_i w_i per example, an
    estimate whose exponential is unbiased for p(x)), the resampled `values` (one posterior
    draw per example) and the `log_weights` (particle dim first)."""

    log_evidence: torch.Tensor
    values: dict[str, torch.Tensor]
    log_weights: torch.Tensor


def sir(model: Callable, guide: Callable, n: int, *args: Any, plates: int = 0,
        data_size: int | None = None, **kwargs: Any) -> SIRResult:
    """SIR(n): z_i ~ q, w_i = p(x, z_i)/q(z_i); log-evidence estimate and a resampled z."""
    _check_count("sir particles", n)
    with torch.no_grad(), scope(plates, data_size), particles(n) as dim:
        with detached():
            q = simulate(guide, *args, **kwargs)
        p = density(model, q, *args, **kwargs)
        lw = _with_dim(log_weight(p, q), dim)
    idx = Categorical(logits=lw.movedim(dim, -1)).sample()  # one particle per element
    values = {}
    for name, site in q.sites.items():
        event = tuple(site.fn.event_shape)
        v = site.value.expand(tuple(lw.shape) + event).movedim(dim - len(event), 0)
        ix = idx.reshape((1, *idx.shape) + (1,) * len(event)).expand((1, *idx.shape, *event))
        values[name] = v.gather(0, ix).squeeze(0)
    return SIRResult(logmeanexp(lw, dim), values, lw.movedim(dim, 0))


# ---------------------------------------------------------------------------------------------


def _with_dim(t: torch.Tensor, dim: int) -> torch.Tensor:
    """t with at least -dim dims (a value that does not depend on the particles, e.g.)."""
    while t.dim() < -dim:
        t = t.unsqueeze(0)
    return t


def _check_count(what: str, k: Any) -> None:
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise VarbayesError(f"{what} must be a positive integer; got {k!r}")


def _check_weight(what: str, w: Any) -> None:
    if type(w) is float and 0.0 <= w < math.inf:  # the usual case, without the ABC check
        return
    if isinstance(w, bool) or not isinstance(w, numbers.Real) or not math.isfinite(w) or w < 0:
        raise VarbayesError(f"{what} must be a finite number >= 0; got {w!r}")


def _named(fn: Objective, name: str) -> Objective:
    fn.__name__ = name
    return fn


OBJECTIVES = ("elbo", "iwelbo", "hvi", "iwhvi", "diwhvi", "rws")
