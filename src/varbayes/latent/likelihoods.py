"""Observation models p(x | decoder output) for VAEs: Bernoulli for pixel intensities in
[0, 1], Gaussian with a fixed or learned standard deviation for real values.

A likelihood turns the decoder's raw output (one unconstrained value per data element) into a
`torch.distributions` object whose event covers the whole example, so `log_prob(x)` is one
number per example and any leading particle dimensions pass through. `check(x)` rejects data
outside the likelihood's support with one line.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.distributions import Bernoulli, Distribution, Independent, Normal

from varbayes.errors import VarbayesError, one_of

LIKELIHOODS = ("bernoulli", "gaussian")


class Likelihood(nn.Module):
    """Base class: `distribution(out)` for decoder outputs `out` of shape (..., n_features)."""

    name = "likelihood"

    def distribution(self, out: torch.Tensor) -> Distribution:
        raise NotImplementedError

    def mean(self, out: torch.Tensor) -> torch.Tensor:
        """The expected data under the decoder output (what a sample grid shows)."""
        return self.distribution(out).mean

    def check(self, x: torch.Tensor, name: str = "x") -> None:
        """Raise a one-line VarbayesError when `x` is outside the support."""


class BernoulliLikelihood(Likelihood):
    """Independent Bernoulli per pixel with logits from the decoder. Targets may be any value in
    [0, 1] (grey levels): log p is then the binary cross-entropy, as in Sohn et al. (2015)."""

    name = "bernoulli"

    def distribution(self, out: torch.Tensor) -> Distribution:
        # validate_args=False: torch's Bernoulli accepts only {0, 1} targets otherwise
        return Independent(Bernoulli(logits=out, validate_args=False), 1)

    def mean(self, out: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(out)

    def check(self, x: torch.Tensor, name: str = "x") -> None:
        lo, hi = float(x.min()), float(x.max())
        if lo < 0.0 or hi > 1.0:
            raise VarbayesError(f"{name} has values in [{lo:.4g}, {hi:.4g}]; a Bernoulli "
                                "likelihood needs pixel intensities in [0, 1] (for digits use "
                                "Dataset.unit_pixels)")


class GaussianLikelihood(Likelihood):
    """Independent Gaussian per feature with the decoder output as mean and standard deviation
    `std` (fixed, the eta_dec of the collapse theory) or learned (one per feature) when
    `learn_std`."""

    name = "gaussian"

    def __init__(self, n_features: int, std: float = 1.0, learn_std: bool = False) -> None:
        super().__init__()
        if not std > 0:
            raise VarbayesError(f"the Gaussian likelihood's std must be > 0; got {std}")
        log_std = torch.full((n_features,), math.log(std))
        if learn_std:
            self.log_std = nn.Parameter(log_std)
        else:
            self.register_buffer("log_std", log_std)

    def distribution(self, out: torch.Tensor) -> Distribution:
        return Independent(Normal(out, self.log_std.exp().expand_as(out), validate_args=False), 1)

    def mean(self, out: torch.Tensor) -> torch.Tensor:
        return out


def make_likelihood(name: str, n_features: int, std: float = 1.0,
                    learn_std: bool = False) -> Likelihood:
    """A likelihood by name: "bernoulli" or "gaussian" (with `std`, optionally learned)."""
    if name == "bernoulli":
        return BernoulliLikelihood()
    if name == "gaussian":
        return GaussianLikelihood(n_features, std, learn_std)
    raise one_of("likelihood", name, LIKELIHOODS)
