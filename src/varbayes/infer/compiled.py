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

Guards. Before every call TorchDynamo checks guards on everything the traced Python read. The
handlers read the library's own modules, classes and functions through several modules (each
`isinstance(x, torch.Tensor)`, each class in a type set), which made a guard tree of about 440
lines on a VAE step, 0.2-0.5 ms a call on this CPU (more with other Python between calls).
`library_guards` drops exactly the guards on those fixed objects and on Python's builtins
(see its doc; 252 lines on that VAE step) and keeps every guard on tensors, shapes, dtypes,
parameters, module modes and attributes, the program's own objects and globals, torch's
global state and the library's mutable state (the handler stack, the scopes); a user
`guard_filter_fn` in `options` replaces it.
"""

from __future__ import annotations

import builtins
import functools
import re
import sys
import types
import warnings
from collections.abc import Callable, Mapping, Sequence
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
        opts.setdefault("guard_filter_fn", library_guards)
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
    `torch.compile` (Inductor by default, with `fallback_random=True` and
    `guard_filter_fn=library_guards`; `options={"guard_filter_fn": None}` keeps every guard).
    fallback: when the program cannot be captured, warn and run eagerly (True) or raise
    (False)."""
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


# ---------------------------------------------------------------------------------------------
# guards


_LIBRARY = re.compile(r"G\['__import_(varbayes(?:_dot_\w+?)*)'\]((?:\.\w+)*)$")
"""A source rooted at a global of one of varbayes's modules, followed by plain attributes."""

_FIXED = (types.ModuleType, type, types.FunctionType, types.BuiltinFunctionType,
          types.MethodDescriptorType, types.WrapperDescriptorType)
"""Objects whose identity is all a guard checks of them: modules, classes, functions."""


def library_guards(entries: Sequence[Any]) -> list[bool]:
    """The `guard_filter_fn` of `compile_loss`: keep every guard but those on varbayes's own
    fixed module-level objects and on Python's builtins, which only monkeypatching the
    library or `builtins` could change:

    - identity guards (module, class, function; a tuple or frozenset of classes) on objects
      reached through a varbayes module's globals (`varbayes.infer.sites.densities`, each
      module's `torch`, `Normal`, ...);
    - constants a varbayes class defines itself (`recording._has_process`; not inherited
      ones such as torch's `Distribution._validate_args`, which torch's
      `set_default_validate_args` changes);
    - aliasing guards ("x is y") between two global paths to one module, class or function
      (implied by the identity guards on each path), between two module-level names of
      varbayes modules (the scope stack imported by several modules), and between two
      arguments of the compiled loss's own fixed partial or the objects they are bound to
      (a model and a guide that are methods of one module); not between attributes of
      those (a submodule can be replaced);
    - keyword defaults of varbayes's functions (`sample(..., obs=None)`), also where a
      program reaches the function through its own module;
    - identity guards on Python's builtins (`len`, `isinstance`, `dict`, ...) that still hold
      the builtins module's own object (only monkeypatching `builtins` could change them).

    Kept: tensor guards (shape, dtype, device, strides, requires_grad, parameters), nn.Module
    attributes and training mode, the program's own globals and objects, module-level
    constants and mutable state of varbayes (the handler stack, the scopes, whether a
    program has branched), torch's global state, torch's functions reached through torch's
    modules. (The library binds the torch functions its traced code calls, `addcmul`,
    `arange`, `is_compiling`, ..., as its own module globals, so their guards are the
    library's.)"""
    return [not _droppable(e) for e in entries]


