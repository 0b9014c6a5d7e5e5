"""Sparse subspaces for SSVI: the random initial subspace, removal criteria, and the drop/grow
update of the active set (spec sections 2.4-2.7 and 3).

- `sparsify(model, density)`: bayesianize `model` if it has no mean-field layers, then keep
  a uniformly random `density` of each layer's weights (all layers at the same density,
  except those named in `dense_layers`), stored compactly (`varbayes.nn.sparse`).
- `SubspaceSchedule`: every `update_every` iterations t until T_end = floor(t_end_frac * T),
  drop the fraction (alpha/2)(1 + cos(pi t / T_end)) of each layer's active weights with the
  lowest removal score and grow as many by the largest |dL/dmu| (dense, including the
  coordinates just dropped); grown means are 0 and grown rho the mean rho of the layer's kept
  coordinates; optimiser state of every coordinate whose status changed is zeroed.
- `removal_scores`: |mu|, |mu|/sigma, E|theta|, SNR(|theta|), E exp(lambda |theta|) and its SNR
  for theta ~ N(mu, sigma^2), computed in float64. SNR(|theta|) = g(|mu|/sigma) with g strictly
  increasing (spec section 3), so `snr_abs` ranks by r = |mu|/sigma itself, exactly as `snr`,
  and never evaluates the cancelling formula; `snr_abs_value` gives g(r) stably.
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from varbayes.errors import VarbayesError, one_of
from varbayes.nn.bayesianize import bayesianize
from varbayes.nn.meanfield import MeanFieldLayer, bayesian_layers, inverse_sigma
from varbayes.nn.sparse import COMPUTES, SparseWeights, is_sparse, to_sparse

CRITERIA = ("snr_abs", "snr", "abs_mean", "e_abs", "e_exp_abs", "snr_exp_abs", "random")
GROW = ("grad", "random")
GROW_SIGMA = ("layer_mean", "eps")
MU_INITS = ("kaiming-density", "normal-0.01", "keep")
SIGMA_INITS = ("keep", "reference")
EPS_SIGMA = 1e-6  # grow_sigma="eps"
_SQRT2 = math.sqrt(2.0)
_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_LOGNORMAL_R = 8.0  # beyond |mu|/sigma = 8 the fold of |theta| is below float64 resolution


# ---------------------------------------------------------------------------------------------
# the initial subspace


def sparsify(
    model: nn.Module,
    density: float,
    *,
    dense_layers: Iterable[str] | str = (),
    seed: int = 0,
    mu_init: str = "kaiming-density",
    sigma_init: str = "keep",
    compute: str = "auto",
    **bayes: Any,
) -> nn.Module:
    """Keep a random `density` of every mean-field layer's weights, in place; returns `model`.

    A model without mean-field layers is first bayesianized (`bayes` goes to `bayesianize`:
    prior, init_sigma, exclude, noise...). Each layer not matched by `dense_layers` (qualified
    module names or fnmatch patterns) keeps k = n - floor((1 - density) n) coordinates drawn
    uniformly without replacement from a generator seeded by `seed` (identical on every DDP
    rank). `mu_init`: "kaiming-density" draws the kept means from N(0, 2 / (d fan_in)) so the
    pre-activation scale does not depend on d, and sets the layer's biases to 0 (spec 2.4),
    "normal-0.01" from N(0, 0.01^2) (the reference
    code), "keep" keeps the current means. `sigma_init`: "keep" keeps the layer's sigma,
    "reference" draws sigma ~ |N(6e-4, (5e-4)^2)| per weight. Layers left dense keep their
    means (unless mu_init is "normal-0.01") and sigmas (unless sigma_init is "reference"), so
    density 1 with the default initialisation leaves the model untouched: plain mean-field VI.
    """
    if not isinstance(model, nn.Module):
        raise VarbayesError(f"sparsify expects a torch.nn.Module; got {type(model).__name__}")
    if not (isinstance(density, (int, float)) and 0 < density <= 1):
        raise VarbayesError(f"density must be in (0, 1]; got {density!r}")
    if mu_init not in MU_INITS:
        raise one_of("mu_init", mu_init, MU_INITS)
    if sigma_init not in SIGMA_INITS:
        raise one_of("sigma_init", sigma_init, SIGMA_INITS)
    if compute not in COMPUTES:
        raise one_of("compute", compute, COMPUTES)
    if not bayesian_layers(model):
        model = bayesianize(model, **bayes)
        if not bayesian_layers(model):
            raise VarbayesError("sparsify found no nn.Linear, nn.Conv1d or nn.Conv2d layer to "
                                "make Bayesian and sparse in the model")
    elif bayes:
        raise VarbayesError(f"the model is already Bayesian; bayesianize settings "
                            f"{sorted(bayes)} have no effect")
    patterns = (dense_layers,) if isinstance(dense_layers, str) else tuple(dense_layers)
    named = [(name, m) for name, m in model.named_modules() if isinstance(m, MeanFieldLayer)]
    for p in patterns:
        if not any(_matches(name, p) for name, _ in named):
            valid = ", ".join(name for name, _ in named) or "(none)"
            raise VarbayesError(f"dense_layers pattern {p!r} matches no Bayesian layer; "
                                f"layers: {valid}")
    gen = torch.Generator().manual_seed(int(seed))
    for name, layer in named:
        if is_sparse(layer):
            continue
        if density < 1 and not any(_matches(name, p) for p in patterns):
            n = layer.weight_mu.numel()
            k = n - math.floor((1 - density) * n)
            index = torch.randperm(n, generator=gen)[:k].sort().values
            to_sparse(layer, index, compute)
            _initialise(layer, mu_init, sigma_init, gen)
        else:  # a dense layer keeps its means unless the reference initialisation is asked
            _initialise(layer, "keep" if mu_init == "kaiming-density" else mu_init,
                        sigma_init, gen)
    return model


@torch.no_grad()
def _initialise(layer: Any, mu_init: str, sigma_init: str, gen: torch.Generator) -> None:
    """Draw the stored means / sigmas (length k for a sparse layer, every weight otherwise)."""
    k = layer.weight_mu.numel()
    if mu_init != "keep":
        fan_in = layer.n_weights // layer.weight_mu.shape[0] if not is_sparse(layer) \
            else layer.n_weights // layer.weight_shape[0]
        density = layer.n_active / layer.n_weights
        std = math.sqrt(2.0 / (density * fan_in)) if mu_init == "kaiming-density" else 0.01
        layer.weight_mu.copy_((torch.randn(k, generator=gen) * std).view_as(layer.weight_mu))
    if mu_init == "kaiming-density":  # the spec's small-scale initialisation: biases 0
        bias = layer.bias_mu if layer.bayesian_bias else layer.bias
        if bias is not None:
            bias.zero_()
    if sigma_init == "reference":
        sigma = (torch.randn(k, generator=gen, dtype=torch.float64) * 5e-4 + 6e-4).abs()
        sigma = sigma.clamp_min(1e-12)  # the reference redraws an infinite rho; never 0 here
        rho = torch.log(sigma) if layer.sigma_param == "exp" else torch.log(torch.expm1(sigma))
        layer.weight_rho.copy_(rho.to(layer.weight_rho.dtype).view_as(layer.weight_rho))


def _matches(name: str, pattern: str) -> bool:
    parts = name.split(".")
    return bool(name) and any(fnmatch.fnmatchcase(".".join(parts[:i]), pattern)
                              for i in range(1, len(parts) + 1))


def sparse_layers(model: nn.Module) -> list[Any]:
    """The sparse mean-field layers of `model`, each once, in module order."""
    return [m for m in bayesian_layers(model) if is_sparse(m)]


def density_report(model: nn.Module) -> dict[str, Any]:
    """Active and total weights per Bayesian layer and overall (dense layers count fully)."""
    layers = {}
    for name, m in model.named_modules():
        if isinstance(m, MeanFieldLayer):
            layers[name or type(m).__name__] = {"active": m.n_active, "total": m.n_weights}
    active = sum(v["active"] for v in layers.values())
    total = sum(v["total"] for v in layers.values())
    return {"density": active / total if total else 1.0, "active": active, "total": total,
            "layers": layers}


# ---------------------------------------------------------------------------------------------
# removal criteria


def removal_scores(mu: torch.Tensor, sigma: torch.Tensor, criterion: str = "snr_abs",
                   lambda_exp: float = 1.0) -> torch.Tensor:
    """Removal score of each active coordinate (higher = keep), float64; the lowest go.

    `random` is not a statistic and is handled by `SubspaceSchedule` with its generator.
    """
    if criterion not in CRITERIA or criterion == "random":
        raise one_of("removal criterion", criterion, CRITERIA[:-1])
    mu, sigma = mu.detach().double(), sigma.detach().double()
    if criterion == "abs_mean":
        return mu.abs()
    if criterion in ("snr", "snr_abs"):
        return mu.abs() / sigma  # SNR(|theta|) = g(|mu|/sigma), g increasing: same ranking
    if criterion == "e_abs":
        return expected_abs(mu, sigma)
    m1 = exp_abs_moment(mu, sigma, lambda_exp)
    if criterion == "e_exp_abs":
        return m1
    return snr_exp_abs(mu, sigma, lambda_exp)


def expected_abs(mu: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """E|theta| of the folded normal: mu erf(mu / (sigma sqrt 2)) + sigma sqrt(2/pi)
    exp(-mu^2 / (2 sigma^2))."""
    return (mu * torch.erf(mu / (sigma * _SQRT2))
            + sigma * _SQRT_2_OVER_PI * torch.exp(-0.5 * (mu / sigma) ** 2))


def snr_abs_value(r: torch.Tensor) -> torch.Tensor:
    """g(r) = SNR(|theta|) for r = |mu|/sigma, float64: the closed form for r <= 8 and r above
    (where the closed form cancels; |g(r) - r| < 1e-13 there)."""
    r = r.double().abs()
    small = r <= _LOGNORMAL_R
    rs = torch.where(small, r, torch.zeros_like(r))
    h = rs * torch.erf(rs / _SQRT2) + _SQRT_2_OVER_PI * torch.exp(-0.5 * rs * rs)
    g = h / torch.sqrt(1.0 + rs * rs - h * h)
    return torch.where(small, g, r)


def exp_abs_moment(mu: torch.Tensor, sigma: torch.Tensor, lam: float) -> torch.Tensor:
    """M(lambda) = E exp(lambda |theta|) = exp(l^2 s^2/2 + l mu) Phi(mu/s + l s)
    + exp(l^2 s^2/2 - l mu) Phi(-mu/s + l s)."""
    a = 0.5 * (lam * sigma) ** 2
    z = mu / sigma
    return (torch.exp(a + lam * mu) * torch.special.ndtr(z + lam * sigma)
            + torch.exp(a - lam * mu) * torch.special.ndtr(-z + lam * sigma))


def snr_exp_abs(mu: torch.Tensor, sigma: torch.Tensor, lam: float) -> torch.Tensor:
    """SNR(exp(lambda |theta|)) = M(l) / sqrt(M(2l) - M(l)^2).

    For |mu|/sigma > 8 the fold is negligible and exp(lambda |theta|) is log-normal, whose SNR
    1 / sqrt(expm1(l^2 s^2)) has no cancellation; below, the closed form in float64 (its
    variance is floored at the smallest normal number, so the score stays finite).
    """
    r = (mu / sigma).abs()
    m1 = exp_abs_moment(mu, sigma, lam)
    var = (exp_abs_moment(mu, sigma, 2 * lam) - m1 * m1).clamp_min(torch.finfo(mu.dtype).tiny)
    lognormal = 1.0 / torch.sqrt(torch.expm1((lam * sigma) ** 2).clamp_min(
        torch.finfo(mu.dtype).tiny))
    return torch.where(r > _LOGNORMAL_R, lognormal, m1 / torch.sqrt(var))


# ---------------------------------------------------------------------------------------------
# the schedule and one subspace update


@dataclass(frozen=True)
class SubspaceSchedule:
    """When and how the active set changes (spec 2.5-2.7); `mask_updates=False` freezes the
    initial random subspace (the static-mask baseline)."""

    update_every: int = 25
    drop_alpha: float = 0.3
    t_end_frac: float = 0.75
    drop_criterion: str = "snr_abs"
    lambda_exp: float = 1.0
    grow_criterion: str = "grad"
    grow_sigma: str = "layer_mean"
    grow_mean_grad: bool = False
    mask_updates: bool = True

    def __post_init__(self) -> None:
        if not (isinstance(self.update_every, int) and self.update_every >= 1):
            raise VarbayesError(f"update_every must be an integer >= 1; got {self.update_every!r}")
        if not 0 <= self.drop_alpha <= 1:
            raise VarbayesError(f"drop_alpha must be in [0, 1]; got {self.drop_alpha}")
        if not 0 < self.t_end_frac <= 1:
            raise VarbayesError(f"t_end_frac must be in (0, 1]; got {self.t_end_frac}")
        if self.drop_criterion not in CRITERIA:
            raise one_of("drop_criterion", self.drop_criterion, CRITERIA)
        if self.grow_criterion not in GROW:
            raise one_of("grow_criterion", self.grow_criterion, GROW)
        if self.grow_sigma not in GROW_SIGMA:
            raise one_of("grow_sigma", self.grow_sigma, GROW_SIGMA)
        if not (math.isfinite(self.lambda_exp) and self.lambda_exp > 0):
            raise VarbayesError(f"lambda_exp must be > 0; got {self.lambda_exp}")

    def t_end(self, total_steps: int) -> int:
        """T_end = floor(t_end_frac * T): no topology change from here on."""
        return math.floor(self.t_end_frac * total_steps)

    def is_update(self, t: int, total_steps: int) -> bool:
        """Whether iteration t (from 1) is a subspace update: t mod delta = 0 and t < T_end."""
        return self.mask_updates and t % self.update_every == 0 and t < self.t_end(total_steps)

    def n_updates(self, total_steps: int) -> int:
        """#{t in 1..T : t mod delta = 0, t < T_end}."""
        if not self.mask_updates:
            return 0
        return max(self.t_end(total_steps) - 1, 0) // self.update_every

    def drop_fraction(self, t: int, total_steps: int) -> float:
        """f(t) = (alpha / 2)(1 + cos(pi t / T_end))."""
        t_end = max(self.t_end(total_steps), 1)
        return 0.5 * self.drop_alpha * (1.0 + math.cos(math.pi * t / t_end))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class LayerUpdate:
    """What one update did to one layer (for logs and the structural checks)."""

    active: int
    n_drop: int
    regrown: int  # dropped and grown back at once (they keep values and optimiser state)
    changed: int  # coordinates that left (= coordinates that entered)
    iou_abs_mean: float  # IoU of the drop set with |mu|'s drop set (the reference logs it)
    checks: bool  # S4/S5 held: new mu 0, new rho as specified, their optimiser state 0


