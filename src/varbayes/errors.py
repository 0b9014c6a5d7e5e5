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


@contextmanager
def inputs_for(what: str, shape: tuple[int, ...]) -> Iterator[None]:
    """Run a user's network on inputs of `shape`: its RuntimeError (a width mismatch, say)
    becomes one line naming the shape, instead of a traceback from inside the network."""
    try:
        yield
    except RuntimeError as e:
        raise VarbayesError(f"{what} failed on inputs of shape {shape} ({first_line(e)}); "
                            f"valid: inputs {what} accepts") from None
