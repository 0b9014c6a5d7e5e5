"""`pfn`: Prior-data Fitted Networks (Müller, Hollmann, Pineda Arango, Grabocka, Hutter,
"Transformers Can Do Bayesian Inference", ICLR 2022).

A transformer is trained once on an endless stream of small datasets drawn from a prior to
predict held-out labels from the other labelled points; minimising that negative
log-likelihood makes it approximate the prior's posterior predictive, so Bayesian prediction
for a new dataset is one forward pass with the data as context. Regression uses a bar
(Riemann) distribution head with adaptive borders and half-normal tails.

Python:

    from varbayes.methods.amortized.pfn import Config, PFNRegressor
    reg = PFNRegressor.pretrain(Config(epochs=30))          # trains on the 1-D GP prior
    mean, quantiles = reg.fit(x_ctx, y_ctx).predict(x_new)  # (N,), (N, 3) at 5/50/95 %
    dist = reg.predict_distribution(x_new)                  # .log_prob, .quantile, .variance
"""

from __future__ import annotations

import copy
import math
import time
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal, NamedTuple

import numpy as np
import torch
from torch import nn

from varbayes.config import setting
from varbayes.errors import VarbayesError
from varbayes.io import atomic_write_json
from varbayes.method import (
    ReproduceContext,
    Reproduction,
    RunContext,
    RunOutput,
    at_least,
    at_most,
    holds,
)
from varbayes.models import FORMAT, restore_network
from varbayes.nn.bar_distribution import BarDistribution, BarPredictive, adaptive_borders
from varbayes.nn.set_transformer import SetEncoder, pfn_attention_mask
from varbayes.priors import DatasetPrior, GPPrior, HyperGPPrior, MLPPrior, build_prior
from varbayes.train import Learner, Step, TrainConfig, fit
from varbayes.train.distributed import check_accelerator

DATASETS = ("gp", "gp-hyper", "mlp")  # the prior a PFN is trained on


@dataclass
class Config(TrainConfig):
    """PFN settings; defaults are the spec's small-scale GP reproduction (A.5)."""

    epochs: int = setting(30, help="epochs of `steps_per_epoch` steps, each step on a fresh "
                          "batch of prior datasets", ge=1)
    steps_per_epoch: int = setting(100, help="optimiser steps per epoch", ge=1)
    batch_size: int = setting(64, help="datasets per step", ge=1)
    lr: float = setting(1e-3, help="Adam learning rate", gt=0)
    warmup_steps: int = setting(100, help="linear warm-up steps before cosine decay", ge=0)
    grad_clip: float | None = setting(1.0, help="gradient-norm clipping", gt=0)
    val_fraction: float = setting(0.0, help="unused: every step sees fresh data", ge=0, lt=1)
    d_model: int = setting(128, help="transformer width", ge=8)
    n_heads: int = setting(4, help="attention heads", ge=1)
    d_ff: int = setting(256, help="feed-forward width (also the head's hidden width)", ge=8)
    n_layers: int = setting(4, help="encoder layers", ge=1)
    dropout: float = setting(0.0, help="dropout in the encoder", ge=0, lt=1)
    n_buckets: int = setting(1000, help="bar-distribution buckets (the floor falls with more)",
                             ge=4)
    border_samples: int = setting(50_000, help="prior y draws for the adaptive borders",
                                  ge=1000)
    full_support: bool = setting(True, help="half-normal tails on the outer buckets")
    y_normalize: Literal["context", "none"] = setting(
        "context", help="'context': standardise each dataset's y by (shrunk) statistics of its "
        "context, give the network those statistics too (nothing is lost), and map the "
        "predictive back (densities divided by the scale); the buckets then resolve sharp "
        "predictives of large-amplitude datasets. 'none': y in the prior's units")
    max_context: int = setting(20, help="largest context size seen in training", ge=1)
    n_points: int = setting(21, help="points per training dataset (context + queries)", ge=2)
    split: Literal["uniform", "inverse"] = setting(
        "uniform", help="context size per batch: uniform on 0..max_context, or weights "
        "proportional to 1/(n_points - n) (the reference's single-eval-pos sampling)")
    low_noise_fraction: float = setting(
        0.0, help="prior gp-hyper only: draw this fraction of each batch's noise variances "
        "log-uniformly on [1e-3, 1] and weight every dataset's loss by p(noise) / q(noise), "
        "so the expected loss (and its minimiser, the PPD) is unchanged while rare low-noise "
        "datasets are seen far more often", ge=0, lt=1)
    lengthscale: float = setting(0.3, help="GP prior lengthscale (prior gp)", gt=0)
    outputscale: float = setting(1.0, help="GP prior outputscale (prior gp)", gt=0)
    noise: float = setting(0.01, help="GP prior noise variance (prior gp, mlp)", gt=0)
    x_dim: int = setting(1, help="input dimension of the prior", ge=1)
    eval_datasets: int = setting(500, help="fresh datasets per context size in `run`", ge=1)
    eval_queries: int = setting(50, help="query points per evaluation dataset", ge=1)

    def validate(self) -> None:
        if self.d_model % self.n_heads:
            raise VarbayesError(f"d_model {self.d_model} must be divisible by n_heads "
                                f"{self.n_heads}")
        if self.n_points <= self.max_context:
            raise VarbayesError(f"n_points ({self.n_points}) must exceed max_context "
                                f"({self.max_context}) so every batch has a query")


