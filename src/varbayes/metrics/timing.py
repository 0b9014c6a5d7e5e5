"""Wall-clock timing with interleaved repeats: every contender runs once per round, so a busy
machine slows them alike and ratios measured in one call stay comparable. Used by the
benchmark scripts and by methods that report a measured speed-up (Turbo-VBI's compact model).

The order within a round follows a balanced Latin square, because a call's time depends on
the call before it: in `benchmarks/vi_overhead.py` a compiled VAE step measured 9-33% slower
right after Pyro's step than right after the other compiled step (CPU state the previous
contender left behind; no page faults and no garbage collection in those calls), so a fixed
order biased every ratio against whichever contender always followed the heavy one."""

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
    one thread); rounds interleave the contenders after `warmup` untimed calls of each.

    Round r runs the contenders in the order `balanced_orders(n)[r % len(...)]`: over every
    full cycle of that design (n rounds for an even number n of contenders, 2n for an odd
    one) each contender takes every position equally often and, within a round, immediately
    follows every other contender equally often. Use a multiple of the cycle for `repeats`
    to keep that balance exact. Returns the medians in the contenders' own order."""
    names = list(contenders)
    for fn in contenders.values():
        for _ in range(warmup):
            fn()
    orders = balanced_orders(len(names))
    samples: dict[str, list[float]] = {name: [] for name in names}
    for r in range(repeats):
        for i in orders[r % len(orders)]:
            fn = contenders[names[i]]
            start = clock()
            fn()
            samples[names[i]].append(clock() - start)
    return {name: statistics.median(v) for name, v in samples.items()}


def balanced_orders(n: int) -> list[list[int]]:
    """A Williams design over contenders 0..n-1: rows are orders in which every contender
    takes each position equally often and every ordered pair (a, b), a != b, appears as
    neighbours equally often (once per n rows for even n, twice per 2n rows for odd n)."""
    if n < 1:
        return [[]]
    first, low, high = [0], 1, n - 1
    while len(first) < n:
        first.append(low)
        low += 1
        if len(first) < n:
            first.append(high)
            high -= 1
    square = [[(f + i) % n for f in first] for i in range(n)]
    return square + [row[::-1] for row in square] if n % 2 and n > 1 else square
