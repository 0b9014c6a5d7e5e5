"""Small model/guide programs shared by the inference tests."""

from __future__ import annotations

import torch

from varbayes import infer
from varbayes.infer import distributions as lean


def vae_programs(enc: torch.nn.Module, dec: torch.nn.Module):
    """A two-dimensional Gaussian-latent VAE with a Bernoulli likelihood: (model, guide)."""
    def model(x):
        prior = lean.Independent(lean.Normal(x.new_zeros(x.shape[0], 2), 1.0), 1)
        z = infer.sample("z", prior)
        infer.sample("x", lean.Independent(lean.Bernoulli(logits=dec(z)), 1), obs=x)

    def guide(x):
        loc, log_scale = enc(x).chunk(2, -1)
        infer.sample("z", lean.Independent(lean.Normal(loc, log_scale.exp()), 1))

    return model, guide
