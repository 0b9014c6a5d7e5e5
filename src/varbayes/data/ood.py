"""Out-of-distribution companions for the classification datasets.

A dataset names its companion in `meta["ood"]`; `ood_inputs(ds)` builds it on demand (so large
sets such as CIFAR-10 hold no second copy) from a fixed seed, identically on every call. The
inputs have the dataset's input_shape and are preprocessed exactly like the in-distribution
inputs, so an OOD score (AUROC/AUPR) sees the same pipeline for both.

- "shuffled-steps": every test sequence with its time steps permuted (its own permutation),
  permuted in raw units and standardized like the data (MNIST-1D).
- "inverted": every test image inverted in raw pixel units, `pixel_max - pixel`, then
  standardized like the data (digits: 16 - value; CIFAR-10: 1 - value, the photographic
  negative).
- "ring": `n_test` points drawn uniformly from an annulus around the data (two moons);
  `meta["ood_ring"]` gives its centre and radii.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from varbayes.data.dataset import Dataset

OOD_SEED = 20_240_601


def ood_inputs(ds: Dataset) -> torch.Tensor | None:
    """The OOD companion named by `ds.meta["ood"]`, or None when it has none."""
    kind = ds.meta.get("ood")
    return None if kind is None else _KINDS[kind](ds)


def _shuffled_steps(ds: Dataset) -> torch.Tensor:
    raw = ds.unstandardize(ds.x_test)
    g = torch.Generator().manual_seed(OOD_SEED)
    order = torch.rand(raw.shape, generator=g).argsort(dim=-1).to(raw.device)
    return ds.standardize(raw.gather(-1, order))


def _inverted(ds: Dataset) -> torch.Tensor:
    raw = ds.unstandardize(ds.x_test)
    return ds.standardize(float(ds.meta["pixel_max"]) - raw)


def _ring(ds: Dataset) -> torch.Tensor:
    ring = ds.meta["ood_ring"]
    (cx, cy), (r_in, r_out) = ring["center"], ring["radii"]
    g = torch.Generator().manual_seed(OOD_SEED)
    u = torch.rand(ds.n_test, 2, generator=g, dtype=torch.float64)
    angle = 2 * math.pi * u[:, 0]
    radius = torch.sqrt(r_in**2 + (r_out**2 - r_in**2) * u[:, 1])  # uniform over the area
    points = torch.stack([cx + radius * torch.cos(angle), cy + radius * torch.sin(angle)], dim=1)
    return points.to(torch.float32)


_KINDS: dict[str, Callable[[Dataset], torch.Tensor]] = {
    "shuffled-steps": _shuffled_steps,
    "inverted": _inverted,
    "ring": _ring,
}
