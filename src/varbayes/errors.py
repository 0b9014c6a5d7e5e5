"""The one exception type for bad user input.

Every check on user-supplied data, settings or files raises `VarbayesError` with one line that
names the problem and what would be valid. The CLI turns it into that line on stderr and exit
code 2, never a traceback.
"""

from __future__ import annotations


class VarbayesError(ValueError):
    """Bad input: the message is a single line naming the problem and what would be valid."""


def one_of(kind: str, value: object, valid: list[str] | tuple[str, ...]) -> VarbayesError:
    """The error for an unknown name, listing the valid names (e.g. methods or datasets)."""
    return VarbayesError(f"unknown {kind} {value!r}; valid: {', '.join(sorted(valid))}")


def first_line(e: BaseException) -> str:
    """The first line of an exception's message (its type name when the message is empty)."""
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__
