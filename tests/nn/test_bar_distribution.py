"""The bar distribution against numerical integration and closed forms (float64)."""

from __future__ import annotations

import math

import pytest
import torch

from varbayes.nn.bar_distribution import (
    BarDistribution,
    BarPredictive,
    adaptive_borders,
    uniform_borders,
)

BORDERS = torch.tensor([-2.0, -1.0, -0.5, 0.0, 0.3, 1.0, 2.5], dtype=torch.float64)


def _bar(full_support: bool) -> tuple[BarDistribution, torch.Tensor]:
    bar = BarDistribution(BORDERS, full_support).double()
    logits = torch.randn(3, 6, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    return bar, logits


def _grid_density(bar: BarDistribution, logits: torch.Tensor, lo: float = -30, hi: float = 30,
                  n: int = 300_001) -> tuple[torch.Tensor, torch.Tensor, float]:
    ys = torch.linspace(lo, hi, n, dtype=torch.float64)
    dens = bar.log_prob(logits.unsqueeze(1).expand(-1, n, -1), ys.expand(len(logits), -1)).exp()
    return ys, dens, float(ys[1] - ys[0])


@pytest.mark.parametrize("full_support", [True, False])
def test_density_moments_and_ei_match_integration(full_support: bool) -> None:
    bar, logits = _bar(full_support)
    ys, dens, dx = _grid_density(bar, logits)
    assert torch.allclose(dens.sum(1) * dx, torch.ones(3, dtype=torch.float64), atol=1e-4)
    mean = (dens * ys).sum(1) * dx
    assert torch.allclose(bar.mean(logits), mean, atol=1e-3)
    var = (dens * (ys - mean[:, None]) ** 2).sum(1) * dx
    assert torch.allclose(bar.variance(logits), var, atol=1e-3)
    for best in (-3.0, -1.2, 0.1, 2.0, 4.0):
        ei = (dens * (ys - best).clamp_min(0)).sum(1) * dx
        assert torch.allclose(bar.expected_improvement(logits, best), ei, atol=1e-3)


def test_quantile_inverts_cdf_and_sampling_matches_mean() -> None:
    bar, logits = _bar(True)
    levels = [0.001, 0.05, 0.3, 0.5, 0.9, 0.999]
    q = bar.quantile(logits, levels)
    cdf = bar.cdf(logits.unsqueeze(1).expand(-1, len(levels), -1), q)
    assert torch.allclose(cdf, torch.tensor(levels, dtype=torch.float64).expand(3, -1), atol=1e-9)
    assert (q[:, 0] < BORDERS[1]).all() and (q[:, -1] > BORDERS[-2]).all()  # in the tails
    draws = bar.sample(logits, 200_000, torch.Generator().manual_seed(1))
    assert torch.allclose(draws.mean(1), bar.mean(logits), atol=0.02)


@pytest.mark.parametrize("q", [1.5, 0.0, [0.5, 1.0], float("nan")])
def test_quantile_levels_outside_the_open_unit_interval_are_one_line(q: object) -> None:
    from varbayes.errors import VarbayesError

    bar, logits = _bar(True)
    with pytest.raises(VarbayesError, match=r"quantile levels must lie in \(0, 1\)"):
        bar.quantile(logits, q)  # type: ignore[arg-type]


def test_loss_is_density_not_bucket_probability() -> None:
    bar = BarDistribution(uniform_borders(0.0, 1.0, 4), full_support=False).double()
    logits = torch.zeros(4, dtype=torch.float64)  # uniform on [0, 1]
    assert float(bar.nll(logits, torch.tensor(0.3, dtype=torch.float64))) == pytest.approx(0.0)
    assert math.isinf(float(bar.nll(logits, torch.tensor(1.5, dtype=torch.float64))))
    tails = BarDistribution(uniform_borders(0.0, 1.0, 4), full_support=True).double()
    assert math.isfinite(float(tails.nll(logits, torch.tensor(50.0, dtype=torch.float64))))


def test_half_normal_tail_holds_half_its_mass_within_the_bucket_width() -> None:
    bar = BarDistribution(BORDERS, True).double()
    logits = torch.full((6,), -30.0, dtype=torch.float64)
    logits[0] = 0.0  # all mass in the left tail
    w0 = BORDERS[1] - BORDERS[0]
    inside = bar.cdf(logits, BORDERS[1]) - bar.cdf(logits, BORDERS[1] - w0)
    assert float(inside) == pytest.approx(0.5, abs=1e-6)


def test_adaptive_borders_have_equal_mass() -> None:
    samples = torch.randn(100_000, generator=torch.Generator().manual_seed(0))
    b = adaptive_borders(samples, 10)
    frac = torch.stack([((samples >= b[i]) & (samples <= b[i + 1])).float().mean()
                        for i in range(10)])
    assert torch.allclose(frac, torch.full((10,), 0.1), atol=1e-3)
    assert (b[1:] > b[:-1]).all()
    ties = adaptive_borders(torch.tensor([0.0] * 50 + [1.0] * 50), 8)
    assert (ties[1:] > ties[:-1]).all()


def test_projected_normal_costs_little_with_many_buckets() -> None:
    samples = torch.randn(50_000, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    mean = torch.tensor([0.3], dtype=torch.float64)
    std = torch.tensor([0.8], dtype=torch.float64)
    y = mean + std * torch.randn(20_000, generator=torch.Generator().manual_seed(1),
                                 dtype=torch.float64)
    exact = 0.5 * (torch.log(2 * math.pi * std**2) + ((y - mean) / std) ** 2)
    gaps = []
    for k in (100, 1000):
        bar = BarDistribution(adaptive_borders(samples, k)).double()
        logits = bar.logits_from_normal(mean, std).expand(len(y), -1)
        gaps.append(float((bar.nll(logits, y) - exact).mean()))
    assert 0 < gaps[1] < gaps[0] and gaps[1] < 0.01


def test_predictive_rescaling_divides_the_density() -> None:
    bar, logits = _bar(True)
    base = BarPredictive(bar, logits)
    scaled = BarPredictive(bar, logits, loc=5.0, scale=10.0)
    y = torch.tensor([0.2, -1.0, 3.0], dtype=torch.float64)
    assert torch.allclose(scaled.log_prob(5 + 10 * y), base.log_prob(y) - math.log(10))
    assert torch.allclose(scaled.mean, 5 + 10 * base.mean)
    assert torch.allclose(scaled.quantile([0.1, 0.9]), 5 + 10 * base.quantile([0.1, 0.9]))


def test_rejects_bad_borders() -> None:
    with pytest.raises(ValueError):
        BarDistribution(torch.tensor([0.0, 1.0, 1.0, 2.0]))
