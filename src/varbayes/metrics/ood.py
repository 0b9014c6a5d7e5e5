"""Out-of-distribution detection: per-example scores and the AUROC / AUPR of separating sets.

Convention: OOD is the positive class and a higher score means "more OOD". So `max_prob`
scores are the NEGATIVE maximum predictive probability; `entropy` and `mutual_info` are used
as they are.
"""

from __future__ import annotations

from typing import Any, Literal

import torch

from varbayes.errors import VarbayesError, one_of
from varbayes.metrics._inputs import as_float, as_probs, check_nonempty, short

Score = Literal["max_prob", "entropy", "mutual_info"]
SCORES = ("max_prob", "entropy", "mutual_info")


def ood_scores(probs_or_samples: Any, score: Score = "max_prob") -> torch.Tensor:
    """Per-example OOD scores (float64, shape (N,)), higher = more OOD, entropies in nats.

    Input: predictive probabilities (N, C), or per-posterior-sample probabilities (S, N, C)
    whose predictive mean is the average over S.
    - `max_prob`: -max_c pbar_c.
    - `entropy`: H[pbar] = -sum_c pbar_c log pbar_c (0 log 0 = 0), the total uncertainty.
    - `mutual_info`: H[pbar] - 1/S sum_s H[p_s], the epistemic part; needs (S, N, C). Clamped
      at 0, below which only rounding error can take it.
    """
    if not isinstance(score, str) or score not in SCORES:
        raise one_of("OOD score", score if isinstance(score, str) else short(score), SCORES)
    x = as_float(probs_or_samples, "probs_or_samples")
    if score == "mutual_info" and x.ndim != 3:
        raise VarbayesError(f"mutual_info needs per-sample probabilities of shape (S, N, C); "
                            f"got shape {tuple(x.shape)}")
    if x.ndim not in (2, 3):
        raise VarbayesError(f"probs_or_samples must have shape (N, C) or (S, N, C); "
                            f"got shape {tuple(x.shape)}")
    p = as_probs(x, "probs_or_samples", ndim=x.ndim)
    mean = p.mean(0) if p.ndim == 3 else p
    if score == "max_prob":
        return -mean.max(-1).values
    if score == "entropy":
        return _entropy(mean)
    return (_entropy(mean) - _entropy(p).mean(0)).clamp_min(0.0)


def ood_metrics(scores_in: Any, scores_out: Any) -> dict[str, float]:
    """`auroc` and `aupr` for telling OOD (positive) from in-distribution examples by score.

    AUPR is average precision with OOD as the positive class (torchmetrics'
    `binary_average_precision`, the step-wise sum that scikit-learn's
    `average_precision_score` also computes, no interpolation). Ties count as in those
    libraries (one threshold per distinct score).
    """
    # imported here: torchmetrics takes seconds to import and only this function needs it
    from torchmetrics.functional.classification import binary_auroc, binary_average_precision

    s_in, s_out = _as_scores(scores_in, "scores_in"), _as_scores(scores_out, "scores_out")
    scores = torch.cat([s_in, s_out])
    target = torch.cat([torch.zeros(len(s_in)), torch.ones(len(s_out))]).long()
    # torchmetrics applies a sigmoid to scores outside [0, 1], which can merge large scores into
    # ties; the metrics depend only on the order, so pass dense ranks scaled into [0, 1] instead.
    ranks = torch.unique(scores, return_inverse=True)[1].to(torch.float64)
    ranks = ranks / ranks.max() if ranks.max() > 0 else ranks
    return {"auroc": binary_auroc(ranks, target).item(),
            "aupr": binary_average_precision(ranks, target).item()}


def _entropy(p: torch.Tensor) -> torch.Tensor:
    return -torch.special.xlogy(p, p).sum(-1)


def _as_scores(x: Any, name: str) -> torch.Tensor:
    s = as_float(x, name)
    if s.ndim != 1:
        raise VarbayesError(f"{name} must be a 1-D tensor of scores; got shape {tuple(s.shape)}")
    check_nonempty(s, name)
    return s
