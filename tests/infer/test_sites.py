"""`sample` outside any handler (no site kept) draws what it draws under a handler."""

from __future__ import annotations

import pytest
import torch
import torch.distributions as td

from varbayes import infer
from varbayes.infer import distributions as lean


def _dists():
    loc = torch.randn(4, 3, requires_grad=True)
    return {
        "normal": td.Normal(loc, loc.exp()),
        "lean independent normal": lean.Independent(lean.Normal(loc, loc.exp()), 1),
        "bernoulli": td.Bernoulli(logits=loc),
        "gamma": td.Gamma(loc.exp(), 1.0),
    }


@pytest.mark.parametrize("name", list(_dists()))
def test_draw_without_handlers_matches_the_recorded_draw(name):
    """Same seed: the same value, gradient and random stream afterwards, bare or recorded."""
    torch.manual_seed(0)
    fn = _dists()[name]
    torch.manual_seed(3)
    bare, bare_next = infer.sample("v", fn), torch.rand(())
    torch.manual_seed(3)
    trace = infer.sites.run_traced(lambda: infer.sample("v", fn))
    recorded, recorded_next = trace["v"], torch.rand(())
    assert torch.equal(bare, recorded) and torch.equal(bare_next, recorded_next)
    if bare.requires_grad:
        params = [p for p in (getattr(fn, "loc", None), getattr(fn, "concentration", None),
                              getattr(getattr(fn, "base_dist", None), "loc", None))
                  if p is not None and p.requires_grad]
        g1 = torch.autograd.grad(bare.sum(), params, retain_graph=True)
        g2 = torch.autograd.grad(recorded.sum(), params)
        assert all(torch.equal(a, b) for a, b in zip(g1, g2))


@pytest.mark.parametrize("obs", [torch.tensor([0.0, 1.0, 1.0]), [0.0, 1.0, 1.0], 1.0])
def test_observed_value_bare_and_recorded(obs):
    """An observation comes back as the same tensor (a tensor) or the same converted value,
    with or without handlers."""
    fn = td.Bernoulli(probs=torch.full((3,), 0.4))
    bare = infer.sample("x", fn, obs=obs)
    recorded = infer.sites.run_traced(lambda: infer.sample("x", fn, obs=obs))["x"]
    assert torch.equal(bare, recorded) and bare.dtype == recorded.dtype
    if isinstance(obs, torch.Tensor):
        assert bare is obs and recorded is obs
