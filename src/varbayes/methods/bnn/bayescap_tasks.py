"""BayesCap's tasks and baselines: the frozen models, the post-hoc uncertainty baselines it is
compared with, and the evaluation every run and the reproduction share.

Tasks (spec bnn-extras A.5):
- `digits-restoration`: scikit-learn digits scaled to [0, 1]; the input is the image
  2x average-pooled, nearest-upsampled and given N(0, noise_std^2) noise, the target the clean
  image. A fixed 60/20/20 train/validation/test split and noise draw (seed 0), so seeds change
  the models, never the data. Frozen model: MLP 64-256-256-64 trained with L1.
- `boston`: the frozen model is the `deterministic` baseline's network (UCI MLP, Gaussian
  head) trained by that method's own pipeline; the cap reads its predictive mean.

Baselines: test-time data augmentation (TTDA: the variance of the frozen outputs over noisy
copies of the input, noise ttda_scale * max|x| per example, as in the reference code), MC
dropout (variance over passes with only the dropout layers sampling; only when the frozen
model has dropout) and a constant variance (the frozen model's training MSE).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from varbayes import metrics
from varbayes.errors import VarbayesError
from varbayes.method import RunContext
from varbayes.nn.gengauss import gg_nll
from varbayes.nn.heads import gaussian_params
from varbayes.nn.networks import MLP, build_network
from varbayes.train import Learner, Step, TrainConfig, fit

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from varbayes.methods.bnn.bayescap import BayesCap, Config

RESTORATION_SPLIT = (0.6, 0.2, 0.2)
VAR_FLOOR = 1e-12  # baselines' variances are floored here so their Gaussian NLL is defined


@dataclass
class Task:
    """A frozen model and its data; targets in training units (standardised for boston)."""

    name: str
    frozen: nn.Module
    frozen_meta: dict[str, Any]
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    y_mean: float = 0.0
    y_std: float = 1.0
    image_shape: tuple[int, ...] | None = None
    data_range: float | None = None
    notes: list[str] = field(default_factory=list)


def make_task(name: str, cfg: Config, ctx: RunContext) -> Task:
    """Build the task `name` and train (or, with --resume, restore) its frozen model."""
    if name == "digits-restoration":
        return restoration_task(cfg, ctx)
    if name == "boston":
        return boston_task(cfg, ctx)
    raise VarbayesError(f"unknown bayescap task {name!r}; valid: digits-restoration, boston")


# ---------------------------------------------------------------------------------------------
# digits restoration


def restoration_data(noise_std: float = 0.1, seed: int = 0) -> dict[str, torch.Tensor]:
    """Degraded and clean digits (N, 64) in [0, 1] (clean) for a seeded 60/20/20 split."""
    from varbayes.data import load

    ds = load("digits", split=0)
    raw = torch.cat([ds.unstandardize(ds.x_train), ds.unstandardize(ds.x_test)])
    clean = (raw.round() / ds.meta["pixel_max"]).reshape(-1, 1, 8, 8)
    gen = torch.Generator().manual_seed(seed)
    degraded = nn.functional.interpolate(nn.functional.avg_pool2d(clean, 2), scale_factor=2,
                                         mode="nearest")
    degraded = degraded + noise_std * torch.randn(degraded.shape, generator=gen)
    perm = torch.randperm(len(clean), generator=gen)
    n_train = round(RESTORATION_SPLIT[0] * len(clean))
    n_val = round(RESTORATION_SPLIT[1] * len(clean))
    parts = {"train": perm[:n_train], "val": perm[n_train:n_train + n_val],
             "test": perm[n_train + n_val:]}
    out = {}
    for part, idx in parts.items():
        idx = idx.sort().values
        out[f"x_{part}"] = degraded[idx].reshape(len(idx), 64).contiguous()
        out[f"y_{part}"] = clean[idx].reshape(len(idx), 64).contiguous()
    return out


class L1Learner(Learner):
    """Mean absolute error of a network's output: the frozen restoration model's training."""

    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        self.network = network

    def training_loss(self, x: torch.Tensor, y: torch.Tensor, step: Step) -> torch.Tensor:
        return (self.network(x) - y).abs().mean()


def restoration_task(cfg: Config, ctx: RunContext, checkpoints: bool = True) -> Task:
    """The digits restoration task with its frozen MLP trained by L1 (Adam 1e-3, cosine);
    checkpoints (for --resume) go to the run's checkpoint folder unless turned off."""
    data = restoration_data(cfg.noise_std)
    meta = {"network": {"type": "mlp", "in": 64, "hidden": [256, 256], "out": 64,
                        "dropout": cfg.frozen_dropout}, "output": "raw"}
    torch.manual_seed(ctx.seed)
    network = build_frozen(meta)
    train_cfg = TrainConfig(epochs=cfg.frozen_epochs, batch_size=64, lr=1e-3, val_fraction=0.0)
    fit(L1Learner(network), data["x_train"], data["y_train"], train_cfg, seed=ctx.seed,
        x_val=data["x_val"], y_val=data["y_val"],
        checkpoint_dir=ctx.checkpoint_dir / "frozen" if checkpoints else None,
        resume=ctx.resume, quiet=ctx.quiet, description="frozen restoration MLP")
    network.eval()
    return Task("digits-restoration", network, meta, **data, image_shape=(8, 8),
                data_range=1.0, notes=[
                    f"Frozen model: MLP 64-256-256-64, dropout {cfg.frozen_dropout}, L1 loss, "
                    f"{cfg.frozen_epochs} epochs on {len(data['x_train'])} images."])


