"""median_times with a fake clock: interleaving, warm-up and medians."""

from __future__ import annotations

from varbayes.metrics.timing import median_times


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
    assert calls[4:] == ["a", "b"] * 3  # warm-up first, then one call of each per round
