"""Saving matplotlib figures as PNG, atomically, with the non-interactive backend."""

from __future__ import annotations

import io
from pathlib import Path
from typing import TYPE_CHECKING, Any

from varbayes.io import atomic_write_bytes

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def save_figure(fig: Figure, path: str | Path, dpi: int = 120) -> Path:
    """Write `fig` as a PNG at `path` (temporary file, then rename) and close it."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return atomic_write_bytes(path, buf.getvalue())


def training_curve(history: list[dict[str, float]], title: str = "training") -> Figure:
    """Training (and validation, where recorded) loss per epoch."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.2))
    epochs = [h["epoch"] for h in history]
    ax.plot(epochs, [h["train_loss"] for h in history], label="train loss")
    val = [(h["epoch"], h["val_loss"]) for h in history if "val_loss" in h]
    if val:
        ax.plot(*zip(*val), label="validation loss")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    return fig


def predictive_bands(
    curves: dict[str, tuple[Any, Any, Any]],
    x_train: Any,
    y_train: Any,
    gap: tuple[float, float] | None = None,
    title: str = "predictive mean ± 2 sd",
) -> Figure:
    """1-D regression: for each named model, its mean and ±2 sd band over a grid, with the
    training points (and the gap in the inputs shaded)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(curves), figsize=(4 * len(curves), 3.2), sharey=True,
                             squeeze=False)
    for ax, (name, (grid, mean, sd)) in zip(axes[0], curves.items()):
        ax.scatter(x_train, y_train, s=4, c="k", alpha=0.5, label="train")
        ax.plot(grid, mean, c="C0", label="mean")
        ax.fill_between(grid, mean - 2 * sd, mean + 2 * sd, color="C0", alpha=0.25)
        if gap is not None:
            ax.axvspan(*gap, color="C3", alpha=0.08, label="gap")
        ax.set_title(name)
        ax.set_xlabel("x")
    axes[0][0].set_ylabel("y")
    axes[0][0].legend(loc="upper left", fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    return fig
