"""BayesCap: the cap on a user's frozen model, its files, bad input, and a quick reproduction."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

import varbayes
from varbayes.methods.bnn import bayescap, bayescap_tasks
from varbayes.methods.bnn.bayescap import BayesCap, CapLearner, CapNetwork
from varbayes.nn.gengauss import gg_nll, gg_variance
from varbayes.train import Step


def toy(n: int = 200, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, nn.Module]:
    """y = 2x + noise whose scale grows with |x|; the frozen model predicts 2x exactly."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 1, generator=g) * 4 - 2
    y = 2 * x[:, 0] + (0.05 + 0.5 * x[:, 0].abs()) * torch.randn(n, generator=g)
    frozen = nn.Linear(1, 1)
    with torch.no_grad():
        frozen.weight.fill_(2.0)
        frozen.bias.zero_()
    return x, y, nn.Sequential(frozen, nn.Flatten(0))


def small(**kw: object) -> dict:
    return {"epochs": 60, "batch_size": 32, "width": 32, "beta_floor": 1.0, **kw}


def test_cap_learns_heteroscedastic_noise_and_keeps_the_frozen_model() -> None:
    x, y, frozen = toy(400)
    before = {k: v.clone() for k, v in frozen.state_dict().items()}
    cap = varbayes.bayescap(frozen, fraction=1.0, mean_head="residual", lr=3e-3,
                            **small(epochs=150)).fit((x, y))
    assert all(torch.equal(before[k], v) for k, v in frozen.state_dict().items())
    xs = torch.tensor([[-1.8], [0.0], [1.8]])
    mean, var = cap.predict(xs)
    assert mean.shape == var.shape == (3,)
    assert torch.allclose(mean, 2 * xs[:, 0], atol=0.2)
    # the noise std is 0.95 at |x| = 1.8 and 0.05 at 0: the variance must follow
    assert var[0] > 5 * var[1] and var[2] > 5 * var[1]


def test_fraction_selects_that_many_examples(monkeypatch: pytest.MonkeyPatch) -> None:
    x, y, frozen = toy(100)
    seen = {}

    def fake_fit(learner, x_fit, y_fit, cfg, **kw):  # noqa: ANN001, ANN003, ANN202
        seen["n"] = len(x_fit)
        return type("R", (), {"history": [], "train_seconds": 0.0})()

    monkeypatch.setattr(bayescap, "fit", fake_fit)
    BayesCap(frozen, **small(fraction=0.25)).fit((x, y))
    assert seen["n"] == 25


def test_frozen_model_runs_in_eval_mode_and_keeps_its_mode() -> None:
    x, y, _ = toy(50)
    frozen = nn.Sequential(nn.Linear(1, 8), nn.Dropout(0.5), nn.Linear(8, 1), nn.Flatten(0))
    frozen.train()
    cap = BayesCap(frozen, **small(epochs=2))
    a, b = cap.frozen_outputs(x, y), cap.frozen_outputs(x, y)
    assert torch.equal(a, b)  # dropout off
    assert frozen.training  # mode restored


def test_loss_is_the_paper_form() -> None:
    torch.manual_seed(0)
    net = CapNetwork((3,), width=8)
    learner = CapLearner(net, "paper", lambda_id=1.0, lambda_nll=0.05)
    y_hat, y = torch.rand(4, 3), torch.rand(4, 3)
    mean, inv_alpha, beta = net(y_hat)
    expected = (mean - y_hat).abs().mean() + 0.05 * gg_nll(y, mean, inv_alpha, beta).mean()
    step = Step(1, 1, 1, 1, 1, 4, 4)
    assert torch.allclose(learner.training_loss(y_hat, y, step), expected)
    assert bool((beta >= 0.1).all())


def test_reference_heads_and_variance() -> None:
    torch.manual_seed(0)
    net = CapNetwork((2, 2), width=8, heads="relu")
    _, inv_alpha, beta = net(torch.rand(5, 2, 2))
    assert inv_alpha.shape == (5, 2, 2) and bool((beta >= 1e-2).all())
    var = gg_variance(inv_alpha, beta)
    assert bool((var > 0).all())


def test_save_and_load_a_user_model(tmp_path: Path) -> None:
    x, y, frozen = toy(80)
    cap = varbayes.bayescap(frozen, **small(epochs=3)).fit((x, y))
    cap.save(tmp_path)
    with pytest.raises(varbayes.VarbayesError, match="load_cap"):
        varbayes.load(tmp_path)
    again = bayescap.load_cap(tmp_path, frozen)
    for a, b in zip(cap.predict(x[:10]), again.predict(x[:10])):
        assert torch.equal(a, b)


@pytest.mark.parametrize(
    ("settings", "data", "match"),
    [
        ({"fraction": 0.0}, None, "fraction must be > 0"),
        ({"fraction": 1.5}, None, "fraction must be <= 1"),
        ({}, "nan", "NaN"),
        ({}, "shape", "frozen model outputs shape"),
        ({}, "length", "examples"),
        ({}, "width", "frozen model failed on inputs of shape"),
    ],
)
def test_bad_input_is_one_line(settings: dict, data: str | None, match: str) -> None:
    x, y, frozen = toy(30)
    if data == "nan":
        y = y.clone()
        y[3] = float("nan")
    elif data == "shape":
        y = torch.stack([y, y], 1)
    elif data == "length":
        y = y[:10]
    elif data == "width":
        x = torch.cat([x, x], 1)
    with pytest.raises(varbayes.VarbayesError, match=match) as err:
        varbayes.bayescap(frozen, **small(epochs=1), **settings).fit((x, y))
    assert "\n" not in str(err.value)