def make_prior(name: str, cfg: Config) -> DatasetPrior:
    """The built-in prior `name` with the Config's hyperparameters."""
    if name == "gp":
        return GPPrior(cfg.lengthscale, cfg.outputscale, cfg.noise, cfg.x_dim)
    if name == "gp-hyper":
        return HyperGPPrior(x_dim=cfg.x_dim)
    if name == "mlp":
        return MLPPrior(x_dim=cfg.x_dim, noise=cfg.noise)
    raise VarbayesError(f"unknown prior {name!r}; valid: {', '.join(DATASETS)}")


# ---------------------------------------------------------------------------------------------
# the network


class PFNNetwork(nn.Module):
    """Tokens Linear_x(x) + Linear_y(y) for context points and Linear_x(x) for queries, a
    set encoder without positional encoding under the PFN mask, and an MLP head."""

    def __init__(self, x_dim: int, n_out: int, d_model: int, n_heads: int, d_ff: int,
                 n_layers: int, dropout: float = 0.0, n_stats: int = 0) -> None:
        super().__init__()
        self.embed_x = nn.Linear(x_dim, d_model)
        self.embed_y = nn.Linear(1, d_model)
        # per-dataset statistics of the context (y standardisation), added to every token
        self.embed_stats = nn.Linear(n_stats, d_model) if n_stats else None
        self.encoder = SetEncoder(d_model, n_heads, d_ff, n_layers, dropout)
        self.head = nn.Sequential(nn.Linear(d_model, d_ff), nn.GELU(), nn.Linear(d_ff, n_out))

    def forward(self, x_ctx: torch.Tensor, y_ctx: torch.Tensor, x_query: torch.Tensor,
                stats: torch.Tensor | None = None) -> torch.Tensor:
        """(B, n, d), (B, n), (B, m, d) [, (B, n_stats)] -> (B, m, n_out) outputs for the
        queries."""
        n, m = x_ctx.shape[1], x_query.shape[1]
        ctx = self.embed_x(x_ctx) + self.embed_y(y_ctx.unsqueeze(-1).to(x_ctx.dtype))
        tokens = torch.cat([ctx, self.embed_x(x_query)], dim=1)
        if self.embed_stats is not None:
            if stats is None:
                raise VarbayesError("this PFN needs the context statistics (y_normalize)")
            tokens = tokens + self.embed_stats(stats.to(tokens.dtype)).unsqueeze(1)
        out = self.encoder(tokens, pfn_attention_mask(n, m, tokens.device))
        return self.head(out[:, n:])


def build_network(cfg: Config, x_dim: int, n_out: int, regression: bool = True) -> PFNNetwork:
    n_stats = ContextScaling.n_stats if regression and cfg.y_normalize == "context" else 0
    return PFNNetwork(x_dim, n_out, cfg.d_model, cfg.n_heads, cfg.d_ff, cfg.n_layers,
                      cfg.dropout, n_stats)


