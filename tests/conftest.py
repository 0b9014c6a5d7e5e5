"""Shared test set-up: an isolated data cache for the session, quiet progress bars, and one
torch thread: the test models are tiny, and on a 2-core machine that is busy with anything
else, torch's second intra-op thread spins and makes tests up to 10-25x slower."""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before torch loads; inherited by subprocesses

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    os.environ.setdefault("VARBAYES_CACHE", str(tmp_path_factory.mktemp("varbayes-cache")))
    os.environ["VARBAYES_QUIET"] = "1"
