"""A threshold membership-inference attack on per-trial scores, and its confusion counts.

A score says how member-like one audit trial looks (for the loss-threshold attack, minus the
target's loss: members are fit better). The attack guesses "member" when the score is at least
a threshold. The threshold must be chosen on trials that are not counted afterwards, or the
counts would be optimistically biased: `calibrate_threshold` picks it on a calibration set by
maximising the Jeffreys lower bound on epsilon there, which balances a large implied epsilon
against the few errors that far-out thresholds are estimated from.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from varbayes.errors import VarbayesError
from varbayes.privacy.baselines import jeffreys_interval
from varbayes.privacy.counts import AuditCounts

_MAX_CANDIDATES = 256


def confusion_counts(member_scores: ArrayLike, non_member_scores: ArrayLike, threshold: float) -> (
    AuditCounts
):
    """TP, FN, FP, TN of the guess "member iff score >= threshold"."""
    m, n = _scores(member_scores, "member"), _scores(non_member_scores, "non-member")
    tp, fp = int(np.sum(m >= threshold)), int(np.sum(n >= threshold))
    return AuditCounts(tp=tp, fn=m.size - tp, fp=fp, tn=n.size - fp)


def calibrate_threshold(
    member_scores: ArrayLike, non_member_scores: ArrayLike, delta: float = 0.0,
    alpha: float = 0.05,
) -> float:
    """The threshold (a midpoint between observed scores) whose counts on these calibration
    trials give the largest Jeffreys lower bound on epsilon; ties go to the middle candidate."""
    m, n = _scores(member_scores, "member"), _scores(non_member_scores, "non-member")
    values = np.unique(np.concatenate([m, n]))
    mids = 0.5 * (values[:-1] + values[1:]) if values.size > 1 else values
    if mids.size > _MAX_CANDIDATES:
        mids = np.unique(np.quantile(mids, np.linspace(0, 1, _MAX_CANDIDATES)))
    bounds = np.array([
        jeffreys_interval(**confusion_counts(m, n, t).as_dict(), delta=delta, alpha=alpha)[0]
        for t in mids
    ])
    best = np.flatnonzero(bounds == bounds.max())
    return float(mids[best[best.size // 2]])


def _scores(values: ArrayLike, name: str) -> np.ndarray:
    arr = np.asarray(values, dtype=float).ravel()
    if arr.size == 0:
        raise VarbayesError(f"the {name} scores are empty; an audit needs trials of both kinds")
    if not np.all(np.isfinite(arr)):
        raise VarbayesError(f"the {name} scores contain NaN or infinity; give finite scores")
    return arr
