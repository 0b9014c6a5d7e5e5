"""Dataset.validation_split: a seeded, stratified part of the train set; test never touched."""

from __future__ import annotations

import pytest
import torch

from varbayes.data import load
from varbayes.errors import VarbayesError


def _rows(x: torch.Tensor) -> set[tuple[float, ...]]:
    return {tuple(r) for r in x.reshape(len(x), -1).tolist()}


@pytest.mark.parametrize("name", ["digits", "mnist1d", "boston"])
def test_validation_comes_from_train_and_never_from_test(name):
    ds = load(name)
    fit, val = ds.validation_split(0.2, seed=1)
    n_val = round(0.2 * ds.n_train)
    assert (fit.n_train, val.n_train, val.n_test) == (ds.n_train - n_val,) * 2 + (n_val,)
    assert torch.equal(fit.x_test, ds.x_test) and torch.equal(fit.y_test, ds.y_test)
    assert torch.equal(fit.x_train, val.x_train)
    train, val_rows, test = _rows(ds.x_train), _rows(val.x_test), _rows(ds.x_test)
    assert val_rows <= train
    assert not val_rows & test
    assert not val_rows & _rows(fit.x_train)
    assert (
        fit.meta["validation"]["role"] == "fit" and val.meta["validation"]["role"] == "validation"
    )
    assert (val.y_mean, val.y_std, val.meta.get("x_mean")) == (
        ds.y_mean,
        ds.y_std,
        ds.meta.get("x_mean"),
    )


def test_validation_split_is_stratified_and_seeded():
    ds = load("digits")
    fit, val = ds.validation_split(0.1, seed=0)
    counts = torch.bincount(val.y_test, minlength=10).double()
    expected = torch.bincount(ds.y_train, minlength=10).double() * val.n_test / ds.n_train
    assert torch.all((counts - expected).abs() <= 1)
    again = ds.validation_split(0.1, seed=0)[1]
    other = ds.validation_split(0.1, seed=1)[1]
    assert torch.equal(again.x_test, val.x_test)
    assert not torch.equal(other.x_test, val.x_test)


@pytest.mark.parametrize("frac", [0.0, 1.0, -0.1, 1e-6, True, "0.1"])
def test_bad_fractions_raise_one_line(frac):
    with pytest.raises(VarbayesError) as info:
        load("two-moons").validation_split(frac)
    assert "\n" not in str(info.value)


def test_too_small_for_stratification_raises_one_line():
    with pytest.raises(VarbayesError, match="stratified") as info:
        load("digits").validation_split(0.004)  # 5 examples cannot cover 10 classes
    assert "\n" not in str(info.value)
