"""`varbayes.load`: a damaged or hand-edited model.json is one line, at load time."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch

import varbayes


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("det")
    varbayes.run("deterministic", "two-moons", out=out, quiet=True, epochs=1)
    return out


def _edit(saved: Path, tmp_path: Path, change: Any) -> Path:
    folder = tmp_path / "model"
    shutil.copytree(saved, folder)
    meta = json.loads((folder / "model.json").read_text())
    meta = change(meta)
    (folder / "model.json").write_text(json.dumps(meta))
    return folder


def _without(key: str) -> Any:
    return lambda m: {k: v for k, v in m.items() if k != key}


def _with(key: str, value: Any) -> Any:
    return lambda m: {**m, key: value}


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        (lambda m: [m], "is not a varbayes model"),
        (_without("method"), "names no method"),
        (_with("method", ["deterministic"]), "names no method"),
        (_without("network"), "missing entry 'network'"),
        (_with("network", None), "malformed entry"),
        (_without("task"), "task None"),
        (_with("task", "clustering"), "task 'clustering'"),
        (_with("input_shape", None), "input_shape None"),
        (_with("y_std", 0), "y_std 0"),
    ],
)
def test_damaged_model_json_is_one_line(
    change: Any, fragment: str, saved: Path, tmp_path: Path
) -> None:
    folder = _edit(saved, tmp_path, change)
    with pytest.raises(varbayes.VarbayesError, match=fragment) as err:
        varbayes.load(folder)
    assert "\n" not in str(err.value)


def test_intact_model_still_loads(saved: Path) -> None:
    probs = varbayes.load(saved).predict(torch.zeros(3, 2))
    assert probs.shape == (3, 2)


def test_supervised_model_checks_its_sample_count() -> None:
    from varbayes.models import SupervisedModel

    with pytest.raises(varbayes.VarbayesError, match="n_samples 'x'"):
        SupervisedModel(torch.nn.Linear(2, 2), {"task": "classification"}, "x")  # type: ignore[arg-type]


@pytest.mark.parametrize("kw", [{"n_samples": 0}, {"n_samples": -2}, {"batch_size": 0}])
def test_predict_refuses_non_positive_counts(kw: dict, saved: Path) -> None:
    with pytest.raises(varbayes.VarbayesError, match="must be a positive integer"):
        varbayes.load(saved).predict(torch.zeros(3, 2), **kw)
