"""Wall-clock timing with interleaved repeats: every contender runs once per round, so a busy
machine slows them alike and ratios measured in one call stay comparable. Used by the
benchmark scripts and by methods that report a measured speed-up (Turbo-VBI's compact model)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def median_times(
    contenders: dict[str, Callable[[], object]], repeats: int = 20, warmup: int = 3,
    clock: Callable[[], float] = time.perf_counter,
) -> dict[str, float]:
    """Median seconds of each callable by `clock` (wall clock by default; `time.process_time`
    counts only this process's CPU time, which a busy machine does not inflate when torch runs
    one thread); rounds interleave the contenders after `warmup` untimed calls of each."""
    for fn in contenders.values():
        for _ in range(warmup):
            fn()
    samples: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(repeats):
        for name, fn in contenders.items():
            start = clock()
            fn()
            samples[name].append(clock() - start)
    return {name: statistics.median(v) for name, v in samples.items()}
