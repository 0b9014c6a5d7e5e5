"""The audit figure: the (FNR, FPR) posterior over the privacy region, and epsilon's density
with the Bayesian credible interval and the Clopper-Pearson interval marked."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from varbayes.privacy.posterior import EPS_MAX, EpsilonPosterior
from varbayes.privacy.region import fpr_bounds

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure


def audit_figure(
    post: EpsilonPosterior, interval: tuple[float, float], baseline: tuple[float, float],
    alpha: float, guarantee: float | None = None, title: str = "",
) -> Figure:
    """Three panels: posterior draws of (FNR, FPR) with the boundaries of the privacy regions at
    the interval's ends (and the guarantee), on the whole square and zoomed on the draws; and
    the posterior density of epsilon with both intervals."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (whole, zoom, right) = plt.subplots(1, 3, figsize=(14, 4.4))
    fpr, fnr = post.sample_rates(3000, seed=1)
    curves = [(e, f"region at eps = {e:.3g}", c) for e, c in
              ((interval[0], "C0"), (interval[1], "C1")) if math.isfinite(e)]
    if guarantee is not None and math.isfinite(guarantee):
        curves.append((guarantee, f"guarantee eps = {guarantee:.3g}", "C3"))
    _rates_panel(whole, fpr, fnr, curves, post.delta, (0.0, 1.0), (0.0, 1.0))
    whole.set_title("(FNR, FPR) posterior and privacy regions")
    whole.legend(fontsize=7, loc="upper right")
    lo = np.percentile(np.c_[fnr, fpr], 0.5, axis=0)
    hi = np.percentile(np.c_[fnr, fpr], 99.5, axis=0)
    pad = 0.25 * (hi - lo) + 1e-6
    _rates_panel(zoom, fpr, fnr, curves, post.delta,
                 (max(lo[0] - pad[0], 0.0), min(hi[0] + pad[0], 1.0)),
                 (max(lo[1] - pad[1], 0.0), min(hi[1] + pad[1], 1.0)))
    zoom.set_title("zoomed on the posterior")
    _density_panel(right, post, interval, baseline, alpha, guarantee)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def _rates_panel(ax: Axes, fpr: np.ndarray, fnr: np.ndarray,
                 curves: list[tuple[float, str, str]], delta: float,
                 xlim: tuple[float, float], ylim: tuple[float, float]) -> None:
    ax.scatter(fnr, fpr, s=2, c="k", alpha=0.25, label="posterior draws")
    x = np.linspace(xlim[0], xlim[1], 1201)
    for e, label, color in curves:
        lower, upper = fpr_bounds(x, e, delta)
        ax.plot(x, lower, c=color, lw=1.2, label=label)
        ax.plot(x, upper, c=color, lw=1.2)
    ax.plot([0, 1], [1, 0], c="0.6", lw=0.8, ls=":")
    ax.set(xlim=xlim, ylim=ylim, xlabel="false-negative rate", ylabel="false-positive rate")


def _density_panel(ax: Axes, post: EpsilonPosterior, interval: tuple[float, float],
                   baseline: tuple[float, float], alpha: float, guarantee: float | None) -> None:
    finite = [v for v in (*interval, *baseline, guarantee or 0.0) if math.isfinite(v)]
    top = min(max(finite + [1.0]) * 1.25, EPS_MAX)
    grid = np.linspace(0, top, 121)[1:]
    dens = np.asarray(post.pdf(grid))
    level = f"{100 * (1 - alpha):.0f} %"
    ax.plot(grid, dens, c="k", lw=1.3, label="posterior density")
    lo, hi = interval
    band = (grid >= lo) & (grid <= hi)
    ax.fill_between(grid[band], dens[band], color="C0", alpha=0.3,
                    label=f"{level} credible [{lo:.3g}, {hi:.3g}]")
    cp_hi_text = f"{baseline[1]:.3g}" if math.isfinite(baseline[1]) else "inf"
    ymax = float(dens.max()) if dens.size else 1.0
    cp_right = baseline[1] if math.isfinite(baseline[1]) else top
    ax.hlines(ymax * 1.08, baseline[0], cp_right, colors="C2", lw=3,
              label=f"{level} Clopper-Pearson [{baseline[0]:.3g}, {cp_hi_text}]")
    if guarantee is not None and math.isfinite(guarantee):
        ax.axvline(guarantee, c="C3", ls="--", lw=1, label=f"guarantee {guarantee:.3g}")
    atom = float(post.cdf(0.0))
    if atom > 1e-3:
        ax.plot([0], [0], "o", c="k", label=f"P[eps = 0] = {atom:.3f}")
    ax.set(xlim=(0, top), ylim=(0, ymax * 1.2), xlabel="epsilon", ylabel="density",
           title="posterior of epsilon")
    ax.legend(fontsize=7)
