"""median_times with a fake clock: interleaving, balanced order, warm-up and medians."""

from __future__ import annotations

import itertools
from collections import Counter

import pytest

from varbayes.metrics.timing import balanced_orders, median_times


def test_median_times_interleaves_and_takes_medians() -> None:
    now = [0.0]
    calls: list[str] = []
    cost = {"a": [1.0, 5.0, 2.0], "b": [3.0, 3.0, 9.0]}

    def contender(name: str):
        def fn() -> None:
            calls.append(name)
            timed = len([c for c in calls if c == name]) - 2  # after 2 warm-up calls
            if timed > 0:
                now[0] += cost[name][timed - 1]
        return fn

    times = median_times({"a": contender("a"), "b": contender("b")}, repeats=3, warmup=2,
                         clock=lambda: now[0])
    assert times == {"a": 2.0, "b": 3.0}
    assert list(times) == ["a", "b"]  # the contenders' own order, whatever order they ran in
    assert calls[:4] == ["a", "a", "b", "b"]  # warm-up first
    assert calls[4:] == ["a", "b", "b", "a", "a", "b"]  # one call of each per round, alternating


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 6, 7])
def test_balanced_orders_positions_and_neighbours(n: int) -> None:
    orders = balanced_orders(n)
    assert len(orders) == (2 * n if n % 2 and n > 1 else n)
    assert all(sorted(row) == list(range(n)) for row in orders)  # each round runs each once
    positions = Counter((i, pos) for row in orders for pos, i in enumerate(row))
    assert set(positions.values()) == {len(orders) // n}  # every contender in every position
    pairs = Counter((a, b) for row in orders for a, b in itertools.pairwise(row))
    if n > 1:
        assert set(pairs) == {(a, b) for a in range(n) for b in range(n) if a != b}
        assert len(set(pairs.values())) == 1  # every contender follows every other equally


def test_median_times_lets_no_contender_always_follow_the_same_one() -> None:
    """Five contenders as in benchmarks/vi_overhead.py: each runs right after each other one
    equally often, so a contender made slow by the one before it is no longer singled out."""
    names = ["hand", "varbayes", "pyro", "compiled", "hand compiled"]
    calls: list[str] = []
    median_times({n: (lambda n=n: calls.append(n)) for n in names}, repeats=20, warmup=0)
    followers = Counter((a, b) for r in range(20) for a, b in
                        itertools.pairwise(calls[5 * r:5 * r + 5]))
    assert followers == {(a, b): 4 for a in names for b in names if a != b}  # 2 per 10 rounds
    assert Counter(calls) == {n: 20 for n in names}


def test_median_times_measures_a_predecessor_effect_evenly() -> None:
    """A fake clock where 'c' costs 2 right after 'p' and 1 otherwise: in a fixed order
    (h, p, c) every call of c follows p and its median is 2; in the balanced orders c follows
    p in 2 of 6 rounds and, across a round boundary, in one more: median 1.5, the others 1."""
    now, last = [0.0], [""]

    def contender(name: str):
        def fn() -> None:
            now[0] += 2.0 if name == "c" and last[0] == "p" else 1.0
            last[0] = name
        return fn

    times = median_times({n: contender(n) for n in "hpc"}, repeats=6, warmup=0,
                         clock=lambda: now[0])
    assert times == {"h": 1.0, "p": 1.0, "c": 1.5}
