"""Posterior-collapse diagnostics: which latent dimensions carry information, by two different
statistics that are easy to confuse and so have different names here.

- `kl_per_dim` / `collapsed`: the mean over the data of KL(q(z_i | x) || p(z_i)) per dimension;
  a dimension whose mean KL is at most `threshold` (0.01) is collapsed.
- `kl_active_fraction`: the posterior-collapse paper's "AU" (Dang et al., 2024, reference code):
  1 - the fraction of (example, dimension) pairs with KL_i(x) / beta < threshold. A fraction of
  pairs, not a count of dimensions.
- `active_units`: Burda et al. (2016): the number of dimensions whose posterior mean varies
  across the data, Cov_x(E_q[z_i]) > au_threshold (0.01). It ignores the posterior variance, so
  a dimension can be "active" by one statistic and collapsed by the other.

`diagnose_collapse(vae, x, c)` computes both for any trained VAE: a `varbayes.latent.CVAE`, any
module with `posterior(x, c)` (and optionally `prior(c, n)`) methods, or a plain encoder
function returning a `torch.distributions.Normal` or a `(mean, log_var)` pair.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch.distributions import Normal

from varbayes.data.validate import check_finite
from varbayes.errors import VarbayesError
from varbayes.latent.kl import gaussian_kl_per_dim

THRESHOLD = 0.01


@dataclass
class CollapseReport:
    """Both collapse statistics of one VAE on one data set (see the module doc)."""

    kl_per_dim: torch.Tensor
    posterior_mean_variance: torch.Tensor
    kl_active_fraction: float
    total_kl: float
    threshold: float
    au_threshold: float
    beta: float

    @property
    def collapsed(self) -> list[int]:
        """Dimensions whose mean KL is at most `threshold`."""
        return [int(i) for i in torch.nonzero(self.kl_per_dim <= self.threshold).flatten()]

    @property
    def n_active(self) -> int:
        """Dimensions whose mean KL exceeds `threshold` (the count the collapse theory predicts)."""
        return int((self.kl_per_dim > self.threshold).sum())

    @property
    def active_units(self) -> int:
        """Burda's active units: dimensions with Cov_x(E_q[z_i]) > au_threshold."""
        return int((self.posterior_mean_variance > self.au_threshold).sum())

    def to_dict(self) -> dict[str, Any]:
        return {"kl_per_dim": self.kl_per_dim.tolist(), "collapsed": self.collapsed,
                "n_active": self.n_active, "kl_active_fraction": self.kl_active_fraction,
                "active_units": self.active_units,
                "posterior_mean_variance": self.posterior_mean_variance.tolist(),
                "total_kl": self.total_kl, "threshold": self.threshold,
                "au_threshold": self.au_threshold, "beta": self.beta}

    def table(self) -> str:
        """A Markdown table: per dimension, mean KL, Cov_x E[z_i], and both verdicts."""
        rows = ["| dim | mean KL | Cov_x E_q[z_i] | KL rule | Burda rule |",
                "|---|---|---|---|---|"]
        for i, (kl, v) in enumerate(zip(self.kl_per_dim.tolist(),
                                        self.posterior_mean_variance.tolist())):
            rows.append(f"| {i} | {kl:.4f} | {v:.4f} | "
                        f"{'active' if kl > self.threshold else 'collapsed'} | "
                        f"{'active' if v > self.au_threshold else 'inactive'} |")
        return "\n".join(rows)


def collapse_report(
    q_mean: torch.Tensor,
    q_var: torch.Tensor,
    p_mean: torch.Tensor | float = 0.0,
    p_var: torch.Tensor | float = 1.0,
    *,
    beta: float = 1.0,
    threshold: float = THRESHOLD,
    au_threshold: float = THRESHOLD,
) -> CollapseReport:
    """Both statistics from posterior means and variances (n, d_z) and the prior's (broadcast:
    a conditional prior gives one row per example, a fixed prior scalars)."""
    if q_mean.ndim != 2 or q_mean.shape != q_var.shape or len(q_mean) < 2:
        raise VarbayesError(f"posterior means and variances must both be (n, d_z) with n >= 2; "
                            f"got {tuple(q_mean.shape)} and {tuple(q_var.shape)}")
    if not beta > 0:
        raise VarbayesError(f"beta must be > 0; got {beta}")
    q_mean, q_var = q_mean.detach().double(), q_var.detach().double()
    p_mean = torch.as_tensor(p_mean).detach().double()
    p_var = torch.as_tensor(p_var).detach().double()
    kl = gaussian_kl_per_dim(q_mean, q_var, p_mean, p_var)
    return CollapseReport(
        kl_per_dim=kl.mean(0),
        posterior_mean_variance=q_mean.var(0, unbiased=False),
        kl_active_fraction=float(1.0 - (kl / beta < threshold).double().mean()),
        total_kl=float(kl.sum(1).mean()),
        threshold=float(threshold), au_threshold=float(au_threshold), beta=float(beta),
    )


