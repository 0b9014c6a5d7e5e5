"""Linear conditional and hierarchical VAEs with closed-form losses, and the theory's optima
(Dang, Tran, Nguyen, Ho, ICLR 2024, "Beyond Vanilla Variational Autoencoders").

Linear models make the beta-ELBO an exact function of the data's second moments: the
expectation over the reparameterised noise and over the (empirical) data distribution is
taken in closed form, so a full-batch step is the exact gradient and the trained parameters
can be compared with the predicted optimum without Monte Carlo error. `tests/` checks each
closed form against the Monte Carlo beta-ELBO of `varbayes.infer` on the same parameters.

Theory (linear CVAE): with E the second moment of the part of y that x cannot explain
linearly and theta_i its eigenvalues, the optimal decoder U1 has singular values
omega_i = sqrt(max(0, theta_i - beta eta_dec^2)) / eta_enc: direction i collapses iff
theta_i <= beta eta_dec^2.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.distributions import Independent, Normal

from varbayes.errors import VarbayesError
from varbayes.latent.kl import gaussian_kl_per_dim
from varbayes.progress import progress

EPS = 1e-9  # added to eigenvalues before inverse square roots (spec A.6)


# ---------------------------------------------------------------------------------------------
# data statistics


def drop_constant_columns(*arrays: torch.Tensor, tol: float = 1e-12) -> list[torch.Tensor]:
    """Each array without its zero-variance columns (they make the second moments singular)."""
    return [a[:, a.double().var(0, unbiased=False) > tol] for a in arrays]


@dataclass
class ResidualSpectrum:
    """The linear CVAE's data statistics (float64): E = D (I - Z^T Z) D^T, the second moment of
    the part of y that x cannot explain linearly, and its eigenvalues theta (descending)."""

    theta: torch.Tensor
    E: torch.Tensor
    Z: torch.Tensor


def residual_spectrum(x: torch.Tensor, y: torch.Tensor) -> ResidualSpectrum:
    """theta_i from uncentred second moments A = E[xx^T] = P_A Phi P_A^T, B = E[yy^T] =
    P_B Psi P_B^T, Z = E[x~ y~^T] of the whitened x~ = Phi^-1/2 P_A^T x, y~ likewise, and
    D = P_B Psi^1/2 (spec A.2). Uncentred and without biases, as the theory assumes."""
    x, y = x.double(), y.double()
    n = len(x)
    phi, p_a = torch.linalg.eigh(x.T @ x / n)
    psi, p_b = torch.linalg.eigh(y.T @ y / n)
    phi, psi = phi.clamp_min(0) + EPS, psi.clamp_min(0) + EPS
    xw = x @ p_a / phi.sqrt()
    yw = y @ p_b / psi.sqrt()
    Z = xw.T @ yw / n
    D = p_b * psi.sqrt()
    E = D @ (torch.eye(len(psi), dtype=torch.float64) - Z.T @ Z) @ D.T
    theta = torch.linalg.eigvalsh((E + E.T) / 2).flip(0).clamp_min(0)
    return ResidualSpectrum(theta, E, Z)


def predicted_omega(
    theta: torch.Tensor, beta: float, eta_enc: float, eta_dec: float, d_z: int
) -> torch.Tensor:
    """The linear CVAE theorem: singular values of the optimal U1 for the top d_z theta_i,
    omega_i = sqrt(max(0, theta_i - beta eta_dec^2)) / eta_enc."""
    return (_top(theta, d_z) - beta * eta_dec**2).clamp_min(0).sqrt() / eta_enc


def predicted_active(theta: torch.Tensor, beta: float, eta_dec: float, d_z: int) -> int:
    """#{i <= d_z : theta_i > beta eta_dec^2}, the non-collapsed directions."""
    return int((theta[:d_z] > beta * eta_dec**2).sum())


