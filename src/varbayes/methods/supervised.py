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
from varbayes.metrics.cost import count_parameters, layer_macs, train_flops
from varbayes.models import SupervisedModel, restore_network
from varbayes.nn.networks import build_network, network_spec
from varbayes.report.figures import training_curve
from varbayes.train import FitResult, Learner, TrainConfig, fit

ExtraMetrics = Callable[[Learner, SupervisedModel, Dataset, Any], dict[str, float]]


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
    result = fit(learner, train.x_train, train.y_train, cfg, seed=ctx.seed, x_val=x_val,
                 y_val=y_val, checkpoint_dir=ctx.checkpoint_dir, resume=ctx.resume,
                 quiet=ctx.quiet, description=description or f"{ctx.method} on {ds.name}")
    result.extra["n_fit"] = train.n_train
    return result


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
    lrt_factor: int = 1,
    extra_metrics: ExtraMetrics | None = None,
) -> RunOutput:
    """Load data, build the default network, train it as `make_learner` says, evaluate the
    model `make_model` wraps, and return the run's output with figures.

    `lrt_factor` is the number of matrix products per weight layer and pass (2 for the local
    reparameterisation trick or flipout, 1 otherwise) for `train_flops`; `extra_metrics`
    adds method-specific test metrics (e.g. the posterior-mean accuracy).
    """
    ds = ctx.load_data(data_dir)
    spec = dataset_network_spec(ds, model, dropout)
    learner = make_learner(build_network(spec), ds)
    result = train_supervised(learner, ds, cfg, ctx)
    trained = make_model(learner, model_meta(ctx.method, ds, spec, cfg, **(extra_meta or {})))
    metrics, figures = evaluate(trained, ds, result.fabric)
    if extra_metrics is not None:
        metrics.update(extra_metrics(learner, trained, ds, result.fabric))
    metrics.update(cost_metrics(trained.network, ds, cfg, result, lrt_factor))
    metrics["train_seconds"] = round(result.train_seconds, 3)
    figures["training_curve"] = training_curve(result.history, f"{ctx.method} on {ds.name}")
    details = {"history": result.history, "steps": result.steps,
               "best_epoch": result.best_epoch, "stopped_early": result.stopped_early,
               "n_train": ds.n_train, "n_fit": result.extra["n_fit"], "n_test": ds.n_test,
               "world_size": result.fabric.world_size,
               "param_checksums": rank_checksums(learner, result.fabric)}
    return RunOutput(metrics, trained, figures, {"train_seconds": result.train_seconds},
                     details)


def cost_metrics(network: nn.Module, ds: Dataset, cfg: TrainConfig, result: FitResult,
                 lrt_factor: int) -> dict[str, float]:
    """params_total, params_active, model_bytes (the safetensors file) and the analytic
    train_flops of the run (spec convention: 2 FLOPs per MAC, 3 passes, `lrt_factor`
    products per layer; full batches plus the ragged last batch of every epoch)."""
    from safetensors.torch import save

    n_fit = result.extra["n_fit"]
    batch = min(cfg.batch_size, n_fit)
    full, rest = divmod(n_fit, batch)
    steps_per_epoch = full + (rest > 0)
    epochs = result.steps // steps_per_epoch
    layers = layer_macs(network, ds.x_train[:1])
    flops = train_flops(layers, epochs * full, batch, lrt_factor)
    if rest:
        flops += train_flops(layers, epochs, rest, lrt_factor)
    state = {k: v.detach().cpu().contiguous() for k, v in network.state_dict().items()}
    return {"params_total": count_parameters(network),
            "params_active": count_parameters(network, active_only=True),
            "model_bytes": len(save(state)), "train_flops": flops}


def rank_checksums(module: nn.Module, fabric: Any) -> list[list[float]]:
    """Per rank (gathered to all): the float64 sum and weighted sum of every parameter and
    buffer, in order. Identical parameters on all ranks give identical rows."""
    values = [t.detach().double().flatten() for t in module.state_dict().values()
              if t.is_floating_point()]
    flat = torch.cat(values) if values else torch.zeros(1, dtype=torch.float64)
    weights = torch.arange(1, len(flat) + 1, dtype=torch.float64) / len(flat)
    mine = torch.stack([flat.sum(), (flat * weights.to(flat.device)).sum()])
    if fabric is None or fabric.world_size == 1:
        return [mine.tolist()]
    return fabric.all_gather(mine).reshape(fabric.world_size, 2).cpu().tolist()


def load_network(meta: dict[str, Any], tensors: dict[str, torch.Tensor],
                 transform: Callable[[nn.Module], nn.Module] | None = None) -> nn.Module:
    """Rebuild the network of a model file (optionally transformed, e.g. bayesianized)
    and load its weights."""
    network = build_network(meta["network"])
    if transform is not None:
        network = transform(network)
    return restore_network(network, tensors)
