"""The cheaper-to-build distributions of `varbayes.infer.distributions` are torch's: same
shapes, draws, log-densities, gradients, expansions, KL registrations and errors; and an
estimate of a program written with them equals the one of the same program with torch's
classes scored by torch's own `log_prob` (the general path)."""

from __future__ import annotations

import pytest
import torch
import torch.distributions as td

from varbayes import infer
from varbayes.infer import distributions as lean


def _params(*shape: int) -> tuple[torch.Tensor, torch.Tensor]:
    loc = torch.randn(*shape, requires_grad=True)
    log_scale = torch.randn(*shape, requires_grad=True)
    return loc, log_scale


@pytest.mark.parametrize("validate", [False, None, True])
def test_normal_matches_torch(validate) -> None:
    loc, log_scale = _params(4, 3)
    ours = lean.Normal(loc, log_scale.exp(), validate_args=validate)
    ref = td.Normal(loc, log_scale.exp(), validate_args=validate)
    assert isinstance(ours, td.Normal)
    assert ours.batch_shape == ref.batch_shape and ours.event_shape == ref.event_shape
    torch.manual_seed(0)
    a = ours.rsample((2,))
    torch.manual_seed(0)
    b = ref.rsample((2,))
    torch.testing.assert_close(a, b)
    v = torch.randn(4, 3)
    g1 = torch.autograd.grad(ours.log_prob(v).sum(), [loc, log_scale])
    g2 = torch.autograd.grad(ref.log_prob(v).sum(), [loc, log_scale])
    for x, y in zip(g1, g2):
        torch.testing.assert_close(x, y)
    wide = ours.expand((5, 4, 3))
    assert type(wide) is lean.Normal and wide.batch_shape == (5, 4, 3)
    torch.testing.assert_close(wide.log_prob(v), ref.expand((5, 4, 3)).log_prob(v))
    other = td.Normal(torch.zeros(4, 3), torch.ones(4, 3))
    torch.testing.assert_close(td.kl_divergence(ours, other), td.kl_divergence(ref, other))


def test_normal_falls_back_to_torch_for_numbers_broadcasting_and_validation() -> None:
    n = lean.Normal(torch.zeros(3), 2.0, validate_args=False)  # a number: broadcast by torch
    assert n.batch_shape == (3,) and n.scale.shape == (3,)
    m = lean.Normal(torch.zeros(2, 1), torch.ones(3), validate_args=False)
    assert m.batch_shape == (2, 3)
    with pytest.raises(ValueError):
        lean.Normal(torch.zeros(3), -torch.ones(3), validate_args=True)


@pytest.mark.parametrize("validate", [False, True])
def test_bernoulli_matches_torch(validate) -> None:
    logits = torch.randn(5, 4, requires_grad=True)
    ours = lean.Bernoulli(logits=logits, validate_args=validate)
    ref = td.Bernoulli(logits=logits, validate_args=validate)
    v = (torch.rand(5, 4) < 0.5).float()
    torch.testing.assert_close(ours.log_prob(v), ref.log_prob(v))
    torch.testing.assert_close(ours.probs, ref.probs)
    assert ours.batch_shape == ref.batch_shape
    assert torch.equal(ours.enumerate_support(), ref.enumerate_support())
    assert type(ours.expand((2, 5, 4))) is lean.Bernoulli
    p = lean.Bernoulli(probs=torch.full((3,), 0.25))  # probs: torch's constructor
    torch.testing.assert_close(p.logits, td.Bernoulli(probs=torch.full((3,), 0.25)).logits)
    with pytest.raises(ValueError):
        lean.Bernoulli(logits=torch.zeros(2), validate_args=True).log_prob(torch.tensor([0.5, 2]))