# ---------------------------------------------------------------------------------------------
# boston with the deterministic baseline as the frozen model


class GaussianMean(nn.Module):
    """A regression network with a (mean, variance) head, returning the mean only."""

    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        self.network = network

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return gaussian_params(self.network(x))[0]


def boston_task(cfg: Config, ctx: RunContext) -> Task:
    """Train `deterministic` on boston (its own pipeline, into out/frozen) and freeze it."""
    import varbayes
    from varbayes.runner import run as run_method

    folder = ctx.out / "frozen"
    run_method("deterministic", "boston", seed=ctx.seed, split=ctx.split, out=folder,
               resume=ctx.resume, quiet=ctx.quiet, epochs=cfg.frozen_epochs,
               dropout=cfg.frozen_dropout)
    trained = varbayes.load(folder)
    meta = {"network": trained.meta["network"], "output": "gaussian-mean"}
    frozen = GaussianMean(trained.network).eval()
    ds = varbayes.data.load("boston", split=ctx.split)
    fit_part, val = ds.validation_split(0.1, seed=ctx.seed)  # the split deterministic used
    return Task("boston", frozen, meta, fit_part.x_train, fit_part.y_train, val.x_test,
                val.y_test, ds.x_test, ds.y_test, ds.y_mean, ds.y_std, notes=[
                    f"Frozen model: the deterministic baseline (UCI MLP 13-50-2, dropout "
                    f"{cfg.frozen_dropout}, {cfg.frozen_epochs} epochs, split {ctx.split}) "
                    f"saved in frozen/; the cap reads its predictive mean."])


def build_frozen(meta: dict[str, Any]) -> nn.Module:
    """Rebuild a frozen network from its model.json description (weights loaded by caller)."""
    network = build_network(meta["network"])
    if meta.get("output") == "gaussian-mean":
        return GaussianMean(network)
    return network


# ---------------------------------------------------------------------------------------------
# baselines


