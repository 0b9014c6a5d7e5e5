"""The estimate driver's lean path: a run that cannot branch keeps no random-number snapshot
(`_BRANCHING_PROGRAMS` False, no branching override) and must give the same value and
gradients as the full path (snapshot kept); a program that declares a branching strategy
itself trips the guard and is estimated on the full path from then on."""

from __future__ import annotations

import sys

import pytest
import torch
import torch.distributions as td

from varbayes import infer
from varbayes.infer import distributions as lean

from ._programs import vae_programs

# the submodule (the package's `estimate` attribute is the function)
estimate_module = sys.modules["varbayes.infer.estimate"]


def _mixture(means: torch.Tensor, enc: torch.nn.Module):
    def model(x):
        c = infer.sample("c", lean.Categorical(logits=x.new_zeros(x.shape[0], 3)))
        infer.sample("x", lean.Independent(lean.Normal(means[c], 0.8), 1), obs=x)

    def guide(x):
        infer.sample("c", lean.Categorical(logits=enc(x)))

    return model, guide


def _run(branching: bool, objective, model, guide, x, params, **kw):
    """Value and gradients of one estimate from seed 0, on the lean path (False) or the full
    path (True, the snapshot kept), checking which one ran."""
    old, snapshot = estimate_module._BRANCHING_PROGRAMS, estimate_module._RngState
    taken = []
    estimate_module._BRANCHING_PROGRAMS = branching
    estimate_module._RngState = lambda: taken.append(1) or snapshot()
    try:
        torch.manual_seed(0)
        est = infer.estimate(objective, model, guide, x, plates=1, **kw)
        assert len(taken) == int(branching)
        return est.value, torch.autograd.grad(est.loss(), params), torch.rand(())
    finally:
        estimate_module._BRANCHING_PROGRAMS, estimate_module._RngState = old, snapshot


@pytest.mark.parametrize("case", ["elbo", "iwelbo", "enum-parallel", "reinforce", "samples"])
def test_lean_path_gives_the_full_paths_value_and_gradients(case) -> None:
    """Same seed, same value, same gradients, and the same random stream afterwards."""
    torch.manual_seed(1)
    x = (torch.rand(5, 4) < 0.4).float()
    kw: dict = {}
    if case in ("enum-parallel", "reinforce"):
        means = torch.randn(3, 2, requires_grad=True)
        enc = torch.nn.Linear(2, 3)
        x = torch.randn(5, 2) * 3
        model, guide = _mixture(means, enc)
        params = [means, *enc.parameters()]
        strategy = infer.enum(parallel=True) if case == "enum-parallel" else infer.reinforce()
        kw["strategies"] = {"c": strategy}
    else:
        enc, dec = torch.nn.Linear(4, 4), torch.nn.Linear(2, 4)
        model, guide = vae_programs(enc, dec)
        params = [*enc.parameters(), *dec.parameters()]
        if case == "samples":
            kw["samples"] = 3
    objective = infer.iwelbo(3) if case == "iwelbo" else infer.elbo()
    lean_value, lean_grads, lean_next = _run(False, objective, model, guide, x, params, **kw)
    full_value, full_grads, full_next = _run(True, objective, model, guide, x, params, **kw)
    assert torch.equal(lean_value, full_value)
    for a, b in zip(lean_grads, full_grads):
        assert torch.equal(a, b)
    assert torch.equal(lean_next, full_next)


def _bernoulli_program(p: torch.Tensor, strategy):
    def program():
        v = infer.sample("v", td.Bernoulli(probs=p), strategy=strategy)
        return (v - 0.3) ** 2

    return program


@pytest.mark.parametrize("strategy", ["enum", "mvd"])
def test_a_program_declaring_a_branching_strategy_trips_the_guard(strategy) -> None:
    """Without a snapshot the first branching site restarts the estimate on the full path:
    enumeration still gives the exact value and gradient (it draws nothing before branching,
    so the restart's random numbers are the full path's), MVD an unbiased one; later
    estimates keep the snapshot."""
    old = estimate_module._BRANCHING_PROGRAMS
    estimate_module._BRANCHING_PROGRAMS = False
    try:
        p = torch.tensor(0.7, requires_grad=True)
        chosen = infer.enum() if strategy == "enum" else infer.mvd()
        est = infer.estimate(_bernoulli_program(p, chosen))
        assert estimate_module._BRANCHING_PROGRAMS is True
        (grad,) = torch.autograd.grad(est.loss(), p)
        exact_grad = -((1 - 0.3) ** 2 - 0.3**2)  # d/dp of -E[(v - 0.3)^2]
        torch.testing.assert_close(grad, torch.tensor(exact_grad))
        if strategy == "enum":
            exact = 0.7 * 0.7**2 + 0.3 * 0.3**2
            torch.testing.assert_close(est.value, torch.tensor(exact))
            full = infer.estimate(_bernoulli_program(p, chosen))
            torch.testing.assert_close(full.value, est.value)
    finally:
        estimate_module._BRANCHING_PROGRAMS = old


def test_branching_overrides_keep_the_snapshot_without_the_guard() -> None:
    """A branching override is known before the run: no restart, and the flag stays off."""
    old = estimate_module._BRANCHING_PROGRAMS
    estimate_module._BRANCHING_PROGRAMS = False
    try:
        p = torch.tensor(0.4, requires_grad=True)
        est = infer.estimate(_bernoulli_program(p, None), strategies={"v": infer.enum()})
        torch.testing.assert_close(est.value, torch.tensor(0.4 * 0.49 + 0.6 * 0.09))
        assert estimate_module._BRANCHING_PROGRAMS is False
    finally:
        estimate_module._BRANCHING_PROGRAMS = old


def test_estimate_value_is_detached_and_the_surrogate_is_not() -> None:
    enc, dec = torch.nn.Linear(4, 4), torch.nn.Linear(2, 4)
    model, guide = vae_programs(enc, dec)
    est = infer.estimate(infer.elbo(), model, guide, torch.ones(3, 4), plates=1)
    assert not est.value.requires_grad and est.surrogate.requires_grad
    assert est.value.shape == (3,) and "Estimate(mean=" in repr(est)
    assert est.mean == pytest.approx(float(est.surrogate.detach().mean()))
