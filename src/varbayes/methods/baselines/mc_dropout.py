"""`mc-dropout`: Monte Carlo dropout (Gal & Ghahramani 2016).

The dataset's default network with dropout after every hidden layer, trained by maximum
likelihood with weight decay (the L2 term plays the role of the prior); at test time dropout
stays on and the predictive averages S = 30 stochastic passes. Only the Dropout modules are
switched to training mode while sampling, so any other layer keeps its evaluation behaviour.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

from varbayes.config import setting
from varbayes.method import ReproduceContext, Reproduction, RunContext, RunOutput
from varbayes.methods.baselines.deterministic import NetworkLearner
from varbayes.methods.supervised import load_network, run_supervised
from varbayes.models import SupervisedModel
from varbayes.train import TrainConfig

DATASETS = ("mnist1d", "digits", "boston", "concrete", "two-moons", "toy-regression", "cifar10")


@dataclass
class Config(TrainConfig):
    """Settings of MC dropout."""

    model: Literal["mlp", "cnn"] = setting("mlp", help="network architecture")
    data_dir: str | None = setting(None, help="folder with the CIFAR-10 python batches")
    dropout: float = setting(0.1, help="dropout probability after every hidden layer",
                             gt=0, lt=1)
    weight_decay: float = setting(1e-4, help="L2 weight decay (the implied Gaussian prior)",
                                  ge=0)
    eval_samples: int = setting(30, help="stochastic forward passes S at test time", ge=1)


def run(cfg: Config, ctx: RunContext) -> RunOutput:
    """Train the default network with dropout; predict with dropout on, S passes."""
    return run_supervised(
        cfg, ctx,
        make_learner=lambda net, ds: NetworkLearner(net, ds.task),
        make_model=lambda learner, meta: dropout_model(learner.network, meta, cfg.eval_samples),
        model=cfg.model, dropout=cfg.dropout, data_dir=cfg.data_dir,
    )


def dropout_sampler(network: nn.Module, x: torch.Tensor, n: int) -> torch.Tensor:
    """n passes with only the Dropout modules in training mode (restored afterwards)."""
    drops = [m for m in network.modules() if isinstance(m, nn.modules.dropout._DropoutNd)]
    modes = [m.training for m in drops]
    try:
        for m in drops:
            m.train()
        return torch.stack([network(x) for _ in range(n)])
    finally:
        for m, mode in zip(drops, modes):
            m.train(mode)


def dropout_model(network: nn.Module, meta: dict[str, Any], n_samples: int) -> SupervisedModel:
    """The trained network as a model whose predict() averages n_samples dropout masks."""
    return SupervisedModel(network, meta, n_samples, sampler=dropout_sampler)


def load_model(meta: dict[str, Any], tensors: dict[str, torch.Tensor]) -> SupervisedModel:
    """Rebuild a saved MC-dropout network."""
    return dropout_model(load_network(meta, tensors), meta, meta.get("n_samples", 30))


def reproduce(ctx: ReproduceContext) -> Reproduction:
    """The shared BNN-baseline reproduction (see `mfvi`): mc-dropout is one of its rows."""
    from varbayes.methods.bnn.bnn_reproduction import reproduce_bnn_baselines

    return reproduce_bnn_baselines(ctx)
