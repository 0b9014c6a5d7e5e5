"""Drop-in `torch.distributions` classes that are cheaper to build, for programs' hot paths.

A program builds its distribution objects on every run, and torch's constructors broadcast
their arguments and check types even when validation is off: about 10 us per object, which is
a visible share of a small model's step. `Normal`, `Bernoulli`, `Categorical` and
`Independent` here are subclasses of torch's (so `isinstance`, `kl_divergence`, `expand` and
every method behave the same, and `varbayes.infer.densities` scores them with its fused
formulas); when validation is off and the parameters already share one shape (the usual case
of network outputs) they set their fields directly, and otherwise run torch's constructor.
`Categorical(logits=...)` normalises with one `log_softmax` instead of torch's
`logits - logsumexp(logits)` (the same values up to rounding, one autograd node).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, inference_mode, log_softmax, no_grad, tensor
from torch.compiler import is_compiling
from torch.distributions import Bernoulli as _Bernoulli
from torch.distributions import Categorical as _Categorical
from torch.distributions import Distribution
from torch.distributions import Independent as _Independent
from torch.distributions import Normal as _Normal

_SCALAR = torch.Size()


def _lean(validate_args: bool | None) -> bool:
    """Whether a constructor may skip validation (off for this object or globally)."""
    return validate_args is False or (validate_args is None and not Distribution._validate_args)


class _KeepsClass:
    """`expand` returns an instance of the subclass (torch's would build the base class)."""

    def expand(self, batch_shape: Any, _instance: Any = None) -> Any:
        new = type(self).__new__(type(self)) if _instance is None else _instance
        return super().expand(batch_shape, new)  # type: ignore[misc]


class Normal(_KeepsClass, _Normal):
    """`torch.distributions.Normal`, built without broadcasting when loc and scale are
    tensors of one shape and validation is off. `Normal.from_log_scale(loc, log_scale)` is
    `Normal(loc, log_scale.exp())` that also keeps log_scale, which the log-density then uses
    in place of `scale.log()` (one operation and one autograd node fewer, and log(exp(s))
    is not recomputed)."""

    _log_scale: Tensor | None = None  # set by `from_log_scale` (an expanded copy has none)

    @classmethod
    def from_log_scale(cls, loc: Tensor, log_scale: Tensor,
                       validate_args: bool | None = None) -> Normal:
        """Normal(loc, log_scale.exp()) that remembers log_scale (a tensor of loc's shape)."""
        scale = log_scale.exp()
        d = cls(loc, scale, validate_args)
        # `d.scale is scale`: kept as built, so of log_scale's shape (no shape to compare)
        if type(log_scale) is Tensor and (d.scale is scale or log_scale.shape == d.scale.shape):
            d._log_scale = log_scale
        return d

    def __init__(self, loc: Tensor | float, scale: Tensor | float,
                 validate_args: bool | None = None) -> None:
        if _lean(validate_args) and type(loc) is Tensor:
            shape = loc.shape  # each `.shape` read builds a torch.Size: read it once
            if type(scale) is Tensor and shape == scale.shape:
                self.loc, self.scale = loc, scale
                self._batch_shape, self._event_shape = shape, _SCALAR
                self._validate_args = False
                return
            if (type(scale) in (float, int) and scale > 0 and loc.dim()
                    and loc.is_floating_point()):
                # a fixed scale (a likelihood's noise): a view of one cached constant, and the
                # number itself for `densities.log_prob`'s closed form
                self.loc, self.scale = loc, cached_constant(scale, loc).expand(shape)
                self._scalar_scale = float(scale)
                self._batch_shape, self._event_shape = shape, _SCALAR
                self._validate_args = False
                return
        super().__init__(loc, scale, validate_args)


_CONSTANTS: dict[tuple[float, torch.dtype, torch.device], Tensor] = {}


def cached_constant(x: float, like: Tensor) -> Tensor:
    """A 0-d tensor holding x with like's dtype and device, made once (never written to: it is
    only ever handed out as an expanded, read-only view). Not cached while `torch.compile`
    traces: the graph holds it as a constant."""
    key = (float(x), like.dtype, like.device)
    compiling = is_compiling()
    t = None if compiling else _CONSTANTS.get(key)
    if t is None:
        with inference_mode(False), no_grad():
            t = tensor(float(x), dtype=like.dtype, device=like.device)
        if not compiling and len(_CONSTANTS) < 256:  # a number varied every step: no cache
            _CONSTANTS[key] = t
    return t


class Bernoulli(_KeepsClass, _Bernoulli):
    """`torch.distributions.Bernoulli`, built without broadcasting from a logits tensor when
    validation is off."""

    def __init__(self, probs: Tensor | float | None = None, logits: Tensor | float | None = None,
                 validate_args: bool | None = None) -> None:
        if probs is None and type(logits) is Tensor and _lean(validate_args):
            self.logits = self._param = logits
            self._batch_shape, self._event_shape = logits.shape, _SCALAR
            self._validate_args = False
            return
        super().__init__(probs, logits, validate_args)


class Categorical(_KeepsClass, _Categorical):
    """`torch.distributions.Categorical`; from a logits tensor with validation off it
    normalises with one `log_softmax` and sets its fields directly."""

    def __init__(self, probs: Tensor | None = None, logits: Tensor | None = None,
                 validate_args: bool | None = None) -> None:
        if (probs is None and type(logits) is Tensor and logits.dim() >= 1
                and _lean(validate_args)):
            self.logits = self._param = log_softmax(logits, -1)
            self._num_events = logits.shape[-1]
            self._batch_shape, self._event_shape = logits.shape[:-1], _SCALAR
            self._validate_args = False
            return
        super().__init__(probs, logits, validate_args)


class Independent(_KeepsClass, _Independent):
    """`torch.distributions.Independent`, built with one shape split."""

    def __init__(self, base_distribution: Distribution, reinterpreted_batch_ndims: int,
                 validate_args: bool | None = None) -> None:
        # this module's classes: the fields, without torch's property calls
        lean = type(base_distribution) in _FIELDS
        batch = base_distribution._batch_shape if lean else base_distribution.batch_shape
        n = len(batch)
        if type(reinterpreted_batch_ndims) is int and 0 <= reinterpreted_batch_ndims <= n:
            # torch's constructor validates nothing of its own (no arg_constraints)
            cut = n - reinterpreted_batch_ndims
            self.base_dist = base_distribution
            self.reinterpreted_batch_ndims = reinterpreted_batch_ndims
            self._batch_shape = batch[:cut]
            event = base_distribution._event_shape if lean else base_distribution.event_shape
            # torch.Size arithmetic costs a few hundred ns: no `+ ()` for a scalar base
            self._event_shape = batch[cut:] + event if event else batch[cut:]
            if validate_args is not None:
                self._validate_args = validate_args
            return
        super().__init__(base_distribution, reinterpreted_batch_ndims, validate_args)


_FIELDS = frozenset({Normal, Bernoulli, Categorical})
"""Classes whose `batch_shape` / `event_shape` are torch's properties over `_batch_shape` /
`_event_shape` (no subclass of ours overrides them)."""

__all__ = ["Bernoulli", "Categorical", "Independent", "Normal"]