def test_categorical_normalises_like_torch() -> None:
    logits = torch.randn(6, 4, requires_grad=True)
    ours = lean.Categorical(logits=logits, validate_args=False)
    ref = td.Categorical(logits=logits, validate_args=False)
    torch.testing.assert_close(ours.logits, ref.logits)
    torch.testing.assert_close(ours.probs, ref.probs)
    assert ours.batch_shape == ref.batch_shape and ours._num_events == 4
    v = torch.randint(0, 4, (6,))
    g1 = torch.autograd.grad(ours.log_prob(v).sum(), logits)[0]
    g2 = torch.autograd.grad(ref.log_prob(v).sum(), logits)[0]
    torch.testing.assert_close(g1, g2)
    torch.manual_seed(1)
    a = ours.sample((3,))
    torch.manual_seed(1)
    assert torch.equal(a, ref.sample((3,)))
    assert type(ours.expand((2, 6))) is lean.Categorical
    single = lean.Categorical(logits=torch.tensor([0.0, 1.0]), validate_args=False)
    assert single.batch_shape == () and single.enumerate_support().shape == (2,)
    with pytest.raises(ValueError):
        lean.Categorical(probs=torch.tensor([0.5, -0.5]), validate_args=True)


@pytest.mark.parametrize("validate", [None, False])
def test_independent_matches_torch(validate) -> None:
    loc, log_scale = _params(4, 3, 2)
    base = lean.Normal(loc, log_scale.exp(), validate_args=False)
    for k in (0, 1, 2):
        ours = lean.Independent(base, k, validate_args=validate)
        ref = td.Independent(base, k, validate_args=validate)
        assert ours.batch_shape == ref.batch_shape and ours.event_shape == ref.event_shape
        v = torch.randn(4, 3, 2)
        torch.testing.assert_close(ours.log_prob(v), ref.log_prob(v))
        assert ours.support.event_dim == ref.support.event_dim
    assert type(lean.Independent(base, 1).expand((5, 4, 3))) is lean.Independent
    with pytest.raises(ValueError):
        lean.Independent(base, 4)


def _vae_programs(classes: str, enc: torch.nn.Module, dec: torch.nn.Module):
    d = lean if classes == "lean" else td
    validate = classes == "torch-validated"  # validation on: torch's log_prob scores them

    def guide(x):
        loc, log_scale = enc(x).chunk(2, -1)
        infer.sample("z", d.Independent(d.Normal(loc, log_scale.exp(), validate_args=validate),
                                        1))

    zeros = torch.zeros(7, 2)  # one prior object, reused: its normaliser gets cached
    prior = d.Independent(d.Normal(zeros, zeros + 1.0, validate_args=validate), 1)

    def model(x):
        z = infer.sample("z", prior)
        infer.sample("x", d.Independent(d.Bernoulli(logits=dec(z), validate_args=validate), 1),
                     obs=x)

    return model, guide


@pytest.mark.parametrize("objective", [infer.elbo(), infer.iwelbo(3)])
def test_fast_path_gives_the_general_paths_value_and_gradient(objective) -> None:
    """The lean classes with the fused log-densities, against torch's classes with
    validation on (every log-density by torch's own `log_prob`): same numbers, same
    gradients, at the same random draws."""
    torch.manual_seed(0)
    enc, dec = torch.nn.Linear(5, 4), torch.nn.Linear(2, 5)
    x = (torch.rand(7, 5) < 0.4).float()
    params = list(enc.parameters()) + list(dec.parameters())
    results = []
    for classes in ("lean", "torch", "torch-validated"):
        model, guide = _vae_programs(classes, enc, dec)
        for _ in range(2):  # the second run hits the cached constant-normal normaliser too
            torch.manual_seed(1)
            est = infer.estimate(objective, model, guide, x, plates=1)
        grads = torch.autograd.grad(est.loss(), params)
        results.append((est.value, grads))
    for value, grads in results[1:]:
        torch.testing.assert_close(value, results[0][0])
        for g, r in zip(grads, results[0][1]):
            torch.testing.assert_close(g, r)


