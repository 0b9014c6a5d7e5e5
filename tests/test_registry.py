"""The registry: every entry imports and keeps the method contract; the README table agrees."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from varbayes import registry
from varbayes.config import Config
from varbayes.errors import VarbayesError
from varbayes.readme import render

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", registry.names())
def test_method_module_keeps_the_contract(name: str) -> None:
    mod = registry.module(name)
    assert issubclass(mod.Config, Config) and dataclasses.is_dataclass(mod.Config)
    mod.Config()  # the defaults validate
    assert isinstance(mod.DATASETS, tuple) and mod.DATASETS
    assert callable(mod.run) and callable(mod.reproduce)
    assert registry.get(name).status in {
        "baseline", "reproduced", "partly reproduced", "not reproduced", "in progress"}
    assert (ROOT / registry.get(name).docs).is_file(), f"missing docs page for {name}"


def test_unknown_method_lists_valid_names() -> None:
    with pytest.raises(VarbayesError, match="unknown method 'nope'; valid: .*deterministic"):
        registry.get("nope")


def test_readme_table_is_generated_from_the_registry() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert render(readme) == readme, "run `make readme` to regenerate the table of methods"
    assert "make run" in readme and "make test" in readme
