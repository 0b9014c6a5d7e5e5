"""The generalised Gaussian likelihood: density, variance and BayesCap's linear-residual loss.

GG(y; mu, alpha, beta) = beta / (2 alpha Gamma(1/beta)) * exp(-(|y - mu| / alpha)^beta), with
scale alpha > 0 and shape beta > 0 (beta = 2: a Gaussian with variance alpha^2 / 2; beta = 1:
Laplace). Networks predict the inverse scale a = 1/alpha (as BayesCap does), so every function
here takes `inv_alpha`; working with a keeps the residual term a product, which is stable for
confident (small-alpha) predictions.
"""

from __future__ import annotations

import math

import torch

RESIDUAL_FLOOR = 1e-12
"""|y - mu| / alpha is floored here before the power: d/dx x^beta is infinite at x = 0 for
beta < 1, and NaN gradients would follow."""

LINEAR_RESIDUAL_CLAMP = (1e-4, 1e3)
"""The reference code's clamp on its linear residual |y - mu| * a * beta."""


def gg_nll(y: torch.Tensor, mean: torch.Tensor, inv_alpha: torch.Tensor,
           beta: torch.Tensor) -> torch.Tensor:
    """Elementwise -log GG(y; mean, 1/inv_alpha, beta), constants included:
    (|y - mean| a)^beta - log beta - log a + lgamma(1/beta) + log 2."""
    scaled = ((y - mean).abs() * inv_alpha).clamp_min(RESIDUAL_FLOOR)
    return (scaled.pow(beta) - torch.log(beta) - torch.log(inv_alpha)
            + torch.lgamma(1.0 / beta) + math.log(2.0))


def gg_linear_residual_loss(y: torch.Tensor, mean: torch.Tensor, inv_alpha: torch.Tensor,
                            beta: torch.Tensor) -> torch.Tensor:
    """The reference BayesCap code's per-element loss: the residual enters linearly,
    clamp(|y - mean| a beta, 1e-4, 1e3) - log a + lgamma(1/beta) - log beta.

    Not a log-density (the power form of `gg_nll` is the proper one); kept as an option so
    runs can say which form they used.
    """
    low, high = LINEAR_RESIDUAL_CLAMP
    residual = ((y - mean).abs() * inv_alpha * beta).clamp(low, high)
    return residual - torch.log(inv_alpha) + torch.lgamma(1.0 / beta) - torch.log(beta)


def gg_variance(inv_alpha: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
    """Variance alpha^2 Gamma(3/beta) / Gamma(1/beta), computed in log space in float64
    (Gamma(3/beta) overflows float32 for beta below about 0.09) and returned in the input's
    dtype; a variance beyond that dtype's range (beta near 0.01) is clamped to its largest
    finite value rather than returned as Inf."""
    a, b = inv_alpha.double(), beta.double()
    log_var = -2.0 * torch.log(a) + torch.lgamma(3.0 / b) - torch.lgamma(1.0 / b)
    top = torch.finfo(inv_alpha.dtype).max
    return torch.exp(log_var).clamp_max(top).to(inv_alpha.dtype)
