"""Every input check raises VarbayesError with a single line."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from varbayes.errors import VarbayesError
from varbayes.metrics import (
    accuracy,
    calibration_bins,
    classification_metrics,
    expected_calibration_error,
    gaussian_nll,
    layer_macs,
    model_bytes,
    nll,
    ood_metrics,
    ood_scores,
    regression_metrics,
    rmse,
    structure_report,
    train_flops,
)

P = np.array([[0.2, 0.8], [0.6, 0.4]])
Y = np.array([1, 0])


class ReturnsDict(nn.Module):
    weight_numel = 4

    def forward(self, x: torch.Tensor) -> dict:
        return {"out": x}


CASES = {
    "probs 1-D": lambda: accuracy(P[0], Y[:1]),
    "probs 3-D": lambda: nll(P[None], Y),
    "labels shape": lambda: accuracy(P, Y[:1]),
    "labels 2-D": lambda: accuracy(P, Y[:, None]),
    "NaN": lambda: accuracy(np.array([[np.nan, 1.0]]), [0]),
    "Inf": lambda: accuracy(np.array([[np.inf, 1.0]]), [0]),
    "NaN labels": lambda: accuracy(P, [0, np.nan]),
    "negative": lambda: nll(np.array([[-0.1, 1.1]]), [0]),
    "logits": lambda: classification_metrics(torch.randn(4, 3) * 3, [0, 1, 2, 0]),
    "row sum": lambda: nll(np.array([[0.2, 0.2]]), [0]),
    "label too big": lambda: accuracy(P, [2, 0]),
    "label negative": lambda: accuracy(P, [-1, 0]),
    "label fractional": lambda: accuracy(P, [0.5, 0]),
    "empty": lambda: accuracy(np.zeros((0, 3)), []),
    "no classes": lambda: accuracy(np.zeros((2, 0)), [0, 0]),
    "strings": lambda: accuracy("abc", [0]),
    "complex": lambda: accuracy(torch.ones(1, 1, dtype=torch.complex64), [0]),
    "n_bins 0": lambda: expected_calibration_error(P, Y, n_bins=0),
    "n_bins bool": lambda: classification_metrics(P, Y, n_bins=True),
    "n_bins tensor": lambda: classification_metrics(P, Y, n_bins=torch.arange(20)),
    "binning": lambda: calibration_bins(P, Y, binning="quantile"),
    "score name": lambda: ood_scores(P, "energy"),
    "score tensor": lambda: ood_scores(P, torch.arange(20)),
    "mutual info 2-D": lambda: ood_scores(P, "mutual_info"),
    "scores 4-D": lambda: ood_scores(P[None, None], "entropy"),
    "samples row sum": lambda: ood_scores(np.ones((2, 2, 2)), "mutual_info"),
    "ood 2-D": lambda: ood_metrics(P, [1.0]),
    "ood empty": lambda: ood_metrics([], [1.0]),
    "ood NaN": lambda: ood_metrics([np.nan], [1.0]),
    "regression shapes": lambda: rmse([1.0, 2.0], [1.0]),
    "regression 3-D": lambda: rmse(np.ones((2, 2, 2)), np.ones((2, 2, 2))),
    "regression empty": lambda: rmse([], []),
    "var zero": lambda: gaussian_nll([0.0], [0.0], [0.0]),
    "var shape": lambda: gaussian_nll([0.0, 1.0], [1.0], [0.0, 1.0]),
    "y_std zero": lambda: regression_metrics([0.0], [1.0], [0.0], y_std=0.0),
    "y_std array": lambda: regression_metrics([0.0], [1.0], [0.0], y_std=np.ones((30, 30))),
    "y_mean nan": lambda: regression_metrics([0.0], [1.0], [0.0], y_mean=float("nan")),
    "model file missing": lambda: model_bytes("/nonexistent/model.safetensors"),
    "model folder": lambda: model_bytes("/"),
    "model no files": lambda: model_bytes([]),
    "steps negative": lambda: train_flops([], -1, 8, 2),
    "batch float": lambda: train_flops([], 1, 8.0, 2),
    "updates > steps": lambda: train_flops([], 1, 8, 2, update_steps=2),
    "chain mismatch": lambda: structure_report([np.ones((3, 2)), np.ones((2, 4))]),
    "no layers": lambda: structure_report([]),
    "1-D weight": lambda: structure_report([np.ones(3)]),
    "positions length": lambda: structure_report([np.ones((3, 2))], positions=[1, 2]),
    "layer output": lambda: layer_macs(ReturnsDict(), torch.zeros(1, 2)),
}


@pytest.mark.parametrize("case", list(CASES))
def test_error_is_one_line(case: str) -> None:
    with pytest.raises(VarbayesError) as info:
        CASES[case]()
    message = str(info.value)
    assert message and "\n" not in message, message
