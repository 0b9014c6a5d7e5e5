"""Sum-product (loopy belief propagation) on a binary grid Markov random field, vectorised.

The field has one binary variable s[i, j] per cell of an R x C grid (for a weight matrix: one
support variable per weight), a unary factor per cell given as log-odds u = log phi(1) -
log phi(0), and two kinds of pairwise factors: between horizontal neighbours (i, j) -> (i, j+1)
the table T_h[s, s'] and between vertical neighbours (i, j) -> (i+1, j) the table T_v[s, s'].
A table comes from Markov-chain transition probabilities p01 = P(s' = 1 | s = 0) and
p11 = P(s' = 1 | s = 1): T = [[1 - p01, p01], [1 - p11, p11]]. An optional start factor
(P(s = 1) = p_start) sits on the first cell of every row and every column.

All messages are log-odds tensors updated in parallel (flooding schedule) with damping; on a
single row or column (a chain, a tree) the result is exact, on a grid it is the usual loopy
approximation. Per-node Python factor graphs are far too slow for the 10^4 - 10^5 variables
of a layer, hence this.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from varbayes.errors import VarbayesError


@dataclass(frozen=True)
class ChainFactor:
    """Transition probabilities of a binary Markov chain along one grid direction."""

    p01: float
    p11: float

    def __post_init__(self) -> None:
        for name in ("p01", "p11"):
            v = getattr(self, name)
            if not 0.0 < v < 1.0:
                raise VarbayesError(f"{name} must be in (0, 1); got {v}")

    def table(self) -> list[list[float]]:
        """T[s][s'] = P(s' | s)."""
        return [[1 - self.p01, self.p01], [1 - self.p11, self.p11]]


@dataclass
class GridBeliefs:
    """What loopy BP returns, all as log-odds of s = 1 with the shape of the grid.

    `extrinsic`: the product of the messages a cell receives from its neighbours (and the
    start factor), i.e. the field's belief without the cell's own unary factor; in a turbo
    scheme this is the prior passed back to the other module. `posterior`: extrinsic plus
    the unary. `sweeps`: iterations run; `change`: the last maximum message change.
    """

    extrinsic: torch.Tensor
    posterior: torch.Tensor
    sweeps: int
    change: float


def grid_bp(unary: torch.Tensor, horizontal: ChainFactor, vertical: ChainFactor,
            p_start: float | None = None, sweeps: int = 10, damping: float = 0.5,
            tol: float = 1e-6) -> GridBeliefs:
    """Loopy BP on the R x C grid whose unary log-odds are `unary` (see the module doc).

    Runs at most `sweeps` parallel updates, each message moved to
    (1 - damping) * new + damping * old in log-odds, stopping early when no message changes
    by more than `tol`.
    """
    if unary.ndim != 2:
        raise VarbayesError(f"unary must be a 2-D grid of log-odds; got shape "
                            f"{tuple(unary.shape)}")
    if not 0.0 <= damping < 1.0:
        raise VarbayesError(f"damping must be in [0, 1); got {damping}")
    if p_start is not None and not 0.0 < p_start < 1.0:
        raise VarbayesError(f"p_start must be in (0, 1); got {p_start}")
    u = unary.double()
    start = 0.0 if p_start is None else math.log(p_start / (1 - p_start))
    zeros = torch.zeros_like(u)
    right, left, down, up = zeros.clone(), zeros.clone(), zeros.clone(), zeros.clone()
    right[:, 0] = start  # into the first cell of each row: the start factor
    down[0, :] = start
    th, tv = horizontal.table(), vertical.table()
    change, done = float("inf"), 0
    for done in range(1, sweeps + 1):  # noqa: B007 - `done` is reported
        belief = u + right + left + down + up
        new_right, new_left = right.clone(), left.clone()
        new_down, new_up = down.clone(), up.clone()
        # rightward: from (i, j) to (i, j+1), excluding what (i, j+1) sent to (i, j)
        new_right[:, 1:] = _forward((belief - left)[:, :-1], th)
        new_left[:, :-1] = _backward((belief - right)[:, 1:], th)
        new_down[1:, :] = _forward((belief - up)[:-1, :], tv)
        new_up[:-1, :] = _backward((belief - down)[1:, :], tv)
        change = max(float((a - b).abs().max()) if a.numel() else 0.0
                     for a, b in ((new_right, right), (new_left, left), (new_down, down),
                                  (new_up, up)))
        right = damping * right + (1 - damping) * new_right
        left = damping * left + (1 - damping) * new_left
        down = damping * down + (1 - damping) * new_down
        up = damping * up + (1 - damping) * new_up
        if change < tol:
            break
    extrinsic = right + left + down + up
    return GridBeliefs(extrinsic.to(unary.dtype), (extrinsic + u).to(unary.dtype), done, change)


def _forward(cavity: torch.Tensor, t: list[list[float]]) -> torch.Tensor:
    """Message to the next cell: m(s') = sum_s T[s][s'] P(s), P from the cavity log-odds."""
    p1 = torch.sigmoid(cavity)
    p0 = 1 - p1
    m1 = p0 * t[0][1] + p1 * t[1][1]
    m0 = p0 * t[0][0] + p1 * t[1][0]
    return torch.log(m1) - torch.log(m0)


def _backward(cavity: torch.Tensor, t: list[list[float]]) -> torch.Tensor:
    """Message to the previous cell: m(s) = sum_s' T[s][s'] P(s')."""
    p1 = torch.sigmoid(cavity)
    p0 = 1 - p1
    m1 = t[1][0] * p0 + t[1][1] * p1
    m0 = t[0][0] * p0 + t[0][1] * p1
    return torch.log(m1) - torch.log(m0)
