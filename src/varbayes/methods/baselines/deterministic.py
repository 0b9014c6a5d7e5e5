"""`deterministic`: the plain network trained by maximum likelihood with Adam.

The baseline every Bayesian claim is measured against: the same default network per dataset
as the BNN methods (MLP, 1-D CNN via `model=cnn`, small CNN or ResNet-18 for images), a
softmax or Gaussian output, no posterior.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

from varbayes.config import setting
from varbayes.method import ReproduceContext, Reproduction, RunContext, RunOutput, at_least
from varbayes.methods.supervised import load_network, run_supervised
from varbayes.models import SupervisedModel
from varbayes.nn.heads import nll_per_example
from varbayes.train import Learner, Step, TrainConfig

DATASETS = ("mnist1d", "digits", "boston", "concrete", "two-moons", "toy-regression", "cifar10")


@dataclass
class Config(TrainConfig):
    """Settings of the deterministic baseline."""

    model: Literal["mlp", "cnn", "resnet18"] = setting("mlp", help="network architecture")
    data_dir: str | None = setting(None, help="folder with the CIFAR-10 python batches")
    dropout: float = setting(0.0, help="dropout rate while training (off at prediction)",
                             ge=0, lt=1)


class NetworkLearner(Learner):
    """Maximum likelihood: the mean negative log-likelihood of the batch."""

    def __init__(self, network: nn.Module, task: str) -> None:
        super().__init__()
        self.network, self.task = network, task

    def training_loss(self, x: torch.Tensor, y: torch.Tensor, step: Step) -> torch.Tensor:
        return nll_per_example(self.network(x), y, self.task).mean()


def run(cfg: Config, ctx: RunContext) -> RunOutput:
    """Train the default network for the dataset and evaluate it on the test split."""
    return run_supervised(
        cfg, ctx,
        make_learner=lambda net, ds: NetworkLearner(net, ds.task),
        make_model=lambda learner, meta: SupervisedModel(learner.network, meta),
        model=cfg.model, dropout=cfg.dropout, data_dir=cfg.data_dir,
    )


def load_model(meta: dict[str, Any], tensors: dict[str, torch.Tensor]) -> SupervisedModel:
    """Rebuild a saved deterministic network."""
    return SupervisedModel(load_network(meta, tensors), meta)


def reproduce(ctx: ReproduceContext) -> Reproduction:
    """A sanity check rather than a paper claim: the baseline learns each classification set
    well above chance (digits >= 90 %, two-moons >= 95 %)."""
    from varbayes.runner import run as run_method

    claims = []
    for dataset, bound in (("digits", 0.90), ("two-moons", 0.95)):
        rec = run_method("deterministic", dataset, out=ctx.out / dataset, quiet=ctx.quiet,
                         epochs=20 if ctx.quick else 60)
        claims.append(at_least(f"{dataset} test accuracy", rec["metrics"]["accuracy"], bound))
    return Reproduction(claims)
