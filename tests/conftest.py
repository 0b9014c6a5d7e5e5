"""Shared test set-up: an isolated data cache for the session, quiet progress bars."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    os.environ.setdefault("VARBAYES_CACHE", str(tmp_path_factory.mktemp("varbayes-cache")))
    os.environ["VARBAYES_QUIET"] = "1"
