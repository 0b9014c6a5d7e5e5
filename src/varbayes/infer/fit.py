"""`fit(objective, model, guide, data)`: maximise any objective for any model/guide pair.

There is no second training loop: `ObjectiveLearner` is a `varbayes.train.Learner` whose loss
is minus the objective's estimate (`estimate(...).loss()`), so the shared engine
(`varbayes.train.fit`) supplies the optimiser and schedule, minibatches with the data size for
the ELBO's scaling, NaN checks, validation, checkpoints and resume, devices and DDP.

`compile=True` (or a dict of `compile_loss` settings) computes each training step's loss with
`varbayes.infer.compile_loss` (one captured graph, forward and backward; same values on the
same random numbers; the first step compiles, a new batch shape compiles again); validation
stays eager.

Programs receive the minibatch as arguments: `model(x)` / `guide(x)` for data x,
`model(x, y)` / `guide(x, y)` for pairs, `model()` / `guide()` with no data (then every step is
one "batch" and `cfg.epochs` counts gradient steps).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from varbayes.data.validate import check_finite
from varbayes.errors import VarbayesError
from varbayes.infer.compiled import CompiledLoss, compile_loss
from varbayes.infer.estimate import Estimate, estimate
from varbayes.infer.objectives import Objective
from varbayes.infer.strategies import Reinforce, Strategy
from varbayes.train import FitResult, Learner, Step, TrainConfig
from varbayes.train import fit as engine_fit

Data = torch.Tensor | tuple[torch.Tensor, torch.Tensor] | None


class ObjectiveLearner(Learner):
    """A model/guide pair and an objective, as a Learner of the shared engine.

    Parameters of `model`, `guide` (modules, or bound methods of modules), of learned REINFORCE
    baselines in `strategies`, and any extra `params` are trained together. `compile`: train
    with the compiled loss (True, or a dict of `compile_loss` settings such as backend).
    """

    def __init__(
        self,
        objective: Objective,
        model: Callable[..., Any],
        guide: Callable[..., Any],
        *,
        strategies: Mapping[str, Strategy] | None = None,
        plates: int = 0,
        samples: int = 1,
        params: Iterable[nn.Parameter] = (),
        paired: bool = False,
        has_data: bool = True,
        compile: bool | Mapping[str, Any] = False,
    ) -> None:
        super().__init__()
        _check_programs(objective, model, guide)
        if not isinstance(compile, (bool, Mapping)):
            raise VarbayesError(f"compile must be True, False or a dict of compile_loss "
                                f"settings; got {type(compile).__name__}")
        self.compile_settings = ({} if compile is True else dict(compile)) if compile else None
        self._compiled: dict[int | None, CompiledLoss] = {}  # by data size
        self.objective, self.model_fn, self.guide_fn = objective, model, guide
        self.strategies = dict(strategies or {})
        self.plates, self.samples = plates, samples
        self.paired, self.has_data = paired, has_data
        owners: list[nn.Module] = []
        candidates = [model, guide, *(s.baseline for s in self.strategies.values()
                                      if isinstance(s, Reinforce))]
        for c in candidates:
            m = c if isinstance(c, nn.Module) else getattr(c, "__self__", None)
            if isinstance(m, nn.Module) and all(m is not o for o in owners):
                owners.append(m)
        self.owners = nn.ModuleList(owners)
        self.extra = nn.ParameterList(list(params))

    def estimate(self, *args: Any, data_size: int | None = None) -> Estimate:
        """The objective's estimate on one batch of program arguments."""
        return estimate(self.objective, self.model_fn, self.guide_fn, *args,
                        strategies=self.strategies, plates=self.plates, data_size=data_size,
                        samples=self.samples)

    def training_loss(self, x: torch.Tensor, y: torch.Tensor, step: Step) -> torch.Tensor:
        data_size = step.n_train if self.plates else None
        if self.compile_settings is not None and torch.is_grad_enabled():
            return self.compiled_loss(data_size)(*self._args(x, y))
        return self.estimate(*self._args(x, y), data_size=data_size).loss()

    def compiled_loss(self, data_size: int | None) -> CompiledLoss:
        """The compiled training loss for minibatches standing for `data_size` points (made
        on first use)."""
        loss = self._compiled.get(data_size)
        if loss is None:
            loss = compile_loss(self.objective, self.model_fn, self.guide_fn,
                                strategies=self.strategies, plates=self.plates,
                                data_size=data_size, samples=self.samples,
                                **self.compile_settings)
            self._compiled[data_size] = loss
        return loss

    def validation_loss(self, x: torch.Tensor, y: torch.Tensor) -> float:
        with torch.no_grad():
            return -self.estimate(*self._args(x, y)).mean

    def _args(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, ...]:
        if not self.has_data:
            return ()
        return (x, y) if self.paired else (x,)


