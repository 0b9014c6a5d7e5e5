"""The deterministic baseline: every dataset end to end, save/load round trips."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import varbayes
from varbayes.data import make_fake_cifar10


@pytest.mark.parametrize(
    ("dataset", "settings"),
    [
        ("mnist1d", {}), ("mnist1d", {"model": "cnn"}), ("digits", {}),
        ("digits", {"model": "cnn"}), ("concrete", {}), ("toy-regression", {}), ("two-moons", {}),
    ],
)
def test_runs_and_round_trips(dataset: str, settings: dict, tmp_path: Path) -> None:
    rec = varbayes.run("deterministic", dataset, out=tmp_path, quiet=True, epochs=1, **settings)
    model = varbayes.load(tmp_path)
    ds = varbayes.data.load(dataset)
    if ds.task == "classification":
        probs = model.predict(ds.x_test[:50])
        assert probs.shape == (50, ds.n_classes)
        assert torch.allclose(probs.sum(1), torch.ones(50), atol=1e-5)
        assert 0 <= rec["metrics"]["accuracy"] <= 1
    else:
        mean, var = model.predict(ds.x_test[:50])
        assert mean.shape == var.shape == (50,) and bool((var > 0).all())
        assert rec["metrics"]["rmse"] > 0
    again = varbayes.load(tmp_path).predict(ds.x_test[:50])
    first = model.predict(ds.x_test[:50])
    assert all(torch.equal(a, b) for a, b in zip(
        first if isinstance(first, tuple) else (first,),
        again if isinstance(again, tuple) else (again,)))


def test_uci_split_is_recorded(tmp_path: Path) -> None:
    rec = varbayes.run("deterministic", "boston", split=3, out=tmp_path, quiet=True, epochs=1)
    assert rec["split"] == 3


def test_cifar10_from_a_local_folder(tmp_path: Path) -> None:
    folder = make_fake_cifar10(tmp_path / "cifar", n_train_per_batch=20, n_test=20)
    rec = varbayes.run("deterministic", "cifar10", out=tmp_path / "run", quiet=True, epochs=1,
                       data_dir=str(folder), model="cnn", val_fraction=0.0)
    assert 0 <= rec["metrics"]["accuracy"] <= 1
    probs = varbayes.load(tmp_path / "run").predict(torch.zeros(2, 3, 32, 32))
    assert probs.shape == (2, 10)


def test_predict_rejects_bad_input(tmp_path: Path) -> None:
    varbayes.run("deterministic", "two-moons", out=tmp_path, quiet=True, epochs=1)
    model = varbayes.load(tmp_path)
    with pytest.raises(varbayes.VarbayesError):
        model.predict(torch.full((3, 2), float("nan")))
    with pytest.raises(varbayes.VarbayesError):
        model.predict(torch.zeros(3, 5))
