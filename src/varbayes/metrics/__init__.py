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
    fit_temperature,
    reliability_diagram,
    temper,
)
from varbayes.metrics.classification import NLL_FLOOR, accuracy, brier, classification_metrics, nll
from varbayes.metrics.cost import (
    LayerCost,
    as_dense,
    count_parameters,
    forward_backward_flops,
    layer_macs,
    model_bytes,
    train_flops,
)
from varbayes.metrics.ood import ood_metrics, ood_scores
from varbayes.metrics.regression import (
    error_variance_correlation,
    gaussian_nll,
    psnr,
    regression_metrics,
    rmse,
    uncertainty_calibration_error,
)
from varbayes.metrics.structure import max_neurons_removed, structure_report

__all__ = [
    "NLL_FLOOR",
    "CalibrationBins",
    "LayerCost",
    "accuracy",
    "adaptive_calibration_error",
    "as_dense",
    "brier",
    "calibration_bins",
    "classification_metrics",
    "count_parameters",
    "error_variance_correlation",
    "ece_settings",
    "expected_calibration_error",
    "fit_temperature",
    "forward_backward_flops",
    "gaussian_nll",
    "layer_macs",
    "max_neurons_removed",
    "model_bytes",
    "nll",
    "ood_metrics",
    "ood_scores",
    "psnr",
    "regression_metrics",
    "reliability_diagram",
    "rmse",
    "structure_report",
    "temper",
    "train_flops",
    "uncertainty_calibration_error",
]
