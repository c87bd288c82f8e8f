"""Ops that select: comparisons (``x > 0``, bool tensors, never differentiated), the logic of
conditions (``& | ^ ~``), ``where(condition, input, other)`` and ``clamp(input, min, max)``.

Where a comparison's two sides are equal its condition flips: there the function that uses it
(``where(x > 0, x, 0)`` is relu) has a kink, reported and skipped as relu's is. The sympy forms
are Piecewise expressions over the relations themselves, so the exact oracle differentiates
each branch where it holds.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from gradcheck_lab.errors import SpecError
from gradcheck_lab.ops.base import GIVEN, Params
from gradcheck_lab.ops.pointwise import elementwise

_BOTH = frozenset({0, 1})


def _comparison(name: str, infix: str, relation: Callable[[Any, Any], Any],
                numpy_form: Callable[..., np.ndarray]) -> Any:
    return elementwise(
        name, 2, lambda sp, a, b: relation(a, b), numpy_form,
        lambda t, a, b: relation(a, b), infix=infix, returns="bool",
        kinks=lambda a, b: a == b, kink_where=f"at a tie: the condition a {infix} b flips there",
        group="condition", doc=f"a {infix} b, a bool tensor (a condition)")


def _logical(name: str, infix: str, sympy_name: str, numpy_form: Callable[..., np.ndarray],
             torch_form: Callable[..., Any]) -> Any:
    return elementwise(
        name, 2, lambda sp, a, b: getattr(sp, sympy_name)(a, b), numpy_form,
        lambda t, a, b: torch_form(a, b), infix=infix, returns="bool", bool_args=_BOTH,
        group="condition", doc=f"a {infix} b of conditions")


COMPARISONS = [
    _comparison("lt", "<", operator.lt, np.less),
    _comparison("le", "<=", operator.le, np.less_equal),
    _comparison("gt", ">", operator.gt, np.greater),
    _comparison("ge", ">=", operator.ge, np.greater_equal),
    # sympy's == is structural equality: Eq and Ne are the relations.
    elementwise("eq", 2, lambda sp, a, b: sp.Eq(a, b), np.equal, lambda t, a, b: a == b,
                infix="==", returns="bool", kinks=lambda a, b: a == b,
                kink_where="at a tie: the condition a == b flips there", group="condition",
                doc="a == b, a bool tensor"),
    elementwise("ne", 2, lambda sp, a, b: sp.Ne(a, b), np.not_equal, lambda t, a, b: a != b,
                infix="!=", returns="bool", kinks=lambda a, b: a == b,
                kink_where="at a tie: the condition a != b flips there", group="condition",
                doc="a != b, a bool tensor"),
]

LOGIC = [
    _logical("logical_and", "&", "And", np.logical_and, operator.and_),
    _logical("logical_or", "|", "Or", np.logical_or, operator.or_),
    _logical("logical_xor", "^", "Xor", np.logical_xor, operator.xor),
    elementwise("logical_not", 1, lambda sp, a: sp.Not(a), np.logical_not,
                lambda t, a: ~a, infix="~", returns="bool", bool_args=frozenset({0}),
                group="condition", doc="~a: not a condition"),
]


def _where_numpy(condition: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.where(condition, a, b)


def _where_torch(t: Any, condition: Any, a: Any, b: Any) -> Any:
    return t.where(condition, a, b)


WHERE = elementwise(
    "where", 3, lambda sp, c, a, b: sp.Piecewise((a, c), (b, True)),
    _where_numpy, _where_torch, returns="promote",
    bool_args=frozenset({0}), arg_names=("condition", "input", "other"), group="condition",
    zero_slope_is_flat=True,
    doc="input where condition holds, other elsewhere (condition: a comparison)")


# --- clamp ----------------------------------------------------------------------------------


def _bounds(args: Sequence[Any], given: tuple[int, ...]) -> tuple[Any, Any, Any]:
    """(input, min or None, max or None) from the arguments a call gave."""
    by_position = dict(zip(given, args, strict=True))
    return by_position[0], by_position.get(1), by_position.get(2)


def _clamp_sympy(sp: Any, *args: Any, given: tuple[int, ...]) -> Any:
    x, low, high = _bounds(args, given)
    if low is not None:
        x = sp.Piecewise((x, x > low), (low, True))
    if high is not None:
        x = sp.Piecewise((x, x < high), (high, True))
    return x


def _clamp_numpy(*args: np.ndarray, given: tuple[int, ...]) -> np.ndarray:
    x, low, high = _bounds(args, given)
    if low is not None:
        x = np.maximum(x, low)
    if high is not None:
        x = np.minimum(x, high)
    return x


def _clamp_torch(t: Any, *args: Any, given: tuple[int, ...]) -> Any:
    x, low, high = _bounds(args, given)
    if t.is_tensor(low) != t.is_tensor(high) and low is not None and high is not None:
        # torch takes two numbers or two tensors: a constant bound beside a tensor one
        low, high = (b if t.is_tensor(b) else t.as_tensor(b, dtype=x.dtype, device=x.device)
                     for b in (low, high))
    return t.clamp(x, min=low, max=high)


def _clamp_kinks(*args: np.ndarray, given: tuple[int, ...]) -> np.ndarray:
    x, low, high = _bounds(args, given)
    # Where max(x, min) ties, then where min(that, max) ties: with min = max = c and x < c,
    # the value is min(min, max), a tie of the two bounds.
    raised = x if low is None else np.maximum(x, low)
    mask = np.zeros(np.shape(raised), dtype=bool) if low is None else x == low
    return mask if high is None else mask | (raised == high)


def _clamp_check(params: Params) -> None:
    if params[GIVEN] == (0,):
        raise SpecError("clamp() needs min= or max= (or both)")


CLAMP = elementwise(
    "clamp", 3, _clamp_sympy, _clamp_numpy, _clamp_torch, returns="promote", min_arity=1,
    arg_names=("input", "min", "max"), kinks=_clamp_kinks, kink_where="at min and max",
    check=_clamp_check, torch_scalar_args=frozenset({1, 2}), flat_at_zero=False,
    zero_slope_is_flat=True,
    group="condition", doc="min(max(input, min), max); min or max may be left out; "
    "either may be a tensor")

CONDITIONS = [*COMPARISONS, *LOGIC, WHERE, CLAMP]