class ContextScaling:
    """Per-dataset standardisation of y by its context: loc and scale are the mean and
    standard deviation of the context pooled with `pseudo` pseudo-points at the prior's y mean
    and spread (`mean`, `std`, from prior draws), so they exist for 0 or 1 context points and
    stay away from 0 for a few near-equal values. The network sees the standardised context
    and the statistics themselves ((loc - mean) / std, log(scale / std)), so standardising
    loses no information; it predicts z = (y - loc) / scale, and the density of y is
    q(z) / scale. This is what lets a fixed set of buckets serve datasets whose amplitude
    differs by orders of magnitude (the hyperprior GP)."""

    n_stats = 2

    def __init__(self, mean: float, std: float, pseudo: float = 1.0) -> None:
        if not std > 0:
            raise VarbayesError(f"the prior's y spread must be positive; got {std}")
        self.mean, self.std, self.pseudo = float(mean), float(std), float(pseudo)

    @classmethod
    def from_samples(cls, y: torch.Tensor) -> ContextScaling:
        y = y.double()
        return cls(float(y.mean()), float(y.std()))

    def __call__(self, y_ctx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(B, n) context -> loc (B, 1), scale (B, 1), network features (B, 2)."""
        y = y_ctx.double()
        k, n = self.pseudo, y.shape[1]
        loc = (y.sum(1, keepdim=True) + k * self.mean) / (n + k)
        var = (((y - loc) ** 2).sum(1, keepdim=True)
               + k * ((self.mean - loc) ** 2 + self.std**2)) / (n + k)
        scale = var.sqrt()
        stats = torch.cat([(loc - self.mean) / self.std, torch.log(scale / self.std)], dim=-1)
        dtype = y_ctx.dtype if y_ctx.is_floating_point() else torch.float32
        return loc.to(dtype), scale.to(dtype), stats.float()

    def describe(self) -> dict[str, float]:
        return {"mean": self.mean, "std": self.std, "pseudo": self.pseudo}


def forward(network: PFNNetwork, scaling: ContextScaling | None, x_ctx: torch.Tensor,
            y_ctx: torch.Tensor, x_query: torch.Tensor
            ) -> tuple[torch.Tensor, torch.Tensor | float, torch.Tensor | float]:
    """Network outputs for the queries and the (loc, scale) that map its units to y's:
    y = loc + scale * z (loc 0, scale 1 without standardisation)."""
    if scaling is None:
        return network(x_ctx, y_ctx.float(), x_query), 0.0, 1.0
    loc, scale, stats = scaling(y_ctx.float())
    out = network(x_ctx, ((y_ctx - loc) / scale).float(), x_query, stats)
    return out, loc, scale


# ---------------------------------------------------------------------------------------------
# training on the prior


def split_weights(cfg: Config) -> torch.Tensor:
    """Probabilities of the context sizes 0..max_context."""
    n = torch.arange(cfg.max_context + 1, dtype=torch.float64)
    w = torch.ones_like(n) if cfg.split == "uniform" else 1.0 / (cfg.n_points - n)
    return (w / w.sum()).float()


class PFNLearner(Learner):
    """Each step draws `batch_size` datasets and a context size n, and minimises the NLL of the
    remaining points given the first n. The step's data come from a generator seeded by
    (seed, step), so an interrupted run resumes to the same result."""

    def __init__(self, network: PFNNetwork, bar: BarDistribution | None, prior: DatasetPrior,
                 cfg: Config, seed: int, scaling: ContextScaling | None = None) -> None:
        super().__init__()
        self.network, self.bar, self.prior, self.cfg, self.seed = network, bar, prior, cfg, seed
        self.scaling = scaling
        self.weights = split_weights(cfg)

    def batch(self, step: int) -> tuple[torch.Tensor, ...]:
        """The step's datasets, split at the step's context size. Drawn on the CPU from a
        generator seeded by (seed, step), so every device trains on the same data."""
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + step)
        n = int(torch.multinomial(self.weights, 1, generator=g))
        x, y = self.prior.sample(self.cfg.batch_size, self.cfg.n_points, g)
        return x[:, :n], y[:, :n], x[:, n:], y[:, n:]

    def weighted_batch(self, step: int) -> tuple[torch.Tensor, ...]:
        """Like `batch`, plus per-dataset importance weights (all 1 without oversampling)."""
        if not self.cfg.low_noise_fraction:
            xc, yc, xq, yq = self.batch(step)
            return xc, yc, xq, yq, torch.ones(len(xc))
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + step)
        n = int(torch.multinomial(self.weights, 1, generator=g))
        x, y, w = self.prior.sample_weighted(  # type: ignore[attr-defined]
            self.cfg.batch_size, self.cfg.n_points, self.cfg.low_noise_fraction, g)
        return x[:, :n], y[:, :n], x[:, n:], y[:, n:], w

    def training_loss(self, x: torch.Tensor, y: torch.Tensor, step: Step) -> torch.Tensor:
        device = x.device  # the engine's device (the model, and now the batch, live there)
        xc, yc, xq, yq, w = (t.to(device, non_blocking=True)
                             for t in self.weighted_batch(step.step))
        out, loc, scale = forward(self.network, self.scaling, xc, yc, xq)
        if self.bar is None:
            return query_nll(out, yq, None).mean()
        z = (yq - loc) / scale
        log_scale = torch.log(scale) if isinstance(scale, torch.Tensor) else 0.0
        return ((query_nll(out, z, self.bar) + log_scale).mean(-1) * w).mean()


def query_nll(outputs: torch.Tensor, y: torch.Tensor, bar: BarDistribution | None
              ) -> torch.Tensor:
    """-log q(y) per query: bar density for regression, cross-entropy for classification."""
    if bar is None:
        return nn.functional.cross_entropy(outputs.flatten(0, -2), y.reshape(-1).long(),
                                           reduction="none").reshape(y.shape)
    return bar.nll(outputs, y)


def train(prior: DatasetPrior, cfg: Config, *, seed: int = 0, checkpoint_dir: Path | None = None,
          resume: bool = False, quiet: bool = True) -> tuple[PFN, Any]:
    """Train a PFN on `prior` with the shared engine; returns (model, FitResult). With
    `cfg.accelerator` "cuda" the network, its bar head and every step's batch live on the GPU
    (the batch is drawn on the CPU from the step's seeded generator, so a run is the same data
    on every device); the trained model comes back on the CPU."""
    check_accelerator(cfg.accelerator)
    if cfg.low_noise_fraction and not hasattr(prior, "sample_weighted"):
        raise VarbayesError("low_noise_fraction needs a prior with sample_weighted "
                            "(the gp-hyper prior)")
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    scaling = None
    if prior.task == "regression":
        y_raw = prior.y_samples(cfg.border_samples, g)
        if cfg.y_normalize == "context":
            scaling = ContextScaling.from_samples(y_raw)
            y_raw = standardized_query_samples(prior, cfg, scaling, cfg.border_samples, g)
        borders = adaptive_borders(y_raw, cfg.n_buckets)
        bar: BarDistribution | None = BarDistribution(borders, cfg.full_support)
        n_out = cfg.n_buckets
    else:
        bar, n_out = None, int(prior.n_classes or 2)
    network = build_network(cfg, prior.x_dim, n_out, prior.task == "regression")
    learner = PFNLearner(network, bar, prior, cfg, seed, scaling)
    steps = torch.arange(cfg.steps_per_epoch, dtype=torch.float32).unsqueeze(-1)
    engine_cfg = replace(cfg, batch_size=1, val_fraction=0.0, early_stopping=0)
    result = fit(learner, steps, steps.squeeze(-1), engine_cfg, seed=seed,
                 checkpoint_dir=checkpoint_dir, resume=resume, quiet=quiet,
                 description="pfn on prior data")
    learner.cpu()  # prediction, evaluation and saving happen on the CPU
    network.eval()
    return PFN(network, bar, prior, cfg, scaling), result


def standardized_query_samples(prior: DatasetPrior, cfg: Config, scaling: ContextScaling,
                               n: int, generator: torch.Generator) -> torch.Tensor:
    """About n query targets in the network's units, (y - loc) / scale with loc and scale from
    each dataset's context, drawn the way training draws them (context size by the split
    weights), for the bar-distribution borders."""
    weights = split_weights(cfg)
    parts = []
    for size in range(cfg.max_context + 1):
        want = int(math.ceil(n * float(weights[size])))
        if want == 0:
            continue
        n_sets = -(-want // (cfg.n_points - size))
        _, y = prior.sample(n_sets, cfg.n_points, generator)
        loc, scale, _ = scaling(y[:, :size])
        parts.append(((y[:, size:] - loc) / scale).reshape(-1)[:want])
    return torch.cat(parts)


# ---------------------------------------------------------------------------------------------
# the trained model


class PFN:
    """A trained PFN: posterior predictive for any context in one forward pass."""

    def __init__(self, network: PFNNetwork, bar: BarDistribution | None, prior: DatasetPrior,
                 cfg: Config, scaling: ContextScaling | None = None) -> None:
        self.network, self.bar, self.prior, self.cfg = network.eval(), bar, prior, cfg
        self.scaling = scaling

    @property
    def task(self) -> str:
        return self.prior.task

    @torch.no_grad()
    def scaled_outputs(self, x_ctx: torch.Tensor, y_ctx: torch.Tensor, x_query: torch.Tensor,
                       chunk: int = 4096
                       ) -> tuple[torch.Tensor, torch.Tensor | float, torch.Tensor | float]:
        """Raw head outputs (B, m, n_out) and the (loc, scale) mapping the network's units to
        y's; queries are independent, so they are processed in chunks of `chunk`."""
        self.network.eval()
        parts, loc, scale = [], 0.0, 1.0
        for i in range(0, x_query.shape[1], chunk):
            out, loc, scale = forward(self.network, self.scaling, x_ctx, y_ctx,
                                      x_query[:, i:i + chunk])
            parts.append(out)
        if not parts:  # no queries
            out, loc, scale = forward(self.network, self.scaling, x_ctx, y_ctx, x_query)
            parts.append(out)
        return torch.cat(parts, dim=1), loc, scale

    def outputs(self, x_ctx: torch.Tensor, y_ctx: torch.Tensor, x_query: torch.Tensor,
                chunk: int = 4096) -> torch.Tensor:
        """Raw head outputs (B, m, n_out) (bar logits in the network's standardised units)."""
        return self.scaled_outputs(x_ctx, y_ctx, x_query, chunk)[0]

    def predictive(self, x_ctx: torch.Tensor, y_ctx: torch.Tensor, x_query: torch.Tensor
                   ) -> BarPredictive:
        """Batched regression predictive (in y's units) for (B, n, d) contexts and (B, m, d)
        queries."""
        if self.bar is None:
            raise VarbayesError("this PFN is a classifier; use predict_proba")
        return BarPredictive(self.bar, *self.scaled_outputs(x_ctx, y_ctx, x_query))

    def predict_proba(self, x_ctx: torch.Tensor, y_ctx: torch.Tensor, x_query: torch.Tensor
                      ) -> torch.Tensor:
        """Class probabilities (B, m, C) for a classification prior."""
        if self.bar is not None:
            raise VarbayesError("this PFN is a regressor; use predictive")
        return torch.softmax(self.outputs(x_ctx, y_ctx, x_query), dim=-1)

    def save(self, directory: str | Path) -> None:
        """model.safetensors (network and borders) plus model.json (how to rebuild it)."""
        from varbayes.io import save_tensors

        directory = Path(directory)
        tensors = {f"network.{k}": v for k, v in self.network.state_dict().items()}
        if self.bar is not None:
            tensors["bar.borders"] = self.bar.borders
        save_tensors(directory / "model.safetensors", tensors)
        atomic_write_json(directory / "model.json", {
            "format": FORMAT, "method": "pfn", "task": self.task, "config": self.cfg.to_dict(),
            "prior": self.prior.describe(), "x_dim": self.prior.x_dim,
            "full_support": None if self.bar is None else self.bar.full_support,
            "y_scaling": None if self.scaling is None else self.scaling.describe()})

    def predict(self, x: Any) -> Any:
        """Prior predictive (no context): (mean, quantiles) at 5/50/95 % for regression."""
        return PFNRegressor(self).predict(x)