def update_layer(
    layer: SparseWeights,
    fraction: float,
    schedule: SubspaceSchedule,
    *,
    grad: torch.Tensor | None,
    optimizer: torch.optim.Optimizer | None,
    generator: torch.Generator | None = None,
) -> LayerUpdate:
    """Drop floor(k f) active coordinates of `layer` and grow as many (spec 2.5 step 4).

    `grad` is the dense dL/d(effective mean) of this iteration (needed for gradient growth);
    at the active coordinates the parameter's own gradient is used, so their score includes
    the KL term while inactive coordinates get none. Values and optimiser state move with
    their coordinates; new coordinates start at mu = 0, rho per `grow_sigma`, zero state.
    """
    k = layer.n_active
    n_drop = math.floor(k * fraction)
    if n_drop == 0:
        return LayerUpdate(k, 0, 0, 0, 1.0, True)
    mu, rho = layer.weight_mu.detach(), layer.weight_rho.detach()
    if schedule.drop_criterion == "random":
        scores = torch.rand(k, generator=generator, dtype=torch.float64).to(mu.device)
    else:
        scores = removal_scores(mu, layer.sigma_of(rho), schedule.drop_criterion,
                                schedule.lambda_exp)
        if bool(torch.isnan(scores).any()):
            raise VarbayesError(f"removal criterion {schedule.drop_criterion} gave NaN scores "
                                f"for {type(layer).__name__}; its parameters are not finite")
    order = torch.sort(scores, stable=True).indices  # ties: lower flat index dropped first
    drop_slots, keep_slots = order[:n_drop], order[n_drop:]
    iou = _iou(drop_slots, torch.sort(mu.abs(), stable=True).indices[:n_drop], k)

    old_index = layer.weight_index
    if schedule.grow_criterion == "random":
        g = torch.rand(layer.n_weights, generator=generator, dtype=torch.float64)
        g = g.to(mu.device)
    else:
        if grad is None:
            raise VarbayesError("gradient growth needs the dense mean gradient of this "
                                "iteration (keep_mean_grad was not set)")
        g = grad.detach().reshape(-1).abs().double().clone()
        if layer.weight_mu.grad is not None:
            g[old_index] = layer.weight_mu.grad.detach().abs().double()
    g[old_index[keep_slots]] = -math.inf  # grow among coordinates not kept
    grown = torch.topk(g, n_drop, sorted=False).indices
    new_index = torch.cat([old_index[keep_slots], grown]).sort().values

    # where each new position's values come from: its old slot, or -1 for a new coordinate
    pos = torch.searchsorted(old_index, new_index).clamp_max(k - 1)
    source = torch.where(old_index[pos] == new_index, pos, torch.full_like(pos, -1))
    is_new = source < 0
    changed = int(is_new.sum())
    if schedule.grow_sigma == "layer_mean":
        rho_new = float(rho[keep_slots].mean())
    else:
        rho_new = inverse_sigma(EPS_SIGMA, layer.sigma_param)
    with torch.no_grad():
        _remap_(layer.weight_mu, source, 0.0, optimizer)
        _remap_(layer.weight_rho, source, rho_new, optimizer)
        layer.set_index(new_index)
    checks = (bool((layer.weight_mu[is_new] == 0).all())
              and bool((layer.weight_rho[is_new] == torch.tensor(rho_new, dtype=rho.dtype)).all())
              and _state_zero(optimizer, (layer.weight_mu, layer.weight_rho), is_new)
              and layer.n_active == k)
    return LayerUpdate(k, n_drop, n_drop - changed, changed, iou, checks)


