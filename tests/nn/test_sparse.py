"""Sparse mean-field layers: the CSR path against the dense path and against the shared
masked layer (a second implementation), compact state dicts, cost protocol, errors."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from varbayes.errors import VarbayesError
from varbayes.metrics.cost import count_parameters, layer_macs
from varbayes.nn.meanfield import MeanFieldConv1d, MeanFieldLinear, kl_divergence
from varbayes.nn.sparse import (
    CSRPattern,
    csr_linear,
    is_sparse,
    pack_positions,
    to_sparse,
    unpack_positions,
)


def _index(n: int, k: int, seed: int = 0) -> torch.Tensor:
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:k].sort().values


def _pair(n_in: int = 30, n_out: int = 20, k: int = 100, **kw):
    """A masked dense layer (the shared implementation) and sparse copies with both paths."""
    torch.manual_seed(0)
    masked = MeanFieldLinear(n_in, n_out, **kw)
    with torch.no_grad():
        masked.weight_rho.uniform_(-5, -1)
    idx = _index(n_in * n_out, k)
    mask = torch.zeros(n_in * n_out, dtype=torch.bool)
    mask[idx] = True
    dense = MeanFieldLinear(n_in, n_out, **kw)
    dense.load_state_dict(masked.state_dict())
    csr = MeanFieldLinear(n_in, n_out, **kw)
    csr.load_state_dict(masked.state_dict())
    masked.set_mask(mask.view(n_out, n_in))
    return masked, to_sparse(dense, idx, "dense"), to_sparse(csr, idx, "csr")


def _run(layer, x, noise, sample):
    layer.noise, layer.sample, layer.keep_mean_grad = noise, sample, True
    layer.zero_grad()
    x = x.detach().clone().requires_grad_(True)
    torch.manual_seed(1)
    y = layer(x)
    y.sin().sum().backward()
    return y.detach(), x.grad, layer


@pytest.mark.parametrize("sample", [True, False])
@pytest.mark.parametrize("bayesian_bias", [False, True])
def test_csr_and_dense_paths_match_the_masked_layer(sample, bayesian_bias):
    masked, dense, csr = _pair(bayesian_bias=bayesian_bias)
    x = torch.randn(7, 30)
    y0, gx0, m = _run(masked, x, "lrt", sample)
    ref_mu_grad = m.weight_mu.grad.reshape(-1)[dense.weight_index]
    ref_dense_grad = m.effective_mean.grad
    for layer in (dense, csr):
        y, gx, s = _run(layer, x, "lrt", sample)
        torch.testing.assert_close(y, y0, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(gx, gx0, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(s.weight_mu.grad, ref_mu_grad, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(s.dense_mean_grad(), ref_dense_grad, rtol=1e-5, atol=1e-6)
        if sample:
            ref_rho = m.weight_rho.grad.reshape(-1)[dense.weight_index]
            torch.testing.assert_close(s.weight_rho.grad, ref_rho, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(dense.kl(), masked.kl())
    torch.testing.assert_close(kl_divergence(csr), masked.kl())


def test_csr_path_handles_extra_leading_dimensions():
    _, dense, csr = _pair()
    x = torch.randn(3, 4, 30)
    for noise in ("lrt",):
        y_dense, _, _ = _run(dense, x, noise, True)
        y_csr, _, _ = _run(csr, x, noise, True)
        assert y_csr.shape == (3, 4, 20)
        torch.testing.assert_close(y_csr, y_dense, rtol=1e-5, atol=1e-6)


def test_csr_weight_sampling_has_the_right_moments():
    """One weight draw per pass: over many passes the output mean is x mu^T + b and its
    variance (x * x) sigma^2^T (the draws differ from the dense path's, the law does not)."""
    _, _, csr = _pair(n_in=6, n_out=4, k=12)
    csr.noise = "weights"
    x = torch.randn(3, 6)
    with torch.no_grad():
        ys = torch.stack([csr(x) for _ in range(4000)])
        w_mu = csr.dense_values(csr.weight_mu)
        w_var = csr.dense_values(csr.sigma_of(csr.weight_rho)) ** 2
    mean = x @ w_mu.T + csr.bias
    var = (x * x) @ w_var.T
    torch.testing.assert_close(ys.mean(0), mean, atol=5 * math.sqrt(float(var.max()) / 4e3),
                               rtol=0)
    torch.testing.assert_close(ys.var(0), var, rtol=0.12, atol=1e-9)  # 5 sd of the estimate


def test_flipout_falls_back_to_the_dense_path():
    _, dense, csr = _pair()
    x = torch.randn(5, 30)
    y_dense, _, _ = _run(dense, x, "flipout", True)
    y_csr, _, _ = _run(csr, x, "flipout", True)
    torch.testing.assert_close(y_csr, y_dense)


def test_csr_linear_gradients_against_autograd_on_dense():
    torch.manual_seed(3)
    idx = _index(5 * 4, 9)
    pattern = CSRPattern(idx, (4, 5))
    values = torch.randn(9, dtype=torch.float64, requires_grad=True)
    x = torch.randn(3, 5, dtype=torch.float64, requires_grad=True)
    pattern.crow, pattern.t_crow = pattern.crow.long(), pattern.t_crow.long()
    pattern.col, pattern.t_col = pattern.col.long(), pattern.t_col.long()
    torch.autograd.gradcheck(lambda x, v: csr_linear(x, v, pattern), (x, values))


def test_sparse_conv_matches_masked_conv():
    torch.manual_seed(0)
    masked = MeanFieldConv1d(3, 5, 3, padding=1)
    sparse = MeanFieldConv1d(3, 5, 3, padding=1)
    sparse.load_state_dict(masked.state_dict())
    idx = _index(45, 20)
    mask = torch.zeros(45, dtype=torch.bool)
    mask[idx] = True
    masked.set_mask(mask.view(5, 3, 3))
    to_sparse(sparse, idx)
    x = torch.randn(2, 3, 8)
    y0, gx0, _ = _run(masked, x, "lrt", True)
    y1, gx1, s = _run(sparse, x, "lrt", True)
    torch.testing.assert_close(y1, y0)
    torch.testing.assert_close(gx1, gx0)
    assert not s.uses_csr()
    assert s.dense_mean_grad().shape == (5, 3, 3)


def test_state_dict_holds_active_values_and_compact_positions():
    _, _, csr = _pair(n_in=64, n_out=32, k=600)  # 2048 weights, 600 active: bits are smallest
    sd = csr.state_dict()
    assert sd["weight_mu"].shape == (600,) and sd["weight_rho"].shape == (600,)
    assert sd["weight_bits"].dtype == torch.uint8 and sd["weight_bits"].numel() == 256
    assert "weight_index" not in sd
    other = to_sparse(MeanFieldLinear(64, 32), torch.arange(600))
    assert str(other.load_state_dict(sd)) == "<All keys matched successfully>"
    assert torch.equal(other.weight_index, csr.weight_index)
    assert torch.equal(other.weight_mu, csr.weight_mu)
    assert other._pattern is None  # the CSR structure is rebuilt for the new positions

    few = to_sparse(MeanFieldLinear(64, 32), _index(2048, 100))  # 100 positions: gaps
    assert set(few.state_dict()) == {"weight_mu", "weight_rho", "bias", "weight_gaps"}


def test_state_dict_with_another_active_count_is_refused():
    a = to_sparse(MeanFieldLinear(8, 4), _index(32, 10))
    b = to_sparse(MeanFieldLinear(8, 4), _index(32, 11))
    with pytest.raises(RuntimeError, match="active weights"):
        b.load_state_dict(a.state_dict())
    sd = a.state_dict()
    del sd["weight_bits"]
    with pytest.raises(RuntimeError, match="weight_index"):
        a.load_state_dict(sd)


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 3000), st.data())
def test_position_encodings_round_trip_and_pick_the_smallest(n, data):
    k = data.draw(st.integers(1, n))
    idx = _index(n, k, data.draw(st.integers(0, 1000)))
    kind, packed = pack_positions(idx, n)
    sizes = {}
    for other in ("bits", "gaps", "index"):
        encoded = _encode(other, idx, n)
        assert torch.equal(unpack_positions(other, encoded, n), idx)
        sizes[other] = encoded.numel() * encoded.element_size()
    assert packed.numel() * packed.element_size() == min(sizes.values())
    assert torch.equal(unpack_positions(kind, packed, n), idx)


