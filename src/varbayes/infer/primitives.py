"""The primitives objectives are written with: draw from a guide, score a model, weigh.

- `simulate(guide, *args)`: run the guide, drawing its choices (each with its gradient
  strategy when inside `estimate`); returns the `Trace`.
- `density(model, trace, *args)`: run the model with every latent choice fixed to the trace's
  values and its observations scored; returns the model's `Trace` (`.log_prob()` is
  log p(x, z)).
- `log_weight(p_trace, q_trace)`: log p(x, z) - log q(z) per example, with the minibatch and
  KL conventions of the one ELBO (`varbayes.infer.elbo.elbo_terms`); `log_joint(trace)` is
  one trace's per-example log-density under the same conventions.
- `marginal(guide, aux, n)`: a guide whose auxiliary choices u are marginalised: its traces
  hold z only, with log q(z) replaced by an importance estimate over n auxiliaries that
  includes the u that generated z (a lower-bound-preserving estimate, the HVI family).
- `logmeanexp(t, dim)`: log (1/K) sum exp, the importance-weighted average in log space.
- `detached()`: choices drawn inside are plain samples that carry no gradient estimator
  (reweighted wake-sleep and SIR use it).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch.distributions import kl_divergence

from varbayes.errors import VarbayesError
from varbayes.infer.elbo import elbo_terms
from varbayes.infer.sites import (
    _SCOPES,
    Handler,
    Site,
    Trace,
    current_scope,
    particles,
    recording,
    replaying,
    run_traced,
    scoring,
)


def simulate(guide: Callable[..., Any], *args: Any, **kwargs: Any) -> Trace:
    """Run `guide` and return the trace of its choices (a `Marginal` returns its estimate)."""
    if isinstance(guide, Marginal):
        return guide.simulate(*args, **kwargs)
    return run_traced(guide, *args, **kwargs)


def density(
    model: Callable[..., Any], values: Trace | Mapping[str, torch.Tensor], *args: Any,
    **kwargs: Any,
) -> Trace:
    """Run `model` with its latent sites fixed to `values` and return its trace.

    Every latent site of the model needs a value, and every value needs a site of the model:
    a guide choice the model does not have is an error (marginalise it with `marginal`).
    """
    trace = isinstance(values, Trace)
    rec = scoring(values if trace else dict(values), strict=True)
    with rec:
        out = model(*args, **kwargs)
    rec.trace.value = out
    # used <= the latent sites <= all sites: the values are built only when some went unused
    if rec.used != (len(values.sites) if trace else len(rec.values)):
        check_used(rec.used, values if trace else rec.values, rec.trace)
    return rec.trace


def check_used(used: int, values: Trace | Mapping[str, torch.Tensor], p: Trace) -> None:
    """Raise when `used` (how many of the guide's latent `values` the model's run `p`
    replayed) is not all of them: a guide choice the model does not have."""
    vals = values.values if isinstance(values, Trace) else values
    if used != len(vals):
        sites = p.sites
        unused = sorted(n for n in vals if n not in sites or sites[n].value is not vals[n])
        raise VarbayesError(
            f"unknown site {unused[0]!r}: the guide draws it but the model has no such "
            f"latent site (model sites: {', '.join(p.sites) or 'none'}); "
            "marginalise auxiliary choices with marginal(guide, aux=...)")


def log_weight(
    p: Trace,
    q: Trace,
    *,
    kl_weight: float = 1.0,
    warmup: float = 1.0,
    analytic_kl: bool = False,
) -> torch.Tensor:
    """log p(x, z) - log q(z) per example (the ELBO's integrand), via `elbo_terms`.

    Terms spanning the data plates stay with their example; terms of global choices (no plate
    dims) are divided by the data size of the scope. `analytic_kl` replaces log q - log p of a
    latent site by KL(q || p) where torch registers one (valid given the site's parents).
    """
    s = _SCOPES[-1] if _SCOPES else current_scope()
    n, plates = s.data_size, s.plates
    # (local, global) sums of the log-likelihood and of log q - log p: a term is local when
    # it spans the plate dims (see `_split`); None for none, so no zeros enter the graph
    local_ll = global_ll = local_kl = global_kl = None
    density = q.density
    if density is not None:
        local_kl, global_kl = _split([density], plates)
    q_sites = q.sites
    # global: no plate dims, or plate dims all of size 1 (whose last is 1: tested first, so
    # that a term with a plate of several examples costs one index and no slice)
    for site in p.sites.values():  # one pass, in the model's order
        if site.observed:
            t = site.log_prob
            shape = t.shape
            if plates and (len(shape) < plates
                           or shape[-1] == 1 and shape[-plates:].numel() == 1):
                global_ll = t if global_ll is None else global_ll + t
            else:
                local_ll = t if local_ll is None else local_ll + t
            continue
        if density is not None:
            t = -site.log_prob
        else:
            q_site = q_sites.get(site.name)
            if q_site is None:
                raise VarbayesError(f"site {site.name!r} of the model is not in the guide trace")
            t = _kl(q_site, site) if analytic_kl else q_site.log_ratio(site)
        shape = t.shape
        if plates and (len(shape) < plates or shape[-1] == 1 and shape[-plates:].numel() == 1):
            global_kl = t if global_kl is None else global_kl + t
        else:
            local_kl = t if local_kl is None else local_kl + t
    if n is None:
        n = _plate_size(local_ll, plates)
    loglik = local_ll if global_ll is None and local_ll is not None else _add(
        local_ll, global_ll, n)
    return elbo_terms(loglik, 0.0 if global_kl is None else global_kl, n, kl_weight, warmup,
                      0.0 if local_kl is None else local_kl)


def log_joint(t: Trace) -> torch.Tensor:
    """Per-example log-density of a trace: plate-spanning terms per example, global terms
    divided by the data size (a marginal guide's trace: its density estimate)."""
    if t.density is not None:
        return t.density
    s = current_scope()
    local, glob = _split([site.log_prob for site in t.sites.values()], s.plates)
    n = s.data_size if s.data_size is not None else _plate_size(local, s.plates)
    return _add(local, glob, n)


def _kl(q_site: Site, p_site: Site) -> torch.Tensor:
    try:
        return kl_divergence(q_site.fn, p_site.fn)
    except NotImplementedError:
        return q_site.log_ratio(p_site)


def _split(terms: Sequence[torch.Tensor],
           plates: int) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """(sum of the terms that span the plate dims, sum of those that do not); None when
    there are none (so that no zero tensors enter the graph)."""
    local: torch.Tensor | None = None
    glob: torch.Tensor | None = None
    for t in terms:
        if plates and (t.dim() < plates or t.shape[-plates:].numel() == 1):
            glob = t if glob is None else glob + t
        else:
            local = t if local is None else local + t
    return local, glob


def _add(a: torch.Tensor | None, b: torch.Tensor | None, scale: float = 1.0) -> torch.Tensor:
    """a + b / scale with None for absent terms (zero when both are)."""
    if b is not None and scale != 1.0:
        b = b / scale
    if a is None:
        return b if b is not None else torch.zeros(())
    return a if b is None else a + b


def _plate_size(t: torch.Tensor | None, plates: int) -> int:
    if plates == 0 or t is None or t.dim() < plates:
        return 1
    # one plate (the usual case): one index, no torch.Size slice
    return t.shape[-1] if plates == 1 else math.prod(t.shape[-plates:])


def logmeanexp(t: torch.Tensor, dim: int) -> torch.Tensor:
    """log mean exp over `dim`, computed stably (logsumexp - log K)."""
    return torch.logsumexp(t, dim) - math.log(t.shape[dim])


# ---------------------------------------------------------------------------------------------
# approximate marginalisation of auxiliary choices


class Marginal:
    """A guide q(z) = integral q(u) q(z | u) du over its auxiliary sites `aux`.

    Its traces hold the z sites only and set `density` to

        log q_hat(z) = log (1/n) [ q(z, u_0)/r(u_0 | z) + sum_{i<n} q(z, u_i)/r(u_i | z) ],

    u_0 the auxiliary that generated z, u_i ~ r(. | z). Since E[log q_hat(z)] >= log q(z),
    -log q_hat in place of -log q keeps every bound a bound. r defaults to the guide's own
    prior on u (then each term is q(z | u_i)); `proposal(z_values, *args)` is a program drawing
    the aux sites otherwise.
    """

    def __init__(self, guide: Callable[..., Any], aux: str | Sequence[str], n: int = 1,
                 proposal: Callable[..., Any] | None = None) -> None:
        if not isinstance(n, int) or n < 1:
            raise VarbayesError(f"marginal needs n >= 1 auxiliary samples; got {n!r}")
        self.guide, self.n, self.proposal = guide, n, proposal
        self.aux = (aux,) if isinstance(aux, str) else tuple(aux)
        if not self.aux:
            raise VarbayesError("marginal needs at least one auxiliary site name")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.guide(*args, **kwargs)

    def simulate(self, *args: Any, **kwargs: Any) -> Trace:
        joint = run_traced(self.guide, *args, **kwargs)
        missing = [a for a in self.aux if a not in joint.sites]
        if missing:
            raise VarbayesError(f"unknown site {missing[0]!r} in marginal(aux=...); the guide's "
                                f"sites: {', '.join(joint.sites)}")
        z = {k: v for k, v in joint.values.items() if k not in self.aux}
        u0 = {a: joint[a] for a in self.aux}
        term0 = self._term(joint, u0, z, args, kwargs)
        log_q = term0
        if self.n > 1:
            with particles(self.n - 1) as dim:
                if self.proposal is None:
                    t = _run_with(self.guide, z, args, kwargs)
                    terms = t.log_prob(exclude=self.aux)
                else:
                    r = run_traced(self.proposal, z, *args, **kwargs)
                    t = _run_with(self.guide, {**z, **r.values}, args, kwargs)
                    terms = t.log_prob() - r.log_prob()
            while terms.dim() < -dim:
                terms = terms.unsqueeze(0)
            log_q = torch.logaddexp(term0, torch.logsumexp(terms, dim))
        log_q = log_q - math.log(self.n)
        sites = {k: s for k, s in joint.sites.items() if k not in self.aux}
        return Trace(sites, joint.value, density=log_q)

    def _term(self, t: Trace, u: dict[str, torch.Tensor], z: dict[str, torch.Tensor],
              args: tuple, kwargs: dict) -> torch.Tensor:
        """log q(z, u) - log r(u | z) for the trace t of the guide at (z, u)."""
        if self.proposal is None:
            return t.log_prob(exclude=self.aux)
        r = _density_of(self.proposal, u, z, args, kwargs)
        return t.log_prob() - r


def _run_with(program: Callable[..., Any], values: Mapping[str, torch.Tensor], args: tuple,
              kwargs: dict) -> Trace:
    rec = recording()
    with replaying(values), rec:
        program(*args, **kwargs)
    return rec.trace


def _density_of(proposal: Callable[..., Any], u: Mapping[str, torch.Tensor],
                z: Mapping[str, torch.Tensor], args: tuple, kwargs: dict) -> torch.Tensor:
    rec = recording()
    with replaying(u, strict=True), rec:
        proposal(dict(z), *args, **kwargs)
    return rec.trace.log_prob()


def marginal(guide: Callable[..., Any], aux: str | Sequence[str], n: int = 1,
             proposal: Callable[..., Any] | None = None) -> Marginal:
    """The guide with auxiliary sites `aux` marginalised by n-sample importance estimates."""
    return Marginal(guide, aux, n, proposal)


# ---------------------------------------------------------------------------------------------


class detached(Handler):
    """Choices drawn inside are plain samples (no gradient, no estimator term)."""

    def process(self, site: Site) -> None:
        site.detach = True
