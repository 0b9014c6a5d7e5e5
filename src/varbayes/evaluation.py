"""Evaluating a trained supervised model on its dataset's test split, the same way for every
method: classification accuracy/NLL/ECE/Brier and OOD AUROC/AUPR against the dataset's OOD
companion, or regression RMSE/NLL in original units. Under DDP every test example is
predicted exactly once across ranks (`varbayes.train.sharded_map`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from varbayes import metrics
from varbayes.models import SupervisedModel
from varbayes.train.distributed import sharded_map

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from varbayes.data import Dataset

N_BINS = 15


def predict_test(model: SupervisedModel, x: torch.Tensor, fabric: Any = None) -> Any:
    """Predictions for every row of `x` (sharded over ranks when `fabric` runs DDP)."""
    if model.task == "classification":
        return sharded_map(fabric, lambda xb: model.predict(xb), x)
    both = sharded_map(fabric, lambda xb: torch.stack(model.predict(xb), dim=-1), x)
    return both[:, 0], both[:, 1]


def evaluate(
    model: SupervisedModel, ds: Dataset, fabric: Any = None
) -> tuple[dict[str, float], dict[str, Figure]]:
    """Test metrics (DESIGN.md names) and the figures that go with them."""
    if ds.task == "classification":
        probs = predict_test(model, ds.x_test, fabric)
        out = metrics.classification_metrics(probs, ds.y_test, n_bins=N_BINS)
        figures = {"reliability": metrics.reliability_diagram(probs, ds.y_test, n_bins=N_BINS)}
        x_ood = ds.ood()
        if x_ood is not None:
            probs_ood = predict_test(model, x_ood, fabric)
            s_in = metrics.ood_scores(probs, "max_prob")
            s_out = metrics.ood_scores(probs_ood, "max_prob")
            out.update(metrics.ood_metrics(s_in, s_out))
            e_in = metrics.ood_scores(probs, "entropy")
            e_out = metrics.ood_scores(probs_ood, "entropy")
            out.update({f"{k}_entropy": v for k, v in metrics.ood_metrics(e_in, e_out).items()})
        return out, figures
    mean, var = predict_test(model, ds.x_test, fabric)
    y = ds.y_test * ds.y_std + ds.y_mean
    return metrics.regression_metrics(mean, var, y), {}
