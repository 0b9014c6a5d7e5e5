"""The ELBO per training example: the one implementation the whole library uses.

For N training examples and a minibatch B the per-example ELBO estimate is

    l_b = log p(y_b | x_b, theta) - beta * w * (kl_local_b + KL / N),

whose minibatch mean (1/|B|) sum_b l_b is an unbiased estimate of ELBO_beta / N: the data
term is a minibatch sum (N/|B|) sum_b log p(y_b | ...) divided by N, a global KL (the weights
of a Bayesian network) is divided by the dataset size N, never by the batch size (dividing by
|B| silently rescales the KL weight by N/|B|), and a local KL (a VAE's per-example latent) stays
with its example. beta is the KL weight or temperature (beta = 1: the ELBO; beta < 1: a cold
posterior), w the warm-up factor (`varbayes.train.kl_warmup`).

`elbo_terms` is the core; `elbo_loss` is the loss form the Bayesian-layer methods call with an
analytic KL, and the site-based objectives of `varbayes.infer` (`elbo`, `log_weight`) call
`elbo_terms` with the log-densities of their traces (a Monte Carlo or analytic KL).
"""

from __future__ import annotations

import torch

from varbayes.errors import VarbayesError


def elbo_terms(
    loglik: torch.Tensor,
    kl: torch.Tensor | float,
    n_train: int,
    kl_weight: float = 1.0,
    warmup: float = 1.0,
    local_kl: torch.Tensor | float = 0.0,
) -> torch.Tensor:
    """Per-example ELBO estimates: loglik_b - kl_weight * warmup * (local_kl_b + kl / n_train).

    loglik: log-likelihood of each example of the minibatch; kl: the KL (or its Monte Carlo
    estimate log q - log p) of the global latents; local_kl: the per-example KL of local ones.
    """
    if n_train <= 0:
        raise VarbayesError(f"n_train must be the (positive) number of training examples; "
                            f"got {n_train}")
    penalty = local_kl
    if not (type(kl) in _NUMBERS and kl == 0):  # a plain 0: nothing to add (see _NUMBERS)
        penalty = penalty + kl / n_train
    if type(penalty) in _NUMBERS and penalty == 0:
        return loglik
    beta = kl_weight * warmup
    return loglik - (penalty if beta == 1.0 else beta * penalty)


_NUMBERS = (int, float)
"""Plain numbers: a zero among them is skipped, which keeps zero-valued ops out of the
autograd graph (checked inline, without a call, on every step)."""


def elbo_loss(
    nll: torch.Tensor,
    kl: torch.Tensor,
    n_train: int,
    kl_weight: float = 1.0,
    warmup: float = 1.0,
) -> torch.Tensor:
    """Negative ELBO per training example from per-example NLLs of one minibatch and the KL."""
    return -elbo_terms(-nll, kl, n_train, kl_weight, warmup).mean()
