"""Accuracy, NLL and Brier against scikit-learn and direct numpy formulas."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from sklearn.metrics import accuracy_score, brier_score_loss, log_loss

from varbayes.metrics import NLL_FLOOR, accuracy, brier, classification_metrics, nll
from varbayes.metrics.calibration import expected_calibration_error

from ._helpers import probs_and_labels, random_probs


@pytest.mark.parametrize("n, c", [(1, 2), (7, 3), (500, 10)])
def test_against_sklearn_and_numpy(n: int, c: int) -> None:
    p, y = random_probs(np.random.default_rng(n + c), n, c)
    assert accuracy(p, y) == pytest.approx(accuracy_score(y, p.argmax(1)), abs=1e-12)
    assert nll(p, y) == pytest.approx(log_loss(y, p, labels=list(range(c))), rel=1e-10)
    assert brier(p, y) == pytest.approx(((p - np.eye(c)[y]) ** 2).sum(1).mean(), rel=1e-12)


def test_binary_brier_is_twice_sklearn() -> None:
    p, y = random_probs(np.random.default_rng(0), 200, 2)
    assert brier(p, y) == pytest.approx(2 * brier_score_loss(y, p[:, 1]), rel=1e-12)


def test_torch_float32_and_numpy_agree() -> None:
    p, y = random_probs(np.random.default_rng(1), 50, 4)
    pt = torch.tensor(p, dtype=torch.float32)
    pt = pt / pt.sum(1, keepdim=True)
    assert nll(pt, torch.tensor(y)) == pytest.approx(nll(p, y), rel=1e-5)


def test_nll_floor_gives_large_finite_value() -> None:
    p = np.array([[1.0, 0.0], [0.5, 0.5]])
    assert nll(p, [1, 0]) == pytest.approx((-math.log(NLL_FLOOR) + math.log(2)) / 2)


def test_ties_go_to_the_lowest_class() -> None:
    assert accuracy([[0.5, 0.5]], [0]) == 1.0
    assert accuracy([[0.5, 0.5]], [1]) == 0.0


def test_classification_metrics_keys_and_values() -> None:
    p, y = random_probs(np.random.default_rng(2), 100, 5)
    out = classification_metrics(p, y, n_bins=10)
    assert list(out) == ["accuracy", "nll", "ece", "brier"]
    assert all(type(v) is float for v in out.values())
    assert out["ece"] == expected_calibration_error(p, y, n_bins=10)
    assert out["nll"] == nll(p, y) and out["brier"] == brier(p, y)


@settings(max_examples=100, deadline=None)
@given(probs_and_labels())
def test_edge_inputs(data: tuple[np.ndarray, np.ndarray]) -> None:
    p, y = data
    onehot = np.eye(p.shape[1])[y]
    assert accuracy(p, y) == pytest.approx(np.mean(p.argmax(1) == y), abs=1e-12)
    expected_nll = -np.log(np.maximum((p * onehot).sum(1), NLL_FLOOR)).mean()
    assert nll(p, y) == pytest.approx(expected_nll, rel=1e-12, abs=1e-12)
    assert math.isfinite(nll(p, y))
    assert brier(p, y) == pytest.approx(((p - onehot) ** 2).sum(1).mean(), abs=1e-12)
    assert 0.0 <= brier(p, y) <= 2.0 + 1e-12
