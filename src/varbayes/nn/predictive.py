"""Samplers that turn a Bayesian network into predictive samples, for
`varbayes.models.SupervisedModel(sampler=...)`: S weight draws (the MC predictive) or one
posterior-mean pass."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from varbayes.nn.meanfield import Noise, posterior_mean, sampling

Sampler = Callable[[nn.Module, torch.Tensor, int], torch.Tensor]


def mc_sampler(noise: Noise = "weights") -> Sampler:
    """S forward passes, each with fresh weights; `noise="weights"` draws one full weight
    sample per pass shared by the batch (exact for any architecture), "lrt" samples
    pre-activations per example (exact for MLPs only, and no cheaper at evaluation)."""

    def sample(network: nn.Module, x: torch.Tensor, n: int) -> torch.Tensor:
        with sampling(network, sample=True, noise=noise):
            return torch.stack([network(x) for _ in range(n)])

    return sample


def posterior_mean_sampler(network: nn.Module, x: torch.Tensor, n: int = 1) -> torch.Tensor:
    """One deterministic pass with every weight at its posterior mean, shape (1, N, K)."""
    with posterior_mean(network):
        return network(x).unsqueeze(0)
