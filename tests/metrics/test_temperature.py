"""Temperature scaling: the fitted T against a closed form and against scipy's bounded minimiser."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.optimize import minimize_scalar

from varbayes.errors import VarbayesError
from varbayes.metrics import accuracy, fit_temperature, nll, temper

from ._helpers import random_probs


def test_binary_closed_form() -> None:
    """Every row (q, 1 - q) with a fraction a of labels on class 0: the NLL-optimal tempered
    confidence is a, so T = logit(q) / logit(a)."""
    q, a, n = 0.9, 0.7, 1000
    p = torch.tensor([[q, 1 - q]] * n, dtype=torch.float64)
    y = torch.tensor([0] * int(a * n) + [1] * (n - int(a * n)))
    t = fit_temperature(p, y)
    want = math.log(q / (1 - q)) / math.log(a / (1 - a))
    assert t == pytest.approx(want, rel=1e-9)
    assert float(temper(p, t)[0, 0]) == pytest.approx(a, rel=1e-9)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_scipy_minimiser(seed: int) -> None:
    rng = np.random.default_rng(seed)
    p, _ = random_probs(rng, 400, 5)
    # labels from a flatter distribution than p: the fit must flatten (T > 1)
    flat = 0.5 * p + 0.5 / 5
    y = np.array([rng.choice(5, p=row) for row in flat])
    z = np.log(np.clip(p, 1e-12, None))

    def mean_nll(log_t: float) -> float:
        s = z / math.exp(log_t)
        s = s - s.max(1, keepdims=True)
        return float(np.mean(np.log(np.exp(s).sum(1)) - s[np.arange(len(y)), y]))

    ref = math.exp(minimize_scalar(mean_nll, bounds=(math.log(0.05), math.log(20)),
                                   method="bounded", options={"xatol": 1e-10}).x)
    t = fit_temperature(p, y)
    assert t == pytest.approx(ref, rel=1e-4)
    assert t > 1
    assert nll(temper(p, t), y) <= min(nll(p, y), nll(temper(p, 1.1 * t), y),
                                       nll(temper(p, t / 1.1), y))


def test_temper_identity_argmax_and_rows() -> None:
    rng = np.random.default_rng(3)
    p, y = random_probs(rng, 50, 4)
    assert torch.allclose(temper(p, 1.0), torch.as_tensor(p), atol=1e-12)
    for t in (0.3, 2.5):
        pt = temper(p, t)
        assert torch.allclose(pt.sum(1), torch.ones(50, dtype=torch.float64))
        assert accuracy(pt, y) == accuracy(p, y)


def test_bounds_and_errors() -> None:
    p = torch.tensor([[0.6, 0.4]] * 10, dtype=torch.float64)
    assert fit_temperature(p, torch.zeros(10, dtype=torch.int64)) == 0.05  # always right: sharpen
    assert fit_temperature(p, torch.ones(10, dtype=torch.int64), bounds=(0.5, 4.0)) == 4.0
    with pytest.raises(VarbayesError):
        temper(p, 0.0)
    with pytest.raises(VarbayesError):
        fit_temperature(p, torch.zeros(10, dtype=torch.int64), bounds=(2.0, 1.0))
