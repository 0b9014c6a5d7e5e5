"""Temporarily set the number of torch's intra-op threads.

Small models (a few MLP layers on minibatches of a hundred) gain nothing from intra-op
parallelism, and on a busy machine the extra threads spin and contend: one thread is then
several times faster in wall-clock time. Methods that train such models wrap their fits in
`torch_threads(1)`; the previous setting is restored afterwards.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run the enclosed code with `n` torch threads, then restore the previous number."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
