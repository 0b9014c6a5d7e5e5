"""Regression metrics for a predictive mean and variance per output.

Shapes: `mean`, `var` and `y` are all (N,) or all (N, D) with D independent outputs (images
flattened to D pixels). Beyond RMSE and the Gaussian NLL: how well predicted variances track
squared errors (UCE with the binning variable stated, and their Pearson correlation), and PSNR
for restoration outputs.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import torch

from varbayes.errors import VarbayesError
from varbayes.metrics._inputs import as_count, as_float, as_number, check_nonempty


def regression_metrics(mean: Any, var: Any, y: Any, y_mean: float = 0.0,
                       y_std: float = 1.0) -> dict[str, float]:
    """`rmse` and `nll` in the ORIGINAL units of y, from a model trained on standardized targets.

    `mean`, `var` and `y` are in standardized units, y_std = (y_orig - y_mean) / y_std. Going
    back to original units multiplies errors by y_std and variances by y_std^2, so
    rmse_orig = y_std * rmse and nll_orig = nll + D log(y_std) per example (the Jacobian of the
    change of variables, D outputs). `y_mean` is a shift and changes neither; it is validated
    and accepted so callers can pass their standardization as it is.
    """
    m, v, t = _checked(mean, var, y)
    as_number(y_mean, "y_mean")
    scale = as_number(y_std, "y_std", positive=True)
    d = 1 if t.ndim == 1 else t.shape[1]
    return {"rmse": _rmse(m, t) * scale, "nll": _gaussian_nll(m, v, t) + d * math.log(scale)}


def rmse(mean: Any, y: Any) -> float:
    """Root mean squared error sqrt(mean over all entries of (mean - y)^2)."""
    m, t = _same_shape(mean=mean, y=y)
    return _rmse(m, t)


def gaussian_nll(mean: Any, var: Any, y: Any) -> float:
    """Mean over examples of -log N(y | mean, var), summed over the D outputs of an example:
    0.5 * sum_d [log(2 pi var_d) + (y_d - mean_d)^2 / var_d], in nats, constants included."""
    return _gaussian_nll(*_checked(mean, var, y))


def uncertainty_calibration_error(
    mean: Any, var: Any, y: Any, n_bins: int = 100,
    bin_by: Literal["variance", "error"] = "variance",
) -> float:
    """UCE = sum_b (n_b / n) |mean_b(err^2) - mean_b(var)| over every output element.

    err^2 = (mean - y)^2. Elements go into `n_bins` equal-width bins over [min, max] of the
    binning variable (the max in the last bin): `bin_by="variance"` bins by predicted variance
    (the usual definition, Laves et al. 2020); `"error"` bins by squared error (what the
    BayesCap reference code does). Empty bins contribute nothing. No subsampling: all elements.
    """
    m, v, t = _checked(mean, var, y)
    n_bins = as_count(n_bins, "n_bins")
    if bin_by not in ("variance", "error"):
        raise VarbayesError(f"bin_by must be 'variance' or 'error'; got {bin_by!r}")
    err, v = (m - t).pow(2).flatten(), v.flatten()
    key = v if bin_by == "variance" else err
    low, high = key.min(), key.max()
    width = (high - low) / n_bins
    idx = (torch.zeros_like(key, dtype=torch.long) if width == 0
           else ((key - low) / width).floor().long().clamp(0, n_bins - 1))
    err_sum = torch.bincount(idx, weights=err, minlength=n_bins)
    var_sum = torch.bincount(idx, weights=v, minlength=n_bins)
    return ((err_sum - var_sum).abs().sum() / len(key)).item()


def error_variance_correlation(mean: Any, var: Any, y: Any, *, rank: bool = False,
                               per: Literal["element", "example"] = "element") -> float:
    """Pearson correlation between squared error (mean - y)^2 and predicted variance
    (BayesCap's C.Coeff). `per="element"` pools every output element (pixel) of every example,
    as the BayesCap reference code does; `per="example"` first averages both over an example's
    outputs (one point per image). `rank=True` gives Spearman's correlation (Pearson on ranks,
    tied values sharing their average rank), which is not dominated by a few very large
    errors. NaN when either side is constant (undefined)."""
    m, v, t = _checked(mean, var, y)
    if per not in ("element", "example"):
        raise VarbayesError(f"per must be 'element' or 'example'; got {per!r}")
    err = (m - t).pow(2)
    if per == "example" and err.ndim > 1:
        err, v = err.mean(1), v.mean(1)
    err, v = err.flatten(), v.flatten()
    if rank:
        err, v = _ranks(err), _ranks(v)
    a, b = err - err.mean(), v - v.mean()
    denom = (a.pow(2).sum() * b.pow(2).sum()).sqrt()
    return float("nan") if denom == 0 else ((a * b).sum() / denom).item()


def psnr(pred: Any, target: Any, data_range: float = 1.0) -> float:
    """Peak signal-to-noise ratio in dB, 10 log10(data_range^2 / MSE), computed per example
    (row) and averaged; an example predicted exactly is refused (infinite PSNR)."""
    p, t = _same_shape(pred=pred, target=target)
    peak = as_number(data_range, "data_range", positive=True)
    mse = (p - t).pow(2)
    mse = mse if mse.ndim == 1 else mse.mean(1)
    if bool((mse == 0).any()):
        raise VarbayesError("psnr is infinite for an example predicted exactly; "
                            "compare images that differ")
    return (10 * torch.log10(peak**2 / mse)).mean().item()


def _ranks(x: torch.Tensor) -> torch.Tensor:
    """Ranks 0..n-1 of x with ties given their average rank (as scipy's rankdata, minus 1)."""
    _, inverse, counts = torch.unique(x, return_inverse=True, return_counts=True)
    first = torch.cumsum(counts, 0) - counts
    return (first.to(x.dtype) + (counts.to(x.dtype) - 1) / 2)[inverse]


def _rmse(m: torch.Tensor, t: torch.Tensor) -> float:
    return (m - t).pow(2).mean().sqrt().item()


def _gaussian_nll(m: torch.Tensor, v: torch.Tensor, t: torch.Tensor) -> float:
    per_entry = 0.5 * (torch.log(2 * math.pi * v) + (t - m).pow(2) / v)
    per_example = per_entry if per_entry.ndim == 1 else per_entry.sum(1)
    return per_example.mean().item()


def _checked(mean: Any, var: Any, y: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    m, v, t = _same_shape(mean=mean, var=var, y=y)
    if v.min() <= 0:
        raise VarbayesError(f"var must be > 0 everywhere; got a minimum of {v.min().item():.4g}")
    return m, v, t


def _same_shape(**tensors: Any) -> list[torch.Tensor]:
    out = [as_float(x, name) for name, x in tensors.items()]
    shapes = {name: tuple(t.shape) for name, t in zip(tensors, out)}
    if len(set(shapes.values())) > 1:
        listed = ", ".join(f"{k} {s}" for k, s in shapes.items())
        raise VarbayesError(f"shapes must match, each (N,) or (N, D); got {listed}")
    if out[0].ndim not in (1, 2):
        raise VarbayesError(f"expected shape (N,) or (N, D); got {tuple(out[0].shape)}")
    for name, t in zip(tensors, out):
        check_nonempty(t, name)
    return out
