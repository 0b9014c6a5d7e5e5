"""ECE against torchmetrics, both ECEs against direct numpy loops, and the reliability diagram."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from matplotlib.figure import Figure
from torchmetrics.classification import MulticlassCalibrationError
from torchmetrics.functional.classification import multiclass_calibration_error

from varbayes.metrics import (
    adaptive_calibration_error,
    calibration_bins,
    ece_settings,
    expected_calibration_error,
    reliability_diagram,
)

from ._helpers import probs_and_labels, random_probs


def edges(n_bins: int) -> np.ndarray:
    return np.arange(n_bins + 1) / n_bins


def numpy_ece(p: np.ndarray, y: np.ndarray, n_bins: int) -> float:
    """Bins (lo, hi], empty bins skipped, weights = bin fractions."""
    conf, correct = p.max(1), p.argmax(1) == y
    e, total = edges(n_bins), 0.0
    for lo, hi in zip(e[:-1], e[1:]):
        inside = (conf > lo) & (conf <= hi)
        if inside.any():
            total += inside.mean() * abs(correct[inside].mean() - conf[inside].mean())
    return total


def numpy_adaptive_ece(p: np.ndarray, y: np.ndarray, n_bins: int) -> float:
    conf, correct = p.max(1), p.argmax(1) == y
    order, n, total = np.argsort(conf, kind="stable"), len(conf), 0.0
    for b in range(n_bins):
        members = order[b * n // n_bins:(b + 1) * n // n_bins]
        if len(members):
            total += len(members) / n * abs(correct[members].mean() - conf[members].mean())
    return total


def torchmetrics_ece(p: np.ndarray, y: np.ndarray, n_bins: int) -> float:
    # the functional form of MulticlassCalibrationError (same code, no module setup per call)
    ece = multiclass_calibration_error(torch.tensor(p), torch.tensor(y), p.shape[1],
                                       n_bins=n_bins, norm="l1")
    return ece.item()  # computed in float32


def near_edge(p: np.ndarray, n_bins: int) -> bool:
    """Whether a confidence is within float32 rounding of a bin edge (where torchmetrics,
    which bins [lo, hi) in float32, may legitimately disagree)."""
    return bool((np.abs(p.max(1)[:, None] - edges(n_bins)[None]) < 1e-6).any())


@pytest.mark.parametrize("n, c, n_bins", [(1, 2, 15), (40, 3, 15), (2000, 10, 15), (300, 4, 7)])
def test_ece_matches_torchmetrics(n: int, c: int, n_bins: int) -> None:
    p, y = random_probs(np.random.default_rng(n * c), n, c)
    p = p ** 3 / (p ** 3).sum(1, keepdims=True)  # sharper: fill the upper bins too
    assert not near_edge(p, n_bins)
    assert expected_calibration_error(p, y, n_bins) == pytest.approx(
        torchmetrics_ece(p, y, n_bins), abs=1e-6)
    assert expected_calibration_error(p, y, n_bins) == pytest.approx(
        numpy_ece(p, y, n_bins), abs=1e-12)


@settings(max_examples=75, deadline=None)
@given(probs_and_labels())
def test_ece_edge_inputs(data: tuple[np.ndarray, np.ndarray]) -> None:
    p, y = data
    for n_bins in (1, 4, 15):
        ece = expected_calibration_error(p, y, n_bins)
        assert ece == pytest.approx(numpy_ece(p, y, n_bins), abs=1e-12)
        assert 0.0 <= ece <= 1.0
        if p.shape[1] >= 2 and not near_edge(p, n_bins):
            assert ece == pytest.approx(torchmetrics_ece(p, y, n_bins), abs=1e-6)
        assert adaptive_calibration_error(p, y, n_bins) == pytest.approx(
            numpy_adaptive_ece(p, y, n_bins), abs=1e-12)


def test_adaptive_ece_random() -> None:
    p, y = random_probs(np.random.default_rng(3), 1003, 6)
    expected = numpy_adaptive_ece(p, y, 15)
    assert adaptive_calibration_error(p, y) == pytest.approx(expected, abs=1e-12)
    counts = calibration_bins(p, y, 15, "equal_mass").count
    assert max(counts) - min(counts) <= 1 and sum(counts) == 1003


def test_right_edge_is_inclusive() -> None:
    half = calibration_bins([[0.5, 0.5]], [0], n_bins=2)
    assert half.count == (1, 0) and half.lower == (0.0, 0.5) and half.upper == (0.5, 1.0)
    assert calibration_bins([[1.0, 0.0]], [0], n_bins=2).count == (0, 1)
    assert expected_calibration_error([[0.5, 0.5]], [0], n_bins=2) == 0.5


def test_bins_report_empty_bins_as_nan() -> None:
    bins = calibration_bins([[0.9, 0.1], [0.8, 0.2]], [0, 1], n_bins=5)
    assert bins.count == (0, 0, 0, 1, 1)
    assert np.isnan(bins.accuracy[0]) and np.isnan(bins.confidence[0])
    assert bins.accuracy[3:] == (0.0, 1.0) and bins.confidence[3:] == pytest.approx((0.8, 0.9))
    assert bins.error() == pytest.approx(0.5 * 0.8 + 0.5 * 0.1)


def test_ece_settings_names_the_binning() -> None:
    assert ece_settings(15)["ece"] == {
        "label": "top-label", "norm": "l1", "bins": "equal-width", "n_bins": 15,
        "edges": "b / n_bins", "bin_interval": "(lo, hi]", "empty_bins": "skipped",
        "weights": "fraction of examples"}


def test_reliability_diagram_writes_a_png(tmp_path) -> None:
    p, y = random_probs(np.random.default_rng(4), 200, 3)
    out = tmp_path / "figs" / "reliability.png"
    fig = reliability_diagram(p, y, path=out)
    assert isinstance(fig, Figure)
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 1000
    import matplotlib.image

    assert matplotlib.image.imread(out).shape[2] in (3, 4)
    assert [f.name for f in out.parent.iterdir()] == ["reliability.png"]  # no temp file left
    assert reliability_diagram(p, y, n_bins=5).axes  # no path: nothing written


def test_module_and_functional_torchmetrics_agree() -> None:
    p, y = random_probs(np.random.default_rng(5), 100, 3)
    module = MulticlassCalibrationError(num_classes=3, n_bins=15, norm="l1")
    assert module(torch.tensor(p), torch.tensor(y)).item() == torchmetrics_ece(p, y, 15)


def test_documented_difference_from_torchmetrics_at_confidence_one() -> None:
    # ours: both in (14/15, 1] -> |0.5 - 0.975| = 0.475; torchmetrics: 1.0 alone in its own bin
    p, y = np.array([[1.0, 0.0], [0.95, 0.05]]), np.array([1, 0])
    assert expected_calibration_error(p, y) == pytest.approx(0.475)
    assert torchmetrics_ece(p, y, 15) == pytest.approx(0.5 * 1.0 + 0.5 * 0.05)
