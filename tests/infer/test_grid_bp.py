"""Loopy BP on a binary grid against brute-force enumeration."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from varbayes.errors import VarbayesError
from varbayes.infer.grid_bp import ChainFactor, grid_bp
from varbayes.metrics import structure_report


def brute_force(unary: torch.Tensor, h: ChainFactor, v: ChainFactor,
                p_start: float | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact marginals log-odds with and without each cell's unary (the extrinsic part is
    the exact marginal of the field with that one unary removed)."""
    r, c = unary.shape

    def marginals(u: torch.Tensor) -> torch.Tensor:
        p1 = torch.zeros(r, c, dtype=torch.float64)
        total = 0.0
        th, tv = h.table(), v.table()
        for bits in itertools.product((0, 1), repeat=r * c):
            s = torch.tensor(bits).reshape(r, c)
            logw = float((u * s).sum())
            for i in range(r):
                for j in range(c):
                    if j + 1 < c:
                        logw += math.log(th[s[i, j]][s[i, j + 1]])
                    if i + 1 < r:
                        logw += math.log(tv[s[i, j]][s[i + 1, j]])
            if p_start is not None:
                for k in range(r):
                    logw += math.log(p_start if s[k, 0] else 1 - p_start)
                for k in range(c):
                    logw += math.log(p_start if s[0, k] else 1 - p_start)
            w = math.exp(logw)
            total += w
            p1 += w * s
        p = p1 / total
        return torch.log(p) - torch.log1p(-p)

    post = marginals(unary)
    ext = torch.zeros_like(post)
    for i in range(r):
        for j in range(c):
            u = unary.clone()
            u[i, j] = 0.0
            ext[i, j] = marginals(u)[i, j]
    return post, ext


H, V = ChainFactor(0.2, 0.7), ChainFactor(0.3, 0.85)


@pytest.mark.parametrize("shape", [(1, 7), (6, 1)])
@pytest.mark.parametrize("p_start", [None, 0.3])
def test_exact_on_chains(shape: tuple[int, int], p_start: float | None) -> None:
    unary = torch.randn(shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    out = grid_bp(unary, H, V, p_start=p_start, sweeps=50, damping=0.0)
    post, ext = brute_force(unary, H, V, p_start)
    assert torch.allclose(out.posterior, post, atol=1e-9)
    assert torch.allclose(out.extrinsic, ext, atol=1e-9)


@pytest.mark.parametrize(("factor", "tol"), [(ChainFactor(0.45, 0.55), 0.002),
                                             (ChainFactor(0.3, 0.7), 0.05)])
def test_loopy_grid_is_close_to_exact(factor: ChainFactor, tol: float) -> None:
    """On loops BP is approximate; its error grows with the coupling strength."""
    unary = torch.randn(3, 3, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    out = grid_bp(unary, factor, factor, p_start=0.4, sweeps=200, damping=0.5)
    post, _ = brute_force(unary, factor, factor, 0.4)
    assert out.change < 1e-6
    assert (torch.sigmoid(out.posterior) - torch.sigmoid(post)).abs().max() < tol


def test_sticky_chains_spread_evidence() -> None:
    """A strongly inactive neighbourhood pulls an uninformed cell towards inactive."""
    sticky = ChainFactor(0.05, 0.95)
    unary = torch.full((5, 5), -4.0)
    unary[2, 2] = 0.0
    out = grid_bp(unary, sticky, sticky, sweeps=30)
    assert torch.sigmoid(out.extrinsic[2, 2]) < 0.1


def _run_ratio(mask: torch.Tensor) -> float:
    """Mean run length of the mask over its random-mask expectation (the structure report's)."""
    return structure_report([mask.double()])["block_len_ratio"]


def test_stronger_coupling_gives_longer_runs_on_moderate_evidence() -> None:
    """The block mechanism: with i.i.d. evidence of a few nats, the weak default chains
    leave the kept cells scattered like a random mask's, strong chains cluster them."""
    unary = torch.randn(24, 24, generator=torch.Generator().manual_seed(3),
                        dtype=torch.float64) * 3 + 0.5
    weak = grid_bp(unary, ChainFactor(0.2, 0.5), ChainFactor(0.2, 0.5), sweeps=100)
    strong = grid_bp(unary, ChainFactor(0.05, 0.95), ChainFactor(0.05, 0.95), sweeps=400)
    assert weak.change < 1e-5 and strong.change < 1e-5  # converged
    assert _run_ratio(unary > 0) < 1.15
    assert _run_ratio(weak.posterior > 0) < 1.4
    assert _run_ratio(strong.posterior > 0) > 1.5  # the project target


def test_chain_messages_are_bounded_so_large_evidence_decides() -> None:
    """Each chain message lies between the log-odds of the table's two rows, so the field
    can move a cell by at most a few nats whatever the coupling; a unary of +-50 nats (Module
    A's evidence late in training is 10^2-10^4) is never overridden."""
    f = ChainFactor(0.01, 0.99)
    forward = max(abs(math.log(f.p01 / (1 - f.p01))), abs(math.log(f.p11 / (1 - f.p11))))
    backward = max(abs(math.log((1 - f.p11) / (1 - f.p01))), abs(math.log(f.p11 / f.p01)))
    sign = torch.randint(0, 2, (16, 16), generator=torch.Generator().manual_seed(4)) * 2 - 1
    unary = 50.0 * sign.double()
    out = grid_bp(unary, f, f, sweeps=100)
    assert out.extrinsic.abs().max() <= 2 * (forward + backward) + 1e-9
    assert torch.equal(out.posterior > 0, unary > 0)


def test_bad_arguments() -> None:
    with pytest.raises(VarbayesError, match="p11"):
        ChainFactor(0.2, 1.0)
    with pytest.raises(VarbayesError, match="2-D"):
        grid_bp(torch.zeros(3), H, V)
    with pytest.raises(VarbayesError, match="damping"):
        grid_bp(torch.zeros(2, 2), H, V, damping=1.0)