def diagnose_collapse(
    vae: Any,
    x: torch.Tensor,
    c: torch.Tensor | None = None,
    *,
    prior: Normal | float | Callable[..., Normal] | None = None,
    beta: float = 1.0,
    threshold: float = THRESHOLD,
    au_threshold: float = THRESHOLD,
    batch_size: int = 1024,
) -> CollapseReport:
    """Which latent dimensions of a trained VAE are collapsed, by both statistics.

    vae: a module with `posterior(x, c)` returning a per-dimension Normal (a varbayes CVAE),
    or an encoder callable `f(x)` / `f(x, c)` returning a Normal or `(mean, log_var)`.
    prior: the prior to measure the KL against; default: the VAE's own `prior(c, n)` when it
    has one, else N(0, I). A float is the standard deviation of N(0, s^2 I); a callable gets c.
    """
    x = torch.as_tensor(x)
    if x.ndim < 2 or len(x) < 2:
        raise VarbayesError(f"x must hold at least 2 examples as rows; got shape {tuple(x.shape)}")
    check_finite(x, "x")
    if c is not None:
        check_finite(torch.as_tensor(c), "c")
    if c is not None and len(c) != len(x):
        raise VarbayesError(f"x has {len(x)} rows but c has {len(c)}")
    means, variances, p_means, p_vars = [], [], [], []
    was_training = getattr(vae, "training", None)
    if was_training is not None:
        vae.eval()
    try:
        with torch.no_grad():
            for i in range(0, len(x), batch_size):
                xb = x[i:i + batch_size]
                cb = None if c is None else c[i:i + batch_size]
                q = _posterior(vae, xb, cb)
                p = _prior(vae, prior, cb, len(xb), q)
                means.append(q.mean)
                variances.append(q.variance)
                p_means.append(p.mean.expand_as(q.mean))
                p_vars.append(p.variance.expand_as(q.mean))
    finally:
        if was_training:
            vae.train()
    return collapse_report(torch.cat(means), torch.cat(variances), torch.cat(p_means),
                           torch.cat(p_vars), beta=beta, threshold=threshold,
                           au_threshold=au_threshold)


def _posterior(vae: Any, x: torch.Tensor, c: torch.Tensor | None) -> Normal:
    if hasattr(vae, "posterior"):
        out = vae.posterior(x, c)
    elif callable(vae):
        out = vae(x) if c is None else vae(x, c)
    else:
        raise VarbayesError(f"diagnose_collapse needs a VAE with posterior(x, c) or an encoder "
                            f"function; got {type(vae).__name__}")
    return _as_normal(out, "the encoder")


def _prior(vae: Any, prior: Any, c: torch.Tensor | None, n: int, q: Normal) -> Normal:
    if prior is None and hasattr(vae, "prior") and callable(vae.prior):
        return _as_normal(vae.prior(c, n), "the VAE's prior")
    if prior is None:
        return Normal(torch.zeros_like(q.mean), torch.ones_like(q.mean))
    if isinstance(prior, (int, float)):
        if not prior > 0:
            raise VarbayesError(f"the prior's standard deviation must be > 0; got {prior}")
        return Normal(torch.zeros_like(q.mean), torch.full_like(q.mean, float(prior)))
    if isinstance(prior, Normal):
        return prior
    if callable(prior):
        return _as_normal(prior(c), "the prior")
    raise VarbayesError(f"prior must be None, a standard deviation, a Normal or a function of "
                        f"c; got {type(prior).__name__}")


def _as_normal(out: Any, what: str) -> Normal:
    if isinstance(out, Normal):
        return out
    if isinstance(out, tuple) and len(out) == 2:
        mean, log_var = out
        return Normal(mean, (0.5 * log_var).exp())
    base = getattr(out, "base_dist", None)  # Independent(Normal(...), 1)
    if isinstance(base, Normal):
        return base
    raise VarbayesError(f"{what} must return a torch.distributions.Normal or a (mean, log_var) "
                        f"pair; got {type(out).__name__}")
