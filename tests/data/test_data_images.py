"""Image-completion helpers and pixels in [0, 1]."""

from __future__ import annotations

import pytest
import torch

from varbayes.data import load, quadrant_mask, quadrant_merge, quadrant_split
from varbayes.errors import VarbayesError


def test_quadrant_masks_tile_the_image() -> None:
    masks = [quadrant_mask((8, 8), q) for q in
             ("top-left", "top-right", "bottom-left", "bottom-right")]
    assert all(int(m.sum()) == 16 for m in masks)
    assert torch.equal(torch.stack(masks).sum(0), torch.ones(64, dtype=torch.long))
    image = torch.arange(64).reshape(8, 8)
    assert torch.equal(image.reshape(-1)[masks[2]], image[4:, :4].reshape(-1))  # bottom-left


def test_split_and_merge_round_trip() -> None:
    images = torch.rand(5, 64)
    cond, rest = quadrant_split(images, (1, 8, 8), "top-right")
    assert cond.shape == (5, 16) and rest.shape == (5, 48)
    assert torch.equal(quadrant_merge(cond, rest, (1, 8, 8), "top-right"), images)


def test_bad_quadrant_inputs_are_one_line() -> None:
    with pytest.raises(VarbayesError, match="unknown quadrant"):
        quadrant_mask((8, 8), "middle")
    with pytest.raises(VarbayesError, match="even H"):
        quadrant_mask((7, 8))
    with pytest.raises(VarbayesError, match="63 pixels"):
        quadrant_split(torch.rand(2, 63), (8, 8))


def test_digits_unit_pixels_recover_the_raw_levels() -> None:
    from sklearn.datasets import load_digits

    ds = load("digits")
    pixels = ds.unit_pixels(ds.x_train)
    assert float(pixels.min()) == 0.0 and float(pixels.max()) == 1.0
    assert torch.equal(pixels * 16, (pixels * 16).round())  # exact integer levels
    raw = torch.as_tensor(load_digits().data, dtype=torch.float32) / 16
    assert bool((pixels[:, None, :] == raw[None, :200]).all(-1).any())  # a real digit is there


def test_unit_pixels_needs_an_image_dataset() -> None:
    with pytest.raises(VarbayesError, match="image datasets"):
        load("two-moons").unit_pixels(torch.zeros(2, 2))
