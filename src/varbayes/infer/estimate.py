"""`estimate(program, ...)`: run an expectation-valued program and return its value and an
unbiased gradient surrogate, carrying out every drawn site's strategy.

The program returns a tensor of per-element values (particle dims, plate dims); the
expectation it stands for is the mean of those elements. Strategies that need the rest of the
program run more than once (enumeration: once per value; measure-valued derivatives: once more
at the other value) re-execute the program from the start with the torch random-number state
restored, so every choice before the branching site is drawn again identically and the
choices after it share random numbers between the branches (unbiased either way, and usually
lower variance). This keeps the user's program an ordinary PyTorch function: no
continuations, no tracing compiler.

Per-element bookkeeping: a site's log-density has the shape of the particle and plate dims in
scope where it was drawn. Its REINFORCE term multiplies it with the value elements it aligns
with (dims the value has reduced, such as the K particles of an IWELBO, are summed in the
log-density first); enumeration and measure-valued derivatives weight the value elementwise
and so need the value to keep the site's batch dims (e.g. not inside an IWELBO's particles).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, arange, inference_mode
from torch.compiler import is_compiling

from varbayes.errors import VarbayesError
from varbayes.infer.densities import _CATEGORICAL
from varbayes.infer.primitives import Marginal, check_used, log_weight
from varbayes.infer.sites import (
    _HANDLERS,
    _SCOPES,
    MAX_PARTICLE_DIMS,
    Handler,
    Site,
    Trace,
    _check_batch_dims,
    duplicate_site,
    enum_dim,
    missing_value,
    particles,
    push_scope,
)
from varbayes.infer.strategies import MVD, Enum, Reinforce, Strategy, resolve


class Estimate:
    """Per-element `value` (detached), a `surrogate` with the same value-expectation's
    gradient, and the squared-error `baseline_loss` of any learned REINFORCE baselines.
    `surrogate_is_value`: no estimator terms, the surrogate's value is the value."""

    __slots__ = ("_value", "baseline_loss", "surrogate", "surrogate_is_value")

    def __init__(self, value: torch.Tensor, surrogate: torch.Tensor,
                 baseline_loss: torch.Tensor | None = None,
                 surrogate_is_value: bool = False) -> None:
        self._value, self.surrogate = value, surrogate  # value detached when read (below)
        self.baseline_loss, self.surrogate_is_value = baseline_loss, surrogate_is_value

    @property
    def value(self) -> torch.Tensor:
        """The per-element values, without gradient (detached when read: a training step
        that only takes the loss pays for no detach)."""
        return self._value.detach()

    def __repr__(self) -> str:
        return f"Estimate(mean={self.mean:.6g}, shape={tuple(self._value.shape)})"

    @property
    def mean(self) -> float:
        """The estimate of the expectation: the mean of the value's elements."""
        return float(self.value.mean())

    def loss(self) -> torch.Tensor:
        """What to minimise: minus the objective (its value is -mean), plus the baselines'
        fitting loss (which contributes gradient but not value)."""
        s = self.surrogate.mean()
        loss = -s if self.surrogate_is_value else -(self.value.mean() + (s - s.detach()))
        b = self.baseline_loss
        return loss if b is None else loss + (b - b.detach())


