"""`turbo-vbi`: structured Bayesian compression with a three-layer hierarchical prior and the
Turbo-VBI algorithm (Xia, Tsang, Lau, IEEE TSP 2023; arXiv 2302.10483).

The dataset's default MLP gets mean-field Gaussian weights (Bayes by Backprop with the local
reparameterisation trick, the `mfvi` learner). Every weight matrix carries the hierarchical
prior of `turbo_prior` (grid Markov support, Gamma precisions, Gaussian weights). Training
alternates, every `round_every` epochs, Module A (the BBB epochs against N(0, 1/E[tau]) plus
the closed-form q(tau), q(s) updates) and Module B (loopy sum-product on each support grid).
Afterwards weights with q(s = 1) < `prune_threshold` are removed, the survivors are
optionally fine-tuned, and the structure is reported: weights kept, whole neurons removed,
contiguous blocks, and the physically smaller dense network obtained by dropping removed
neurons, with its measured prediction speed-up.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from varbayes.config import setting
from varbayes.data import Dataset
from varbayes.errors import VarbayesError
from varbayes.evaluation import evaluate
from varbayes.infer.elbo import elbo_loss
from varbayes.method import ReproduceContext, Reproduction, RunContext, RunOutput
from varbayes.methods.bnn.mfvi import (
    VariationalLearner,
    bayesian_model,
    posterior_mean_metrics,
)
from varbayes.methods.bnn.turbo_prior import (
    PriorSettings,
    SupportPrior,
    network_module_b,
    units_on,
)
from varbayes.methods.supervised import dataset_network_spec, load_network, model_meta
from varbayes.metrics import classification_metrics, layer_macs, structure_report, train_flops
from varbayes.metrics.cost import as_dense, count_parameters
from varbayes.metrics.timing import median_times
from varbayes.models import SupervisedModel, restore_network
from varbayes.nn.bayesianize import BayesSettings, bayesianize
from varbayes.nn.compact import compact_mlp
from varbayes.nn.heads import nll_per_example, predictive_from_samples
from varbayes.nn.meanfield import (
    MeanFieldConv1d,
    MeanFieldConv2d,
    MeanFieldLayer,
    MeanFieldLinear,
    bayesian_layers,
    kl_divergence,
)
from varbayes.nn.networks import build_network
from varbayes.nn.predictive import mc_sampler
from varbayes.nn.priors import GaussianPrior
from varbayes.report.figures import training_curve
from varbayes.train import Step, TrainConfig, fit, kl_warmup
from varbayes.train.denormals import flush_denormals

DATASETS = ("mnist1d", "digits")
CONVS = (nn.Conv1d, nn.Conv2d)  # the conv layers a user's network may have (groups=1)
POOLS = (nn.MaxPool1d, nn.MaxPool2d, nn.AvgPool1d, nn.AvgPool2d)
SPEED_ROWS = 4096  # prediction timing: the test inputs repeated to this many rows


@dataclass
class Config(TrainConfig):
    """Turbo-VBI settings: the BBB learner, the hierarchical prior, the turbo schedule,
    pruning and fine-tuning."""

    epochs: int = setting(40, help="epochs of the turbo phase (BBB + Module A/B rounds)", ge=1)
    round_every: int = setting(5, help="run Module A's closed forms and Module B every this "
                               "many epochs", ge=1)
    first_round: int = setting(5, help="epoch after which the first round runs", ge=1)
    module_a_iterations: int = setting(2, help="q(tau)/q(s) fixed-point passes per round",
                                       ge=1)
    prune_threshold: float = setting(0.5, help="remove weights with q(s = 1) below this",
                                     gt=0, lt=1)
    finetune_epochs: int = setting(50, help="epochs of masked BBB after pruning (0: none)",
                                   ge=0)
    init_sigma: float = setting(1e-3, help="initial posterior std sigma0", gt=0)
    kl_weight: float = setting(0.01, help="beta: KL weight (1 = the ELBO; see the docs "
                              "for why 0.01)", gt=0)
    turbo_kl_weight: float | None = setting(
        None, help="beta of the turbo phase only (BBB + Module A/B rounds); fine-tuning keeps "
        "kl_weight. A smaller one weakens the hierarchical prior's shrinkage of the weights "
        "it keeps (none: kl_weight; experimental, see the docs' turbo-phase beta study)", gt=0)
    kl_warmup: float = setting(0.0, help="KL warm-up over this fraction of the turbo phase",
                               ge=0, le=1)
    rho_lr_scale: float = setting(10.0, help="learning rate of rho relative to lr", gt=0)
    eval_samples: int = setting(30, help="weight draws S of the MC predictive", ge=1)
    val_samples: int = setting(10, help="weight draws for the validation NLL", ge=1)
    active_shape: float = setting(1.0, help="Gamma shape a of an active weight's precision",
                                  gt=0)
    inactive_shape: float = setting(5.0, help="Gamma shape a_bar of an inactive weight's "
                                    "precision", gt=0)
    slab_scale: float = setting(3.0, help="active prior std in units of the layer's RMS "
                                "weight at the first round (selected on validation)", gt=0)
    spike_ratio: float = setting(10.0, help="inactive / active prior mean precision", gt=1)
    spike_growth: float = setting(10.0, help="multiply the inactive prior precision by this "
                                  "at every round after the first, so weights judged inactive "
                                  "shrink to 0 before pruning (1: off; selected on validation)",
                                  ge=1)
    row_p01: float = setting(0.2, help="support chain along a neuron's incoming weights: "
                             "P(active | previous inactive)", gt=0, lt=1)
    row_p11: float = setting(0.5, help="... P(active | previous active)", gt=0, lt=1)
    col_p01: float = setting(0.2, help="support chain along an input's outgoing weights: "
                             "P(active | previous inactive)", gt=0, lt=1)
    col_p11: float = setting(0.5, help="... P(active | previous active)", gt=0, lt=1)
    p_start: float | None = setting(None, help="start factor P(s = 1) on the first row and "
                                    "column (none: no start factor)", gt=0, lt=1)
    calibration: Literal["layer", "global"] = setting(
        "layer", help="Gamma rates from each layer's mean E[w^2] or from all layers' together")
    init_pi: float = setting(0.5, help="initial q(s = 1) and prior pi", gt=0, lt=1)
    tau_update: Literal["textbook", "demo"] = setting(
        "textbook", help="q(tau) update: textbook (+1/2, E[w^2]/2) or the demo's (+1, E[w^2])")
    bp_sweeps: int = setting(10, help="loopy BP sweeps per Module B call", ge=1)
    bp_damping: float = setting(0.5, help="loopy BP damping", ge=0, lt=1)
    support_model: Literal["neuron", "grid"] = setting(
        "neuron", help="Module B's support field: neuron (the grid plus a support variable "
        "per hidden unit tied to its incoming and outgoing weights) or grid (chains only)")
    neuron_prior: float = setting(0.5, help="P(z = 1): prior that a hidden unit is on",
                                  gt=0, lt=1)
    neuron_ratio: float = setting(4.0, help="P(s = 1 | unit on) = this x the current mean "
                                  "q(s = 1) of the hidden layer's adjacent weights (<= 0.5)",
                                  gt=0)
    neuron_contrast: float = setting(100.0, help="P(s = 1 | unit on) / P(s = 1 | unit off)",
                                     gt=1)
    neuron_iterations: int = setting(3, help="unit-message rounds per Module B call", ge=1)
    evidence_cap: float | None = setting(None, help="clip Module A's support evidence to "
                                         "+- this many nats, so the chains and units can "
                                         "overrule single weights (none: no clipping; "
                                         "experimental, see the docs' blocks study)", gt=0)
    neuron_on: float | None = setting(None, help="absolute P(s = 1 | unit on), replacing "
                                      "neuron_ratio x the mean q(s); P(s = 1 | unit off) = "
                                      "this / neuron_contrast (none: the ratio model; "
                                      "experimental, see the docs' dense-units study)",
                                      gt=0, lt=1)
    evidence_floor: float | None = setting(None, help="clip Module A's support evidence "
                                           "from below at - this many nats only, so a live "
                                           "unit can pull its weak weights on (none: no "
                                           "clipping; experimental, see the docs' dense-units "
                                           "study)", gt=0)
    unit_keeps_weights: bool = setting(False, help="neuron model: at pruning every weight "
                                       "between live hidden units is kept (s = z), with the "
                                       "slab's precision prior for fine-tuning, so the "
                                       "surviving units are dense; experimental, see the "
                                       "docs' dense-units study")
    unit_keeps_inputs: bool = setting(True, help="with unit_keeps_weights: keep the weights "
                                      "from the network's inputs into live units too (false: "
                                      "they keep their own support, so a unit still selects "
                                      "its input features)")
    best_epoch: bool = setting(False, help="end fine-tuning at its epoch with the best "
                               "validation accuracy (ties: lower validation NLL) instead of "
                               "the last one (needs a validation split; the full reproduction "
                               "gives every contender's last training phase the same rule)")
    speed_repeats: int = setting(30, help="interleaved repeats of the prediction timing",
                                 ge=1)

    def prior_settings(self) -> PriorSettings:
        names = {f.name for f in dataclasses.fields(PriorSettings)}
        return PriorSettings(**{k: v for k, v in self.to_dict().items() if k in names})

    def phase(self, which: Literal["turbo", "finetune"]) -> TrainConfig:
        """The engine settings of one of the two training phases."""
        names = {f.name for f in dataclasses.fields(TrainConfig)}
        base = {k: v for k, v in self.to_dict().items() if k in names}
        if which == "finetune":
            base["epochs"] = self.finetune_epochs
            if self.best_epoch:  # patience = every epoch: never stops, restores the best
                base["early_stopping"] = self.finetune_epochs
        return TrainConfig(**base)


class TurboLearner(VariationalLearner):
    """BBB with a per-weight prior N(0, 1/E[tau]) from the hierarchical prior, whose Module A
    closed forms and Module B run every `round_every` epochs (`turbo=False`: fine-tuning,
    the prior frozen)."""

    def __init__(self, network: nn.Module, task: str, cfg: Config) -> None:
        super().__init__(network, task, cfg.kl_weight, cfg.kl_warmup, cfg.rho_lr_scale,
                         cfg.val_samples)
        self.layers = [m for m in bayesian_layers(network)]
        for m in self.layers:
            if not isinstance(m, (MeanFieldLinear, MeanFieldConv1d, MeanFieldConv2d)) or \
                    getattr(m, "groups", 1) != 1:
                raise VarbayesError("turbo-vbi supports Linear, Conv1d and Conv2d layers "
                                    "(groups=1) only")
        settings = cfg.prior_settings()
        # a conv kernel's prior lives on its (out_channels, in_channels * kernel) grid
        self.priors = nn.ModuleList(SupportPrior(_grid(m.weight_mu).shape, settings)
                                    for m in self.layers)
        self.cfg = cfg
        self.turbo = True
        self.rounds: list[dict[str, float]] = []
        self.units: list[torch.Tensor] = []  # hidden units' log-odds of z = 1 (neuron model)

    def training_loss(self, x: torch.Tensor, y: torch.Tensor, step: Step) -> torch.Tensor:
        nll = nll_per_example(self.network(x), y, self.task)
        w = kl_warmup(step.epoch, step.epochs, self.warmup) if self.turbo else 1.0
        return elbo_loss(nll, kl_divergence(self.network), step.n_train, self.beta(), w)

    def beta(self) -> float:
        """The KL weight of the current phase: `turbo_kl_weight` (if set) in the turbo phase,
        `kl_weight` in fine-tuning."""
        if self.turbo and self.cfg.turbo_kl_weight is not None:
            return self.cfg.turbo_kl_weight
        return self.kl_weight

    def after_optimizer_step(self, step: Step, optimizer: torch.optim.Optimizer) -> None:
        super().after_optimizer_step(step, optimizer)
        end_of_epoch = step.step % step.steps_per_epoch == 0
        due = step.epoch >= self.cfg.first_round and (
            (step.epoch - self.cfg.first_round) % self.cfg.round_every == 0)
        if self.turbo and end_of_epoch and due:
            self.refresh_prior(epoch=step.epoch)

    @torch.no_grad()
    def refresh_prior(self, module_b: bool = True, epoch: int = 0) -> None:
        """One turbo round: Module A's closed forms from the current q(w), then Module B,
        then q(tau) again so E[tau] reflects the new support; the layers' priors become
        N(0, 1/E[tau]). Until the first round (a burn-in of `first_round` epochs) the layers
        keep the N(0, 1) prior of plain BBB; the first round calibrates the Gamma rates."""
        change, active = 0.0, 0
        pooled = torch.cat([(m.weight_mu**2 + m.weight_sigma()**2).flatten()
                            for m in self.layers])
        before = [p.prior_logit.clone() for p in self.priors]
        for layer, prior in zip(self.layers, self.priors):
            mean, sigma = _grid(layer.weight_mu), _grid(layer.weight_sigma())
            if not bool(prior.calibrated):
                prior.calibrate(mean**2 + sigma**2 if self.cfg.calibration == "layer" else pooled)
            elif self.cfg.spike_growth > 1:
                prior.sharpen(self.cfg.spike_growth)
            prior.module_a(mean, sigma, self.cfg.module_a_iterations)
        if module_b:
            if self.cfg.support_model == "neuron" and len(self.priors) > 1:
                self.units = network_module_b(list(self.priors), self.cfg.prior_settings())
            else:
                for prior in self.priors:
                    prior.module_b()
        for layer, prior, old in zip(self.layers, self.priors, before):
            if module_b:
                mean, sigma = _grid(layer.weight_mu), _grid(layer.weight_sigma())
                prior.update_tau(mean.double() ** 2 + sigma.double() ** 2)
            layer.set_prior_precision(
                prior.expected_precision.float().reshape(layer.weight_mu.shape))
            change = max(change, float((torch.sigmoid(prior.prior_logit)
                                        - torch.sigmoid(old)).abs().max()))
            active += int((prior.support >= self.cfg.prune_threshold).sum())
        if module_b:
            total = sum(p.post_logit.numel() for p in self.priors)
            units_on = sum(int((z > 0).sum()) for z in self.units) if self.units else None
            self.rounds.append({"epoch": epoch, "max_prior_change": change,
                                "density": active / total, "units_on": units_on})

    def masks(self) -> list[torch.Tensor]:
        """Which weights survive pruning (weight-shaped): q(s = 1) >= prune_threshold, and
        (neuron model) only between units (channels) whose q(z = 1) >= prune_threshold."""
        masks = [p.support >= self.cfg.prune_threshold for p in self.priors]
        if self._units_keep():
            kept = units_on(list(self.priors))
            if not self.cfg.unit_keeps_inputs:
                kept[0] = torch.zeros_like(kept[0])
            masks = [m | (k >= self.cfg.prune_threshold) for m, k in zip(masks, kept)]
        cut = math.log(self.cfg.prune_threshold / (1 - self.cfg.prune_threshold))
        for k, prior in enumerate(self.priors[:-1]):
            off = prior.unit_logit < cut
            masks[k][off, :] = False
            group = masks[k + 1].shape[1] // len(off)  # columns per unit (kernel, positions)
            masks[k + 1][:, off.repeat_interleave(group)] = False
        return [m.reshape(layer.weight_mu.shape) for m, layer in zip(masks, self.layers)]

    def _units_keep(self) -> bool:
        """Whether pruning keeps every weight between live units (`unit_keeps_weights`)."""
        return (self.cfg.unit_keeps_weights and self.cfg.support_model == "neuron"
                and len(self.priors) > 1)

    def prune(self) -> None:
        """Remove the weights whose support posterior is below the threshold; fine-tuning
        then keeps the prior fixed."""
        masks = self.masks()
        for layer, mask in zip(self.layers, masks):
            layer.set_mask(mask)
        if self._units_keep():  # the weights kept for their units lose the spike's pull
            with torch.no_grad():
                for layer, prior, mask in zip(self.layers, self.priors, masks):
                    prior.kept = _grid(mask).to(prior.post_logit.dtype)
                    mean, sigma = _grid(layer.weight_mu), _grid(layer.weight_sigma())
                    prior.update_tau(mean.double() ** 2 + sigma.double() ** 2)
                    layer.set_prior_precision(
                        prior.expected_precision.float().reshape(layer.weight_mu.shape))
        self.turbo = False
        widths = structure_report(masks)["compact_widths"][1:-1]
        for k, width in enumerate(widths):
            if width == 0:
                warnings.warn(f"Turbo-VBI left no unit in hidden layer {k + 1} (each lost all "
                              "its incoming or all its outgoing weights), so the network now "
                              "predicts a constant; lower slab_scale or spike_growth, or train "
                              "longer before the first round", stacklevel=2)


def _grid(weight: torch.Tensor) -> torch.Tensor:
    """A weight as the prior's 2-D grid: (out, in) for linear, (out_channels, in_channels x
    kernel) for conv, so a row holds one output unit's (channel's) incoming weights."""
    return weight.reshape(weight.shape[0], -1)


def build(cfg: Config, ds: Dataset) -> tuple[TurboLearner, dict[str, Any]]:
    """The bayesianized default MLP of `ds` with its hierarchical prior."""
    spec = dataset_network_spec(ds, "mlp")
    settings = BayesSettings(GaussianPrior(0.0, 1.0), cfg.init_sigma)
    network = bayesianize(build_network(spec), **settings.to_dict())
    return TurboLearner(network, ds.task, cfg), {"network": spec, "bayes": settings.to_dict()}


def run(cfg: Config, ctx: RunContext) -> RunOutput:
    """Turbo phase, pruning, fine-tuning, then accuracy, structure and the compact model."""
    ds = ctx.load_data()
    torch.manual_seed(ctx.seed)
    learner, spec = build(cfg, ds)
    trained = train(learner, ds, cfg, ctx)
    meta = model_meta(ctx.method, ds, spec["network"], cfg, bayes=spec["bayes"],
                      eval_noise="weights")
    model = bayesian_model(learner.network, meta, _mfvi_like(cfg))
    metrics, figures = evaluate(model, ds, trained["fabric"])
    metrics.update(posterior_mean_metrics(learner, model, ds, trained["fabric"]))
    structure = structure_metrics(learner.network, ds, cfg.speed_repeats)
    metrics.update(structure.pop("metrics"))
    metrics.update(turbo_cost(learner, ds, cfg, trained))
    figures["support"] = support_figure({"Turbo-VBI": learner.masks()}, ds.name)
    figures["training_curve"] = training_curve(trained["history"], f"turbo-vbi on {ds.name}")
    details = {"rounds": learner.rounds, "history": trained["history"],
               "structure": structure["report"], "compact_widths": structure["widths"],
               "n_train": ds.n_train, "n_test": ds.n_test}
    notes = ["Prediction speed: median of interleaved repeats of the posterior-mean network "
             "with the original dense shapes against the compacted one, on the test inputs."]
    return RunOutput(metrics, model, figures, {"train_seconds": trained["seconds"]}, details,
                     notes)


def train(learner: TurboLearner, ds: Dataset, cfg: Config, ctx: RunContext) -> dict[str, Any]:
    """Both phases with the engine (validation split as configured; checkpoints per phase)."""
    if cfg.val_fraction > 0:
        fit_part, val = ds.validation_split(cfg.val_fraction, seed=ctx.seed)
        x_val, y_val = val.x_test, val.y_test
    else:
        fit_part, x_val, y_val = ds, None, None
    return train_arrays(learner, fit_part.x_train, fit_part.y_train, cfg, seed=ctx.seed,
                        x_val=x_val, y_val=y_val, checkpoint_dir=ctx.checkpoint_dir,
                        resume=ctx.resume, quiet=ctx.quiet, name=ds.name)


@flush_denormals()  # weights pulled towards zero: denormals slow CPUs a lot
def train_arrays(learner: TurboLearner, x: torch.Tensor, y: torch.Tensor, cfg: Config, *,
                 seed: int = 0, x_val: torch.Tensor | None = None,
                 y_val: torch.Tensor | None = None, checkpoint_dir: Path | None = None,
                 resume: bool = False, quiet: bool = True, name: str = "data") -> dict[str, Any]:
    """The turbo phase, pruning, then (if `finetune_epochs`) masked fine-tuning, on (x, y)."""
    common = {"seed": seed, "x_val": x_val, "y_val": y_val, "resume": resume, "quiet": quiet}
    ckpt = (lambda phase: None) if checkpoint_dir is None else (
        lambda phase: Path(checkpoint_dir) / phase)
    first = fit(learner, x, y, cfg.phase("turbo"), checkpoint_dir=ckpt("turbo"),
                description=f"turbo-vbi on {name}", **common)
    learner.prune()
    history, seconds, fabric, ft_steps = list(first.history), first.train_seconds, first.fabric, 0
    if cfg.finetune_epochs:
        if cfg.best_epoch:
            select_by_accuracy(learner)
        second = fit(learner, x, y, cfg.phase("finetune"), checkpoint_dir=ckpt("finetune"),
                     description=f"turbo-vbi fine-tuning on {name}", **common)
        history += [{**h, "epoch": h["epoch"] + cfg.epochs, "phase": "finetune"}
                    for h in second.history]
        seconds += second.train_seconds
        fabric, ft_steps = second.fabric, second.steps
    return {"history": history, "seconds": seconds, "fabric": fabric,
            "turbo_steps": first.steps, "finetune_steps": ft_steps, "n_fit": len(x)}


ACCURACY_FIRST = 1e-3  # NLL's weight in the best-epoch criterion: a tie-break between accuracies


def select_by_accuracy(learner: Any) -> Any:
    """Make the engine's validation criterion (lower is better; its early stopping restores
    the best epoch) the validation error rate of the MC predictive plus 1e-3 x its NLL, so
    the best epoch is the most accurate one and NLL only breaks ties (an accuracy step is
    1/n_val >= 1e-4, NLL differences are < 1). Works for any learner with a Bayesian
    `network` and `val_samples`; returns the learner."""
    def criterion(x: torch.Tensor, y: torch.Tensor) -> float:
        with torch.no_grad():
            samples = mc_sampler("weights")(learner.network, x, learner.val_samples)
            probs = predictive_from_samples(samples, "classification")
        m = classification_metrics(probs, y)
        return 1.0 - m["accuracy"] + ACCURACY_FIRST * m["nll"]

    if getattr(learner, "task", "classification") != "classification":
        return learner  # regression keeps the engine's validation NLL
    object.__setattr__(learner, "validation_loss", criterion)
    return learner


# ---------------------------------------------------------------------------------------------
# Turbo-VBI on a network of your own


class TurboVBI:
    """Turbo-VBI compression of your own network: `tv = varbayes.turbo_vbi(network)`,
    `tv.fit(x, y)`, then `tv.predict(x)`, `tv.structure()` (the structured-sparsity report)
    and, for an MLP, `tv.compact()` (the physically smaller dense network).

    `network` is an `nn.Sequential` of `nn.Flatten`, `nn.Linear`, `nn.Conv1d`/`nn.Conv2d`
    (groups=1), max/average pooling and one kind of elementwise activation (e.g. `nn.ReLU`);
    it is copied, never changed. A conv kernel's prior lives on its (out_channels,
    in_channels x kernel) grid and its output channels are the units the neuron model
    switches off. The last layer is an `nn.Linear` giving the class logits (task
    "classification") or a Gaussian's (mean, raw variance) pair (task "regression", 2
    outputs). Settings as in `Config`.
    """

    def __init__(self, network: nn.Module, task: str = "classification",
                 cfg: Config | None = None, **settings: Any) -> None:
        if cfg is not None and settings:
            raise VarbayesError("give either a turbo_vbi.Config or keyword settings, not both")
        if task not in ("classification", "regression"):
            raise VarbayesError(f"task must be classification or regression; got {task!r}")
        self.cfg = cfg if cfg is not None else Config.from_values(settings)
        self.activation = _mlp_activation(network)
        linears = [m for m in network if isinstance(m, nn.Linear)]
        self.convolutional = any(isinstance(m, CONVS) for m in network)
        self.n_outputs = linears[-1].out_features
        if task == "regression" and self.n_outputs != 2:
            raise VarbayesError(f"a regression network must output 2 numbers (mean, raw "
                                f"variance); its last layer outputs {self.n_outputs}")
        self.task = task
        self.n_inputs = None if self.convolutional else linears[0].in_features
        self.spec = sequential_spec(network)
        self.bayes = BayesSettings(GaussianPrior(0.0, 1.0), self.cfg.init_sigma)
        network = bayesianize(copy.deepcopy(network), **self.bayes.to_dict())
        self.learner = TurboLearner(network, task, self.cfg)
        self.input_shape: tuple[int, ...] | None = None
        self.history: list[dict[str, Any]] = []
        self.fitted = False

    @property
    def network(self) -> nn.Module:
        """The Bayesian network (pruned after `fit`)."""
        return self.learner.network

    def fit(self, x: Any, y: Any, *, validation: tuple[Any, Any] | None = None,
            seed: int = 0, quiet: bool = True) -> TurboVBI:
        """Turbo phase, pruning and fine-tuning on (x, y); `validation` is only monitored."""
        x, y = self._arrays(x, y, remember=True)
        x_val = y_val = None
        if validation is not None:
            x_val, y_val = self._arrays(*validation, remember=False)
        torch.manual_seed(seed)
        out = train_arrays(self.learner, x, y, self.cfg, seed=seed, x_val=x_val,
                           y_val=y_val, quiet=quiet)
        self.history, self.fitted = out["history"], True
        return self

    def predict(self, x: Any) -> Any:
        """Class probabilities, or (mean, variance) for regression, averaged over
        `eval_samples` weight draws of the pruned posterior."""
        return self.model().predict(x)

    def model(self) -> SupervisedModel:
        """The pruned posterior as a varbayes model (`predict`, `save`; `varbayes.load`
        restores it)."""
        self._trained()
        meta = {"method": "turbo-vbi", "task": self.task,
                "input_shape": list(self.input_shape or ()), "network": self.spec,
                "bayes": self.bayes.to_dict(), "config": self.cfg.to_dict(),
                "n_classes": self.n_outputs if self.task == "classification" else None,
                "y_mean": 0.0, "y_std": 1.0}
        return bayesian_model(self.network, meta, _mfvi_like(self.cfg))

    def save(self, directory: str | Path) -> None:
        """model.safetensors + model.json (masks and per-weight prior precisions included);
        `varbayes.load(directory)` gives the pruned posterior back."""
        self.model().save(directory)

    def masks(self) -> list[torch.Tensor]:
        """Which weights each layer keeps (weight-shaped: (out, in) for linear)."""
        self._trained()
        return [layer.mask.clone() for layer in self.learner.layers]

    def structure(self) -> dict[str, Any]:
        """`varbayes.metrics.structure_report` of the kept weights."""
        self._trained()
        return structure_report(linear_weights(self.network)[0])

    def compact(self) -> nn.Sequential:
        """The posterior-mean network without its removable neurons, as smaller dense
        `nn.Linear` layers computing the same function (MLPs only)."""
        self._trained()
        if self.convolutional:
            raise VarbayesError("compact() builds MLPs only; for a convolutional network use "
                                "masks() and structure() (compact widths per layer)")
        weights, biases = linear_weights(self.network)
        return compact_mlp(weights, biases, self.activation)

    def _trained(self) -> None:
        if not self.fitted:
            raise VarbayesError("turbo-vbi is not trained yet; call fit(x, y) first")

    def _arrays(self, x: Any, y: Any, remember: bool) -> tuple[torch.Tensor, torch.Tensor]:
        from varbayes.data import check_arrays

        kind = {"task": self.task}
        if self.task == "classification":
            kind["n_classes"] = self.n_outputs
        x = x if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))
        y = y if isinstance(y, torch.Tensor) else torch.as_tensor(np.asarray(y))
        x, y = check_arrays(x, y, input_shape=None if remember else self.input_shape, **kind)
        if self.n_inputs is not None and math.prod(x.shape[1:]) != self.n_inputs:
            raise VarbayesError(f"the network reads {self.n_inputs} input features but each "
                                f"example of x has shape {tuple(x.shape[1:])}")
        if self.n_inputs is None:  # a conv network: try one example
            try:
                with torch.no_grad():
                    self.network(x[:1].float())
            except RuntimeError as e:
                raise VarbayesError(f"the network cannot read examples of shape "
                                    f"{tuple(x.shape[1:])}: {str(e).splitlines()[0]}") from None
        if remember:
            self.input_shape = tuple(x.shape[1:])
        return x, y


def turbo_vbi(network: nn.Module, task: str = "classification", **settings: Any) -> TurboVBI:
    """An untrained Turbo-VBI around a copy of `network`; settings as in `Config`."""
    return TurboVBI(network, task, **settings)


def sequential_spec(network: nn.Sequential) -> dict[str, Any]:
    """A JSON description of a user's Flatten/Linear/activation Sequential, enough to rebuild
    it (`build_sequential`) for `varbayes.load`."""
    layers: list[list[Any]] = []
    for m in network:
        if isinstance(m, nn.Flatten):
            layers.append(["flatten", m.start_dim, m.end_dim])
        elif isinstance(m, nn.Linear):
            layers.append(["linear", m.in_features, m.out_features, m.bias is not None])
        elif isinstance(m, CONVS):
            layers.append([type(m).__name__, m.in_channels, m.out_channels,
                           list(m.kernel_size), list(m.stride), list(m.padding)
                           if not isinstance(m.padding, str) else m.padding,
                           list(m.dilation), m.bias is not None])
        elif isinstance(m, POOLS):
            layers.append([type(m).__name__, m.kernel_size, m.stride])
        else:
            layers.append(["activation", type(m).__name__])
    return {"type": "sequential", "layers": layers}


def build_sequential(spec: dict[str, Any]) -> nn.Sequential:
    """The freshly initialised `nn.Sequential` of a `sequential_spec`."""
    modules: list[nn.Module] = []
    for kind, *args in spec["layers"]:
        if kind == "flatten":
            modules.append(nn.Flatten(*args))
        elif kind == "linear":
            modules.append(nn.Linear(args[0], args[1], bias=bool(args[2])))
        elif kind in ("Conv1d", "Conv2d"):
            def tup(v: Any) -> Any:
                return tuple(v) if isinstance(v, list) else v

            c_in, c_out, kernel, stride, padding, dilation, bias = args
            modules.append(getattr(nn, kind)(c_in, c_out, tup(kernel), stride=tup(stride),
                                             padding=tup(padding), dilation=tup(dilation),
                                             bias=bool(bias)))
        elif kind in {c.__name__ for c in POOLS}:
            modules.append(getattr(nn, kind)(args[0], stride=args[1]))
        elif kind == "activation" and isinstance(getattr(nn, args[0], None), type) \
                and issubclass(getattr(nn, args[0]), nn.Module):
            modules.append(getattr(nn, args[0])())
        else:
            raise VarbayesError(f"model file has an unknown layer {[kind, *args]!r}")
    return nn.Sequential(*modules)


def _mlp_activation(network: nn.Module) -> Callable[[], nn.Module]:
    """The activation class between the weight layers of an `nn.Sequential` of Flatten,
    Linear, Conv1d/Conv2d, pooling and one kind of activation."""
    if not isinstance(network, nn.Sequential):
        raise VarbayesError(f"turbo-vbi compresses an nn.Sequential; got "
                            f"{type(network).__name__}")
    others = [m for m in network if not isinstance(m, (nn.Linear, nn.Flatten, *CONVS, *POOLS))]
    weighted = [m for m in network if isinstance(m, (nn.Linear, *CONVS))]
    kinds = [type(m) for m in others]
    bad = [m for m in others if list(m.parameters()) or list(m.children())]
    bad += [m for m in weighted if isinstance(m, CONVS) and m.groups != 1]
    if not weighted or not isinstance(weighted[-1], nn.Linear) or bad or len(set(kinds)) > 1:
        raise VarbayesError("turbo-vbi needs an nn.Sequential of Flatten, Linear, Conv1d/Conv2d "
                            "(groups=1), pooling and one kind of parameter-free activation, "
                            "ending in a Linear layer")
    return kinds[0] if kinds else nn.Identity


# ---------------------------------------------------------------------------------------------
# structure, the compact network and costs (shared by the reproduction's baselines)


def linear_weights(network: nn.Module) -> tuple[list[torch.Tensor], list[torch.Tensor | None]]:
    """Posterior-mean weights (zeros where masked) and biases of the weight layers (linear and
    conv), in forward order."""
    layers = [m for m in network.modules()
              if isinstance(m, (MeanFieldLayer, nn.Linear, *CONVS))]
    weights, biases = [], []
    for m in layers:
        w = m.weight_mean() if isinstance(m, MeanFieldLayer) else m.weight
        weights.append(w.detach().clone())
        biases.append(None if m.bias is None else m.bias.detach().clone())
    return weights, biases


def structure_metrics(network: nn.Module, ds: Dataset, repeats: int = 30) -> dict[str, Any]:
    """structure_report of the pruned weights, plus the compact dense model's widths and its
    measured prediction speed-up over the same network at its original shapes."""
    weights, biases = linear_weights(network)
    report = structure_report(weights)
    compact = compact_mlp(weights, biases)
    full = compact_mlp(weights, biases, remove=False)
    x = ds.x_test.repeat(-(-SPEED_ROWS // len(ds.x_test)), *([1] * (ds.x_test.ndim - 1)))
    x = x[:SPEED_ROWS]
    with torch.no_grad():
        agree = float((compact(x) - full(x)).abs().max())
    with torch.no_grad():
        times = median_times({"dense": lambda: full(x), "compact": lambda: compact(x)},
                             repeats)
    total = report["total"]
    metrics = {
        "density": report["density"], "weights_kept": report["active"],
        "compression": total / max(report["active"], 1),
        "neurons_removed": report["neurons_removed"],
        "neurons_removed_fraction": report["neurons_removed_fraction"],
        "dense_macs": report["dense_macs"], "nnz_macs": report["nnz_macs"],
        "compact_macs": report["compact_macs"],
        **{k: report[k] for k in ("mean_block_len", "block_len_ratio", "csr_index_bytes",
                                  "block_index_bytes")},
        "compact_max_abs_diff": agree,
        "predict_seconds_dense": times["dense"], "predict_seconds_compact": times["compact"],
        "speed_ratio": times["dense"] / times["compact"],
    }
    return {"metrics": metrics, "report": report, "widths": report["compact_widths"]}


def turbo_cost(learner: TurboLearner, ds: Dataset, cfg: Config,
               trained: dict[str, Any]) -> dict[str, float]:
    """params, model bytes and the analytic training FLOPs of both phases (LRT: factor 2),
    with the ratio to dense VI trained for the same total number of steps."""
    from safetensors.torch import save

    layers = layer_macs(learner.network, ds.x_train[:1])
    batch = min(cfg.batch_size, trained["n_fit"])
    dense_layers = as_dense(layers)
    turbo = train_flops(dense_layers, trained["turbo_steps"], batch, 2)
    finetune = train_flops(layers, trained["finetune_steps"], batch, 2)
    steps = trained["turbo_steps"] + trained["finetune_steps"]
    dense_vi = train_flops(dense_layers, steps, batch, 2)
    state = {k: v.detach().cpu().contiguous() for k, v in learner.network.state_dict().items()}
    return {"params_total": count_parameters(learner.network),
            "params_active": count_parameters(learner.network, active_only=True),
            "model_bytes": len(save(state)), "train_flops": turbo + finetune,
            "train_flops_ratio": (turbo + finetune) / dense_vi}


def support_figure(masks: dict[str, list[torch.Tensor]], dataset: str) -> Any:
    """Each method's kept weights (black) per layer, one row per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(masks)
    n_layers = len(next(iter(masks.values())))
    fig, axes = plt.subplots(len(names), n_layers, figsize=(3.2 * n_layers, 2.9 * len(names)),
                             squeeze=False)
    for r, name in enumerate(names):
        for c, mask in enumerate(masks[name]):
            ax = axes[r, c]
            grid = mask.reshape(mask.shape[0], -1)  # conv: (out_channels, in x kernel)
            ax.imshow(grid.float().numpy(), cmap="Greys", aspect="auto",
                      interpolation="nearest", vmin=0, vmax=1)
            ax.set_title(f"{name}: layer {c + 1} ({mask.float().mean().item():.3f})",
                         fontsize=7)
            ax.set_xlabel("input unit", fontsize=6)
            ax.set_ylabel("output unit", fontsize=6)
            ax.tick_params(labelsize=5)
    fig.suptitle(f"weight-matrix supports on {dataset} (black = kept; density in brackets)",
                 fontsize=8)
    fig.tight_layout()
    return fig


def load_model(meta: dict[str, Any], tensors: dict[str, torch.Tensor]) -> SupervisedModel:
    """Rebuild the pruned Bayesian MLP (masks and per-weight priors are in the file)."""
    def bayes(net: nn.Module) -> nn.Module:
        return bayesianize(net, **meta["bayes"])

    if meta["network"].get("type") == "sequential":  # a user's network (TurboVBI.save)
        network = restore_network(bayes(build_sequential(meta["network"])), tensors)
    else:
        network = load_network(meta, tensors, bayes)
    return bayesian_model(network, meta, _mfvi_like(Config.from_values(meta["config"])))


def reproduce(ctx: ReproduceContext) -> Reproduction:
    """Turbo-VBI against magnitude pruning and a static random mask at the same number of
    weights, on mnist1d and digits; see turbo_vbi_repro."""
    from varbayes.methods.bnn.turbo_vbi_repro import reproduce as _reproduce

    return _reproduce(ctx)


def _mfvi_like(cfg: Config) -> Any:
    """What `bayesian_model` reads from an mfvi Config: S draws, full weight samples."""
    return type("EvalSettings", (), {"eval_samples": cfg.eval_samples, "eval_noise": "weights"})
