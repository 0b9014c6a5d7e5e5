"""bayesianize: any module tree (residual, non-Sequential), exclusions, shared layers, the
default networks, and rebuilding from recorded settings."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from varbayes.errors import VarbayesError
from varbayes.nn import (
    BayesSettings,
    MeanFieldConv2d,
    MeanFieldLayer,
    MeanFieldLinear,
    ScaleMixturePrior,
    bayesian_layers,
    bayesianize,
    kl_divergence,
    posterior_mean_sampler,
)
from varbayes.nn.networks import build_network, network_spec


class Residual(nn.Module):
    """A non-Sequential model: conv stem, a residual block with BatchNorm, a shared head."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.conv_a = nn.Conv2d(8, 8, 3, padding=1, bias=False)
        self.bn_a = nn.BatchNorm2d(8)
        self.conv_b = nn.Conv2d(8, 8, 3, padding=1, bias=False)
        self.bn_b = nn.BatchNorm2d(8)
        self.proj = nn.Conv1d(8, 4, 1)
        self.fc = nn.Linear(4, 5)
        self.heads = nn.ModuleDict({"main": self.fc})  # the same Linear reachable twice

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.stem(x))
        h = F.relu(h + self.bn_b(self.conv_b(F.relu(self.bn_a(self.conv_a(h))))))
        h = self.proj(h.flatten(2)).mean(-1)
        return self.heads["main"](h) + 0.0 * self.fc(h)


def test_residual_model_is_converted_in_place_and_keeps_its_function() -> None:
    torch.manual_seed(0)
    model = Residual().eval()
    x = torch.randn(2, 3, 6, 6)
    before = model(x)
    weights = {n: p.detach().clone() for n, p in model.named_parameters()}
    out = bayesianize(model, init_sigma=0.05)
    assert out is model
    assert isinstance(model.stem, MeanFieldConv2d) and isinstance(model.fc, MeanFieldLinear)
    assert model.heads["main"] is model.fc  # shared layer stays shared
    assert isinstance(model.bn_a, nn.BatchNorm2d)  # BatchNorm untouched
    assert len(bayesian_layers(model)) == 5
    assert model.stem.bias is not None and not hasattr(model.stem, "bias_rho")
    torch.testing.assert_close(model.stem.weight_mu, weights["stem.weight"])
    torch.testing.assert_close(model.stem.bias, weights["stem.bias"])
    torch.testing.assert_close(posterior_mean_sampler(model, x)[0], before)
    sampled = model(x)
    assert not torch.allclose(sampled, before)
    sampled.sum().backward()
    assert model.conv_a.weight_rho.grad is not None and model.bn_a.weight.grad is not None
    n_weights = sum(layer.weight_mu.numel() for layer in bayesian_layers(model))
    assert n_weights == 3 * 8 * 9 + 2 * 8 * 8 * 9 + 8 * 4 + 4 * 5


def test_exclude_by_name_and_pattern() -> None:
    model = bayesianize(Residual(), exclude=("fc", "conv_*"))
    assert isinstance(model.fc, nn.Linear) and isinstance(model.conv_a, nn.Conv2d)
    assert isinstance(model.stem, MeanFieldLayer)
    nested = bayesianize(build_network(network_spec("x", "classification", (20,), 3)),
                         exclude="net")
    assert not bayesian_layers(nested)
    with pytest.raises(VarbayesError, match="matches no module"):
        bayesianize(Residual(), exclude=("fc2",))


def test_a_single_layer_and_unsupported_padding() -> None:
    layer = bayesianize(nn.Linear(3, 2), init_sigma=0.1)
    assert isinstance(layer, MeanFieldLinear)
    with pytest.raises(VarbayesError, match="zero padding"):
        bayesianize(nn.Sequential(nn.Conv2d(1, 1, 3, padding=1, padding_mode="circular")))


@pytest.mark.parametrize("model,shape", [("mlp", (40,)), ("cnn", (40,)), ("cnn", (3, 8, 8))])
def test_default_networks_rebuild_from_recorded_settings(model: str, shape: tuple) -> None:
    torch.manual_seed(0)
    spec = network_spec("d", "classification", shape, 10, model)
    settings = BayesSettings(ScaleMixturePrior(0.5, 1.0, 0.01), 0.02, (), "flipout")
    net = bayesianize(build_network(spec), **settings.to_dict())
    with torch.no_grad():
        for layer in bayesian_layers(net):
            layer.weight_rho.normal_()
    rebuilt = bayesianize(build_network(spec), **settings.to_dict())
    rebuilt.load_state_dict(net.state_dict())
    x = torch.randn(2, *shape)
    net.eval()
    rebuilt.eval()
    torch.testing.assert_close(posterior_mean_sampler(rebuilt, x), posterior_mean_sampler(net, x))
    torch.testing.assert_close(kl_divergence(rebuilt), kl_divergence(net))
    assert bayesian_layers(rebuilt)[0].noise == "flipout"
