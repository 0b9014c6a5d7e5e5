"""Timing shared by the benchmark scripts: interleaved repeats and medians, so that a busy
machine slows every contender alike and ratios measured in one run stay comparable."""

from __future__ import annotations

import os
import platform

import torch

from varbayes.metrics.timing import median_times  # noqa: F401 - re-exported for the scripts


def machine() -> str:
    """One line describing where the numbers came from."""
    return (f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
            f"torch {torch.__version__}, {torch.get_num_threads()} threads")


def markdown(header: list[str], rows: list[list[object]]) -> str:
    """A Markdown table (floats to 4 significant digits)."""
    def fmt(v: object) -> str:
        return f"{v:.4g}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)
