"""The compacted MLP computes what the pruned one does, with the report's widths."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from varbayes.errors import VarbayesError
from varbayes.metrics import structure_report
from varbayes.nn.compact import compact_mlp


def pruned_chain(seed: int = 0) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    sizes = [7, 12, 9, 4]
    ws = [torch.randn(o, i, generator=g) * (torch.rand(o, i, generator=g) < 0.5)
          for i, o in zip(sizes[:-1], sizes[1:])]
    ws[0][[1, 4]] = 0.0  # units 1 and 4 of hidden layer 1: no incoming weights
    ws[1][:, [2, 7]] = 0.0  # units 2 and 7 of hidden layer 1: no outgoing weights
    ws[1][3] = 0.0  # unit 3 of hidden layer 2: no incoming
    bs = [torch.randn(w.shape[0], generator=g) for w in ws]
    return ws, bs


def reference(ws: list[torch.Tensor], bs: list[torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    h = x
    for l, (w, b) in enumerate(zip(ws, bs)):
        h = h @ w.T + b
        if l < len(ws) - 1:
            h = torch.relu(h)
    return h


def test_same_function_and_widths() -> None:
    ws, bs = pruned_chain()
    net = compact_mlp(ws, bs)
    x = torch.randn(50, 7)
    assert torch.allclose(net(x), reference(ws, bs, x), atol=1e-5)
    widths = [m.out_features for m in net if isinstance(m, nn.Linear)]
    report = structure_report(ws)
    assert [7, *widths] == report["compact_widths"]
    assert sum(m.weight.numel() for m in net if isinstance(m, nn.Linear)) == \
        report["compact_macs"]


def test_without_removal_keeps_the_shapes() -> None:
    ws, bs = pruned_chain(1)
    net = compact_mlp(ws, bs, remove=False)
    assert [m.weight.shape for m in net if isinstance(m, nn.Linear)] == [w.shape for w in ws]
    x = torch.randn(5, 7)
    assert torch.allclose(net(x), reference(ws, bs, x), atol=1e-5)


def test_bad_chain() -> None:
    with pytest.raises(VarbayesError, match="reads"):
        compact_mlp([torch.ones(3, 2), torch.ones(2, 4)], [None, None])
    with pytest.raises(VarbayesError, match="one bias"):
        compact_mlp([torch.ones(3, 2)], [])
