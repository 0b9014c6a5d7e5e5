"""The Dataset every varbayes method trains and evaluates on."""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import torch

from varbayes.data.ood import ood_inputs
from varbayes.data.splits import random_split, stratified_split
from varbayes.data.validate import TASKS, check_arrays
from varbayes.errors import VarbayesError, one_of

Task = Literal["classification", "regression"]


@dataclass(eq=False, repr=False)
class Dataset:
    """A train/test pair of tensors plus what a method needs to know about them.

    Inputs are float32 with shape (n, *input_shape). Targets are int64 class labels in
    [0, n_classes) for classification, float32 of shape (n,) for regression. Regression
    targets are standardized with training statistics: `y_mean` and `y_std` map them (and
    predictions) back to original units. Inputs that were standardized record it in
    `meta["x_mean"]`/`meta["x_std"]` (broadcastable against one example); see `standardize`.
    `split` is the index of the train/test partition for datasets that have several, else None.
    Construction runs every array through `check_arrays`, so a Dataset is always valid.
    """

    name: str
    task: Task
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    n_classes: int | None
    input_shape: tuple[int, ...]
    y_mean: float = 0.0
    y_std: float = 1.0
    split: int | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise one_of("task", self.task, TASKS)
        if self.task == "classification":
            if isinstance(self.n_classes, bool) or not isinstance(self.n_classes, numbers.Integral):
                raise VarbayesError(f"{self.name}: classification needs n_classes, an integer")
            self.n_classes = int(self.n_classes)
        elif self.n_classes is not None:
            raise VarbayesError(f"{self.name}: n_classes must be None for regression")
        if not (math.isfinite(self.y_mean) and math.isfinite(self.y_std) and self.y_std > 0):
            raise VarbayesError(f"{self.name}: y_mean must be finite and y_std finite and > 0")
        self.input_shape = tuple(int(s) for s in self.input_shape)
        for part in ("train", "test"):
            x, y = check_arrays(
                getattr(self, f"x_{part}"),
                getattr(self, f"y_{part}"),
                task=self.task,
                n_classes=self.n_classes,
                input_shape=self.input_shape,
                name=f"{self.name} x_{part}",
            )
            if self.task == "regression" and y.ndim != 1:
                raise VarbayesError(
                    f"{self.name} y_{part} has shape {tuple(y.shape)}; "
                    f"valid: 1-D targets of shape ({len(y)},)"
                )
            setattr(self, f"x_{part}", x)
            setattr(self, f"y_{part}", y)

    def __repr__(self) -> str:
        classes = f", n_classes={self.n_classes}" if self.n_classes is not None else ""
        return (
            f"Dataset(name={self.name!r}, task={self.task!r}, n_train={self.n_train}, "
            f"n_test={self.n_test}, input_shape={self.input_shape}{classes}, split={self.split})"
        )

    @property
    def n_train(self) -> int:
        return len(self.x_train)

    @property
    def n_test(self) -> int:
        return len(self.x_test)

    def validation_split(self, frac: float = 0.1, seed: int = 0) -> tuple[Dataset, Dataset]:
        """Hold out round(frac * n_train) training examples for tuning; the test part is untouched.

        Returns (fit, val), two Datasets with the same reduced training part:
        - fit: this dataset with the held-out examples removed from training; its test part is
          the real test part (report final numbers on it).
        - val: its test part (x_test/y_test) is the held-out validation examples, so any
          train-then-evaluate code tunes on `val` without ever seeing the test set.
        The split is stratified by class for classification and seeded by `seed`. Scaling
        statistics (y_mean, y_std, meta["x_mean"/"x_std"]) stay those of the full training part.
        """
        if isinstance(frac, bool) or not isinstance(frac, numbers.Real) or not 0 < frac < 1:
            raise VarbayesError(f"validation fraction must be a number in (0, 1), got {frac!r}")
        n_val = int(round(frac * self.n_train))
        if not 1 <= n_val <= self.n_train - 1:
            raise VarbayesError(
                f"validation fraction {frac} of {self.n_train} training examples leaves "
                f"{n_val} validation examples; valid: between 1 and {self.n_train - 1}"
            )
        if self.task == "classification":
            keep, held = stratified_split(self.y_train.cpu().numpy(), n_val, seed)
        else:
            keep, held = random_split(self.n_train, n_val, seed)
        keep_t, held_t = torch.from_numpy(keep), torch.from_numpy(held)
        x_fit, y_fit = self.x_train[keep_t], self.y_train[keep_t]
        info = {"frac": float(frac), "seed": int(seed), "n_validation": n_val}
        fit = replace(
            self, x_train=x_fit, y_train=y_fit,
            meta={**self.meta, "validation": {**info, "role": "fit"}},
        )  # fmt: skip
        val = replace(
            self, x_train=x_fit, y_train=y_fit,
            x_test=self.x_train[held_t], y_test=self.y_train[held_t],
            meta={**self.meta, "validation": {**info, "role": "validation"}},
        )  # fmt: skip
        return fit, val

    def ood(self) -> torch.Tensor | None:
        """Out-of-distribution inputs shaped like x_test (for AUROC/AUPR), or None for
        regression. What they are is described in `meta["ood"]` and `varbayes.data.ood`."""
        return ood_inputs(self)

    def standardize(self, x_raw: Any) -> torch.Tensor:
        """Raw inputs -> this dataset's input space, `(x_raw - x_mean) / x_std` (identity for
        datasets stored in raw units)."""
        x = torch.as_tensor(x_raw)
        mean, std = self._input_scaling(x.device)
        return ((x.to(torch.float64) - mean) / std).to(torch.float32)

    def unstandardize(self, x: Any) -> torch.Tensor:
        """This dataset's inputs -> raw units, `x * x_std + x_mean`."""
        x = torch.as_tensor(x)
        mean, std = self._input_scaling(x.device)
        return (x.to(torch.float64) * std + mean).to(torch.float32)

    def unit_pixels(self, x: Any) -> torch.Tensor:
        """This dataset's image inputs -> pixel intensities in [0, 1] (raw units divided by
        `meta["pixel_max"]`), e.g. for a Bernoulli likelihood. Datasets whose raw pixels are
        integer levels (`meta["integer_pixels"]`, digits: 0..16) are rounded back to those
        levels, so a pixel that is 0 in the source is exactly 0 here."""
        if "pixel_max" not in self.meta:
            raise VarbayesError(f"unit_pixels applies to image datasets; {self.name} has no "
                                "pixel range (meta['pixel_max'])")
        raw = self.unstandardize(x)
        if self.meta.get("integer_pixels"):
            raw = raw.round()
        return (raw / float(self.meta["pixel_max"])).clamp(0.0, 1.0)

    def to_original_units(self, y: torch.Tensor) -> torch.Tensor:
        """Standardized regression targets or predictive means -> original units."""
        self._require_regression("to_original_units")
        return y * self.y_std + self.y_mean

    def var_to_original_units(self, var: torch.Tensor) -> torch.Tensor:
        """A predictive variance in standardized units -> original units (times y_std**2)."""
        self._require_regression("var_to_original_units")
        return var * self.y_std**2

    def nll_to_original_units(self, nll: torch.Tensor | float) -> torch.Tensor | float:
        """A per-example negative log density of standardized targets -> original units
        (plus log y_std, the change of variables)."""
        self._require_regression("nll_to_original_units")
        return nll + math.log(self.y_std)

    def _input_scaling(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        mean = torch.as_tensor(self.meta.get("x_mean", 0.0), dtype=torch.float64, device=device)
        std = torch.as_tensor(self.meta.get("x_std", 1.0), dtype=torch.float64, device=device)
        return mean, std

    def _require_regression(self, what: str) -> None:
        if self.task != "regression":
            raise VarbayesError(f"{what} applies to regression data; {self.name} is {self.task}")
