"""The one exception type for bad user input.

Every check on user-supplied data, settings or files raises `VarbayesError` with one line that
names the problem and what would be valid. The CLI turns it into that line on stderr and exit
code 2, never a traceback.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


class VarbayesError(ValueError):
    """Bad input: the message is a single line naming the problem and what would be valid."""


def one_of(kind: str, value: object, valid: list[str] | tuple[str, ...]) -> VarbayesError:
    """The error for an unknown name, listing the valid names (e.g. methods or datasets)."""
    return VarbayesError(f"unknown {kind} {value!r}; valid: {', '.join(sorted(valid))}")


def first_line(e: BaseException) -> str:
    """The first line of an exception's message (its type name when the message is empty)."""
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def first_layer(module: object) -> str:
    """What the first Linear/Conv-like layer of `module` (in registration order) takes, as a
    phrase for an input error, e.g. "its first layer, Linear, takes 3 input features"; '' when
    none can be read (duck-typed on in_features / in_channels, so torch is not imported)."""
    for m in getattr(module, "modules", lambda: ())():
        for attr, unit in (("in_features", "input features"), ("in_channels", "channels")):
            n = getattr(m, attr, None)
            if isinstance(n, int) and n > 0:  # lazy layers read 0 until their first call
                return f"its first layer, {type(m).__name__}, takes {n} {unit}"
    return ""


def input_error(what: str, shape: tuple[int, ...], e: BaseException,
                module: object = None) -> VarbayesError:
    """The one-line error for a network that failed on inputs of `shape` with `e` (a width
    mismatch, say), naming what its first layer expects where that can be read."""
    expects = first_layer(module) if module is not None else ""
    return VarbayesError(f"{what} failed on inputs of shape {shape} ({first_line(e)}); "
                         f"valid: inputs {what} accepts" + (f" ({expects})" if expects else ""))


@contextmanager
def inputs_for(what: str, shape: tuple[int, ...], module: object = None) -> Iterator[None]:
    """Run a user's network on inputs of `shape`: its RuntimeError (a width mismatch, say)
    becomes one line naming the shape (and what `module`'s first layer takes), instead of a
    traceback from inside the network."""
    try:
        yield
    except RuntimeError as e:
        raise input_error(what, shape, e, module) from None
