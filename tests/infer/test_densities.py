"""The fused draws and log-densities agree with torch.distributions (values and gradients)."""

from __future__ import annotations

import pytest
import torch
from torch.distributions import Bernoulli, Categorical, Independent, Laplace, Normal, Poisson

from varbayes.infer import densities
from varbayes.infer.distributions import Normal as LeanNormal
from varbayes.infer.sites import Site


def _grads(t: torch.Tensor, params: list[torch.Tensor]) -> list[torch.Tensor]:
    gs = torch.autograd.grad(t.sum(), params, retain_graph=True, allow_unused=True)
    return [torch.zeros_like(p) if g is None else g for g, p in zip(gs, params)]


@pytest.mark.parametrize("wrap", [0, 1, 2])
@pytest.mark.parametrize("validate", [False, True])
def test_normal_draw_and_log_prob_match_torch(wrap: int, validate: bool) -> None:
    loc = torch.randn(4, 3, requires_grad=True)
    log_scale = torch.randn(4, 3, requires_grad=True)
    fn = Normal(loc, log_scale.exp(), validate_args=validate)
    fn = Independent(fn, wrap) if wrap else fn
    torch.manual_seed(3)
    expected = fn.rsample()
    torch.manual_seed(3)
    value, eps = densities.rsample(fn)
    assert eps is not None
    torch.testing.assert_close(value, expected)  # the same random numbers
    ref = fn.log_prob(value)
    params = [loc, log_scale]
    for lp in (densities.log_prob(fn, value, eps), densities.log_prob(fn, value.detach())):
        assert lp.shape == ref.shape
        torch.testing.assert_close(lp, ref)
    # with the noise, log q is the same function of the parameters: the same total gradient
    for g, r in zip(_grads(densities.log_prob(fn, value, eps), params), _grads(ref, params)):
        torch.testing.assert_close(g, r, atol=1e-5, rtol=1e-5)


def test_normal_log_prob_broadcasts_the_value() -> None:
    fn = Normal(torch.zeros(3), 2.0, validate_args=False)
    v = torch.randn(5, 3)
    torch.testing.assert_close(densities.log_prob(fn, v), fn.log_prob(v))


@pytest.mark.parametrize("probs", [False, True])
def test_bernoulli_log_prob_matches_torch(probs: bool) -> None:
    logits = torch.randn(4, 6, requires_grad=True)
    fn = (Bernoulli(probs=logits.sigmoid(), validate_args=False) if probs
          else Bernoulli(logits=logits, validate_args=False))
    v = (torch.rand(4, 6) < 0.5).float()
    for f in (fn, Independent(fn, 1)):
        for value in (v, v[0]):  # same shape, and broadcast
            torch.testing.assert_close(densities.log_prob(f, value), f.log_prob(value))
        fused, ref = densities.log_prob(f, v), f.log_prob(v)
        for g, r in zip(_grads(fused, [logits]), _grads(ref, [logits])):
            torch.testing.assert_close(g, r)


def test_categorical_log_prob_and_support_match_torch() -> None:
    logits = torch.randn(5, 3, requires_grad=True)
    fn = Categorical(logits=logits, validate_args=False)
    v = fn.sample()
    torch.testing.assert_close(densities.log_prob(fn, v), fn.log_prob(v))
    support = fn.enumerate_support(expand=True).reshape(3, 1, 5)
    torch.testing.assert_close(densities.log_prob(fn, support), fn.log_prob(support))
    torch.testing.assert_close(densities.support_log_prob(fn, (3, 1, 5)), fn.log_prob(support))


def test_other_distributions_and_validation_fall_back_to_torch() -> None:
    fn = Poisson(torch.tensor([1.0, 2.0]))
    v = torch.tensor([0.0, 3.0])
    torch.testing.assert_close(densities.log_prob(fn, v), fn.log_prob(v))
    assert densities.rsample(Independent(Normal(torch.zeros(2), 1.0), 1))[1] is not None
    with pytest.raises(ValueError):  # a validating Bernoulli still rejects a non-binary value
        densities.log_prob(Bernoulli(logits=torch.zeros(2), validate_args=True),
                           torch.tensor([0.5, 1.0]))
    assert densities.support_log_prob(Bernoulli(logits=torch.zeros(2)), (2, 2)) is None