@pytest.mark.parametrize("validate", [False, True])
def test_normal_with_a_number_scale_is_scored_like_torch(validate) -> None:
    """A fixed scale given as a number takes the lean constructor (a view of one cached
    constant) and `densities.log_prob`'s closed form: torch's values and gradients, at a
    given value and at the noise of its own draw."""
    from varbayes.infer import densities

    loc = torch.randn(4, 3, requires_grad=True)
    ours = lean.Normal(loc, 1.7, validate_args=validate)
    ref = td.Normal(loc, torch.full((4, 3), 1.7), validate_args=validate)
    assert ours.scale.shape == (4, 3) and ours.batch_shape == ref.batch_shape
    v = torch.randn(2, 4, 3)  # broadcasts against the parameters
    lp = densities.log_prob(ours, v)
    torch.testing.assert_close(lp, ref.log_prob(v))
    g1 = torch.autograd.grad(lp.sum(), loc)
    g2 = torch.autograd.grad(ref.log_prob(v).sum(), loc)
    torch.testing.assert_close(g1, g2)
    torch.manual_seed(0)
    z, eps = densities.rsample(ours)
    torch.testing.assert_close(densities.log_prob(ours, z, eps), ref.log_prob(z))
    torch.testing.assert_close(ours.entropy(), ref.entropy())
    assert lean.Normal(loc, 2, validate_args=False).scale.dtype == loc.dtype
    with pytest.raises(ValueError):
        lean.Normal(loc, -1.0, validate_args=True)


def _mixture_programs(classes: str, means: torch.Tensor, enc: torch.nn.Module):
    d = lean if classes == "lean" else td
    validate = classes == "torch-validated"

    def model(x):
        c = infer.sample("c", d.Categorical(logits=x.new_zeros(x.shape[0], 3),
                                            validate_args=validate))
        scale = 0.8 if classes == "lean" else torch.full_like(means[c], 0.8)
        infer.sample("x", d.Independent(d.Normal(means[c], scale, validate_args=validate), 1),
                     obs=x)

    def guide(x):
        infer.sample("c", d.Categorical(logits=enc(x), validate_args=validate))

    return model, guide


@pytest.mark.parametrize("parallel", [True, False])
def test_enumerated_mixture_fast_path_gives_the_general_paths_value_and_gradient(
        parallel) -> None:
    """The benchmark's discrete-latent model (a Gaussian mixture, enumerated assignments):
    lean classes (log-probabilities of the support read off the logits, the number-scale
    Normal's closed form) against torch's classes with validation on (torch's `log_prob` at
    every enumerated value): same value, same gradients, and both equal to the exact sum
    over assignments written out by hand."""
    torch.manual_seed(0)
    means = torch.randn(3, 2, requires_grad=True)
    enc = torch.nn.Linear(2, 3)
    x = torch.randn(6, 2) * 3
    params = [means, *enc.parameters()]
    results = []
    for classes in ("lean", "torch", "torch-validated"):
        model, guide = _mixture_programs(classes, means, enc)
        est = infer.estimate(infer.elbo(), model, guide, x, plates=1,
                             strategies={"c": infer.enum(parallel=parallel)})
        results.append((est.value, torch.autograd.grad(est.loss(), params)))
    log_q = torch.log_softmax(enc(x), -1)
    ll = td.Normal(means, 0.8).log_prob(x[:, None, :]).sum(-1)
    exact = (log_q.exp() * (ll - torch.log(torch.tensor(3.0)) - log_q)).sum(-1)
    torch.testing.assert_close(results[0][0], exact.detach())
    exact_grads = torch.autograd.grad(-exact.mean(), params)
    for value, grads in results:
        torch.testing.assert_close(value, results[0][0])
        for g, r in zip(grads, exact_grads):
            torch.testing.assert_close(g, r)


def test_cached_enumerated_support_is_torchs_and_survives_inference_mode() -> None:
    """A Categorical's parallel-enumerated support is built once per shape: it equals torch's
    `enumerate_support` laid out along the enumeration dim, in-place writes to it are refused,
    and one first built under `torch.inference_mode` still serves a later run with gradients
    (the model indexes with it)."""
    from varbayes.infer.estimate import _enumerated_support

    torch.manual_seed(0)
    means = torch.randn(3, 2, requires_grad=True)
    enc = torch.nn.Linear(2, 3)
    x = torch.randn(5, 2)
    model, guide = _mixture_programs("lean", means, enc)
    strategies = {"c": infer.enum(parallel=True)}
    with torch.inference_mode():
        first = infer.estimate(infer.elbo(), model, guide, x, plates=1,
                               strategies=strategies).value
    est = infer.estimate(infer.elbo(), model, guide, x, plates=1, strategies=strategies)
    torch.testing.assert_close(est.value, first)
    assert torch.autograd.grad(est.loss(), means)[0].abs().sum() > 0
    fn = lean.Categorical(logits=torch.randn(4, 5, 3), validate_args=False)
    v = _enumerated_support(fn, -4)
    assert v is _enumerated_support(fn, -4)
    ref = fn.enumerate_support(expand=True)  # (3, 4, 5)
    assert v.shape == (3, 1, 4, 5) and torch.equal(v[:, 0], ref)
    with pytest.raises(RuntimeError):
        v.add_(1)


