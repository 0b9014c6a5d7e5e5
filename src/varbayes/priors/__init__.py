"""Priors over datasets for amortized inference, behind one interface (`DatasetPrior`).

Built in: `GPPrior` (fixed hyperparameters), `HyperGPPrior` (Gamma hyperpriors, Matern-5/2),
`MLPPrior` (random networks). `build_prior(describe_dict)` rebuilds a built-in prior from the
JSON its `describe()` returns (how saved PFNs remember their prior).
"""

from __future__ import annotations

from typing import Any

from varbayes.errors import VarbayesError, one_of
from varbayes.priors.base import DatasetPrior
from varbayes.priors.gp import (
    GPPrior,
    HyperGPPrior,
    gp_log_marginal,
    gp_predictive,
    kernel_matrix,
)
from varbayes.priors.mlp import MLPPrior

PRIORS = ("gp", "gp-hyper", "mlp")


def build_prior(spec: dict[str, Any]) -> DatasetPrior:
    """A built-in prior from its `describe()` dictionary."""
    spec = dict(spec)
    name = spec.pop("name", None)
    try:
        if name == "gp":
            return GPPrior(**spec)
        if name == "gp-hyper":
            return HyperGPPrior(**{k: tuple(v) if isinstance(v, list) else v
                                   for k, v in spec.items()})
        if name == "mlp":
            return MLPPrior(**spec)
    except TypeError as e:
        raise VarbayesError(f"prior settings {spec} do not fit prior {name!r}: {e}") from None
    raise one_of("prior", name, list(PRIORS))


__all__ = ["DatasetPrior", "GPPrior", "HyperGPPrior", "MLPPrior", "PRIORS", "build_prior",
           "gp_log_marginal", "gp_predictive", "kernel_matrix"]
