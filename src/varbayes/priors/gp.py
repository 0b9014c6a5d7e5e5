"""Gaussian-process priors over datasets and their exact posterior predictive (the oracle).

- `GPPrior`: y ~ GP(0, outputscale * k(lengthscale)) + N(0, noise) with fixed hyperparameters,
  x uniform on [0, 1]^d (the PFN paper's `fast_gp` prior; noise is a variance).
- `HyperGPPrior`: per dataset, noise, ARD lengthscales and outputscale drawn from Gamma
  hyperpriors, Matern-5/2 kernel (the paper's `fast_gp_mix`, Gamma(concentration, rate)).
- `gp_predictive`: the exact predictive N(mu*, sigma*^2 + noise) by Cholesky in float64, the
  oracle a PFN is measured against.
"""

from __future__ import annotations

import math
from typing import Any, Literal

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

    def describe(self) -> dict[str, Any]:
        return {"name": "gp-hyper", "x_dim": self.x_dim, "noise": list(self.noise_prior),
                "lengthscale": list(self.lengthscale_prior),
                "outputscale": list(self.outputscale_prior), "kernel": self.kernel}
