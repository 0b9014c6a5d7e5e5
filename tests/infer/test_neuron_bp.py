"""Network BP with neuron-level supports against brute-force enumeration on trees."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from varbayes.errors import VarbayesError
from varbayes.infer.grid_bp import ChainFactor
from varbayes.infer.neuron_bp import NeuronFactor, network_bp
from varbayes.metrics import structure_report

NEUTRAL = ChainFactor(0.5, 0.5)  # chain factors that couple nothing
F = NeuronFactor(prior=0.4, on=0.3, off=0.05)


def brute_force(unaries: list[torch.Tensor], f: NeuronFactor,
                group: int = 1) -> tuple[list, list]:
    """Exact P(s = 1) of every weight and P(z = 1) of every hidden unit, as log-odds; a unit
    owns `group` consecutive columns of the next layer."""
    shapes = [u.shape for u in unaries]
    n_w = sum(u.numel() for u in unaries)
    n_z = sum(s[0] for s in shapes[:-1])
    p_w, p_z, total = torch.zeros(n_w, dtype=torch.float64), torch.zeros(n_z,
                                                                         dtype=torch.float64), 0.0
    for bits in itertools.product((0, 1), repeat=n_w + n_z):
        w, z = bits[:n_w], bits[n_w:]
        logw, start, zs = 0.0, 0, []
        k0 = 0
        for s in shapes[:-1]:
            zs.append(z[k0:k0 + s[0]])
            k0 += s[0]
        logw += sum(math.log(f.prior if b else 1 - f.prior) for b in z)
        for layer, u in enumerate(unaries):
            r, c = u.shape
            s = torch.tensor(w[start:start + r * c]).reshape(r, c)
            start += r * c
            logw += float((u.double() * s).sum())
            for i in range(r):
                for j in range(c):
                    parents = []
                    if layer < len(unaries) - 1:
                        parents.append(zs[layer][i])
                    if layer > 0:
                        parents.append(zs[layer - 1][j // group])
                    for zz in parents:
                        q = f.on if zz else f.off
                        logw += math.log(q if s[i, j] else 1 - q)
        weight = math.exp(logw)
        total += weight
        p_w += weight * torch.tensor(w, dtype=torch.float64)
        p_z += weight * torch.tensor(z, dtype=torch.float64)
    lo = lambda p: torch.log(p / total) - torch.log1p(-p / total)  # noqa: E731
    return lo(p_w), lo(p_z)


def test_exact_on_a_two_layer_tree() -> None:
    torch.manual_seed(0)
    unaries = [torch.randn(2, 3) * 2, torch.randn(1, 2) * 2]
    out = network_bp(unaries, NEUTRAL, NEUTRAL, F, iterations=40, sweeps=3, damping=0.3)
    post, units = brute_force(unaries, F)
    got = torch.cat([p.flatten() for p in out.posterior]).double()
    assert torch.allclose(got, post, atol=1e-4)
    assert torch.allclose(torch.cat(out.units).double(), units, atol=1e-4)
    for e, p, u in zip(out.extrinsic, out.posterior, unaries):
        assert torch.allclose(p, e + u, atol=1e-5)


def test_exact_with_channels_owning_several_columns() -> None:
    """A conv-like layer pair: each of the 2 hidden units (channels) owns 2 consecutive
    columns of the next grid (its kernel taps or flattened positions)."""
    torch.manual_seed(1)
    unaries = [torch.randn(2, 2) * 2, torch.randn(1, 4) * 2]
    out = network_bp(unaries, NEUTRAL, NEUTRAL, F, iterations=40, sweeps=3, damping=0.3)
    post, units = brute_force(unaries, F, group=2)
    got = torch.cat([p.flatten() for p in out.posterior]).double()
    assert torch.allclose(got, post, atol=1e-4)
    assert torch.allclose(torch.cat(out.units).double(), units, atol=1e-4)


def test_a_unit_without_evidence_switches_its_row_and_column_off() -> None:
    """Unit 0's weights are all weakly inactive, unit 1's strongly active: unit 0 goes off and
    pushes all its incoming and outgoing weights off, unit 1 stays on."""
    u0 = torch.tensor([[-2.0] * 16, [4.0] * 16])
    u1 = torch.tensor([[-2.0, 4.0]] * 3)
    f = NeuronFactor(prior=0.5, on=0.3, off=0.001)
    out = network_bp([u0, u1], NEUTRAL, NEUTRAL, f, iterations=20)
    z = out.units[0]
    assert z[0] < -3 and z[1] > 3
    assert (out.posterior[0][0] < -3).all() and (out.posterior[1][:, 0] < -3).all()
    assert (out.posterior[0][1] > 0).all() and (out.posterior[1][:, 1] > 0).all()


def test_strong_chains_still_cluster_with_the_unit_variables() -> None:
    """The unit messages do not cancel the chains' effect: with moderate i.i.d. evidence the
    kept weights of both layers form runs well above the random-mask expectation under
    strong chains, and stay near it under the weak default chains."""
    g = torch.Generator().manual_seed(0)
    unaries = [torch.randn(24, 16, generator=g, dtype=torch.float64) * 3 + 0.5,
               torch.randn(8, 24, generator=g, dtype=torch.float64) * 3 + 0.5]
    f = NeuronFactor(0.5, 0.4, 0.1)

    def ratios(chain: ChainFactor) -> list[float]:
        out = network_bp(unaries, chain, chain, f, iterations=5, sweeps=100)
        masks = [(p > 0).double() for p in out.posterior]
        return [layer["block_len_ratio"] for layer in structure_report(masks)["layers"]]

    assert max(ratios(ChainFactor(0.2, 0.5))) < 1.35
    assert min(ratios(ChainFactor(0.05, 0.95))) > 1.8


def test_bad_input_is_refused() -> None:
    with pytest.raises(VarbayesError, match="do not chain"):
        network_bp([torch.zeros(3, 2), torch.zeros(2, 4)], NEUTRAL, NEUTRAL, F)
    with pytest.raises(VarbayesError, match="below on"):
        NeuronFactor(on=0.1, off=0.2)
    with pytest.raises(VarbayesError, match="in \\(0, 1\\)"):
        NeuronFactor(prior=1.0)


def test_dense_unit_factor_pulls_a_live_units_weights_on_exactly() -> None:
    """The dense-units factor (absolute on = 0.99) with floored evidence on a one-hidden-layer
    network (a tree: every weight touches one unit): a unit's log-odds is the closed form
    prior + sum_j log[(on e^u_j + 1 - on) / (off e^u_j + 1 - off)], and BP matches
    enumeration. Unit 0 (5 of its 12 weights strongly active, the rest at the floor -3) is on
    and pulls its floored weights on; unit 1 (all at the floor) is off and keeps them off."""
    f = NeuronFactor(prior=0.5, on=0.99, off=0.99 / 100)
    u0 = torch.tensor([[8.0, 8.0, 8.0, -3.0, -3.0, -3.0], [-3.0] * 6], dtype=torch.float64)
    u1 = torch.tensor([[8.0, -3.0]] * 2 + [[-3.0, -3.0]] * 4, dtype=torch.float64)
    out = network_bp([u0, u1], NEUTRAL, NEUTRAL, f, iterations=40, sweeps=3, damping=0.3)

    def g(u: torch.Tensor) -> torch.Tensor:
        return (torch.log(f.on * u.exp() + 1 - f.on) - torch.log(f.off * u.exp() + 1 - f.off))

    closed = torch.stack([g(u0[k]).sum() + g(u1[:, k]).sum() for k in range(2)])
    assert torch.allclose(out.units[0].double(), closed, atol=1e-4)
    assert out.units[0][0] > 3 and out.units[0][1] < -3
    assert (out.posterior[0][0] > 0.5).all() and (out.posterior[1][:, 0] > 0.5).all()
    assert (out.posterior[0][1] < -3).all() and (out.posterior[1][:, 1] < -3).all()
    small = [torch.tensor([[8.0, -3.0], [-3.0, -3.0]]), torch.tensor([[8.0, -3.0]])]
    post, units = brute_force(small, f)
    exact = network_bp(small, NEUTRAL, NEUTRAL, f, iterations=40, sweeps=3, damping=0.3)
    assert torch.allclose(torch.cat([p.flatten() for p in exact.posterior]).double(), post,
                          atol=1e-4)
    assert torch.allclose(torch.cat(exact.units).double(), units, atol=1e-4)
