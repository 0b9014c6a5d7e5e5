"""A conditional VAE assembled from the blocks: q(z | x, c), p(z | c), p(x | z, c).

`CVAE` is an `nn.Module` whose `model(x, c)` and `guide(x, c)` are `varbayes.infer` programs,
so every objective of the programmable-VI core (the beta-weighted ELBO, IWELBO, ...) trains
and evaluates it; nothing here computes a bound itself. An unconditional VAE is the same
class with c_dim = 0 and a standard prior. `VAESpec` is the JSON description saved next to
the weights so a model file rebuilds it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.distributions import Independent, Normal

from varbayes import infer
from varbayes.data.validate import check_finite
from varbayes.errors import VarbayesError, one_of
from varbayes.io import atomic_write_json, save_tensors
from varbayes.latent.likelihoods import Likelihood, make_likelihood
from varbayes.latent.networks import ConditionalPrior, Decoder, GaussianEncoder, StandardPrior
from varbayes.models import FORMAT, restore_network

PRIORS = ("standard", "conditional")


@dataclass
class VAESpec:
    """Sizes and choices of a (conditional) VAE; JSON-serialisable."""

    x_dim: int
    d_z: int
    c_dim: int = 0
    hidden: tuple[int, ...] = (128,)
    encoder: str = "mlp"
    decoder: str = "mlp"
    image_shape: tuple[int, ...] | None = None
    likelihood: str = "bernoulli"
    likelihood_std: float = 1.0
    learn_std: bool = False
    prior: str = "standard"
    prior_std: float = 1.0
    prior_hidden: tuple[int, ...] = field(default=(128,))

    def __post_init__(self) -> None:
        self.hidden = tuple(int(h) for h in self.hidden)
        self.prior_hidden = tuple(int(h) for h in self.prior_hidden)
        if self.image_shape is not None:
            self.image_shape = tuple(int(s) for s in self.image_shape)
        for name in ("x_dim", "d_z"):
            if getattr(self, name) < 1:
                raise VarbayesError(f"{name} must be >= 1; got {getattr(self, name)}")
        if self.c_dim < 0:
            raise VarbayesError(f"c_dim must be >= 0; got {self.c_dim}")
        if self.prior not in PRIORS:
            raise one_of("prior", self.prior, PRIORS)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> VAESpec:
        return cls(**values)


class CVAE(nn.Module):
    """q(z | x, c) (`encoder`), p(z | c) (`prior_net`), p(x | z, c) (`decoder` + `likelihood`).

    Data x is (n, x_dim) (flattened images), the condition c is (n, c_dim) or None.
    """

    def __init__(self, spec: VAESpec) -> None:
        super().__init__()
        self.spec = spec
        s = spec
        self.encoder = GaussianEncoder(s.x_dim, s.c_dim, s.d_z, s.hidden, s.encoder,
                                       s.image_shape)
        self.decoder = Decoder(s.d_z, s.c_dim, s.x_dim, s.hidden, s.decoder, s.image_shape)
        self.prior_net: nn.Module = (
            ConditionalPrior(s.c_dim, s.d_z, s.prior_hidden) if s.prior == "conditional"
            else StandardPrior(s.d_z, s.prior_std))
        self.likelihood: Likelihood = make_likelihood(s.likelihood, s.x_dim, s.likelihood_std,
                                                      s.learn_std)

    # distributions ---------------------------------------------------------------------------
    def posterior(self, x: torch.Tensor, c: torch.Tensor | None = None) -> Normal:
        """q(z | x, c), per dimension (unsummed), batch shape (n, d_z)."""
        return self.encoder(x, self._cond(c, x))

    def prior(self, c: torch.Tensor | None = None, n: int | None = None) -> Normal:
        """p(z | c) per dimension; without a condition, n copies of the fixed prior."""
        if c is None:
            if n is None:
                raise VarbayesError("prior() needs the condition c or the number of rows n")
            c = torch.zeros(n, 0, device=self._device())
        return self.prior_net(c)

    def decode(self, z: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        """The likelihood's raw parameters (logits or means), shape (..., x_dim)."""
        return self.decoder(z, self._cond(c, z))

    # varbayes.infer programs -----------------------------------------------------------------
    def model(self, x: torch.Tensor, c: torch.Tensor | None = None) -> None:
        """p(z | c) p(x | z, c): latent site "z", observed site "x"."""
        c = self._cond(c, x)
        z = infer.sample("z", Independent(self.prior_net(c), 1))
        infer.sample("x", self.likelihood.distribution(self.decoder(z, c)), obs=x)

    def guide(self, x: torch.Tensor, c: torch.Tensor | None = None) -> None:
        """q(z | x, c): site "z"."""
        infer.sample("z", Independent(self.encoder(x, self._cond(c, x)), 1))

    # generation -------------------------------------------------------------------------------
    @torch.no_grad()
    def generate(self, c: torch.Tensor | None = None, n_samples: int = 1,
                 n: int | None = None) -> torch.Tensor:
        """Expected data (Bernoulli means / Gaussian means) for z ~ p(z | c): (n_samples, n,
        x_dim). Draws from the prior network, never from q (that would hide a bad prior)."""
        p = self.prior(c, n)
        z = p.sample((n_samples,))
        return self.likelihood.mean(self.decode(z, c))

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        """Expected data at the posterior mean of z."""
        return self.likelihood.mean(self.decode(self.posterior(x, c).mean, c))

    # input checks -----------------------------------------------------------------------------
    def check_inputs(self, x: torch.Tensor | None, c: torch.Tensor | None,
                     names: tuple[str, str] = ("x", "c")) -> None:
        """One-line errors for data or conditions of the wrong width or outside the support."""
        if x is not None:
            if x.ndim != 2 or x.shape[1] != self.spec.x_dim:
                raise VarbayesError(f"{names[0]} has shape {tuple(x.shape)}; valid: "
                                    f"(n, {self.spec.x_dim})")
            check_finite(x, names[0])
            self.likelihood.check(x, names[0])
        if c is not None:
            check_finite(c, names[1])
        width = 0 if c is None else (c.shape[1] if c.ndim == 2 else None)
        if width != self.spec.c_dim:
            got = "none" if c is None else f"shape {tuple(c.shape)}"
            want = (f"(n, {self.spec.c_dim}) condition vectors" if self.spec.c_dim
                    else "none (this VAE is unconditional)")
            raise VarbayesError(f"{names[1]} has {got}; valid: {want}")
        if x is not None and c is not None and len(c) != len(x):
            raise VarbayesError(f"{names[0]} has {len(x)} rows but {names[1]} has {len(c)}")

    def _cond(self, c: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor:
        if c is None:
            return like.new_zeros(*like.shape[:-1], 0)
        return c

    def _device(self) -> torch.device:
        return next(self.parameters()).device



class CVAEModel:
    """A trained CVAE as a model file: `predict(c)` gives samples' expected data for
    conditions c (drawn from the prior network), `log_likelihood(x, c)` the importance-sampled
    log p(x | c); saved as model.safetensors + model.json (the spec and `meta`)."""

    def __init__(self, cvae: CVAE, meta: dict[str, Any]) -> None:
        self.cvae, self.meta = cvae, dict(meta)

    def predict(self, c: Any, n_samples: int = 1) -> torch.Tensor:
        """(n_samples, n, x_dim) expected data for z ~ p(z | c) (c: (n, c_dim) conditions)."""
        c = torch.as_tensor(c, dtype=torch.float32)
        self.cvae.check_inputs(None, c, names=("x", "condition"))
        return self.cvae.generate(c, n_samples)

    def log_likelihood(self, x: Any, c: Any = None, samples: int = 1000) -> torch.Tensor:
        from varbayes.latent.loglik import log_likelihood

        x = torch.as_tensor(x, dtype=torch.float32)
        c = None if c is None else torch.as_tensor(c, dtype=torch.float32)
        self.cvae.check_inputs(x, c)
        return log_likelihood(self.cvae, x, c, samples=samples)

    def save(self, directory: str | Path) -> None:
        directory = Path(directory)
        save_tensors(directory / "model.safetensors", self.cvae.state_dict())
        atomic_write_json(directory / "model.json", {"format": FORMAT, **self.meta,
                                                     "vae": self.cvae.spec.to_dict()})


def load_cvae(meta: dict[str, Any], tensors: dict[str, torch.Tensor]) -> CVAEModel:
    """Rebuild a saved CVAE (the `load_model` of methods that save one)."""
    cvae = CVAE(VAESpec.from_dict(meta["vae"]))
    restore_network(cvae, tensors)
    cvae.eval()
    return CVAEModel(cvae, {k: v for k, v in meta.items() if k not in ("vae", "format")})
