"""Offline datasets, split protocols and input validation.

    from varbayes.data import load, names
    ds = load("mnist1d")          # a Dataset: x_train, y_train, x_test, y_test, ...
    fit, val = ds.validation_split(0.1)

Nothing here downloads: data is generated, read from installed packages, or read from a local
folder, and cached under `cache_dir()` keyed by its parameters. See docs/datasets.md.
"""

from varbayes.data.cache import cache_dir
from varbayes.data.catalog import load, n_splits, names
from varbayes.data.cifar import make_fake_cifar10
from varbayes.data.dataset import Dataset
from varbayes.data.images import QUADRANTS, quadrant_mask, quadrant_merge, quadrant_split
from varbayes.data.validate import check_arrays

__all__ = ["QUADRANTS", "Dataset", "cache_dir", "check_arrays", "load", "make_fake_cifar10",
           "n_splits", "names", "quadrant_mask", "quadrant_merge", "quadrant_split"]