def estimate(
    program: Callable[..., Any],
    *args: Any,
    strategies: Mapping[str, Strategy] | None = None,
    plates: int = 0,
    data_size: int | None = None,
    samples: int = 1,
    **kwargs: Any,
) -> Estimate:
    """Estimate E[program(*args)] and its gradient.

    strategies: per-site overrides of the program's gradient strategies (by site name).
    plates: how many rightmost batch dims index data; data_size: how many data points the
    minibatch stands for (None: the minibatch is all of it). samples: independent copies
    (Average(N)): a particle dim that the value keeps, so each copy is scored on its own.
    """
    if (samples == 1 and type(samples) is int and not _BRANCHING_PROGRAMS and not _HANDLERS
            and len(args) >= 2):
        options = getattr(program, "plain_elbo", None)  # set by `infer.elbo()`
        if (options is not None and not is_compiling() and not isinstance(args[1], Marginal)
                and (not strategies or _plain_overrides(strategies))):
            fast = _plain_elbo(options, args, kwargs, plates, data_size, strategies)
            if fast is not None:
                return fast
    snapshot = _BRANCHING_PROGRAMS  # whether this run may need re-execution (see _NoSnapshot)
    if strategies:
        # a copy; dict(m) of a dict traces through TorchDynamo's polyfills, which a compiled
        # step would then guard
        strategies = strategies.copy() if type(strategies) is dict else dict(strategies)
        for name, s in strategies.items():
            if not isinstance(s, Strategy):
                raise VarbayesError(f"strategy for site {name!r} must be reparam(), "
                                    f"reinforce(), enum() or mvd(); got {s!r}")
            snapshot = snapshot or _branches(s)
    else:
        strategies = {}  # a fresh one: a shared module-level dict would be guarded
    if (samples != 1 or type(samples) is not int) and (
            not isinstance(samples, int) or samples < 1):
        raise VarbayesError(f"samples must be a positive integer; got {samples!r}")
    if samples == 1:
        run = functools.partial(program, *args, **kwargs)  # no extra frame
    else:

        def run() -> Any:
            with particles(samples):
                return program(*args, **kwargs)

    push_scope(plates, data_size)
    try:
        explorer, value, surrogate, baseline_loss = _explore(run, strategies, plates, snapshot)
    finally:
        _SCOPES.pop()
    natural = plates + (samples > 1)
    if value.dim() > natural or surrogate.dim() > natural:
        value, surrogate = _strip_both(value, surrogate, natural)
    same = surrogate is value
    if explorer.branched:
        # branches replayed the same random numbers: move to a fresh stream
        torch.manual_seed(int(torch.randint(0, 2**62, ())))
    if strategies:
        _check_known(strategies, explorer.seen)
    return Estimate(value, surrogate, baseline_loss, same)


def _check_known(strategies: Mapping[str, Strategy], seen: set[str]) -> None:
    """Raise when an override names a site the program did not draw."""
    unknown = sorted(set(strategies) - seen)
    if unknown:
        raise VarbayesError(
            f"unknown site {unknown[0]!r} in strategies; the program draws: "
            f"{', '.join(sorted(seen)) or 'no sites'}")


def _strip_both(value: Tensor, surrogate: Tensor, natural: int) -> tuple[Tensor, Tensor]:
    """Value and surrogate without the leading size-1 dims that enumeration padding added
    beyond the `natural` dims (the surrogate stays the value's object when it was)."""
    same = surrogate is value
    value = _strip(value, natural)
    return value, value if same else _strip(surrogate, natural)


def _explore(run: Callable[[], Any], strategies: Mapping[str, Strategy], plates: int,
             snapshot: bool) -> tuple[_Explorer, Tensor, Tensor, Tensor | None]:
    """The general path: the explorer and its (value, surrogate, baseline loss)."""
    explorer = _Explorer(run, strategies, plates, snapshot)
    try:
        return (explorer, *explorer.explore({}, False))
    except _NoSnapshot:  # a program's own site branched: run again, re-executable
        _note_branching_program()
        explorer = _Explorer(run, strategies, plates, True)
        return (explorer, *explorer.explore({}, False))


# ---------------------------------------------------------------------------------------------
# the fast path of the plain ELBO


def _plain_overrides(strategies: Mapping[str, Any]) -> bool:
    """Whether `strategies=` overrides can take the fast path: all strategies, none of which
    branches (anything else goes to the general path, which raises or branches)."""
    return all(isinstance(s, Strategy) and not _branches(s) for s in strategies.values())


