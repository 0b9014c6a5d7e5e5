"""Progress bars and status lines on the console (rich), silent when asked or off rank 0."""

from __future__ import annotations

import os
import sys
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn
from rich.progress import Progress as _RichProgress

console = Console(stderr=True)


def _silenced(disable: bool) -> bool:
    rank = int(os.environ.get("RANK", os.environ.get("LOCAL_RANK", "0")) or 0)
    return disable or rank != 0 or os.environ.get("VARBAYES_QUIET", "") not in ("", "0")


class Progress:
    """One progress bar: `with progress(n, "training") as bar: bar.advance(loss=0.3)`."""

    def __init__(self, total: int, description: str, disable: bool = False) -> None:
        self.total, self.description = total, description
        self._disabled = _silenced(disable) or not sys.stderr.isatty()
        self._bar: _RichProgress | None = None
        self._task: Any = None

    def __enter__(self) -> Progress:
        if not self._disabled:
            self._bar = _RichProgress(
                TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                TimeRemainingColumn(), TextColumn("{task.fields[info]}"),
                console=console, transient=True,
            )
            self._bar.__enter__()
            self._task = self._bar.add_task(self.description, total=self.total, info="")
        return self

    def advance(self, n: int = 1, **info: float) -> None:
        """Move the bar by `n` steps and show the given values (loss=..., acc=...)."""
        if self._bar is not None:
            text = "  ".join(f"{k}={v:.4g}" for k, v in info.items())
            self._bar.update(self._task, advance=n, info=text)

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.__exit__(*exc)


def progress(total: int, description: str, disable: bool = False) -> Progress:
    """A progress bar over `total` steps (a no-op off a terminal, when quiet, or off rank 0)."""
    return Progress(total, description, disable=disable)


def announce(message: str, disable: bool = False) -> None:
    """One status line on stderr (skipped when quiet or off rank 0)."""
    if not _silenced(disable):
        console.print(f"[dim]{message}[/dim]")
