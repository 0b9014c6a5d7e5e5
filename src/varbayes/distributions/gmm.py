"""Batched Gaussian mixtures: log-density, sampling, a Cholesky parameterisation, the exact
posterior under a linear-Gaussian observation, and Monte-Carlo KL.

A `GMM` holds B mixtures of K components in d dimensions: weights (B, K), means (B, K, d),
Cholesky factors (B, K, d, d). Component densities come from `torch.distributions`
(MultivariateNormal with `scale_tril`); what is written here is only the batching and the
closed forms. Component order carries no meaning: compare mixtures by densities only.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.distributions import MultivariateNormal


def cholesky_to_vector(scale_tril: torch.Tensor) -> torch.Tensor:
    """(..., d, d) lower-triangular factors -> (..., d + d(d-1)/2): [log diag, strict lower]."""
    d = scale_tril.shape[-1]
    rows, cols = torch.tril_indices(d, d, offset=-1)
    log_diag = torch.log(torch.diagonal(scale_tril, dim1=-2, dim2=-1))
    return torch.cat([log_diag, scale_tril[..., rows, cols]], dim=-1)


def vector_to_cholesky(vec: torch.Tensor, d: int, min_diag: float = 1e-6,
                       log_diag_range: tuple[float, float] = (-20.0, 20.0)) -> torch.Tensor:
    """Inverse of `cholesky_to_vector`: diagonal exp(clamped log) + `min_diag`, so the factor is
    always valid (the clamp keeps early training from overflowing)."""
    log_diag = vec[..., :d].clamp(*log_diag_range)
    out = torch.diag_embed(torch.exp(log_diag) + min_diag)
    if d > 1:
        rows, cols = torch.tril_indices(d, d, offset=-1)
        lower = torch.zeros_like(out)
        lower[..., rows, cols] = vec[..., d:]
        out = out + lower
    return out


@dataclass
class GMM:
    """B Gaussian mixtures with K components each in d dimensions."""

    weights: torch.Tensor      # (B, K), rows sum to one
    means: torch.Tensor        # (B, K, d)
    scale_tril: torch.Tensor   # (B, K, d, d)

    @property
    def n_components(self) -> int:
        return self.weights.shape[-1]

    @property
    def dim(self) -> int:
        return self.means.shape[-1]

    @property
    def covariance(self) -> torch.Tensor:
        return self.scale_tril @ self.scale_tril.transpose(-1, -2)

    def __getitem__(self, idx: slice | torch.Tensor | int) -> GMM:
        if isinstance(idx, int):
            idx = slice(idx, idx + 1)
        return GMM(self.weights[idx], self.means[idx], self.scale_tril[idx])

    def components(self) -> MultivariateNormal:
        return MultivariateNormal(self.means, scale_tril=self.scale_tril, validate_args=False)

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """log density of x with shape (..., B, d) under each of the B mixtures -> (..., B)."""
        comp = self.components().log_prob(x.unsqueeze(-2))  # (..., B, K)
        return torch.logsumexp(comp + torch.log(self.weights.clamp_min(1e-38)), dim=-1)

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n draws from each mixture: (n, B, d)."""
        b, k = self.weights.shape
        idx = torch.multinomial(self.weights.clamp_min(0), n, replacement=True,
                                generator=generator).T  # (n, B)
        mu = self.means[torch.arange(b), idx]                 # (n, B, d)
        tril = self.scale_tril[torch.arange(b), idx]          # (n, B, d, d)
        eps = torch.randn(n, b, self.dim, 1, generator=generator, dtype=self.means.dtype)
        return mu + (tril @ eps).squeeze(-1)

    def mean(self) -> torch.Tensor:
        """Mixture mean (B, d)."""
        return (self.weights.unsqueeze(-1) * self.means).sum(-2)

    def to_vectors(self) -> torch.Tensor:
        """One vector per component: [logit(w), mean, log diag L, strict-lower L], (B, K, p)
        (the distribution transformer's prior tokens before the embedding MLP)."""
        w = self.weights.clamp(1e-6, 1 - 1e-6)
        logit = torch.log(w) - torch.log1p(-w)
        return torch.cat([logit.unsqueeze(-1), self.means, cholesky_to_vector(self.scale_tril)],
                         dim=-1)

    @staticmethod
    def from_vectors(vec: torch.Tensor, d: int) -> GMM:
        """Inverse of `to_vectors` with the network-output conventions: weights through a
        sigmoid and renormalised over components, Cholesky diagonal through exp plus 1e-6."""
        w = torch.sigmoid(vec[..., 0])
        w = w / w.sum(-1, keepdim=True).clamp_min(1e-12)
        return GMM(w, vec[..., 1:1 + d], vector_to_cholesky(vec[..., 1 + d:], d))

    def detach(self) -> GMM:
        return GMM(self.weights.detach(), self.means.detach(), self.scale_tril.detach())


def linear_gaussian_posterior(prior: GMM, z: torch.Tensor, obs_matrix: torch.Tensor | None = None,
                              obs_cov: torch.Tensor | float = 1.0) -> GMM:
    """Exact posterior of a GMM prior after observing z = H x + N(0, R), z of shape (B, m):
    w'_k ∝ w_k N(z; H mu_k, H S_k H^T + R); each component gets its Kalman update."""
    d = prior.dim
    dtype = prior.means.dtype
    h = torch.eye(d, dtype=dtype) if obs_matrix is None else obs_matrix.to(dtype)
    m = h.shape[0]
    r = torch.as_tensor(obs_cov, dtype=dtype)
    r = r * torch.eye(m, dtype=dtype) if r.dim() == 0 else r
    cov = prior.covariance                                    # (B, K, d, d)
    s = h @ cov @ h.T + r                                     # (B, K, m, m)
    pred = prior.means @ h.T                                  # (B, K, m)
    s_chol = torch.linalg.cholesky(s)
    innov = z.to(dtype).unsqueeze(-2) - pred                  # (B, K, m)
    log_lik = MultivariateNormal(pred, scale_tril=s_chol, validate_args=False).log_prob(
        z.to(dtype).unsqueeze(-2))
    log_w = torch.log(prior.weights.clamp_min(1e-38)) + log_lik
    weights = torch.softmax(log_w, dim=-1)
    gain = torch.cholesky_solve(h @ cov, s_chol).transpose(-1, -2)  # (B, K, d, m): S^-1 H C
    means = prior.means + (gain @ innov.unsqueeze(-1)).squeeze(-1)
    post_cov = cov - gain @ h @ cov
    post_cov = 0.5 * (post_cov + post_cov.transpose(-1, -2))
    return GMM(weights, means, torch.linalg.cholesky(post_cov))


def kl_monte_carlo(q: GMM, p: GMM, n_samples: int = 10_000,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """KL(q || p) per mixture, estimated with n samples from q (GMM KL has no closed form):
    mean over samples of log q - log p; shape (B,)."""
    x = q.sample(n_samples, generator)
    return (q.log_prob(x) - p.log_prob(x)).mean(0)
