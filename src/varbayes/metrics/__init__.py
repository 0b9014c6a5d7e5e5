"""Metrics with stated conventions: classification, calibration, OOD, regression and cost.

Metric functions take torch tensors, numpy arrays or lists, raise `VarbayesError` with one line
on bad input, and return Python floats. Definitions: docs/metrics.md.
"""

from varbayes.metrics.calibration import (
    CalibrationBins,
    adaptive_calibration_error,
    calibration_bins,
    ece_settings,
    expected_calibration_error,
    reliability_diagram,
)
from varbayes.metrics.classification import NLL_FLOOR, accuracy, brier, classification_metrics, nll
from varbayes.metrics.ood import ood_metrics, ood_scores
from varbayes.metrics.regression import gaussian_nll, regression_metrics, rmse

__all__ = [
    "NLL_FLOOR",
    "CalibrationBins",
    "accuracy",
    "adaptive_calibration_error",
    "brier",
    "calibration_bins",
    "classification_metrics",
    "ece_settings",
    "expected_calibration_error",
    "gaussian_nll",
    "nll",
    "ood_metrics",
    "ood_scores",
    "regression_metrics",
    "reliability_diagram",
    "rmse",
]