def load_model(meta: dict[str, Any], tensors: dict[str, torch.Tensor]) -> PFNRegressor:
    """Rebuild a saved PFN as an (unfitted) `PFNRegressor` (or the `PFN` for classifiers)."""
    values = dict(meta["config"])
    values.setdefault("y_normalize", "none")  # saved before standardisation existed
    cfg = Config.from_values(values)
    prior = build_prior(meta["prior"])
    scaling = None
    if cfg.y_normalize == "context" and meta["task"] == "regression":
        stats = meta.get("y_scaling")
        if not stats:
            raise VarbayesError("model.json has y_normalize=context but no y_scaling "
                                "statistics; the saved model is incomplete")
        scaling = ContextScaling(stats["mean"], stats["std"], stats.get("pseudo", 1.0))
    bar = None
    if meta["task"] == "regression":
        bar = BarDistribution(tensors["bar.borders"], bool(meta.get("full_support", True)))
    n_out = cfg.n_buckets if bar is not None else int(prior.n_classes or 2)
    network = build_network(cfg, int(meta["x_dim"]), n_out, bar is not None)
    restore_network(network, {k[8:]: v for k, v in tensors.items() if k.startswith("network.")})
    model = PFN(network, bar, prior, cfg, scaling)
    return PFNRegressor(model) if bar is not None else model  # type: ignore[return-value]


