"""The inference tests use tiny tensors: one intra-op thread is faster (and far faster on a
busy machine)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from varbayes.train import torch_threads


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    with torch_threads(1):
        yield
