"""`deep-ensemble`: M independently initialised networks trained together (Lakshminarayanan,
Pritzel, Blundell 2017).

One run trains all M members of the dataset's default network on the same minibatches (the
loss is the sum of the members' mean NLLs, so each member follows its own maximum-likelihood
gradient; they differ by initialisation). The predictive is the uniform mixture of the
members: averaged class probabilities, or the mixture mean and variance of their Gaussians for
regression. The paper's optional adversarial training is not used.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

from varbayes.config import setting
from varbayes.method import ReproduceContext, Reproduction, RunContext, RunOutput
from varbayes.methods.supervised import dataset_network_spec, load_network, run_supervised
from varbayes.models import SupervisedModel
from varbayes.nn.heads import nll_per_example
from varbayes.nn.networks import build_network
from varbayes.train import Learner, Step, TrainConfig

DATASETS = ("mnist1d", "digits", "boston", "concrete", "two-moons", "toy-regression", "cifar10")


@dataclass
class Config(TrainConfig):
    """Settings of the deep ensemble."""

    model: Literal["mlp", "cnn", "resnet18"] = setting("mlp", help="network architecture")
    data_dir: str | None = setting(None, help="folder with the CIFAR-10 python batches")
    members: int = setting(5, help="ensemble size M", ge=1)


class Ensemble(nn.Module):
    """M networks; forward returns their outputs stacked, shape (M, N, K)."""

    def __init__(self, members: list[nn.Module]) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([m(x) for m in self.members])


class EnsembleLearner(Learner):
    """Sum over members of each member's mean NLL on the batch."""

    def __init__(self, ensemble: Ensemble, task: str) -> None:
        super().__init__()
        self.network, self.task = ensemble, task

    def training_loss(self, x: torch.Tensor, y: torch.Tensor, step: Step) -> torch.Tensor:
        outputs = self.network(x)
        return sum(nll_per_example(out, y, self.task).mean() for out in outputs)


def run(cfg: Config, ctx: RunContext) -> RunOutput:
    """Train M copies of the default network in one run; predict with their mixture."""

    def make_learner(net: nn.Module, ds: Any) -> EnsembleLearner:
        spec = dataset_network_spec(ds, cfg.model)
        members = [net] + [build_network(spec) for _ in range(cfg.members - 1)]
        return EnsembleLearner(Ensemble(members), ds.task)

    return run_supervised(
        cfg, ctx,
        make_learner=make_learner,
        make_model=lambda learner, meta: ensemble_model(learner.network, meta),
        model=cfg.model, data_dir=cfg.data_dir, extra_meta={"members": cfg.members},
    )


def ensemble_sampler(network: nn.Module, x: torch.Tensor, n: int) -> torch.Tensor:
    """The members' outputs (M, N, K): one 'sample' per member, whatever n."""
    return network(x)


def ensemble_model(network: Ensemble, meta: dict[str, Any]) -> SupervisedModel:
    return SupervisedModel(network, meta, len(network.members), sampler=ensemble_sampler)


def load_model(meta: dict[str, Any], tensors: dict[str, torch.Tensor]) -> SupervisedModel:
    """Rebuild the M member networks and load their weights."""
    m = int(meta["members"])
    network = load_network(meta, tensors,
                           lambda net: Ensemble([net] + [build_network(meta["network"])
                                                         for _ in range(m - 1)]))
    return ensemble_model(network, meta)


def reproduce(ctx: ReproduceContext) -> Reproduction:
    """The shared BNN-baseline reproduction (see `mfvi`): deep-ensemble is one of its rows."""
    from varbayes.methods.bnn.bnn_reproduction import reproduce_bnn_baselines

    return reproduce_bnn_baselines(ctx)
