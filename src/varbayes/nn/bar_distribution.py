"""The Riemann ("bar") distribution: a histogram density over fixed buckets for regression.

A network outputs K logits; with borders b_0 < ... < b_K the density is
q(y) = softmax(logits)_k / w_k for y in bucket k (width w_k), so the loss is
-log softmax_k + log w_k: a density, not a bucket probability. With `full_support=True` the two
outer buckets are replaced by half-normal tails starting at b_1 (leftwards) and b_{K-1}
(rightwards) whose scale puts half of the tail's mass inside the bucket's width
(sigma = w / Phi^-1(0.75)); the density is then positive on all of R, so an out-of-range y has
a finite loss. Borders are equal-mass quantiles of prior samples (`adaptive_borders`) or an even
grid (`uniform_borders`); they must come from the same y scaling as training.

Written by hand because no maintained library provides this distribution with tails,
quantiles and expected improvement (the PFN reference code implements it inline as well).
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.special import ndtr, ndtri

from varbayes.errors import VarbayesError

_HALF_MASS = 0.6744897501960817  # Phi^-1(0.75): P(|Z| <= 0.6745) = 1/2
_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_TINY = 1e-30


def adaptive_borders(samples: torch.Tensor, n_buckets: int) -> torch.Tensor:
    """Borders of `n_buckets` equal-mass buckets from prior samples of y (min and max as the
    outer borders); ties are broken so the borders increase strictly."""
    flat = samples.detach().reshape(-1).double()
    flat = flat[torch.isfinite(flat)]
    if flat.numel() < n_buckets + 1:
        raise ValueError(f"need more than {n_buckets} finite samples for {n_buckets} buckets")
    borders = torch.quantile(flat, torch.linspace(0, 1, n_buckets + 1, dtype=torch.float64))
    # equal samples give equal borders; nudge them apart by a small fraction of the range
    # (large enough to survive the float32 the borders are stored in)
    eps = 1e-6 * float(borders[-1] - borders[0] + 1.0)
    out = borders.float()
    for i in range(1, len(out)):
        if out[i] <= out[i - 1]:
            out[i] = out[i - 1] + eps
    return out


def uniform_borders(low: float, high: float, n_buckets: int) -> torch.Tensor:
    """Borders of `n_buckets` equal-width buckets over [low, high]."""
    return torch.linspace(low, high, n_buckets + 1)


class BarDistribution(nn.Module):
    """Density, moments, quantiles and expected improvement of a bar distribution.

    Every method takes `logits` of shape (..., K); per-example values come back with shape
    (...), quantiles with (..., Q). Borders are a buffer, so they are saved with the model.
    """

    def __init__(self, borders: torch.Tensor, full_support: bool = True) -> None:
        super().__init__()
        borders = torch.as_tensor(borders, dtype=torch.float32)
        if borders.dim() != 1 or len(borders) < 3:
            raise ValueError("borders must be a 1-D tensor with at least 3 entries")
        if not bool((borders[1:] > borders[:-1]).all()):
            raise ValueError("borders must increase strictly")
        self.register_buffer("borders", borders)
        self.full_support = full_support

    @property
    def n_buckets(self) -> int:
        return len(self.borders) - 1

    @property
    def widths(self) -> torch.Tensor:
        return self.borders[1:] - self.borders[:-1]

    def tail_scales(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Half-normal scales of the left and right tail."""
        w = self.widths
        return w[0] / _HALF_MASS, w[-1] / _HALF_MASS

    # ---- density ------------------------------------------------------------------------

    def bucket_index(self, y: torch.Tensor) -> torch.Tensor:
        """Bucket of each y (values outside the borders go to the outer buckets)."""
        idx = torch.searchsorted(self.borders, y.contiguous(), right=True) - 1
        return idx.clamp(0, self.n_buckets - 1)

    def log_prob(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """log q(y) (a density: bucket log-probability minus log bucket width, or the tail's
        half-normal log-density)."""
        y = y.to(logits.dtype)
        log_p = torch.log_softmax(logits, dim=-1)
        k = self.bucket_index(y)
        lp_k = log_p.gather(-1, k.unsqueeze(-1)).squeeze(-1)
        out = lp_k - torch.log(self.widths)[k]
        b = self.borders
        if self.full_support:
            s_left, s_right = self.tail_scales()
            left = (k == 0)
            right = (k == self.n_buckets - 1)
            t_left = (b[1] - y).clamp_min(0) / s_left
            t_right = (y - b[-2]).clamp_min(0) / s_right
            hn_const = math.log(2.0) - 0.5 * math.log(2 * math.pi)
            out = torch.where(left, lp_k + hn_const - torch.log(s_left) - 0.5 * t_left**2, out)
            out = torch.where(right, lp_k + hn_const - torch.log(s_right) - 0.5 * t_right**2,
                              out)
        else:
            outside = (y < b[0]) | (y > b[-1])
            out = torch.where(outside, torch.full_like(out, -math.inf), out)
        return out

    def nll(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """-log q(y) per example (the PFN training loss)."""
        return -self.log_prob(logits, y)

    def cdf(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """P(Y <= y)."""
        y = y.to(logits.dtype)
        p = torch.softmax(logits, dim=-1)
        cum = torch.cumsum(p, dim=-1) - p  # mass left of each bucket
        k = self.bucket_index(y)
        p_k = p.gather(-1, k.unsqueeze(-1)).squeeze(-1)
        c_k = cum.gather(-1, k.unsqueeze(-1)).squeeze(-1)
        lo, w = self.borders[k], self.widths[k]
        inside = c_k + p_k * ((y - lo) / w).clamp(0, 1)
        if not self.full_support:
            return inside
        s_left, s_right = self.tail_scales()
        b = self.borders
        left = p_k * 2 * ndtr((y - b[1]).clamp_max(0) / s_left)
        right = c_k + p_k * (1 - 2 * ndtr(-(y - b[-2]).clamp_min(0) / s_right))
        out = torch.where(k == 0, left, inside)
        return torch.where(k == self.n_buckets - 1, right, out)

    # ---- summaries ----------------------------------------------------------------------

    def _bucket_moments(self) -> tuple[torch.Tensor, torch.Tensor]:
        """E[y | bucket] and E[y^2 | bucket] for every bucket (tails included)."""
        a, b = self.borders[:-1], self.borders[1:]
        m1 = (a + b) / 2
        m2 = (a * a + a * b + b * b) / 3
        if self.full_support:
            s_l, s_r = self.tail_scales()
            c_l, c_r = self.borders[1], self.borders[-2]
            m1 = m1.clone()
            m2 = m2.clone()
            m1[0] = c_l - s_l * _SQRT_2_OVER_PI
            m2[0] = c_l**2 - 2 * c_l * s_l * _SQRT_2_OVER_PI + s_l**2
            m1[-1] = c_r + s_r * _SQRT_2_OVER_PI
            m2[-1] = c_r**2 + 2 * c_r * s_r * _SQRT_2_OVER_PI + s_r**2
        return m1, m2

    def mean(self, logits: torch.Tensor) -> torch.Tensor:
        """E[y]."""
        m1, _ = self._bucket_moments()
        return torch.softmax(logits, dim=-1) @ m1.to(logits.dtype)

    def variance(self, logits: torch.Tensor) -> torch.Tensor:
        """Var[y]."""
        m1, m2 = self._bucket_moments()
        p = torch.softmax(logits, dim=-1)
        mean = p @ m1.to(logits.dtype)
        return (p @ m2.to(logits.dtype) - mean**2).clamp_min(0)

    def mode(self, logits: torch.Tensor) -> torch.Tensor:
        """The centre of the bucket with the highest density (a tail's mode is its border)."""
        log_dens = torch.log_softmax(logits, dim=-1) - torch.log(self.widths)
        if self.full_support:
            s_l, s_r = self.tail_scales()
            c = math.log(2.0) - 0.5 * math.log(2 * math.pi)
            log_dens = log_dens.clone()
            log_dens[..., 0] = torch.log_softmax(logits, -1)[..., 0] + c - torch.log(s_l)
            log_dens[..., -1] = torch.log_softmax(logits, -1)[..., -1] + c - torch.log(s_r)
        k = log_dens.argmax(-1)
        centres = (self.borders[:-1] + self.borders[1:]) / 2
        if self.full_support:
            centres = centres.clone()
            centres[0], centres[-1] = self.borders[1], self.borders[-2]
        return centres[k]

    def quantile(self, logits: torch.Tensor, q: torch.Tensor | float | list[float]
                 ) -> torch.Tensor:
        """Quantiles at levels `q` in (0, 1): a float gives (...), a list or 1-D tensor of Q
        shared levels gives (..., Q), and a tensor of shape (..., Q) gives per-example levels."""
        scalar = isinstance(q, (float, int))
        levels = torch.as_tensor(q, dtype=logits.dtype, device=logits.device)
        if not bool(((levels > 0) & (levels < 1)).all()):  # NaN fails too
            raise VarbayesError(f"quantile levels must lie in (0, 1); got {q!r}")
        batch = logits.shape[:-1]
        if levels.dim() <= 1:
            lv = levels.reshape(-1).expand(*batch, levels.numel()).contiguous()
        else:
            lv = levels.contiguous()
        p = torch.softmax(logits, dim=-1)
        cum = torch.cumsum(p, dim=-1)
        k = torch.searchsorted(cum.contiguous(), lv).clamp(0, self.n_buckets - 1)
        p_k = p.gather(-1, k)
        c_k = cum.gather(-1, k) - p_k
        frac = ((lv - c_k) / p_k.clamp_min(_TINY)).clamp(0, 1)
        out = self.borders[k] + frac * self.widths[k]
        if self.full_support:
            s_l, s_r = self.tail_scales()
            b = self.borders
            left = b[1] + s_l * ndtri((frac / 2).clamp(1e-12, 0.5))
            right = b[-2] - s_r * ndtri(((1 - frac) / 2).clamp(1e-12, 0.5))
            out = torch.where(k == 0, left, out)
            out = torch.where(k == self.n_buckets - 1, right, out)
        return out[..., 0] if scalar else out

    def expected_improvement(self, logits: torch.Tensor, best: torch.Tensor | float
                             ) -> torch.Tensor:
        """E[max(y - best, 0)] (maximisation; for minimisation negate y and borders)."""
        f = torch.as_tensor(best, dtype=logits.dtype, device=logits.device)
        f = f.expand(logits.shape[:-1]).unsqueeze(-1)
        p = torch.softmax(logits, dim=-1)
        a, b = self.borders[:-1], self.borders[1:]
        w = b - a
        lo = torch.maximum(a, f)
        per = torch.where(b > f, ((b - f) ** 2 - (lo - f) ** 2) / (2 * w), torch.zeros_like(lo))
        if self.full_support:
            s_l, s_r = self.tail_scales()
            f0 = f[..., 0]
            c_r = self.borders[-2]
            t = (f0 - c_r) / s_r
            right_above = c_r - f0 + s_r * _SQRT_2_OVER_PI
            right_inside = 2 * s_r * (_phi(t) - t * (1 - ndtr(t)))
            right = torch.where(f0 <= c_r, right_above, right_inside)
            c_l = self.borders[1]
            s = ((c_l - f0) / s_l).clamp_min(0)
            left = s_l * (s * (2 * ndtr(s) - 1) - 2 * (_phi(torch.zeros_like(s)) - _phi(s)))
            per = per.clone()
            per[..., 0] = left
            per[..., -1] = right
        return (p * per).sum(-1)

    def sample(self, logits: torch.Tensor, n: int, generator: torch.Generator | None = None
               ) -> torch.Tensor:
        """n draws per example by inverse-CDF sampling; shape (..., n)."""
        u = torch.rand(*logits.shape[:-1], n, generator=generator, dtype=logits.dtype)
        return self.quantile(logits, u.clamp(1e-9, 1 - 1e-9))

    # ---- projections --------------------------------------------------------------------

    def logits_from_normal(self, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
        """Bucket log-masses of N(mean, std^2) (tails collect all mass beyond b_1 / b_{K-1}):
        the best this bar distribution can do for a Gaussian, used to measure the
        discretisation floor."""
        b = self.borders.to(mean.dtype)
        z = (b - mean.unsqueeze(-1)) / std.unsqueeze(-1)
        cdf = ndtr(z)
        mass = cdf[..., 1:] - cdf[..., :-1]
        if self.full_support:
            mass = mass.clone()
            mass[..., 0] = cdf[..., 1]
            mass[..., -1] = 1 - cdf[..., -2]
        return torch.log(mass.clamp_min(_TINY))


def _phi(t: torch.Tensor) -> torch.Tensor:
    return torch.exp(-0.5 * t * t) / math.sqrt(2 * math.pi)


class BarPredictive:
    """The predictive distributions of N points from a bar-distribution head, in the user's
    units: y = loc + scale * y_model, where the model's units are the prior's (the borders).
    Densities are divided by `scale`, so rescaling never silently mis-calibrates. `loc` and
    `scale` are floats or tensors broadcastable to the logits' batch shape (one per dataset,
    e.g. (B, 1) for (B, M) points, when each dataset was standardised by its own context)."""

    def __init__(self, bar: BarDistribution, logits: torch.Tensor,
                 loc: float | torch.Tensor = 0.0, scale: float | torch.Tensor = 1.0) -> None:
        self.bar, self.logits, self.loc, self.scale = bar, logits, loc, scale

    def _per_level(self, value: float | torch.Tensor) -> float | torch.Tensor:
        """loc or scale shaped to multiply a (..., Q) result."""
        return value.unsqueeze(-1) if isinstance(value, torch.Tensor) else value

    @property
    def mean(self) -> torch.Tensor:
        return self.loc + self.scale * self.bar.mean(self.logits)

    @property
    def variance(self) -> torch.Tensor:
        return self.scale**2 * self.bar.variance(self.logits)

    @property
    def stddev(self) -> torch.Tensor:
        return self.variance.sqrt()

    def mode(self) -> torch.Tensor:
        return self.loc + self.scale * self.bar.mode(self.logits)

    def quantile(self, q: torch.Tensor | float | list[float]) -> torch.Tensor:
        """Quantiles at levels q: (N,) for a float, (N, Q) for a list."""
        out = self.bar.quantile(self.logits, q)
        if isinstance(q, (float, int)):
            return self.loc + self.scale * out
        return self._per_level(self.loc) + self._per_level(self.scale) * out

    def log_prob(self, y: torch.Tensor) -> torch.Tensor:
        y = torch.as_tensor(y, dtype=self.logits.dtype)
        log_scale = (torch.log(self.scale) if isinstance(self.scale, torch.Tensor)
                     else math.log(self.scale))
        return self.bar.log_prob(self.logits, (y - self.loc) / self.scale) - log_scale

    def cdf(self, y: torch.Tensor) -> torch.Tensor:
        y = torch.as_tensor(y, dtype=self.logits.dtype)
        return self.bar.cdf(self.logits, (y - self.loc) / self.scale)

    def expected_improvement(self, best: float) -> torch.Tensor:
        """E[max(y - best, 0)] in the user's units (maximisation)."""
        return self.scale * self.bar.expected_improvement(self.logits,
                                                          (best - self.loc) / self.scale)

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """(N, n) draws."""
        out = self.bar.sample(self.logits, n, generator)
        return self._per_level(self.loc) + self._per_level(self.scale) * out
