"""Classification metrics from predicted class probabilities.

`probs` is (N, C): for a Bayesian model, the predictive mean over posterior samples (spec 1.6),
never logits. `labels` is (N,) integer classes. Every function returns a Python float.
"""

from __future__ import annotations

from typing import Any

import torch

from varbayes.metrics._inputs import as_bins, probs_and_labels
from varbayes.metrics.calibration import top_label_bins

NLL_FLOOR = 1e-12
"""Probabilities are clamped to at least this before the log, so a true class predicted with
probability 0 costs -log(1e-12) ~= 27.63 nats instead of infinity."""


def classification_metrics(probs: Any, labels: Any, n_bins: int = 15) -> dict[str, float]:
    """`accuracy`, `nll`, `ece` (top-label L1, `n_bins` equal-width bins) and `brier` at once."""
    p, y = probs_and_labels(probs, labels)
    n_bins = as_bins(n_bins)
    return {
        "accuracy": _accuracy(p, y),
        "nll": _nll(p, y),
        "ece": top_label_bins(p, y, n_bins, "equal_width").error(),
        "brier": _brier(p, y),
    }


def accuracy(probs: Any, labels: Any) -> float:
    """Fraction of examples whose most probable class is the label (ties: the lowest index)."""
    return _accuracy(*probs_and_labels(probs, labels))


def nll(probs: Any, labels: Any) -> float:
    """Mean negative log-likelihood -1/N sum_i log max(p_i[y_i], NLL_FLOOR), in nats."""
    return _nll(*probs_and_labels(probs, labels))


def brier(probs: Any, labels: Any) -> float:
    """Multiclass Brier score 1/N sum_i sum_c (p_ic - 1[y_i = c])^2, in [0, 2].

    The sum over classes is the original (Brier 1950) convention; for two classes it is twice
    scikit-learn's `brier_score_loss`, which scores only the positive class's probability.
    """
    return _brier(*probs_and_labels(probs, labels))


def _accuracy(p: torch.Tensor, y: torch.Tensor) -> float:
    return (p.argmax(1) == y).double().mean().item()


def _nll(p: torch.Tensor, y: torch.Tensor) -> float:
    py = p.gather(1, y[:, None]).squeeze(1)
    return -py.clamp_min(NLL_FLOOR).log().mean().item()


def _brier(p: torch.Tensor, y: torch.Tensor) -> float:
    onehot = torch.nn.functional.one_hot(y, p.shape[1]).to(p.dtype)
    return (p - onehot).pow(2).sum(1).mean().item()
