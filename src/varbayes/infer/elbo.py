"""The ELBO as a per-minibatch loss: the one implementation the whole library uses.

For N training examples and a minibatch B the loss

    L = (1/|B|) sum_{b in B} -log p(y_b | x_b, theta_b) + (beta * w / N) * KL(q || p)

is an unbiased estimate of -ELBO_beta / N. The KL is divided by the dataset size N, never by
the batch size (dividing by |B| silently rescales the KL weight by N/|B|). beta is the KL
weight or temperature (beta = 1: the ELBO; beta < 1: a cold posterior) and w the warm-up
factor (`varbayes.train.kl_warmup`).
"""

from __future__ import annotations

import torch


def elbo_loss(
    nll: torch.Tensor,
    kl: torch.Tensor,
    n_train: int,
    kl_weight: float = 1.0,
    warmup: float = 1.0,
) -> torch.Tensor:
    """Negative ELBO per training example from per-example NLLs of one minibatch and the KL."""
    if n_train <= 0:
        raise ValueError("n_train must be the (positive) number of training examples")
    return nll.mean() + (kl_weight * warmup / n_train) * kl
