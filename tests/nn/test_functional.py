"""The functional MLP agrees with torch.nn and batches per-task weights."""

from __future__ import annotations

import torch
from torch import nn

from varbayes.nn.functional import FunctionalMLP


def test_matches_nn_sequential_and_round_trips() -> None:
    net = FunctionalMLP((2, 5, 3, 1))
    params = net.init(torch.Generator().manual_seed(0))
    seq = nn.Sequential(nn.Linear(2, 5), nn.ReLU(), nn.Linear(5, 3), nn.ReLU(), nn.Linear(3, 1))
    for i, j in enumerate((0, 2, 4)):
        seq[j].weight.data = params[f"w{i}"].T.clone()
        seq[j].bias.data = params[f"b{i}"].clone()
    x = torch.randn(4, 6, 2)
    assert torch.allclose(net.forward(params, x), seq(x), atol=1e-6)
    flat = net.flatten(params)
    assert flat.shape == (net.n_params(),)
    back = net.unflatten(flat)
    assert all(torch.equal(back[k], params[k]) for k in params)


def test_per_task_weights() -> None:
    net = FunctionalMLP((1, 4, 1))
    stacked = net.unflatten(torch.randn(3, net.n_params()))
    x = torch.randn(3, 5, 1)
    out = net.forward(stacked, x)
    one = net.forward({k: v[1] for k, v in stacked.items()}, x[1:2])
    assert torch.allclose(out[1:2], one, atol=1e-6)