def predicted_kl(theta: torch.Tensor, beta: float, eta_dec: float, d_z: int) -> torch.Tensor:
    """The per-direction KL at the theorem's optimum, 0.5 log(theta_i / (beta eta_dec^2)) for
    the non-collapsed directions and 0 for the others (the top d_z theta_i).

    From the optimum: the encoder variance is sigma_i^2 = beta eta_dec^2 eta_enc^2 / theta_i
    and E[mu_i^2] = eta_enc^2 (1 - beta eta_dec^2 / theta_i), whose KL to N(0, eta_enc^2) is
    this (independent of eta_enc). A direction just above the threshold therefore has a tiny
    KL: counting "active" dimensions by mean KL > 0.01 misses every theta_i in
    (beta eta_dec^2, beta eta_dec^2 e^0.02].
    """
    return 0.5 * (_top(theta, d_z) / (beta * eta_dec**2)).clamp_min(1.0).log()


def _top(theta: torch.Tensor, d_z: int) -> torch.Tensor:
    """The d_z largest theta_i, padded with zeros when there are fewer."""
    top = torch.zeros(d_z, dtype=torch.float64)
    k = min(d_z, len(theta))
    top[:k] = theta[:k]
    return top


# ---------------------------------------------------------------------------------------------
# linear CVAE


class LinearCVAE(nn.Module):
    """q(z | x, y) = N(W1 x + W2 y, diag(sigma^2)), p(y | x, z) = N(U1 z + U2 x, eta_dec^2 I),
    p(z | x) = N(0, eta_enc^2 I); no biases. The closed-form loss

        L = (1/eta_dec^2) E||U1 z + U2 x - y||^2
            + beta [(E||W1 x + W2 y||^2 + tr Sigma)/eta_enc^2 - log|Sigma|
                    + d_z log eta_enc^2 - d_z]

    is twice the negative beta-ELBO per example up to a constant and depends on the data only
    through the second moment C = E[v v^T] of v = [x; y]. One module holds S independent
    models, one per entry of `betas` (a sweep trained at once): every parameter has a leading
    dimension S and `loss` returns the S losses.
    """

    def __init__(self, d_x: int, d_y: int, d_z: int, betas: tuple[float, ...] = (1.0,),
                 eta_enc: float = 1.0, eta_dec: float = 0.5, init_scale: float = 0.1) -> None:
        super().__init__()
        _check_positive(betas=betas, eta_enc=(eta_enc,), eta_dec=(eta_dec,))
        self.eta_enc, self.eta_dec = float(eta_enc), float(eta_dec)
        self.d_x, self.d_y, self.d_z = d_x, d_y, d_z
        self.register_buffer("betas", torch.tensor(betas, dtype=torch.float64))
        s = len(betas)
        self.W1 = nn.Parameter(init_scale * torch.randn(s, d_z, d_x, dtype=torch.float64))
        self.W2 = nn.Parameter(init_scale * torch.randn(s, d_z, d_y, dtype=torch.float64))
        self.U1 = nn.Parameter(init_scale * torch.randn(s, d_y, d_z, dtype=torch.float64))
        self.U2 = nn.Parameter(init_scale * torch.randn(s, d_y, d_x, dtype=torch.float64))
        self.log_var = nn.Parameter(torch.zeros(s, d_z, dtype=torch.float64))

    def loss(self, C: torch.Tensor) -> torch.Tensor:
        """The S closed-form losses for second moments C, (d, d) or one per model (S, d, d)."""
        W = torch.cat([self.W1, self.W2], 2)
        eye = torch.eye(self.d_y, dtype=C.dtype).expand(len(W), -1, -1)
        M = self.U1 @ W + torch.cat([self.U2, -eye], 2)
        var = self.log_var.exp()
        recon = _quad(M, C) + (var * (self.U1**2).sum(1)).sum(1)
        kl2 = 2 * self.kl_per_dim(C).sum(1)
        return recon / self.eta_dec**2 + self.betas * kl2

    def kl_per_dim(self, C: torch.Tensor) -> torch.Tensor:
        """(S, d_z): the mean over the data of KL(q(z_i | x, y) || p(z_i)) per dimension."""
        W = torch.cat([self.W1, self.W2], 2)
        return _kl_from_moments(_diag_quad(W, C), self.log_var, self.eta_enc)

    def decoder_singular_values(self) -> torch.Tensor:
        """(S, min(d_y, d_z)): singular values of each U1, descending (compare with omega)."""
        return torch.linalg.svdvals(self.U1.detach())

    # one member of the sweep as distributions (diagnostics, Monte Carlo cross-checks)
    def posterior(self, x: torch.Tensor, y: torch.Tensor, k: int = 0) -> Normal:
        mu = x @ self.W1[k].T + y @ self.W2[k].T
        return Normal(mu, (0.5 * self.log_var[k]).exp().expand_as(mu))

    def prior(self, x: torch.Tensor, k: int = 0) -> Normal:
        zero = x.new_zeros(len(x), self.d_z)
        return Normal(zero, torch.full_like(zero, self.eta_enc))

    def likelihood(self, z: torch.Tensor, x: torch.Tensor, k: int = 0) -> Independent:
        mean = z @ self.U1[k].T + x @ self.U2[k].T
        return Independent(Normal(mean, torch.full_like(mean, self.eta_dec)), 1)


