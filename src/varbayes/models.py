"""Trained supervised models: predict, save as safetensors plus JSON, and load.

`SupervisedModel` wraps any network whose forward pass may be random (Bayesian layers,
dropout, an ensemble) and turns S forward passes into the predictive distribution:
class probabilities for classifiers, a predictive mean and variance (original units) for
regressors. `varbayes.load(directory)` reads `model.json`, asks the method that wrote it to
rebuild the network, and loads `model.safetensors` onto the CPU.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from varbayes.errors import VarbayesError, first_line
from varbayes.io import atomic_write_json, load_tensors, read_json, save_tensors
from varbayes.nn.heads import predictive_from_samples

FORMAT = "varbayes-model-1"


class SupervisedModel:
    """A trained classifier or regressor; `predict(x)` averages `n_samples` forward passes.

    Inputs are in the representation the dataset loader returns (standardised features).
    `sampler(network, x, n)` returns (n, N, K) outputs; the default calls the network n
    times in its current mode (train mode keeps dropout/weight noise on).
    """

    def __init__(
        self,
        network: nn.Module,
        meta: dict[str, Any],
        n_samples: int = 1,
        sampler: Callable[[nn.Module, torch.Tensor, int], torch.Tensor] | None = None,
        stochastic: bool = False,
    ) -> None:
        _check_meta(meta, n_samples)
        self.network = network
        self.meta = dict(meta)
        self.n_samples = n_samples
        self.sampler = sampler
        self.stochastic = stochastic

    @property
    def task(self) -> str:
        return self.meta["task"]

    def sample_outputs(self, x: torch.Tensor, n_samples: int | None = None) -> torch.Tensor:
        """Raw network outputs for `n_samples` posterior draws, shape (S, N, K)."""
        n = n_samples or self.n_samples
        self.network.train(self.stochastic)
        with torch.no_grad():
            if self.sampler is not None:
                return self.sampler(self.network, x, n)
            return torch.stack([self.network(x) for _ in range(n)])

    def predict(
        self, x: Any, n_samples: int | None = None, batch_size: int = 4096
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Class probabilities (N, C), or (mean, variance) in original units for regression."""
        for name, v in (("n_samples", 1 if n_samples is None else n_samples),
                        ("batch_size", batch_size)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise VarbayesError(f"{name} must be a positive integer; got {v!r}")
        x = self._check_input(x)
        parts = [predictive_from_samples(self.sample_outputs(x[i:i + batch_size], n_samples),
                                         self.task) for i in range(0, len(x), batch_size)]
        if self.task == "classification":
            return torch.cat(parts)
        mean = torch.cat([p[0] for p in parts])
        var = torch.cat([p[1] for p in parts])
        y_mean, y_std = self.meta.get("y_mean", 0.0), self.meta.get("y_std", 1.0)
        return mean * y_std + y_mean, var * y_std**2

    def save(self, directory: str | Path) -> None:
        """Write model.safetensors (the state dict) and model.json (how to rebuild it)."""
        directory = Path(directory)
        save_tensors(directory / "model.safetensors", self.network.state_dict())
        atomic_write_json(directory / "model.json",
                          {"format": FORMAT, "n_samples": self.n_samples,
                           "stochastic": self.stochastic, **self.meta})

    def _check_input(self, x: Any) -> torch.Tensor:
        from varbayes.data import check_arrays

        shape = tuple(self.meta.get("input_shape", ()))
        x, _ = check_arrays(np.asarray(x) if not isinstance(x, torch.Tensor) else x,
                            input_shape=shape or None)
        return x


def _check_meta(meta: dict[str, Any], n_samples: Any) -> None:
    """The fields `predict` reads, checked once (a damaged model.json fails at load, not later)."""
    from varbayes.data.validate import TASKS

    def real(v: Any) -> bool:
        return isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)

    shape = meta.get("input_shape", ())
    problems = [
        (meta.get("task") not in TASKS, f"task {meta.get('task')!r}",
         "classification or regression"),
        (isinstance(n_samples, bool) or not isinstance(n_samples, int) or n_samples < 1,
         f"n_samples {n_samples!r}", "a positive integer"),
        (not isinstance(shape, (list, tuple)) or not all(
            isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in shape),
         f"input_shape {shape!r}", "a list of positive integers"),
        (not real(meta.get("y_mean", 0.0)), f"y_mean {meta.get('y_mean')!r}", "a finite number"),
        (not real(meta.get("y_std", 1.0)) or meta.get("y_std", 1.0) <= 0,
         f"y_std {meta.get('y_std')!r}", "a positive number"),
    ]
    for bad, what, valid in problems:
        if bad:
            raise VarbayesError(f"model description has {what}; valid: {valid}")


def read_model(directory: str | Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """(meta, tensors) of a saved model folder; refuses anything but safetensors + JSON."""
    directory = Path(directory)
    if not directory.is_dir():
        raise VarbayesError(f"{directory} is not a folder with a saved model")
    meta = read_json(directory / "model.json")
    fmt = meta.get("format") if isinstance(meta, dict) else None
    if fmt != FORMAT:
        raise VarbayesError(f"{directory / 'model.json'} is not a varbayes model "
                            f"(format {fmt!r}, expected {FORMAT!r})")
    return meta, load_tensors(directory / "model.safetensors")


def load(directory: str | Path) -> Any:
    """Restore a model saved by `varbayes run` (or `model.save`) on the CPU."""
    from varbayes import registry

    meta, tensors = read_model(directory)
    method = meta.get("method")
    if not isinstance(method, str):
        raise VarbayesError(f"{Path(directory) / 'model.json'} names no method (field 'method' "
                            f"is {method!r}); valid: one of {', '.join(registry.names())}")
    module = registry.module(method)
    if not hasattr(module, "load_model"):
        raise VarbayesError(f"method {method} does not save loadable models")
    try:
        return module.load_model(meta, tensors)
    except VarbayesError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError, IndexError, RuntimeError) as e:
        # a hand-edited or damaged model.json: say so in one line, not deep in a rebuild
        what = f"missing entry {e}" if isinstance(e, KeyError) else \
            f"malformed entry ({first_line(e)})"
        raise VarbayesError(f"{directory} does not hold a {method} model that can be rebuilt: "
                            f"{what}; valid: model.json and model.safetensors as saved") from None

def restore_network(network: nn.Module, tensors: dict[str, torch.Tensor]) -> nn.Module:
    """Load a state dict with a one-line error when the file does not fit the network."""
    try:
        network.load_state_dict(tensors)
    except RuntimeError as e:
        first = str(e).splitlines()[0]
        raise VarbayesError(f"model file does not match its network description: {first}") \
            from None
    return network