def _plain_elbo(options: tuple[float, float, bool], args: tuple, kwargs: dict, plates: int,
                data_size: int | None,
                strategies: Mapping[str, Strategy] | None = None) -> Estimate | None:
    """`infer.elbo()` with one particle, no user handler and no branching override: the
    guide's sites go through the same `_Run` as on the general path (so the same draws,
    strategies, overrides and errors), and one `_PlainElbo` handler records them, replays
    the model's sites and records those, in place of the objective's `simulate` / `density`
    and their `recording` / `scoring` handlers; `log_weight`, the explorer's combination of
    the estimator terms and the check of the overrides' names are the general path's own. A
    site that branches (sequential enumeration, MVD declared in the program) stops the run
    and returns None: `estimate` then starts over on the general path, with a snapshot, as
    the general path does when it kept none."""
    model, guide, rest = args[0], args[1], args[2:]
    handler = _PlainElbo(strategies)
    push_scope(plates, data_size)
    try:
        try:
            with handler:
                q_value = guide(*rest, **kwargs)
                q = handler.q
                q.value = q_value
                handler.guide_sites, handler.sites = q.sites, handler.p.sites
                p_value = model(*rest, **kwargs)
        except _Branch:
            _note_branching_program()
            return None
        p = handler.p
        p.value = p_value
        if handler.used != len(q.sites):
            check_used(handler.used, q, p)
        kl_weight, warmup, analytic_kl = options
        value = log_weight(p, q, kl_weight=kl_weight, warmup=warmup, analytic_kl=analytic_kl)
        execution = handler.execution
        if execution is None or (not execution.owned and not execution.enum_count):
            surrogate, baseline_loss = value, None  # no estimator terms
        else:  # no branch here: the explorer never re-runs the program
            value, surrogate, baseline_loss = _Explorer(None, {}, plates, False).combine(
                execution, value, None, {}, False)
    finally:
        _SCOPES.pop()
    if value.dim() > plates or surrogate.dim() > plates:
        value, surrogate = _strip_both(value, surrogate, plates)
    if strategies:
        _check_known(strategies, execution.seen)  # made at the start: there are overrides
    return Estimate(value, surrogate, baseline_loss, surrogate is value)


class _PlainElbo(Handler):
    """The one handler of `_plain_elbo`: while the guide runs (`guide_sites` None), each
    site is drawn as the `_Run` of the general path draws it and recorded in `q`; while the
    model runs, each latent site takes the guide's value and every site is recorded in `p`.
    The `_Run` (`execution`) is made at the first guide site that is not a default
    reparameterised draw, which is drawn by it (the default one `_Run.process` draws inline,
    drawn here the same way without it); with `strategies=` overrides it is made at the
    start and draws every guide site, as the general path's does."""

    def __init__(self, strategies: Mapping[str, Strategy] | None = None) -> None:
        self.execution: _Run | None = _Run({}, strategies, False) if strategies else None
        self.q, self.p = Trace({}), Trace({})
        self.sites = self.q.sites  # where the sites of the program running now go
        self.guide_sites: dict[str, Site] | None = None
        self.used = 0

    def process(self, site: Site) -> None:
        guide_sites = self.guide_sites
        if guide_sites is None:
            if (site.value is None and site.strategy is None and not site.detach
                    and site.fn.has_rsample and self.execution is None):
                site.drawn = True  # `_Run.process`'s default, without decisions or overrides
                site.rsample()
            else:
                if self.execution is None:
                    self.execution = _Run({}, {}, False)
                self.execution.process(site)
        else:
            if site.value is None:  # not observed, nor set by a handler inside the model
                given = guide_sites.get(site.name)
                value = None if given is None or given.observed else given.value
                if value is None:
                    raise missing_value(site.name, self.q.values)
                site.value = value
                self.used += 1
            if self.execution is not None and self.execution.enumerated:
                self.execution.process(site)
        sites = self.sites
        if site.name in sites:
            _duplicate(site)
        sites[site.name] = site


def _duplicate(site: Site) -> None:
    """Raise what the general path raises for a site name used twice: the batch-dim check
    that `sample` runs before its recording handler, then the duplicate error."""
    if site.value is None:  # drawn by `sample` after the handlers on the general path
        return
    if _SCOPES:
        s = _SCOPES[-1]
        if len(site.fn.batch_shape) > s.plates + s.particle_dims:
            _check_batch_dims(site, s)
    raise duplicate_site(site.name)


