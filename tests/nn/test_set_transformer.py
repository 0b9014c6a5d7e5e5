"""Set-transformer blocks: the PFN mask, permutation invariance, query independence."""

from __future__ import annotations

import torch

from varbayes.methods.amortized.pfn import PFNNetwork
from varbayes.nn.set_transformer import SetDecoder, SetEncoder, pfn_attention_mask


def _randomise(module: torch.nn.Module, seed: int = 0) -> None:
    """Give the zero-initialised output projections random values (a trained-like net)."""
    g = torch.Generator().manual_seed(seed)
    for p in module.parameters():
        if p.dim() >= 1 and bool((p == 0).all()):
            p.data = 0.1 * torch.randn(p.shape, generator=g)


def test_pfn_mask_structure() -> None:
    m = pfn_attention_mask(3, 2)
    assert m[:, :3].all()                      # everyone sees the context
    assert m[3, 3] and m[4, 4]                 # a query sees itself
    assert not m[3, 4] and not m[4, 3]         # ... and no other query
    assert not m[:3, 3:].any()                 # the context never sees queries


def test_output_projections_start_at_zero() -> None:
    enc = SetEncoder(16, 2, 32, 2)
    for layer in enc.layers:
        assert bool((layer.self_attn.out_proj.weight == 0).all())
        assert bool((layer.linear2.weight == 0).all())


def _net() -> PFNNetwork:
    torch.manual_seed(0)
    net = PFNNetwork(2, 7, 32, 4, 64, 2).eval()
    _randomise(net)
    return net


def test_context_permutation_invariance() -> None:
    net = _net()
    g = torch.Generator().manual_seed(1)
    xc, yc, xq = torch.rand(3, 6, 2, generator=g), torch.randn(3, 6, generator=g), \
        torch.rand(3, 4, 2, generator=g)
    perm = torch.randperm(6, generator=g)
    a = net(xc, yc, xq)
    b = net(xc[:, perm], yc[:, perm], xq)
    assert torch.allclose(a, b, atol=1e-5)
    assert not torch.allclose(a, net(xc, yc + 1, xq), atol=1e-3)  # the context does matter


def test_queries_are_independent_of_each_other() -> None:
    net = _net()
    g = torch.Generator().manual_seed(2)
    xc, yc, xq = torch.rand(2, 5, 2, generator=g), torch.randn(2, 5, generator=g), \
        torch.rand(2, 6, 2, generator=g)
    full = net(xc, yc, xq)
    alone = torch.cat([net(xc, yc, xq[:, i:i + 1]) for i in range(6)], dim=1)
    assert torch.allclose(full, alone, atol=1e-5)
    other = xq.clone()
    other[:, 1:] = torch.rand(2, 5, 2, generator=g)
    assert torch.allclose(net(xc, yc, other)[:, 0], full[:, 0], atol=1e-5)


def test_empty_context_is_allowed() -> None:
    net = _net()
    out = net(torch.zeros(2, 0, 2), torch.zeros(2, 0), torch.rand(2, 3, 2))
    assert out.shape == (2, 3, 7) and torch.isfinite(out).all()


def test_decoder_is_equivariant_over_targets_and_ignores_padding() -> None:
    torch.manual_seed(0)
    dec = SetDecoder(16, 2, 32, 2).eval()
    _randomise(dec)
    g = torch.Generator().manual_seed(3)
    tgt, mem = torch.randn(2, 4, 16, generator=g), torch.randn(2, 3, 16, generator=g)
    perm = torch.tensor([2, 0, 3, 1])
    assert torch.allclose(dec(tgt, mem)[:, perm], dec(tgt[:, perm], mem), atol=1e-5)
    padded = torch.cat([mem, 100 * torch.randn(2, 2, 16, generator=g)], dim=1)
    pad_mask = torch.tensor([[False] * 3 + [True] * 2] * 2)
    assert torch.allclose(dec(tgt, padded, pad_mask), dec(tgt, mem), atol=1e-5)
