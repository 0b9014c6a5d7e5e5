"""Encoders, decoders and priors: shapes with particle dimensions, conv variants, errors."""

from __future__ import annotations

import pytest
import torch

from varbayes.errors import VarbayesError
from varbayes.latent import ConditionalPrior, Decoder, GaussianEncoder, StandardPrior


@pytest.mark.parametrize("architecture", ["mlp", "conv"])
def test_encoder_and_decoder_shapes(architecture: str) -> None:
    enc = GaussianEncoder(64, 3, 4, (32,), architecture, (1, 8, 8), width=8)
    dec = Decoder(4, 3, 64, (32,), architecture, (1, 8, 8), width=8)
    x, c = torch.rand(5, 64), torch.rand(5, 3)
    q = enc(x, c)
    assert q.mean.shape == q.stddev.shape == (5, 4) and bool((q.stddev > 0).all())
    z = q.rsample((7,))  # particles in front of the batch
    assert dec(z, c).shape == (7, 5, 64)
    assert dec(q.mean, c).shape == (5, 64)


def test_the_condition_changes_the_output() -> None:
    torch.manual_seed(0)
    dec = Decoder(2, 3, 10)
    z = torch.zeros(1, 2)
    a, b = torch.tensor([[1.0, 0, 0]]), torch.tensor([[0, 1.0, 0]])
    assert not torch.allclose(dec(z, a), dec(z, b))


def test_priors() -> None:
    c = torch.rand(6, 3)
    p = ConditionalPrior(3, 4, (16,))(c)
    assert p.mean.shape == (6, 4)
    s = StandardPrior(4, std=2.0)(torch.zeros(6, 0))
    assert torch.equal(s.mean, torch.zeros(6, 4)) and torch.equal(s.stddev, torch.full((6, 4), 2.0))
    with pytest.raises(VarbayesError, match="needs a condition"):
        ConditionalPrior(0, 4)


def test_conv_blocks_need_a_fitting_image_shape() -> None:
    with pytest.raises(VarbayesError, match="divisible by 4"):
        GaussianEncoder(36, 0, 2, architecture="conv", image_shape=(1, 6, 6))
    with pytest.raises(VarbayesError, match="C\\*H\\*W = 60"):
        Decoder(2, 0, 60, architecture="conv", image_shape=(1, 8, 8))
    with pytest.raises(VarbayesError, match="unknown encoder"):
        GaussianEncoder(4, 0, 2, architecture="rnn")
