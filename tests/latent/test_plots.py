"""Figures of the latent package render and reject bad shapes."""

from __future__ import annotations

import pytest
import torch

from varbayes.errors import VarbayesError
from varbayes.latent import kl_bars, predicted_vs_measured, samples_grid


def test_figures_render() -> None:
    images = torch.rand(3, 4, 64)
    fig = samples_grid(images, (8, 8), ["a", "b", "c"], "grid")
    mosaic = fig.axes[0].images[0].get_array()
    assert mosaic.shape == (3 * 9 - 1, 4 * 9 - 1)
    assert torch.allclose(torch.as_tensor(mosaic[9:17, 18:26]), images[1, 2].reshape(8, 8))
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == ["a", "b", "c"]
    rgb = samples_grid(torch.rand(1, 2, 3 * 4 * 4), (3, 4, 4))
    assert rgb.axes[0].images[0].get_array().shape == (4, 9, 3)
    bars = kl_bars({"one": torch.tensor([0.5, 0.0, 0.02]), "two": torch.zeros(3)})
    assert len(bars.axes) == 2
    line = predicted_vs_measured([0.5, 1, 2], [3, 2, 0], [3, 2, 1], "beta", extra={"x": [1, 1, 1]})
    assert line.axes[0].get_xlabel() == "beta"


def test_samples_grid_needs_three_dims() -> None:
    with pytest.raises(VarbayesError, match="rows, cols, pixels"):
        samples_grid(torch.rand(4, 64), (8, 8))
