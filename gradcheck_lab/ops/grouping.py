"""The factory of ops whose output elements each reduce a group of their arguments'
elements: index, index_put, the scatters, the view scatters, as_strided, fold and unfold
(``ops.indexing``).

A planner gives the groups (``Plan``: pairs of output and source positions), from position
maps (each real argument's elements numbered 0.. end to end) and the integer index tensors,
never from the real values; the reduction is a sum (moves, scatter_add, fold), a mean, a
product or an extreme (scatter_reduce). One plan gives the numpy forward, the sympy form, the
VJP and its magnitudes, as ``ops.rearrange``'s one move does for moves. Index tensors reach
a planner as int64 (or bool) arrays whatever form carries them: a constant index (a number,
a tensor constant) is accepted where it is integral.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from gradcheck_lab.errors import SpecError
from gradcheck_lab.ops.base import (
    GIVEN,
    ArgInfo,
    Arrays,
    Gradients,
    Op,
    Param,
    Params,
    Shape,
    as_float,
    as_ints,
    bincount,
    object_array,
    torch_module,
)


@dataclass(frozen=True)
class Plan:
    """Output element ``dst[t]`` takes the element ``src[t]`` of the real arguments laid end
    to end (flat positions), for each term t; an output element without terms is 0."""

    shape: Shape
    dst: np.ndarray
    src: np.ndarray


# (the real arguments' position maps and the index arguments as int64 or bool arrays, in the
# order the call gave them; params) -> the plan
Planner = Callable[[list[np.ndarray], Params], Plan]
REDUCTIONS = ("sum", "prod", "mean", "amax", "amin")


def moved(sources: np.ndarray) -> Plan:
    """The plan of a move: output element k is the source position ``sources[k]`` (-1: a
    zero filled in, unfold's padding)."""
    flat = np.asarray(sources, dtype=np.int64).reshape(-1)
    kept = flat >= 0
    return Plan(tuple(np.shape(sources)), np.flatnonzero(kept), flat[kept])


def written(base: np.ndarray, positions: np.ndarray, values: np.ndarray) -> Plan:
    """The plan of ``base`` (a position map) with ``values`` written at the flat
    ``positions``: each written element once (a write twice over is torch's undefined)."""
    flat = np.asarray(positions, dtype=np.int64).reshape(-1)
    out = base.reshape(-1).copy()
    out[flat] = np.broadcast_to(values, np.shape(positions)).reshape(-1)
    return moved(out.reshape(base.shape))


def distinct(positions: np.ndarray, op: str, what: str) -> None:
    """torch leaves a write of several values to one element undefined: refuse it."""
    flat = np.asarray(positions).reshape(-1)
    if np.unique(flat).size != flat.size:
        raise SpecError(f"{op}(): {what} writes one element twice (torch leaves which value "
                        "wins undefined); use distinct indices, or accumulate")


def added(base: np.ndarray, kept: np.ndarray | None, positions: np.ndarray,
          values: np.ndarray) -> Plan:
    """The plan of ``base`` (its elements where ``kept``, a mask over it, or all) with the
    elements of ``values`` grouped into the flat ``positions`` too."""
    flat = base.reshape(-1)
    own = np.arange(flat.size) if kept is None else np.flatnonzero(kept.reshape(-1))
    targets = np.asarray(positions, dtype=np.int64).reshape(-1)
    return Plan(base.shape, np.concatenate([own, targets]).astype(np.int64),
                np.concatenate([flat[own], np.broadcast_to(
                    values, np.shape(positions)).reshape(-1)]).astype(np.int64))


def index_values(value: Any, op: str) -> np.ndarray:
    """An index argument as an int64 or bool numpy array, from any form's value: int64 or
    bool arrays, a constant (a float, a sympy Integer, sympy's true and false)."""
    array = np.asarray(value)
    if array.dtype.kind in "bi":
        return array.astype(np.int64) if array.dtype.kind == "i" else array
    if array.dtype.kind == "u":
        return array.astype(np.int64)
    if array.dtype.kind == "f":
        if not np.all(np.isfinite(array)) or np.any(array != np.round(array)):
            raise SpecError(f"{op}(): an index must be an integer, got {array.reshape(-1)[0]}")
        return array.astype(np.int64)
    if array.dtype.kind != "O":
        raise SpecError(f"{op}(): an index must be an int64 or bool tensor")
    return _decided(array, op)


def _decided(array: np.ndarray, op: str) -> np.ndarray:
    """Object arrays (the sympy form): integers, or decided conditions. A condition that
    compares differentiated inputs has no value here: the exact oracle leaves it out
    (``_mask_limit``)."""
    import sympy

    def item(value: Any) -> Any:
        if isinstance(value, (bool, np.bool_)) or value in (sympy.true, sympy.false):
            return bool(value)
        if (isinstance(value, sympy.Basic) and value.is_Integer) or isinstance(
                value, (int, np.integer)):
            return int(value)
        if isinstance(value, sympy.Basic) and value.is_Rational and value.q == 1:
            return int(value)
        raise SpecError(f"{op}(): an index or mask must have a value, not depend on the "
                        f"differentiated inputs (got {value})")

    items = [item(v) for v in array.reshape(-1)]
    kind = np.bool_ if items and isinstance(items[0], bool) else np.int64
    return np.asarray(items, dtype=kind).reshape(array.shape)


def given_positions(params: Params, count: int) -> tuple[int, ...]:
    """Each given argument's position in the signature (``GIVEN`` where the op takes it)."""
    given = params.get(GIVEN)
    return as_ints(given, GIVEN) if isinstance(given, tuple) else tuple(range(count))


def _layout(args: Sequence[Any], params: Params, index_args: frozenset[int], op: str,
            convert: Callable[[Any], np.ndarray]) -> tuple[list[np.ndarray], np.ndarray]:
    """The planner's arguments (position maps for the real ones, index arrays for the
    others) and the real arguments' values laid end to end, each converted by ``convert``."""
    maps, flats, offset = [], [], 0
    for position, value in zip(given_positions(params, len(args)), args, strict=True):
        if position in index_args:
            maps.append(index_values(value, op))
            continue
        array = convert(value)
        maps.append(np.arange(offset, offset + array.size, dtype=np.int64).reshape(array.shape))
        flats.append(array.reshape(-1))
        offset += array.size
    values = np.concatenate(flats) if flats else np.zeros(0)
    return maps, values


def _extremes(kind: str, plan: Plan, terms: np.ndarray, size: int) -> np.ndarray:
    """Each group's largest (amax) or smallest real part; nan where a term is nan."""
    extreme = np.full(size, -np.inf if kind == "amax" else np.inf)
    (np.maximum if kind == "amax" else np.minimum).at(extreme, plan.dst, terms.real)
    return extreme


def _combined(kind: str, plan: Plan, values: np.ndarray) -> np.ndarray:
    """The groups reduced in float64 (or complex128: a complex step's derivative rides on
    the imaginary part, through an extreme as through the tied terms' mean)."""
    size = math.prod(plan.shape)
    terms = values[plan.src]
    if kind in ("sum", "mean"):
        total = bincount(plan.dst, terms, size)
        if kind == "mean":
            total = total / np.maximum(np.bincount(plan.dst, minlength=size), 1)
        return total.reshape(plan.shape)
    if kind == "prod":
        product = np.ones(size, dtype=terms.dtype)
        np.multiply.at(product, plan.dst, terms)
        return product.reshape(plan.shape)
    extreme = _extremes(kind, plan, terms, size)
    if terms.dtype.kind != "c":
        return extreme.reshape(plan.shape)
    hit = terms.real == extreme[plan.dst]
    with np.errstate(all="ignore"):
        imag = np.bincount(plan.dst, np.where(hit, terms.imag, 0.0), size) / np.bincount(
            plan.dst, hit, size)
    return (extreme + 1j * imag).reshape(plan.shape)


def _combined_symbolic(kind: str, plan: Plan, values: np.ndarray) -> np.ndarray:
    import sympy

    groups: list[list[Any]] = [[] for _ in range(math.prod(plan.shape))]
    for d, s in zip(plan.dst.tolist(), plan.src.tolist(), strict=True):
        groups[d].append(values[s])
    reduce = {"sum": sympy.Add, "mean": sympy.Add, "prod": sympy.Mul, "amax": sympy.Max,
              "amin": sympy.Min}[kind]
    out = [sympy.S.Zero if not group else
           reduce(*group) / (len(group) if kind == "mean" else 1) for group in groups]
    return object_array(np.array(out, dtype=object).reshape(plan.shape))


def _coefficients(kind: str, plan: Plan, values: np.ndarray) -> np.ndarray:
    """d out[dst[t]] / d values[src[t]] for each term t: 1 for a sum; 1/count for a mean;
    the product of the group's other terms for a product (exact where terms are 0, as
    torch's); an extreme's share, split evenly among tied terms (a kink), as torch's. (torch
    counts the input in that split where include_self=False leaves it out: src's gradient
    halves where it equals that input, no tie of the function. Ours is its derivative.)"""
    size = math.prod(plan.shape)
    terms = values[plan.src]
    if kind == "sum":
        return np.ones(terms.shape)
    if kind == "mean":
        return 1.0 / np.bincount(plan.dst, minlength=size)[plan.dst]
    if kind == "prod":
        zero = terms == 0
        zeros = np.bincount(plan.dst, zero, size)[plan.dst]
        safe = np.where(zero, 1.0, terms)
        others = np.ones(size, dtype=terms.dtype)
        np.multiply.at(others, plan.dst, safe)
        others = others[plan.dst]
        return np.where(zero, np.where(zeros == 1, others, 0.0),
                        np.where(zeros == 0, others / safe, 0.0))
    hit = terms.real == _extremes(kind, plan, terms, size)[plan.dst]
    return hit / np.maximum(np.bincount(plan.dst, hit, size)[plan.dst], 1)


def _tied(kind: str, plan: Plan, values: np.ndarray) -> np.ndarray:
    """The output elements where an extreme ties (a kink); none for other reductions."""
    size = math.prod(plan.shape)
    if kind not in ("amax", "amin"):
        return np.zeros(plan.shape, dtype=bool)
    terms = values[plan.src].real
    hit = terms == _extremes(kind, plan, terms, size)[plan.dst]
    return (np.bincount(plan.dst, hit, size) > 1).reshape(plan.shape)


def grouping(name: str, planner: Planner, torch_form: Callable[[Any, Sequence[Any], Params], Any],
             *, shape: Callable[[Sequence[ArgInfo], Params], Shape], doc: str,
             arg_names: tuple[str, ...], params: tuple[Param, ...] = (),
             index_args: frozenset[int] = frozenset(), bool_args: frozenset[int] = frozenset(),
             min_args: int | None = None, positional: tuple[str, ...] = (),
             reduction: Callable[[Params], str] = lambda params: "sum",
             extremes: bool = False, group: str = "indexing") -> Op:
    """An op whose output elements each reduce a group of its real arguments' elements, as
    ``planner`` groups them; ``index_args`` (and ``bool_args``, masks) steer it and get no
    gradient. ``reduction(params)`` is one of ``REDUCTIONS``; ``extremes``: it may be amax or
    amin, whose ties are kinks."""
    steering = index_args | bool_args

    def layout(args: Sequence[Any], params: Params, convert: Callable[[Any], np.ndarray]
               ) -> tuple[Plan, np.ndarray]:
        maps, values = _layout(args, params, steering, name, convert)
        return planner(maps, params), values

    def forward(args: Arrays, params: Params) -> np.ndarray:
        plan, values = layout(args, params, as_float)
        with np.errstate(all="ignore"):
            return _combined(reduction(params), plan, values)

    def symbolic(args: Arrays, params: Params) -> np.ndarray:
        plan, values = layout(args, params, object_array)
        return _combined_symbolic(reduction(params), plan, values)

    def backward(magnitudes: bool) -> Callable[..., Gradients]:
        def apply(g: np.ndarray, args: Arrays, out: np.ndarray, params: Params,
                  needs: Sequence[bool]) -> Gradients:
            plan, values = layout(args, params, as_float)
            with np.errstate(all="ignore"):
                weights = _coefficients(reduction(params), plan, values)
            cotangent = as_float(g).reshape(-1)[plan.dst]
            if magnitudes:
                weights, cotangent = np.abs(weights), np.abs(cotangent)
            totals = bincount(plan.src, cotangent * weights, values.size)
            grads: Gradients = []
            start = 0
            for position, value in zip(given_positions(params, len(args)), args, strict=True):
                if position in steering:
                    grads.append(None)
                    continue
                size = int(np.size(value))
                grads.append(totals[start:start + size].reshape(np.shape(value)))
                start += size
            return grads

        return apply

    def kinks(args: Sequence[np.ndarray], params: Params) -> np.ndarray:
        plan, values = layout(args, params, as_float)
        return _tied(reduction(params), plan, values)

    return Op(
        name=name, arg_names=arg_names, group=group, doc=doc,
        min_args=len(arg_names) if min_args is None else min_args, max_args=len(arg_names),
        params=params, shape=shape, torch=lambda args, p: torch_form(torch_module(), args, p),
        numpy=forward, vjp=backward(False), vjp_magnitude=backward(True), sympy=symbolic,
        integer_args=index_args, bool_args=bool_args, nondifferentiable_args=steering,
        positional=positional, kinks=kinks if extremes else None,
        kink_where="at a tie for the extreme (reduce amax or amin)" if extremes else "",
        exact_limit=_mask_limit)


def _mask_limit(args: Sequence[ArgInfo]) -> str | None:
    """A mask computed in the program (a comparison) is symbolic in the exact oracle's sympy
    form where it compares differentiated inputs: sympy cannot index by it."""
    if any(a.is_bool and not a.is_constant for a in args):
        return "a mask computed from the inputs (sympy indexes by a constant mask only)"
    return None
