"""Programmable variational inference: sample sites with per-site gradient strategies,
objectives as programs, and a loop that optimises any of them (Becker et al., PLDI 2024).

A model and a guide are Python callables that call `sample(name, distribution, obs=...)`.
`estimate(program, ...)` runs an expectation-valued program (an objective) and returns its
value with an unbiased gradient surrogate, carrying out each site's strategy (`reparam`,
`reinforce`, `enum`, `mvd`); `fit(objective, model, guide, data)` maximises an objective with
the shared training engine; `compile_loss` (or `fit(..., compile=True)`) is the same step
captured by `torch.compile`. The ELBO of every method is `elbo_terms` / `elbo_loss`.
"""

from varbayes.infer.compiled import CompiledLoss, compile_loss
from varbayes.infer.elbo import elbo_loss, elbo_terms
from varbayes.infer.estimate import Estimate, estimate
from varbayes.infer.fit import ObjectiveLearner, evaluate, fit
from varbayes.infer.objectives import (
    SIRResult,
    diwhvi,
    elbo,
    hvi,
    iwelbo,
    iwhvi,
    rws,
    sir,
)
from varbayes.infer.primitives import (
    Marginal,
    density,
    detached,
    log_joint,
    log_weight,
    logmeanexp,
    marginal,
    simulate,
)
from varbayes.infer.sites import Trace, condition, particles, sample, scope
from varbayes.infer.strategies import Baseline, enum, mvd, reinforce, reparam

__all__ = [
    "Baseline", "CompiledLoss", "Estimate", "Marginal", "ObjectiveLearner", "SIRResult",
    "Trace", "compile_loss", "condition", "density", "detached", "diwhvi", "elbo", "elbo_loss",
    "elbo_terms", "enum", "estimate", "evaluate", "fit", "hvi", "iwelbo", "iwhvi", "log_joint",
    "log_weight", "logmeanexp", "marginal", "mvd", "particles", "reinforce", "reparam", "rws",
    "sample", "scope", "simulate", "sir",
]