def fit(
    objective: Objective,
    model: Callable[..., Any],
    guide: Callable[..., Any],
    data: Data = None,
    *,
    cfg: TrainConfig | None = None,
    strategies: Mapping[str, Strategy] | None = None,
    plates: int | None = None,
    samples: int = 1,
    params: Iterable[nn.Parameter] = (),
    validation: Data = None,
    seed: int = 0,
    checkpoint_dir: str | Path | None = None,
    resume: bool = False,
    quiet: bool = True,
    description: str = "variational inference",
    compile: bool | Mapping[str, Any] = False,
) -> tuple[ObjectiveLearner, FitResult]:
    """Maximise `objective` for `model`/`guide` on `data` with the shared engine.

    data: None (a program without data: cfg.epochs gradient steps), a tensor x (batches of
    rows; plates defaults to 1) or a pair (x, y). samples: independent copies averaged per
    step. compile: each step's loss by `varbayes.infer.compile_loss` (True, or a dict of its
    settings; see the module doc). Returns the learner (whose modules are the trained model
    and guide) and the engine's FitResult.
    """
    cfg = cfg or TrainConfig()
    paired = isinstance(data, tuple)
    x, y = _as_arrays(data)
    if plates is None:
        plates = 0 if data is None else 1
    learner = ObjectiveLearner(objective, model, guide, strategies=strategies, plates=plates,
                               samples=samples, params=params, paired=paired,
                               has_data=data is not None, compile=compile)
    if data is None:
        cfg = _one_step_per_epoch(cfg)
    x_val, y_val = _as_arrays(validation) if validation is not None else (None, None)
    result = engine_fit(learner, x, y, cfg, seed=seed, x_val=x_val, y_val=y_val,
                        checkpoint_dir=checkpoint_dir, resume=resume, quiet=quiet,
                        description=description)
    return learner, result


def evaluate(
    objective: Objective,
    model: Callable[..., Any],
    guide: Callable[..., Any],
    data: Data = None,
    *,
    samples: int = 1,
    plates: int | None = None,
    batch_size: int = 1024,
) -> tuple[float, float]:
    """Mean of the objective's per-element values over the data (or over `samples` draws
    without data) and its standard error; no gradients."""
    paired = isinstance(data, tuple)
    x, y = _as_arrays(data)
    if plates is None:
        plates = 0 if data is None else 1
    learner = ObjectiveLearner(objective, model, guide, plates=plates, samples=samples,
                               paired=paired, has_data=data is not None)
    parts = []
    with torch.no_grad():
        for i in range(0, len(x), batch_size):
            args = learner._args(x[i:i + batch_size], y[i:i + batch_size])
            value = learner.estimate(*args).value
            if plates and data is not None:  # one value per data point
                value = value.reshape(-1, *value.shape[value.dim() - plates:]).mean(0)
            parts.append(value.reshape(-1))
    values = torch.cat(parts).double()
    se = float(values.std() / math.sqrt(len(values))) if len(values) > 1 else float("nan")
    return float(values.mean()), se


def _check_programs(objective: Any, model: Any, guide: Any) -> None:
    """Objective, model and guide must be callables: checked once per fit or evaluate (a
    string such as "elbo" or None would otherwise fail inside the first step)."""
    for what, fn, valid in (("objective", objective, "an objective such as infer.elbo()"),
                            ("model", model, "a program (a function or module)"),
                            ("guide", guide, "a program (a function or module)")):
        if not callable(fn):
            raise VarbayesError(f"the {what} must be callable; got {type(fn).__name__} "
                                f"{fn!r:.40}; valid: {valid}")


def _as_arrays(data: Data) -> tuple[torch.Tensor, torch.Tensor]:
    if data is None:
        return torch.zeros(1, 0), torch.zeros(1)
    if isinstance(data, torch.Tensor):
        check_finite(data, "data")
        return data, torch.zeros(len(data))
    if isinstance(data, tuple) and len(data) == 2 and all(isinstance(d, torch.Tensor)
                                                          for d in data):
        if len(data[0]) != len(data[1]):
            raise VarbayesError(f"data x and y differ in length ({len(data[0])} vs "
                                f"{len(data[1])})")
        check_finite(data[0], "data x")
        check_finite(data[1], "data y")
        return data
    raise VarbayesError(f"data must be None, a tensor or a pair of tensors; got "
                        f"{type(data).__name__}")


def _one_step_per_epoch(cfg: TrainConfig) -> TrainConfig:
    values = cfg.to_dict()
    values.update(batch_size=1, val_fraction=0.0)
    return type(cfg).from_values(values)