def ttda(cap: BayesCap, x: torch.Tensor, runs: int, scale: float,
         seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(frozen output, variance of the frozen outputs over `runs` noisy copies of x) with
    noise scale * max|x| per example."""
    gen = torch.Generator().manual_seed(seed)
    amp = scale * x.flatten(1).abs().amax(1).reshape(-1, *([1] * (x.ndim - 1)))
    outs = torch.stack([cap.frozen_outputs(x + amp * torch.randn(x.shape, generator=gen))
                        for _ in range(runs)])
    return cap.frozen_outputs(x), outs.var(0)


def has_dropout(module: nn.Module) -> bool:
    """Whether `module` has a dropout layer with a positive rate."""
    return any(isinstance(m, nn.modules.dropout._DropoutNd) and m.p > 0
               for m in module.modules())


def mc_dropout(frozen: nn.Module, x: torch.Tensor, runs: int,
               seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and variance over `runs` passes with only the dropout layers sampling."""
    torch.manual_seed(seed)
    with _dropout_only(frozen), torch.no_grad():
        outs = torch.stack([frozen(x) for _ in range(runs)])
    return outs.mean(0), outs.var(0)


@contextmanager
def _dropout_only(module: nn.Module) -> Iterator[None]:
    modes = {m: m.training for m in module.modules()}
    module.eval()
    for m in module.modules():
        if isinstance(m, nn.modules.dropout._DropoutNd):
            m.train()
    try:
        yield
    finally:
        for m, mode in modes.items():
            m.training = mode


def constant_variance(cap: BayesCap, task: Task, x: torch.Tensor) -> tuple[torch.Tensor,
                                                                         torch.Tensor]:
    """The frozen output with one variance everywhere: its mean squared training error."""
    mse = (cap.frozen_outputs(task.x_train) - task.y_train).pow(2).mean()
    y_hat = cap.frozen_outputs(x)
    return y_hat, torch.full_like(y_hat, float(mse))


class SquaredErrorRegressor(Learner):
    """An MLP from the frozen output to the squared error of each element, fitted by least
    squares: an estimate of E[err^2 | y_hat], the variance that maximises the correlation with
    the error among functions of y_hat. Not a calibrated method; a reference point for the cap,
    which sees the same input. Inputs are standardised and targets divided by their mean, and
    the output starts at that mean, so the softplus output does not die on tiny errors."""

    SOFTPLUS_ONE = math.log(math.e - 1.0)  # softplus(SOFTPLUS_ONE) = 1

    def __init__(self, d: int, width: int, depth: int, loc: float, scale: float,
                 err_scale: float) -> None:
        super().__init__()
        self.network = MLP(d, [width] * depth, d)
        self.loc, self.scale, self.err_scale = loc, scale, err_scale

    def forward(self, y_hat: torch.Tensor) -> torch.Tensor:
        """Predicted squared error, in the targets' units squared."""
        return self.err_scale * self._relative(y_hat)

    def _relative(self, y_hat: torch.Tensor) -> torch.Tensor:
        z = (y_hat.reshape(len(y_hat), -1) - self.loc) / self.scale
        out = nn.functional.softplus(self.network(z) + self.SOFTPLUS_ONE)
        return out.reshape(y_hat.shape)

    def training_loss(self, y_hat: torch.Tensor, err2: torch.Tensor, step: Step) -> torch.Tensor:
        return (self._relative(y_hat) - err2 / self.err_scale).pow(2).mean()


def error_regression(cap: BayesCap, task: Task, cfg: Config,
                     seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(frozen test output, E[err^2 | y_hat] from a SquaredErrorRegressor as wide and deep
    as the cap, trained like it on the same fraction of the training split)."""
    from varbayes.methods.bnn.bayescap import cap_subset

    idx = cap_subset(len(task.x_train), cfg.fraction, seed)
    y_hat = cap.frozen_outputs(task.x_train[idx])
    err2 = (y_hat - task.y_train[idx]).pow(2)
    torch.manual_seed(seed)
    std = float(y_hat.std()) if y_hat.numel() > 1 else 1.0
    model = SquaredErrorRegressor(y_hat[0].numel(), cfg.width, cfg.depth, float(y_hat.mean()),
                                  std if std > 1e-8 else 1.0, max(float(err2.mean()), 1e-12))
    train_cfg = TrainConfig(epochs=cfg.epochs, batch_size=cfg.batch_size, lr=cfg.lr,
                            val_fraction=0.0)
    fit(model, y_hat, err2, train_cfg, seed=seed, quiet=True,
        description="squared-error regressor")
    model.eval()
    test_out = cap.frozen_outputs(task.x_test)
    with torch.no_grad():
        return test_out, model(test_out)


def baseline_predictions(cap: BayesCap, task: Task, cfg: Config,
                         seed: int) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """(mean, variance) on the test inputs of every baseline that applies to the task."""
    x = task.x_test
    preds = {"ttda": ttda(cap, x, cfg.ttda_runs, cfg.ttda_scale, seed)}
    if has_dropout(cap.frozen):
        preds["mc_dropout"] = mc_dropout(cap.frozen, x, cfg.mc_runs, seed)
    preds["constant"] = constant_variance(cap, task, x)
    if isinstance(cap.frozen, GaussianMean):  # the frozen model has its own variance head
        with torch.no_grad():
            preds["frozen_gaussian_head"] = gaussian_params(cap.frozen.network(x))
    return preds


# ---------------------------------------------------------------------------------------------
# evaluation


@dataclass
class Evaluation:
    """BayesCap's test metrics, each baseline's, and the predictions behind them (training
    units) for figures."""

    metrics: dict[str, float]
    baselines: dict[str, dict[str, float]]
    predictions: dict[str, tuple[torch.Tensor, torch.Tensor]]
    frozen_output: torch.Tensor


def evaluate(cap: BayesCap, task: Task, cfg: Config, seed: int = 0,
             baselines: bool = True) -> Evaluation:
    """Fidelity and uncertainty metrics on the test split, in the targets' original units,
    for BayesCap and (unless turned off) every baseline that applies."""
    x, y = task.x_test, task.y_test
    y_hat = cap.frozen_outputs(x)
    mean, inv_alpha, beta = cap.predict_params(x)
    var = cap.predict(x)[1] / task.y_std**2
    preds = {"bayescap": (mean, var)}
    if baselines:
        preds.update(baseline_predictions(cap, task, cfg, seed))


    d = y[0].numel()
    scores = {}
    for name, (m, v) in preds.items():
        scores[name] = uncertainty_scores(m, v.clamp_min(VAR_FLOOR), y, task, cfg.uce_bins)
    ours = scores["bayescap"]
    ours["nll"] = (gg_nll(y, mean, inv_alpha, beta).reshape(len(y), -1).sum(1).mean().item()
                   + d * math.log(task.y_std))
    ours["identity_mae"] = (mean - y_hat).abs().mean().item() * task.y_std
    ours["rmse_frozen"] = (y_hat - y).pow(2).mean().sqrt().item() * task.y_std
    if task.data_range is not None:
        ours["psnr_frozen"] = metrics.psnr(y_hat, y, task.data_range)
        ours["psnr_gap"] = ours["psnr"] - ours["psnr_frozen"]
    flat = dict(ours)
    for name, s in scores.items():
        if name != "bayescap":
            flat.update({f"{name}_{k}": v for k, v in s.items() if k in ("uce", "corr", "nll")})
    flat = {k: v for k, v in flat.items() if isinstance(v, float) and math.isfinite(v)}
    baselines = {k: v for k, v in scores.items() if k != "bayescap"}
    return Evaluation(flat, baselines, preds, y_hat)


def uncertainty_scores(mean: torch.Tensor, var: torch.Tensor, y: torch.Tensor, task: Task,
                       n_bins: int) -> dict[str, float]:
    """rmse, Gaussian nll, uce (binned by variance and by error), corr and psnr, in
    original units (nll for BayesCap itself is replaced by its GG NLL)."""
    n = len(y)
    m2, v2, y2 = mean.reshape(n, -1), var.reshape(n, -1), y.reshape(n, -1)
    s = task.y_std
    mo, vo, yo = m2 * s + task.y_mean, v2 * s**2, y2 * s + task.y_mean
    out = {"rmse": metrics.rmse(mo, yo), "nll": metrics.gaussian_nll(mo, vo, yo),
           "uce": metrics.uncertainty_calibration_error(mo, vo, yo, n_bins, "variance"),
           "uce_error_binned": metrics.uncertainty_calibration_error(mo, vo, yo, n_bins,
                                                                     "error"),
           "corr": metrics.error_variance_correlation(mo, vo, yo),
           "corr_spearman": metrics.error_variance_correlation(mo, vo, yo, rank=True),
           "corr_image": metrics.error_variance_correlation(mo, vo, yo, per="example")}
    if task.data_range is not None:
        out["psnr"] = metrics.psnr(m2, y2, task.data_range)
    return out


def uncertainty_figure(cap: BayesCap, task: Task, evaluation: Evaluation,
                       n_examples: int = 4) -> Figure:
    """Images: input, frozen output, target, squared error of BayesCap's mean, BayesCap's
    and TTDA's variance for a few test digits. Tabular: squared error against variance."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    mean, var = evaluation.predictions["bayescap"]
    y = task.y_test
    if task.image_shape is None:
        fig, ax = plt.subplots(figsize=(5, 4))
        for name, (m, v) in evaluation.predictions.items():
            e = (m - y).pow(2).flatten() * task.y_std**2
            ax.scatter((v.flatten() * task.y_std**2).clamp_min(VAR_FLOOR), e.clamp_min(1e-6),
                       s=8, label=name, alpha=0.6 if name == "bayescap" else 0.35)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("predicted variance")
        ax.set_ylabel("squared error")
        ax.set_title(f"{task.name}: error against uncertainty (test)")
        ax.legend(fontsize=7)
        return fig
    shape = task.image_shape
    ttda_var = evaluation.predictions["ttda"][1]
    err = (mean - y).pow(2)
    columns = [("degraded input", task.x_test, "gray"),
               ("frozen output", evaluation.frozen_output, "gray"), ("clean target", y, "gray"),
               ("squared error", err, "jet"), ("BayesCap variance", var, "hot"),
               ("TTDA variance", ttda_var, "hot")]
    fig, axes = plt.subplots(n_examples, len(columns), figsize=(1.6 * len(columns),
                                                                 1.6 * n_examples))
    limits = {"squared error": float(err[:n_examples].max()),
              "BayesCap variance": float(var[:n_examples].max()),
              "TTDA variance": float(ttda_var[:n_examples].max())}
    for r in range(n_examples):
        for c, (title, images, cmap) in enumerate(columns):
            ax = axes[r, c]
            top = limits.get(title, 1.0)
            ax.imshow(images[r].reshape(shape).numpy(), cmap=cmap, vmin=0, vmax=top)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(title, fontsize=7)
    fig.suptitle("digits restoration: error map next to uncertainty maps (test)", fontsize=8)
    fig.tight_layout()
    return fig
