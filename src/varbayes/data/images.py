"""Image completion data: one quadrant of each image as the condition, the rest as the output.

Sohn et al. (2015) and the posterior-collapse paper both condition on one quadrant of a digit
and predict the other three. `quadrant_split` cuts flattened images into (condition, rest)
pixel vectors and `quadrant_merge` puts them back, so samples of the rest can be shown as
whole images.
"""

from __future__ import annotations

import torch

from varbayes.errors import VarbayesError, one_of

QUADRANTS = ("top-left", "top-right", "bottom-left", "bottom-right")


def quadrant_mask(image_shape: tuple[int, ...], quadrant: str = "bottom-left") -> torch.Tensor:
    """Boolean mask over the flattened pixels of one image, True inside `quadrant`.

    image_shape is (H, W) or (C, H, W) with even H and W; a quadrant covers every channel.
    """
    if quadrant not in QUADRANTS:
        raise one_of("quadrant", quadrant, QUADRANTS)
    shape = tuple(int(s) for s in image_shape)
    if len(shape) == 2:
        shape = (1, *shape)
    if len(shape) != 3 or shape[1] % 2 or shape[2] % 2:
        raise VarbayesError(f"quadrants need an image shape (H, W) or (C, H, W) with even H "
                            f"and W; got {tuple(image_shape)}")
    _, h, w = shape
    rows = slice(h // 2, h) if quadrant.startswith("bottom") else slice(0, h // 2)
    cols = slice(w // 2, w) if quadrant.endswith("right") else slice(0, w // 2)
    mask = torch.zeros(shape, dtype=torch.bool)
    mask[:, rows, cols] = True
    return mask.reshape(-1)


def quadrant_split(
    images: torch.Tensor, image_shape: tuple[int, ...], quadrant: str = "bottom-left"
) -> tuple[torch.Tensor, torch.Tensor]:
    """(condition, rest): the pixels of `quadrant` and the other pixels, each flattened in
    row-major order. `images` is (n, prod(image_shape)) or (n, *image_shape)."""
    mask = quadrant_mask(image_shape, quadrant)
    flat = images.reshape(len(images), -1)
    if flat.shape[1] != mask.numel():
        raise VarbayesError(f"images have {flat.shape[1]} pixels but image_shape "
                            f"{tuple(image_shape)} has {mask.numel()}")
    return flat[:, mask], flat[:, ~mask]


def quadrant_merge(
    condition: torch.Tensor, rest: torch.Tensor, image_shape: tuple[int, ...],
    quadrant: str = "bottom-left",
) -> torch.Tensor:
    """Inverse of `quadrant_split`: flattened images (n, prod(image_shape))."""
    mask = quadrant_mask(image_shape, quadrant)
    out = torch.empty(len(rest), mask.numel(), dtype=rest.dtype, device=rest.device)
    out[:, mask] = condition.to(rest.dtype)
    out[:, ~mask] = rest
    return out
