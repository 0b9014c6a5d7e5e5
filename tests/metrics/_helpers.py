"""Shared input generators for the metric tests."""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays


def random_probs(rng: np.random.Generator, n: int, c: int) -> tuple[np.ndarray, np.ndarray]:
    """Dirichlet(1) class probabilities with labels drawn from them."""
    p = rng.dirichlet(np.ones(c), size=n)
    y = np.array([rng.choice(c, p=row) for row in p])
    return p, y


@st.composite
def probs_and_labels(draw: st.DrawFn, max_n: int = 20, max_c: int = 6):
    """Probabilities with exact 0s and 1s, ties, a single class and single examples."""
    n = draw(st.integers(1, max_n))
    c = draw(st.integers(1, max_c))
    raw = draw(arrays(np.float64, (n, c), elements=st.sampled_from([0.0, 0.25, 0.5, 1.0, 3.0])
                      | st.floats(0, 1, allow_subnormal=False)))
    rows = raw.sum(1, keepdims=True)
    onehot = np.eye(c)[draw(arrays(np.int64, n, elements=st.integers(0, c - 1)))]
    p = np.where(rows > 0, raw / np.where(rows > 0, rows, 1), onehot)
    y = draw(arrays(np.int64, n, elements=st.integers(0, c - 1)))
    return p, y
