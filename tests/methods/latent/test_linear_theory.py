"""The closed-form linear CVAE/HVAE against Monte Carlo ELBOs of varbayes.infer, and the
theory's optimum against fits on small exact problems."""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import Independent, Normal

from varbayes import infer
from varbayes.errors import VarbayesError
from varbayes.methods.latent.collapse_cvae import correlated_pairs, linear_programs
from varbayes.methods.latent.linear_theory import (
    LinearCVAE,
    LinearHVAE,
    fit_closed_form,
    hvae_theta,
    predicted_active,
    predicted_hvae_optimum,
    predicted_kl,
    predicted_omega,
    residual_spectrum,
    second_moment,
)


def _data(n: int = 400, dx: int = 3, dy: int = 4, seed: int = 0):  # noqa: ANN202
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, dx, generator=g, dtype=torch.float64)
    y = x @ torch.randn(dx, dy, generator=g, dtype=torch.float64) * 0.5 + torch.randn(
        n, dy, generator=g, dtype=torch.float64)
    return x, y


def test_residual_spectrum_is_the_unexplained_second_moment() -> None:
    x, y = _data()
    n = len(x)
    A, B, Cxy = x.T @ x / n, y.T @ y / n, x.T @ y / n
    E = B - Cxy.T @ torch.linalg.solve(A, Cxy)  # second implementation: regression residual
    theta = residual_spectrum(x, y).theta
    assert torch.allclose(theta, torch.linalg.eigvalsh(E).flip(0), atol=1e-6)


def test_correlated_pairs_have_the_stated_theta() -> None:
    for rho in (0.0, 0.8, 1.0):
        data = correlated_pairs(rho, n=500, dim=5)
        theta = residual_spectrum(data.x_train, data.y_train).theta
        s2 = torch.tensor(data.info["s2"], dtype=torch.float64)
        assert torch.allclose(theta, (s2 * (1 - rho**2)).sort(descending=True).values,
                              atol=1e-4)


def test_closed_form_cvae_loss_is_twice_the_negative_beta_elbo() -> None:
    x, y = _data(n=64)
    torch.manual_seed(0)
    model = LinearCVAE(3, 4, 2, (1.7,), eta_enc=0.8, eta_dec=0.6, init_scale=0.5)
    closed = float(model.loss(second_moment(x, y)).detach())
    elbo, se = infer.evaluate(infer.elbo(kl_weight=1.7, analytic_kl=True),
                              linear_programs(model).model, linear_programs(model).guide,
                              (y, x), samples=4000)
    constant = 4 * math.log(2 * math.pi * 0.6**2)
    assert abs(closed - (-2 * elbo - constant)) < 6 * 2 * se + 1e-3


def test_closed_form_hvae_loss_is_twice_the_negative_elbo() -> None:
    x, _ = _data(n=64, dx=4)
    torch.manual_seed(0)
    m = LinearHVAE(4, 3, 2, (1.0,), (1.0,), sigma1=0.4, eta_enc=1.2, eta_dec=0.7, init_scale=0.5)
    closed = float(m.loss(second_moment(x)).detach())
    W1, W2, U1, U2 = m.W1[0], m.W2[0], m.U1[0], m.U2[0]
    s2 = (0.5 * m.log_var2[0]).exp()

    def normal(mean: torch.Tensor, std: float | torch.Tensor) -> Independent:
        return Independent(Normal(mean, torch.as_tensor(std, dtype=mean.dtype).expand_as(mean)), 1)

    def guide(x_: torch.Tensor) -> None:
        z1 = infer.sample("z1", normal(x_ @ W1.T, 0.4))
        infer.sample("z2", normal(z1 @ W2.T, s2))

    def model(x_: torch.Tensor) -> None:
        z2 = infer.sample("z2", normal(torch.zeros(len(x_), 2, dtype=x_.dtype), 1.2))
        z1 = infer.sample("z1", normal(z2 @ U2.T, 0.7))
        infer.sample("x", normal(z1 @ U1.T, 0.7), obs=x_)

    with torch.no_grad():
        elbo, se = infer.evaluate(infer.elbo(), model, guide, x, samples=4000)
    constant = 4 * math.log(2 * math.pi * 0.7**2)
    assert abs(closed - (-2 * elbo - constant)) < 6 * 2 * se + 1e-3


def test_fitted_linear_cvae_reaches_the_theorems_optimum() -> None:
    data = correlated_pairs(0.5, n=300, dim=4)  # theta = s^2 * 0.75, exactly
    theta = residual_spectrum(data.x_train, data.y_train).theta
    beta = 1.0
    torch.manual_seed(0)
    model = LinearCVAE(4, 4, 4, (beta,), eta_enc=1.0, eta_dec=0.5)
    C = second_moment(data.x_train, data.y_train)
    fit_closed_form(model, C, 200)
    k = predicted_active(theta, beta, 0.5, 4)
    assert k == 2  # theta = 1.5, 0.55, 0.20, 0.075 against the threshold 0.25
    sv = model.decoder_singular_values()[0]
    assert torch.allclose(sv, predicted_omega(theta, beta, 1.0, 0.5, 4), atol=2e-3)
    kl = model.kl_per_dim(C).detach()[0].sort(descending=True).values
    assert torch.allclose(kl, predicted_kl(theta, beta, 0.5, 4), atol=2e-3)


def test_fitted_linear_hvae_matches_the_predicted_z2_optimum() -> None:
    g = torch.Generator().manual_seed(0)
    raw = torch.randn(400, 4, generator=g, dtype=torch.float64)
    raw = raw @ torch.linalg.inv(torch.linalg.cholesky(raw.T @ raw / 400)).T  # exactly white
    x = raw * torch.tensor([2.0, 1.2, 0.7, 0.3], dtype=torch.float64)  # theta = these
    theta = hvae_theta(x)
    assert torch.allclose(theta, torch.tensor([2.0, 1.2, 0.7, 0.3], dtype=torch.float64))
    torch.manual_seed(0)
    m = LinearHVAE(4, 3, 3, (1.0,), (0.4,), sigma1=0.1, eta_enc=1.0, eta_dec=0.5)
    fit_closed_form(m, second_moment(x), 300)
    opt = predicted_hvae_optimum(theta[:3], 1.0, 0.4, 0.1, 1.0, 0.5)  # z2 threshold 1.0
    assert opt.regime == "per-direction z2 collapse"
    assert [bool(w > 0) for w in opt.omega] == [True, True, False]
    assert torch.allclose(m.singular_values()[1][0], opt.omega, atol=5e-3)
    kl2 = m.kl2_per_dim(second_moment(x)).detach()[0].sort(descending=True).values
    assert kl2[1] > 0.01 and kl2[2] < 1e-3


def test_sweeps_are_independent_models_and_bad_values_are_one_line() -> None:
    x, y = _data(n=50)
    C = second_moment(x, y)
    torch.manual_seed(0)
    both = LinearCVAE(3, 4, 2, (0.5, 2.0))
    torch.manual_seed(0)
    single = LinearCVAE(3, 4, 2, (0.5,))
    with torch.no_grad():
        for p, q in zip(single.parameters(), both.parameters()):
            p.copy_(q[:1])
    assert torch.allclose(both.loss(C)[0], single.loss(C)[0])
    with pytest.raises(VarbayesError, match="betas must be > 0"):
        LinearCVAE(3, 4, 2, (0.0,))
    with pytest.raises(VarbayesError, match="one value per model"):
        LinearHVAE(3, 2, 2, (1.0,), (1.0, 2.0))
    with pytest.raises(VarbayesError, match="unknown optimiser"):
        fit_closed_form(single, C, 1, "sgd")
