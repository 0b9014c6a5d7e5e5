"""Encoders, decoders and priors for (conditional) VAEs, as small MLPs or convolutions.

Every block takes flattened data (..., n_features) and an optional condition (..., c_dim) and
works on any number of leading dimensions, so a program can run with importance particles in
front of the batch. The condition is concatenated to the input of the dense layers; an
unconditional VAE has c_dim = 0.

- `GaussianEncoder`: q(z | x, c) = N(mu, diag(sigma^2)), from an MLP or a two-layer conv stack.
- `Decoder`: the likelihood's parameters from (z, c), by an MLP or transposed convolutions.
- `ConditionalPrior`: a learned p(z | c) = N(mu(c), diag(sigma(c)^2)) (Sohn et al., 2015).
- `StandardPrior`: the fixed N(0, eta_enc^2 I) of the vanilla VAE and the collapse theory.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn
from torch.distributions import Normal

from varbayes.errors import VarbayesError

ARCHITECTURES = ("mlp", "conv")


def mlp(n_in: int, hidden: Sequence[int], n_out: int) -> nn.Sequential:
    """Linear-ReLU layers acting on the last dimension (no flattening of leading dims)."""
    sizes = [n_in, *hidden]
    layers: list[nn.Module] = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(a, b), nn.ReLU()]
    layers.append(nn.Linear(sizes[-1], n_out))
    return nn.Sequential(*layers)


def _with_condition(h: torch.Tensor, c: torch.Tensor | None) -> torch.Tensor:
    """[h, c] with c broadcast over h's leading (particle) dimensions."""
    if c is None or c.shape[-1] == 0:
        return h
    return torch.cat([h, c.expand(*h.shape[:-1], c.shape[-1])], -1)


def _gaussian(out: torch.Tensor) -> Normal:
    mu, log_var = out.chunk(2, -1)
    return Normal(mu, (0.5 * log_var).exp(), validate_args=False)


def check_image_shape(image_shape: Sequence[int], n_features: int) -> tuple[int, int, int]:
    """(C, H, W) for the conv blocks: H and W divisible by 4, C*H*W = n_features."""
    shape = tuple(int(s) for s in image_shape)
    if len(shape) == 2:
        shape = (1, *shape)
    if len(shape) != 3 or shape[1] % 4 or shape[2] % 4 or math.prod(shape) != n_features:
        raise VarbayesError(f"conv encoders/decoders need an image shape (C, H, W) with H and W "
                            f"divisible by 4 and C*H*W = {n_features}; got {tuple(image_shape)}")
    return shape  # type: ignore[return-value]


class ConvFeatures(nn.Module):
    """Two stride-2 3x3 convolutions with ReLU, flattened: (..., C*H*W) -> (..., n_out)."""

    def __init__(self, image_shape: tuple[int, int, int], width: int = 32) -> None:
        super().__init__()
        c, h, w = image_shape
        self.image_shape = image_shape
        self.net = nn.Sequential(
            nn.Conv2d(c, width, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(width, 2 * width, 3, stride=2, padding=1), nn.ReLU(), nn.Flatten())
        self.n_out = 2 * width * (h // 4) * (w // 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lead = x.shape[:-1]
        return self.net(x.reshape(-1, *self.image_shape)).reshape(*lead, self.n_out)


class ConvOutput(nn.Module):
    """A dense layer to a (2 width, H/4, W/4) map and two stride-2 transposed convolutions to
    (C, H, W), flattened: (..., n_in) -> (..., C*H*W)."""

    def __init__(self, n_in: int, image_shape: tuple[int, int, int], width: int = 32) -> None:
        super().__init__()
        c, h, w = image_shape
        self.image_shape, self.start = image_shape, (2 * width, h // 4, w // 4)
        self.dense = nn.Sequential(nn.Linear(n_in, math.prod(self.start)), nn.ReLU())
        self.net = nn.Sequential(
            nn.ConvTranspose2d(2 * width, width, 4, stride=2, padding=1), nn.ReLU(),
            nn.ConvTranspose2d(width, c, 4, stride=2, padding=1))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        lead = h.shape[:-1]
        maps = self.dense(h).reshape(-1, *self.start)
        return self.net(maps).reshape(*lead, math.prod(self.image_shape))


class GaussianEncoder(nn.Module):
    """q(z | x, c): a diagonal Gaussian whose mean and log-variance come from an MLP over
    [x, c], or from conv features of the image x concatenated with c."""

    def __init__(self, x_dim: int, c_dim: int, d_z: int, hidden: Sequence[int] = (128,),
                 architecture: str = "mlp", image_shape: Sequence[int] | None = None,
                 width: int = 32) -> None:
        super().__init__()
        if architecture == "conv":
            self.features: nn.Module = ConvFeatures(
                check_image_shape(image_shape or (), x_dim), width)
            n_feat = self.features.n_out
        elif architecture == "mlp":
            self.features, n_feat = nn.Identity(), x_dim
        else:
            raise VarbayesError(f"unknown encoder {architecture!r}; valid: mlp, conv")
        self.head = mlp(n_feat + c_dim, hidden, 2 * d_z)

    def forward(self, x: torch.Tensor, c: torch.Tensor | None = None) -> Normal:
        return _gaussian(self.head(_with_condition(self.features(x), c)))


class Decoder(nn.Module):
    """The likelihood's raw parameters (one per data element) from [z, c], by an MLP or by
    transposed convolutions after an MLP trunk."""

    def __init__(self, d_z: int, c_dim: int, x_dim: int, hidden: Sequence[int] = (128,),
                 architecture: str = "mlp", image_shape: Sequence[int] | None = None,
                 width: int = 32) -> None:
        super().__init__()
        if architecture == "conv":
            shape = check_image_shape(image_shape or (), x_dim)
            trunk = mlp(d_z + c_dim, hidden[:-1], hidden[-1]) if hidden else nn.Identity()
            n_trunk = hidden[-1] if hidden else d_z + c_dim
            self.net: nn.Module = nn.Sequential(trunk, nn.ReLU(), ConvOutput(n_trunk, shape, width))
        elif architecture == "mlp":
            self.net = mlp(d_z + c_dim, hidden, x_dim)
        else:
            raise VarbayesError(f"unknown decoder {architecture!r}; valid: mlp, conv")

    def forward(self, z: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        return self.net(_with_condition(z, c))


class ConditionalPrior(nn.Module):
    """A learned prior p(z | c) = N(mu(c), diag(sigma(c)^2)) from an MLP over c."""

    def __init__(self, c_dim: int, d_z: int, hidden: Sequence[int] = (128,)) -> None:
        super().__init__()
        if c_dim < 1:
            raise VarbayesError("a conditional prior needs a condition (c_dim >= 1)")
        self.net = mlp(c_dim, hidden, 2 * d_z)

    def forward(self, c: torch.Tensor) -> Normal:
        return _gaussian(self.net(c))


class StandardPrior(nn.Module):
    """p(z) = N(0, std^2 I), the same for every condition."""

    def __init__(self, d_z: int, std: float = 1.0) -> None:
        super().__init__()
        if not std > 0:
            raise VarbayesError(f"the prior's std must be > 0; got {std}")
        self.d_z, self.std = d_z, float(std)

    def forward(self, c: torch.Tensor) -> Normal:
        zero = c.new_zeros(*c.shape[:-1], self.d_z)
        return Normal(zero, torch.full_like(zero, self.std), validate_args=False)