def _encode(kind, idx, n):
    """Each encoding written the slow obvious way (a second implementation)."""
    if kind == "bits":
        out = bytearray(math.ceil(n / 8))
        for p in idx.tolist():
            out[p // 8] |= 1 << (p % 8)
        return torch.tensor(list(out), dtype=torch.uint8)
    if kind == "gaps":
        out, prev = [], -1
        for p in idx.tolist():
            g, prev = p - prev, p
            out += [255] * (g // 255) + [g % 255]
        return torch.tensor(out, dtype=torch.uint8)
    return idx.to(torch.int32)


def test_gap_encoding_of_long_gaps():
    idx = torch.tensor([0, 254, 255, 1000, 1765])  # gaps 1, 254, 1, 745 = 2*255 + 235, 765
    kind, packed = pack_positions(idx, 100_000)
    assert kind == "gaps"
    assert packed.tolist() == [1, 254, 1, 255, 255, 235, 255, 255, 255, 0]
    assert torch.equal(unpack_positions("gaps", packed, 100_000), idx)
    with pytest.raises(VarbayesError, match="ending in a byte"):
        unpack_positions("gaps", torch.tensor([3, 255], dtype=torch.uint8), 10)


def test_cost_protocol_counts_active_weights():
    net = torch.nn.Sequential(MeanFieldLinear(10, 8), torch.nn.ReLU(), MeanFieldLinear(8, 3))
    to_sparse(net[0], _index(80, 20))
    costs = layer_macs(net, torch.randn(1, 10))
    assert [(c.n, c.a, c.positions) for c in costs] == [(80, 20, 1), (24, 24, 1)]
    assert count_parameters(net, active_only=True) == 2 * 20 + 8 + 2 * 24 + 3
    assert is_sparse(net[0]) and not is_sparse(net[2])


def test_errors_are_one_line():
    layer = MeanFieldLinear(4, 3)
    with pytest.raises(VarbayesError, match="sorted and distinct"):
        to_sparse(layer, torch.tensor([3, 1]))
    with pytest.raises(VarbayesError, match=r"\[0, 12\)"):
        to_sparse(layer, torch.tensor([1, 12]))
    with pytest.raises(VarbayesError, match="mean-field layer"):
        to_sparse(torch.nn.Linear(4, 3), torch.tensor([1]))
    with pytest.raises(VarbayesError, match="compute"):
        to_sparse(layer, torch.tensor([1]), compute="gpu")
    to_sparse(layer, torch.tensor([1, 5]))
    with pytest.raises(VarbayesError, match="already sparse"):
        to_sparse(layer, torch.tensor([1]))
    with pytest.raises(VarbayesError, match="set_index"):
        layer.set_mask(torch.ones(3, 4, dtype=torch.bool))
    with pytest.raises(VarbayesError, match="keeps 2 active"):
        layer.set_index(torch.tensor([1, 2, 3]))
