"""The pipeline every supervised method shares: data, validation split, network, training,
evaluation, model file. A method supplies how to turn the default network into its learner
(and how to sample predictions); the rest is here, once."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from varbayes.data import Dataset
from varbayes.evaluation import evaluate
from varbayes.method import RunContext, RunOutput
from varbayes.models import SupervisedModel, restore_network
from varbayes.nn.networks import build_network, network_spec
from varbayes.report.figures import training_curve
from varbayes.train import FitResult, Learner, TrainConfig, fit


def dataset_network_spec(ds: Dataset, model: str, dropout: float = 0.0) -> dict[str, Any]:
    """The default network spec for `ds` (see `varbayes.nn.networks`)."""
    return network_spec(ds.name, ds.task, ds.input_shape, ds.n_classes, model, dropout,
                        image_shape=ds.meta.get("image_shape"))


def model_meta(method: str, ds: Dataset, spec: dict[str, Any], cfg: TrainConfig,
               **extra: Any) -> dict[str, Any]:
    """What model.json records so the method can rebuild the network on load."""
    return {"method": method, "task": ds.task, "dataset": ds.name, "network": spec,
            "input_shape": list(ds.input_shape), "n_classes": ds.n_classes,
            "y_mean": ds.y_mean, "y_std": ds.y_std, "config": cfg.to_dict(), **extra}


def train_supervised(
    learner: Learner, ds: Dataset, cfg: TrainConfig, ctx: RunContext,
    description: str | None = None,
) -> FitResult:
    """Fit `learner` on the training part, validating on a split of it (never on test)."""
    if cfg.val_fraction > 0:
        train, val = ds.validation_split(cfg.val_fraction, seed=ctx.seed)
        x_val, y_val = val.x_test, val.y_test
    else:
        train, x_val, y_val = ds, None, None
    return fit(learner, train.x_train, train.y_train, cfg, seed=ctx.seed, x_val=x_val,
               y_val=y_val, checkpoint_dir=ctx.checkpoint_dir, resume=ctx.resume,
               quiet=ctx.quiet, description=description or f"{ctx.method} on {ds.name}")


def run_supervised(
    cfg: TrainConfig,
    ctx: RunContext,
    make_learner: Callable[[nn.Module, Dataset], Learner],
    make_model: Callable[[Learner, dict[str, Any]], SupervisedModel],
    *,
    model: str = "mlp",
    dropout: float = 0.0,
    data_dir: str | None = None,
    extra_meta: dict[str, Any] | None = None,
) -> RunOutput:
    """Load data, build the default network, train it as `make_learner` says, evaluate the
    model `make_model` wraps, and return the run's output with figures."""
    ds = ctx.load_data(data_dir)
    spec = dataset_network_spec(ds, model, dropout)
    learner = make_learner(build_network(spec), ds)
    result = train_supervised(learner, ds, cfg, ctx)
    trained = make_model(learner, model_meta(ctx.method, ds, spec, cfg, **(extra_meta or {})))
    metrics, figures = evaluate(trained, ds, result.fabric)
    metrics["train_seconds"] = round(result.train_seconds, 3)
    figures["training_curve"] = training_curve(result.history, f"{ctx.method} on {ds.name}")
    details = {"history": result.history, "steps": result.steps,
               "best_epoch": result.best_epoch, "stopped_early": result.stopped_early,
               "n_train": ds.n_train, "n_test": ds.n_test}
    return RunOutput(metrics, trained, figures, {"train_seconds": result.train_seconds},
                     details)


def load_network(meta: dict[str, Any], tensors: dict[str, torch.Tensor],
                 transform: Callable[[nn.Module], nn.Module] | None = None) -> nn.Module:
    """Rebuild the network of a model file (optionally transformed, e.g. bayesianized)
    and load its weights."""
    network = build_network(meta["network"])
    if transform is not None:
        network = transform(network)
    return restore_network(network, tensors)