def _droppable(e: Any) -> bool:
    kind, name = e.guard_type, e.name
    if kind == "DUPLICATE_INPUT":
        other = getattr(e.orig_guard.create_fn, "keywords", {}).get("source_b")
        if other is None:
            return False
        b = other.name() if callable(other.name) else other.name
        b = re.sub(r"L\[\s*['\"](.*?)['\"]\s*\]", r"\1", b)  # L['loss'] -> loss
        if _OWN_ARGUMENT.match(name) and _OWN_ARGUMENT.match(b):
            return True  # the partial's argument tuple and bound methods' __self__: immutable
        if _LIBRARY_GLOBAL.match(name) and _LIBRARY_GLOBAL.match(b):
            return True  # one module-level object imported by name into two varbayes modules
        # a module, class or function reached by two global paths: each path keeps (or, for
        # varbayes's own, drops) its identity guard, which implies the aliasing
        return e.is_global and b.startswith(_GLOBAL) and e.has_value and _fixed(e.value)
    if not e.is_global:
        return False
    if kind == "CONSTANT_MATCH" and (m := _KWDEFAULT.match(name)) is not None:
        fn = _resolve(m.group(1))  # a keyword default of one of varbayes's functions
        return (isinstance(fn, types.FunctionType)
                and getattr(fn, "__module__", "").startswith("varbayes."))
    if (m := _BUILTIN.match(name)) is not None:  # Python's own len, isinstance, ...
        return (kind in _IDENTITY_GUARDS and e.has_value
                and e.value is getattr(builtins, m.group(1), _MISSING) and _fixed(e.value))
    if _LIBRARY_ROOT not in name:  # the compiled loss's own globals (`estimate`)
        return (name.startswith("G['") and kind in _IDENTITY_GUARDS and e.has_value
                and isinstance(e.value, (types.FunctionType, type))
                and getattr(e.value, "__module__", "").startswith("varbayes."))
    if kind == "CONSTANT_MATCH":  # a constant varbayes itself set on one of its classes
        owner, attr = _owner(name), name.rsplit(".", 1)[-1]
        return (isinstance(owner, type) and owner.__module__.startswith("varbayes.")
                and attr in owner.__dict__)
    return kind in _IDENTITY_GUARDS and e.has_value and _fixed(e.value)


_OWN_ARGUMENT = re.compile(r"loss\.args\[\d+\](\.__self__)?$")
"""An argument of the compiled loss's own partial, or the object a bound-method argument is
bound to: neither can change for the life of the compiled loss (an attribute of one can)."""

_LIBRARY_GLOBAL = re.compile(r"G\['__import_varbayes_dot_\w+'\]\.\w+$")
"""A module-level name of a varbayes module (rebinding one is monkeypatching the library)."""

_LIBRARY_ROOT = "G['__import_varbayes_dot_"

_BUILTIN = re.compile(r"G\['__builtins_dict___\d+'\]\['(\w+)'\]$")
"""A name looked up in Python's builtins (`len`, `isinstance`, ...) by the traced code."""

_MISSING = object()

_KWDEFAULT = re.compile(r"(G\['__import_\w+'\](?:\.\w+)+)\.__kwdefaults__\['\w+'\]$")
"""A keyword default of a function reached through a module's globals
(`infer.sample`'s `obs=None`, read wherever a program calls it)."""
_GLOBAL = ("G[", "list(G[")


_IDENTITY_GUARDS = frozenset({"ID_MATCH", "CLASS_MATCH", "CLOSURE_MATCH", "FUNCTION_MATCH",
                              "MODULE_MATCH", "BUILTIN_MATCH", "TYPE_MATCH", "SEQUENCE_LENGTH"})
"""Guards that check only which object (or how many classes in a fixed set) a name holds."""


def _fixed(value: Any) -> bool:
    if isinstance(value, _FIXED):
        return True
    return isinstance(value, (tuple, frozenset)) and all(isinstance(v, type) for v in value)


def _owner(name: str) -> Any:
    """The object whose attribute `name` reads, for `G['__import_varbayes...'].a.b.c`
    (None when the name has another form or does not resolve)."""
    m = _LIBRARY.match(name)
    if m is None or not m.group(2):
        return None
    return _resolve(name.rsplit(".", 1)[0])


def _resolve(path: str) -> Any:
    """The object at `G['__import_a_dot_b'].x.y` (None when it does not resolve)."""
    m = re.match(r"G\['__import_(\w+)'\]((?:\.\w+)*)$", path)
    if m is None:
        return None
    obj = sys.modules.get(m.group(1).replace("_dot_", "."))
    for attr in m.group(2).split(".")[1:]:
        obj = getattr(obj, attr, None)
    return obj


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}"[:300]
