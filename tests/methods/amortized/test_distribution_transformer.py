"""Distribution transformer: structure, exact oracle, sequential API, save/load, bad input,
quick reproduction."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch

from varbayes.distributions import GMM
from varbayes.errors import VarbayesError
from varbayes.methods.amortized import distribution_transformer as dt
from varbayes.models import load

CFG = dt.Config(epochs=1, steps_per_epoch=20, batch_size=256, d_model=16, d_ff=32,
                n_layers=2, mlp_hidden=16, mc_samples=500, eval_problems=50)


@pytest.fixture(scope="module")
def trained() -> dt.DTModel:
    return dt.train(CFG, seed=0)[0]


def _problems(n: int = 8, seed: int = 0) -> tuple[GMM, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    prior = dt.sample_meta_prior(n, CFG, g)
    return prior, dt.simulate(prior, 3, 1.0, g)[1]


def test_untrained_relative_network_returns_the_prior() -> None:
    model = dt.DTModel(dt.DistributionTransformer(CFG), CFG)
    prior, z = _problems()
    post = model.posterior(prior, z)
    assert torch.allclose(post.weights, prior.weights, atol=1e-5)
    assert torch.allclose(post.means, prior.means, atol=1e-4)
    assert torch.allclose(post.scale_tril, prior.scale_tril, rtol=1e-4, atol=1e-5)


def test_equivariant_over_components(trained: dt.DTModel) -> None:
    prior, z = _problems()
    perm = torch.tensor([1, 0])
    swapped = GMM(prior.weights[:, perm], prior.means[:, perm], prior.scale_tril[:, perm])
    a, b = trained.posterior(prior, z), trained.posterior(swapped, z)
    assert torch.allclose(a.means[:, perm], b.means, atol=1e-4)
    assert torch.allclose(a.weights.sum(-1), torch.ones(8), atol=1e-5)


def test_exact_posterior_matches_sequential_folding() -> None:
    prior, z = _problems()
    once = dt.exact_posterior(prior, z, 1.0)
    step = prior
    for t in range(3):
        step = dt.exact_posterior(step, z[:, t:t + 1], 1.0)
    assert torch.allclose(once.means, step.means) and torch.allclose(once.weights, step.weights)


def test_meta_prior_precisions_are_wishart() -> None:
    prior = dt.sample_meta_prior(20_000, CFG, torch.Generator().manual_seed(1))
    precision = 1 / prior.covariance[..., 0, 0].double()
    assert abs(float(precision.mean()) - 2.0) < 0.05  # Wishart(2, 1) in 1-D: chi^2_2
    assert torch.allclose(prior.weights.sum(-1), torch.ones(20_000), atol=1e-5)


def test_training_beats_no_update(trained: dt.DTModel) -> None:
    res = dt.evaluate(trained, CFG, 200, seed=5)
    assert res["reverse"]["median"] < res["no_update_reverse"]["median"]


def test_filter_returns_one_posterior_per_observation(trained: dt.DTModel) -> None:
    prior, z = _problems()
    posts = trained.filter(prior, z)
    assert len(posts) == 3
    again = trained.posterior(trained.posterior(prior, z[:, :1]), z[:, 1:2])
    assert torch.allclose(posts[1].means, again.means)


def test_save_load_round_trip(trained: dt.DTModel, tmp_path: Path) -> None:
    trained.save(tmp_path)
    loaded = load(tmp_path)
    prior, z = _problems()
    assert torch.allclose(loaded.posterior(prior, z).means, trained.posterior(prior, z).means)


def test_bad_input_is_one_line(trained: dt.DTModel) -> None:
    prior, z = _problems()
    bad = z.clone()
    bad[0, 0, 0] = float("nan")
    with pytest.raises(VarbayesError, match="NaN"):
        trained.posterior(prior, bad)
    with pytest.raises(VarbayesError, match="observations must have shape"):
        trained.posterior(prior, torch.zeros(3, 1, 1))
    with pytest.raises(VarbayesError, match="weights"):
        trained.posterior(GMM(prior.weights * 2, prior.means, prior.scale_tril), z)
    with pytest.raises(VarbayesError, match="prior must have"):
        trained.posterior(GMM(prior.weights[:, :1], prior.means[:, :1],
                              prior.scale_tril[:, :1]), z)


def test_plain_variant_runs() -> None:
    cfg = replace(CFG, standardize=False, relative=False, steps_per_epoch=3)
    model, _ = dt.train(cfg)
    prior, z = _problems()
    assert torch.isfinite(model.posterior(prior, z).means).all()


@pytest.mark.slow
@pytest.mark.reproduce
def test_quick_reproduction(tmp_path: Path) -> None:
    from varbayes.runner import reproduce

    record = reproduce("distribution-transformer", quick=True, out=tmp_path, quiet=True)
    assert record["passed"], record["claims"]


def test_cli_run(tmp_path: Path) -> None:
    import json

    from varbayes.cli import main

    args = ["run", "distribution-transformer", "--out", str(tmp_path), "--quiet",
            "--set", "epochs=1", "--set", "steps_per_epoch=3", "--set", "batch_size=64",
            "--set", "eval_problems=20", "--set", "mc_samples=100", "--set", "d_model=16"]
    assert main(args) == 0
    metrics = json.loads((tmp_path / "result.json").read_text())["metrics"]
    assert metrics["kl_reverse_mean"] >= 0 and (tmp_path / "densities.png").is_file()
    assert isinstance(load(tmp_path), dt.DTModel)
