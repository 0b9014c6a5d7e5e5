"""Gaussian-process priors over datasets and their exact posterior predictive (the oracle).

- `GPPrior`: y ~ GP(0, outputscale * k(lengthscale)) + N(0, noise) with fixed hyperparameters,
  x uniform on [0, 1]^d (the PFN paper's `fast_gp` prior; noise is a variance).
- `HyperGPPrior`: per dataset, noise, ARD lengthscales and outputscale drawn from Gamma
  hyperpriors, Matern-5/2 kernel (the paper's `fast_gp_mix`, Gamma(concentration, rate)).
- `gp_predictive`: the exact predictive N(mu*, sigma*^2 + noise) by Cholesky in float64, the
  oracle a PFN is measured against.
- `HyperGPPrior.log_predictive`: the Bayesian posterior predictive with the hyperparameters
  integrated out (importance sampling, float64), the target a PFN trained on the hyperprior
  GP approximates and the quantity NUTS over the hyperparameters estimates.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np
import torch

from varbayes.priors.base import DatasetPrior, numpy_rng

Kernel = Literal["rbf", "matern52"]


def kernel_matrix(x1: torch.Tensor, x2: torch.Tensor, lengthscale: torch.Tensor | float,
                  outputscale: torch.Tensor | float, kernel: Kernel = "rbf") -> torch.Tensor:
    """k(x1, x2) for batched inputs (B, N, d) and (B, M, d); lengthscale is a float, (B,) or
    (B, d) (ARD), outputscale a float or (B,). Returns (B, N, M) in the inputs' dtype."""
    ls = torch.as_tensor(lengthscale, dtype=x1.dtype, device=x1.device)
    os_ = torch.as_tensor(outputscale, dtype=x1.dtype, device=x1.device)
    ls = ls.reshape(-1, 1, 1, ls.shape[-1] if ls.dim() == 2 else 1)
    diff = (x1.unsqueeze(-2) - x2.unsqueeze(-3)) / ls
    r2 = (diff * diff).sum(-1)
    if kernel == "rbf":
        k = torch.exp(-0.5 * r2)
    elif kernel == "matern52":
        r = torch.sqrt(r2.clamp_min(1e-30))
        s5 = math.sqrt(5.0)
        k = (1 + s5 * r + 5.0 / 3.0 * r2) * torch.exp(-s5 * r)
    else:
        raise ValueError(f"unknown kernel {kernel!r}")
    return os_.reshape(-1, 1, 1) * k


