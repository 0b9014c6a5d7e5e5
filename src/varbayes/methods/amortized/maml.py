"""MAML (Finn, Abbeel, Levine, ICML 2017), first and second order, and pretrain-then-finetune:
the baselines NIW-Meta is measured against, on the same network and tasks.

MAML learns an initialisation m0 such that a few SGD steps on a task's support set fit its
query set: the meta-loss is the query MSE after the inner steps. Second order differentiates
through the inner steps (keeping their graph); first order treats the adapted weights' Jacobian
with respect to m0 as the identity. The inner loop lives inside the learner's loss, so the
outer loop is the shared engine (`varbayes.train.fit`), one step per meta-batch of tasks.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import nn

from varbayes.nn.functional import FunctionalMLP, Params
from varbayes.priors.tasks import SineLineTasks, TaskBatch
from varbayes.train import Learner, Step

Variant = Literal["second-order", "first-order", "pretrain"]


def task_mse(net: FunctionalMLP, params: Params, x: torch.Tensor, y: torch.Tensor
             ) -> torch.Tensor:
    """Mean squared error per task, shape (T,)."""
    return ((net.forward(params, x) - y) ** 2).mean(dim=(-2, -1))


def adapt(net: FunctionalMLP, params: Params, x: torch.Tensor, y: torch.Tensor, steps: int,
          inner_lr: float, create_graph: bool) -> Params:
    """`steps` SGD steps on each task's support MSE from the shared `params`; returns per-task
    parameters (T, ...). With `create_graph` the result stays differentiable in `params`
    through the steps (second-order MAML); otherwise gradients are constants (first order)."""
    t = x.shape[0]
    theta = {k: v.expand(t, *v.shape) for k, v in params.items()}
    for _ in range(steps):
        loss = task_mse(net, theta, x, y).sum()  # tasks are separable: per-task gradients
        grads = torch.autograd.grad(loss, list(theta.values()), create_graph=create_graph)
        theta = {k: v - inner_lr * (g if create_graph else g.detach())
                 for (k, v), g in zip(theta.items(), grads)}
    return theta


class MAMLLearner(Learner):
    """The outer objective of MAML (or plain multi-task pretraining for "pretrain")."""

    def __init__(self, net: FunctionalMLP, tasks: SineLineTasks, variant: Variant,
                 inner_steps: int, inner_lr: float, meta_batch: int, seed: int) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.net, self.tasks, self.variant = net, tasks, variant
        self.inner_steps, self.inner_lr, self.meta_batch, self.seed = (
            inner_steps, inner_lr, meta_batch, seed)
        self.params = nn.ParameterDict({k: nn.Parameter(v) for k, v in net.init(g).items()})

    def training_loss(self, x: torch.Tensor, y: torch.Tensor, step: Step) -> torch.Tensor:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + step.step)
        batch = self.tasks.sample(self.meta_batch, g)
        params = dict(self.params.items())
        if self.variant == "pretrain":
            xs = torch.cat([batch.x_support, batch.x_query], 1)
            ys = torch.cat([batch.y_support, batch.y_query], 1)
            return task_mse(self.net, params, xs, ys).mean()
        with torch.enable_grad():
            theta = adapt(self.net, params, batch.x_support, batch.y_support, self.inner_steps,
                          self.inner_lr, create_graph=self.variant == "second-order")
        return task_mse(self.net, theta, batch.x_query, batch.y_query).mean()

    def predict(self, batch: TaskBatch, steps: int | None = None) -> torch.Tensor:
        """Query predictions (T, Q, 1) after adapting to each task's support set."""
        params = {k: v.detach().requires_grad_(True) for k, v in self.params.items()}
        with torch.enable_grad():
            theta = adapt(self.net, params, batch.x_support, batch.y_support,
                          self.inner_steps if steps is None else steps, self.inner_lr,
                          create_graph=False)
        return self.net.forward({k: v.detach() for k, v in theta.items()}, batch.x_query)


def gaussian_nll(y: torch.Tensor, mean: torch.Tensor, var: float | torch.Tensor) -> torch.Tensor:
    """Per-point Gaussian NLL."""
    var_t = torch.as_tensor(var, dtype=mean.dtype)
    return 0.5 * (torch.log(2 * math.pi * var_t) + (y - mean) ** 2 / var_t)
