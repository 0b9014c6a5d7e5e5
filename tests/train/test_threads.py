"""torch_threads sets and restores torch's intra-op thread count, also on errors."""

from __future__ import annotations

import pytest
import torch

from varbayes.train import torch_threads


def test_threads_are_restored() -> None:
    before = torch.get_num_threads()
    other = before + 1  # differs from the current count whatever the test session set
    with torch_threads(other):
        assert torch.get_num_threads() == other
    assert torch.get_num_threads() == before
    with pytest.raises(RuntimeError), torch_threads(1):
        raise RuntimeError("boom")
    assert torch.get_num_threads() == before
