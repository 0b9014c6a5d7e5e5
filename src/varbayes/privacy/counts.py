"""Confusion counts of a membership-inference audit and the checks on them.

Members are the trials in which the target record was in the training set (an attack guess of
"member" is a true positive, TP, otherwise a false negative, FN); non-members are the rest
(false positives FP, true negatives TN).
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

from varbayes.errors import VarbayesError


@dataclass(frozen=True)
class AuditCounts:
    """The four confusion counts of one audit."""

    tp: int
    fn: int
    fp: int
    tn: int

    @property
    def members(self) -> int:
        """Trials with the target in the training set, P = TP + FN."""
        return self.tp + self.fn

    @property
    def non_members(self) -> int:
        """Trials without the target, N = FP + TN."""
        return self.fp + self.tn

    def as_dict(self) -> dict[str, int]:
        return {"tp": self.tp, "fn": self.fn, "fp": self.fp, "tn": self.tn}


def check_counts(tp: object, fn: object, fp: object, tn: object) -> AuditCounts:
    """Validate four confusion counts: non-negative integers, not all zero."""
    values = {}
    for name, value in (("tp", tp), ("fn", fn), ("fp", fp), ("tn", tn)):
        if isinstance(value, bool) or not _is_integer(value):
            raise VarbayesError(f"count {name} must be a non-negative integer; got {value!r}")
        if int(value) < 0:
            raise VarbayesError(f"count {name} must be a non-negative integer; got {int(value)}")
        values[name] = int(value)
    if not any(values.values()):
        raise VarbayesError("the counts tp, fn, fp, tn are all zero; an audit needs >= 1 trial")
    return AuditCounts(**values)


def check_delta(delta: object) -> float:
    """Validate the DP delta: a number in [0, 1)."""
    if isinstance(delta, bool) or not isinstance(delta, numbers.Real):
        raise VarbayesError(f"delta must be a number in [0, 1); got {delta!r}")
    d = float(delta)
    if not (math.isfinite(d) and 0.0 <= d < 1.0):
        raise VarbayesError(f"delta must be in [0, 1); got {d}")
    return d


def check_alpha(alpha: object) -> float:
    """Validate a significance level: a number in (0, 1), e.g. 0.05 for a 95 % interval."""
    if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real):
        raise VarbayesError(f"alpha must be a number in (0, 1); got {alpha!r}")
    a = float(alpha)
    if not (math.isfinite(a) and 0.0 < a < 1.0):
        raise VarbayesError(f"alpha must be in (0, 1), e.g. 0.05 for a 95 % interval; got {a}")
    return a


def _is_integer(value: object) -> bool:
    if isinstance(value, numbers.Integral):
        return True
    # floats holding whole numbers (counts read from a CSV) are accepted as integers
    return isinstance(value, numbers.Real) and math.isfinite(float(value)) and float(value) == int(
        float(value)
    )
