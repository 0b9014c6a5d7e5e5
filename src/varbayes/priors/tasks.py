"""Few-shot regression task distributions for meta-learning.

`SineLineTasks`: half the tasks are sines y = A sin(x + phase), A ~ U[0.1, 5],
phase ~ U[0, pi]; half are lines y = a x + b, a, b ~ U[-3, 3]; x ~ U[-5, 5]; observations carry
Gaussian noise (std 0.3). Every task has a support set (the few shots) and a query set.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass
class TaskBatch:
    """T tasks: support x/y (T, S, 1)/(T, S, 1) and query x/y (T, Q, 1)/(T, Q, 1)."""

    x_support: torch.Tensor
    y_support: torch.Tensor
    x_query: torch.Tensor
    y_query: torch.Tensor


class SineLineTasks:
    """The sine-or-line task distribution (Finn et al.'s mixture variant)."""

    def __init__(self, n_support: int = 5, n_query: int = 50, noise: float = 0.3,
                 x_range: tuple[float, float] = (-5.0, 5.0)) -> None:
        self.n_support, self.n_query, self.noise, self.x_range = n_support, n_query, noise, \
            x_range

    def sample(self, n_tasks: int, generator: torch.Generator | None = None) -> TaskBatch:
        lo, hi = self.x_range
        n = self.n_support + self.n_query
        x = lo + (hi - lo) * torch.rand(n_tasks, n, 1, generator=generator)
        u = torch.rand(n_tasks, 4, generator=generator)
        amp, phase = 0.1 + 4.9 * u[:, :1], math.pi * u[:, 1:2]
        slope, intercept = -3 + 6 * u[:, 2:3], -3 + 6 * u[:, 3:4]
        is_sine = torch.rand(n_tasks, 1, generator=generator) < 0.5
        xs = x[..., 0]
        f = torch.where(is_sine, amp * torch.sin(xs + phase), slope * xs + intercept)
        y = f + self.noise * torch.randn(n_tasks, n, generator=generator)
        y = y.unsqueeze(-1)
        s = self.n_support
        return TaskBatch(x[:, :s], y[:, :s], x[:, s:], y[:, s:])