def test_normal_from_log_scale_scores_with_its_log_scale() -> None:
    """`Normal.from_log_scale(loc, s)` is `Normal(loc, s.exp())`: the same draws, and the fused
    log-density (at a draw with its noise, and at a given value) matches torch's in value and
    gradient, without a log of the scale in the graph; an expanded copy forgets log_scale."""
    from varbayes.infer import densities

    loc, log_scale = _params(4, 3)
    ours = lean.Independent(lean.Normal.from_log_scale(loc, log_scale, validate_args=False), 1)
    ref = td.Independent(td.Normal(loc, log_scale.exp()), 1)
    torch.manual_seed(0)
    z, eps = densities.rsample(ours)
    torch.manual_seed(0)
    z_ref = ref.rsample()
    torch.testing.assert_close(z, z_ref)
    v = torch.randn(4, 3)
    for lp, expected in ((densities.log_prob(ours, z, eps), ref.log_prob(z_ref)),
                         (densities.log_prob(ours, v), ref.log_prob(v))):
        torch.testing.assert_close(lp, expected)
        g1 = torch.autograd.grad(lp.sum(), [loc, log_scale], retain_graph=True, allow_unused=True)
        g2 = torch.autograd.grad(expected.sum(), [loc, log_scale], retain_graph=True)
        for a, b in zip(g1, g2):
            torch.testing.assert_close(torch.zeros_like(b) if a is None else a, b)

    def names(t: torch.Tensor) -> set[str]:
        seen, todo = set(), [t.grad_fn]
        while todo:
            n = todo.pop()
            if n is not None and type(n).__name__ not in seen:
                seen.add(type(n).__name__)
                todo.extend(f for f, _ in n.next_functions)
        return seen

    assert "LogBackward0" not in names(densities.log_prob(ours, z, eps))
    plain = lean.Independent(lean.Normal(loc, log_scale.exp(), validate_args=False), 1)
    assert "LogBackward0" in names(densities.log_prob(plain, z, eps))
    wide = ours.base_dist.expand((2, 4, 3))
    assert wide._log_scale is None and ours.base_dist._log_scale is log_scale
    torch.testing.assert_close(wide.log_prob(v), ref.base_dist.expand((2, 4, 3)).log_prob(v))


def test_independent_reads_shapes_of_every_base_like_torch() -> None:
    """Our own bases (shape fields read directly), torch's, and a base with event dims of its
    own (an `Independent`: torch's properties, and event dims appended) give torch's shapes."""
    loc, log_scale = _params(4, 3, 2)
    bases = [lean.Normal(loc, log_scale.exp(), validate_args=False),
             td.Normal(loc, log_scale.exp()),
             lean.Bernoulli(logits=loc, validate_args=False),
             lean.Categorical(logits=loc, validate_args=False),
             lean.Independent(lean.Normal(loc, log_scale.exp(), validate_args=False), 1),
             td.Independent(td.Normal(loc, log_scale.exp()), 1)]
    for base in bases:
        for k in range(len(base.batch_shape) + 1):
            ours, ref = lean.Independent(base, k), td.Independent(base, k)
            assert (ours.batch_shape, ours.event_shape) == (ref.batch_shape, ref.event_shape)
            assert type(ours.event_shape) is torch.Size


def test_from_log_scale_keeps_log_scale_exactly_when_it_has_the_scales_shape() -> None:
    """Kept when the constructor builds directly or through torch's (validation on) with
    the same shapes; not when torch's constructor broadcast the scale to loc's shape."""
    loc, log_scale = _params(4, 3)
    assert lean.Normal.from_log_scale(loc, log_scale, validate_args=False)._log_scale is log_scale
    validated = lean.Normal.from_log_scale(loc, log_scale, validate_args=True)
    assert validated._log_scale is log_scale
    broadcast = lean.Normal.from_log_scale(loc, log_scale[0], validate_args=False)
    assert broadcast._log_scale is None and broadcast.scale.shape == (4, 3)
