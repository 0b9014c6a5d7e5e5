"""The one interface every prior over datasets implements.

Amortized methods (PFNs) learn from an endless stream of small datasets drawn from a prior.
A prior is anything with `sample(n_datasets, n_points, generator) -> (x, y)` plus the input
domain it draws x from; subclass `DatasetPrior` to plug in your own:

    class Sines(DatasetPrior):
        x_dim, x_low, x_high = 1, -3.0, 3.0
        def sample(self, n_datasets, n_points, generator=None):
            x = self.sample_x(n_datasets, n_points, generator)
            phase = torch.rand(n_datasets, 1, 1, generator=generator) * 6.28
            return x, torch.sin(x + phase)[..., 0]
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from varbayes.errors import VarbayesError


class DatasetPrior:
    """A distribution over supervised datasets with inputs in [x_low, x_high]^x_dim.

    `task` is "regression" (y float, shape (B, N)) or "classification" (y int64 labels in
    0..n_classes-1). Subclasses implement `sample`; `describe` should return the JSON settings
    that rebuild the prior (used when a trained model is saved).
    """

    x_dim: int = 1
    x_low: float = 0.0
    x_high: float = 1.0
    task: str = "regression"
    n_classes: int | None = None

    def sample(self, n_datasets: int, n_points: int,
               generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """`n_datasets` independent datasets of `n_points` each: x (B, N, d), y (B, N)."""
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        """JSON settings of this prior (name plus parameters)."""
        return {"name": type(self).__name__}

    # ---- helpers shared by the built-in priors ----------------------------------------------

    def sample_x(self, n_datasets: int, n_points: int,
                 generator: torch.Generator | None = None) -> torch.Tensor:
        """Inputs uniform on the prior's box, shape (B, N, d)."""
        u = torch.rand(n_datasets, n_points, self.x_dim, generator=generator)
        return self.x_low + (self.x_high - self.x_low) * u

    def y_samples(self, n: int, generator: torch.Generator | None = None,
                  points_per_dataset: int = 100) -> torch.Tensor:
        """About `n` prior draws of y, pooled over datasets (for bar-distribution borders)."""
        n_sets = max(1, -(-n // points_per_dataset))
        _, y = self.sample(n_sets, points_per_dataset, generator)
        return y.reshape(-1)[:n]

    def check_x(self, x: torch.Tensor, name: str = "x") -> None:
        """One-line error when x has the wrong width or leaves the prior's input domain."""
        if x.shape[-1] != self.x_dim:
            raise VarbayesError(f"{name} has {x.shape[-1]} features but the prior is over "
                                f"{self.x_dim}-dimensional inputs")
        lo, hi = float(x.min()) if x.numel() else 0.0, float(x.max()) if x.numel() else 0.0
        tol = 1e-6 * (self.x_high - self.x_low)
        if x.numel() and (lo < self.x_low - tol or hi > self.x_high + tol):
            raise VarbayesError(
                f"{name} has values in [{lo:.4g}, {hi:.4g}], outside the prior's input domain "
                f"[{self.x_low:g}, {self.x_high:g}]; rescale the inputs into it")


def numpy_rng(generator: torch.Generator | None) -> np.random.Generator:
    """A NumPy generator seeded from a torch generator (for draws torch cannot seed, such as
    Gamma variates), so a prior stays reproducible from one torch generator."""
    seed = int(torch.randint(0, 2**62, (1,), generator=generator))
    return np.random.default_rng(seed)
