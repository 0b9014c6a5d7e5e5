"""Fused draws and log-densities of the distributions programs use most, for speed.

`torch.distributions` computes a Normal's log-density generically from the value, with about
twice the autograd nodes of the closed form, and `Independent` sums event dims through a
reshape. For a reparameterised Normal draw v = loc + eps * scale the log-density is
-eps^2/2 - log scale - log sqrt(2 pi) as a function of the parameters (the same function, so
the same value and gradient), where eps carries no gradient: `rsample` keeps eps for that.
`log_prob` uses the closed forms for Normal and Bernoulli (bare or inside `Independent`) and a
plain gather for a Categorical at values of its batch shape; it falls back to the
distribution's own `log_prob` for everything else, and whenever the distribution validates its
arguments (so that invalid values still raise torch's error).

`log_ratio(q, p, value, eps)` is log q(v) - log p(v) of one latent choice (the ELBO's term,
`Site.log_ratio`) in one expression where q is such a Normal draw and p a Normal of the
value's shape with the same event dims: -eps^2/2 - log s_q + d^2/2 + log s_p, d = (v - loc_p)
/ s_p, in which the log sqrt(2 pi) cancel; against a standard p (d = v, log s_p = 0) it is 3
autograd nodes where the two log-densities and their difference take 5. It returns None for
every other pair (and for validating objects), and the caller subtracts the two `log_prob`s.

A Normal whose parameters carry no gradient (a fixed prior) that is scored a second time
keeps its normaliser log scale + log sqrt(2 pi) on the distribution object, and whether it is
standard (loc 0, scale 1: then eps is the value itself), so a program that reuses the object
(a cached prior) pays for neither again, and one that builds a new object per call pays
nothing extra; the cache is keyed on the parameters' version counters, so in-place changes
invalidate it.
"""

from __future__ import annotations

import math

import torch
from torch import addcmul
from torch.compiler import is_compiling
from torch.distributions import Bernoulli, Categorical, Distribution, Independent, Normal
from torch.nn.functional import binary_cross_entropy_with_logits

from varbayes.infer import distributions as lean

_LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)
# torch's classes and the cheaper-to-build subclasses of `varbayes.infer.distributions`
_INDEPENDENT = frozenset({Independent, lean.Independent})
_NORMAL = frozenset({Normal, lean.Normal})
_BERNOULLI = frozenset({Bernoulli, lean.Bernoulli})
_CATEGORICAL = frozenset({Categorical, lean.Categorical})


def rsample(fn: Distribution) -> tuple[torch.Tensor, torch.Tensor | None]:
    """A reparameterised draw from `fn` and, for a Normal, the standard-normal noise eps
    behind it (None otherwise). Draws the same random numbers as `fn.rsample()`."""
    base = fn.base_dist if type(fn) in _INDEPENDENT else fn
    if type(base) in _NORMAL:
        loc = base.loc
        # compiling: Inductor fuses randn, not an in-place normal_; eager: torch.randn's
        # numbers with fewer arguments
        eps = torch.randn_like(loc) if is_compiling() else loc.new_empty(loc.shape).normal_()
        return addcmul(loc, eps, base.scale), eps
    return fn.rsample(), None


def log_prob(fn: Distribution, value: torch.Tensor,
             eps: torch.Tensor | None = None) -> torch.Tensor:
    """log fn(value) summed over event dims; `eps` the noise of a Normal draw by `rsample`."""
    dims = 0
    base = fn
    if type(fn) in _INDEPENDENT:
        dims, base = fn.reinterpreted_batch_ndims, fn.base_dist
    kind = type(base)
    negate = False  # lp holds -log fn(value): negate after summing (fewer elements)
    if kind in _NORMAL:
        if eps is None and base._validate_args:
            return fn.log_prob(value)
        const = _constant_normal(base)
        if const is not None:
            standard, neg_norm = const
            if eps is None:
                eps = value if standard else (value - base.loc) / base.scale
            lp = addcmul(neg_norm, eps, eps, value=-0.5)
        elif (s := getattr(base, "_scalar_scale", None)) is not None:
            # a fixed scale s (a number): -(v - loc)^2 / (2 s^2) - (log s + log sqrt(2 pi)),
            # with nothing of the expanded scale tensor in the graph
            neg_norm = lean.cached_constant(-math.log(s) - _LOG_SQRT_2PI, base.loc)
            if eps is not None and not eps.requires_grad:
                lp = addcmul(neg_norm, eps, eps, value=-0.5)
            else:
                d = value - base.loc
                lp = addcmul(neg_norm, d, d, value=-0.5 / (s * s))
        elif eps is not None and not eps.requires_grad:
            # the noise of our own draw: -(eps^2/2 + log sqrt(2 pi)) needs no gradient, so
            # the graph holds only log scale and one subtraction
            log_scale = getattr(base, "_log_scale", None)  # `lean.Normal.from_log_scale`
            lp = eps.square().mul_(-0.5).sub_(_LOG_SQRT_2PI).sub(
                base.scale.log() if log_scale is None else log_scale)
        else:
            if eps is None:
                eps = (value - base.loc) / base.scale
            # -(log scale + log sqrt(2 pi) + eps^2 / 2); in place where autograd allows it
            log_scale = getattr(base, "_log_scale", None)
            norm = (base.scale.log().add_(_LOG_SQRT_2PI) if log_scale is None
                    else log_scale + _LOG_SQRT_2PI)
            lp = addcmul(norm, eps, eps, value=0.5)
            negate = True
    elif kind in _BERNOULLI and not base._validate_args:
        logits = base.logits
        if logits.shape != value.shape:
            logits, value = torch.broadcast_tensors(logits, value)
        lp = binary_cross_entropy_with_logits(logits, value, reduction="none")
        negate = True
    elif kind in _CATEGORICAL and not base._validate_args and value.shape == base.batch_shape:
        lp = base.logits.gather(-1, value.long().unsqueeze(-1)).squeeze(-1)  # normalised
    else:
        return fn.log_prob(value)
    if dims:
        lp = lp.sum(-1) if dims == 1 else lp.sum(tuple(range(-dims, 0)))
    return lp.neg_() if negate else lp


