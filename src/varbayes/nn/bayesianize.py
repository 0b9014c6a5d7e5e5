"""`bayesianize(model)`: turn the Linear / Conv1d / Conv2d layers of any nn.Module into
mean-field Bayesian layers, in place.

Works on any module tree (non-Sequential models with residual connections included): each
layer is replaced where its parent holds it, so the parent's forward code is untouched. The
posterior means start at the layer's current weights; biases, BatchNorm and every other
module stay deterministic by default. The settings are plain JSON (`BayesSettings.to_dict`),
so a saved model is rebuilt by building its network, bayesianizing it with the recorded
settings, and loading the weights.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from varbayes.errors import VarbayesError, one_of
from varbayes.nn.meanfield import (
    NOISES,
    SIGMA_PARAMS,
    MeanFieldConv1d,
    MeanFieldConv2d,
    MeanFieldLayer,
    MeanFieldLinear,
)
from varbayes.nn.priors import GaussianPrior, Prior, prior_from_dict


@dataclass(frozen=True)
class BayesSettings:
    """How `bayesianize` converts a network (recorded in model.json as `to_dict()`)."""

    prior: Prior = field(default_factory=GaussianPrior)
    init_sigma: float = 0.01
    exclude: tuple[str, ...] = ()
    noise: str = "lrt"
    sigma_param: str = "softplus"
    bayesian_bias: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.prior, dict):
            object.__setattr__(self, "prior", prior_from_dict(self.prior))
        if isinstance(self.exclude, str):
            object.__setattr__(self, "exclude", (self.exclude,))
        object.__setattr__(self, "exclude", tuple(self.exclude))
        if not (isinstance(self.init_sigma, (int, float)) and self.init_sigma > 0):
            raise VarbayesError(f"init_sigma must be > 0; got {self.init_sigma!r}")
        if self.noise not in NOISES:
            raise one_of("noise", self.noise, NOISES)
        if self.sigma_param not in SIGMA_PARAMS:
            raise one_of("sigma_param", self.sigma_param, SIGMA_PARAMS)

    def to_dict(self) -> dict[str, Any]:
        return {"prior": self.prior.to_dict(), "init_sigma": float(self.init_sigma),
                "exclude": list(self.exclude), "noise": self.noise,
                "sigma_param": self.sigma_param, "bayesian_bias": self.bayesian_bias}


def bayesianize(
    model: nn.Module,
    prior: Prior | dict[str, Any] | None = None,
    init_sigma: float = 0.01,
    exclude: Iterable[str] | str = (),
    *,
    noise: str = "lrt",
    sigma_param: str = "softplus",
    bayesian_bias: bool = False,
) -> nn.Module:
    """Replace every nn.Linear / nn.Conv1d / nn.Conv2d in `model` by its mean-field version.

    `exclude` holds qualified module names or fnmatch patterns (`"fc"`, `"blocks.0.*"`); a
    name also excludes everything inside that module. A pattern that matches no layer is an
    error (a typo would otherwise silently leave the layer Bayesian). Returns `model` (or the
    new layer when `model` itself is a Linear/Conv layer).
    """
    s = BayesSettings(prior if prior is not None else GaussianPrior(), init_sigma,
                      tuple([exclude] if isinstance(exclude, str) else exclude), noise,
                      sigma_param, bayesian_bias)
    if _convertible(model):
        if s.exclude:
            raise VarbayesError("exclude has no meaning when the model is a single layer")
        return _convert(model, s)
    unknown = [p for p in s.exclude if not any(_excluded(n, p) for n, _ in model.named_modules())]
    if unknown:
        valid = ", ".join(n for n, m in model.named_modules() if _convertible(m)) or "(none)"
        raise VarbayesError(f"exclude pattern {unknown[0]!r} matches no module; layers: {valid}")
    targets = {id(m): m for name, m in model.named_modules()
               if _convertible(m) and not any(_excluded(name, p) for p in s.exclude)}
    converted: dict[int, MeanFieldLayer] = {}
    for parent in list(model.modules()):
        for child_name, child in list(parent.named_children()):
            if id(child) in targets:
                if id(child) not in converted:  # a shared layer stays shared
                    converted[id(child)] = _convert(child, s)
                setattr(parent, child_name, converted[id(child)])
    return model


def _convertible(m: nn.Module) -> bool:
    return type(m) in (nn.Linear, nn.Conv1d, nn.Conv2d)


def _excluded(name: str, pattern: str) -> bool:
    """Whether module `name` or a module containing it matches `pattern`."""
    parts = name.split(".")
    return bool(name) and any(fnmatch.fnmatchcase(".".join(parts[:i]), pattern)
                              for i in range(1, len(parts) + 1))


@torch.no_grad()
def _convert(layer: nn.Module, s: BayesSettings) -> MeanFieldLayer:
    w = layer.weight
    kw: dict[str, Any] = {"prior": s.prior, "init_sigma": s.init_sigma,
                          "sigma_param": s.sigma_param, "noise": s.noise,
                          "bayesian_bias": s.bayesian_bias, "device": w.device, "dtype": w.dtype}
    has_bias = layer.bias is not None
    new: MeanFieldLayer
    if isinstance(layer, nn.Linear):
        new = MeanFieldLinear(layer.in_features, layer.out_features, bias=has_bias, **kw)
    else:
        if layer.padding_mode != "zeros":
            raise VarbayesError(f"bayesianize supports zero padding only; {layer} uses "
                                f"padding_mode={layer.padding_mode!r} (exclude it)")
        cls = MeanFieldConv1d if isinstance(layer, nn.Conv1d) else MeanFieldConv2d
        new = cls(layer.in_channels, layer.out_channels, layer.kernel_size,
                  stride=layer.stride, padding=layer.padding, dilation=layer.dilation,
                  groups=layer.groups, bias=has_bias, **kw)
    new.weight_mu.copy_(w)
    if has_bias:
        (new.bias_mu if s.bayesian_bias else new.bias).copy_(layer.bias)
    new.train(layer.training)
    return new
