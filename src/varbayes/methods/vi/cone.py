"""The noisy cone (Becker et al., PLDI 2024, Table 4): five objectives, exact artifact settings.

Model: x, y ~ N(0, 10^2), r = x^2 + y^2, z ~ N(r, sd = 0.1 + r/100), z = 5 observed. A naive
mean-field guide is trained with the ELBO and IWELBO(5); a guide with an auxiliary angle
u ~ U(0, 1) (x, y around the circle of radius sqrt(5)) with HVI, IWHVI(5) and DIWHVI(5, 5),
where the auxiliary is marginalised with its own prior as proposal. Plain gradient ascent with
step 1e-3 (SGD on the negated objective), float64; evaluation averages the objective over 5000
fresh samples. The oracle log p(z = 5) is a 1-D integral over r ~ Exponential(mean 200).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.distributions import Normal, Uniform

from varbayes import infer
from varbayes.errors import one_of
from varbayes.train import TrainConfig

Z_OBS = 5.0
PAPER = {"elbo": -8.08, "iwelbo": -7.79, "hvi": -9.75, "iwhvi": -8.18, "diwhvi": -7.33}
PYRO = {"elbo": -8.08, "iwelbo": -7.75}
INTERVALS = {"elbo": (-8.25, -7.90), "iwelbo": (-7.95, -7.60), "hvi": (-9.95, -9.55),
             "iwhvi": (-8.35, -8.00), "diwhvi": (-7.50, -7.15)}
LABELS = {"elbo": "ELBO", "iwelbo": "IWELBO(5)", "hvi": "HVI", "iwhvi": "IWHVI(5)",
          "diwhvi": "DIWHVI(5,5)"}
OBJECTIVES = tuple(PAPER)


def model() -> None:
    """The cone: the observation z = 5 lies on a sharp ridge x^2 + y^2 ~ 5."""
    x = infer.sample("x", Normal(_t(0.0), _t(10.0), validate_args=False))
    y = infer.sample("y", Normal(_t(0.0), _t(10.0), validate_args=False))
    r = x**2 + y**2
    infer.sample("z", Normal(r, 0.1 + r / 100.0, validate_args=False), obs=_t(Z_OBS))


class NaiveGuide(nn.Module):
    """x ~ N(mu1, exp(s1)), y ~ N(mu2, exp(s2)); phi = (mu1, mu2, s1, s2) per replicate.

    `replicates` independent copies of the guide train side by side (a plate of size R: each
    has its own parameters and random numbers, so R replicates are R independent runs).
    """

    def __init__(self, phi: tuple[float, ...], replicates: int = 1) -> None:
        super().__init__()
        start = torch.tensor(phi, dtype=torch.float64)
        self.phi = nn.Parameter(start.expand(replicates, len(phi)).clone())

    def forward(self) -> None:
        mu1, mu2, s1, s2 = self.phi.unbind(-1)
        infer.sample("x", Normal(mu1, s1.exp(), validate_args=False))
        infer.sample("y", Normal(mu2, s2.exp(), validate_args=False))


class AngleGuide(nn.Module):
    """u ~ U(0, 1), theta = 2 pi u, x ~ N(sqrt5 cos theta, exp(s1)), y ~ N(sqrt5 sin theta,
    exp(s2)); phi = (s1, s2) per replicate. The auxiliary u is what the HVI family
    marginalises."""

    def __init__(self, phi: tuple[float, ...] = (0.0, 0.0), replicates: int = 1) -> None:
        super().__init__()
        start = torch.tensor(phi, dtype=torch.float64)
        self.phi = nn.Parameter(start.expand(replicates, len(phi)).clone())

    def forward(self) -> None:
        s1, s2 = self.phi.unbind(-1)
        zeros = torch.zeros_like(s1.detach())
        u = infer.sample("u", Uniform(zeros, zeros + 1.0, validate_args=False))
        theta = 2 * math.pi * u
        radius = math.sqrt(Z_OBS)
        infer.sample("x", Normal(radius * torch.cos(theta), s1.exp(), validate_args=False))
        infer.sample("y", Normal(radius * torch.sin(theta), s2.exp(), validate_args=False))


@dataclass(frozen=True)
class Setting:
    """One row of the table: the objective, its guide and start, gradient samples per step."""

    objective: Any
    guide: str
    phi0: tuple[float, ...]
    samples: int


def setting(name: str, k: int = 5, n: int = 5) -> Setting:
    """The artifact's settings for objective `name` (K particles, N auxiliary samples)."""
    if name == "elbo":
        return Setting(infer.elbo(), "naive", (0.0, 0.0, 1.0, 1.0), 64)
    if name == "iwelbo":
        return Setting(infer.iwelbo(k), "naive", (3.0, 0.0, 1.0, 1.0), 1)
    if name == "hvi":
        return Setting(infer.hvi("u"), "angle", (0.0, 0.0), 64)
    if name == "iwhvi":
        return Setting(infer.iwhvi("u", n), "angle", (0.0, 0.0), 64)
    if name == "diwhvi":
        return Setting(infer.diwhvi("u", k, n), "angle", (0.0, 0.0), 64)
    raise one_of("cone objective", name, list(OBJECTIVES))