# ---------------------------------------------------------------------------------------------
# the re-execution driver


@dataclass
class _Decision:
    """How a branching site is resolved in one execution: enumeration value index, or an
    MVD 'keep' / 'flip' / categorical value index."""

    kind: str
    index: int = 0


class _Branch(BaseException):
    """Raised at the first undecided enum/MVD site to stop the run and branch there (a
    BaseException, so that a program's own `except Exception` does not swallow it)."""

    def __init__(self, position: int, site: Site, strategy: Strategy) -> None:
        self.position, self.site, self.strategy = position, site, strategy


@dataclass
class _Draw:
    site: Site
    strategy: Strategy
    dim: int = 0  # the batch dim of a parallel-enumerated site


class _Run(Handler):
    """One execution under fixed branch decisions (by position in the order of draws)."""

    def __init__(self, decisions: dict[int, _Decision], strategies: Mapping[str, Strategy],
                 value_only: bool) -> None:
        self.decisions, self.strategies, self.value_only = decisions, strategies, value_only
        self.last = max(decisions) if decisions else -1
        self.position = 0
        self.owned: list[_Draw] = []
        self.seen: set[str] = set()
        self.enum_count = 0
        self.enumerated: dict[str, torch.Tensor] = {}  # parallel-enumerated values, by site

    def process(self, site: Site) -> None:
        if site.value is not None:
            if self.enumerated and self.enumerated.get(site.name) is site.value:
                # a model site scored at a guide's enumerated support (replayed)
                site.cache_support_log_prob(tuple(site.value.shape))
            return
        if site.observed or site.detach:
            return
        pos = self.position
        self.position += 1
        override = None
        if self.strategies:  # the names drawn are checked against the overrides'
            self.seen.add(site.name)
            override = self.strategies.get(site.name)
        site.drawn = True
        if (override is None and site.strategy is None and site.fn.has_rsample
                and pos not in self.decisions):
            site.rsample()  # the default, reparameterisation: nothing more to keep
            return
        strategy = resolve(site.name, site.fn, site.strategy, override)
        if isinstance(strategy, Enum) and strategy.parallel:
            dim = enum_dim(self.enum_count)
            self.enum_count += 1
            site.value = _enumerated_support(site.fn, dim)
            site.cache_support_log_prob(tuple(site.value.shape))
            self.enumerated[site.name] = site.value
            if pos > self.last:
                self.owned.append(_Draw(site, strategy, dim))
            return
        decision = self.decisions.get(pos)
        if decision is not None:
            site.value = _decided_value(site.fn, strategy, decision)
            return
        branching = isinstance(strategy, (Enum, MVD))  # sequential enumeration, MVD
        if branching and not self.value_only and pos > self.last:
            value = site.fn.sample() if isinstance(strategy, MVD) else None
            site.value = value
            raise _Branch(pos, site, strategy)
        if isinstance(strategy, Reinforce) or branching:
            site.value = site.fn.sample()
        else:
            site.rsample()
            return  # a reparameterised draw adds no estimator term
        if pos > self.last and not self.value_only:
            self.owned.append(_Draw(site, strategy))


_SUPPORTS: dict[tuple[tuple[int, ...], torch.device], torch.Tensor] = {}


def _enumerated_support(fn: Any, dim: int) -> torch.Tensor:
    """fn's support 0..K-1 along `dim`, broadcast over its batch and event dims: shape
    (K, 1.., *batch, *event). A Categorical's, which depends only on that shape, is built once
    per shape and device and handed out again (an expanded view, which in-place ops refuse;
    the cache holds only views that really are expanded, so none can be written through)."""
    batch, event = tuple(fn.batch_shape), tuple(fn.event_shape)
    pad = (1,) * (-dim - 1)
    if type(fn) in _CATEGORICAL:
        k = fn._num_events
        shape = (k,) + pad[len(batch):] + batch
        key = (shape, fn._param.device)
        compiling = is_compiling()  # a captured graph holds it as a constant
        support = None if compiling else _SUPPORTS.get(key)
        if support is None:
            with inference_mode(False):  # it is indexed with later: saved for backward
                support = arange(k, device=key[1]).reshape((k,) + pad).expand(shape)
            if not compiling and any(s > 1 for s in batch) and len(_SUPPORTS) < 64:
                _SUPPORTS[key] = support
        return support
    support = fn.enumerate_support(expand=False)  # (K, 1.., *event)
    shape = (support.shape[0],) + pad[len(batch):] + batch + event
    return support.reshape((support.shape[0],) + pad + event).expand(shape)


