"""collapse-cvae end to end: runs, model files, one-line errors, the quick reproduction."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import varbayes
from varbayes.cli import main
from varbayes.methods.latent.collapse_cvae import Config, digits_quadrants


def test_digits_quadrant_pairs() -> None:
    data = digits_quadrants()
    assert data.x_train.shape[0] == 1347 and data.x_test.shape[0] == 450
    assert data.x_train.shape[1] + data.y_train.shape[1] + data.info[
        "dropped_constant_pixels"] == 64
    assert float(data.x_train.min()) >= 0 and float(data.y_train.max()) <= 1
    assert bool((data.y_train.var(0) > 0).all())
    assert digits_quadrants(all_data=True).x_train.shape[0] == 1797


def test_linear_run_and_model_file(tmp_path: Path) -> None:
    rec = varbayes.run("collapse-cvae", out=tmp_path, quiet=True, iterations=300, beta=2.0,
                       is_samples=20)
    m = rec["metrics"]
    assert m["n_active"] == m["predicted_active_kl_rule"] == 1
    assert m["max_omega_error"] < 0.03 and m["nll"] > 0
    model = varbayes.load(tmp_path)
    x = digits_quadrants().x_test[:4]
    assert model.predict(x).shape == (4, model.meta["d_y"])
    assert (tmp_path / "kl_per_dim.png").is_file()


def test_relu_run_on_correlated_pairs(tmp_path: Path) -> None:
    rec = varbayes.run("collapse-cvae", "correlated", out=tmp_path, quiet=True, model="relu",
                       rho=1.0, d_z=4, epochs=5, n_points=200, is_samples=10)
    assert rec["metrics"]["predicted_active"] == 0
    assert varbayes.load(tmp_path).predict(torch.zeros(3, 12)).shape == (3, 12)


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["--set", "beta=0"], "setting beta must be > 0"),
        (["--set", "beta=-1"], "setting beta must be > 0"),
        (["--set", "rho=1.5"], "setting rho must be <= 1"),
        (["--set", "model=hvae", "--set", "d_z=4"], "d_z2 (8) must be <= d_z (4)"),
        (["--dataset", "correlated", "--set", "model=hvae"], "model=hvae runs on digits"),
    ],
)
def test_bad_settings_are_one_line(argv: list[str], fragment: str, tmp_path: Path,
                                   capsys: pytest.CaptureFixture) -> None:
    assert main(["run", "collapse-cvae", *argv, "--out", str(tmp_path), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert fragment in err and "\n" not in err


def test_config_defaults_follow_the_spec() -> None:
    cfg = Config()
    assert (cfg.d_z, cfg.eta_enc, cfg.eta_dec, cfg.beta) == (16, 1.0, 0.5, 1.0)


@pytest.mark.reproduce
def test_quick_reproduction(tmp_path: Path) -> None:
    rec = varbayes.reproduce("collapse-cvae", quick=True, out=tmp_path, quiet=True)
    assert rec["passed"], rec["claims"]
    assert len(rec["claims"]) == 3
    assert (tmp_path / "active_vs_beta.png").is_file()