def make_guide(s: Setting, replicates: int = 1) -> nn.Module:
    return (NaiveGuide if s.guide == "naive" else AngleGuide)(s.phi0, replicates)


@dataclass
class ConeResult:
    """A trained objective: per-replicate evaluation means and standard errors, the values
    before training, final parameters, seconds, and the training curve (objective per
    block of steps, averaged over replicates)."""

    objective: str
    values: list[float]
    stderrs: list[float]
    initial: list[float]
    phi: list[list[float]]
    seconds: float
    curve: list[float]
    guide: nn.Module

    @property
    def value(self) -> float:
        return sum(self.values) / len(self.values)


def run_cone(name: str, *, steps: int = 5000, samples: int | None = None,
             eval_samples: int = 5000, replicates: int = 1, seed: int = 0, k: int = 5,
             n: int = 5, quiet: bool = True) -> ConeResult:
    """Train objective `name` from its artifact start with plain gradient ascent (step 1e-3)
    in float64, in `replicates` independent copies, and evaluate each on fresh samples."""
    s = setting(name, k, n)
    torch.manual_seed(seed)
    guide = make_guide(s, replicates)
    per_step = s.samples if samples is None else min(samples, s.samples)
    initial = evaluate_at(s.objective, guide, eval_samples)[0]
    # the loss averages over the R replicates; lr * R gives each replicate the step 1e-3
    cfg = TrainConfig(epochs=steps, optimizer="sgd", momentum=0.0, lr=1e-3 * replicates,
                      lr_schedule="constant", val_fraction=0.0, checkpoint_every=0)
    _, result = infer.fit(s.objective, model, guide, cfg=cfg, samples=per_step, plates=1,
                          seed=seed, quiet=quiet, description=f"cone {name}")
    values, stderrs = evaluate_at(s.objective, guide, eval_samples)
    history = [-h["train_loss"] for h in result.history]
    block = max(len(history) // 50, 1)
    curve = [sum(history[i:i + block]) / len(history[i:i + block])
             for i in range(0, len(history), block)]
    return ConeResult(name, values, stderrs, initial, guide.phi.detach().tolist(),
                      result.train_seconds, curve, guide)


def evaluate_at(objective: Any, guide: nn.Module,
                samples: int) -> tuple[list[float], list[float]]:
    """Per-replicate mean and standard error of an objective at the guide's parameters."""
    with torch.no_grad():
        v = infer.estimate(objective, model, guide, plates=1, samples=samples).value
    mean = v.mean(0)
    se = v.std(0) / math.sqrt(v.shape[0])
    return mean.tolist(), se.tolist()


def oracle_log_evidence(z: float = Z_OBS) -> float:
    """log p(z) by adaptive quadrature over r = x^2 + y^2 ~ Exponential(mean 200):
    p(z) = int_0^inf (1/200) e^{-r/200} N(z; r, (0.1 + r/100)^2) dr."""
    from scipy import integrate

    def density(r: float) -> float:
        sd = 0.1 + r / 100.0
        return math.exp(-r / 200.0) / 200.0 * math.exp(-0.5 * ((z - r) / sd) ** 2) / (
            sd * math.sqrt(2 * math.pi))

    peak = [max(z - 3, 0.0), z, z + 3]
    head, _ = integrate.quad(density, 0.0, z + 50.0, points=peak, limit=500,
                             epsabs=0.0, epsrel=1e-12)
    tail, _ = integrate.quad(density, z + 50.0, math.inf, limit=500)
    return math.log(head + tail)


def _t(v: float) -> torch.Tensor:
    return torch.tensor(v, dtype=torch.float64)
