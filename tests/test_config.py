"""Settings: parsing from the CLI, validation from Python, one-line errors."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import pytest

from varbayes.config import Config, setting
from varbayes.errors import VarbayesError


@dataclass
class Demo(Config):
    lr: float = setting(1e-3, gt=0)
    epochs: int = setting(10, ge=1, le=1000)
    mode: Literal["a", "b"] = setting("a")
    flag: bool = setting(False)
    name: str | None = setting(None)
    sizes: tuple[int, ...] = setting((1, 2))
    frac: float = setting(0.5, ge=0, lt=1)

    def validate(self) -> None:
        if self.mode == "b" and self.epochs < 5:
            raise VarbayesError("mode b needs epochs >= 5")


def test_parse_all_types() -> None:
    cfg = Demo.from_settings(
        ["lr=0.01", "epochs=20", "mode=b", "flag=true", "name=x", "sizes=3,4,5", "frac=0"])
    assert cfg == Demo(lr=0.01, epochs=20, mode="b", flag=True, name="x", sizes=(3, 4, 5),
                       frac=0.0)
    assert Demo.from_settings(["name=none"]).name is None
    assert Demo.from_settings(["flag=0"]).flag is False


def test_settings_override_base() -> None:
    base = Demo.from_values({"epochs": 7})
    assert Demo.from_settings(["lr=0.1"], base=base) == Demo(lr=0.1, epochs=7)


def test_int_accepted_for_float_and_converted() -> None:
    assert Demo(lr=1).lr == 1.0 and isinstance(Demo(lr=1).lr, float)


@pytest.mark.parametrize(
    ("pairs", "fragment"),
    [
        (["nope=1"], "unknown setting 'nope'; valid: lr, epochs"),
        (["lr"], "--set expects key=value"),
        (["lr=abc"], "setting lr expects float"),
        (["lr=-1"], "setting lr must be > 0"),
        (["epochs=0"], "setting epochs must be >= 1"),
        (["epochs=2000"], "setting epochs must be <= 1000"),
        (["epochs=1.5"], "setting epochs expects int"),
        (["mode=c"], "setting mode must be one of a, b"),
        (["flag=maybe"], "setting flag expects true or false"),
        (["frac=1"], "setting frac must be < 1"),
        (["lr=nan"], "setting lr must be finite"),
        (["mode=b", "epochs=2"], "mode b needs epochs >= 5"),
    ],
)
def test_bad_settings_are_one_line(pairs: list[str], fragment: str) -> None:
    with pytest.raises(VarbayesError) as err:
        Demo.from_settings(pairs)
    assert fragment in str(err.value)
    assert "\n" not in str(err.value)


def test_python_values_are_checked_too() -> None:
    with pytest.raises(VarbayesError, match="expects int"):
        Demo(epochs="10")  # type: ignore[arg-type]
    with pytest.raises(VarbayesError, match="expects true or false"):
        Demo(flag=1)  # type: ignore[arg-type]
    with pytest.raises(VarbayesError, match="unknown setting 'epoch'"):
        Demo.from_values({"epoch": 3})


def test_describe_lists_every_setting() -> None:
    rows = Demo.describe()
    assert [r[0] for r in rows] == ["lr", "epochs", "mode", "flag", "name", "sizes", "frac"]
    assert rows[2][1] == "a|b"
