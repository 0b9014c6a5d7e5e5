"""DP-SGD training through Opacus for the audit: the guarantee, the canary's visibility,
reproducibility and Poisson sampling below rate 1."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("opacus")

from varbayes.privacy import dpsgd  # noqa: E402


@pytest.fixture(scope="module")
def data() -> dpsgd.CanaryData:
    return dpsgd.make_canary_data(n_train=100, features=5, canaries=2, canary_scale=10.0, seed=0)


def _train(data: dpsgd.CanaryData, include: bool, noise: float, seed: int = 0,
           sample_rate: float = 1.0, steps: int = 20) -> torch.nn.Module:
    x = torch.cat([data.x, data.canary_x[:1]]) if include else data.x
    y = torch.cat([data.y, data.canary_y[:1]]) if include else data.y
    return dpsgd.train_dpsgd(x, y, noise=noise, max_grad_norm=1.0, sample_rate=sample_rate,
                             steps=steps, lr=1.0, hidden=0, init_seed=0, seed=seed,
                             expected_batch_size=max(1, round(sample_rate * 100)))


def test_noise_multiplier_meets_the_target() -> None:
    noise = dpsgd.noise_multiplier(4.0, 1e-5, 1.0, 30, "rdp")
    eps = dpsgd.guaranteed_epsilon(noise, 1e-5, 1.0, 30, "rdp")
    assert 3.9 <= eps <= 4.0
    assert dpsgd.guaranteed_epsilon(0.0, 1e-5, 1.0, 30) == float("inf")


def test_canary_is_visible_without_noise_and_data_are_fitted(data: dpsgd.CanaryData) -> None:
    with_c, without = _train(data, True, 0.0), _train(data, False, 0.0)
    loss_in = dpsgd.example_losses(with_c, data.canary_x, data.canary_y)
    loss_out = dpsgd.example_losses(without, data.canary_x, data.canary_y)
    assert loss_in[0] < 0.5 * loss_out[0]  # the included canary is fitted
    # the absent canary's own weight never moves: only its record's gradient could move it
    assert with_c.weight[0, 6].item() == 0.0 and without.weight[0, 6].item() == 0.0
    assert with_c.weight[0, 5].item() > 0.0 and without.weight[0, 5].item() == 0.0
    assert dpsgd.accuracy(without, data.x_test, data.y_test) > 0.75


def test_training_is_reproducible_and_noise_matters(data: dpsgd.CanaryData) -> None:
    a, b, c = _train(data, True, 3.0, seed=1), _train(data, True, 3.0, seed=1), _train(
        data, True, 3.0, seed=2)
    wa, wb, wc = (torch.cat([p.flatten() for p in m.parameters()]) for m in (a, b, c))
    assert torch.equal(wa, wb) and not torch.equal(wa, wc)


def test_poisson_sampling_below_rate_one(data: dpsgd.CanaryData) -> None:
    model = _train(data, True, 1.0, sample_rate=0.05, steps=40)
    losses = dpsgd.example_losses(model, data.canary_x, data.canary_y)
    assert np.all(np.isfinite(losses))
