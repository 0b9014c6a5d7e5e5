"""`mfvi`: dense mean-field variational inference (Bayes by Backprop, Blundell et al. 2015) with
the local reparameterisation trick (Kingma, Salimans, Welling 2015).

The default network of the dataset is bayesianized (every Linear/Conv weight gets its own
Gaussian, biases stay deterministic) and trained on the tempered ELBO
`varbayes.infer.elbo.elbo_loss`: mean NLL of the batch plus beta * w(epoch) * KL / N, N the
number of training examples. Predictions average S = 30 full weight draws; the posterior-mean
accuracy is reported as `accuracy_postmean`. The baseline every sparse BNN (SSVI, Turbo-VBI)
is compared with: SSVI is this method with masks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

from varbayes import metrics
from varbayes.config import setting
from varbayes.data.validate import TASKS
from varbayes.errors import VarbayesError, one_of
from varbayes.evaluation import predict_test
from varbayes.infer.elbo import elbo_loss
from varbayes.method import ReproduceContext, Reproduction, RunContext, RunOutput
from varbayes.methods.supervised import load_network, run_supervised
from varbayes.models import SupervisedModel
from varbayes.nn.bayesianize import BayesSettings, bayesianize
from varbayes.nn.heads import nll_per_example, predictive_from_samples
from varbayes.nn.meanfield import apply_masks_, kl_divergence, variational_param_groups
from varbayes.nn.predictive import mc_sampler, posterior_mean_sampler
from varbayes.nn.priors import GaussianPrior, Prior, ScaleMixturePrior
from varbayes.train import Learner, Step, TrainConfig, kl_warmup

DATASETS = ("mnist1d", "digits", "boston", "concrete", "two-moons", "toy-regression", "cifar10")


@dataclass
class Config(TrainConfig):
    """Settings of dense mean-field VI (spec defaults: prior N(0, 1), sigma0 = 0.01, rho at
    10x the learning rate, warm-up over the first half of training, S = 30)."""

    model: Literal["mlp", "cnn", "resnet18"] = setting("mlp", help="network architecture")
    data_dir: str | None = setting(None, help="folder with the CIFAR-10 python batches")
    prior: Literal["gaussian", "scale-mixture"] = setting(
        "gaussian", help="prior family: N(0, prior_std^2) or a two-component scale mixture")
    prior_std: float = setting(1.0, help="prior std (the wide component of a mixture)", gt=0)
    mixture_pi: float = setting(0.5, help="scale mixture: weight of the wide component",
                                ge=0, le=1)
    mixture_std2: float = setting(0.0025, help="scale mixture: std of the narrow component",
                                  gt=0)
    mixture_kl: Literal["bound", "mc"] = setting(
        "bound", help="scale mixture KL: closed-form upper bound or one-sample estimate")
    init_sigma: float = setting(0.01, help="initial posterior std sigma0", gt=0)
    sigma_param: Literal["softplus", "exp"] = setting("softplus", help="sigma = f(rho)")
    noise: Literal["lrt", "flipout", "weights"] = setting(
        "lrt", help="training noise: local reparameterisation, flipout, or one draw per batch")
    bayesian_bias: bool = setting(False, help="give biases a Gaussian posterior too")
    exclude: tuple[str, ...] = setting((), help="module names kept deterministic")
    kl_weight: float = setting(1.0, help="beta: KL weight / temperature (1 = the ELBO)", gt=0)
    kl_warmup: float = setting(0.5, help="KL warm-up over this fraction of epochs (0: off)",
                               ge=0, le=1)
    rho_lr_scale: float = setting(10.0, help="learning rate of rho relative to lr", gt=0)
    eval_samples: int = setting(30, help="weight draws S of the MC predictive", ge=1)
    eval_noise: Literal["weights", "lrt"] = setting(
        "weights", help="evaluation sampling: full weight draws (exact) or per-example LRT")
    val_samples: int = setting(10, help="weight draws for the validation NLL", ge=1)

    def validate(self) -> None:
        if self.eval_noise == "lrt" and self.model != "mlp":
            raise VarbayesError("eval_noise=lrt is exact for MLPs only; use weights for "
                                f"model={self.model}")

    def bayes_settings(self) -> BayesSettings:
        """How the network is bayesianized (recorded in model.json)."""
        return BayesSettings(self.make_prior(), self.init_sigma, self.exclude, self.noise,
                             self.sigma_param, self.bayesian_bias)

    def make_prior(self) -> Prior:
        if self.prior == "gaussian":
            return GaussianPrior(0.0, self.prior_std)
        return ScaleMixturePrior(self.mixture_pi, self.prior_std, self.mixture_std2,
                                 self.mixture_kl)


class VariationalLearner(Learner):
    """A Bayesian network trained on the tempered ELBO with KL warm-up."""

    def __init__(self, network: nn.Module, task: str, kl_weight: float = 1.0,
                 warmup: float = 0.5, rho_lr_scale: float = 10.0, val_samples: int = 10) -> None:
        super().__init__()
        if task not in TASKS:
            raise one_of("task", task, TASKS)
        self.network, self.task = network, task
        self.kl_weight, self.warmup = kl_weight, warmup
        self.rho_lr_scale, self.val_samples = rho_lr_scale, val_samples

    def training_loss(self, x: torch.Tensor, y: torch.Tensor, step: Step) -> torch.Tensor:
        nll = nll_per_example(self.network(x), y, self.task)
        w = kl_warmup(step.epoch, step.epochs, self.warmup)
        return elbo_loss(nll, kl_divergence(self.network), step.n_train, self.kl_weight, w)

    def validation_loss(self, x: torch.Tensor, y: torch.Tensor) -> float:
        """NLL of the MC predictive (full weight draws) on the validation examples."""
        with torch.no_grad():
            samples = mc_sampler("weights")(self.network, x, self.val_samples)
        return predictive_nll(samples, y, self.task)

    def param_groups(self, cfg: TrainConfig) -> list[dict[str, Any]]:
        return variational_param_groups(self.network, self.rho_lr_scale)

    def after_optimizer_step(self, step: Step, optimizer: torch.optim.Optimizer) -> None:
        apply_masks_(self.network)


def predictive_nll(samples: torch.Tensor, y: torch.Tensor, task: str) -> float:
    """Mean NLL of the predictive averaged over samples (S, N, K), in standardized units."""
    pred = predictive_from_samples(samples, task)
    if task == "classification":
        return metrics.nll(pred, y)
    mean, var = pred
    return metrics.gaussian_nll(mean, var, y)


def run(cfg: Config, ctx: RunContext) -> RunOutput:
    """Bayesianize the dataset's default network, train it on the ELBO, evaluate the MC
    predictive (and the posterior-mean pass)."""
    settings = cfg.bayes_settings()
    return run_supervised(
        cfg, ctx,
        make_learner=lambda net, ds: VariationalLearner(
            bayesianize(net, **settings.to_dict()), ds.task, cfg.kl_weight, cfg.kl_warmup,
            cfg.rho_lr_scale, cfg.val_samples),
        make_model=lambda learner, meta: bayesian_model(learner.network, meta, cfg),
        model=cfg.model, data_dir=cfg.data_dir,
        extra_meta={"bayes": settings.to_dict()},
        lrt_factor=1 if cfg.noise == "weights" else 2,
        extra_metrics=posterior_mean_metrics,
    )


def bayesian_model(network: nn.Module, meta: dict[str, Any], cfg: Config) -> SupervisedModel:
    """The trained network as a model whose predict() averages S weight draws."""
    return SupervisedModel(network, {**meta, "eval_noise": cfg.eval_noise}, cfg.eval_samples,
                           sampler=mc_sampler(cfg.eval_noise))


def posterior_mean_metrics(learner: Learner, model: SupervisedModel, ds: Any,
                           fabric: Any) -> dict[str, float]:
    """accuracy_postmean (classification) or rmse_postmean: one pass with W = mu. Never an
    NLL or ECE: those belong to the MC predictive."""
    mean_model = SupervisedModel(model.network, model.meta, 1, sampler=posterior_mean_sampler)
    if ds.task == "classification":
        probs = predict_test(mean_model, ds.x_test, fabric)
        return {"accuracy_postmean": metrics.accuracy(probs, ds.y_test)}
    mean, _ = predict_test(mean_model, ds.x_test, fabric)
    return {"rmse_postmean": metrics.rmse(mean, ds.to_original_units(ds.y_test))}


def load_model(meta: dict[str, Any], tensors: dict[str, torch.Tensor]) -> SupervisedModel:
    """Rebuild the network, bayesianize it with the recorded settings, load the weights."""
    network = load_network(meta, tensors, lambda net: bayesianize(net, **meta["bayes"]))
    noise = meta.get("eval_noise", "weights")
    return SupervisedModel(network, meta, meta.get("n_samples", 30), sampler=mc_sampler(noise))


def reproduce(ctx: ReproduceContext) -> Reproduction:
    """Issue 3 item 7: uncertainty grows away from the data on toy-regression, MFVI beats the
    deterministic network's NLL on mnist1d, and the in-between (gap) uncertainty of mfvi,
    mc-dropout and deep-ensemble is reported with a figure."""
    from varbayes.methods.bnn.bnn_reproduction import reproduce_bnn_baselines

    return reproduce_bnn_baselines(ctx)