@pytest.mark.parametrize("loc0, scale0", [(0.0, 1.0), (1.5, 0.5)])
def test_reused_constant_normal_caches_its_normaliser_and_stays_exact(loc0, scale0) -> None:
    """A fixed prior scored again keeps log scale + log sqrt(2 pi) (and, when standard,
    skips the standardisation); values and value-gradients stay torch's, also after the
    parameters change in place."""
    loc, scale = torch.full((4, 3), loc0), torch.full((4, 3), scale0)
    fn = Independent(Normal(loc, scale, validate_args=False), 1)
    for step in range(4):
        if step == 3:
            loc.add_(0.25)  # in place: the cache must not go stale
        v = torch.randn(4, 3, requires_grad=True)
        fused, ref = densities.log_prob(fn, v), fn.log_prob(v)
        torch.testing.assert_close(fused, ref)
        torch.testing.assert_close(_grads(fused, [v])[0], _grads(ref, [v])[0])
    assert "_varbayes_const" in fn.base_dist.__dict__


def test_support_log_prob_of_another_categorical_at_an_enumerated_value() -> None:
    """A model's Categorical scored at a guide's enumerated support: its logits moved first
    when the support size and batch dims agree, None (torch's log_prob) otherwise."""
    fn = Categorical(logits=torch.randn(5, 3), validate_args=False)
    support = torch.arange(3).reshape(3, 1, 1).expand(3, 1, 5)
    torch.testing.assert_close(densities.support_log_prob(fn, (3, 1, 5)), fn.log_prob(support))
    assert densities.support_log_prob(fn, (4, 1, 5)) is None  # another support size
    assert densities.support_log_prob(fn, (3, 2, 5)) is None  # a dim the site does not have
    small = Categorical(logits=torch.randn(3), validate_args=False)
    assert densities.support_log_prob(small, (3, 1, 5)) is None  # batch dims differ


def test_constant_normal_of_inference_tensors_is_scored_without_a_cache() -> None:
    with torch.inference_mode():
        fn = Normal(torch.zeros(3), torch.ones(3), validate_args=False)
        v = torch.randn(3)
        for _ in range(3):
            torch.testing.assert_close(densities.log_prob(fn, v), fn.log_prob(v))
    torch.testing.assert_close(densities.log_prob(fn, v.clone()), fn.log_prob(v))


def _guide_draw(wrap: int, lean: bool, shape=(4, 3)):
    loc = torch.randn(*shape, requires_grad=True)
    log_scale = (0.3 * torch.randn(*shape)).requires_grad_()
    base = (LeanNormal.from_log_scale(loc, log_scale, validate_args=False) if lean
            else Normal(loc, log_scale.exp(), validate_args=False))
    q = Independent(base, wrap) if wrap else base
    value, eps = densities.rsample(q)
    return q, value, eps, [loc, log_scale]


def _prior(kind: str, wrap: int, shape=(4, 3)):
    params: list[torch.Tensor] = []
    if kind == "standard":
        base = Normal(torch.zeros(shape), torch.ones(shape), validate_args=False)
    elif kind == "fixed":
        base = Normal(torch.full(shape, 0.7), torch.full(shape, 1.8), validate_args=False)
    else:  # learned
        loc, scale = torch.randn(shape, requires_grad=True), torch.rand(shape).add(0.5)
        scale.requires_grad_()
        base, params = Normal(loc, scale, validate_args=False), [loc, scale]
    return (Independent(base, wrap) if wrap else base), params


