"""The compiled step (`compile_loss`, `fit(compile=...)`) against the eager path: the same loss
and gradients from the same random numbers, one captured graph per input shape, and the
fallback for programs that cannot be captured. Tiny shapes and the `aot_eager` backend (a
compile of a few seconds); one Inductor test is marked slow."""

from __future__ import annotations

import shutil
import warnings

import pytest
import torch
from torch import nn

from varbayes import infer
from varbayes.errors import VarbayesError
from varbayes.infer.distributions import Categorical, Independent, Normal
from varbayes.methods.vi.vae import VAE
from varbayes.train import TrainConfig


class _Counting:
    """A backend that counts the graphs it is handed (aot_eager underneath)."""

    def __init__(self) -> None:
        self.graphs = 0

    def __call__(self, gm: torch.fx.GraphModule, example_inputs: list) -> object:
        self.graphs += 1
        return torch._dynamo.lookup_backend("aot_eager")(gm, example_inputs)


class _Mixture(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.means = nn.Parameter(torch.randn(3, 2))
        self.encoder = nn.Linear(2, 3)

    def model(self, x: torch.Tensor) -> None:
        c = infer.sample("c", Categorical(logits=x.new_zeros(x.shape[0], 3)))
        infer.sample("x", Independent(Normal(self.means[c], 1.0), 1), obs=x)

    def guide(self, x: torch.Tensor) -> None:
        infer.sample("c", Categorical(logits=self.encoder(x)))


def _eager_and_compiled(module: nn.Module, objective, model, guide, x, backend, steps=2,
                        options=None, **kw):
    """Loss and gradients of `steps` compiled steps and of eager steps from the same seeds,
    and the random number drawn after each run (the stream must be left the same)."""
    compiled = infer.compile_loss(objective, model, guide, backend=backend, options=options,
                                  **kw)
    out = []
    for loss_fn in (compiled, lambda *a: infer.estimate(objective, model, guide, *a,
                                                          **kw).loss()):
        runs = []
        for seed in range(steps):
            torch.manual_seed(seed)
            module.zero_grad(set_to_none=True)
            loss = loss_fn(x)
            loss.backward()
            runs.append((loss.detach(), [p.grad.clone() for p in module.parameters()],
                         torch.rand(())))
        out.append(runs)
    return compiled, out


def _assert_same(a, b) -> None:
    for (la, ga, ra), (lb, gb, rb) in zip(a, b):
        torch.testing.assert_close(la, lb, rtol=1e-5, atol=1e-6)
        for x, y in zip(ga, gb):
            torch.testing.assert_close(x, y, rtol=1e-5, atol=1e-6)
        assert ra == rb  # the compiled step drew the same random numbers


@pytest.mark.parametrize("objective", [infer.elbo(), infer.iwelbo(3)], ids=["elbo", "iwelbo"])
def test_compiled_vae_step_matches_eager(objective) -> None:
    torch.manual_seed(0)
    vae = VAE(8, 16, 3)
    x = (torch.rand(5, 8) < 0.4).float()
    backend = _Counting()
    compiled, (c, e) = _eager_and_compiled(vae, objective, vae.model, vae.guide, x, backend,
                                           steps=3, plates=1, data_size=50)
    assert compiled.compiled is True and backend.graphs == 1  # captured once, no recompiles
    _assert_same(c, e)
    assert not torch.equal(c[0][0], c[1][0])  # new random numbers each step


@pytest.mark.parametrize("strategy", ["enum-parallel", "reinforce"])
def test_compiled_discrete_latent_matches_eager(strategy) -> None:
    torch.manual_seed(0)
    mix = _Mixture()
    x = torch.randn(6, 2)
    s = {"c": infer.enum(parallel=True) if strategy == "enum-parallel" else infer.reinforce()}
    backend = _Counting()
    compiled, (c, e) = _eager_and_compiled(mix, infer.elbo(), mix.model, mix.guide, x, backend,
                                           plates=1, data_size=60, strategies=s)
    assert compiled.compiled is True and backend.graphs == 1
    _assert_same(c, e)


def test_a_new_batch_shape_compiles_again_then_stays_dynamic() -> None:
    vae = VAE(4, 8, 2)
    backend = _Counting()
    loss = infer.compile_loss(infer.elbo(), vae.model, vae.guide, plates=1, backend=backend)
    for b in (3, 5):
        loss(torch.ones(b, 4)).backward()
    # a second graph with the batch dim dynamic (or one from the start, when TorchDynamo has
    # already seen this code take several shapes), and no more for further shapes
    graphs = backend.graphs
    assert graphs in (1, 2)
    for b in (7, 3, 5):
        loss(torch.ones(b, 4)).backward()
    assert backend.graphs == graphs and loss.compiled is True


def test_branching_strategies_fall_back_or_raise() -> None:
    mix = _Mixture()
    x = torch.randn(4, 2)
    s = {"c": infer.enum()}  # sequential: re-executes the program
    with pytest.warns(RuntimeWarning, match="cannot capture the program .*running the eager"):
        loss = infer.compile_loss(infer.elbo(), mix.model, mix.guide, plates=1, strategies=s)
    assert loss.compiled is False
    torch.manual_seed(0)
    value = loss(x)
    torch.manual_seed(0)
    expected = infer.estimate(infer.elbo(), mix.model, mix.guide, x, plates=1,
                              strategies=s).loss()
    torch.testing.assert_close(value, expected)
    with pytest.raises(VarbayesError, match=r"^compiled step: cannot capture") as err:
        infer.compile_loss(infer.elbo(), mix.model, mix.guide, plates=1, strategies=s,
                           fallback=False)
    assert "\n" not in str(err.value)


def _value_dependent_guide(x: torch.Tensor) -> None:
    z = infer.sample("z", Normal(x, 1.0))
    if float(z.detach().sum()) > 1e9:  # Python control flow on a value: no single graph
        raise AssertionError


def _value_dependent_model(x: torch.Tensor) -> None:
    infer.sample("z", Normal(torch.zeros_like(x), 1.0))


def test_a_program_that_cannot_be_captured_runs_eagerly() -> None:
    x = torch.randn(4, requires_grad=True)
    loss = infer.compile_loss(infer.elbo(), _value_dependent_model, _value_dependent_guide,
                              plates=1, backend="aot_eager")
    with pytest.warns(RuntimeWarning, match="cannot capture the program"):
        loss(x).backward()
    assert loss.compiled is False and loss.reason
    loss(x)  # later calls: eager, no second warning
    strict = infer.compile_loss(infer.elbo(), _value_dependent_model, _value_dependent_guide,
                                plates=1, backend="aot_eager", fallback=False)
    with pytest.raises(VarbayesError, match="^compiled step: cannot capture"):
        strict(x)


def test_program_errors_are_the_eager_paths_and_bad_settings_are_one_line() -> None:
    vae = VAE(4, 8, 2)
    loss = infer.compile_loss(infer.elbo(), vae.model, vae.guide, plates=1,
                              strategies={"w": infer.reinforce()}, backend="aot_eager")
    with pytest.raises(VarbayesError, match="unknown site 'w' in strategies"):
        loss(torch.ones(3, 4))
    with pytest.raises(VarbayesError, match="^compile backend must be one of"):
        infer.compile_loss(infer.elbo(), vae.model, vae.guide, backend="tvm-ish")
    with pytest.raises(VarbayesError, match="^compile must be True, False or a dict"):
        infer.fit(infer.elbo(), vae.model, vae.guide, torch.ones(4, 4), compile="yes")


def test_fit_with_compile_follows_the_eager_fit() -> None:
    x = (torch.rand(12, 4) < 0.5).float()
    cfg = TrainConfig(epochs=2, batch_size=6, lr=1e-2)
    histories = []
    for compile in (False, {"backend": "aot_eager"}):
        torch.manual_seed(0)
        vae = VAE(4, 8, 2)
        with warnings.catch_warnings():
            warnings.simplefilter("error", RuntimeWarning)  # no fallback
            learner, result = infer.fit(infer.elbo(), vae.model, vae.guide, x, cfg=cfg,
                                        compile=compile)
        histories.append([h["train_loss"] for h in result.history])
        if compile:
            assert all(c.compiled for c in learner._compiled.values())
    assert histories[0] == pytest.approx(histories[1], rel=1e-5)


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("c++") is None and shutil.which("g++") is None,
                    reason="Inductor on CPU needs a C++ compiler")
def test_inductor_vae_step_matches_eager() -> None:
    torch.manual_seed(0)
    vae = VAE(8, 16, 3)
    x = (torch.rand(5, 8) < 0.4).float()
    compiled, (c, e) = _eager_and_compiled(vae, infer.elbo(), vae.model, vae.guide, x,
                                           "inductor", plates=1)
    assert compiled.compiled is True
    _assert_same(c, e)
