"""PFN: training on prior data, the sklearn-style regressor, save/load, bad input, the CLI
and the quick reproduction."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from varbayes.cli import main
from varbayes.errors import VarbayesError
from varbayes.methods.amortized import pfn
from varbayes.models import load
from varbayes.priors import GPPrior

TINY = dict(epochs=1, steps_per_epoch=30, d_model=32, d_ff=64, n_layers=1, n_buckets=100,
            border_samples=2000, warmup_steps=5, eval_datasets=20, eval_queries=10)


@pytest.fixture(scope="module")
def trained() -> pfn.PFN:
    cfg = pfn.Config(**TINY)
    model, result = pfn.train(pfn.make_prior("gp", cfg), cfg, seed=0)
    assert result.steps == 30
    return model


def test_training_reduces_the_prior_data_nll() -> None:
    cfg = pfn.Config(**{**TINY, "steps_per_epoch": 60})
    prior = pfn.make_prior("gp", cfg)
    model, result = pfn.train(prior, cfg, seed=0)
    rows = pfn.gp_gap_table(model, prior, (5,), 50, 10)
    untrained = pfn.PFN(pfn.build_network(cfg, 1, cfg.n_buckets), model.bar, prior, cfg,
                        model.scaling)
    before = pfn.gp_gap_table(untrained, prior, (5,), 50, 10)
    assert rows[0]["nll_pfn"] < before[0]["nll_pfn"] - 0.05
    assert 0 < rows[0]["floor"] < rows[0]["gap"]


def test_steps_are_seeded_by_step_for_exact_resume() -> None:
    cfg = pfn.Config(**TINY)
    learner = pfn.PFNLearner(pfn.build_network(cfg, 1, 100), None, GPPrior(), cfg, seed=3)
    a, b = learner.batch(7), learner.batch(7)
    assert all(torch.equal(u, v) for u, v in zip(a, b))
    assert not torch.equal(learner.batch(8)[2], a[2])


def test_resume_after_interruption_gives_the_same_model(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from varbayes.train.engine import TrainingInterrupted

    cfg = pfn.Config(**{**TINY, "epochs": 2, "steps_per_epoch": 6})
    prior = pfn.make_prior("gp", cfg)
    full, _ = pfn.train(prior, cfg, seed=1)
    monkeypatch.setenv("VARBAYES_INTERRUPT_AT_STEP", "8")
    with pytest.raises(TrainingInterrupted):
        pfn.train(prior, cfg, seed=1, checkpoint_dir=tmp_path)
    monkeypatch.delenv("VARBAYES_INTERRUPT_AT_STEP")
    torch.manual_seed(123)
    resumed, result = pfn.train(prior, cfg, seed=1, checkpoint_dir=tmp_path, resume=True)
    assert result.steps == 12
    for a, b in zip(full.network.parameters(), resumed.network.parameters()):
        assert torch.equal(a, b)


def test_regressor_predicts_mean_and_quantiles(trained: pfn.PFN) -> None:
    reg = pfn.PFNRegressor(trained)
    x = np.linspace(0.1, 0.9, 6)[:, None]
    mean, q = reg.fit(x, np.sin(6 * x[:, 0])).predict(np.linspace(0, 1, 11)[:, None])
    assert mean.shape == (11,) and q.shape == (11, 3)
    assert (q[:, 0] <= q[:, 1]).all() and (q[:, 1] <= q[:, 2]).all()
    dist = reg.predict_distribution(np.array([[0.5]]))
    assert torch.isfinite(dist.log_prob(torch.tensor([0.3]))).all()
    assert float(dist.variance[0]) > 0


def test_normalize_y_maps_the_predictive_back(trained: pfn.PFN) -> None:
    x = np.linspace(0.1, 0.9, 6)[:, None]
    y = np.cos(4 * x[:, 0])
    plain = pfn.PFNRegressor(trained, normalize_y=True).fit(x, y)
    scaled = pfn.PFNRegressor(trained, normalize_y=True).fit(x, 10 * y + 5)
    xq = np.array([[0.2], [0.7]])
    assert np.allclose(scaled.predict(xq).mean, 10 * plain.predict(xq).mean + 5, atol=1e-4)
    lp = plain.predict_distribution(xq).log_prob(torch.tensor([0.1, 0.2]))
    lp_s = scaled.predict_distribution(xq).log_prob(torch.tensor([6.0, 7.0]))
    assert torch.allclose(lp_s, lp - np.log(10), atol=1e-4)


def test_bad_input_is_one_line(trained: pfn.PFN) -> None:
    reg = pfn.PFNRegressor(trained)
    x = np.random.rand(5, 1)
    with pytest.raises(VarbayesError, match="NaN"):
        reg.fit(x, np.array([0.1, np.nan, 0.2, 0.3, 0.4]))
    with pytest.raises(VarbayesError, match="outside the prior's input domain"):
        reg.fit(x + 2, np.zeros(5))
    with pytest.raises(VarbayesError, match="features"):
        reg.fit(np.random.rand(5, 3), np.zeros(5))
    with pytest.raises(VarbayesError, match="shape"):
        reg.fit(x, np.zeros(4))
    with pytest.raises(VarbayesError, match="quantile"):
        pfn.PFNRegressor(trained, quantiles=(0.0, 0.5))
    max_context = trained.cfg.max_context
    with pytest.raises(VarbayesError) as e:
        reg.fit(np.random.rand(max_context + 10, 1), np.zeros(max_context + 10))
    msg = str(e.value)
    assert "\n" not in msg and f"{max_context + 10} points" in msg and f"the {max_context} " in msg
    reg.fit(np.random.rand(max_context, 1), np.zeros(max_context))  # the longest it was trained on
    longer = pfn.PFNRegressor(trained, allow_long_context=True)
    with pytest.warns(UserWarning, match="exceeds"):
        longer.fit(np.random.rand(max_context + 10, 1), np.zeros(max_context + 10))


def test_save_and_load_give_identical_predictions(trained: pfn.PFN, tmp_path: Path) -> None:
    trained.save(tmp_path)
    assert json.loads((tmp_path / "model.json").read_text())["method"] == "pfn"
    loaded = load(tmp_path)
    x, y = np.random.rand(4, 1), np.random.randn(4)
    xq = np.random.rand(7, 1)
    a = pfn.PFNRegressor(trained).fit(x, y).predict(xq)
    b = loaded.fit(x, y).predict(xq)
    assert np.allclose(a.mean, b.mean) and np.allclose(a.quantiles, b.quantiles)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        prior_only = loaded.__class__(loaded.model).predict(xq)  # before fit: prior predictive
    assert prior_only.mean.shape == (7,)


def test_classification_prior_trains_a_classifier() -> None:
    from varbayes.priors import MLPPrior

    cfg = pfn.Config(**{**TINY, "steps_per_epoch": 5})
    model, _ = pfn.train(MLPPrior(task="classification", n_classes=3), cfg)
    probs = model.predict_proba(torch.rand(2, 4, 1) * 2 - 1, torch.zeros(2, 4),
                                torch.rand(2, 3, 1) * 2 - 1)
    assert probs.shape == (2, 3, 3) and torch.allclose(probs.sum(-1), torch.ones(2, 3))


def test_cli_run_writes_result_and_loadable_model(tmp_path: Path) -> None:
    sets = [f"--set={k}={v}" for k, v in {**TINY, "steps_per_epoch": 5}.items()]
    assert main(["run", "pfn", "--out", str(tmp_path), "--quiet", *sets]) == 0
    record = json.loads((tmp_path / "result.json").read_text())
    assert {"nll", "nll_gap_5_10_20", "discretisation_floor"} <= set(record["metrics"])
    assert (tmp_path / "bands_vs_exact_gp.png").is_file()
    assert isinstance(load(tmp_path), pfn.PFNRegressor)
    assert main(["run", "pfn", "--set", "d_model=30", "--set", "n_heads=4"]) == 2


@pytest.mark.slow
@pytest.mark.reproduce
def test_quick_reproduction(tmp_path: Path) -> None:
    from varbayes.runner import reproduce

    record = reproduce("pfn", quick=True, out=tmp_path, quiet=True)
    assert record["passed"], record["claims"]


def test_context_scaling_is_defined_for_any_context_size() -> None:
    scaling = pfn.ContextScaling(mean=1.0, std=2.0)
    loc, scale, stats = scaling(torch.zeros(3, 0))
    assert torch.allclose(loc, torch.ones(3, 1)) and torch.allclose(scale, 2 * torch.ones(3, 1))
    assert torch.allclose(stats, torch.zeros(3, 2))
    y = torch.tensor([[3.0, 3.0], [-1.0, 5.0]])
    loc, scale, _ = scaling(y)
    # pooled with one pseudo-point at mean 1 and spread 2
    assert torch.allclose(loc[:, 0], torch.tensor([7 / 3, 5 / 3]))
    expect = ((y - loc) ** 2).sum(1) + (1 - loc[:, 0]) ** 2 + 4
    assert torch.allclose(scale[:, 0] ** 2, expect / 3)


def test_standardised_training_loss_is_the_predictive_nll_in_y_units() -> None:
    cfg = pfn.Config(**{**TINY, "steps_per_epoch": 5})
    prior = pfn.make_prior("gp-hyper", cfg)
    model, _ = pfn.train(prior, cfg, seed=0)
    assert model.scaling is not None and model.network.embed_stats is not None
    learner = pfn.PFNLearner(model.network, model.bar, prior, cfg, 0, model.scaling)
    xc, yc, xq, yq = learner.batch(3)
    step = pfn.Step(3, 1, 5, 5, 1, 5, 1)
    with torch.no_grad():
        loss = learner.training_loss(torch.zeros(1, 1), torch.zeros(1), step)
    pred = model.predictive(xc, yc, xq)
    assert torch.allclose(loss, -pred.log_prob(yq).mean(), atol=1e-4)
    # the predictive lives in y's units: scaling the data scales mean and quantiles
    q = pred.quantile([0.1, 0.9])
    assert q.shape == (*yq.shape, 2) and bool((q[..., 0] < q[..., 1]).all())


def test_models_saved_before_standardisation_still_load(tmp_path: Path) -> None:
    cfg = pfn.Config(**{**TINY, "steps_per_epoch": 3, "y_normalize": "none"})
    model, _ = pfn.train(pfn.make_prior("gp", cfg), cfg, seed=0)
    model.save(tmp_path)
    meta = json.loads((tmp_path / "model.json").read_text())
    del meta["config"]["y_normalize"], meta["y_scaling"]  # the older format
    (tmp_path / "model.json").write_text(json.dumps(meta))
    x, y, xq = np.random.rand(4, 1), np.random.randn(4), np.random.rand(5, 1)
    a = pfn.PFNRegressor(model).fit(x, y).predict(xq)
    b = load(tmp_path).fit(x, y).predict(xq)
    assert np.allclose(a.mean, b.mean) and np.allclose(a.quantiles, b.quantiles)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal without CUDA")
def test_cuda_without_cuda_is_a_one_line_error(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(VarbayesError, match="CUDA is not available"):
        pfn.train(pfn.make_prior("gp", pfn.Config(**TINY)),
                  pfn.Config(**TINY, accelerator="cuda"))
    assert main(["run", "pfn", "--out", str(tmp_path), "--quiet", "--set", "accelerator=cuda",
                 "--set", "epochs=1"]) == 2
    err = capsys.readouterr().err.strip()
    assert "CUDA is not available" in err and len(err.splitlines()) == 1


def test_low_noise_oversampling_trains_and_needs_the_hyperprior() -> None:
    cfg = pfn.Config(**{**TINY, "steps_per_epoch": 3, "low_noise_fraction": 0.2})
    model, result = pfn.train(pfn.make_prior("gp-hyper", cfg), cfg, seed=0)
    assert result.steps == 3 and np.isfinite(result.history[-1]["train_loss"])
    with pytest.raises(VarbayesError, match="sample_weighted"):
        pfn.train(pfn.make_prior("gp", cfg), cfg, seed=0)
