"""Atomic writes, strict JSON, safetensors-only loading."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from varbayes.errors import VarbayesError
from varbayes.io import atomic_write_json, load_tensors, read_json, save_tensors, to_jsonable


def test_atomic_json_round_trip_and_no_temp_left(tmp_path: Path) -> None:
    obj = {"a": torch.tensor([1.0, 2.0]), "b": np.float32(0.5), "c": float("nan"), "p": tmp_path}
    path = atomic_write_json(tmp_path / "x" / "r.json", obj)
    back = read_json(path)
    assert back == {"a": [1.0, 2.0], "b": 0.5, "c": "nan", "p": str(tmp_path)}
    assert [p.name for p in path.parent.iterdir()] == ["r.json"]


def test_jsonable_handles_nested_and_dataclass() -> None:
    from dataclasses import dataclass

    @dataclass
    class D:
        x: int
        y: tuple[float, ...]

    assert to_jsonable({"d": D(1, (0.5, float("inf")))}) == {"d": {"x": 1, "y": [0.5, "inf"]}}


def test_safetensors_round_trip(tmp_path: Path) -> None:
    t = {"w": torch.randn(3, 4), "m": torch.ones(5, dtype=torch.bool)}
    save_tensors(tmp_path / "m.safetensors", t)
    back = load_tensors(tmp_path / "m.safetensors")
    assert torch.equal(back["w"], t["w"]) and torch.equal(back["m"], t["m"])


def test_pickle_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "model.safetensors"
    path.write_bytes(pickle.dumps({"w": [1, 2, 3]}))
    with pytest.raises(VarbayesError, match="not a safetensors file"):
        load_tensors(path)
    torch.save({"w": torch.ones(2)}, path)
    with pytest.raises(VarbayesError, match="safetensors"):
        load_tensors(path)


def test_missing_and_malformed(tmp_path: Path) -> None:
    with pytest.raises(VarbayesError, match="missing"):
        load_tensors(tmp_path / "none.safetensors")
    (tmp_path / "bad.json").write_text("{oops")
    with pytest.raises(VarbayesError, match="not valid JSON"):
        read_json(tmp_path / "bad.json")
    assert json.loads('{"a": 1}') == {"a": 1}


def test_src_writes_files_only_through_the_atomic_helpers() -> None:
    """No direct file write in src/ outside varbayes.io (a crash must never leave half a
    result, model, report or cached file)."""
    import re

    src = Path(__file__).resolve().parents[1] / "src" / "varbayes"
    direct = re.compile(r"\.write_(text|bytes)\(|\bsave_file\(|\bopen\([^)]*['\"][wa]b?['\"]"
                        r"|torch\.save\(")
    offenders = [f"{p.relative_to(src)}:{i}" for p in sorted(src.rglob("*.py"))
                 if p.name != "io.py"
                 for i, line in enumerate(p.read_text().splitlines(), 1)
                 if direct.search(line) and not line.lstrip().startswith("#")]
    assert offenders == []