@pytest.mark.parametrize("wrap", [0, 1, 2])
@pytest.mark.parametrize("lean", [False, True])
@pytest.mark.parametrize("kind", ["standard", "fixed", "learned"])
def test_log_ratio_matches_the_two_log_probs_and_torch(wrap: int, lean: bool, kind: str) -> None:
    """log q - log p fused: the value and every gradient of the unfused difference and of
    torch's own log_probs, on every scoring of p (a fixed p's cache starts at the second)."""
    torch.manual_seed(wrap)
    p, p_params = _prior(kind, wrap)
    for _ in range(3):
        q, value, eps, q_params = _guide_draw(wrap, lean)
        fused = densities.log_ratio(q, p, value, eps)
        assert fused is not None
        unfused = densities.log_prob(q, value, eps) - densities.log_prob(p, value)
        ref = q.log_prob(value) - p.log_prob(value)
        assert fused.shape == ref.shape
        torch.testing.assert_close(fused, unfused)
        torch.testing.assert_close(fused, ref)
        params = q_params + p_params
        for g, u, r in zip(_grads(fused, params), _grads(unfused, params), _grads(ref, params)):
            torch.testing.assert_close(g, u, atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(g, r, atol=1e-5, rtol=1e-5)


def test_log_ratio_of_a_standard_prior_is_the_same_bits_before_and_after_its_cache() -> None:
    """The standard shortcut (from p's second scoring) is bit-identical to the general form
    (first scoring), value and gradients: the fast and general estimate paths, which see a
    new prior object in a different order, must agree exactly."""
    torch.manual_seed(5)
    loc = torch.randn(6, 4, requires_grad=True)
    log_scale = torch.randn(6, 4, requires_grad=True)
    q = Independent(LeanNormal.from_log_scale(loc, log_scale, validate_args=False), 1)
    value, eps = densities.rsample(q)
    results = []
    for _ in range(3):  # new object, seen once, cached
        p = Independent(Normal(torch.zeros(6, 4), torch.ones(6, 4), validate_args=False), 1)
        for _ in range(len(results) + 1):
            lr = densities.log_ratio(q, p, value, eps)
        results.append((lr, _grads(lr, [loc, log_scale])))
    assert "_varbayes_const" in p.base_dist.__dict__
    for lr, grads in results[1:]:
        torch.testing.assert_close(lr, results[0][0], rtol=0, atol=0)
        for g, g0 in zip(grads, results[0][1]):
            torch.testing.assert_close(g, g0, rtol=0, atol=0)


def test_log_ratio_falls_back_where_it_has_no_fused_form() -> None:
    q, value, eps, _ = _guide_draw(1, True)
    p, _ = _prior("standard", 1)
    assert densities.log_ratio(q, p, value, eps) is not None
    assert densities.log_ratio(q, p, value, eps.clone().requires_grad_()) is None
    validating = Independent(Normal(torch.zeros(4, 3), torch.ones(4, 3), validate_args=True), 1)
    assert densities.log_ratio(q, validating, value, eps) is None
    assert densities.log_ratio(q, p.base_dist, value, eps) is None  # event dims differ
    assert densities.log_ratio(q, Independent(p.base_dist, 2), value, eps) is None
    broadcast = Independent(Normal(torch.zeros(3), torch.ones(3), validate_args=False), 1)
    assert densities.log_ratio(q, broadcast, value, eps) is None  # p's shape broadcasts
    wide = Normal(torch.zeros(4, 3, dtype=torch.float64), torch.ones(4, 3, dtype=torch.float64),
                  validate_args=False)
    assert densities.log_ratio(q, Independent(wide, 1), value, eps) is None  # would promote
    laplace = Independent(Laplace(torch.zeros(4, 3), torch.ones(4, 3)), 1)
    assert densities.log_ratio(q, laplace, value, eps) is None
    fixed_scale = Independent(LeanNormal(torch.zeros(4, 3), 0.5, validate_args=False), 1)
    assert densities.log_ratio(q, fixed_scale, value, eps) is None  # its own closed form


def test_site_log_ratio_reuses_computed_log_probs() -> None:
    """`Site.log_ratio` subtracts cached log-densities (wanted elsewhere) instead of fusing."""
    q, value, eps, _ = _guide_draw(1, True)
    p, _ = _prior("standard", 1)
    guide_site, model_site = Site("z", q), Site("z", p, value)
    guide_site.value, guide_site._eps = value, eps
    fused = guide_site.log_ratio(model_site)
    assert guide_site._log_prob is None and model_site._log_prob is None
    cached = guide_site.log_prob
    unfused = guide_site.log_ratio(model_site)
    torch.testing.assert_close(unfused, cached - model_site.log_prob, rtol=0, atol=0)
    torch.testing.assert_close(fused, unfused)


def test_site_log_ratio_scores_each_site_at_its_own_value() -> None:
    """A model site holding a value other than the guide's draw: the fused form still scores
    q at its own draw (through eps) and p at p's value, as the two log-densities would."""
    q, value, eps, _ = _guide_draw(1, True)
    p, _ = _prior("standard", 1)
    other = value + 1.0
    guide_site, model_site = Site("z", q), Site("z", p, other)
    guide_site.value, guide_site._eps = value, eps
    got = guide_site.log_ratio(model_site)
    torch.testing.assert_close(got, q.log_prob(value) - p.log_prob(other))


def test_constant_normal_cache_follows_replaced_parameters() -> None:
    """A cached prior whose loc is replaced by another tensor (not changed in place) is
    scored at the new loc, not from the old cache entry."""
    fn = Independent(Normal(torch.zeros(4, 3), torch.ones(4, 3), validate_args=False), 1)
    v = torch.randn(4, 3)
    for _ in range(3):
        densities.log_prob(fn, v)  # cached: standard
    fn.base_dist.loc = torch.full((4, 3), 2.0)
    for _ in range(3):
        torch.testing.assert_close(densities.log_prob(fn, v), fn.log_prob(v))
