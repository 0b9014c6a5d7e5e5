"""Random-MLP prior over datasets (the PFN paper's BNN prior).

Each dataset gets its own MLP with i.i.d. N(0, weight_std^2) weights and biases; regression
targets are its output plus Gaussian noise, classification labels are drawn from the softmax
of its outputs. Inputs are uniform on [x_low, x_high]^x_dim.
"""

from __future__ import annotations

from typing import Any

import torch

from varbayes.priors.base import DatasetPrior


class MLPPrior(DatasetPrior):
    """Datasets from randomly drawn tanh MLPs (one per dataset)."""

    def __init__(self, x_dim: int = 1, hidden: int = 16, layers: int = 2,
                 weight_std: float = 1.0, noise: float = 0.1, task: str = "regression",
                 n_classes: int = 2, x_low: float = -1.0, x_high: float = 1.0) -> None:
        if task not in ("regression", "classification"):
            raise ValueError("task must be regression or classification")
        self.x_dim, self.hidden, self.layers = x_dim, hidden, layers
        self.weight_std, self.noise, self.task = weight_std, noise, task
        self.n_classes = n_classes if task == "classification" else None
        self.x_low, self.x_high = x_low, x_high

    def sample(self, n_datasets: int, n_points: int,
               generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.sample_x(n_datasets, n_points, generator)
        n_out = self.n_classes if self.task == "classification" else 1
        sizes = [self.x_dim] + [self.hidden] * self.layers + [n_out]
        h = x
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
            w = self.weight_std * torch.randn(n_datasets, a, b, generator=generator)
            bias = self.weight_std * torch.randn(n_datasets, 1, b, generator=generator)
            h = h @ w / a**0.5 + bias
            if i < len(sizes) - 2:
                h = torch.tanh(h)
        if self.task == "classification":
            probs = torch.softmax(h, dim=-1).reshape(-1, n_out)
            y = torch.multinomial(probs, 1, generator=generator).reshape(n_datasets, n_points)
            return x, y
        y = h[..., 0] + self.noise**0.5 * torch.randn(n_datasets, n_points, generator=generator)
        return x, y

    def describe(self) -> dict[str, Any]:
        return {"name": "mlp", "x_dim": self.x_dim, "hidden": self.hidden,
                "layers": self.layers, "weight_std": self.weight_std, "noise": self.noise,
                "task": self.task, "n_classes": self.n_classes or 2, "x_low": self.x_low,
                "x_high": self.x_high}