# ---------------------------------------------------------------------------------------------
# two-level hierarchical VAE with learnable encoder variance


class LinearHVAE(nn.Module):
    """q(z1 | x) = N(W1 x, sigma1^2 I) (sigma1 fixed), q(z2 | z1) = N(W2 z1, diag(s2^2))
    (learnable), p(z1 | z2) = N(U2 z2, eta_dec^2 I), p(x | z1) = N(U1 z1, eta_dec^2 I),
    p(z2) = N(0, eta_enc^2 I). Closed-form loss, twice the negative ELBO up to constants:

        L = (1/eta_dec^2) E||U1 z1 - x||^2 + beta1 * 2 E[log q(z1|x) - log p(z1|z2)]
            + beta2 * 2 KL(q(z2|z1) || p(z2)),

    expectations over x, z1 ~ q(z1 | x) and z2 ~ q(z2 | z1); it depends on the data only
    through A = E[x x^T]. One module holds S models, one per (beta1, beta2) pair.
    """

    def __init__(self, d_x: int, d_z1: int, d_z2: int, beta1: tuple[float, ...] = (1.0,),
                 beta2: tuple[float, ...] = (1.0,), sigma1: float = 0.1, eta_enc: float = 1.0,
                 eta_dec: float = 0.5, init_scale: float = 0.1) -> None:
        super().__init__()
        if len(beta1) != len(beta2):
            raise VarbayesError(f"beta1 and beta2 need one value per model; got {len(beta1)} "
                                f"and {len(beta2)}")
        _check_positive(beta1=beta1, beta2=beta2, sigma1=(sigma1,), eta_enc=(eta_enc,),
                        eta_dec=(eta_dec,))
        self.sigma1, self.eta_enc, self.eta_dec = float(sigma1), float(eta_enc), float(eta_dec)
        self.d_x, self.d_z1, self.d_z2 = d_x, d_z1, d_z2
        self.register_buffer("beta1", torch.tensor(beta1, dtype=torch.float64))
        self.register_buffer("beta2", torch.tensor(beta2, dtype=torch.float64))
        s, f64 = len(beta1), torch.float64
        self.W1 = nn.Parameter(init_scale * torch.randn(s, d_z1, d_x, dtype=f64))
        self.W2 = nn.Parameter(init_scale * torch.randn(s, d_z2, d_z1, dtype=f64))
        self.U1 = nn.Parameter(init_scale * torch.randn(s, d_x, d_z1, dtype=f64))
        self.U2 = nn.Parameter(init_scale * torch.randn(s, d_z1, d_z2, dtype=f64))
        self.log_var2 = nn.Parameter(torch.zeros(s, d_z2, dtype=f64))

    def _z1_moment(self, A: torch.Tensor) -> torch.Tensor:
        eye = torch.eye(self.d_z1, dtype=A.dtype)
        return self.W1 @ A @ self.W1.transpose(1, 2) + self.sigma1**2 * eye

    def loss(self, A: torch.Tensor) -> torch.Tensor:
        """The S closed-form losses for the data's second moment A = E[x x^T]."""
        S1 = self._z1_moment(A)
        eye1 = torch.eye(self.d_z1, dtype=A.dtype)
        eye_x = torch.eye(self.d_x, dtype=A.dtype)
        var2 = self.log_var2.exp()
        eta2 = self.eta_dec**2
        recon = _quad(self.U1 @ self.W1 - eye_x, A) + self.sigma1**2 * (self.U1**2).sum((1, 2))
        kl1 = ((_quad(eye1 - self.U2 @ self.W2, S1) + (var2 * (self.U2**2).sum(1)).sum(1)) / eta2
               + self.d_z1 * math.log(eta2 / self.sigma1**2) - self.d_z1)
        kl2 = 2 * self.kl2_per_dim(A).sum(1)
        return recon / eta2 + self.beta1 * kl1 + self.beta2 * kl2

    def kl2_per_dim(self, A: torch.Tensor) -> torch.Tensor:
        """(S, d_z2): mean over x and z1 of KL(q(z2_i | z1) || p(z2_i)) per dimension of z2."""
        return _kl_from_moments(_diag_quad(self.W2, self._z1_moment(A)), self.log_var2,
                                self.eta_enc)

    def singular_values(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(singular values of U1, of U2), each (S, k) descending; U2's compare with omega."""
        return (torch.linalg.svdvals(self.U1.detach()), torch.linalg.svdvals(self.U2.detach()))


def fit_closed_form(
    model: nn.Module, moments: torch.Tensor, iterations: int, optimizer: str = "lbfgs",
    lr: float = 1e-2, description: str = "closed-form fit", quiet: bool = True,
) -> list[float]:
    """Minimise the summed closed-form losses, full batch; returns the loss per iteration.

    "lbfgs" (default): L-BFGS with a strong-Wolfe line search, `iterations` iterations.
    "adam": Adam with learning rate `lr` for `iterations` steps (the reference's optimiser).
    The losses are exact and deterministic, so a quasi-Newton method converges in far fewer
    iterations: directions near the collapse threshold have almost flat curvature, and
    3000 Adam steps leave them unconverged (spec A.6), which shifts the active counts.
    A plain loop rather than `varbayes.train.fit`: the loss is a function of one precomputed
    second-moment matrix, so there are no minibatches, data order or per-example work for the
    engine to manage, and its per-step bookkeeping would cost more than the step.
    """
    curve: list[float] = []
    params = list(model.parameters())
    with progress(iterations, description, disable=quiet) as bar:
        if optimizer == "adam":
            opt = torch.optim.Adam(params, lr=lr)
            for _ in range(iterations):
                opt.zero_grad(set_to_none=True)
                loss = model.loss(moments).sum()
                loss.backward()
                opt.step()
                curve.append(float(loss.detach()))
                bar.advance(1, loss=curve[-1])
            return curve
        if optimizer != "lbfgs":
            raise VarbayesError(f"unknown optimiser {optimizer!r}; valid: lbfgs, adam")
        lbfgs = torch.optim.LBFGS(params, lr=1.0, max_iter=iterations, history_size=20,
                                  line_search_fn="strong_wolfe", tolerance_grad=1e-10,
                                  tolerance_change=1e-14)

        def closure() -> torch.Tensor:
            lbfgs.zero_grad(set_to_none=True)
            loss = model.loss(moments).sum()
            loss.backward()
            return loss

        chunk = 50  # re-enter every 50 iterations to record the curve and move the bar
        for done in range(0, iterations, chunk):
            lbfgs.param_groups[0]["max_iter"] = min(chunk, iterations - done)
            curve.append(float(lbfgs.step(closure).detach()))
            bar.advance(min(chunk, iterations - done), loss=curve[-1])
    return curve


def second_moment(*columns: torch.Tensor) -> torch.Tensor:
    """E[v v^T] (float64) of v = the concatenated columns, over the rows."""
    v = torch.cat([c.double() for c in columns], 1)
    return v.T @ v / len(v)


def hvae_theta(x: torch.Tensor) -> torch.Tensor:
    """The HVAE's theta_i: singular values of the whitened data-to-data Z = E[x~ x^T], i.e.
    square roots of the eigenvalues of A = E[x x^T] (descending)."""
    x = x.double()
    return torch.linalg.eigvalsh(x.T @ x / len(x)).flip(0).clamp_min(0).sqrt()


@dataclass
class HVAEOptimum:
    """The HVAE optimum as the reference utilities give it (unverified against the paper):
    lambda (singular values for z1's decoder U1) and omega (for z2's decoder U2)."""

    lam: torch.Tensor
    omega: torch.Tensor
    regime: str


def predicted_hvae_optimum(theta: torch.Tensor, beta1: float, beta2: float, sigma1: float,
                           eta_enc: float, eta_dec: float) -> HVAEOptimum:
    """Spec A.2, the three regimes of the two-level HVAE with learnable encoder variance."""
    t = theta.double()
    c2 = (eta_dec / eta_enc) ** 2
    ratio = beta2 / beta1
    lam_a = sigma1 / (math.sqrt(beta2) * eta_dec) * (t**2 - beta2 * eta_dec**2).clamp_min(0).sqrt()
    z2_signal = sigma1**2 * t**2 / (beta2 * eta_enc**2 * eta_dec**2) - c2 * ratio
    if sigma1**2 >= ratio * eta_dec**2:
        floor = (sigma1**2 - ratio * eta_dec**2) / eta_enc**2
        omega = torch.maximum(torch.full_like(t, floor), z2_signal).sqrt()
        return HVAEOptimum(lam_a, omega, "z2 never fully collapses")
    collapsed = sigma1**2 * t**2 / (beta2 * eta_dec**2) < ratio * eta_dec**2
    lam_b = ((sigma1 / math.sqrt(beta1)) * (t - math.sqrt(beta1) * sigma1)).clamp_min(0).sqrt()
    lam = torch.where(collapsed, lam_b, lam_a)
    omega = torch.where(collapsed, torch.zeros_like(t), z2_signal.clamp_min(0).sqrt())
    return HVAEOptimum(lam, omega, "per-direction z2 collapse")


# ---------------------------------------------------------------------------------------------


def _quad(M: torch.Tensor, C: torch.Tensor) -> torch.Tensor:
    """tr(M C M^T) = E||M v||^2 for the second moment C = E[v v^T] (batched over M's first
    dim: returns one value per model)."""
    return ((M @ C) * M).sum((-2, -1))


def _diag_quad(M: torch.Tensor, C: torch.Tensor) -> torch.Tensor:
    """diag(M C M^T) = E[(M v)_i^2] per row i."""
    return ((M @ C) * M).sum(-1)


def _kl_from_moments(mean_sq: torch.Tensor, log_var: torch.Tensor, eta: float) -> torch.Tensor:
    """Mean over the data of KL(N(mu_i, s_i^2) || N(0, eta^2)): the KL is linear in mu_i^2,
    so the mean is the core per-dimension KL at mu_i = sqrt(E[mu_i^2])."""
    mu = mean_sq.clamp_min(0).sqrt()
    return gaussian_kl_per_dim(mu, log_var.exp().expand_as(mu), 0.0, eta**2)


def _check_positive(**values: tuple[float, ...]) -> None:
    for name, vs in values.items():
        for v in vs:
            if not v > 0:
                raise VarbayesError(f"{name} must be > 0; got {v}")
