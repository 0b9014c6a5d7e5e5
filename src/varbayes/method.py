"""What a method module receives and returns.

A method is one module (see `registry.py`) that defines, top-down:

- `Config`: a dataclass deriving from `varbayes.config.Config`;
- `DATASETS`: the dataset names it runs on, the first being the default (a method that does not
  read a dataset, such as a synthetic benchmark, names its own problems here);
- `run(cfg, ctx: RunContext) -> RunOutput`: train or run once;
- `reproduce(ctx: ReproduceContext) -> Reproduction`: the small-scale paper claim next to its
  baseline;
- optionally `load_model(meta, tensors) -> model` for models that `varbayes.load` restores
  (`meta` is model.json, `tensors` model.safetensors).

The runner (`varbayes.runner`) owns everything around these calls: seeding, settings, result
files, reports and exit codes, so that no method writes them itself.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from varbayes.progress import Progress, progress

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from varbayes.data import Dataset


class SavableModel(Protocol):
    """A trained model that writes itself as safetensors plus JSON into a folder."""

    def save(self, directory: str | Path) -> None: ...

    def predict(self, x: Any) -> Any: ...


@dataclass
class RunContext:
    """Where and how one `varbayes run` happens."""

    method: str
    dataset: str
    seed: int = 0
    split: int = 0
    out: Path = Path("runs/default")
    resume: bool = False
    quiet: bool = False

    def load_data(self, data_dir: str | None = None) -> Dataset:
        """The dataset of this run (the fixed split chosen by `seed`/`split`)."""
        from varbayes.data import load

        return load(self.dataset, seed=self.seed, split=self.split, data_dir=data_dir)

    @property
    def checkpoint_dir(self) -> Path:
        """Where the training engine keeps its checkpoints for `--resume`."""
        return self.out / "checkpoints"

    def progress(self, total: int, description: str) -> Progress:
        """A progress bar (silent when quiet)."""
        return progress(total, description, disable=self.quiet)


@dataclass
class RunOutput:
    """What a run produced: metrics (DESIGN.md names), the model, figures and notes."""

    metrics: dict[str, float]
    model: SavableModel | None = None
    figures: dict[str, Figure] = field(default_factory=dict)
    timing: dict[str, float] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


@dataclass
class Claim:
    """One row of a reproduction table; build it with `at_most`, `at_least` or `holds`."""

    claim: str
    measured: float
    baseline: float | None
    threshold: str
    passed: bool


def at_most(claim: str, measured: float, bound: float, baseline: float | None = None) -> Claim:
    """Passes when `measured <= bound` (and measured is a number)."""
    ok = _finite(measured) and measured <= bound
    return Claim(claim, float(measured), _opt(baseline), f"<= {bound:g}", bool(ok))


def at_least(claim: str, measured: float, bound: float, baseline: float | None = None) -> Claim:
    """Passes when `measured >= bound` (and measured is a number)."""
    ok = _finite(measured) and measured >= bound
    return Claim(claim, float(measured), _opt(baseline), f">= {bound:g}", bool(ok))


def within(
    claim: str, measured: float, low: float, high: float, baseline: float | None = None
) -> Claim:
    """Passes when `low <= measured <= high`."""
    ok = _finite(measured) and low <= measured <= high
    return Claim(claim, float(measured), _opt(baseline), f"in [{low:g}, {high:g}]", bool(ok))


def holds(
    claim: str, passed: bool, measured: float, threshold: str, baseline: float | None = None
) -> Claim:
    """A claim whose test is not a single bound (an ordering, an exact structure...)."""
    return Claim(claim, float(measured), _opt(baseline), threshold, bool(passed))


@dataclass
class Reproduction:
    """A method's reproduction: the claims plus what a reader of the report needs."""

    claims: list[Claim]
    figures: dict[str, Figure] = field(default_factory=dict)
    tables: dict[str, str] = field(default_factory=dict)  # title -> Markdown table
    details: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return bool(self.claims) and all(c.passed for c in self.claims)


@dataclass
class ReproduceContext:
    """Where and how one `varbayes reproduce` happens."""

    method: str
    quick: bool = False
    out: Path = Path("runs/reproduce")
    seeds: tuple[int, ...] = (0, 1, 2)
    quiet: bool = False

    def progress(self, total: int, description: str) -> Progress:
        """A progress bar (silent when quiet)."""
        return progress(total, description, disable=self.quiet)

    @contextmanager
    def step(self, description: str) -> Iterator[None]:
        """Announce one stage of a long reproduction (a line on the console)."""
        from varbayes.progress import announce

        announce(f"{self.method}: {description}", disable=self.quiet)
        yield


def _finite(x: float) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


def _opt(x: float | None) -> float | None:
    return None if x is None else float(x)


MethodRun = Callable[[Any, RunContext], RunOutput]
