"""`bayescap`: calibrated uncertainty for a frozen network from a small "identity cap"
(Upadhyay et al., BayesCap, ECCV 2022).

A cap network reads the frozen model's output y_hat (never its input) and predicts, per output
element, a generalised Gaussian GG(y_tilde, alpha, beta): a mean tied to y_hat by an identity
loss, a scale and a shape. Only the cap is trained, on a fraction of the data, with the frozen
model in eval mode, so the frozen output is kept and a per-element variance
alpha^2 Gamma(3/beta) / Gamma(1/beta) is added.

Python: `cap = varbayes.bayescap(frozen_model, fraction=0.3)`, `cap.fit((x, y))`,
`mean, var = cap.predict(x)`. CLI: `varbayes run bayescap` on the digits restoration task
(degraded -> clean 8x8 digits, a frozen MLP) or `--dataset boston` (a frozen deterministic MLP).
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn
from torch.nn import functional as F

from varbayes.config import setting
from varbayes.errors import VarbayesError, inputs_for
from varbayes.io import atomic_write_json, save_tensors
from varbayes.method import ReproduceContext, Reproduction, RunContext, RunOutput
from varbayes.models import FORMAT, read_model
from varbayes.nn.gengauss import gg_linear_residual_loss, gg_nll, gg_variance
from varbayes.nn.networks import MLP
from varbayes.train import Learner, Step, TrainConfig, fit

DATASETS = ("digits-restoration", "boston")


@dataclass
class CapConfig(TrainConfig):
    """Settings of the cap and its training (what `varbayes.bayescap(model, ...)` takes)."""

    fraction: float = setting(0.3, help="fraction of the training data the cap sees",
                              gt=0, le=1)
    loss: Literal["paper", "reference"] = setting(
        "paper", help="paper: identity L1 + GG NLL with softplus heads; reference: the "
        "reference code's linear residual with ReLU heads")
    lambda_id: float = setting(1.0, help="weight of the identity term |y_tilde - y_hat|", ge=0)
    lambda_nll: float = setting(0.05, help="weight of the GG likelihood term", gt=0)
    width: int = setting(256, help="hidden units per layer of the cap MLP", ge=1)
    depth: int = setting(2, help="hidden layers of the cap MLP", ge=1)
    mean_head: Literal["residual", "direct"] = setting(
        "residual", help="residual: y_tilde = y_hat + output (identity at initialisation); "
        "direct: the cap outputs y_tilde (the reference architecture)")
    beta_floor: float = setting(
        1.0, help="floor on the shape beta (paper heads); below 1 the GG variance is "
        "dominated by its tails", gt=0)
    inv_alpha_floor: float = setting(1e-5, help="floor on 1/alpha (paper heads)", gt=0)
    seed: int = setting(0, help="seed of the data fraction, initialisation and data order",
                        ge=0)
    epochs: int = setting(200, help="passes over the cap's training data", ge=1)
    batch_size: int = setting(32, help="batch size", ge=1)
    val_fraction: float = setting(0.0, help="fraction of the cap's data held out to monitor "
                                  "a validation loss (0: none)", ge=0, lt=1)


@dataclass
class Config(CapConfig):
    """A `varbayes run bayescap` run: the cap plus the task's frozen model and baselines."""

    frozen_epochs: int = setting(300, help="epochs of the frozen model's training", ge=1)
    cap_data: Literal["train", "validation"] = setting(
        "train", help="where the cap's fraction comes from: the frozen model's training "
        "split (as in the paper) or the validation split it never saw")
    frozen_dropout: float = setting(
        0.1, help="dropout of the frozen model (off when frozen; sampled by the MC-dropout "
        "baseline)", ge=0, lt=1)
    noise_std: float = setting(0.1, help="digits restoration: std of the input noise", ge=0)
    ttda_runs: int = setting(50, help="noisy input copies of the TTDA baseline", ge=2)
    ttda_scale: float = setting(0.05, help="TTDA noise = this x max|x| per example", gt=0)
    mc_runs: int = setting(50, help="forward passes of the MC-dropout baseline", ge=2)
    uce_bins: int = setting(100, help="equal-width bins of the UCE", ge=1)


# ---------------------------------------------------------------------------------------------
# the cap


