"""Held-out log-likelihood by importance sampling, and programs for any encoder/decoder pair.

log p(x | c) ~= log (1/S) sum_s p(x | z_s, c) p(z_s | c) / q(z_s | x, c), z_s ~ q(z | x, c):
exactly the IWELBO(S) of `varbayes.infer` evaluated on held-out data (a lower bound whose
expectation rises to log p(x | c) as S grows). The prior density is the model's own p(z | c),
a learned prior network included, never N(0, I) unless that is the model's prior.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch.distributions import Distribution, Independent, Normal

from varbayes import infer
from varbayes.errors import VarbayesError


def log_likelihood(
    vae: Any,
    x: torch.Tensor,
    c: torch.Tensor | None = None,
    *,
    samples: int = 1000,
    batch_size: int | None = None,
) -> torch.Tensor:
    """Per-example importance-sampled estimates of log p(x | c), shape (n,).

    vae: anything with `model(x, c)` and `guide(x, c)` programs (a `CVAE`, or `programs(...)`).
    batch_size: examples per chunk (default: about 2e5 / samples, so memory stays bounded).
    """
    if not isinstance(samples, int) or samples < 1:
        raise VarbayesError(f"samples must be a positive integer; got {samples!r}")
    batch = batch_size or max(1, 200_000 // samples)
    parts = []
    with torch.no_grad():
        for i in range(0, len(x), batch):
            args = (x[i:i + batch],) if c is None else (x[i:i + batch], c[i:i + batch])
            parts.append(infer.estimate(infer.iwelbo(samples), vae.model, vae.guide, *args,
                                        plates=1).value)
    return torch.cat(parts)


class Programs:
    """`model(x, c)` / `guide(x, c)` programs from three functions of a latent-variable model:
    posterior(x, c) -> Normal, prior(c, n) -> Normal (per dimension), likelihood(z, c) ->
    a distribution over x whose event is the whole example."""

    def __init__(self, posterior: Callable[[torch.Tensor, Any], Normal],
                 prior: Callable[[Any, int], Normal],
                 likelihood: Callable[[torch.Tensor, Any], Distribution]) -> None:
        self.posterior_fn, self.prior_fn, self.likelihood_fn = posterior, prior, likelihood

    def model(self, x: torch.Tensor, c: Any = None) -> None:
        z = infer.sample("z", Independent(self.prior_fn(c, len(x)), 1))
        infer.sample("x", self.likelihood_fn(z, c), obs=x)

    def guide(self, x: torch.Tensor, c: Any = None) -> None:
        infer.sample("z", Independent(self.posterior_fn(x, c), 1))


def programs(posterior: Callable[[torch.Tensor, Any], Normal], prior: Callable[[Any, int], Normal],
             likelihood: Callable[[torch.Tensor, Any], Distribution]) -> Programs:
    """Wrap a model given by its three distributions as varbayes.infer programs."""
    return Programs(posterior, prior, likelihood)
