"""Training-time image augmentation on tensors already on the device (no data loader needed).

`random_crop_flip` is the standard CIFAR recipe (random 32x32 crop of the image padded by 4
pixels, horizontal flip with probability 1/2), drawn per example from torch's global RNG, so a
seeded run and a resumed run draw the same crops.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def random_crop_flip(x: torch.Tensor, padding: int = 4,
                     fill: Sequence[float] | torch.Tensor | None = None) -> torch.Tensor:
    """Random crop after `padding` pixels of `fill` (per channel; default 0) on every side,
    then a random horizontal flip, for a batch (N, C, H, W)."""
    if x.dim() != 4:
        raise ValueError(f"random_crop_flip expects images (N, C, H, W); got {tuple(x.shape)}")
    n, c, h, w = x.shape
    padded = x.new_empty((n, c, h + 2 * padding, w + 2 * padding))
    value = torch.zeros(c) if fill is None else torch.as_tensor(fill, dtype=x.dtype)
    padded[:] = value.to(x.device).view(1, c, 1, 1)
    padded[:, :, padding:padding + h, padding:padding + w] = x
    top = torch.randint(0, 2 * padding + 1, (n,), device=x.device)
    left = torch.randint(0, 2 * padding + 1, (n,), device=x.device)
    flip = torch.rand(n, device=x.device) < 0.5
    rows = top.view(n, 1) + torch.arange(h, device=x.device)
    cols = left.view(n, 1) + torch.arange(w, device=x.device)
    cols = torch.where(flip.view(n, 1), cols.flip(1), cols)
    batch = torch.arange(n, device=x.device).view(n, 1, 1, 1)
    chan = torch.arange(c, device=x.device).view(1, c, 1, 1)
    return padded[batch, chan, rows.view(n, 1, h, 1), cols.view(n, 1, 1, w)]
