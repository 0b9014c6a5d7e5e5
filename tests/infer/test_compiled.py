"""The compiled step (`compile_loss`, `fit(compile=...)`) against the eager path: the same loss
and gradients from the same random numbers, one captured graph per input shape, and the
fallback for programs that cannot be captured. Tiny shapes and the `aot_eager` backend (a
compile of a few seconds); one Inductor test is marked slow."""

from __future__ import annotations

import builtins
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


def _loss_and_grads(module: nn.Module, loss_fn, x: torch.Tensor, seed: int):
    torch.manual_seed(seed)
    module.zero_grad(set_to_none=True)
    loss = loss_fn(x)
    loss.backward()
    return loss.detach(), [p.grad.clone() for p in module.parameters() if p.grad is not None]


def test_compiled_step_follows_shape_mode_and_parameter_changes() -> None:
    """With the library's guards dropped (`library_guards`), every change that must reach the
    graph still does: a new batch shape, train/eval mode (dropout), parameters changed in
    place or replaced, and an enclosing handler; each compiled step equals the eager one."""
    torch.manual_seed(0)
    vae = VAE(6, 8, 2)
    vae.encoder.insert(1, nn.Dropout(0.5))  # train/eval changes the program's tensors
    backend = _Counting()
    compiled = infer.compile_loss(infer.elbo(), vae.model, vae.guide, plates=1,
                                  backend=backend, dynamic=False)

    def eager(x):
        return infer.estimate(infer.elbo(), vae.model, vae.guide, x, plates=1).loss()

    def check(x, seed=0):
        got = _loss_and_grads(vae, compiled, x, seed)
        want = _loss_and_grads(vae, eager, x, seed)
        torch.testing.assert_close(got[0], want[0], rtol=1e-5, atol=1e-6)
        for a, b in zip(got[1], want[1], strict=True):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
        return got[0]

    x = (torch.rand(5, 6) < 0.5).float()
    train = check(x)
    assert backend.graphs == 1
    check(torch.cat([x, x]))  # a new batch shape: a new graph (static shapes)
    assert backend.graphs == 2
    vae.eval()
    evaluated = check(x)
    assert backend.graphs == 3 and not torch.equal(evaluated, train)  # dropout off
    vae.train()
    with torch.no_grad():
        vae.decoder[0].weight.mul_(2.0)  # in place: the graph reads the new values
    moved = check(x)
    assert backend.graphs == 3 and not torch.equal(moved, train)
    vae.decoder[2].bias = nn.Parameter(torch.randn(6))  # a new parameter object
    check(x)
    with infer.particles(2):  # an enclosing handler changes the program: traced again
        check(x)
    assert compiled.compiled is True and backend.graphs >= 4


class _Decoder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Linear(2, 3)

    def model(self, x: torch.Tensor) -> None:
        z = infer.sample("z", Independent(Normal(torch.zeros(x.shape[0], 2), 1.0), 1))
        infer.sample("x", Independent(Normal(self.net(z), 1.0), 1), obs=x)


class _Whole(nn.Module):
    """A guide that reads the decoder's parameters through its own submodule attribute."""

    def __init__(self) -> None:
        super().__init__()
        self.dec = _Decoder()
        self.enc = nn.Linear(3, 4)

    def guide(self, x: torch.Tensor) -> None:
        loc, log_scale = self.enc(x + self.dec.net.bias).chunk(2, -1)
        infer.sample("z", Independent(Normal(loc, log_scale.exp()), 1))


def test_a_replaced_submodule_shared_by_model_and_guide_is_noticed() -> None:
    """The model is a method of the decoder the compiled loss was made with; the guide reads
    `whole.dec`, which is then replaced: the two are no longer one module, and the compiled
    step must see it (the aliasing guard between them is kept)."""
    torch.manual_seed(0)
    whole = _Whole()
    x = torch.randn(4, 3)
    model, guide = whole.dec.model, whole.guide
    compiled = infer.compile_loss(infer.elbo(), model, guide, plates=1, backend="aot_eager")
    compiled(x)
    whole.dec = _Decoder()  # the model still runs the old decoder, the guide the new one
    torch.manual_seed(1)
    got = compiled(x)
    torch.manual_seed(1)
    want = infer.estimate(infer.elbo(), model, guide, x, plates=1).loss()
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