# ---------------------------------------------------------------------------------------------
# the sklearn-style estimator


class PFNPrediction(NamedTuple):
    mean: np.ndarray        # (N,)
    quantiles: np.ndarray   # (N, Q) at PFNRegressor.quantiles


class PFNRegressor:
    """A trained regression PFN used like any regressor: `fit(X, y)` stores the context (no
    training happens), `predict(X)` returns the posterior-predictive mean and quantiles,
    `predict_distribution(X)` the full bar distribution per point.

    X must lie in the prior's input domain (for the GP priors [0, 1]^d); with
    `normalize_y=True` the context targets are standardised before the forward pass and the
    predictive is mapped back (densities included), otherwise y is used in the prior's units.
    Before `fit`, predictions are the prior predictive (an empty context).

    A context longer than the model's training contexts (`cfg.max_context`) is refused: the
    transformer runs on it (no positional encoding), but out of its training distribution,
    where PFNs extrapolate poorly (the spec's pitfall: evaluate at context sizes seen in
    training), so its predictive would be silently unreliable. `allow_long_context=True`
    accepts it with a warning instead.
    """

    def __init__(self, model: PFN | str | Path, quantiles: tuple[float, ...] = (0.05, 0.5, 0.95),
                 normalize_y: bool = False, allow_long_context: bool = False) -> None:
        if isinstance(model, (str, Path)):
            from varbayes.models import load

            model = load(model)
            model = model.model if isinstance(model, PFNRegressor) else model
        if not isinstance(model, PFN) or model.bar is None:
            raise VarbayesError("PFNRegressor needs a regression PFN (or its saved folder)")
        if not all(0 < q < 1 for q in quantiles):
            raise VarbayesError(f"quantile levels must lie in (0, 1); got {quantiles}")
        self.model, self.quantiles, self.normalize_y = model, tuple(quantiles), normalize_y
        self.allow_long_context = allow_long_context
        d = model.prior.x_dim
        self.x_ctx = torch.zeros(0, d)
        self.y_ctx = torch.zeros(0)
        self.loc, self.scale = 0.0, 1.0

    @classmethod
    def pretrain(cls, cfg: Config | None = None, prior: DatasetPrior | None = None,
                 seed: int = 0, quiet: bool = True, **kwargs: Any) -> PFNRegressor:
        """Train a PFN on `prior` (default: the Config's GP prior) and wrap it."""
        cfg = cfg or Config()
        model, _ = train(prior or make_prior("gp", cfg), cfg, seed=seed, quiet=quiet)
        return cls(model, **kwargs)

    def fit(self, X: Any, y: Any) -> PFNRegressor:
        """Store (X, y) as the context; checks shapes, finiteness, the input domain and the
        context length (at most the training contexts' `max_context`; see the class doc)."""
        x = self._check_x(X, "X")
        yt = _as_tensor(y, "y")
        if yt.dim() == 2 and yt.shape[1] == 1:
            yt = yt[:, 0]
        if yt.dim() != 1 or len(yt) != len(x):
            raise VarbayesError(f"y must have shape ({len(x)},) to match X; got "
                                f"{tuple(yt.shape)}")
        most = self.model.cfg.max_context
        if len(x) > most and not self.allow_long_context:
            raise VarbayesError(f"context of {len(x)} points exceeds the {most} this PFN was "
                                f"trained with (max_context); valid: at most {most} points, or "
                                "allow_long_context=True to run out of its training range")
        if len(x) > most:
            warnings.warn(f"context of {len(x)} points exceeds the {most} this PFN was trained "
                          "with; PFNs extrapolate poorly to longer contexts", stacklevel=2)
        if self.normalize_y and len(yt) > 1:
            self.loc, self.scale = float(yt.mean()), float(yt.std().clamp_min(1e-8))
        else:
            self.loc, self.scale = 0.0, 1.0
        self.x_ctx, self.y_ctx = x, (yt - self.loc) / self.scale
        return self

    def predict_distribution(self, X: Any) -> BarPredictive:
        """The predictive distribution at every row of X (in y's units)."""
        xq = self._check_x(X, "X")
        logits, loc, scale = self.model.scaled_outputs(self.x_ctx[None], self.y_ctx[None],
                                                       xq[None])
        if isinstance(loc, torch.Tensor):
            loc, scale = float(loc), float(scale)  # one dataset
        return BarPredictive(self.model.bar, logits[0], self.loc + self.scale * loc,  # type: ignore[arg-type]
                             self.scale * scale)

    def predict(self, X: Any) -> PFNPrediction:
        """(mean (N,), quantiles (N, Q) at `self.quantiles`) as NumPy arrays."""
        dist = self.predict_distribution(X)
        return PFNPrediction(dist.mean.numpy(), dist.quantile(list(self.quantiles)).numpy())

    def save(self, directory: str | Path) -> None:
        self.model.save(directory)

    def _check_x(self, X: Any, name: str) -> torch.Tensor:
        x = _as_tensor(X, name)
        if x.dim() == 1 and self.model.prior.x_dim == 1:
            x = x[:, None]
        if x.dim() != 2:
            raise VarbayesError(f"{name} must be a 2-D array (n, {self.model.prior.x_dim}); "
                                f"got shape {tuple(x.shape)}")
        self.model.prior.check_x(x, name)
        return x


