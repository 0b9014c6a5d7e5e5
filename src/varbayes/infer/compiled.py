"""An opt-in compiled gradient step: the whole `estimate(...).loss()` captured by `torch.compile`.

The eager path runs the handlers, traces and estimator in Python on every step (about 0.1 ms
of a small model's step). Once a program's structure is known, none of that Python changes
from step to step: `compile_loss` hands the same function, `estimate(objective, model, guide,
*args, ...).loss()`, to `torch.compile` with `fullgraph=True`, so TorchDynamo runs the
handlers once while tracing and keeps only the tensor operations (the model's, the guide's
and the objective's, with their backward through AOTAutograd). There is no second
implementation of any objective or strategy: what is compiled is the eager code itself.

Same values and gradients as the eager path on the same random numbers: the default backend
is Inductor with `fallback_random=True` (its draws are torch's own `randn`/`multinomial` from
the global generator, not Inductor's own generator), so a compiled step and an eager step
from one seed agree to float rounding (Inductor fuses and reorders arithmetic).

Caveats. The first call compiles (seconds to a minute on a CPU; `aot_eager` compiles in
seconds but runs slower than eager); a new input shape (a last, smaller batch) compiles
again, after which TorchDynamo marks the changed dims dynamic; a program whose Python
branches on tensor values, or a strategy that re-executes the program (sequential
enumeration, MVD), cannot be captured as one graph: `compile_loss` then falls back to the
eager path with a one-line warning (`fallback=False`: a one-line `VarbayesError` instead).
Errors in the program itself (unknown site, bad shape) surface as the eager path's errors.
"""

from __future__ import annotations

import functools
import types
import warnings
from collections.abc import Callable, Mapping
from typing import Any

import torch

from varbayes.errors import VarbayesError
from varbayes.infer.estimate import _branches, estimate
from varbayes.infer.objectives import Objective
from varbayes.infer.strategies import Strategy

BACKENDS = ("inductor", "aot_eager", "eager")
"""Backends `compile_loss` accepts by name (or any callable backend of `torch.compile`)."""


class CompiledLoss:
    """`loss = step(*args)`: minus the objective's estimate on one batch (what
    `estimate(...).loss()` returns), computed by a captured graph; `loss.backward()` runs its
    compiled backward. `compiled` is None before the first call, then whether the capture
    succeeded; `reason` says why it did not."""

    def __init__(self, objective: Objective, model: Callable[..., Any],
                 guide: Callable[..., Any], *, strategies: Mapping[str, Strategy] | None,
                 plates: int, data_size: int | None, samples: int, backend: Any,
                 mode: str | None, options: Mapping[str, Any] | None,
                 dynamic: bool | None, fallback: bool) -> None:
        self.eager = functools.partial(
            _loss, objective, model, guide, strategies=dict(strategies or {}), plates=plates,
            data_size=data_size, samples=samples)
        self.fallback = fallback
        self.compiled: bool | None = None
        self.reason: str | None = None
        branching = sorted(n for n, s in (strategies or {}).items()
                           if isinstance(s, Strategy) and _branches(s))
        if branching:
            self._give_up(f"site {branching[0]!r} re-executes the program (sequential "
                          "enumeration or MVD), which one graph cannot hold")
            self._compiled = self.eager
            return
        opts = dict(options or {})
        if backend == "inductor":
            opts.setdefault("fallback_random", True)  # torch's own draws: eager's numbers
        self._compiled = torch.compile(_own_code(self.eager), fullgraph=True, backend=backend,
                                       mode=mode, options=opts or None, dynamic=dynamic)

    def __call__(self, *args: Any) -> torch.Tensor:
        if self.compiled is False:
            return self.eager(*args)
        try:
            loss = self._compiled(*args)
        except VarbayesError:
            raise
        except Exception as e:  # noqa: BLE001 - any failure to capture or compile
            loss = self.eager(*args)  # a genuine error of the program raises here, as eager
            self._give_up(_first_line(e))
            return loss
        self.compiled = True
        return loss

    def _give_up(self, reason: str) -> None:
        self.compiled, self.reason = False, reason
        message = f"compiled step: cannot capture the program ({reason})"
        if not self.fallback:
            raise VarbayesError(message)
        warnings.warn(message + "; running the eager path", RuntimeWarning, stacklevel=3)


def compile_loss(
    objective: Objective,
    model: Callable[..., Any],
    guide: Callable[..., Any],
    *,
    strategies: Mapping[str, Strategy] | None = None,
    plates: int = 0,
    data_size: int | None = None,
    samples: int = 1,
    backend: str | Callable[..., Any] = "inductor",
    mode: str | None = None,
    options: Mapping[str, Any] | None = None,
    dynamic: bool | None = None,
    fallback: bool = True,
) -> CompiledLoss:
    """The loss of `estimate(objective, model, guide, *args, strategies=..., plates=...,
    data_size=..., samples=...)`, compiled: `compile_loss(...)(x).backward()` is one
    gradient step's forward and backward. backend, mode, options, dynamic: those of
    `torch.compile` (Inductor by default, with `fallback_random=True`). fallback: when the
    program cannot be captured, warn and run eagerly (True) or raise (False)."""
    if isinstance(backend, str) and backend not in BACKENDS:
        raise VarbayesError(f"compile backend must be one of {', '.join(BACKENDS)} or a "
                            f"callable; got {backend!r}")
    return CompiledLoss(objective, model, guide, strategies=strategies, plates=plates,
                        data_size=data_size, samples=samples, backend=backend, mode=mode,
                        options=options, dynamic=dynamic, fallback=fallback)


def _loss(objective: Objective, model: Callable[..., Any], guide: Callable[..., Any],
          *args: Any, strategies: Mapping[str, Strategy], plates: int,
          data_size: int | None, samples: int) -> torch.Tensor:
    return estimate(objective, model, guide, *args, strategies=strategies, plates=plates,
                    data_size=data_size, samples=samples).loss()


def _own_code(loss: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
    """`loss` behind a function with its own code object: TorchDynamo keeps compiled graphs
    (and its limit of 8 recompiles) per code object, so each compiled loss gets its own
    instead of sharing one with every other."""

    def step(*args: Any) -> torch.Tensor:
        return loss(*args)

    return types.FunctionType(step.__code__.replace(), step.__globals__, step.__name__, None,
                              step.__closure__)


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}"[:300]
