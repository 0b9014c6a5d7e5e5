"""Turbo-VBI's three-layer hierarchical prior and its two modules (spec bnn-and-ssvi 6.2-6.3).

Per weight w_i of a layer: a support s_i in {0, 1}, a precision tau_i and the weight,

    p(s) = a grid Markov random field over the (out, in) weight matrix,
    tau_i | s_i ~ Gamma(a, b) if s_i = 1 else Gamma(a_bar, b_bar)    (shape, rate),
    w_i | tau_i ~ N(0, 1 / tau_i).

The grid has chain factors along every row (the incoming weights of one neuron) and every
column (the outgoing weights of one input unit), so neighbouring supports tend to agree:
blocks, and whole neurons switched off.

Module A (mean-field VB, q(w) q(tau) q(s)): q(w) is the Bayesian layer trained by BBB against
N(0, 1/E[tau_i]); the closed forms here update q(tau_i) = Gamma(a~, b~) and
q(s_i = 1) = pi~_i. Module B: sum-product on the support grid (`varbayes.infer.grid_bp`) with
Module A's extrinsic message as unary factor, returning the new prior pi_i.

The precisions' scales are set per layer by `calibrate` (empirical Bayes, once, at the first
round): the active precision's prior mean is tau_a = 1 / (slab_scale^2 * mean E[w^2]) over the
layer's weights and the inactive one spike_ratio * tau_a; the shapes a and a_bar are fixed.
Why not the public demo's a = b = 1, a_bar = 1, b_bar = 0.01: with those, q(s) stays at
"active" for every weight whatever its size, because a single weight barely moves q(tau);
and fixed scales do not fit layers whose weights differ in size; see docs/methods/turbo-vbi.md.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Literal

import torch
from torch import nn

from varbayes.errors import VarbayesError
from varbayes.infer.grid_bp import ChainFactor, grid_bp
from varbayes.infer.neuron_bp import NeuronFactor, network_bp


@dataclass(frozen=True)
class PriorSettings:
    """The hierarchical prior's hyperparameters (see the module doc)."""

    active_shape: float = 1.0
    inactive_shape: float = 5.0
    slab_scale: float = 2.0
    spike_ratio: float = 10.0
    row_p01: float = 0.2
    row_p11: float = 0.5
    col_p01: float = 0.2
    col_p11: float = 0.5
    p_start: float | None = None
    init_pi: float = 0.5
    tau_update: Literal["textbook", "demo"] = "textbook"
    bp_sweeps: int = 10
    bp_damping: float = 0.5
    support_model: Literal["neuron", "grid"] = "neuron"
    neuron_prior: float = 0.5
    neuron_ratio: float = 4.0
    neuron_contrast: float = 100.0
    neuron_iterations: int = 3
    evidence_cap: float | None = None
    neuron_on: float | None = None
    evidence_floor: float | None = None
    unit_keeps_weights: bool = False

    def __post_init__(self) -> None:
        for name in ("active_shape", "inactive_shape", "slab_scale", "spike_ratio"):
            if not getattr(self, name) > 0:
                raise VarbayesError(f"{name} must be > 0; got {getattr(self, name)}")
        if not 0 < self.init_pi < 1:
            raise VarbayesError(f"init_pi must be in (0, 1); got {self.init_pi}")
        if self.tau_update not in ("textbook", "demo"):
            raise VarbayesError(f"tau_update must be textbook or demo; got {self.tau_update!r}")
        if self.support_model not in ("neuron", "grid"):
            raise VarbayesError(f"support_model must be neuron or grid; got "
                                f"{self.support_model!r}")
        if self.evidence_cap is not None and not self.evidence_cap > 0:
            raise VarbayesError(f"evidence_cap must be > 0 (or None); got {self.evidence_cap}")
        if self.evidence_floor is not None and not self.evidence_floor > 0:
            raise VarbayesError(f"evidence_floor must be > 0 (or None); got "
                                f"{self.evidence_floor}")
        if self.neuron_on is not None and not 0 < self.neuron_on < 1:
            raise VarbayesError(f"neuron_on must be in (0, 1) (or None); got {self.neuron_on}")
        if not (self.neuron_ratio > 0 and self.neuron_contrast > 1):
            raise VarbayesError("neuron_ratio must be > 0 and neuron_contrast > 1")
        self.rows(), self.cols(), self.neuron(0.1)  # validates the probabilities

    def neuron(self, density: float) -> NeuronFactor:
        """The unit factor for a hidden layer whose adjacent weights have mean q(s = 1) =
        `density`: a live unit's weights are active with probability neuron_ratio x density
        (within [1e-4, 0.5]), a dead unit's neuron_contrast times less often. With
        `neuron_on` set, a live unit's rate is that absolute value whatever the density (the
        "dense units" model: a live unit pulls its weights on instead of thinning them)."""
        if self.neuron_on is not None:
            return NeuronFactor(self.neuron_prior, self.neuron_on,
                                self.neuron_on / self.neuron_contrast)
        on = min(0.5, max(1e-4, self.neuron_ratio * density))
        return NeuronFactor(self.neuron_prior, on, on / self.neuron_contrast)

    def rows(self) -> ChainFactor:
        return ChainFactor(self.row_p01, self.row_p11)

    def cols(self) -> ChainFactor:
        return ChainFactor(self.col_p01, self.col_p11)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class SupportPrior(nn.Module):
    """The prior state of one weight matrix (out, in): q(tau) = Gamma(a~, b~), the prior
    log-odds of s from Module B and the posterior log-odds of s from Module A (buffers, so
    checkpoints and model files keep them)."""

    def __init__(self, shape: tuple[int, int], settings: PriorSettings) -> None:
        super().__init__()
        self.settings = settings
        self.a, self.a_bar = settings.active_shape, settings.inactive_shape
        start = math.log(settings.init_pi / (1 - settings.init_pi))
        self.register_buffer("rates", torch.ones(2, dtype=torch.float64))  # b, b_bar
        self.register_buffer("calibrated", torch.tensor(False))
        self.register_buffer("prior_logit", torch.full(shape, start))
        self.register_buffer("post_logit", torch.full(shape, start))
        self.register_buffer("tau_shape", torch.full(shape, self.a))
        self.register_buffer("tau_rate", torch.ones(shape))
        # log-odds that each output unit is on (neuron model; stays "on" otherwise)
        self.register_buffer("unit_logit", torch.full(shape[:1], 30.0))
        # weights kept whatever q(s) (1) or not (0), set at pruning with `unit_keeps_weights`:
        # their precision prior becomes the slab's for fine-tuning (None: unused)
        self.kept: torch.Tensor | None = None

    @property
    def b(self) -> float:
        return float(self.rates[0])

    @property
    def b_bar(self) -> float:
        return float(self.rates[1])

    @torch.no_grad()
    def calibrate(self, second_moment: torch.Tensor) -> None:
        """Set the Gamma rates from the layer's weights: active prior variance
        v_a = slab_scale^2 * mean E[w^2], so b = a v_a and b_bar = a_bar v_a / spike_ratio."""
        s = self.settings
        v_a = s.slab_scale**2 * float(second_moment.double().mean())
        self.rates.copy_(torch.tensor([self.a * v_a, self.a_bar * v_a / s.spike_ratio]))
        self.calibrated.fill_(True)

    @torch.no_grad()
    def sharpen(self, factor: float) -> None:
        """Make the inactive precision prior `factor` times tighter around a larger mean
        (b_bar / factor): weights already judged inactive are pulled harder towards 0."""
        self.rates[1] /= factor

    @property
    def expected_precision(self) -> torch.Tensor:
        """E[tau] = a~ / b~, the precision of q(w)'s Gaussian prior."""
        return self.tau_shape / self.tau_rate

    @property
    def support(self) -> torch.Tensor:
        """pi~ = q(s = 1)."""
        return torch.sigmoid(self.post_logit)

    @property
    def effective_support(self) -> torch.Tensor:
        """The support the precision prior uses: pi~, or max(pi~, kept) once pruning has
        marked weights kept whatever their own support (`unit_keeps_weights`)."""
        return self.support if self.kept is None else torch.maximum(self.support, self.kept)

    @torch.no_grad()
    def module_a(self, mean: torch.Tensor, sigma: torch.Tensor, iterations: int = 1) -> None:
        """Closed-form VB updates of q(tau) (from q(w) and q(s)) then q(s) (from q(tau) and
        the prior pi), `iterations` times."""
        second_moment = mean.double() ** 2 + sigma.double() ** 2
        for _ in range(iterations):
            self.update_tau(second_moment)
            self.post_logit.copy_(self.prior_logit + self.support_evidence())

    @torch.no_grad()
    def update_tau(self, second_moment: torch.Tensor) -> None:
        """a~ = pi~ a + (1 - pi~) a_bar + 1/2, b~ = pi~ b + (1 - pi~) b_bar + E[w^2] / 2
        (textbook); the demo's variant adds 1 and E[w^2] without the halves."""
        half = 0.5 if self.settings.tau_update == "textbook" else 1.0
        p = self.effective_support.double()
        self.tau_shape.copy_(p * self.a + (1 - p) * self.a_bar + half)
        self.tau_rate.copy_(p * self.b + (1 - p) * self.b_bar + half * second_moment)

    def evidence(self) -> torch.Tensor:
        """Module A's extrinsic log-odds for s = 1 from q(tau):
        E_q[log Gamma(tau; a, b)] - E_q[log Gamma(tau; a_bar, b_bar)]."""
        shape, rate = self.tau_shape.double(), self.tau_rate.double()
        e_tau = shape / rate
        e_log = torch.digamma(shape) - torch.log(rate)

        def expected_log_gamma(a: float, b: float) -> torch.Tensor:
            return a * math.log(b) - math.lgamma(a) + (a - 1) * e_log - b * e_tau

        return (expected_log_gamma(self.a, self.b)
                - expected_log_gamma(self.a_bar, self.b_bar)).float()

    def support_evidence(self) -> torch.Tensor:
        """The evidence q(s) and Module B use: `evidence()`, clipped to +-`evidence_cap`
        nats when that is set, and from below at -`evidence_floor` when that is set. Late in
        training (spike growth) the evidence reaches 10^2-10^4 nats while a chain message is
        bounded by a few, so without a cap the field can never overrule a single weight
        (docs: "Blocks: stronger chain coupling"). The floor bounds only the evidence
        *against* a weight: a live unit can then pull its weak weights on, while strong
        positive evidence still revives weights (and units) that the field had switched off,
        so "all off" is not absorbing (docs: "Dense units")."""
        e = self.evidence()
        cap, floor = self.settings.evidence_cap, self.settings.evidence_floor
        bounds = [x for x in (cap, floor) if x is not None]
        return e.clamp(-min(bounds), cap) if bounds else e

    @torch.no_grad()
    def module_b(self) -> int:
        """Sum-product on the support grid with A's extrinsic message as the unary factor;
        the field's message to each weight becomes its new prior, and q(s) is refreshed.
        Returns the sweeps used."""
        s = self.settings
        unary = self.post_logit - self.prior_logit
        out = grid_bp(unary, s.rows(), s.cols(), s.p_start, s.bp_sweeps, s.bp_damping)
        self.prior_logit.copy_(out.extrinsic)
        self.post_logit.copy_(out.extrinsic + unary)
        return out.sweeps