def _as_tensor(a: Any, name: str) -> torch.Tensor:
    try:
        t = torch.as_tensor(np.asarray(a, dtype=np.float32) if not isinstance(a, torch.Tensor)
                            else a.float())
    except (TypeError, ValueError):
        raise VarbayesError(f"{name} must be numeric") from None
    if not bool(torch.isfinite(t).all()):
        raise VarbayesError(f"{name} contains NaN or Inf values; remove or impute them")
    return t


# ---------------------------------------------------------------------------------------------
# evaluation against the exact GP


@torch.no_grad()
def gp_gap_table(model: PFN, prior: GPPrior, context_sizes: tuple[int, ...], n_datasets: int,
                 n_queries: int, seed: int = 123, chunk: int = 250
                 ) -> list[dict[str, float]]:
    """Per context size: mean NLL of the PFN, of the exact GP predictive (float64), of the
    prior-only predictive, and of the exact predictive projected onto the buckets (the
    discretisation floor); gaps are per query point, averaged over datasets."""
    assert model.bar is not None
    g = torch.Generator().manual_seed(seed)
    bar64 = copy.deepcopy(model.bar).double()
    rows = []
    for n in context_sizes:
        sums = {"pfn": 0.0, "gp": 0.0, "prior": 0.0, "floor": 0.0, "sq_err": 0.0}
        count = 0
        for start in range(0, n_datasets, chunk):
            b = min(chunk, n_datasets - start)
            x, y = prior.sample(b, n + n_queries, g)
            xc, yc, xq, yq = x[:, :n], y[:, :n], x[:, n:], y[:, n:]
            pred = model.predictive(xc, yc, xq)
            mean, var = prior.predictive(xc, yc, xq)
            yq64 = yq.double()
            gp_nll = 0.5 * (torch.log(2 * math.pi * var) + (yq64 - mean) ** 2 / var)
            pv = prior.outputscale + prior.noise
            prior_nll = 0.5 * (math.log(2 * math.pi * pv) + yq64**2 / pv)
            # the exact predictive projected onto the buckets, in the network's units
            loc = torch.as_tensor(pred.loc, dtype=torch.float64)
            scale = torch.as_tensor(pred.scale, dtype=torch.float64)
            floor_nll = bar64.nll(bar64.logits_from_normal((mean - loc) / scale,
                                                           var.sqrt() / scale),
                                  (yq64 - loc) / scale) + torch.log(scale)
            sums["pfn"] += float(-pred.log_prob(yq).double().sum())
            sums["gp"] += float(gp_nll.sum())
            sums["prior"] += float(prior_nll.sum())
            sums["floor"] += float(floor_nll.sum())
            sums["sq_err"] += float(((pred.mean.double() - yq64) ** 2).sum())
            count += yq.numel()
        r = {k: v / count for k, v in sums.items()}
        rows.append({"n": n, "nll_pfn": r["pfn"], "nll_gp": r["gp"], "nll_prior": r["prior"],
                     "gap": r["pfn"] - r["gp"], "floor": r["floor"] - r["gp"],
                     "prior_gap": r["prior"] - r["gp"], "rmse_pfn": math.sqrt(r["sq_err"])})
    return rows