def gp_predictive(
    x_ctx: torch.Tensor, y_ctx: torch.Tensor, x_query: torch.Tensor,
    lengthscale: torch.Tensor | float, outputscale: torch.Tensor | float,
    noise: torch.Tensor | float, kernel: Kernel = "rbf",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact GP posterior predictive of y at the queries: mean and variance (noise included),
    shapes (B, M), computed in float64. An empty context gives the prior predictive."""
    xc, yc, xq = x_ctx.double(), y_ctx.double(), x_query.double()
    noise_t = torch.as_tensor(noise, dtype=torch.float64).reshape(-1, 1)
    os_t = torch.as_tensor(outputscale, dtype=torch.float64).reshape(-1, 1)
    prior_var = (os_t + noise_t).expand(xq.shape[0], xq.shape[1])
    if xc.shape[1] == 0:
        return torch.zeros_like(prior_var), prior_var.clone()
    ls = torch.as_tensor(lengthscale, dtype=torch.float64)
    k_cc = kernel_matrix(xc, xc, ls, os_t.reshape(-1), kernel)
    eye = torch.eye(xc.shape[1], dtype=torch.float64)
    chol = torch.linalg.cholesky(k_cc + noise_t.reshape(-1, 1, 1) * eye)
    k_cq = kernel_matrix(xc, xq, ls, os_t.reshape(-1), kernel)
    alpha = torch.cholesky_solve(yc.unsqueeze(-1), chol)
    mean = (k_cq.transpose(-1, -2) @ alpha).squeeze(-1)
    v = torch.linalg.solve_triangular(chol, k_cq, upper=False)
    var = prior_var - (v * v).sum(-2)
    return mean, var.clamp_min(1e-12)


def gp_log_marginal(x_ctx: torch.Tensor, y_ctx: torch.Tensor,
                    lengthscale: torch.Tensor | float, outputscale: torch.Tensor | float,
                    noise: torch.Tensor | float, kernel: Kernel = "rbf") -> torch.Tensor:
    """log N(y_ctx; 0, K + noise I) per dataset (B,), in float64."""
    xc, yc = x_ctx.double(), y_ctx.double()
    n = xc.shape[1]
    noise_t = torch.as_tensor(noise, dtype=torch.float64).reshape(-1, 1, 1)
    k = kernel_matrix(xc, xc, torch.as_tensor(lengthscale, dtype=torch.float64),
                      torch.as_tensor(outputscale, dtype=torch.float64), kernel)
    chol = torch.linalg.cholesky(k + noise_t * torch.eye(n, dtype=torch.float64))
    z = torch.linalg.solve_triangular(chol, yc.unsqueeze(-1), upper=False).squeeze(-1)
    logdet = torch.log(torch.diagonal(chol, dim1=-2, dim2=-1)).sum(-1)
    return -0.5 * (z * z).sum(-1) - logdet - 0.5 * n * math.log(2 * math.pi)


def sample_gp(x: torch.Tensor, lengthscale: torch.Tensor | float,
              outputscale: torch.Tensor | float, noise: torch.Tensor | float, kernel: Kernel,
              generator: torch.Generator | None = None) -> torch.Tensor:
    """One draw of noisy y per dataset at inputs x (B, N, d), in float64 for stability."""
    xd = x.double()
    noise_t = torch.as_tensor(noise, dtype=torch.float64).reshape(-1, 1, 1)
    k = kernel_matrix(xd, xd, lengthscale, outputscale, kernel)
    n = x.shape[1]
    jitter = 1e-9 * torch.as_tensor(outputscale, dtype=torch.float64).reshape(-1, 1, 1)
    chol = torch.linalg.cholesky(k + (noise_t + jitter) * torch.eye(n, dtype=torch.float64))
    eps = torch.randn(x.shape[0], n, 1, generator=generator, dtype=torch.float64)
    return (chol @ eps).squeeze(-1).to(x.dtype)


class GPPrior(DatasetPrior):
    """GP(0, outputscale * kernel(lengthscale)) plus Gaussian noise of variance `noise`, with
    inputs uniform on [0, 1]^x_dim."""

    def __init__(self, lengthscale: float = 0.1, outputscale: float = 0.1, noise: float = 0.1,
                 x_dim: int = 1, kernel: Kernel = "rbf") -> None:
        if min(lengthscale, outputscale, noise) <= 0:
            raise ValueError("GP hyperparameters must be positive")
        self.lengthscale, self.outputscale, self.noise = lengthscale, outputscale, noise
        self.x_dim, self.kernel = x_dim, kernel

    def sample(self, n_datasets: int, n_points: int,
               generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.sample_x(n_datasets, n_points, generator)
        return x, sample_gp(x, self.lengthscale, self.outputscale, self.noise, self.kernel,
                            generator)

    def predictive(self, x_ctx: torch.Tensor, y_ctx: torch.Tensor, x_query: torch.Tensor
                   ) -> tuple[torch.Tensor, torch.Tensor]:
        """The exact posterior predictive (float64) under this prior."""
        return gp_predictive(x_ctx, y_ctx, x_query, self.lengthscale, self.outputscale,
                             self.noise, self.kernel)

    def describe(self) -> dict[str, Any]:
        return {"name": "gp", "lengthscale": self.lengthscale, "outputscale": self.outputscale,
                "noise": self.noise, "x_dim": self.x_dim, "kernel": self.kernel}


class HyperGPPrior(DatasetPrior):
    """A GP whose hyperparameters are drawn per dataset: noise ~ Gamma(1.1, 0.05), every ARD
    lengthscale ~ Gamma(3, 6), outputscale ~ Gamma(0.5, 0.15) (concentration, rate), with a
    Matern-5/2 kernel; inputs uniform on [0, 1]^x_dim."""

    def __init__(self, x_dim: int = 1, noise: tuple[float, float] = (1.1, 0.05),
                 lengthscale: tuple[float, float] = (3.0, 6.0),
                 outputscale: tuple[float, float] = (0.5, 0.15),
                 kernel: Kernel = "matern52") -> None:
        self.x_dim, self.kernel = x_dim, kernel
        self.noise_prior, self.lengthscale_prior, self.outputscale_prior = (
            tuple(noise), tuple(lengthscale), tuple(outputscale))

    def sample_hyperparameters(self, n_datasets: int, generator: torch.Generator | None = None
                               ) -> dict[str, torch.Tensor]:
        """Per-dataset noise (B,), lengthscale (B, d) and outputscale (B,)."""
        rng = numpy_rng(generator)

        def gamma(prior: tuple[float, float], size: tuple[int, ...]) -> torch.Tensor:
            conc, rate = prior
            draw = rng.gamma(conc, 1.0 / rate, size=size)
            return torch.as_tensor(draw, dtype=torch.float64).clamp_min(1e-4)

        return {"noise": gamma(self.noise_prior, (n_datasets,)),
                "lengthscale": gamma(self.lengthscale_prior, (n_datasets, self.x_dim)),
                "outputscale": gamma(self.outputscale_prior, (n_datasets,))}

    def sample_with_hyperparameters(
        self, n_datasets: int, n_points: int, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        """Datasets together with the hyperparameters that generated them."""
        hp = self.sample_hyperparameters(n_datasets, generator)
        x = self.sample_x(n_datasets, n_points, generator)
        y = sample_gp(x, hp["lengthscale"], hp["outputscale"], hp["noise"], self.kernel,
                      generator)
        return x, y, hp

    def sample(self, n_datasets: int, n_points: int,
               generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        x, y, _ = self.sample_with_hyperparameters(n_datasets, n_points, generator)
        return x, y

    def sample_weighted(self, n_datasets: int, n_points: int, low_noise_fraction: float,
                        generator: torch.Generator | None = None, low: float = 1e-3,
                        high: float = 1.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Datasets whose noise comes from the mixture (1 - a) * hyperprior + a *
        LogUniform[low, high] (a = `low_noise_fraction`), with importance weights
        p(noise) / q(noise) (B,): a weighted average of any per-dataset loss has the same
        expectation as under the prior, but the rare low-noise region is seen far more often."""
        hp = self.sample_hyperparameters(n_datasets, generator)
        rng = numpy_rng(generator)
        pick = torch.as_tensor(rng.random(n_datasets) < low_noise_fraction)
        log_u = rng.uniform(math.log(low), math.log(high), size=n_datasets)
        noise = torch.where(pick, torch.as_tensor(np.exp(log_u)), hp["noise"])
        conc, rate = self.noise_prior
        log_p = torch.distributions.Gamma(torch.tensor(conc, dtype=torch.float64),
                                          torch.tensor(rate, dtype=torch.float64)
                                          ).log_prob(noise)
        inside = (noise >= low) & (noise <= high)
        log_uni = torch.where(inside, -torch.log(noise) - math.log(math.log(high / low)),
                              torch.full_like(noise, -math.inf))
        log_q = torch.logaddexp(math.log1p(-low_noise_fraction) + log_p,
                                math.log(low_noise_fraction) + log_uni)
        x = self.sample_x(n_datasets, n_points, generator)
        y = sample_gp(x, hp["lengthscale"], hp["outputscale"], noise, self.kernel, generator)
        return x, y, torch.exp(log_p - log_q).float()

    def log_hyperprior(self, u: torch.Tensor) -> torch.Tensor:
        """Log density of log-hyperparameters u = log(noise, outputscale, lengthscale_1..d)
        (K, 2 + d) under the Gamma hyperpriors (Jacobian of the log included)."""
        priors = [self.noise_prior, self.outputscale_prior] + [self.lengthscale_prior] * self.x_dim
        conc = torch.tensor([p[0] for p in priors], dtype=torch.float64)
        rate = torch.tensor([p[1] for p in priors], dtype=torch.float64)
        return (conc * torch.log(rate) - torch.lgamma(conc) + conc * u - rate * u.exp()).sum(-1)

    @torch.no_grad()
    def log_predictive(self, x_ctx: torch.Tensor, y_ctx: torch.Tensor, x_query: torch.Tensor,
                       y_query: torch.Tensor, n_draws: int = 2048,
                       generator: torch.Generator | None = None, chunk: int = 1024
                       ) -> tuple[torch.Tensor, torch.Tensor]:
        """log p(y_query | x_query, context) with the hyperparameters integrated out, per query
        (B, M), and the importance-sampling effective sample size per dataset (B,).

        The exact answer NUTS over the hyperparameters approximates, by importance sampling in
        float64: `n_draws` hyperparameter sets from the hyperprior, then per dataset `n_draws`
        more from a Gaussian fitted (in log space, twice the spread) to the first set's
        posterior weights; all draws are weighted as a sample of the equal mixture of the two
        proposals (defensive, so weights stay bounded where the Gaussian misses). The
        predictive is the weighted mixture of exact GP predictives; queries are predicted
        independently (the per-point predictive a PFN outputs).
        """
        b, m, d = x_query.shape[0], x_query.shape[1], self.x_dim
        hp = self.sample_hyperparameters(n_draws, generator)
        u0 = torch.cat([hp["noise"].log()[:, None], hp["outputscale"].log()[:, None],
                        hp["lengthscale"].log()], dim=1)
        out = torch.empty(b, m, dtype=torch.float64)
        ess = torch.empty(b, dtype=torch.float64)
        for i in range(b):
            ll0, lp0 = self._loglik_and_pred(x_ctx[i], y_ctx[i], x_query[i], y_query[i], u0, chunk)
            if x_ctx.shape[1] == 0:
                log_w, log_p = ll0, lp0
            else:
                w = torch.softmax(ll0, 0)
                mu = (w[:, None] * u0).sum(0)
                dev = u0 - mu
                cov = 4.0 * (w[:, None, None] * dev[:, :, None] * dev[:, None, :]).sum(0)
                gauss = torch.distributions.MultivariateNormal(
                    mu, cov + 1e-4 * torch.eye(2 + d, dtype=torch.float64))
                eps = torch.randn(n_draws, 2 + d, generator=generator, dtype=torch.float64)
                u1 = mu + eps @ gauss.scale_tril.T
                ll1, lp1 = self._loglik_and_pred(x_ctx[i], y_ctx[i], x_query[i], y_query[i], u1,
                                                 chunk)
                u = torch.cat([u0, u1])
                prior_lp = self.log_hyperprior(u)
                proposal = torch.logaddexp(prior_lp, gauss.log_prob(u)) - math.log(2.0)
                log_w = torch.cat([ll0, ll1]) + prior_lp - proposal
                log_p = torch.cat([lp0, lp1])
            log_w = log_w - torch.logsumexp(log_w, 0)
            ess[i] = 1.0 / torch.exp(2 * log_w).sum()
            out[i] = torch.logsumexp(log_w[:, None] + log_p, dim=0)
        return out, ess

    def _loglik_and_pred(self, xc: torch.Tensor, yc: torch.Tensor, xq: torch.Tensor,
                         yq: torch.Tensor, u: torch.Tensor, chunk: int
                         ) -> tuple[torch.Tensor, torch.Tensor]:
        """For one dataset and K log-hyperparameter sets: the context's log marginal
        likelihood (K,) and the exact GP log predictive density of each query (K, M)."""
        lls, lps = [], []
        for s in range(0, len(u), chunk):
            v = u[s:s + chunk].exp()
            k = len(v)
            noise, os_, ls = v[:, 0], v[:, 1], v[:, 2:]
            xck, yck, xqk = xc.expand(k, -1, -1), yc.expand(k, -1), xq.expand(k, -1, -1)
            if xc.shape[0]:
                lls.append(gp_log_marginal(xck, yck, ls, os_, noise, self.kernel))
            else:
                lls.append(torch.zeros(k, dtype=torch.float64))
            mean, var = gp_predictive(xck, yck, xqk, ls, os_, noise, self.kernel)
            lps.append(-0.5 * (torch.log(2 * math.pi * var) + (yq.double() - mean) ** 2 / var))
        return torch.cat(lls), torch.cat(lps)

    def describe(self) -> dict[str, Any]:
        return {"name": "gp-hyper", "x_dim": self.x_dim, "noise": list(self.noise_prior),
                "lengthscale": list(self.lengthscale_prior),
                "outputscale": list(self.outputscale_prior), "kernel": self.kernel}
