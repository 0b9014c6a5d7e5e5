"""attr-cvae: attributes, the hybrid objective, runs, model files, one-line errors, and the
quick reproduction."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import varbayes
from varbayes import infer
from varbayes.cli import main
from varbayes.errors import VarbayesError
from varbayes.methods.latent.attr_cvae import (
    Config,
    all_conditions,
    attribute_data,
    build,
    check_attributes,
    fit_model,
    hybrid_objective,
)


def test_attributes_are_one_hot_plus_a_balanced_ink_bit() -> None:
    data = attribute_data()
    a = data.a_train
    assert a.shape == (1347, 11)
    assert torch.equal(a[:, :10].argmax(1), data.labels_train)
    for k in range(10):  # above the class median: about half of each class is "heavy"
        assert 0.4 < float(a[data.labels_train == k, 10].mean()) <= 0.5
    assert all_conditions().shape == (20, 11)
    check_attributes(all_conditions())


@pytest.mark.parametrize("bad", [torch.zeros(3, 10), torch.zeros(3, 12), torch.zeros(11)])
def test_attribute_vectors_of_the_wrong_width_are_rejected(bad: torch.Tensor) -> None:
    with pytest.raises(VarbayesError, match=r"valid: \(n, 11\)"):
        check_attributes(bad)
    two_classes = all_conditions()[:2].clone()
    two_classes[0, 3] = 1.0
    with pytest.raises(VarbayesError, match="exactly one class bit"):
        check_attributes(two_classes)


def test_hybrid_objective_mixes_the_bound_and_the_gsnn_term() -> None:
    torch.manual_seed(0)
    vae = build(8, 3, Config(d_z=2, hidden=8))
    x, c = torch.rand(4, 8), torch.rand(4, 3)

    def value(objective: object, seed: int) -> torch.Tensor:
        torch.manual_seed(seed)
        return infer.estimate(objective, vae.model, vae.guide, x, c, plates=1).value

    bound = value(infer.elbo(kl_weight=2.0, analytic_kl=True), 1)
    assert torch.allclose(value(hybrid_objective(2.0, 1.0), 1), bound)
    torch.manual_seed(2)
    z = vae.prior(c).rsample()
    gsnn = vae.likelihood.distribution(vae.decode(z, c)).log_prob(x)
    assert torch.allclose(value(hybrid_objective(2.0, 0.0), 2), gsnn, atol=1e-5)
    with pytest.raises(VarbayesError, match="beta must be > 0"):
        hybrid_objective(0.0)
    with pytest.raises(VarbayesError, match=r"alpha must be in \[0, 1\]"):
        hybrid_objective(1.0, 1.5)


def test_run_and_model_file(tmp_path: Path) -> None:
    rec = varbayes.run("attr-cvae", out=tmp_path, quiet=True, epochs=1, samples_per_condition=5,
                       is_samples=5)
    m = rec["metrics"]
    assert 0 <= m["conditional_accuracy"] <= 1 and m["diversity"] > 0 and m["nll"] > 0
    model = varbayes.load(tmp_path)
    assert model.predict(all_conditions(), 2).shape == (2, 20, 64)
    with pytest.raises(VarbayesError, match=r"valid: \(n, 11\)"):
        model.predict(torch.zeros(2, 5))
    data = attribute_data()
    ll = model.log_likelihood(data.x_test[:4], data.a_test[:4], samples=8)
    assert ll.shape == (4,) and bool(torch.isfinite(ll).all()) and bool((ll < 0).all())
    with pytest.raises(VarbayesError, match="needs pixel intensities in \\[0, 1\\]"):
        model.log_likelihood(data.x_test[:4] * 16, data.a_test[:4])
    assert (tmp_path / "samples.png").is_file()


def test_quadrant_task_runs(tmp_path: Path) -> None:
    rec = varbayes.run("attr-cvae", out=tmp_path, quiet=True, task="quadrant", alpha=0.5,
                       epochs=1, is_samples=5)
    assert rec["metrics"]["nll"] > 0
    assert varbayes.load(tmp_path).predict(torch.rand(3, 16)).shape == (1, 3, 48)


def test_fit_model_on_user_data_checks_its_inputs() -> None:
    x, a = torch.rand(40, 16), torch.rand(40, 3)
    model = fit_model(x, a, Config(epochs=1, batch_size=20, d_z=2, hidden=8))
    assert model.predict(a[:2], 3).shape == (3, 2, 16)
    with pytest.raises(VarbayesError, match=r"attributes has shape \(2, 4\); valid: \(n, 3\)"):
        model.predict(torch.rand(2, 4))
    with pytest.raises(VarbayesError, match=r"images has values in .*needs pixel intensities"):
        fit_model(x * 255, a, Config(epochs=1))
    with pytest.raises(VarbayesError, match="40 rows but attributes has 39"):
        fit_model(x, a[:39], Config(epochs=1))


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["--set", "beta=0"], "setting beta must be > 0"),
        (["--set", "alpha=2"], "setting alpha must be <= 1"),
        (["--set", "quadrant=middle"], "setting quadrant must be one of"),
        (["--set", "task=faces"], "setting task must be one of"),
    ],
)
def test_bad_settings_are_one_line(argv: list[str], fragment: str, tmp_path: Path,
                                   capsys: pytest.CaptureFixture) -> None:
    assert main(["run", "attr-cvae", *argv, "--out", str(tmp_path), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert fragment in err and "\n" not in err


@pytest.mark.reproduce
def test_quick_reproduction(tmp_path: Path) -> None:
    rec = varbayes.reproduce("attr-cvae", quick=True, out=tmp_path, quiet=True)
    assert rec["passed"], rec["claims"]
    assert {c["claim"].split(" ")[0] for c in rec["claims"]} >= {"conditional", "weighted"}
    assert (tmp_path / "samples_beta4.png").is_file()