def test_library_guards_keep_every_guard_but_the_librarys_fixed_objects() -> None:
    from varbayes.infer.compiled import library_guards

    seen, kept = [], []

    def recording(entries):
        keep = library_guards(entries)
        seen.extend(entries)
        kept.extend(e for e, k in zip(entries, keep, strict=True) if k)
        return keep

    vae = VAE(4, 8, 2)
    loss = infer.compile_loss(infer.elbo(), vae.model, vae.guide, plates=1,
                              backend="aot_eager", options={"guard_filter_fn": recording})
    loss(torch.ones(3, 4)).backward()
    assert loss.compiled is True
    dropped = [e for e in seen if all(e is not k for k in kept)]
    assert len(dropped) > len(seen) // 4  # the library's modules, classes, functions
    for e in dropped:  # each one is on a varbayes global, a Python builtin, or an aliasing guard
        if e.name.startswith("G['__builtins_dict__"):  # len, isinstance, ...: the very object
            name = e.name.rsplit("['", 1)[1][:-2]
            assert e.guard_type in ("ID_MATCH", "BUILTIN_MATCH", "CLASS_MATCH"), e.name
            assert e.value is getattr(builtins, name), e.name
            continue
        assert e.guard_type == "DUPLICATE_INPUT" or (
            e.is_global and "varbayes" in e.name or "varbayes" in getattr(
                e.value, "__module__", "")), e.name
        assert e.guard_type not in ("TENSOR_MATCH", "SHAPE_ENV", "GRAD_MODE", "GLOBAL_STATE")
    names = {(e.guard_type, e.name) for e in kept}
    assert sum(e.guard_type == "TENSOR_MATCH" for e in kept) == sum(
        e.guard_type == "TENSOR_MATCH" for e in seen) == 9  # 8 parameters and x
    for state in ("_HANDLERS", "_PROCESS", "_POSTPROCESS", "_SCOPES"):  # the handler stack
        # `_HANDLERS` is first read by `estimate` (its own name for the same list)
        assert any(("SEQUENCE_LENGTH", f"G['__import_varbayes_dot_infer_dot_{module}'].{state}")
                   in names for module in ("sites", "estimate")), state
    assert any(n.endswith("._BRANCHING_PROGRAMS") for _, n in names)  # mutable library state
    # torch's functions that the program reaches through torch's modules stay guarded (the
    # library's own calls go through names it bound itself, so those guards are the library's)
    assert any(n.endswith(".F.linear") for _, n in names)
    assert not any(n.startswith("G['__builtins_dict__") for _, n in names)
    assert all(not e.is_global or e.guard_type in ("SEQUENCE_LENGTH", "CONSTANT_MATCH",
                                                    "EQUALS_MATCH", "TYPE_MATCH")
               for e in kept if "G['__import_varbayes" in e.name)
    user = [e for e in seen if not e.is_global and e.guard_type != "DUPLICATE_INPUT"]
    assert all(any(e is k for k in kept) for e in user)  # every guard on the program's objects
    # torch's global validation switch, read through the library's lean constructors (a class
    # attribute that `set_default_validate_args` changes), is kept
    seen.clear()
    kept.clear()
    mix = _Mixture()
    loss = infer.compile_loss(infer.elbo(), mix.model, mix.guide, plates=1, backend="aot_eager",
                              options={"guard_filter_fn": recording})
    loss(torch.randn(3, 2)).backward()
    switch = [e for e in seen if e.name.endswith("Distribution._validate_args")]
    assert switch and all(any(e is k for k in kept) for e in switch)
    # keyword defaults: varbayes's own (`sample(..., obs=None)`) are dropped, a program's kept
    assert any(e.name.endswith("sample.__kwdefaults__['obs']") for e in seen)
    assert not any("__kwdefaults__" in e.name for e in kept)
    seen.clear()
    kept.clear()
    shifted = _Shifted()
    loss = infer.compile_loss(infer.elbo(), shifted.model, shifted.guide, backend="aot_eager",
                              options={"guard_filter_fn": recording})
    loss(torch.randn(2)).backward()
    assert loss.compiled is True
    assert any(e.name.endswith("_shift.__kwdefaults__['by']") for e in kept)


def _shift(t: torch.Tensor, *, by: float = 0.5) -> torch.Tensor:
    return t + by


class _Shifted(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.loc = nn.Parameter(torch.zeros(2))

    def model(self, x: torch.Tensor) -> None:
        infer.sample("x", Independent(Normal(_shift(self.loc), 1.0), 1), obs=x)

    def guide(self, x: torch.Tensor) -> None:
        pass


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
