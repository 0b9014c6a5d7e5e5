"""Small models trained with DP-SGD from Opacus, with and without canaries, for an audit.

The audit follows the standard design: one fixed training set D, and models trained on D plus a
subset of the canaries, each canary in exactly half of the models. DP-SGD (per-example clipping,
Gaussian noise, Poisson sampling) is Opacus's `GradSampleModule`, `DPOptimizer` and
`UniformWithReplacementSampler`; the noise multiplier and the guarantee come from Opacus's
accountants. Nothing of DP-SGD is written here.

The data: two Gaussian classes in `features` dimensions, then one extra coordinate per canary
that is zero for every training example. Canary j is `canary_scale` on its own coordinate, 0
elsewhere, with label 1, so only canary j's clipped gradient and the noise move its weight: a
worst-case-like record whose presence a loss-threshold attack can see.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from varbayes.errors import VarbayesError


def _opacus():  # noqa: ANN202
    try:
        import opacus
    except ImportError:
        raise VarbayesError(
            "the DP-SGD audit needs Opacus; install it with: pip install 'varbayes[dp]'"
        ) from None
    return opacus


@dataclass(frozen=True)
class CanaryData:
    """The fixed training set, a test set from the same distribution, and the canaries."""

    x: torch.Tensor
    y: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    canary_x: torch.Tensor  # (canaries, dim)
    canary_y: torch.Tensor


def make_canary_data(n_train: int, features: int, canaries: int, canary_scale: float,
                     seed: int) -> CanaryData:
    """Two Gaussian classes (means +-1 on the first coordinate, identity covariance) with zeros
    on `canaries` extra coordinates, and the canaries on those coordinates."""
    rng = np.random.default_rng(seed)

    def sample(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        y = rng.integers(0, 2, n)
        x = rng.standard_normal((n, features + canaries))
        x[:, 0] += 2.0 * y - 1.0
        x[:, features:] = 0.0
        return torch.tensor(x, dtype=torch.float32), torch.tensor(y, dtype=torch.float32)

    x, y = sample(n_train)
    x_test, y_test = sample(1000)
    canary_x = torch.zeros(canaries, features + canaries)
    canary_x[torch.arange(canaries), features + torch.arange(canaries)] = canary_scale
    return CanaryData(x, y, x_test, y_test, canary_x, torch.ones(canaries))


def noise_multiplier(epsilon: float, delta: float, sample_rate: float, steps: int,
                     accountant: str = "prv") -> float:
    """The smallest noise multiplier Opacus finds for an (epsilon, delta) guarantee after `steps`
    DP-SGD steps at this Poisson sampling rate."""
    from opacus.accountants.utils import get_noise_multiplier

    _opacus()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(get_noise_multiplier(
            target_epsilon=epsilon, target_delta=delta, sample_rate=sample_rate, steps=steps,
            accountant=accountant,
        ))


def guaranteed_epsilon(noise: float, delta: float, sample_rate: float, steps: int,
                       accountant: str = "prv") -> float:
    """The epsilon Opacus's accountant certifies at `delta` for this noise, rate and steps
    (infinity without noise)."""
    if noise <= 0:
        return math.inf
    from opacus.accountants import create_accountant

    _opacus()
    acc = create_accountant(mechanism=accountant)
    acc.history = [(noise, sample_rate, steps)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(acc.get_epsilon(delta=delta))


def build_model(dim: int, hidden: int, init_seed: int) -> nn.Module:
    """Logistic regression (hidden = 0) or a one-hidden-layer tanh MLP, initialised from
    `init_seed` (every model of an audit starts from the same weights)."""
    with torch.random.fork_rng():
        torch.manual_seed(init_seed)
        if hidden == 0:
            model: nn.Module = nn.Linear(dim, 1)
            nn.init.zeros_(model.weight)
            nn.init.zeros_(model.bias)
            return model
        return nn.Sequential(nn.Linear(dim, hidden), nn.Tanh(), nn.Linear(hidden, 1))


def train_dpsgd(
    x: torch.Tensor, y: torch.Tensor, *, noise: float, max_grad_norm: float, sample_rate: float,
    steps: int, lr: float, hidden: int, init_seed: int, seed: int, expected_batch_size: int,
) -> nn.Module:
    """One model trained by Opacus's DP-SGD on (x, y) for `steps` steps.

    Gradients are summed (loss_reduction="sum") and the step is scaled by 1 / expected batch
    size, a constant that does not depend on whether a canary is in the data (averaging by the
    actual data size would leak a little through the step size).
    """
    opacus = _opacus()
    from opacus.optimizers import DPOptimizer
    from opacus.utils.uniform_sampler import UniformWithReplacementSampler

    gen = torch.Generator().manual_seed(seed)
    model = opacus.GradSampleModule(build_model(x.shape[1], hidden, init_seed),
                                    loss_reduction="sum")
    sgd = torch.optim.SGD(model.parameters(), lr=lr / expected_batch_size)
    optimizer = DPOptimizer(sgd, noise_multiplier=noise, max_grad_norm=max_grad_norm,
                            expected_batch_size=expected_batch_size, loss_reduction="sum",
                            generator=gen)
    # Opacus's Poisson sampler gives the index batches; indexing the tensors directly skips the
    # per-example Python calls of a DataLoader, which cost more than the tiny model's steps.
    sampler = UniformWithReplacementSampler(num_samples=len(x), sample_rate=sample_rate,
                                            generator=gen)
    done = 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Opacus warns about non-secure RNG; audits are not secure
        while done < steps:
            for idx in sampler:
                optimizer.zero_grad()
                logits = model(x[idx]).reshape(-1)
                loss = nn.functional.binary_cross_entropy_with_logits(logits, y[idx],
                                                                      reduction="sum")
                loss.backward()
                optimizer.step()
                done += 1
                if done == steps:
                    break
    return model._module


@torch.no_grad()
def example_losses(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> np.ndarray:
    """Per-example cross-entropy of the model (the loss-threshold attack's statistic)."""
    logits = model(x).reshape(-1)
    return nn.functional.binary_cross_entropy_with_logits(logits, y, reduction="none").numpy()


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    return float(((model(x).reshape(-1) > 0).float() == y).float().mean())