def test_predict_before_fit_and_bad_model() -> None:
    _, _, frozen = toy(5)
    with pytest.raises(varbayes.VarbayesError, match="not trained"):
        varbayes.bayescap(frozen).predict(torch.zeros(2, 1))
    with pytest.raises(varbayes.VarbayesError, match="nn.Module"):
        varbayes.bayescap(lambda x: x)


def test_baselines_on_a_toy_task() -> None:
    x, y, _ = toy(60)
    frozen = nn.Sequential(nn.Linear(1, 16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, 1),
                           nn.Flatten(0))
    assert bayescap_tasks.has_dropout(frozen)
    assert not bayescap_tasks.has_dropout(nn.Sequential(nn.Linear(1, 1), nn.Dropout(0.0)))
    cap = BayesCap(frozen, **small(epochs=1))
    mean, var = bayescap_tasks.mc_dropout(frozen, x, runs=20, seed=0)
    assert mean.shape == var.shape == (60,) and bool((var > 0).all())
    assert not frozen.training or frozen.training  # mode untouched either way
    same, var_t = bayescap_tasks.ttda(cap, x, runs=10, scale=0.05, seed=0)
    assert torch.equal(same, cap.frozen_outputs(x)) and bool((var_t > 0).all())


def test_squared_error_regressor_finds_the_noise_scale() -> None:
    x, y, frozen = toy(300)
    xt, yt, _ = toy(200, seed=1)
    task = bayescap_tasks.Task("toy", frozen, {}, x, y, xt, yt, xt, yt)
    cfg = bayescap.Config(fraction=1.0, lr=1e-2, **small(epochs=15, batch_size=100))
    cap = BayesCap(frozen, bayescap.cap_config(cfg))
    out, var = bayescap_tasks.error_regression(cap, task, cfg, seed=0)
    assert torch.equal(out, cap.frozen_outputs(xt)) and var.shape == yt.shape
    true_var = (0.05 + 0.5 * xt[:, 0].abs()) ** 2
    assert float(torch.corrcoef(torch.stack([var, true_var]))[0, 1]) > 0.8


def test_restoration_data_is_fixed_and_degraded() -> None:
    a, b = bayescap_tasks.restoration_data(0.1), bayescap_tasks.restoration_data(0.1)
    assert torch.equal(a["x_test"], b["x_test"])
    sizes = [len(a[f"y_{p}"]) for p in ("train", "val", "test")]
    assert sizes == [1078, 359, 360]
    clean = a["y_train"]
    assert float(clean.min()) == 0.0 and float(clean.max()) == 1.0
    # noise-free degradation = 2x2 block means repeated
    no_noise = bayescap_tasks.restoration_data(0.0)
    img = no_noise["x_train"][0].reshape(8, 8)
    assert torch.allclose(img[0, 0], img[1, 1]) and torch.allclose(
        img[0, 0], no_noise["y_train"][0].reshape(8, 8)[:2, :2].mean())


@pytest.mark.slow
def test_run_digits_restoration_and_load(tmp_path: Path) -> None:
    rec = varbayes.run("bayescap", "digits-restoration", out=tmp_path, quiet=True,
                       frozen_epochs=3, epochs=3, ttda_runs=4, mc_runs=4)
    for key in ("identity_mae", "psnr", "corr", "uce", "ttda_uce", "mc_dropout_uce"):
        assert key in rec["metrics"]
    model = varbayes.load(tmp_path)
    data = bayescap_tasks.restoration_data(0.1)
    mean, var = model.predict(data["x_test"][:5])
    assert mean.shape == var.shape == (5, 64)
    assert (tmp_path / "error_and_uncertainty.png").is_file()


@pytest.mark.slow
def test_run_boston_uses_the_deterministic_baseline(tmp_path: Path) -> None:
    rec = varbayes.run("bayescap", "boston", out=tmp_path, quiet=True, frozen_epochs=2,
                       epochs=2, ttda_runs=3, mc_runs=3)
    assert (tmp_path / "frozen" / "result.json").is_file()
    assert rec["metrics"]["rmse"] > 0 and "frozen_gaussian_head_uce" in rec["metrics"]
    mean, var = varbayes.load(tmp_path).predict(varbayes.data.load("boston").x_test[:4])
    assert mean.shape == var.shape == (4,)
    assert float(mean.mean()) > 5  # original units (median value in $1000s)


@pytest.mark.reproduce
def test_quick_reproduction(tmp_path: Path) -> None:
    rec = varbayes.reproduce("bayescap", quick=True, out=tmp_path, quiet=True)
    assert {c["claim"][:4] for c in rec["claims"]} == {"(i) ", "(ii)"}
    assert (tmp_path / "reproduction.json").is_file()
