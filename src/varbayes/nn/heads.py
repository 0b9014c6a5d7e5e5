"""How network outputs become likelihoods: softmax for classes, a Gaussian for regression.

Regression networks output two columns: the mean and an unconstrained value mapped to the
variance by softplus (plus a small floor), i.e. a heteroscedastic Gaussian likelihood.
"""

from __future__ import annotations

import math

import torch
from torch.nn import functional as F

from varbayes.errors import VarbayesError

VAR_FLOOR = 1e-6


def gaussian_params(outputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean, variance) from a regression network's two output columns."""
    return outputs[..., 0], F.softplus(outputs[..., 1]) + VAR_FLOOR


def nll_per_example(outputs: torch.Tensor, y: torch.Tensor, task: str) -> torch.Tensor:
    """-log p(y | outputs) for each example: categorical or Gaussian."""
    if task == "classification":
        try:
            return F.cross_entropy(outputs, y, reduction="none")
        except IndexError:  # a label >= the number of outputs (or < 0), seen on the CPU
            raise VarbayesError(f"labels must be integers 0..{outputs.shape[-1] - 1} for a "
                                f"network with {outputs.shape[-1]} outputs; got labels "
                                f"{int(y.min())}..{int(y.max())}") from None
    mean, var = gaussian_params(outputs)
    return 0.5 * (torch.log(2 * math.pi * var) + (y - mean) ** 2 / var)


def predictive_from_samples(
    outputs: torch.Tensor, task: str
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Average S sampled outputs (S, N, K) into the predictive distribution.

    Classification: mean of the S softmax vectors (N, K). Regression: the mean and variance
    of the equally weighted Gaussian mixture, (N,) each.
    """
    if task == "classification":
        return torch.softmax(outputs, dim=-1).mean(0)
    mean, var = gaussian_params(outputs)
    mix_mean = mean.mean(0)
    mix_var = (var + mean**2).mean(0) - mix_mean**2
    return mix_mean, mix_var.clamp_min(VAR_FLOOR)
