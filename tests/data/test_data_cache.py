"""The data cache: hits, keys, corrupt or foreign files, and where it lives."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch

from varbayes.data import cache_dir, load
from varbayes.data.cache import cache_path, cached


def test_cache_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("VARBAYES_CACHE", str(tmp_path / "here"))
    assert cache_dir() == tmp_path / "here"
    monkeypatch.delenv("VARBAYES_CACHE")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert cache_dir() == tmp_path / ".cache" / "varbayes"


def test_a_hit_does_not_rebuild_and_returns_identical_arrays(fresh_cache):
    calls = []

    def build():
        calls.append(1)
        return {"a": np.arange(5.0), "b": np.array([[1, 2]])}

    first = cached("thing", {"p": 1}, build)
    second = cached("thing", {"p": 1}, build)
    assert len(calls) == 1
    assert all(np.array_equal(first[k], second[k]) for k in ("a", "b"))
    assert cache_path("thing", {"p": 1}).parent == fresh_cache / "data"


def test_files_are_keyed_by_parameters(fresh_cache):
    load("two-moons", seed=0)
    load("two-moons", seed=1)
    assert len(list((fresh_cache / "data").glob("two-moons-*.npz"))) == 2
    assert cache_path("two-moons", {"seed": 0}) != cache_path("two-moons", {"seed": 1})


def test_loading_from_the_cache_gives_identical_data(fresh_cache):
    first = load("digits")
    assert list((fresh_cache / "data").glob("digits-*.npz"))
    second = load("digits")
    assert torch.equal(first.x_train, second.x_train) and torch.equal(first.y_test, second.y_test)


@pytest.mark.parametrize(
    "damage",
    [
        lambda p: p.write_bytes(b"not a zip file"),
        lambda p: p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2]),
        lambda p: p.write_bytes(b""),
    ],
)
def test_corrupt_cache_is_regenerated(fresh_cache, damage):
    first = load("toy-regression", seed=3)
    (path,) = (fresh_cache / "data").glob("toy-regression-*.npz")
    damage(path)
    again = load("toy-regression", seed=3)
    assert torch.equal(first.x_train, again.x_train) and torch.equal(first.y_test, again.y_test)
    with np.load(path, allow_pickle=False) as z:  # rewritten whole
        assert "x_train" in z.files


def _npz_bytes(**arrays) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def test_a_file_with_another_key_or_a_pickle_is_not_trusted(fresh_cache):
    path = cache_path("thing", {"p": 1})
    path.parent.mkdir(parents=True)
    build = lambda: {"a": np.arange(3)}  # noqa: E731
    path.write_bytes(_npz_bytes(__key__=np.array("another key"), a=np.zeros(3)))
    assert cached("thing", {"p": 1}, build)["a"].tolist() == [0, 1, 2]
    key = str(np.load(path)["__key__"])
    path.write_bytes(_npz_bytes(__key__=np.array(key), a=np.array([object()], dtype=object)))
    assert cached("thing", {"p": 1}, build)["a"].tolist() == [0, 1, 2]


def test_an_unwritable_cache_warns_and_still_loads(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("a file where the cache folder should be")
    monkeypatch.setenv("VARBAYES_CACHE", str(blocker))
    with pytest.warns(UserWarning, match="could not write the data cache"):
        ds = load("two-moons")
    assert ds.n_train == 1000
    assert Path(blocker).read_text().startswith("a file")