def _decided_value(fn: Any, strategy: Strategy, d: _Decision) -> torch.Tensor:
    if d.kind == "enum":
        return fn.enumerate_support(expand=True)[d.index]
    v = fn.sample()  # draw as the original run did, so later random numbers are shared
    if d.kind == "keep":
        return v
    if d.kind == "flip":
        return 1 - v
    return torch.full_like(v, d.index)  # categorical MVD: every element at value d.index


_CPU_GENERATOR = torch.default_generator


_BRANCHING_PROGRAMS = False
"""Whether a program run by `estimate` has declared a branching strategy on a site itself
(sequential enumeration, MVD). Until one has, an estimate without branching overrides skips
the random-number snapshot (a fixed cost of every step); the first such site raises
`_NoSnapshot`, and that estimate starts over with a snapshot, as every later one does."""


def _branches(s: Strategy) -> bool:
    """Whether a strategy re-executes the rest of the program (so needs the snapshot)."""
    return isinstance(s, MVD) or (isinstance(s, Enum) and not s.parallel)


def _note_branching_program() -> None:
    global _BRANCHING_PROGRAMS
    _BRANCHING_PROGRAMS = True


class _NoSnapshot(Exception):
    """A site branched in a run that kept no random-number snapshot to re-execute from."""


class _RngState:
    """The torch random-number state at the start of an estimate, restored before each
    re-execution."""

    def __init__(self) -> None:
        self.cpu = _CPU_GENERATOR.get_state()  # torch.get_rng_state() without its wrapper
        self.cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None

    def restore(self) -> None:
        _CPU_GENERATOR.set_state(self.cpu)
        if self.cuda is not None:
            torch.cuda.set_rng_state_all(self.cuda)