class CapNetwork(nn.Module):
    """MLP from the flattened frozen output to (y_tilde, 1/alpha, beta) per output element.

    The input is standardised by one location and scale measured on the frozen outputs it is
    trained on (buffers, saved with the model); the mean head is mapped back to those units
    and 1/alpha divided by the scale, so the cap works at any output scale.
    """

    def __init__(self, shape: tuple[int, ...], width: int = 256, depth: int = 2,
                 heads: Literal["softplus", "relu"] = "softplus", beta_floor: float = 0.1,
                 inv_alpha_floor: float = 1e-5, mean_head: str = "direct") -> None:
        super().__init__()
        self.mean_head = mean_head
        self.shape = tuple(int(s) for s in shape)
        self.d = int(torch.Size(self.shape).numel())
        self.width, self.depth = width, depth
        self.heads, self.beta_floor, self.inv_alpha_floor = heads, beta_floor, inv_alpha_floor
        self.body = MLP(self.d, [width] * depth, 3 * self.d)
        self.register_buffer("loc", torch.zeros(()))
        self.register_buffer("scale", torch.ones(()))

    def forward(self, y_hat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        z = (y_hat.reshape(len(y_hat), self.d) - self.loc) / self.scale
        out = self.body(z).reshape(len(y_hat), 3, self.d)
        if self.heads == "softplus":
            inv_alpha = F.softplus(out[:, 1]) + self.inv_alpha_floor
            beta = F.softplus(out[:, 2]) + self.beta_floor
        else:  # the reference code: ReLU heads with fixed offsets
            inv_alpha = F.relu(out[:, 1]) + 1e-5
            beta = F.relu(out[:, 2]) + 1e-2
        base = y_hat.reshape(len(y_hat), self.d) if self.mean_head == "residual" else self.loc
        mean = base + self.scale * out[:, 0]
        shape = (len(y_hat), *self.shape)
        return mean.reshape(shape), (inv_alpha / self.scale).reshape(shape), beta.reshape(shape)

    def describe(self) -> dict[str, Any]:
        """What model.json records to rebuild the cap."""
        return {"shape": list(self.shape), "width": self.width, "depth": self.depth,
                "heads": self.heads, "beta_floor": self.beta_floor,
                "inv_alpha_floor": self.inv_alpha_floor, "mean_head": self.mean_head}


class CapLearner(Learner):
    """lambda_id * mean |y_tilde - y_hat| + lambda_nll * mean GG loss against the target.

    The engine feeds (y_hat, y): the frozen outputs were computed once, in eval mode.
    """

    def __init__(self, cap: CapNetwork, loss: str, lambda_id: float, lambda_nll: float) -> None:
        super().__init__()
        self.cap, self.loss, self.lambda_id, self.lambda_nll = cap, loss, lambda_id, lambda_nll

    def training_loss(self, y_hat: torch.Tensor, y: torch.Tensor, step: Step) -> torch.Tensor:
        mean, inv_alpha, beta = self.cap(y_hat)
        per_element = (gg_nll if self.loss == "paper" else gg_linear_residual_loss)(
            y, mean, inv_alpha, beta)
        identity = (mean - y_hat).abs().mean()
        return self.lambda_id * identity + self.lambda_nll * per_element.mean()


class BayesCap:
    """A frozen model plus its trained cap: `fit((x, y))`, then `predict(x) -> (mean, var)`.

    `frozen` is any `nn.Module` mapping a batch of inputs to a batch of outputs with the
    targets' shape per example. It is only ever called in eval mode under `no_grad`, and its
    mode is restored afterwards. `target_scale = (shift, scale)` maps predictions to other
    units (mean * scale + shift, var * scale^2), e.g. from standardised targets to original.
    """

    def __init__(self, frozen: nn.Module, cfg: CapConfig | None = None, *,
                 frozen_meta: dict[str, Any] | None = None,
                 target_scale: tuple[float, float] = (0.0, 1.0), **settings: Any) -> None:
        if not isinstance(frozen, nn.Module):
            raise VarbayesError(f"bayescap wraps a torch.nn.Module; got {type(frozen).__name__}")
        if cfg is not None and settings:
            raise VarbayesError("give either a CapConfig or keyword settings, not both")
        self.frozen = frozen
        self.cfg = cfg if cfg is not None else CapConfig.from_values(settings)
        self.frozen_meta = frozen_meta
        self.target_scale = (float(target_scale[0]), float(target_scale[1]))
        self.cap: CapNetwork | None = None
        self.input_shape: tuple[int, ...] | None = None
        self.history: list[dict[str, float]] = []
        self.train_seconds = 0.0

    # -- training -------------------------------------------------------------------------

    def fit(self, data: Any, *, validation: Any = None, checkpoint_dir: str | Path | None = None,
            resume: bool = False, quiet: bool = True) -> BayesCap:
        """Train the cap on `fraction` of `data`: an (x, y) pair of arrays/tensors or a
        varbayes Dataset (its training part). `validation`, another (x, y) pair, is only
        monitored (training history), never used to choose anything."""
        x, y = _pair(data, "data")
        y_hat = self.frozen_outputs(x, y)
        idx = cap_subset(len(x), self.cfg.fraction, self.cfg.seed)
        keep = len(idx)
        y_hat, y = y_hat[idx], y[idx]
        torch.manual_seed(self.cfg.seed)
        self.cap = _new_cap(self.cfg, tuple(y.shape[1:]))
        self.cap.loc.fill_(y_hat.mean())
        self.cap.scale.fill_(float(y_hat.std()) if len(y_hat.flatten()) > 1 and
                             float(y_hat.std()) > 1e-8 else 1.0)
        learner = CapLearner(self.cap, self.cfg.loss, self.cfg.lambda_id, self.cfg.lambda_nll)
        x_val = y_val = None
        if validation is not None:
            vx, y_val = _pair(validation, "validation")
            x_val = self.frozen_outputs(vx, y_val)
        result = fit(learner, y_hat, y, self.cfg, seed=self.cfg.seed, x_val=x_val, y_val=y_val,
                     checkpoint_dir=checkpoint_dir, resume=resume, quiet=quiet,
                     description=f"bayescap on {keep} examples")
        self.cap.eval()
        self.history, self.train_seconds = result.history, result.train_seconds
        return self

    def frozen_outputs(self, x: Any, y: torch.Tensor | None = None,
                       batch_size: int = 1024) -> torch.Tensor:
        """The frozen model's outputs for `x` in eval mode (checked against `y`'s shape)."""
        x = self._inputs(x, remember=y is not None)
        was_training = self.frozen.training
        device = next((p.device for p in self.frozen.parameters()), torch.device("cpu"))
        self.frozen.eval()
        try:
            with torch.no_grad(), inputs_for("the frozen model", tuple(x.shape), self.frozen):
                out = torch.cat([_as_output(self.frozen(x[i:i + batch_size].to(device)))
                                 for i in range(0, len(x), batch_size)]).cpu().float()
        finally:
            self.frozen.train(was_training)
        if y is not None and tuple(out.shape[1:]) != tuple(y.shape[1:]):
            raise VarbayesError(
                f"the frozen model outputs shape {tuple(out.shape[1:])} per example but the "
                f"targets have shape {tuple(y.shape[1:])}; the cap needs one output per target "
                f"element (wrap the model so it returns the prediction only)")
        if not bool(torch.isfinite(out).all()):
            raise VarbayesError("the frozen model returned NaN or Inf outputs; check its inputs")
        return out

    # -- prediction -----------------------------------------------------------------------

    def predict_params(self, x: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(y_tilde, 1/alpha, beta) per output element, in the targets' training units."""
        cap = self._trained()
        y_hat = self.frozen_outputs(x)
        with torch.no_grad():
            return cap(y_hat)

    def predict(self, x: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """Predictive mean y_tilde and variance alpha^2 Gamma(3/beta) / Gamma(1/beta)."""
        mean, inv_alpha, beta = self.predict_params(x)
        shift, scale = self.target_scale
        return mean * scale + shift, gg_variance(inv_alpha, beta) * scale**2

    # -- files ----------------------------------------------------------------------------

    def save(self, directory: str | Path) -> None:
        """model.safetensors (the cap, plus the frozen weights when the frozen network is one
        varbayes can rebuild) and model.json."""
        cap = self._trained()
        tensors = {f"cap.{k}": v for k, v in cap.state_dict().items()}
        if self.frozen_meta is not None:
            tensors.update({f"frozen.{k}": v for k, v in self.frozen.state_dict().items()})
        directory = Path(directory)
        save_tensors(directory / "model.safetensors", tensors)
        atomic_write_json(directory / "model.json", {
            "format": FORMAT, "method": "bayescap", "task": "regression",
            "cap": cap.describe(), "config": self.cfg.to_dict(), "frozen": self.frozen_meta,
            "input_shape": list(self.input_shape or ()), "target_scale": list(self.target_scale),
        })

    def _trained(self) -> CapNetwork:
        if self.cap is None:
            raise VarbayesError("the cap is not trained yet; call fit((x, y)) first")
        return self.cap

    def _inputs(self, x: Any, remember: bool) -> torch.Tensor:
        from varbayes.data import check_arrays

        x = x if isinstance(x, torch.Tensor) else torch.as_tensor(_numpy(x))
        x, _ = check_arrays(x, input_shape=None if remember else self.input_shape)
        if remember:
            self.input_shape = tuple(x.shape[1:])
        return x


def bayescap(frozen_model: nn.Module, **settings: Any) -> BayesCap:
    """An untrained BayesCap around `frozen_model`; settings as in `CapConfig`."""
    return BayesCap(frozen_model, **settings)


def load_cap(directory: str | Path, frozen_model: nn.Module | None = None) -> BayesCap:
    """Restore a saved BayesCap; pass `frozen_model` when it wraps a model of your own."""
    meta, tensors = read_model(directory)
    if meta.get("method") != "bayescap":
        raise VarbayesError(f"{directory} holds a {meta.get('method')} model, not bayescap")
    return _restore(meta, tensors, frozen_model)


def load_model(meta: dict[str, Any], tensors: dict[str, torch.Tensor]) -> BayesCap:
    """`varbayes.load(dir)`: rebuild the frozen network from its description, then the cap."""
    return _restore(meta, tensors, None)


def _restore(meta: dict[str, Any], tensors: dict[str, torch.Tensor],
             frozen_model: nn.Module | None) -> BayesCap:
    if frozen_model is None:
        if meta.get("frozen") is None:
            raise VarbayesError("this cap wraps a user model that is not saved with it; load it "
                                "with varbayes.methods.bnn.bayescap.load_cap(dir, frozen_model)")
        from varbayes.methods.bnn.bayescap_tasks import build_frozen

        frozen_model = build_frozen(meta["frozen"])
        _load_prefixed(frozen_model, tensors, "frozen.")
    cfg = CapConfig.from_values(meta["config"])
    model = BayesCap(frozen_model, cfg, frozen_meta=meta.get("frozen"),
                     target_scale=tuple(meta.get("target_scale", (0.0, 1.0))))
    c = meta["cap"]
    model.cap = CapNetwork(tuple(c["shape"]), c["width"], c["depth"], c["heads"],
                           c["beta_floor"], c["inv_alpha_floor"], c["mean_head"])
    _load_prefixed(model.cap, tensors, "cap.")
    model.cap.eval()
    model.input_shape = tuple(meta["input_shape"]) or None
    return model


# ---------------------------------------------------------------------------------------------
# runs and the reproduction


def run(cfg: Config, ctx: RunContext) -> RunOutput:
    """Train the task's frozen model, fit the cap on `fraction` of its training data, and
    compare the uncertainty with TTDA, MC dropout and a constant variance on the test split."""
    from varbayes.methods.bnn import bayescap_tasks as tasks

    cfg = dataclasses.replace(cfg, seed=ctx.seed)
    start = time.perf_counter()
    task = tasks.make_task(ctx.dataset, cfg, ctx)
    frozen_seconds = time.perf_counter() - start
    cap = BayesCap(task.frozen, cap_config(cfg), frozen_meta=task.frozen_meta,
                   target_scale=(task.y_mean, task.y_std))
    held_out = cfg.cap_data == "validation"
    cap.fit((task.x_val, task.y_val) if held_out else (task.x_train, task.y_train),
            validation=None if held_out else (task.x_val, task.y_val),
            checkpoint_dir=ctx.checkpoint_dir / "cap", resume=ctx.resume, quiet=ctx.quiet)
    evaluation = tasks.evaluate(cap, task, cfg, seed=ctx.seed)
    metrics = {**evaluation.metrics, "train_seconds": round(cap.train_seconds, 3),
               "frozen_train_seconds": round(frozen_seconds, 3)}
    figures = {"error_and_uncertainty": tasks.uncertainty_figure(cap, task, evaluation)}
    notes = [f"Loss form: {cfg.loss} ({_loss_text(cfg.loss)}).",
             f"UCE: {cfg.uce_bins} equal-width bins by predicted variance over all test "
             "elements; uce_error_binned bins by squared error (the reference code's choice).",
             *task.notes]
    details = {"baselines": evaluation.baselines, "history": cap.history,
               "n_cap_train": max(1, round(cfg.fraction * len(
                   task.x_val if held_out else task.x_train))),
               "n_train": len(task.x_train), "n_test": len(task.x_test),
               "uce_binning": {"n_bins": cfg.uce_bins, "bins": "equal-width",
                               "bin_by": "variance"}}
    return RunOutput(metrics, cap, figures, {"train_seconds": cap.train_seconds}, details,
                     notes)


def reproduce(ctx: ReproduceContext) -> Reproduction:
    """Spec A.5 on digits restoration (fidelity, correlation and UCE against TTDA, the
    identity-term ablation), plus a table on boston; see bayescap_repro."""
    from varbayes.methods.bnn.bayescap_repro import reproduce as _reproduce

    return _reproduce(ctx)


# ---------------------------------------------------------------------------------------------


def cap_config(cfg: CapConfig) -> CapConfig:
    """The cap's own settings out of a run's Config."""
    names = {f.name for f in dataclasses.fields(CapConfig)}
    return CapConfig(**{k: v for k, v in cfg.to_dict().items() if k in names})


def cap_subset(n: int, fraction: float, seed: int) -> torch.Tensor:
    """Sorted indices of the `fraction` of n examples the cap trains on (seeded, at least 1)."""
    keep = max(1, round(fraction * n))
    gen = torch.Generator().manual_seed(seed)
    return torch.randperm(n, generator=gen)[:keep].sort().values


def _loss_text(loss: str) -> str:
    return ("identity L1 + generalised-Gaussian NLL, softplus heads" if loss == "paper" else
            "identity L1 + the reference code's linear residual, ReLU heads")


def _new_cap(cfg: CapConfig, shape: tuple[int, ...]) -> CapNetwork:
    heads = "softplus" if cfg.loss == "paper" else "relu"
    return CapNetwork(shape, cfg.width, cfg.depth, heads, cfg.beta_floor, cfg.inv_alpha_floor,
                      cfg.mean_head)


def _pair(data: Any, name: str) -> tuple[Any, torch.Tensor]:
    """(x, y) from a pair or a Dataset's training part; y checked as finite regression
    targets with one row per example of x."""
    from varbayes.data import Dataset, check_arrays

    if isinstance(data, Dataset):
        x, y = data.x_train, data.y_train
    elif isinstance(data, (tuple, list)) and len(data) == 2:
        x, y = data
    else:
        raise VarbayesError(f"{name} must be an (x, y) pair or a varbayes Dataset; got "
                            f"{type(data).__name__}")
    y = y if isinstance(y, torch.Tensor) else torch.as_tensor(_numpy(y))
    _, y = check_arrays(torch.zeros(len(x), 1), y, task="regression", name="x")
    return x, y


def _numpy(a: Any) -> Any:
    import numpy as np

    return np.asarray(a)


def _as_output(out: Any) -> torch.Tensor:
    if not isinstance(out, torch.Tensor):
        raise VarbayesError(f"the frozen model returned {type(out).__name__}; it must return "
                            "one tensor (wrap it so it returns the prediction only)")
    return out


def _load_prefixed(module: nn.Module, tensors: dict[str, torch.Tensor], prefix: str) -> None:
    from varbayes.models import restore_network

    restore_network(module, {k[len(prefix):]: v for k, v in tensors.items()
                             if k.startswith(prefix)})

