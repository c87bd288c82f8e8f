"""Declared intent: a Function whose backward is meant to differ from the derivative of its
forward (a surrogate gradient, a straight-through estimator, gradient reversal) is excluded
from the check with a reason, by a decorator on the class or by an ini entry naming it."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TypeVar

_ATTRIBUTE = "__gradcheck_lab_excluded__"
T = TypeVar("T", bound=type)


def exclude(reason: str) -> Callable[[T], T]:
    """Class decorator: this Function's backward is not meant to be its forward's derivative.

    >>> @exclude("surrogate gradient: a sigmoid's slope where the step has none")
    ... class Spike: ...
    >>> excluded(Spike, {})
    "surrogate gradient: a sigmoid's slope where the step has none"
    """
    if not isinstance(reason, str) or not reason.strip():
        raise ValueError("gradcheck_lab.exclude needs a reason (say why the backward differs "
                         "from the derivative)")

    def mark(cls: T) -> T:
        setattr(cls, _ATTRIBUTE, reason.strip())
        return cls

    return mark


def excluded(cls: type, configured: dict[str, str]) -> str | None:
    """The reason this Function is excluded (the decorator's, else the ini entry's), or None."""
    from gradcheck_lab.doors.functions.recorder import qualified_name

    reason = getattr(cls, _ATTRIBUTE, None)  # a surrogate's subclass is one too
    if isinstance(reason, str):
        return reason
    name = qualified_name(cls)
    return configured.get(name) or configured.get(cls.__qualname__)


def parse_exclusions(lines: Iterable[str], where: str) -> dict[str, str]:
    """``NAME: reason`` lines (the ini key's) as a mapping; a line without a reason is a
    ValueError naming ``where``."""
    table: dict[str, str] = {}
    for line in lines:
        name, colon, reason = line.partition(":")
        if not colon or not name.strip() or not reason.strip():
            raise ValueError(f"{where}: {line.strip()!r}: expected 'module.Class: reason'")
        table[name.strip()] = reason.strip()
    return table
