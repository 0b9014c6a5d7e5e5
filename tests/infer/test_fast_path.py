"""The plain ELBO's fast path (`estimate`'s `_plain_elbo`) against the general path.

The general path is forced with a user handler that does nothing (any active handler sends
an estimate down the general path); both runs start from the same seed and must give the same
loss, the same gradients, the same next random draw and the same errors. A spy on
`_plain_elbo` shows which path was taken."""

from __future__ import annotations

import sys

import pytest
import torch
import torch.distributions as td

from varbayes import infer
from varbayes.errors import VarbayesError
from varbayes.infer import distributions as lean
from varbayes.infer.sites import Handler

from ._programs import vae_programs

estimate_module = sys.modules["varbayes.infer.estimate"]


class _NoOp(Handler):
    """A user handler that changes nothing but forces the general path."""


@pytest.fixture
def spy(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the estimates that took the fast path (and keeps the process-wide branching
    flag as it was, since a test below trips it)."""
    monkeypatch.setattr(estimate_module, "_BRANCHING_PROGRAMS", False)
    calls: list[int] = []
    real = estimate_module._plain_elbo

    def counted(*a, **kw):
        calls.append(1)
        return real(*a, **kw)

    monkeypatch.setattr(estimate_module, "_plain_elbo", counted)
    return calls


def _regression(w_loc: torch.Tensor, w_log_scale: torch.Tensor, enc: torch.nn.Module):
    """A global weight (no plate dims, divided by the data size), a local latent per example,
    and a plated observation: the minibatch conventions of `log_weight`."""

    def model(x, y):
        w = infer.sample("w", td.Independent(td.Normal(torch.zeros(3), 1.0), 1))
        u = infer.sample("u", td.Normal(torch.zeros(x.shape[0]), 1.0))
        infer.sample("y", td.Normal(x @ w + u, 0.5), obs=y)

    def guide(x, y):
        infer.sample("w", td.Independent(td.Normal(w_loc, w_log_scale.exp()), 1))
        loc = enc(torch.cat([x, y[:, None]], -1)).squeeze(-1)
        infer.sample("u", td.Normal(loc, 0.3))

    return model, guide


def _run(objective, model, guide, args, params, general: bool, seed: int = 3, **kw):
    """(loss, gradients, next draw) of one estimate, on the general path when `general`."""
    for p in params:
        p.grad = None
    torch.manual_seed(seed)
    if general:
        with _NoOp():
            est = infer.estimate(objective, model, guide, *args, **kw)
    else:
        est = infer.estimate(objective, model, guide, *args, **kw)
    loss = est.loss()
    loss.backward()
    grads = [p.grad.clone() if p.grad is not None else torch.zeros_like(p) for p in params]
    return loss.detach(), est.value, grads, torch.rand(4)


def _same(objective, model, guide, args, params, **kw) -> None:
    fast = _run(objective, model, guide, args, params, False, **kw)
    general = _run(objective, model, guide, args, params, True, **kw)
    torch.testing.assert_close(fast[0], general[0], rtol=0, atol=0)
    torch.testing.assert_close(fast[1], general[1], rtol=0, atol=0)
    for a, b in zip(fast[2], general[2]):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    torch.testing.assert_close(fast[3], general[3], rtol=0, atol=0)  # the random stream


def test_vae_fast_path_matches_general(spy: list[int]) -> None:
    torch.manual_seed(0)
    enc, dec = torch.nn.Linear(6, 4), torch.nn.Linear(2, 6)
    model, guide = vae_programs(enc, dec)
    x = (torch.rand(5, 6) < 0.4).float()
    params = [*enc.parameters(), *dec.parameters()]
    _same(infer.elbo(), model, guide, (x,), params, plates=1)
    assert len(spy) == 1  # the fast run took it, the general one did not
    _same(infer.elbo(kl_weight=0.3, warmup=0.5, analytic_kl=True), model, guide, (x,), params,
          plates=1)
    assert len(spy) == 2


def test_library_vae_matches_general(spy: list[int]) -> None:
    """The digits VAE of `varbayes.methods.vi` (a guide Normal built from its log scale, a
    prior object reused across steps), over three steps: the benchmark's step."""
    from varbayes.methods.vi.vae import VAE

    torch.manual_seed(0)
    vae = VAE(6, 5, 2)
    x = (torch.rand(4, 6) < 0.4).float()
    for seed in range(3):
        _same(infer.elbo(), vae.model, vae.guide, (x,), list(vae.parameters()), plates=1,
              seed=seed)
    assert len(spy) == 3


def test_plates_and_minibatch_scaling_match(spy: list[int]) -> None:
    torch.manual_seed(1)
    w_loc = torch.zeros(3, requires_grad=True)
    w_log_scale = torch.full((3,), -1.0, requires_grad=True)
    enc = torch.nn.Linear(4, 1)
    model, guide = _regression(w_loc, w_log_scale, enc)
    x, y = torch.randn(7, 3), torch.randn(7)
    params = [w_loc, w_log_scale, *enc.parameters()]
    _same(infer.elbo(), model, guide, (x, y), params, plates=1, data_size=70)
    _same(infer.elbo(), model, guide, (x, y), params, plates=1)
    assert len(spy) == 2


def test_reinforce_and_parallel_enum_sites_match(spy: list[int]) -> None:
    """Sites with estimator terms are drawn by the general path's own `_Run` inside the
    fast path (declared in the program; an override in `strategies=` takes the general
    path), so value, surrogate and gradients agree."""
    torch.manual_seed(2)
    enc = torch.nn.Linear(2, 3)
    means = torch.randn(3, 2, requires_grad=True)

    def model(x):
        c = infer.sample("c", lean.Categorical(logits=x.new_zeros(x.shape[0], 3)))
        infer.sample("x", lean.Independent(lean.Normal(means[c], 0.8), 1), obs=x)

    def guide_reinforce(x):
        infer.sample("c", lean.Categorical(logits=enc(x)))  # no rsample: REINFORCE

    def guide_enum(x):
        infer.sample("c", lean.Categorical(logits=enc(x)), strategy=infer.enum(parallel=True))

    x = torch.randn(6, 2)
    params = [means, *enc.parameters()]
    _same(infer.elbo(), model, guide_reinforce, (x,), params, plates=1)
    _same(infer.elbo(), model, guide_enum, (x,), params, plates=1)
    assert len(spy) == 2


def test_handlers_inside_the_programs_match(spy: list[int]) -> None:
    """Handlers a program enters itself (after the path was chosen) act as on the general
    path: a `detached` guide site carries no gradient, a model site that `condition`
    observes keeps its value."""
    torch.manual_seed(6)
    loc = torch.full((4, 2), 0.7, requires_grad=True)

    def model(x):
        infer.sample("z", td.Independent(td.Normal(torch.zeros(4, 2), 1.0), 1))
        w = infer.condition(lambda: infer.sample("w", td.Normal(torch.zeros(4), 1.0)),
                            {"w": torch.ones(4)})
        w()  # observed by a handler the model enters
        infer.sample("x", td.Independent(td.Normal(torch.zeros(4, 2), 1.0), 1), obs=x)

    def guide(x):
        with infer.detached():
            infer.sample("z", td.Independent(td.Normal(loc, 1.0), 1))

    x = torch.randn(4, 2)
    _same(infer.elbo(), model, guide, (x,), [loc], plates=1)
    assert len(spy) == 1


def _mvd_programs(enc: torch.nn.Module):
    """A Bernoulli per example whose guide site declares MVD (a branching strategy)."""

    def model(x):
        b = infer.sample("b", td.Bernoulli(probs=torch.full((x.shape[0],), 0.3)))
        infer.sample("x", td.Independent(td.Normal(x * b[:, None], 1.0), 1), obs=x)

    def guide(x):
        infer.sample("b", td.Bernoulli(logits=enc(x).squeeze(-1)), strategy=infer.mvd())

    return model, guide


def test_branching_site_falls_back(spy: list[int]) -> None:
    """A site the program declares MVD on branches: the fast path hands the run to the
    general path, which starts over with a snapshot, as a general run without one does."""
    torch.manual_seed(4)
    enc = torch.nn.Linear(2, 1)
    model, guide = _mvd_programs(enc)
    x = torch.randn(5, 2)
    params = list(enc.parameters())
    fast = _run(infer.elbo(), model, guide, (x,), params, False, plates=1)
    assert len(spy) == 1
    estimate_module._BRANCHING_PROGRAMS = False  # as it was before the fast run
    general = _run(infer.elbo(), model, guide, (x,), params, True, plates=1)
    for a, b in zip(fast, general):
        if isinstance(a, list):
            for g, h in zip(a, b):
                torch.testing.assert_close(g, h, rtol=0, atol=0)
        else:
            torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert estimate_module._BRANCHING_PROGRAMS  # later estimates keep a snapshot
    infer.estimate(infer.elbo(), model, guide, x, plates=1)
    assert len(spy) == 1  # ... and take the general path


def test_fast_path_not_taken(spy: list[int]) -> None:
    torch.manual_seed(5)
    enc, dec = torch.nn.Linear(6, 4), torch.nn.Linear(2, 6)
    model, guide = vae_programs(enc, dec)
    x = (torch.rand(5, 6) < 0.4).float()
    infer.estimate(infer.iwelbo(3), model, guide, x, plates=1)
    infer.estimate(infer.elbo(), model, guide, x, plates=1, samples=2)
    with _NoOp():
        infer.estimate(infer.elbo(), model, guide, x, plates=1)

    def aux_guide(x):
        u = infer.sample("u", td.Independent(td.Normal(torch.zeros(x.shape[0], 2), 1.0), 1))
        infer.sample("z", td.Independent(td.Normal(u, 0.5), 1))

    infer.estimate(infer.hvi("u"), model, aux_guide, x, plates=1)
    infer.estimate(infer.elbo(), model, infer.marginal(aux_guide, "u"), x, plates=1)
    assert spy == []
    infer.estimate(infer.elbo(), model, guide, x, plates=1)
    assert spy == [1]


def _message(objective, model, guide, args, general: bool, **kw) -> str:
    with pytest.raises(VarbayesError) as err:
        if general:
            with _NoOp():
                infer.estimate(objective, model, guide, *args, **kw)
        else:
            infer.estimate(objective, model, guide, *args, **kw)
    return str(err.value)


def test_errors_match(spy: list[int]) -> None:
    x = torch.randn(4, 2)
    normal = td.Independent(td.Normal(torch.zeros(4, 2), 1.0), 1)

    def model(x):
        infer.sample("z", td.Independent(td.Normal(torch.zeros(4, 2), 1.0), 1))
        infer.sample("x", td.Independent(td.Normal(torch.zeros(4, 2), 1.0), 1), obs=x)

    def guide(x):
        infer.sample("z", normal)

    def guide_extra(x):  # a site the model does not have
        infer.sample("z", normal)
        infer.sample("a", normal)

    def guide_missing(x):  # the model's z has no value
        infer.sample("w", normal)

    def guide_twice(x):
        infer.sample("z", normal)
        infer.sample("z", normal)

    def model_twice(x):
        infer.sample("z", td.Independent(td.Normal(torch.zeros(4, 2), 1.0), 1))
        infer.sample("z", td.Independent(td.Normal(torch.zeros(4, 2), 1.0), 1), obs=x)

    def model_shape(x):
        infer.sample("z", td.Independent(td.Normal(torch.zeros(4, 2), 1.0), 1))
        infer.sample("x", td.Independent(td.Normal(torch.zeros(4, 2), 1.0), 1), obs=x[:, :1].T)

    def guide_bad_strategy(x):
        infer.sample("z", normal)
        infer.sample("b", td.Bernoulli(probs=torch.full((4,), 0.5)), strategy=infer.reparam())

    def guide_batch(x):  # an undeclared batch dim, and the name used twice
        infer.sample("z", normal)
        infer.sample("z", td.Independent(td.Normal(torch.zeros(3, 4, 2), 1.0), 1))

    cases = [(model, guide_extra), (model, guide_missing), (model, guide_twice),
             (model_twice, guide), (model_shape, guide), (model, guide_bad_strategy),
             (model, guide_batch)]
    for m, g in cases:
        fast = _message(infer.elbo(), m, g, (x,), False, plates=1)
        assert fast == _message(infer.elbo(), m, g, (x,), True, plates=1)
    assert len(spy) == len(cases)


def _mixture(k: int = 3):
    """The benchmark's mixture (an assignment per point, amortised guide) with a continuous
    per-point scale `s` in the guide, which the model also draws."""
    torch.manual_seed(7)
    enc = torch.nn.Linear(2, k)
    means = torch.randn(k, 2, requires_grad=True)
    s_loc = torch.zeros(1, requires_grad=True)

    def model(x):
        c = infer.sample("c", lean.Categorical(logits=x.new_zeros(x.shape[0], k)))
        s = infer.sample("s", td.LogNormal(torch.zeros(x.shape[0]), 1.0))
        infer.sample("x", lean.Independent(lean.Normal(means[c], s[..., None]), 1), obs=x)

    def guide(x):
        infer.sample("c", lean.Categorical(logits=enc(x)))
        infer.sample("s", td.LogNormal(s_loc.expand(x.shape[0]), 0.5))

    return model, guide, [means, s_loc, *enc.parameters()]


def test_overrides_match(spy: list[int]) -> None:
    """Non-branching `strategies=` overrides take the fast path, where the general path's
    `_Run` applies them: REINFORCE (plain, with a learned baseline, on a site that could be
    reparameterised), parallel enumeration, an explicit reparam, mixed with reparameterised
    sites, match the general path bit for bit, the baseline's gradient included."""
    model, guide, params = _mixture()
    baseline = infer.Baseline(0.5)
    x = torch.randn(6, 2)
    overrides = [
        {"c": infer.reinforce()},
        {"c": infer.reinforce(baseline=baseline)},
        {"c": infer.enum(parallel=True)},
        {"c": infer.enum(parallel=True), "s": infer.reparam()},
        {"c": infer.enum(parallel=True), "s": infer.reinforce()},
        {"s": infer.reinforce(baseline=baseline)},
    ]
    for i, strategies in enumerate(overrides):
        _same(infer.elbo(), model, guide, (x,), [*params, *baseline.parameters()], plates=1,
              data_size=60, strategies=strategies, seed=i)
        assert len(spy) == i + 1
    assert baseline.value.grad is not None and baseline.value.grad.abs() > 0


def test_override_replaces_a_declared_branching_strategy(spy: list[int]) -> None:
    """An override that does not branch, on a site the program declares MVD on, takes the
    fast path without branching (and trips no branching flag)."""
    torch.manual_seed(8)
    enc = torch.nn.Linear(2, 1)
    model, guide = _mvd_programs(enc)
    x = torch.randn(5, 2)
    params = list(enc.parameters())
    _same(infer.elbo(), model, guide, (x,), params, plates=1,
          strategies={"b": infer.reinforce()})
    assert len(spy) == 1 and not estimate_module._BRANCHING_PROGRAMS


def test_branching_overrides_take_the_general_path(spy: list[int]) -> None:
    model, guide, params = _mixture()
    x = torch.randn(6, 2)
    for strategies in ({"c": infer.enum()}, {"c": infer.mvd()},
                       {"c": infer.enum(), "s": infer.reparam()}):
        est = infer.estimate(infer.elbo(), model, guide, x, plates=1, strategies=strategies)
        assert torch.isfinite(est.loss())
    # a branching override naming no site: the general path, which raises after the run
    with pytest.raises(VarbayesError, match="unknown site 'b'"):
        infer.estimate(infer.elbo(), model, guide, x, plates=1,
                       strategies={"c": infer.enum(parallel=True), "b": infer.mvd()})
    assert spy == []
    assert not estimate_module._BRANCHING_PROGRAMS  # the program itself declared none


def test_override_errors_match(spy: list[int]) -> None:
    """An override naming no site, a strategy the site's distribution refuses, a value that
    is no strategy, and an override beside a guide error: the same one-line messages."""
    model, guide, _ = _mixture()
    x = torch.randn(6, 2)

    def guide_extra(x):  # a site the model does not have, and an override naming none
        guide(x)
        infer.sample("a", td.Normal(torch.zeros(x.shape[0]), 1.0))

    cases = [(guide, {"q": infer.reparam()}, "unknown site 'q'", 1),
             (guide, {"c": infer.enum(parallel=True), "q": infer.reinforce()},
              "unknown site 'q' in strategies; the program draws: c, s", 1),
             (guide, {"c": infer.reparam()}, "needs a distribution with rsample", 1),
             (guide, {"s": infer.enum(parallel=True)}, "no enumerable support", 1),
             (guide, {"c": "reinforce"}, "must be reparam()", 0),
             (guide_extra, {"q": infer.reparam()}, "unknown site 'a': the guide draws it", 1)]
    for g, strategies, expected, fast_runs in cases:
        before = len(spy)
        fast = _message(infer.elbo(), model, g, (x,), False, plates=1, strategies=strategies)
        assert len(spy) == before + fast_runs
        assert expected in fast
        assert fast == _message(infer.elbo(), model, g, (x,), True, plates=1,
                                strategies=strategies)
