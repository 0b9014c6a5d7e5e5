"""Gradient strategies: how the gradient of an expectation passes through one sample site.

Every strategy keeps the site contract of the programmable-VI design (Becker et al., PLDI 2024):
for a site v ~ p_theta followed by the rest of the program g, the estimate returns a value with
E[value] = E_v[g(v)] and a surrogate whose gradient has expectation grad_theta E_v[g(v)].

- `reparam()`: v = rsample() (location-scale, and implicit reparameterisation for Gamma, Beta,
  Dirichlet through torch's `rsample`); the surrogate is g(v).
- `reinforce(baseline=None)`: v = sample() without gradient; surrogate
  g(v) + (g(v) - b).detach() * log p_theta(v); a baseline b (a tensor computed in the program,
  or a module called with no arguments such as `Baseline()`) is fitted by (g(v) - b)^2.
- `enum(parallel=False)`: sum over the finite support, sum_k p_theta(k) g(k) (exact for this
  site; K runs of the rest of the program, or one run broadcasting over the K values).
- `mvd()`: measure-valued derivative. Bernoulli(p): one more run of g at the flipped value,
  without gradient, surrogate g(v) + (p - p.detach()) * ((-1)^v (g(1-v) - g(v))).detach().
  Categorical(pi): d/dlogit_m E[g] = pi_m (g(m) - E[g]); a run at each value m (without
  gradient) gives pi_m (g(m) - g(v)), unbiased for every m.

The strategies are data; `varbayes.infer.estimate` carries them out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.distributions import Bernoulli, Categorical, Distribution

from varbayes.errors import VarbayesError


@dataclass(frozen=True)
class Strategy:
    """Base of the gradient strategies; `kind` names it in messages."""

    kind: str = "?"

    def check(self, name: str, fn: Distribution) -> None:
        """Raise a one-line error when this strategy cannot handle `fn`."""


@dataclass(frozen=True)
class Reparam(Strategy):
    kind: str = "reparam"

    def check(self, name: str, fn: Distribution) -> None:
        if not fn.has_rsample:
            raise VarbayesError(
                f"strategy reparam on site {name!r} needs a distribution with rsample; "
                f"{_dist_name(fn)} has none (use reinforce, enum or mvd)")


@dataclass(frozen=True)
class Reinforce(Strategy):
    kind: str = "reinforce"
    baseline: Any = None

    def baseline_value(self) -> torch.Tensor | None:
        b = self.baseline
        if b is None or isinstance(b, torch.Tensor):
            return b
        return b()


@dataclass(frozen=True)
class Enum(Strategy):
    kind: str = "enum"
    parallel: bool = False

    def check(self, name: str, fn: Distribution) -> None:
        if not fn.has_enumerate_support:
            raise VarbayesError(
                f"strategy enum on site {name!r} needs a finite discrete distribution; "
                f"{_dist_name(fn)} has no enumerable support (use reparam or reinforce)")


@dataclass(frozen=True)
class MVD(Strategy):
    kind: str = "mvd"

    def check(self, name: str, fn: Distribution) -> None:
        if not isinstance(fn, (Bernoulli, Categorical)):
            raise VarbayesError(
                f"strategy mvd on site {name!r} supports Bernoulli and Categorical; got "
                f"{_dist_name(fn)} (use reinforce or enum)")


def reparam() -> Reparam:
    """Reparameterisation (explicit, or implicit for Gamma/Beta/Dirichlet via rsample)."""
    return Reparam()


def reinforce(baseline: torch.Tensor | nn.Module | None = None) -> Reinforce:
    """Score function; `baseline` is a tensor from the program or a module (e.g. `Baseline()`)."""
    if baseline is not None and not (isinstance(baseline, torch.Tensor) or callable(baseline)):
        raise VarbayesError(f"a REINFORCE baseline must be a tensor or a module; got "
                            f"{type(baseline).__name__}")
    return Reinforce(baseline=baseline)


def enum(parallel: bool = False) -> Enum:
    """Exact enumeration of a finite discrete site: the rest of the program runs once per
    value (sequential), or once with all values along a new batch dim (`parallel=True`:
    faster, but the program must broadcast over a new leading dimension)."""
    return Enum(parallel=parallel)


def mvd() -> MVD:
    """Measure-valued derivative for Bernoulli and Categorical sites."""
    return MVD()


class Baseline(nn.Module):
    """A learnable scalar baseline for `reinforce(baseline=Baseline())`."""

    def __init__(self, init: float = 0.0) -> None:
        super().__init__()
        self.value = nn.Parameter(torch.tensor(float(init)))

    def forward(self) -> torch.Tensor:
        return self.value


_REPARAM, _REINFORCE = Reparam(), Reinforce()


def default_strategy(fn: Distribution) -> Strategy:
    """reparam when the distribution has rsample, REINFORCE otherwise."""
    return _REPARAM if fn.has_rsample else _REINFORCE


def resolve(name: str, fn: Distribution, in_program: Any, override: Any) -> Strategy:
    """The strategy of a site: the estimate's override, else the program's, else the default;
    checked against the distribution."""
    chosen = override if override is not None else in_program
    if chosen is None:
        return default_strategy(fn)
    if not isinstance(chosen, Strategy):
        raise VarbayesError(f"strategy for site {name!r} must be reparam(), reinforce(), enum() "
                            f"or mvd(); got {chosen!r}")
    chosen.check(name, fn)
    return chosen


def _dist_name(fn: Distribution) -> str:
    return type(fn).__name__
