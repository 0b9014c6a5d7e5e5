"""Bad input to the inference core is a one-line VarbayesError naming the problem."""

from __future__ import annotations

import pytest
import torch
from torch.distributions import Bernoulli, Normal

from varbayes import infer
from varbayes.errors import VarbayesError


def model(x=None):
    z = infer.sample("z", Normal(0.0, 1.0))
    infer.sample("x", Normal(z, 1.0), obs=torch.tensor(0.5))


def guide(x=None):
    infer.sample("z", Normal(0.0, 1.0))


def one_line(excinfo: pytest.ExceptionInfo) -> str:
    msg = str(excinfo.value)
    assert msg and "\n" not in msg
    return msg


def test_unknown_site_in_strategies():
    with pytest.raises(VarbayesError) as e:
        infer.estimate(infer.elbo(), model, guide, strategies={"w": infer.reinforce()})
    assert "unknown site 'w'" in one_line(e)


def test_unknown_site_in_condition_data():
    with pytest.raises(VarbayesError) as e:
        infer.condition(model, {"y": 1.0})()
    assert "unknown site 'y'" in one_line(e)


def test_guide_site_missing_from_the_model():
    def extra(x=None):
        infer.sample("z", Normal(0.0, 1.0))
        infer.sample("u", Normal(0.0, 1.0))

    with pytest.raises(VarbayesError) as e:
        infer.estimate(infer.elbo(), model, extra)
    assert "unknown site 'u'" in one_line(e) and "marginal" in one_line(e)


def test_model_site_missing_from_the_guide():
    with pytest.raises(VarbayesError) as e:
        infer.estimate(infer.elbo(), model, lambda x=None: None)
    assert "'z'" in one_line(e)


def test_unknown_aux_site_in_marginal():
    with pytest.raises(VarbayesError) as e:
        infer.estimate(infer.hvi("v"), model, guide)
    assert "unknown site 'v'" in one_line(e)


@pytest.mark.parametrize("strategy, dist, word", [
    (infer.reparam(), Bernoulli(0.3), "rsample"),
    (infer.enum(), Normal(0.0, 1.0), "enumerable"),
    (infer.mvd(), Normal(0.0, 1.0), "Bernoulli and Categorical"),
])
def test_unsupported_strategy_for_a_distribution(strategy, dist, word):
    def program():
        return infer.sample("v", dist, strategy=strategy) * 1.0

    with pytest.raises(VarbayesError) as e:
        infer.estimate(program)
    assert word in one_line(e) and "'v'" in one_line(e)


def test_observation_shape_mismatch():
    def bad():
        infer.sample("x", Normal(torch.zeros(3), 1.0), obs=torch.zeros(4))
        return torch.zeros(())

    with pytest.raises(VarbayesError) as e:
        infer.estimate(bad)
    assert "shape" in one_line(e)


def test_undeclared_batch_dims():
    def wide():
        return infer.sample("z", Normal(torch.zeros(5, 3), 1.0)).sum(-1)

    with pytest.raises(VarbayesError) as e:
        infer.estimate(wide, plates=1)
    assert "Independent" in one_line(e)


def test_enumeration_inside_reduced_particles():
    def program():
        with infer.particles(4) as dim:
            v = infer.sample("v", Bernoulli(0.3), strategy=infer.enum())
        return infer.logmeanexp(v, dim)

    with pytest.raises(VarbayesError) as e:
        infer.estimate(program)
    assert "keep the site's batch dims" in one_line(e)


@pytest.mark.parametrize("call", [
    lambda: infer.iwelbo(0),
    lambda: infer.diwhvi("u", 5, -1),
    lambda: infer.rws(3, wake="x"),
    lambda: infer.estimate(infer.elbo(), model, guide, samples=0),
    lambda: infer.estimate(infer.elbo(), model, guide, strategies={"z": "reparam"}),
    lambda: infer.sample("z", "normal"),
    lambda: infer.elbo_loss(torch.zeros(3), torch.zeros(()), 0),
    lambda: infer.fit(infer.elbo(), model, guide, data=[1, 2]),
])
def test_bad_arguments(call):
    with pytest.raises(VarbayesError) as e:
        call()
    one_line(e)


def test_non_tensor_objective_value():
    with pytest.raises(VarbayesError) as e:
        infer.estimate(lambda: "a")
    assert "tensor" in one_line(e)


@pytest.mark.parametrize("as_trace", [True, False])
def test_density_errors_read_a_trace_as_its_values(as_trace):
    """`density` reads a guide trace's values in place; its errors name the same sites as
    with the values given as a dict (an observed guide site is no value for the model)."""
    def guide_with_obs(x=None):
        infer.sample("z", Normal(0.0, 1.0), obs=torch.tensor(0.1))
        infer.sample("u", Normal(0.0, 1.0))

    q = infer.simulate(guide_with_obs)
    values = q if as_trace else q.values
    with pytest.raises(VarbayesError) as e:
        infer.density(model, values)
    assert "site 'z' of the model has no value" in one_line(e)
    assert "(guide sites: u)" in one_line(e)

    def unused(x=None):
        infer.sample("z", Normal(0.0, 1.0))
        infer.sample("w", Normal(0.0, 1.0))

    q = infer.simulate(unused)
    with pytest.raises(VarbayesError) as e:
        infer.density(model, q if as_trace else q.values)
    assert "unknown site 'w'" in one_line(e)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -1.0, "1"])
def test_elbo_weights_must_be_finite_and_non_negative(bad: object) -> None:
    for kw in ({"kl_weight": bad}, {"warmup": bad}):
        with pytest.raises(VarbayesError, match="must be a finite number >= 0") as e:
            infer.elbo(**kw)
        one_line(e)


def _data_model(x):
    z = infer.sample("z", Normal(torch.zeros(len(x)), 1.0))
    infer.sample("x", Normal(z, 0.5), obs=x)


def _data_guide(x):
    infer.sample("z", Normal(torch.zeros(len(x)), 1.0))


@pytest.mark.parametrize("paired", [False, True])
def test_nan_data_is_one_line_in_fit_and_evaluate(paired: bool) -> None:
    from varbayes.train import TrainConfig

    x = torch.randn(20)
    x[4] = float("nan")
    data = (x, torch.zeros(20)) if paired else x
    model = (lambda x, y: _data_model(x)) if paired else _data_model
    guide = (lambda x, y: _data_guide(x)) if paired else _data_guide
    with pytest.raises(VarbayesError, match="contains 1 NaN") as e:
        infer.fit(infer.elbo(), model, guide, data, cfg=TrainConfig(epochs=1), quiet=True)
    one_line(e)
    with pytest.raises(VarbayesError, match="contains 1 NaN"):
        infer.evaluate(infer.elbo(), model, guide, data)


@pytest.mark.parametrize("entry", ["fit", "evaluate"])
@pytest.mark.parametrize(("which", "bad"), [("objective", "elbo"), ("model", None),
                                            ("guide", 3)])
def test_a_program_that_is_not_callable_is_one_line(entry: str, which: str, bad: object) -> None:
    programs = {"objective": infer.elbo(), "model": model, "guide": guide, which: bad}
    call = getattr(infer, entry)
    with pytest.raises(VarbayesError) as e:
        call(programs["objective"], programs["model"], programs["guide"], torch.zeros(4, 1))
    msg = one_line(e)
    assert f"the {which} must be callable" in msg and type(bad).__name__ in msg
