"""Priors over Bayesian weights and their KL divergence from a mean-field Gaussian posterior.

Every prior answers `kl(mu, sigma)`: the elementwise KL(N(mu, sigma^2) || prior) (or an
estimate / bound of it), and `kl_sum(mu, sigma)`: the same summed, computed from three
reductions (sum mu^2, sum sigma^2, sum log sigma) instead of a dozen elementwise passes; this is
what a Bayesian layer calls for its active weights.

- `GaussianPrior(mean, std)`: the closed form
  KL = log(s/sigma) + (sigma^2 + (mu - m)^2) / (2 s^2) - 1/2.
- `ScaleMixturePrior(pi, std1, std2)`: p(w) = pi N(0, std1^2) + (1 - pi) N(0, std2^2)
  (Blundell et al. 2015). Its KL has no closed form. Default `kl="bound"`: because -log is
  convex, -log(pi p1 + (1 - pi) p2) <= -pi log p1 - (1 - pi) log p2, so
  KL(q || p) <= pi KL(q || p1) + (1 - pi) KL(q || p2), a closed-form, deterministic upper bound
  (the ELBO computed with it stays a lower bound on the evidence; it is exact when std1 = std2
  or pi is 0 or 1). `kl="mc"`: the exact entropy of q plus a one-sample Monte Carlo estimate of
  the cross-entropy -E_q log p(w), unbiased but noisy and not always >= 0.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Literal

import torch

from varbayes.errors import VarbayesError

_LOG_2PI = math.log(2 * math.pi)


def gaussian_kl(mu: torch.Tensor, sigma: torch.Tensor, prior_mean: float,
                prior_std: float) -> torch.Tensor:
    """Elementwise KL(N(mu, sigma^2) || N(prior_mean, prior_std^2)).

    Written as 0.5 z^2 + 0.5 (r^2 - 1 - log r^2) with z = (mu - m)/s and r = sigma/s: exactly
    0 when q = p, finite for sigma/s down to about 1e-18 in float32, and clamped at 0 against
    a last-ulp rounding of log just below it.
    """
    z = (mu - prior_mean) / prior_std
    r2 = (sigma / prior_std) ** 2
    return (0.5 * z * z + 0.5 * (r2 - 1.0 - torch.log(r2))).clamp_min(0.0)


def gaussian_kl_sum(mu: torch.Tensor, sigma: torch.Tensor, prior_mean: float,
                    prior_std: float) -> torch.Tensor:
    """sum_i KL(N(mu_i, sigma_i^2) || N(m, s^2))
    = (sum (mu - m)^2 + sum sigma^2) / (2 s^2) - sum log sigma + n log s - n / 2,
    clamped at 0 against rounding (the exact value is >= 0)."""
    d = (mu - prior_mean).flatten() if prior_mean else mu.flatten()
    sig = sigma.flatten()
    n = d.numel()
    quad = (torch.dot(d, d) + torch.dot(sig, sig)) / (2.0 * prior_std**2)
    return (quad - torch.log(sig).sum() + n * (math.log(prior_std) - 0.5)).clamp_min(0.0)


@dataclass(frozen=True)
class GaussianPrior:
    """N(mean, std^2) on every weight; the KL is closed-form."""

    mean: float = 0.0
    std: float = 1.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.mean) and math.isfinite(self.std) and self.std > 0):
            raise VarbayesError(f"Gaussian prior needs a finite mean and std > 0; got "
                                f"mean={self.mean}, std={self.std}")

    def kl(self, mu: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """Elementwise KL(N(mu, sigma^2) || N(mean, std^2))."""
        return gaussian_kl(mu, sigma, self.mean, self.std)

    def kl_sum(self, mu: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """The KL summed over all elements."""
        return gaussian_kl_sum(mu, sigma, self.mean, self.std)

    def log_prob(self, w: torch.Tensor) -> torch.Tensor:
        """Elementwise log density."""
        z = (w - self.mean) / self.std
        return -0.5 * z * z - math.log(self.std) - 0.5 * _LOG_2PI

    def to_dict(self) -> dict[str, Any]:
        return {"type": "gaussian", **asdict(self)}


@dataclass(frozen=True)
class ScaleMixturePrior:
    """pi N(0, std1^2) + (1 - pi) N(0, std2^2); see the module doc for the KL options."""

    pi: float = 0.5
    std1: float = 1.0
    std2: float = 0.0025
    kl_estimate: Literal["bound", "mc"] = "bound"

    def __post_init__(self) -> None:
        if not 0.0 <= self.pi <= 1.0:
            raise VarbayesError(f"scale-mixture prior needs 0 <= pi <= 1; got {self.pi}")
        if not (self.std1 > 0 and self.std2 > 0 and math.isfinite(self.std1 * self.std2)):
            raise VarbayesError(f"scale-mixture prior needs finite stds > 0; got "
                                f"{self.std1}, {self.std2}")
        if self.kl_estimate not in ("bound", "mc"):
            raise VarbayesError(f"kl_estimate must be bound or mc; got {self.kl_estimate!r}")

    def kl(self, mu: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """Elementwise upper bound ("bound") or one-sample estimate ("mc") of the KL."""
        if self.kl_estimate == "bound":
            return (self.pi * gaussian_kl(mu, sigma, 0.0, self.std1)
                    + (1 - self.pi) * gaussian_kl(mu, sigma, 0.0, self.std2))
        entropy = torch.log(sigma) + 0.5 * (_LOG_2PI + 1.0)
        w = mu + sigma * torch.randn_like(mu)
        return -entropy - self.log_prob(w)

    def kl_sum(self, mu: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """The bound or estimate summed over all elements."""
        if self.kl_estimate == "mc":
            return self.kl(mu, sigma).sum()
        return (self.pi * gaussian_kl_sum(mu, sigma, 0.0, self.std1)
                + (1 - self.pi) * gaussian_kl_sum(mu, sigma, 0.0, self.std2))

    def log_prob(self, w: torch.Tensor) -> torch.Tensor:
        """Elementwise log density, computed with logsumexp (no underflow in the tails)."""
        parts = []
        for weight, std in ((self.pi, self.std1), (1 - self.pi, self.std2)):
            if weight > 0:
                z = w / std
                parts.append(-0.5 * z * z - math.log(std) - 0.5 * _LOG_2PI + math.log(weight))
        return torch.logsumexp(torch.stack(parts), dim=0)

    def to_dict(self) -> dict[str, Any]:
        return {"type": "scale-mixture", **asdict(self)}


Prior = GaussianPrior | ScaleMixturePrior


def prior_from_dict(d: dict[str, Any]) -> Prior:
    """The prior a `to_dict()` record (model.json) describes."""
    kind = d.get("type")
    values = {k: v for k, v in d.items() if k != "type"}
    if kind == "gaussian":
        return GaussianPrior(**values)
    if kind == "scale-mixture":
        return ScaleMixturePrior(**values)
    raise VarbayesError(f"unknown prior type {kind!r}; valid: gaussian, scale-mixture")
