"""Sum-product over a network's weight supports with a neuron-level support variable per
hidden unit, on top of the per-layer grid Markov fields of `grid_bp`.

Layers l = 0..L-1 have support grids s_l of shape (out_l, in_l). Hidden unit k of layer l
(output k of layer l, input k of layer l+1; l < L-1) carries z_l[k] in {0, 1} with prior
P(z = 1) = `prior`. Every weight is tied to the units at both its ends (where they are hidden)
by the pairwise factor

    psi(s, z) = P(s | z):  z = 1: P(s = 1) = `on`,   z = 0: P(s = 1) = `off` (small),

so a unit switched off switches off its whole row in W_l and its whole column in W_{l+1}, and a
unit stays on only when enough of its weights are active (each inactive weight is evidence
log((1 - on) / (1 - off)) < 0 against it, each confidently active one up to log(on / off)).
The grids' own chain factors (rows and columns) stay as in `grid_bp`.

Convolutional layers enter as their (out_channels, in_channels * kernel) grids: a unit is a
channel, and when layer l+1's grid has g times as many columns as layer l has units, unit k
owns the g consecutive columns k g .. k g + g - 1 (its kernel taps, or its flattened spatial
positions in a linear layer after `Flatten`); for an MLP g = 1.

Schedule (loopy BP, grouped): given the units' messages to the weights, run `grid_bp` on each
layer with unary = the given unary + those messages; then the weights' messages to the units
(from their cavity beliefs), the units' beliefs, and the units' new messages to the weights,
damped. On a single layer without chain coupling the graph is a forest and the result exact.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from varbayes.errors import VarbayesError
from varbayes.infer.grid_bp import ChainFactor, grid_bp


@dataclass(frozen=True)
class NeuronFactor:
    """P(z = 1) of a hidden unit and P(s = 1 | z) of its weights."""

    prior: float = 0.5
    on: float = 0.3
    off: float = 0.001

    def __post_init__(self) -> None:
        for name in ("prior", "on", "off"):
            v = getattr(self, name)
            if not 0.0 < v < 1.0:
                raise VarbayesError(f"neuron {name} must be in (0, 1); got {v}")
        if not self.off < self.on:
            raise VarbayesError(f"neuron off ({self.off}) must be below on ({self.on})")


@dataclass
class NetworkBeliefs:
    """Per layer: `extrinsic` (what the field tells each weight without its own unary: the
    chain and unit messages) and `posterior` (extrinsic + unary), log-odds of s = 1; per
    hidden layer: `units`, the log-odds of z = 1."""

    extrinsic: list[torch.Tensor]
    posterior: list[torch.Tensor]
    units: list[torch.Tensor]


def network_bp(unaries: list[torch.Tensor], rows: ChainFactor, cols: ChainFactor,
               neuron: NeuronFactor | list[NeuronFactor], p_start: float | None = None,
               iterations: int = 3, sweeps: int = 10, damping: float = 0.5) -> NetworkBeliefs:
    """Loopy BP on the layers' grids joined by the hidden units' z (see the module doc);
    `iterations` outer rounds of unit messages, `sweeps` grid sweeps in each. `neuron` is one
    factor for every hidden layer or a list with one per hidden layer."""
    if not unaries or any(u.ndim != 2 for u in unaries):
        raise VarbayesError("unaries must be a non-empty list of 2-D log-odds grids")
    for a, b in zip(unaries, unaries[1:]):
        if b.shape[1] % a.shape[0]:
            raise VarbayesError(f"layer shapes do not chain: {tuple(a.shape)} then "
                                f"{tuple(b.shape)}")
    group = [b.shape[1] // a.shape[0] for a, b in zip(unaries, unaries[1:])]
    u = [x.double() for x in unaries]
    n = len(u)
    factors = neuron if isinstance(neuron, list) else [neuron] * (n - 1)
    if len(factors) != n - 1:
        raise VarbayesError(f"need one neuron factor per hidden layer ({n - 1}); got "
                            f"{len(factors)}")
    down = [torch.zeros_like(x) for x in u]  # unit l -> its row in layer l (outputs)
    across = [torch.zeros_like(x) for x in u]  # unit l-1 -> its column in layer l (inputs)
    prior = [math.log(f.prior / (1 - f.prior)) for f in factors]
    units = [torch.full((x.shape[0],), p, dtype=torch.float64) for x, p in zip(u, prior)]
    chain = [torch.zeros_like(x) for x in u]
    for _ in range(iterations):
        chain = [grid_bp(x + d + a, rows, cols, p_start, sweeps, damping).extrinsic
                 for x, d, a in zip(u, down, across)]
        belief = [x + c + d + a for x, c, d, a in zip(u, chain, down, across)]
        up_row = [_to_unit(belief[k] - down[k], factors[k]) for k in range(n - 1)]
        up_col = [_to_unit(belief[k + 1] - across[k + 1], factors[k]) for k in range(n - 1)]
        units = [prior[k] + up_row[k].sum(1)
                 + up_col[k].reshape(len(up_col[k]), -1, group[k]).sum((0, 2))
                 for k in range(n - 1)]
        for k in range(n - 1):
            new_down = _to_weight(units[k][:, None] - up_row[k], factors[k])
            new_across = _to_weight(units[k].repeat_interleave(group[k])[None, :] - up_col[k],
                                    factors[k])
            down[k] = damping * down[k] + (1 - damping) * new_down
            across[k + 1] = damping * across[k + 1] + (1 - damping) * new_across
    extrinsic = [c + d + a for c, d, a in zip(chain, down, across)]
    return NetworkBeliefs([e.to(x.dtype) for e, x in zip(extrinsic, unaries)],
                          [(e + x.double()).to(x.dtype) for e, x in zip(extrinsic, unaries)],
                          [z.float() for z in units])


def _to_unit(cavity: torch.Tensor, f: NeuronFactor) -> torch.Tensor:
    """Weight -> unit, log-odds of z = 1: sum_s P(s | z) P_cavity(s)."""
    p1, p0 = F.logsigmoid(cavity), F.logsigmoid(-cavity)
    on = torch.logaddexp(p0 + math.log(1 - f.on), p1 + math.log(f.on))
    off = torch.logaddexp(p0 + math.log(1 - f.off), p1 + math.log(f.off))
    return on - off


def _to_weight(cavity: torch.Tensor, f: NeuronFactor) -> torch.Tensor:
    """Unit -> weight, log-odds of s = 1: sum_z P(s | z) P_cavity(z)."""
    z1, z0 = F.logsigmoid(cavity), F.logsigmoid(-cavity)
    s1 = torch.logaddexp(z1 + math.log(f.on), z0 + math.log(f.off))
    s0 = torch.logaddexp(z1 + math.log(1 - f.on), z0 + math.log(1 - f.off))
    return s1 - s0