def _remap_(param: torch.Tensor, source: torch.Tensor, fill: float,
            optimizer: torch.optim.Optimizer | None) -> None:
    """Reorder `param` (and its same-shaped optimiser state) so position i takes old position
    source[i], or `fill` (state: 0) where source is -1."""
    new = source < 0
    src = source.clamp_min(0)
    param.copy_(torch.where(new, torch.full_like(param, fill), param.index_select(0, src)))
    if optimizer is None:
        return
    for value in optimizer.state.get(param, {}).values():
        if isinstance(value, torch.Tensor) and value.shape == param.shape:
            value.copy_(torch.where(new, torch.zeros_like(value), value.index_select(0, src)))


def _state_zero(optimizer: torch.optim.Optimizer | None, params: Iterable[torch.Tensor],
                where: torch.Tensor) -> bool:
    if optimizer is None:
        return True
    for p in params:
        for value in optimizer.state.get(p, {}).values():
            if isinstance(value, torch.Tensor) and value.shape == p.shape \
                    and bool((value[where] != 0).any()):
                return False
    return True


def _iou(a: torch.Tensor, b: torch.Tensor, k: int) -> float:
    sa = torch.zeros(k, dtype=torch.bool, device=a.device)
    sb = torch.zeros(k, dtype=torch.bool, device=a.device)
    sa[a], sb[b] = True, True
    union = int((sa | sb).sum())
    return 1.0 if union == 0 else int((sa & sb).sum()) / union


def subspace_update(
    layers: Iterable[SparseWeights], schedule: SubspaceSchedule, t: int, total_steps: int,
    optimizer: torch.optim.Optimizer | None, seed: int = 0,
) -> list[LayerUpdate]:
    """One subspace update of every sparse layer at iteration t, after a backward pass taken
    with `keep_mean_grad` set. Dense gradients are averaged over DDP ranks; random criteria
    draw from a generator seeded by (seed, t), so every rank and a resumed run agree."""
    fraction = schedule.drop_fraction(t, total_steps)
    gen = torch.Generator().manual_seed(int(seed) * 1_000_003 + int(t))
    updates = []
    for layer in layers:
        grad = layer.dense_mean_grad()
        if grad is not None:
            grad = all_reduce_mean_(grad.detach().clone())
        updates.append(update_layer(layer, fraction, schedule, grad=grad, optimizer=optimizer,
                                    generator=gen))
        layer.clear_mean_grad()
    return updates


def all_reduce_mean_(t: torch.Tensor) -> torch.Tensor:
    """Average a tensor over DDP ranks in place (a no-op in a single process)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.all_reduce(t)
        t /= torch.distributed.get_world_size()
    return t
