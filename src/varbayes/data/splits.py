"""Seeded train/test split protocols.

`uci_split` is the UCI-regression protocol (20 random 90/10 splits, selected by index);
`stratified_split` keeps class proportions and is used for digits and validation parts.
Indices come back sorted, so every part keeps the source order.
"""

from __future__ import annotations

import numpy as np

from varbayes.errors import VarbayesError

N_SPLITS = 20
UCI_TEST_FRACTION = 0.1


def uci_split(n: int, split: int) -> tuple[np.ndarray, np.ndarray]:
    """Split `split` of n rows: a permutation from `numpy.random.default_rng(split)`, the first
    round(0.9 n) rows train and the rest test."""
    perm = np.random.default_rng(split).permutation(n)
    n_train = int(round(n * (1 - UCI_TEST_FRACTION)))
    return np.sort(perm[:n_train]), np.sort(perm[n_train:])


def stratified_split(labels: np.ndarray, n_test: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, test) with `n_test` test rows and class proportions kept, via
    scikit-learn's `train_test_split(..., stratify=labels, random_state=seed)`."""
    from sklearn.model_selection import train_test_split  # imported here: sklearn is slow to load

    idx = np.arange(len(labels))
    try:
        train, test = train_test_split(
            idx, test_size=n_test, stratify=labels, random_state=seed, shuffle=True
        )
    except ValueError as e:  # e.g. fewer test rows than classes, or a class of one example
        reason = " ".join(str(e).split())
        raise VarbayesError(
            f"cannot make a stratified split of {n_test} examples: {reason}"
        ) from None
    return np.sort(train), np.sort(test)


def random_split(n: int, n_test: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, test) of a seeded random split of n rows with `n_test` test rows."""
    perm = np.random.default_rng(seed).permutation(n)
    return np.sort(perm[n_test:]), np.sort(perm[:n_test])
