"""Sample sites: the one primitive a model or guide program calls, and the handlers that run it.

A program is any Python callable that calls `sample(name, distribution, obs=...)` for its random
choices (`torch.distributions` objects). Outside any handler `sample` just draws. Inside, a stack
of small handlers (the effect-handler design of Pyro's minipyro) decides what each site does:
`recording` collects a `Trace`, `replaying` fixes values, `particles(n)` adds a dimension of n
independent copies, and the estimator of `varbayes.infer.estimate` draws each site with its
gradient strategy.

Shapes. The rightmost `plates` batch dimensions of every site index conditionally independent
data (a minibatch: declare them with `scope(plates=...)`, which `estimate` and `fit` do); further
batch dimensions to the left of them are particle dimensions that `particles` allocates. Any
other dimension of a value is an event dimension and must be declared as one
(`torch.distributions.Independent(fn, k)`), so a site's log-density always has the shape of
(particle dims, plate dims).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor
from torch.distributions import Distribution

from varbayes.errors import VarbayesError
from varbayes.infer import densities

_HANDLERS: list[Handler] = []
# the handlers' own process / postprocess methods (handlers that keep the base class's no-op
# are left out), innermost first and outermost first: the per-site dispatch of `sample`
_PROCESS: list[Callable[[Site], None]] = []
_POSTPROCESS: list[Callable[[Site], None]] = []


@dataclass
class Scope:
    """What the enclosing estimate declares: `plates` rightmost data dimensions, the number of
    data points `data_size` the minibatch stands for (None: the minibatch is all the data), and
    how many particle dimensions are open right now."""

    plates: int = 0
    data_size: int | None = None
    particle_dims: int = 0


_SCOPES: list[Scope] = []


def current_scope() -> Scope:
    """The innermost declared scope (a default one with no plates outside any)."""
    return _SCOPES[-1] if _SCOPES else Scope()


@contextlib.contextmanager
def scope(plates: int = 0, data_size: int | None = None) -> Iterator[Scope]:
    """Declare how many rightmost batch dims are data plates and the full data size."""
    s = push_scope(plates, data_size)
    try:
        yield s
    finally:
        _SCOPES.pop()


def push_scope(plates: int = 0, data_size: int | None = None) -> Scope:
    """Open a scope without a context manager (the caller pops `_SCOPES`); for hot paths."""
    if plates < 0:
        raise VarbayesError(f"plates must be >= 0; got {plates}")
    if data_size is not None and data_size <= 0:
        raise VarbayesError(f"data_size must be a positive number of data points; got {data_size}")
    s = Scope(plates, data_size)
    _SCOPES.append(s)
    return s


# ---------------------------------------------------------------------------------------------
# sites


@dataclass(slots=True)
class Site:
    """One random choice as the handlers see it. `value` is None until a handler or the default
    draw sets it; `drawn` marks a choice made in this run (not observed, not replayed)."""

    name: str
    fn: Distribution
    value: torch.Tensor | None = None
    observed: bool = False
    strategy: Any = None
    drawn: bool = False
    detach: bool = False
    _log_prob: torch.Tensor | None = field(default=None, repr=False)
    _eps: torch.Tensor | None = field(default=None, repr=False)  # noise of a Normal rsample

    @property
    def log_prob(self) -> torch.Tensor:
        """log fn(value), summed over event dims (cached)."""
        if self._log_prob is None:
            self._log_prob = densities.log_prob(self.fn, self.value, self._eps)
        return self._log_prob

    def log_ratio(self, p: Site) -> torch.Tensor:
        """log fn(value) - log p.fn(p.value), summed over event dims: this site a guide's
        choice, p the model's site of the same name. One fused expression where
        `densities.log_ratio` has one and neither log-density is computed yet (cached or
        wanted elsewhere: then the difference of the two)."""
        eps = self._eps
        if eps is not None and self._log_prob is None and p._log_prob is None:
            lr = densities.log_ratio(self.fn, p.fn, p.value, eps)
            if lr is not None:
                return lr
        return self.log_prob - p.log_prob

    def cache_support_log_prob(self, shape: tuple[int, ...]) -> None:
        """The value is an enumerated support 0..K-1 along its first dim, reshaped to `shape`:
        cache its log-density where that is a view of fn's parameters (a Categorical's
        normalised logits; otherwise it is computed from the value when asked)."""
        self._log_prob = densities.support_log_prob(self.fn, shape)

    def rsample(self) -> torch.Tensor:
        """Set the value to a reparameterised draw from fn (keeping a Normal's noise)."""
        self.value, self._eps = densities.rsample(self.fn)
        return self.value


def sample(
    name: str,
    fn: Distribution,
    *,
    obs: torch.Tensor | float | None = None,
    strategy: Any = None,
) -> torch.Tensor:
    """A named random choice from `fn`; observed (returns `obs`) when `obs` is given.

    `strategy` (see `varbayes.infer.strategies`) says how gradients pass through this choice;
    None means reparameterise when `fn` has `rsample`, otherwise REINFORCE. An estimate's
    `strategies={name: ...}` argument overrides it without touching the program.
    """
    if not isinstance(name, str) or not name:
        raise VarbayesError(f"a sample site needs a non-empty string name; got {name!r}")
    if not isinstance(fn, Distribution):
        raise VarbayesError(
            f"site {name!r} needs a torch.distributions.Distribution; got {type(fn).__name__}")
    if obs is None:
        if not _HANDLERS:  # no site to keep: draw as `Site.rsample` does
            return densities.rsample(fn)[0] if fn.has_rsample else fn.sample()
        site = Site(name, fn, None, False, strategy)  # positional: a cheaper call
    else:
        # torch's `batch_shape` / `event_shape` properties return these fields
        if type(obs) is not Tensor or obs.shape != fn._batch_shape + fn._event_shape:
            obs = _check_observation(name, fn, obs)
        if not _HANDLERS:
            return obs
        site = Site(name, fn, obs, True, strategy)
    for process in _PROCESS:  # innermost first
        process(site)
    if site.value is None:
        if site.fn.has_rsample and not site.detach:
            site.rsample()
        else:
            site.value = site.fn.sample()
        site.drawn = True
    if _SCOPES:
        s = _SCOPES[-1]
        if len(site.fn._batch_shape) > s.plates + s.particle_dims:
            _check_batch_dims(site, s)
    if _POSTPROCESS:
        for postprocess in _POSTPROCESS:
            postprocess(site)
    return site.value


def _check_observation(name: str, fn: Distribution, obs: Any) -> torch.Tensor:
    value = obs if isinstance(obs, torch.Tensor) else torch.as_tensor(
        obs, dtype=fn.mean.dtype if fn.mean.is_floating_point() else None)
    shape = fn.batch_shape + fn.event_shape
    if value.shape != shape and not _broadcastable(value.shape, shape):
        raise VarbayesError(
            f"observed value of site {name!r} has shape {tuple(value.shape)}, which does not "
            f"broadcast with the distribution's batch+event shape {tuple(shape)}")
    return value


def _broadcastable(a: tuple[int, ...], b: tuple[int, ...]) -> bool:
    # torch.broadcast_shapes imports sympy on first use (seconds); this is the same rule. A
    # plain loop: a generator over zip(reversed(...)) makes a compiled step guard Python's
    # all/zip/reversed and TorchDynamo's polyfills of them
    for i in range(1, min(len(a), len(b)) + 1):
        x, y = a[-i], b[-i]
        if x != y and x != 1 and y != 1:
            return False
    return True


def _check_batch_dims(site: Site, s: Scope) -> None:
    """Every non-singleton batch dim must be a plate, an open particle dim, or an
    enumeration dim (far left, see `enum_dim`); `s` the scope in force."""
    shape = site.fn.batch_shape
    inner = s.plates + s.particle_dims
    if len(shape) <= inner:
        return
    # the dims at positions inner+1 .. plates+MAX_PARTICLE_DIMS from the right must be 1
    undeclared = shape[max(len(shape) - s.plates - MAX_PARTICLE_DIMS, 0):len(shape) - inner]
    if undeclared.count(1) != len(undeclared):
        raise VarbayesError(
            f"site {site.name!r} has batch shape {tuple(shape)} but only {inner} batch dims "
            f"are declared ({s.plates} plate + {s.particle_dims} particle); declare event "
            "dims with Independent(fn, k) or set plates")


MAX_PARTICLE_DIMS = 8
"""Particle dims live right of this many dims left of the plates; parallel enumeration dims
live further left (so that particle dims opened later never collide with them)."""


def enum_dim(index: int) -> int:
    """The batch dim of the index-th parallel-enumerated site of a run."""
    return -(current_scope().plates + MAX_PARTICLE_DIMS + 1 + index)


# ---------------------------------------------------------------------------------------------
# handlers


class Handler:
    """A context manager on the handler stack; `process` runs before a site's value is chosen
    (innermost handler first), `postprocess` after (outermost first)."""

    _has_process = False
    _has_postprocess = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._has_process = cls.process is not Handler.process
        cls._has_postprocess = cls.postprocess is not Handler.postprocess

    def __enter__(self) -> Handler:
        _HANDLERS.append(self)
        if self._has_process:
            _PROCESS.insert(0, self.process)
        if self._has_postprocess:
            _POSTPROCESS.append(self.postprocess)
        return self

    def __exit__(self, *exc: object) -> None:
        assert _HANDLERS and _HANDLERS[-1] is self, "handlers must be exited in order"
        _HANDLERS.pop()
        if self._has_process:
            del _PROCESS[0]
        if self._has_postprocess:
            _POSTPROCESS.pop()

    def process(self, site: Site) -> None:
        """Called before the value is chosen."""

    def postprocess(self, site: Site) -> None:
        """Called once the value is set."""


@dataclass
class Trace:
    """The sites of one run of a program and its return value.

    `log_prob()` is the log-density of the recorded choices, summed over sites with
    broadcasting, so it has the shape (particle dims, plate dims). A marginal guide
    (`varbayes.infer.marginal`) sets `density` to its estimate of log q(z) instead.
    """

    sites: dict[str, Site] = field(default_factory=dict)
    value: Any = None
    density: torch.Tensor | None = None

    def __getitem__(self, name: str) -> torch.Tensor:
        return self.sites[name].value

    def __contains__(self, name: object) -> bool:
        return name in self.sites

    @property
    def values(self) -> dict[str, torch.Tensor]:
        """Values of the unobserved sites, by name."""
        return {n: s.value for n, s in self.sites.items() if not s.observed}

    @property
    def latent(self) -> list[Site]:
        return [s for s in self.sites.values() if not s.observed]

    @property
    def observed(self) -> list[Site]:
        return [s for s in self.sites.values() if s.observed]

    def log_prob(self, *, observed: bool | None = None,
                 exclude: tuple[str, ...] | list[str] = ()) -> torch.Tensor:
        """Summed log-density of the sites (all, only observed, or only latent ones)."""
        if self.density is not None and observed is not True and not exclude:
            return self.density
        terms = [s.log_prob for s in self.sites.values()
                 if (observed is None or s.observed == observed) and s.name not in exclude]
        return _sum_terms(terms)


def _sum_terms(terms: list[torch.Tensor]) -> torch.Tensor:
    if not terms:
        return torch.zeros(())
    total = terms[0]
    for t in terms[1:]:
        total = total + t
    return total


class recording(Handler):
    """Collect every site of the enclosed run into `self.trace` (site names must be unique)."""

    def __init__(self) -> None:
        # {}, not the default factory: traced, dict() runs through TorchDynamo's polyfills,
        # whose guards a compiled step would check on every call
        self.trace = Trace({})

    def postprocess(self, site: Site) -> None:
        sites, name = self.trace.sites, site.name
        if name in sites:
            raise duplicate_site(name)
        sites[name] = site


def duplicate_site(name: str) -> VarbayesError:
    """The error for a site name used twice in one run of a program."""
    return VarbayesError(f"site name {name!r} is used twice in one program run; "
                         "give each random choice its own name")


def missing_value(name: str, names: Any) -> VarbayesError:
    """The error for a model's latent site that the guide did not draw (`names`: the guide's
    latent site names)."""
    return VarbayesError(
        f"site {name!r} of the model has no value to score: the guide must sample "
        f"it too (guide sites: {', '.join(names) or 'none'})")


class replaying(Handler):
    """Fix unobserved sites to given values. `strict`: every unobserved site must have a value
    (scoring a model at a guide's choices), and every value must be used."""

    def __init__(self, values: Mapping[str, torch.Tensor], strict: bool = False) -> None:
        self.values, self.strict = values, strict
        self.used: set[str] = set()

    def process(self, site: Site) -> None:
        if site.observed or site.value is not None:
            return
        if site.name in self.values:
            site.value = self.values[site.name]
            self.used.add(site.name)
        elif self.strict:
            raise missing_value(site.name, self.values)


class scoring(recording):
    """`replaying` and `recording` in one handler (what `density` runs a model under): fix
    unobserved sites to `values` (every one must have a value when `strict`) and collect the
    run's trace; `used` counts the values used. `values` is a mapping of names to values or
    a `Trace`, whose unobserved sites' values are read in place (no dict built per run)."""

    def __init__(self, values: Mapping[str, torch.Tensor] | Trace, strict: bool = False) -> None:
        self.trace = Trace({})
        self.values, self.strict = values, strict
        self.sites = values.sites if isinstance(values, Trace) else None
        self.used = 0

    def process(self, site: Site) -> None:
        if site.observed or site.value is not None:
            return
        if self.sites is not None:
            given = self.sites.get(site.name)
            value = None if given is None or given.observed else given.value
        else:
            value = self.values.get(site.name)
        if value is not None:
            site.value = value
            self.used += 1
        elif self.strict:
            raise missing_value(site.name,
                                self.values.values if self.sites is not None else self.values)


class particles(Handler):
    """`with particles(n) as dim:` draws every site sampled inside as n independent copies
    along a new batch dimension `dim` (negative, left of the plates and of enclosing particle
    dimensions); reduce over it with `dim`."""

    def __init__(self, n: int) -> None:
        if not isinstance(n, int) or n < 1:
            raise VarbayesError(f"particles needs a positive integer count; got {n!r}")
        self.n = n
        self.dim = 0
        self._scope: Scope | None = None

    def __enter__(self) -> int:  # type: ignore[override]
        if not _SCOPES:
            _SCOPES.append(Scope())
            self._scope = _SCOPES[-1]
        s = current_scope()
        if s.particle_dims >= MAX_PARTICLE_DIMS:
            raise VarbayesError(f"at most {MAX_PARTICLE_DIMS} nested particle dims are supported")
        s.particle_dims += 1
        self.dim = -(s.plates + s.particle_dims)
        super().__enter__()
        return self.dim

    def __exit__(self, *exc: object) -> None:
        super().__exit__(*exc)
        current_scope().particle_dims -= 1
        if self._scope is not None:
            _SCOPES.remove(self._scope)
            self._scope = None

    def process(self, site: Site) -> None:
        if site.value is None and not site.observed:
            site.fn = expand_at(site.fn, self.dim, self.n, site.name)


def expand_at(fn: Distribution, dim: int, n: int, name: str = "?") -> Distribution:
    """`fn` with batch dimension `dim` (negative) of size n (broadcast from 1 or absent)."""
    shape = list(fn.batch_shape)
    if len(shape) < -dim:
        shape = [1] * (-dim - len(shape)) + shape
    if shape[dim] == n:
        return fn if len(shape) == len(fn.batch_shape) else fn.expand(torch.Size(shape))
    if shape[dim] != 1:
        raise VarbayesError(
            f"site {name!r} has batch shape {tuple(fn.batch_shape)}, whose dim {dim} "
            f"({shape[dim]}) clashes with {n} particles; give data plates their own dims")
    shape[dim] = n
    return fn.expand(torch.Size(shape))


class condition:
    """`condition(program, {"z": 5.0})`: the same program with those sites observed."""

    def __init__(self, program: Callable[..., Any], data: Mapping[str, Any]) -> None:
        self.program, self.data = program, dict(data)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        handler = _Conditioning(self.data)
        with handler:
            out = self.program(*args, **kwargs)
        unknown = sorted(set(self.data) - handler.seen)
        if unknown:
            raise VarbayesError(
                f"unknown site {unknown[0]!r} in the conditioning data; the program's sites: "
                f"{', '.join(sorted(handler.names)) or 'none'}")
        return out


class _Conditioning(Handler):
    def __init__(self, data: Mapping[str, Any]) -> None:
        self.data = data
        self.seen: set[str] = set()
        self.names: set[str] = set()

    def process(self, site: Site) -> None:
        self.names.add(site.name)
        if site.name in self.data and not site.observed:
            site.value = _check_observation(site.name, site.fn, self.data[site.name])
            site.observed = True
            self.seen.add(site.name)


def run_traced(program: Callable[..., Any], *args: Any, **kwargs: Any) -> Trace:
    """Run `program` and return its trace (with the return value in `trace.value`)."""
    rec = recording()
    with rec:
        value = program(*args, **kwargs)
    rec.trace.value = value
    return rec.trace
