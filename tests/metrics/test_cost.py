"""Parameter, byte, MAC and training-FLOPs counters against hand counts and spec 2.9."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn.utils import prune

from varbayes.metrics import (
    LayerCost,
    as_dense,
    count_parameters,
    forward_backward_flops,
    layer_macs,
    model_bytes,
    train_flops,
)


def toy_conv1d() -> nn.Module:
    # Conv1d(2 -> 4, k=3) on length 10: L_out = 8; then Linear(4 * 8 -> 5)
    return nn.Sequential(nn.Conv1d(2, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(32, 5))


def test_layer_macs_hand_count_conv1d_linear() -> None:
    layers = layer_macs(toy_conv1d(), torch.zeros(1, 2, 10))
    assert [(c.name, c.kind, c.n, c.a, c.positions) for c in layers] == [
        ("0", "Conv1d", 4 * 2 * 3, 24, 8), ("3", "Linear", 32 * 5, 160, 1)]
    assert [c.macs for c in layers] == [24 * 8, 160]
    # 2 FLOPs per MAC, 3 passes, batch 16
    flops = forward_backward_flops(toy_conv1d(), torch.zeros(3, 2, 10), 16)
    assert flops == 2 * 3 * 16 * (192 + 160)


def test_layer_macs_hand_count_conv2d_and_sequence_linear() -> None:
    conv = nn.Conv2d(3, 2, 3, stride=2, padding=1)  # 8x8 -> 4x4
    (c,) = layer_macs(conv, torch.zeros(2, 3, 8, 8))
    assert (c.n, c.a, c.positions, c.macs) == (2 * 3 * 9, 54, 16, 54 * 16)
    (lin,) = layer_macs(nn.Linear(4, 6), torch.zeros(1, 7, 4))  # 7 positions per example
    assert (lin.n, lin.positions) == (24, 7)
    shared = nn.Linear(3, 3)
    twice = layer_macs(nn.Sequential(shared, nn.Sequential(shared)), torch.zeros(1, 3))
    assert [c.name for c in twice] == ["0", "0"]  # one layer, hooked once, called twice
    grouped = nn.Conv1d(4, 4, 3, groups=2)
    assert layer_macs(grouped, torch.zeros(1, 4, 5))[0].macs == 4 * 2 * 3 * 3


class MaskedLinear(nn.Module):
    """A layer using the `weight_numel` / `active_numel` protocol around an nn.Linear."""

    def __init__(self, n_in: int, n_out: int, active: int) -> None:
        super().__init__()
        self.inner = nn.Linear(n_in, n_out)
        self.weight_numel, self.active_numel = n_in * n_out, active

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x)


class ReportsItsCost(nn.Module):
    """A layer using the `cost_info(output)` protocol, returning a tuple."""

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return x[:, :, :-1], x.sum()

    def cost_info(self, output: tuple[torch.Tensor, torch.Tensor]) -> tuple[int, int, int]:
        return 100, 10, output[0].shape[-1]


def test_protocol_layers_count_once() -> None:
    model = nn.Sequential(MaskedLinear(6, 4, active=5), nn.Unflatten(1, (2, 2)))
    (c,) = layer_macs(model, torch.zeros(1, 6))
    assert (c.name, c.kind, c.n, c.a, c.positions) == ("0", "MaskedLinear", 24, 5, 1)
    (c,) = layer_macs(ReportsItsCost(), torch.zeros(1, 2, 9))
    assert (c.name, c.n, c.a, c.positions) == ("ReportsItsCost", 100, 10, 8)


def test_pruned_builtin_layer_counts_active_weights() -> None:
    lin = nn.Linear(4, 3)
    prune.l1_unstructured(lin, "weight", amount=5)
    assert layer_macs(lin, torch.zeros(1, 4))[0].a == 7


def test_layer_macs_restores_modes_and_statistics() -> None:
    model = nn.Sequential(nn.Linear(3, 3), nn.BatchNorm1d(3))
    model.train()
    model[1].eval()
    before = model[1].running_mean.clone()
    layer_macs(model, torch.randn(8, 3) + 5)
    assert model.training and model[0].training and not model[1].training
    assert torch.equal(model[1].running_mean, before)


def test_count_parameters() -> None:
    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    assert count_parameters(model) == count_parameters(model, active_only=True) == 23
    prune.l1_unstructured(model[0], "weight", amount=6)
    assert count_parameters(model) == 23
    assert count_parameters(model, active_only=True) == 17

    class Custom(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.mu = nn.Parameter(torch.zeros(10))
            self.child = nn.Linear(5, 5)

        def active_parameter_count(self) -> int:
            return 4

    tied, custom = nn.Linear(2, 2), Custom()
    wrapper = nn.ModuleList([custom, tied, nn.Sequential(tied, custom)])
    assert count_parameters(wrapper) == 10 + 30 + 6
    assert count_parameters(wrapper, active_only=True) == 4 + 6

    own_mask = nn.Linear(3, 3, bias=False)
    own_mask.register_buffer("weight_mask", torch.eye(3, dtype=torch.bool))
    assert count_parameters(own_mask, active_only=True) == 3


def test_model_bytes(tmp_path) -> None:
    a, b = tmp_path / "model.safetensors", tmp_path / "config.json"
    a.write_bytes(b"x" * 1000)
    b.write_bytes(b"{}")
    assert model_bytes(a) == 1000
    assert model_bytes([a, str(b)]) == 1002


def test_train_flops_per_iteration_formula() -> None:
    layers = [LayerCost("l1", "Linear", n=100, a=30, positions=1),
              LayerCost("c1", "Conv2d", n=50, a=50, positions=16)]
    active = 30 + 50 * 16
    inactive = 70
    assert train_flops(layers, 10, 32, 2) == 10 * 2 * 3 * 2 * 32 * active
    assert train_flops(layers, 10, 32, 2, update_steps=4) == (
        10 * 2 * 3 * 2 * 32 * active + 4 * 2 * 32 * inactive)
    assert train_flops(layers, 0, 32, 2) == 0


@pytest.mark.parametrize("d, delta, expected", [(0.1, 25, 0.1045), (0.1, 100, 0.1011),
                                                (0.05, 25, 0.0547), (0.02, 25, 0.0249)])
def test_train_flops_reproduces_the_spec_ratio(d: float, delta: int, expected: float) -> None:
    layers = [LayerCost("l1", "Linear", n=40_000, a=round(d * 40_000), positions=1),
              LayerCost("c1", "Conv1d", n=20_000, a=round(d * 20_000), positions=12)]
    steps, batch = 4_800, 64
    updates = 3 * steps // (4 * delta)  # U = 0.75 T / delta
    ratio = (train_flops(layers, steps, batch, 2, updates)
             / train_flops(as_dense(layers), steps, batch, 2))
    assert ratio == pytest.approx(d + (updates / steps) * (1 - d) / 6, rel=1e-12)
    assert ratio == pytest.approx(d + 0.125 * (1 - d) / delta, rel=1e-12)
    assert ratio == pytest.approx(expected, abs=6e-5)  # the spec's quoted values, rounded
    deterministic = train_flops(as_dense(layers), steps, batch, 1)
    assert deterministic / train_flops(as_dense(layers), steps, batch, 2) == 0.5