# ---------------------------------------------------------------------------------------------
# run and reproduce


def run(cfg: Config, ctx: RunContext) -> RunOutput:
    """Train a PFN on the chosen prior and evaluate it on fresh datasets from the same prior
    (against the exact GP predictive where the prior is a fixed-hyperparameter GP)."""
    prior = make_prior(ctx.dataset, cfg)
    model, result = train(prior, cfg, seed=ctx.seed, checkpoint_dir=ctx.checkpoint_dir,
                          resume=ctx.resume, quiet=ctx.quiet)
    metrics: dict[str, float] = {"train_seconds": round(result.train_seconds, 3),
                                 "params_total": sum(p.numel() for p in
                                                     model.network.parameters())}
    details: dict[str, Any] = {"history": result.history, "steps": result.steps}
    figures = {}
    sizes = tuple(n for n in (0, 1, 2, 5, 10, 20) if n <= cfg.max_context)
    if isinstance(prior, GPPrior):
        rows = gp_gap_table(model, prior, sizes, cfg.eval_datasets, cfg.eval_queries,
                            seed=ctx.seed + 1000)
        mid = [r for r in rows if r["n"] in (5, 10, 20)] or rows
        metrics.update({
            "nll": float(np.mean([r["nll_pfn"] for r in rows])),
            "nll_exact_gp": float(np.mean([r["nll_gp"] for r in rows])),
            "nll_gap_5_10_20": float(np.mean([r["gap"] for r in mid])),
            "discretisation_floor": float(np.mean([r["floor"] for r in mid])),
            "rmse": float(np.mean([r["rmse_pfn"] for r in rows]))})
        details["by_context_size"] = rows
        figures["bands_vs_exact_gp"] = bands_figure(model, prior, seed=ctx.seed)
    elif model.bar is not None:
        metrics.update(_heldout_nll(model, prior, sizes, cfg, ctx.seed))
    from varbayes.report.figures import training_curve

    figures["training_curve"] = training_curve(result.history, "pfn on prior data")
    return RunOutput(metrics, model, figures, {"train_seconds": result.train_seconds}, details)


def _heldout_nll(model: PFN, prior: DatasetPrior, sizes: tuple[int, ...], cfg: Config,
                 seed: int) -> dict[str, float]:
    g = torch.Generator().manual_seed(seed + 1000)
    nll, sq = [], []
    for n in sizes:
        x, y = prior.sample(cfg.eval_datasets, n + cfg.eval_queries, g)
        pred = model.predictive(x[:, :n], y[:, :n], x[:, n:])
        nll.append(float(-pred.log_prob(y[:, n:]).mean()))
        sq.append(float(((pred.mean - y[:, n:]) ** 2).mean()))
    return {"nll": float(np.mean(nll)), "rmse": float(np.sqrt(np.mean(sq)))}


