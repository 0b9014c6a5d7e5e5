"""Validated method settings.

Every method declares its settings as a dataclass deriving from `Config`, with defaults and
ranges given by `setting(...)`. The same checks run whether the values come from Python
(`ssvi.Config(density=0.05)`) or from the CLI (`--set density=0.05`), and a bad value is one
line naming the setting and what would be valid.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Sequence
from typing import Any, Literal, TypeVar, Union, get_args, get_origin

from varbayes.errors import VarbayesError

C = TypeVar("C", bound="Config")

_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}
_NONE = {"none", "null"}


def setting(
    default: Any,
    *,
    help: str = "",
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
) -> Any:
    """A dataclass field with a help text and an optional numeric range (inclusive ge/le,
    exclusive gt/lt). Choices come from a `Literal[...]` annotation."""
    meta = {"help": help, "ge": ge, "gt": gt, "le": le, "lt": lt}
    if isinstance(default, (list, dict, set)):
        raise TypeError("use a tuple, not a mutable default, for a setting")
    return dataclasses.field(default=default, metadata=meta)


@dataclasses.dataclass
class Config:
    """Base class of every method's settings; validates all fields on construction."""

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):
            value = _check_type(f.name, getattr(self, f.name), hints[f.name])
            object.__setattr__(self, f.name, value)
            _check_range(f, value)
        self.validate()

    def validate(self) -> None:
        """Cross-field checks; override in a method's Config (raise VarbayesError)."""

    @classmethod
    def from_settings(cls: type[C], pairs: Sequence[str], base: C | None = None) -> C:
        """Build a Config from `key=value` strings (the CLI's `--set`), on top of `base`."""
        hints = typing.get_type_hints(cls)
        names = [f.name for f in dataclasses.fields(cls)]
        values = dataclasses.asdict(base) if base is not None else {}
        for pair in pairs:
            key, sep, raw = pair.partition("=")
            key = key.strip().replace("-", "_")
            if not sep or not key:
                raise VarbayesError(f"--set expects key=value, got {pair!r}")
            if key not in names:
                valid = ", ".join(names) if names else "(this method has no settings)"
                raise VarbayesError(f"unknown setting {key!r}; valid: {valid}")
            values[key] = _parse(key, raw.strip(), hints[key])
        return cls(**values)

    @classmethod
    def from_values(cls: type[C], values: dict[str, Any]) -> C:
        """Build a Config from Python keyword values, with a one-line error for unknown keys."""
        names = [f.name for f in dataclasses.fields(cls)]
        for key in values:
            if key not in names:
                valid = ", ".join(names) if names else "(this method has no settings)"
                raise VarbayesError(f"unknown setting {key!r}; valid: {valid}")
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """Plain values, for result.json and model files."""
        return dataclasses.asdict(self)

    @classmethod
    def describe(cls) -> list[tuple[str, str, Any, str]]:
        """(name, type, default, help) per setting, for `varbayes list --settings`."""
        hints = typing.get_type_hints(cls)
        return [
            (f.name, _type_name(hints[f.name]), f.default, f.metadata.get("help", ""))
            for f in dataclasses.fields(cls)
        ]


# ---------------------------------------------------------------------------------------------
# parsing strings from the command line


def _parse(key: str, raw: str, tp: Any) -> Any:
    """Convert a command-line string to the annotated type, or raise one line."""
    origin, args = get_origin(tp), get_args(tp)
    if _is_optional(tp):
        if raw.lower() in _NONE:
            return None
        inner = [a for a in args if a is not type(None)]
        return _parse(key, raw, inner[0])
    if origin is Literal:
        for choice in args:
            if str(choice) == raw:
                return choice
        raise VarbayesError(
            f"setting {key} must be one of {', '.join(map(str, args))}; got {raw!r}"
        )
    if origin is tuple:
        item = args[0] if args else str
        parts = [p for p in raw.split(",") if p.strip()]
        return tuple(_parse(key, p.strip(), item) for p in parts)
    if tp is bool:
        if raw.lower() in _TRUE:
            return True
        if raw.lower() in _FALSE:
            return False
        raise VarbayesError(f"setting {key} expects true or false; got {raw!r}")
    if tp in (int, float):
        try:
            return tp(raw) if tp is float else int(raw)
        except ValueError:
            raise VarbayesError(f"setting {key} expects {tp.__name__}; got {raw!r}") from None
    if tp is str:
        return raw
    raise TypeError(f"setting {key}: unsupported annotation {tp!r}")


# ---------------------------------------------------------------------------------------------
# checking values (from Python or parsed)


def _check_type(key: str, value: Any, tp: Any) -> Any:
    origin, args = get_origin(tp), get_args(tp)
    if _is_optional(tp):
        if value is None:
            return None
        inner = [a for a in args if a is not type(None)]
        return _check_type(key, value, inner[0])
    if origin is Literal:
        if value not in args:
            valid = ", ".join(map(str, args))
            raise VarbayesError(f"setting {key} must be one of {valid}; got {value!r}")
        return value
    if origin is tuple:
        if not isinstance(value, (tuple, list)):
            raise VarbayesError(f"setting {key} expects a sequence; got {value!r}")
        item = args[0] if args else object
        return tuple(_check_type(key, v, item) for v in value) if item is not object else value
    if tp is bool:
        if not isinstance(value, bool):
            raise VarbayesError(f"setting {key} expects true or false; got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise VarbayesError(f"setting {key} expects int; got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise VarbayesError(f"setting {key} expects float; got {value!r}")
        value = float(value)
        if value != value or value in (float("inf"), float("-inf")):
            raise VarbayesError(f"setting {key} must be finite; got {value}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise VarbayesError(f"setting {key} expects a string; got {value!r}")
        return value
    return value


def _check_range(f: dataclasses.Field, value: Any) -> None:
    if value is None or isinstance(value, (bool, str, tuple)):
        return
    m = f.metadata
    checks = [("ge", ">=", lambda v, b: v >= b), ("gt", ">", lambda v, b: v > b),
              ("le", "<=", lambda v, b: v <= b), ("lt", "<", lambda v, b: v < b)]
    for name, sym, ok in checks:
        bound = m.get(name)
        if bound is not None and not ok(value, bound):
            raise VarbayesError(f"setting {f.name} must be {sym} {bound}; got {value}")


def _is_optional(tp: Any) -> bool:
    origin = get_origin(tp)
    return (origin is Union or origin is types.UnionType) and type(None) in get_args(tp)


def _type_name(tp: Any) -> str:
    if get_origin(tp) is Literal:
        return "|".join(map(str, get_args(tp)))
    if _is_optional(tp):
        inner = [a for a in get_args(tp) if a is not type(None)]
        return f"{_type_name(inner[0])} or none"
    if get_origin(tp) is tuple:
        return f"comma-separated {_type_name(get_args(tp)[0])}"
    return getattr(tp, "__name__", str(tp))
