"""Flushing denormals during training (SSVI's tiny standard deviations)."""

from __future__ import annotations

import pytest
import torch

from varbayes.train.denormals import flush_denormals


def _tiny_product() -> float:
    return float(torch.tensor([1e-20]) * torch.tensor([1e-20]))  # 1e-40: float32 denormal


def test_denormals_are_flushed_inside_the_block_only():
    assert _tiny_product() > 0
    with flush_denormals() as supported:
        if not supported:
            pytest.skip("this CPU cannot flush denormals")
        assert _tiny_product() == 0.0
        assert float(torch.tensor([1e-18]) * torch.tensor([1e-18])) > 0  # 1e-36, normal: kept
    assert _tiny_product() > 0


def test_disabled_leaves_the_mode_alone():
    with flush_denormals(enabled=False) as supported:
        assert supported is False
        assert _tiny_product() > 0