class _Explorer:
    """Runs the program under branch decisions and combines the runs. `snapshot`: keep the
    random-number state of the start, which re-executions restore; without it, a branching
    site raises `_NoSnapshot` (the caller then starts over with one)."""

    def __init__(self, run: Callable[[], Any], strategies: Mapping[str, Strategy],
                 plates: int, snapshot: bool = True) -> None:
        self.run, self.strategies, self.plates = run, strategies, plates
        self.seen: set[str] = set()
        self.rng: _RngState | None = None
        self.snapshot = snapshot
        self.branched = False

    def explore(self, decisions: dict[int, _Decision],
                value_only: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """(value, surrogate, baseline loss or None) of the program under `decisions`."""
        if self.rng is not None:
            self.rng.restore()
        elif self.snapshot:
            self.rng = _RngState()
        execution = _Run(decisions, self.strategies, value_only)
        branch: _Branch | None = None
        try:
            with execution:
                out = self.run()
        except _Branch as b:
            if self.rng is None:
                raise _NoSnapshot from None
            branch = b
            self.branched = True
        if self.strategies:
            self.seen |= execution.seen
        value = None
        if branch is None:
            value = out if type(out) is Tensor and out.is_floating_point() else _as_value(out)
            if not execution.owned and not execution.enum_count:  # no estimator terms
                return (value, value, None) if not value_only else (value.detach(),) * 2 + (None,)
        return self.combine(execution, value, branch, decisions, value_only)

    def combine(self, execution: _Run, value: Any, branch: _Branch | None,
                decisions: dict[int, _Decision], value_only: bool
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """(value, surrogate, baseline loss) of a run with estimator terms: the program's
        value (a float tensor) when it ran to the end, else the branches at `branch`."""
        baseline_loss: torch.Tensor | None
        if branch is None:
            surrogate, baseline_loss = value, None
        elif isinstance(branch.strategy, Enum):
            value, surrogate, baseline_loss = self._enumerate(decisions, branch)
        else:
            value, surrogate, baseline_loss = self._mvd(decisions, branch)
        if execution.enum_count:  # room for every parallel-enumeration dim
            width = self.plates + MAX_PARTICLE_DIMS + execution.enum_count
            same = surrogate is value
            value = _pad(value, width)
            surrogate = value if same else _pad(surrogate, width)
        if not value_only:
            for draw in execution.owned:
                if isinstance(draw.strategy, Reinforce):
                    surrogate, baseline_loss = _score_term(draw, value, surrogate,
                                                           baseline_loss)
        for draw in reversed(execution.owned):  # innermost enumeration dim first
            if isinstance(draw.strategy, Enum):
                value, surrogate = _contract(draw, value, surrogate, value_only)
        if value_only:
            return value.detach(), value.detach(), None
        return value, surrogate, baseline_loss

    def _enumerate(self, decisions: dict[int, _Decision],
                   branch: _Branch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        fn, name = branch.site.fn, branch.site.name
        support = fn.enumerate_support(expand=True)
        value = surrogate = torch.zeros(())
        baseline_loss: torch.Tensor | None = None
        for j in range(len(support)):
            v_j, s_j, b_j = self.explore({**decisions, branch.position: _Decision("enum", j)},
                                         value_only=False)
            p_j = _align_exact(fn.log_prob(support[j]).exp(), v_j, name, "enum")
            p_d = p_j.detach()
            value = value + p_d * v_j
            surrogate = surrogate + p_d * s_j + (p_j - p_d) * v_j.detach()
            baseline_loss = _add_loss(baseline_loss, b_j)
        return value, surrogate, baseline_loss

    def _mvd(self, decisions: dict[int, _Decision],
             branch: _Branch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        fn, name, v = branch.site.fn, branch.site.name, branch.site.value
        pos = branch.position
        value, surrogate, baseline_loss = self.explore(
            {**decisions, pos: _Decision("keep")}, value_only=False)
        main = value.detach()
        with torch.no_grad():
            if isinstance(fn, torch.distributions.Bernoulli):
                flipped, _, _ = self.explore({**decisions, pos: _Decision("flip")}, True)
                sign = _align_exact(1.0 - 2.0 * v, main, name, "mvd")
                weight = sign * (flipped - main)
        if isinstance(fn, torch.distributions.Bernoulli):
            p = _align_exact(fn.probs, main, name, "mvd")
            return value, surrogate + (p - p.detach()) * weight, baseline_loss
        logits, probs = fn.logits, fn.probs
        for m in range(probs.shape[-1]):
            with torch.no_grad():
                at_m, _, _ = self.explore({**decisions, pos: _Decision("value", m)}, True)
            lm = _align_exact(logits[..., m], main, name, "mvd")
            pm = _align_exact(probs[..., m].detach(), main, name, "mvd")
            surrogate = surrogate + (lm - lm.detach()) * (pm * (at_m - main))
        return value, surrogate, baseline_loss


def _contract(draw: _Draw, value: torch.Tensor, surrogate: torch.Tensor,
              value_only: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Sum a parallel-enumeration dim out: value sum_k p_k v_k; surrogate
    sum_k [p_k.detach() s_k + (p_k - p_k.detach()) v_k.detach()]."""
    dim, site = draw.dim, draw.site
    p = site.log_prob.exp()
    k = p.shape[dim]
    same = surrogate is value
    value = _expand_dim(value, dim, k)
    p = _align_exact(p, value, site.name, "enum")
    if same and not value_only:
        # no estimator terms inside: the exact sum, whose autograd gradient is the
        # surrogate's sum_k [p_k grad v_k + v_k grad p_k], in one product and sum
        new = (p * value).sum(dim, keepdim=True)
        return new, new
    surrogate = value if same else _expand_dim(surrogate, dim, k)
    pd = p.detach()
    new_value = (pd * value).sum(dim, keepdim=True)
    if value_only:
        return new_value, new_value
    new_surrogate = (pd * surrogate + (p - pd) * value.detach()).sum(dim, keepdim=True)
    return new_value, new_surrogate


def _pad(t: torch.Tensor, dims: int) -> torch.Tensor:
    return t.reshape((1,) * (dims - t.dim()) + tuple(t.shape)) if t.dim() < dims else t


def _expand_dim(t: torch.Tensor, dim: int, k: int) -> torch.Tensor:
    t = _pad(t, -dim)
    if t.shape[dim] == k:
        return t
    shape = list(t.shape)
    shape[dim] = k
    return t.expand(shape)


def _strip(t: torch.Tensor, natural: int) -> torch.Tensor:
    """Drop the leading size-1 dims that enumeration padding added."""
    k, shape = 0, t.shape
    while len(shape) - k > natural and shape[k] == 1:
        k += 1
    return t.reshape(shape[k:]) if k else t  # one view, not k squeezes


def _as_value(out: Any) -> torch.Tensor:
    if isinstance(out, torch.Tensor):
        if not out.is_floating_point():
            raise VarbayesError(f"an objective program must return a float tensor; got dtype "
                                f"{out.dtype}")
        return out
    if isinstance(out, (int, float)):
        return torch.tensor(float(out))
    raise VarbayesError(f"an objective program must return a tensor of values; got "
                        f"{type(out).__name__}")


def _add_loss(a: torch.Tensor | None, b: torch.Tensor | None) -> torch.Tensor | None:
    return b if a is None else a if b is None else a + b


def _score_term(draw: _Draw, value: torch.Tensor, surrogate: torch.Tensor,
                baseline_loss: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Add (g - b).detach() * log p(v) for a REINFORCE site, and fit its baseline."""
    log_p = _align_sum(draw.site.log_prob, value, draw.site.name)
    assert isinstance(draw.strategy, Reinforce)
    b = draw.strategy.baseline_value()
    g = value.detach()
    if b is None:
        return surrogate + g * log_p, baseline_loss
    advantage = (g - b).detach()
    return surrogate + advantage * log_p, _add_loss(baseline_loss, ((g - b) ** 2).mean())


def _right_align(t: torch.Tensor, like: torch.Tensor) -> tuple[torch.Tensor, int]:
    extra = t.dim() - like.dim()
    if extra < 0:
        t = t.reshape((1,) * -extra + tuple(t.shape))
        extra = 0
    return t, extra


def _align_sum(t: torch.Tensor, value: torch.Tensor, name: str) -> torch.Tensor:
    """Sum `t` over the dims the value does not have (leading extra dims, or dims where the
    value has size 1), so it broadcasts elementwise against the value."""
    t, extra = _right_align(t, value)
    if extra:
        t = t.sum(tuple(range(extra)))
    dims = []
    for i, (a, b) in enumerate(zip(t.shape, value.shape)):
        if a != b and a != 1:
            if b == 1:
                dims.append(i)
            else:
                raise VarbayesError(
                    f"site {name!r} has batch shape {tuple(t.shape)} that does not line up "
                    f"with the objective's value shape {tuple(value.shape)}")
    return t.sum(tuple(dims), keepdim=True) if dims else t


def _align_exact(t: torch.Tensor, value: torch.Tensor, name: str, kind: str) -> torch.Tensor:
    """`t` broadcast elementwise against the value; enumeration and MVD weight value
    elements one by one, so every batch dim of the site must be 1 or the value's."""
    t, extra = _right_align(t, value)
    ok = True
    if extra:
        ok = all(s == 1 for s in t.shape[:extra])
        t = t.reshape(t.shape[extra:]) if ok else t
    if not ok or (t.shape != value.shape
                  and any(a != 1 and a != b for a, b in zip(t.shape, value.shape))):
        raise VarbayesError(
            f"strategy {kind} on site {name!r} needs the objective's value to keep the site's "
            f"batch dims (site {tuple(t.shape)}, value {tuple(value.shape)}); use reinforce "
            "for sites inside reduced particle dims")
    return t
