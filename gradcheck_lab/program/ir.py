"""The expression IR: what the case-file parser produces and the program builder consumes.

Three node kinds, nothing else: a name, an exact constant, and a call of an op of the op table
with its static keyword values. Column offsets point back into the expression's text.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

from gradcheck_lab.ops import ParamValue


@dataclass(frozen=True)
class Name:
    id: str
    offset: int | None


@dataclass(frozen=True)
class Const:
    value: Fraction
    offset: int | None


@dataclass(frozen=True)
class Call:
    op: str
    args: tuple[Expr, ...]
    params: tuple[tuple[str, ParamValue], ...]
    offset: int | None


Expr = Name | Const | Call


def names_in(expr: Expr) -> list[Name]:
    """Every name the expression refers to, in reading order (no recursion: depth is bounded
    only by the parser's limit)."""
    found: list[Name] = []
    stack: list[Expr] = [expr]
    while stack:
        item = stack.pop()
        if isinstance(item, Name):
            found.append(item)
        elif isinstance(item, Call):
            stack.extend(reversed(item.args))
    return found