def bands_figure(model: PFN, prior: GPPrior, n_context: int = 8, seed: int = 0) -> Any:
    """PFN predictive mean and 5-95 % band against the exact GP's on one dataset."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    g = torch.Generator().manual_seed(seed + 7)
    x, y = prior.sample(1, n_context, g)
    grid = torch.linspace(0, 1, 200).reshape(1, -1, 1)
    pred = model.predictive(x, y, grid)
    q = pred.quantile([0.05, 0.95])[0]
    mean, var = prior.predictive(x, y, grid)
    sd = var.sqrt()[0].float()
    gx = grid[0, :, 0]
    fig, ax = plt.subplots(figsize=(6, 3.4))
    ax.fill_between(gx, mean[0] - 1.645 * sd, mean[0] + 1.645 * sd, color="C1", alpha=0.2,
                    label="exact GP 90 %")
    ax.plot(gx, mean[0], c="C1", lw=2, label="exact GP mean")
    ax.plot(gx, q[:, 0], c="C0", ls="--", lw=1)
    ax.plot(gx, q[:, 1], c="C0", ls="--", lw=1, label="PFN 90 %")
    ax.plot(gx, pred.mean[0], c="C0", lw=1.2, label="PFN mean")
    ax.scatter(x[0, :, 0], y[0], c="k", s=14, zorder=3, label="context")
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    ax.set_title(f"PFN vs exact GP posterior predictive ({n_context} context points)")
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    return fig


def reproduce(ctx: ReproduceContext) -> Reproduction:
    """Spec A.5: on the 1-D GP prior (lengthscale 0.3, outputscale 1, noise 0.01) the PFN's
    excess NLL over the exact GP predictive is <= 0.05 nats averaged over context sizes
    5/10/20 and <= 0.10 at each size; the prior-only predictive is >= 0.5 nats worse than the
    GP at n = 10. Quick: a smaller network and 600 steps; pass if the PFN recovers >= 50 % of
    the GP's improvement over the prior-only predictive at n = 10."""
    from varbayes.report import markdown_table

    # y in the prior's units: the fixed-hyperparameter GP has one y scale, and the documented
    # full table was measured this way (standardisation is for priors over scales)
    if ctx.quick:
        cfg = Config(epochs=6, d_model=64, d_ff=128, n_layers=2, warmup_steps=50,
                     y_normalize="none")
        n_eval = 300
    else:
        cfg = Config(y_normalize="none")
        n_eval = 2000
    prior = make_prior("gp", cfg)
    sizes = (0, 1, 2, 5, 10, 20)
    with ctx.step(f"training ({cfg.epochs * cfg.steps_per_epoch} steps)"):
        start = time.perf_counter()
        model, result = train(prior, cfg, seed=0, quiet=ctx.quiet)
        train_seconds = time.perf_counter() - start
    with ctx.step(f"evaluating on {n_eval} datasets per context size"):
        rows = gp_gap_table(model, prior, sizes, n_eval, 50)
    by_n = {r["n"]: r for r in rows}
    mid = [by_n[n] for n in (5, 10, 20)]
    avg_gap = float(np.mean([r["gap"] for r in mid]))
    floor = float(np.mean([r["floor"] for r in mid]))
    prior_gap10 = by_n[10]["prior_gap"]
    claims = []
    if ctx.quick:
        recovered = 1 - by_n[10]["gap"] / prior_gap10
        claims.append(at_least("quick: fraction of the GP's NLL gain over prior-only "
                               "recovered at n=10", recovered, 0.5, baseline=0.0))
    else:
        claims.append(at_most("excess NLL over exact GP, mean over n=5/10/20 (nats)", avg_gap,
                              0.05, baseline=float(np.mean([r["prior_gap"] for r in mid]))))
        worst = max(r["gap"] for r in rows)
        claims.append(at_most("excess NLL over exact GP, worst n in {0,1,2,5,10,20}", worst,
                              0.10))
    claims.append(at_least("prior-only predictive minus exact GP NLL at n=10 (task sanity)",
                           prior_gap10, 0.5))
    claims.append(holds(f"discretisation floor ({cfg.n_buckets} buckets) < half the 0.05 "
                        "budget", floor < 0.025, floor, "< 0.025"))
    table = markdown_table(
        ["context n", "NLL PFN", "NLL exact GP", "NLL prior-only", "gap PFN-GP",
         "floor (projected GP)", "gap above floor"],
        [(r["n"], r["nll_pfn"], r["nll_gp"], r["nll_prior"], r["gap"], r["floor"],
          r["gap"] - r["floor"]) for r in rows])
    notes = [
        f"Trained {result.steps} steps in {train_seconds:.0f} s (d_model {cfg.d_model}, "
        f"{cfg.n_layers} layers, {cfg.n_buckets} adaptive buckets with half-normal tails); "
        f"evaluated on {n_eval} fresh datasets per context size with 50 queries each.",
        "Gap = mean over query points of NLL_PFN - NLL_exact-GP, an estimate of "
        "E[KL(PPD || q)]. Floor = the same gap for the exact predictive projected onto the "
        "buckets (bucket mass / width), the best any network with these borders can do.",
    ]
    return Reproduction(claims, {"bands_vs_exact_gp": bands_figure(model, prior)},
                        {"Excess NLL by context size": table},
                        {"rows": rows, "train_seconds": train_seconds, "config": cfg.to_dict()},
                        notes)
