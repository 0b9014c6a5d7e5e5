"""A variational autoencoder written with `varbayes.infer` (Kingma & Welling 2014; the
IWELBO-trained variant is the IWAE of Burda et al. 2016).

Encoder 64-200-(2x10) and decoder 10-200-64 (the spec's sizes for 8x8 digits), a standard
normal prior on z, a Bernoulli likelihood on binarised pixels and a diagonal-normal
reparameterised guide. `model` and `guide` are ordinary methods that call `infer.sample`, so any
objective of `varbayes.infer` trains it through `infer.fit`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from varbayes import infer
from varbayes.infer.distributions import Bernoulli, Independent, Normal
from varbayes.io import atomic_write_json, save_tensors

FORMAT = "varbayes-model-1"


class VAE(nn.Module):
    """Bernoulli VAE; `model(x)` and `guide(x)` are the programs, x of shape (B, n_in)."""

    def __init__(self, n_in: int = 64, hidden: int = 200, latent: int = 10) -> None:
        super().__init__()
        self.sizes = {"n_in": n_in, "hidden": hidden, "latent": latent}
        self.encoder = nn.Sequential(nn.Linear(n_in, hidden), nn.ReLU(),
                                     nn.Linear(hidden, 2 * latent))
        self.decoder = nn.Sequential(nn.Linear(latent, hidden), nn.ReLU(),
                                     nn.Linear(hidden, n_in))
        self._priors: dict[tuple, Independent] = {}

    def model(self, x: torch.Tensor) -> None:
        z = infer.sample("z", self.prior(x))
        infer.sample("x", Independent(Bernoulli(logits=self.decoder(z), validate_args=False), 1),
                     obs=x)

    def prior(self, x: torch.Tensor) -> Independent:
        """The standard normal prior on z for a batch like x, built once per batch shape
        (the same object each step, so its constant normaliser is computed once; not while
        `torch.compile` traces, where the graph computes it once anyway)."""
        if torch.compiler.is_compiling():
            zeros = x.new_zeros(x.shape[:-1] + (self.sizes["latent"],))
            return Independent(Normal(zeros, 1.0 + zeros, validate_args=False), 1)
        key = (x.shape, x.dtype, x.device)  # the whole shape: no torch.Size slice per step
        prior = self._priors.get(key)
        if prior is None:
            if len(self._priors) >= 8:
                self._priors.clear()
            zeros = x.new_zeros(x.shape[:-1] + (self.sizes["latent"],))
            prior = Independent(Normal(zeros, 1.0 + zeros, validate_args=False), 1)
            self._priors[key] = prior
        return prior

    def guide(self, x: torch.Tensor) -> None:
        loc, log_scale = self.encoder(x).chunk(2, -1)
        infer.sample("z", Independent(Normal.from_log_scale(loc, log_scale, validate_args=False),
                                      1))


class VAEModel:
    """A trained VAE: `predict(x)` gives reconstruction probabilities (decoder at the guide's
    mean), `log_likelihood(x, k)` the per-example IWELBO(k) estimate of log p(x)."""

    def __init__(self, vae: VAE, meta: dict[str, Any]) -> None:
        self.vae, self.meta = vae, dict(meta)

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        x = self._check(x)
        with torch.no_grad():
            loc, _ = self.vae.encoder(x).chunk(2, -1)
            return torch.sigmoid(self.vae.decoder(loc))

    def log_likelihood(self, x: torch.Tensor, k: int = 100) -> torch.Tensor:
        with torch.no_grad():
            return infer.estimate(infer.iwelbo(k), self.vae.model, self.vae.guide,
                                  self._check(x), plates=1).value

    def _check(self, x: Any) -> torch.Tensor:
        """Images as (n, n_in) float32, finite and non-empty, or one line saying what is wrong."""
        from varbayes.data import check_arrays

        return check_arrays(x, input_shape=(self.vae.sizes["n_in"],))[0]

    def save(self, directory: str | Path) -> None:
        directory = Path(directory)
        save_tensors(directory / "model.safetensors", self.vae.state_dict())
        atomic_write_json(directory / "model.json",
                          {"format": FORMAT, **self.meta, "sizes": self.vae.sizes})


def load_vae(meta: dict[str, Any], tensors: dict[str, torch.Tensor]) -> VAEModel:
    """Rebuild a saved VAE."""
    from varbayes.models import restore_network

    vae = VAE(**meta["sizes"])
    restore_network(vae, tensors)
    return VAEModel(vae, meta)


def binarize(x: torch.Tensor, meta: dict[str, Any]) -> torch.Tensor:
    """Digits pixels back to 0..16 from the loader's standardisation, thresholded at half."""
    raw = x * meta["x_std"] + meta["x_mean"]
    return (raw > 0.5 * meta["pixel_max"]).float()
