"""The table of datasets, and `load` / `names` over it.

`load(name, seed=..., split=...)` checks its arguments once, here, so every loader can trust
them. `split` picks one of N_SPLITS train/test partitions for the datasets that have several
(digits, boston, concrete) and must be 0 for those with one fixed split. `seed` is the
generator seed of the synthetic sets (two-moons, toy-regression) and is ignored by the others,
so a method's seed never changes a real dataset's test set.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable
from dataclasses import dataclass

from varbayes.data import cifar, synthetic, tabular
from varbayes.data.dataset import Dataset
from varbayes.data.splits import N_SPLITS
from varbayes.data.validate import check_seed
from varbayes.errors import VarbayesError, one_of


@dataclass(frozen=True)
class _Entry:
    loader: Callable[..., Dataset]
    n_splits: int  # 1 = one fixed train/test split


_CATALOG: dict[str, _Entry] = {
    "mnist1d": _Entry(synthetic.mnist1d, 1),
    "digits": _Entry(tabular.digits, N_SPLITS),
    "boston": _Entry(tabular.boston, N_SPLITS),
    "concrete": _Entry(tabular.concrete, N_SPLITS),
    "two-moons": _Entry(synthetic.two_moons, 1),
    "toy-regression": _Entry(synthetic.toy_regression, 1),
    "cifar10": _Entry(cifar.cifar10, 1),
}


def names() -> list[str]:
    """All dataset names, sorted."""
    return sorted(_CATALOG)


def n_splits(name: str) -> int:
    """How many train/test partitions `name` has (1 for a fixed split)."""
    if name not in _CATALOG:
        raise one_of("dataset", name, names())
    return _CATALOG[name].n_splits


def load(name: str, *, seed: int = 0, split: int = 0, data_dir: str | None = None) -> Dataset:
    """Load dataset `name` offline (generated, bundled, cached, or read from `data_dir`).

    seed: generator seed of the synthetic sets (two-moons, toy-regression); others ignore it.
    split: train/test partition 0..19 for digits, boston and concrete; 0 for the rest.
    data_dir: the local folder of datasets read from files (cifar10); others ignore it.
    """
    entry = _CATALOG.get(name) if isinstance(name, str) else None
    if entry is None:
        raise one_of("dataset", name, names())
    seed = check_seed(seed)
    if isinstance(split, bool) or not isinstance(split, numbers.Integral):
        raise VarbayesError(f"split must be an integer, got {split!r}")
    if entry.n_splits == 1 and split != 0:
        raise VarbayesError(f"{name} has one fixed train/test split; split must be 0, got {split}")
    if not 0 <= split < entry.n_splits:
        raise VarbayesError(
            f"split {split} is out of range for {name}; valid: 0..{entry.n_splits - 1}"
        )
    return entry.loader(seed=int(seed), split=int(split), data_dir=data_dir)
