"""A per-weight Gaussian prior N(0, 1/precision) on mean-field layers (hierarchical priors)."""

from __future__ import annotations

import pytest
import torch
from torch.distributions import Normal, kl_divergence

from varbayes.errors import VarbayesError
from varbayes.nn.meanfield import MeanFieldLinear


def test_kl_uses_the_per_weight_precision_and_the_mask() -> None:
    torch.manual_seed(0)
    layer = MeanFieldLinear(5, 3, init_sigma=0.2)
    precision = torch.rand(3, 5) * 10 + 0.5
    layer.set_prior_precision(precision)
    q = Normal(layer.weight_mu, layer.weight_sigma())
    p = Normal(torch.zeros(3, 5), precision.rsqrt())
    assert torch.allclose(layer.kl(), kl_divergence(q, p).sum(), rtol=1e-5)
    mask = torch.rand(3, 5) > 0.4
    layer.set_mask(mask)
    q = Normal(layer.weight_mu[mask], layer.sigma_of(layer.weight_rho)[mask])
    p = Normal(torch.zeros(int(mask.sum())), precision[mask].rsqrt())
    assert torch.allclose(layer.kl(), kl_divergence(q, p).sum(), rtol=1e-5)
    layer.set_prior_precision(None)
    layer.set_mask(None)
    assert torch.allclose(layer.kl(), layer.prior.kl_sum(layer.weight_mu, layer.weight_sigma()))


def test_precision_survives_a_state_dict_round_trip() -> None:
    layer = MeanFieldLinear(4, 2)
    layer.set_prior_precision(torch.full((2, 4), 3.0))
    fresh = MeanFieldLinear(4, 2)
    fresh.load_state_dict(layer.state_dict())
    assert torch.equal(fresh.prior_precision, layer.prior_precision)
    assert torch.allclose(fresh.kl(), layer.kl())


def test_bad_precision() -> None:
    layer = MeanFieldLinear(4, 2)
    with pytest.raises(VarbayesError, match="prior precision"):
        layer.set_prior_precision(torch.zeros(2, 4))
    with pytest.raises(VarbayesError, match="prior precision"):
        layer.set_prior_precision(torch.ones(4, 2))
