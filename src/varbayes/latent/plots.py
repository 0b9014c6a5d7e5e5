"""Figures for latent-variable models: a grid of generated samples and per-dimension KL bars."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch

from varbayes.errors import VarbayesError

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def _pyplot():  # noqa: ANN202
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def samples_grid(
    images: torch.Tensor,
    image_shape: Sequence[int],
    row_labels: Sequence[str] | None = None,
    title: str = "samples",
    cell: float = 0.45,
) -> Figure:
    """Images (rows, cols, prod(image_shape)) as one mosaic, one row per condition; grey
    scale in [0, 1] (single channel, dark = 1) or RGB (three channels)."""
    if images.ndim != 3:
        raise VarbayesError(f"samples_grid expects (rows, cols, pixels); got {tuple(images.shape)}")
    shape = tuple(int(s) for s in image_shape)
    if len(shape) == 2:
        shape = (1, *shape)
    c, h, w = shape
    rows, cols = images.shape[:2]
    pad = 1
    mosaic = torch.ones(c, rows * (h + pad) - pad, cols * (w + pad) - pad)
    if c == 1:
        mosaic.zero_()  # a white gap on the reversed grey scale
    imgs = images.detach().cpu().float().reshape(rows, cols, c, h, w).clamp(0, 1)
    for r in range(rows):
        for k in range(cols):
            mosaic[:, r * (h + pad):r * (h + pad) + h, k * (w + pad):k * (w + pad) + w] = imgs[r, k]
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(cols * cell + 1.4, rows * cell + 0.6))
    if c == 1:
        ax.imshow(mosaic[0].numpy(), cmap="gray_r", vmin=0, vmax=1, interpolation="nearest")
    else:
        ax.imshow(mosaic.permute(1, 2, 0).numpy(), interpolation="nearest")
    ax.set_xticks([])
    if row_labels is not None:
        ax.set_yticks([r * (h + pad) + (h - 1) / 2 for r in range(rows)], list(row_labels),
                      fontsize=8)
    else:
        ax.set_yticks([])
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


def kl_bars(
    kl_per_dim: dict[str, torch.Tensor] | torch.Tensor,
    threshold: float = 0.01,
    title: str = "KL per latent dimension",
    sort: bool = True,
) -> Figure:
    """Mean KL of each latent dimension as bars (one panel per named model), with the collapse
    threshold as a dashed line on a log scale."""
    panels = kl_per_dim if isinstance(kl_per_dim, dict) else {"": kl_per_dim}
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels) + 0.6, 2.8),
                             squeeze=False, sharey=True)
    for ax, (name, kl) in zip(axes[0], panels.items()):
        values = kl.detach().cpu().double()
        if sort:
            values = values.sort(descending=True).values
        floor = threshold / 100
        colors = ["C0" if v > threshold else "C7" for v in values.tolist()]
        ax.bar(range(len(values)), values.clamp_min(floor).numpy(), color=colors)
        ax.axhline(threshold, ls="--", c="C3", lw=1, label=f"threshold {threshold:g}")
        ax.set_yscale("log")
        ax.set_xlabel("latent dimension" + (" (sorted)" if sort else ""))
        ax.set_title(name, fontsize=9)
    axes[0][0].set_ylabel("mean KL (nats)")
    axes[0][0].legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def predicted_vs_measured(
    x: Sequence[float],
    predicted: Sequence[float],
    measured: Sequence[float],
    xlabel: str,
    ylabel: str = "active latent dimensions",
    title: str = "",
    log_x: bool = True,
    extra: dict[str, Sequence[float]] | None = None,
) -> Figure:
    """A theory's prediction (line) against measurements (markers) over a swept setting."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(4.6, 3.2))
    ax.plot(x, predicted, "-", c="C0", label="predicted", zorder=1)
    ax.plot(x, measured, "o", c="C3", ms=7, mfc="none", label="measured", zorder=2)
    for k, (name, values) in enumerate((extra or {}).items()):
        ax.plot(x, values, "x--", c=f"C{k + 1}", label=name, zorder=1)
    if log_x:
        ax.set_xscale("log", base=2)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig
