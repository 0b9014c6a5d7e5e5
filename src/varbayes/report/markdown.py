"""report.md for a run and for a reproduction: tables of numbers and links to figures."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from varbayes.io import atomic_write_text
from varbayes.method import Reproduction


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub-flavoured Markdown table; floats get 4 significant digits."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def write_run_report(
    path: Path, record: dict[str, Any], figures: Sequence[str], notes: Sequence[str]
) -> Path:
    """report.md of one run: what ran, its metrics, timing, settings and figures."""
    parts = [
        f"# {record['method']} on {record['dataset']} (seed {record['seed']})",
        "## Metrics",
        markdown_table(["metric", "value"], list(record["metrics"].items())),
        "## Timing (seconds)",
        markdown_table(["stage", "seconds"], list(record["timing"].items())),
        "## Settings",
        markdown_table(["setting", "value"], list(record["config"].items())),
    ]
    if notes:
        parts += ["## Notes", *notes]
    if figures:
        parts += ["## Figures", *[f"![{Path(f).stem}]({f})" for f in figures]]
    return atomic_write_text(path, "\n\n".join(parts) + "\n")


def write_reproduction_report(
    path: Path, method: str, quick: bool, rep: Reproduction, seconds: float,
    figures: Sequence[str],
) -> Path:
    """report.md of a reproduction: the claim table, extra tables, notes and figures."""
    rows = [
        (c.claim, c.measured, "-" if c.baseline is None else c.baseline, c.threshold,
         "PASS" if c.passed else "FAIL")
        for c in rep.claims
    ]
    parts = [
        f"# Reproduction of {method}" + (" (quick)" if quick else ""),
        f"Overall: **{'PASS' if rep.passed else 'FAIL'}** in {seconds:.1f} s.",
        markdown_table(["claim", "measured", "baseline", "threshold", "pass"], rows),
    ]
    for title, table in rep.tables.items():
        parts += [f"## {title}", table]
    if rep.notes:
        parts += ["## Notes", *rep.notes]
    if figures:
        parts += ["## Figures", *[f"![{Path(f).stem}]({f})" for f in figures]]
    return atomic_write_text(path, "\n\n".join(parts) + "\n")


def _fmt(v: Any) -> str:
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, (tuple, list)):
        return ", ".join(_fmt(x) for x in v)
    return str(v)
