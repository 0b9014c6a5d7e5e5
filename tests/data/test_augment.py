"""random_crop_flip against a per-example loop (a second implementation)."""

from __future__ import annotations

import pytest
import torch

from varbayes.data.augment import random_crop_flip


def test_crop_flip_equals_a_per_example_loop():
    x = torch.randn(6, 3, 5, 7)
    fill = [0.5, -1.0, 2.0]
    torch.manual_seed(3)
    out = random_crop_flip(x, 2, fill)
    torch.manual_seed(3)
    top = torch.randint(0, 5, (6,))
    left = torch.randint(0, 5, (6,))
    flip = torch.rand(6) < 0.5
    padded = torch.tensor(fill).view(1, 3, 1, 1).expand(6, 3, 9, 11).clone()
    padded[:, :, 2:7, 2:9] = x
    for i in range(6):
        crop = padded[i, :, top[i]:top[i] + 5, left[i]:left[i] + 7]
        torch.testing.assert_close(out[i], crop.flip(-1) if flip[i] else crop)


def test_no_padding_keeps_or_mirrors_each_image():
    x = torch.randn(20, 2, 4, 4)
    out = random_crop_flip(x, 0)
    same = (out == x).flatten(1).all(1)
    mirrored = (out == x.flip(-1)).flatten(1).all(1)
    assert bool((same | mirrored).all()) and bool(mirrored.any()) and bool(same.any())


def test_needs_images():
    with pytest.raises(ValueError, match="N, C, H, W"):
        random_crop_flip(torch.randn(3, 4))
