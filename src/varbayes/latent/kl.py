"""The closed-form KL between diagonal Gaussians, per latent dimension.

Posterior-collapse diagnostics need the KL of every latent dimension separately (a collapsed
dimension has KL 0), not only the sum an ELBO uses. torch's registered Normal-Normal KL is
elementwise, so the per-dimension KL is that KL on the unsummed Normals.
"""

from __future__ import annotations

import torch
from torch.distributions import Normal, kl_divergence


def gaussian_kl_per_dim(
    mu_q: torch.Tensor,
    var_q: torch.Tensor,
    mu_p: torch.Tensor | float = 0.0,
    var_p: torch.Tensor | float = 1.0,
) -> torch.Tensor:
    """KL(N(mu_q, var_q) || N(mu_p, var_p)) elementwise (shape of the broadcast inputs):
    0.5 [(var_q + (mu_q - mu_p)^2) / var_p - log(var_q / var_p) - 1]."""
    mu_p = torch.as_tensor(mu_p, dtype=mu_q.dtype, device=mu_q.device)
    var_p = torch.as_tensor(var_p, dtype=mu_q.dtype, device=mu_q.device)
    return kl_divergence(Normal(mu_q, var_q.sqrt(), validate_args=False),
                         Normal(mu_p, var_p.sqrt(), validate_args=False))