@torch.no_grad()
def network_module_b(priors: list[SupportPrior], settings: PriorSettings) -> list[torch.Tensor]:
    """Module B over all layers at once with the hidden units' neuron-level supports
    (`varbayes.infer.neuron_bp`; each hidden layer's factor from the current mean q(s) of its
    adjacent weights, an empirical-Bayes choice): the unary factors are Module A's extrinsic
    messages, the field's messages become every weight's new prior, q(s) is refreshed.
    Returns each hidden layer's unit log-odds of z = 1."""
    s = settings
    unaries = [p.post_logit - p.prior_logit for p in priors]
    factors = []
    for a, b in zip(priors, priors[1:]):
        active = float(a.support.sum() + b.support.sum())
        factors.append(s.neuron(active / (a.support.numel() + b.support.numel())))
    out = network_bp(unaries, s.rows(), s.cols(), factors, s.p_start, s.neuron_iterations,
                     s.bp_sweeps, s.bp_damping)
    for p, ext, unary in zip(priors, out.extrinsic, unaries):
        p.prior_logit.copy_(ext)
        p.post_logit.copy_(ext + unary)
    for p, z in zip(priors, out.units):
        p.unit_logit.copy_(z)
    return out.units


def units_on(priors: list[SupportPrior]) -> list[torch.Tensor]:
    """Per layer (weight-grid shaped): P(every hidden unit at the weight's ends is on) from
    the units' log-odds, the rows' units for all but the last layer and the columns' units
    (each owning `in / units` consecutive columns) for all but the first."""
    out = []
    for k, p in enumerate(priors):
        keep = torch.ones_like(p.post_logit)
        if k < len(priors) - 1:
            keep = keep * torch.sigmoid(p.unit_logit.to(keep.dtype))[:, None]
        if k > 0:
            prev = torch.sigmoid(priors[k - 1].unit_logit.to(keep.dtype))
            keep = keep * prev.repeat_interleave(keep.shape[1] // len(prev))[None, :]
        out.append(keep)
    return out
