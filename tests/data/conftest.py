"""Every data test runs against a temporary cache, never the user's ~/.cache/varbayes."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def shared_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One cache for the session, so MNIST-1D is generated at most once."""
    return tmp_path_factory.mktemp("varbayes-cache")


@pytest.fixture(autouse=True)
def _use_shared_cache(shared_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VARBAYES_CACHE", str(shared_cache))


@pytest.fixture
def fresh_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty cache for tests that must see data generated (or regenerated) from scratch."""
    path = tmp_path / "cache"
    monkeypatch.setenv("VARBAYES_CACHE", str(path))
    return path
