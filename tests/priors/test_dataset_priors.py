"""Dataset priors: GP draws and the exact predictive against scikit-learn, hyperpriors, MLP
prior, the user interface and input checks."""

from __future__ import annotations

import pytest
import torch
from sklearn.gaussian_process import GaussianProcessRegressor
from sklearn.gaussian_process.kernels import RBF, ConstantKernel, Matern, WhiteKernel

from varbayes.errors import VarbayesError
from varbayes.priors import (
    DatasetPrior,
    GPPrior,
    HyperGPPrior,
    MLPPrior,
    build_prior,
    gp_predictive,
    kernel_matrix,
)


def test_kernels_match_scikit_learn() -> None:
    x = torch.rand(1, 7, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    ls = torch.tensor([[0.3, 0.7]], dtype=torch.float64)
    ours = kernel_matrix(x, x, ls, 2.0, "matern52")[0].numpy()
    ref = (ConstantKernel(2.0) * Matern(length_scale=[0.3, 0.7], nu=2.5))(x[0].numpy())
    assert abs(ours - ref).max() < 1e-10
    ours = kernel_matrix(x, x, 0.4, 1.5, "rbf")[0].numpy()
    ref = (ConstantKernel(1.5) * RBF(length_scale=0.4))(x[0].numpy())
    assert abs(ours - ref).max() < 1e-10


def test_exact_predictive_matches_scikit_learn() -> None:
    g = torch.Generator().manual_seed(1)
    prior = GPPrior(0.3, 1.0, 0.01)
    x, y = prior.sample(1, 12, g)
    xq = torch.rand(1, 5, 1, generator=g)
    mean, var = prior.predictive(x, y, xq)
    kernel = ConstantKernel(1.0, "fixed") * RBF(0.3, "fixed") + WhiteKernel(0.01, "fixed")
    gpr = GaussianProcessRegressor(kernel, optimizer=None, alpha=1e-12).fit(
        x[0].double().numpy(), y[0].double().numpy())
    m_ref, s_ref = gpr.predict(xq[0].double().numpy(), return_std=True)
    assert abs(mean[0].numpy() - m_ref).max() < 1e-6
    assert abs(var[0].numpy() - s_ref**2).max() < 1e-6  # WhiteKernel: noise included


def test_empty_context_gives_the_prior_predictive() -> None:
    mean, var = gp_predictive(torch.zeros(2, 0, 1), torch.zeros(2, 0), torch.rand(2, 3, 1),
                              0.3, 1.0, 0.01)
    assert (mean == 0).all() and torch.allclose(var, torch.full((2, 3), 1.01,
                                                                dtype=torch.float64))


def test_gp_draws_have_the_kernel_covariance() -> None:
    x = torch.tensor([[[0.1], [0.2], [0.8]]]).expand(40_000, -1, -1)
    from varbayes.priors.gp import sample_gp

    y = sample_gp(x, 0.3, 1.0, 0.01, "rbf", torch.Generator().manual_seed(2)).double()
    emp = y.T @ y / len(y)
    want = kernel_matrix(x[:1].double(), x[:1].double(), 0.3, 1.0)[0] + 0.01 * torch.eye(3)
    assert torch.allclose(emp, want.double(), atol=0.03)


def test_hyperprior_means_and_mlp_prior() -> None:
    hp = HyperGPPrior(x_dim=2).sample_hyperparameters(20_000, torch.Generator().manual_seed(0))
    assert abs(float(hp["lengthscale"].mean()) - 3 / 6) < 0.01
    assert abs(float(hp["outputscale"].mean()) - 0.5 / 0.15) < 0.15
    assert hp["lengthscale"].shape == (20_000, 2)
    x, y = HyperGPPrior(x_dim=2).sample(3, 9)
    assert x.shape == (3, 9, 2) and y.shape == (3, 9)
    x, y = MLPPrior(x_dim=3).sample(4, 11)
    assert x.shape == (4, 11, 3) and y.shape == (4, 11) and torch.isfinite(y).all()
    _, labels = MLPPrior(task="classification", n_classes=3).sample(5, 50)
    assert labels.dtype == torch.int64 and set(labels.unique().tolist()) <= {0, 1, 2}


def test_describe_rebuilds_the_prior() -> None:
    for prior in (GPPrior(0.2, 1.0, 0.05, x_dim=2), HyperGPPrior(x_dim=3), MLPPrior(hidden=8)):
        again = build_prior(prior.describe())
        assert again.describe() == prior.describe()
    with pytest.raises(VarbayesError, match="unknown prior"):
        build_prior({"name": "nope"})


def test_input_checks_are_one_line_errors() -> None:
    prior = GPPrior(x_dim=2)
    with pytest.raises(VarbayesError, match="features"):
        prior.check_x(torch.rand(4, 3))
    with pytest.raises(VarbayesError, match="outside the prior's input domain"):
        prior.check_x(torch.tensor([[0.5, 1.7]]))


class Sines(DatasetPrior):
    """A user-defined prior: random-phase sines."""

    x_dim, x_low, x_high = 1, -3.0, 3.0

    def sample(self, n_datasets: int, n_points: int,
               generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.sample_x(n_datasets, n_points, generator)
        phase = torch.rand(n_datasets, 1, 1, generator=generator) * 6.28
        return x, torch.sin(x + phase)[..., 0]


def test_a_user_prior_plugs_into_the_interface() -> None:
    prior = Sines()
    x, y = prior.sample(2, 30)
    assert x.min() >= -3 and x.max() <= 3 and y.abs().max() <= 1
    assert prior.y_samples(250).shape == (250,)


def test_hyperprior_predictive_reduces_to_the_gp_when_the_hyperpriors_are_sharp() -> None:
    """Gamma hyperpriors with 0.5 % spread: the integrated predictive is the fixed GP's."""
    theta = {"noise": 0.05, "lengthscale": 0.3, "outputscale": 1.5}
    sharp = HyperGPPrior(**{k: (4e4, 4e4 / v) for k, v in theta.items()})
    g = torch.Generator().manual_seed(3)
    x, y = GPPrior(0.3, 1.5, 0.05, kernel="matern52").sample(2, 14, g)
    xc, yc, xq, yq = x[:, :8], y[:, :8], x[:, 8:], y[:, 8:]
    lp, ess = sharp.log_predictive(xc, yc, xq, yq, 256, g)
    mean, var = gp_predictive(xc, yc, xq, 0.3, 1.5, 0.05, "matern52")
    exact = -0.5 * (torch.log(2 * torch.pi * var) + (yq.double() - mean) ** 2 / var)
    assert torch.allclose(lp, exact, atol=0.02)
    assert (ess > 1).all() and (ess <= 512).all()


def test_hyperprior_predictive_is_a_normalised_density() -> None:
    prior = HyperGPPrior()
    g = torch.Generator().manual_seed(4)
    x, y = prior.sample(1, 6, g)
    grid = torch.linspace(-60, 60, 1501)
    xq = torch.full((1, len(grid), 1), 0.37)
    lp, _ = prior.log_predictive(x, y, xq, grid[None], 128, g)
    mass = float(torch.trapezoid(lp[0].exp(), grid.double()))
    assert abs(mass - 1) < 2e-3


def test_low_noise_oversampling_weights_recover_prior_expectations() -> None:
    from varbayes.priors import HyperGPPrior

    prior = HyperGPPrior()
    _, y, w = prior.sample_weighted(20_000, 2, 0.3, torch.Generator().manual_seed(0))
    assert y.shape == (20_000, 2) and bool(torch.isfinite(y).all())
    assert abs(float(w.mean()) - 1.0) < 0.03  # E_q[p/q] = 1
    assert float((w < 0.5).float().mean()) > 0.25  # the oversampled low-noise draws
    # E_p[y^2] = E[outputscale] + E[noise] = 0.5/0.15 + 1.1/0.05, recovered with the weights
    second = float((w[:, None] * y.double() ** 2).mean())
    assert abs(second - (0.5 / 0.15 + 1.1 / 0.05)) < 1.5