def log_ratio(q: Distribution, p: Distribution, value: torch.Tensor,
              eps: torch.Tensor) -> torch.Tensor | None:
    """log q(value) - log p(value) summed over event dims in one fused expression, for a
    Normal q (bare or in `Independent`) drawn by `rsample` (`eps` its noise, no gradient)
    and a Normal p with the same event dims and the value's batch shape and dtype; None for
    every other pair (the caller then subtracts the two `log_prob`s)."""
    if eps.requires_grad:
        return None
    dims = 0
    if type(q) in _INDEPENDENT:
        dims = q.reinterpreted_batch_ndims
        if type(p) not in _INDEPENDENT or p.reinterpreted_batch_ndims != dims:
            return None
        q, p = q.base_dist, p.base_dist
    if (type(q) not in _NORMAL or type(p) not in _NORMAL or q._validate_args
            or p._validate_args or "_scalar_scale" in q.__dict__
            or "_scalar_scale" in p.__dict__):
        return None
    shape = value.shape
    if eps.shape != shape or p.loc.shape != shape or p.loc.dtype != value.dtype:
        return None  # would broadcast or promote differently from the two log_probs
    # -eps^2/2 - log s_q + d^2/2 + log s_p with d = (v - loc_p) / s_p: the log sqrt(2 pi)
    # cancel. A standard p (known from its second scoring on) skips d and log s_p, which
    # are then exactly v and 0: the same bits either way, however often p was seen.
    t = eps.square().mul_(-0.5)
    const = _constant_normal(p)
    if const is not None and const[0]:
        d = value
    else:
        d = (value - p.loc) / p.scale
        t = t.add_(p.scale.log()) if not p.scale.requires_grad else t + p.scale.log()
    log_scale = getattr(q, "_log_scale", None)
    lr = addcmul(t, d, d, value=0.5).sub(q.scale.log() if log_scale is None else log_scale)
    if dims:
        lr = lr.sum(-1) if dims == 1 else lr.sum(tuple(range(-dims, 0)))
    return lr


def _constant_normal(base: Normal) -> tuple[bool, torch.Tensor] | None:
    """(standard?, -(log scale + log sqrt(2 pi))) of a Normal whose parameters need no
    gradient, cached on the object from its second scoring on; None when a parameter
    requires grad or the object is new (first use: only remember that it was seen)."""
    loc, scale = base.loc, base.scale
    if loc.requires_grad or scale.requires_grad or is_compiling():
        return None
    cached = base.__dict__.get("_varbayes_const")  # (loc, scale, versions, result or None)
    if cached is None or cached[0] is not loc or cached[1] is not scale:
        # asked only of tensors new to the cache: those it holds passed this test
        if loc.is_inference() or scale.is_inference():
            return None  # inference tensors keep no version counter: nothing to key a cache on
        base.__dict__["_varbayes_const"] = (loc, scale, (loc._version, scale._version), None)
        return None
    versions = (loc._version, scale._version)
    if cached[2] != versions:  # changed in place
        base.__dict__["_varbayes_const"] = (loc, scale, versions, None)
        return None
    if cached[3] is not None:
        return cached[3]
    with torch.no_grad():
        standard = bool((loc == 0).all()) and bool((scale == 1).all())
        neg_norm = scale.log().add_(_LOG_SQRT_2PI).neg_()
    base.__dict__["_varbayes_const"] = (loc, scale, versions, (standard, neg_norm))
    return standard, neg_norm


def support_log_prob(fn: Distribution, shape: tuple[int, ...]) -> torch.Tensor | None:
    """log fn(v) at its enumerated support reshaped to `shape` (K leading), without
    evaluating it: a Categorical's logits with the category dim moved first (None for other
    distributions, whose `log_prob` then runs at the values)."""
    if type(fn) not in _CATEGORICAL or fn._validate_args:
        return None
    logits = fn.logits
    batch = logits.shape[:-1]
    n = len(batch)
    if logits.shape[-1] != shape[0] or (n and tuple(shape[-n:]) != tuple(batch)):
        return None  # another support size, or batch dims the value does not have
    if shape[1:len(shape) - n].count(1) != len(shape) - n - 1:
        return None
    # only size-1 dims are inserted, so a view always fits
    return (logits.t() if n == 1 else logits.movedim(-1, 0)).view(shape)
