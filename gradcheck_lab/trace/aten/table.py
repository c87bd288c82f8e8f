"""The translation table: aten overload name -> how its meaning is written in the case
language's ops, and the reasons for the ops that are refused.

A translation gets a ``Writer`` (tensor values as program nodes, numbers as constants) and
the op's arguments bound to their schema names, defaults filled in (``bound``); it returns
the result's node, or a tuple for ops with several results (None for a result no gradient
flows through, such as max's indices, which is then read as the constant it is). Only
names are looked up here, never torch's derivative formulas.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from fractions import Fraction
from functools import cache
from typing import Any, Protocol

from gradcheck_lab.errors import SpecError


class Writer(Protocol):
    """What a translation writes with (``trace.writer.SpecWriter``)."""

    def call(self, name: str, *args: int, **params: Any) -> int: ...

    def const(self, value: float | int | Fraction) -> int: ...

    def shape(self, node: int) -> tuple[int, ...]: ...

    def node(self, value: Any) -> int:
        """A traced value's node, or a constant (tensor or number) as a constant node."""
        ...


Args = dict[str, Any]
Translation = Callable[[Writer, Args], Any]
TABLE: dict[str, Translation] = {}
# Ops refused, with the reason a user reads (by overload name, or by packet name for all of
# its overloads).
REFUSED: dict[str, str] = {}
# Ops that only read their inputs' shape, dtype or device: their results are constants.
METADATA_ONLY: set[str] = set()
# Ops whose translation reads their results as the run computed them (``RESULTS``): a sign
# convention of the kernel that the language's op fixes its own way.
KEEPS_RESULTS: set[str] = set()
RESULTS = "_results"  # the key of the step's result Values among a translation's arguments


def register(names: str, translation: Translation) -> None:
    """``translation`` for each whitespace-separated overload name."""
    for name in names.split():
        TABLE[name] = translation


def refuse(names: str, reason: str) -> None:
    for name in names.split():
        REFUSED[name] = reason


UNTRANSLATED = "it has no translation into the case language yet"
OUT_VARIANT = ("it writes into a tensor given as out= (the functional overload is what a "
               "traced forward translates)")
RANDOM = ("it draws random numbers, so the forward is not a function of its inputs (a "
          "traced spec would hold one draw)")


def refusal(name: str) -> str:
    """Why the op ``name`` (or a phrase naming what ran) is not translated."""
    packet = ".".join(name.split(".")[:2])
    reason = REFUSED.get(name, REFUSED.get(packet, REFUSED.get(packet.rstrip("_"))))
    if reason is not None:
        return reason
    if is_random(name):
        return RANDOM
    if name.rpartition(".")[2].endswith("out"):
        return OUT_VARIANT
    return UNTRANSLATED


def is_random(name: str) -> bool:
    """Whether the aten overload ``name`` draws from torch's random generator."""
    import torch

    try:
        return torch.Tag.nondeterministic_seeded in _overload(name).tags
    except (AttributeError, ValueError):
        return False


@cache
def _overload(name: str) -> Any:
    import torch

    namespace, packet, overload = name.split(".")
    return getattr(getattr(getattr(torch.ops, namespace), packet), overload)


def _schema(name: str) -> Any:
    return _overload(name)._schema


def bound(name: str, args: Sequence[Any], kwargs: dict[str, Any]) -> Args:
    """The op's arguments by their schema names, defaults filled in."""
    given: Args = {}
    for position, (argument, kwarg_only, default) in enumerate(_signature(name)):
        if position < len(args) and not kwarg_only:
            given[argument] = args[position]
        elif argument in kwargs:
            given[argument] = kwargs[argument]
        else:  # a list default copied: a translation may not change the next call's
            given[argument] = list(default) if isinstance(default, list) else default
    return given


@cache
def _signature(name: str) -> tuple[tuple[str, bool, Any], ...]:
    """Each argument's name, whether it is keyword-only, and its default (None where it has
    none): the schema read once per op (``bound`` runs at every step written)."""
    return tuple((argument.name, argument.kwarg_only,
                  argument.default_value if argument.has_default_value() else None)
                 for argument in _schema(name).arguments)


def ints(value: Any) -> tuple[int, ...]:
    """An int or a list of ints (SymInts included) as a tuple of ints."""
    if isinstance(value, (list, tuple)):
        return tuple(int(v) for v in value)
    return (int(value),)


def dims(value: Any) -> Any:
    """aten's dim lists as the language's dim= (None for every dim: None or [])."""
    if value is None or (isinstance(value, (list, tuple)) and not value):
        return None
    return tuple(int(v) for v in value) if isinstance(value, (list, tuple)) else int(value)


def number(value: Any) -> float | int:
    """A Scalar argument as a Python number (bools as 0/1)."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, (int, float)):
        return value
    raise SpecError(f"expected a number, got {type(value).__name__}")


def scaled(w: Writer, factor: Any, node: int) -> int:
    """factor · node, or the node itself for a factor of 1."""
    if not isinstance(factor, (int, float)) or factor != 1:
        return w.call("mul", w.node(factor), node)
    return node
