"""The two record shapes of DESIGN.md: result.json of a run and reproduction.json."""

from __future__ import annotations

import platform
from dataclasses import asdict
from importlib import metadata
from typing import Any

from varbayes.method import Reproduction


def result_record(
    method: str,
    dataset: str,
    seed: int,
    config: dict[str, Any],
    metrics: dict[str, float],
    timing: dict[str, float],
    **extra: Any,
) -> dict[str, Any]:
    """`{"method", "dataset", "seed", "config", "metrics", "timing", "versions", ...extra}`."""
    record = {
        "method": method,
        "dataset": dataset,
        "seed": seed,
        "config": config,
        "metrics": metrics,
        "timing": timing,
        "versions": versions(),
    }
    record.update(extra)
    return record


def reproduction_record(
    method: str, quick: bool, rep: Reproduction, seconds: float
) -> dict[str, Any]:
    """`{"method", "quick", "passed", "claims": [...], "seconds", "details"}`."""
    return {
        "method": method,
        "quick": quick,
        "passed": rep.passed,
        "claims": [asdict(c) for c in rep.claims],
        "seconds": round(seconds, 2),
        "details": rep.details,
    }


def versions() -> dict[str, str]:
    """Versions of Python and the packages that decide a run's numbers."""
    out = {"python": platform.python_version()}
    for pkg in ("varbayes", "torch", "numpy", "lightning-fabric", "torchmetrics", "scikit-learn"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            continue
    return out
