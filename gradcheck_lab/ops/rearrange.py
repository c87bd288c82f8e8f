"""The factory of ops that only move, copy or drop elements: slicing, flip, cat, pad, gather...

Each is one numpy function, ``move(arrays, params, fill)``, that works alike on float arrays
(the forward), object arrays (the exact oracle's sympy form) and integer arrays: applied to
the numbers 1..n, one per element of the inputs (0 where ``pad`` fills in a constant), it
gives the op's index map, from which the VJP follows for every such op at once: each output
cotangent is added back to the element it came from (``np.bincount``), so a copied element
(expand, tile, reflect padding) sums its copies' cotangents. The shape rule runs ``move`` on
zero-stride views, so it costs nothing at any size and says what numpy says of bad indices.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from gradcheck_lab.errors import SpecError
from gradcheck_lab.ops.base import (
    ArgInfo,
    Arrays,
    Gradients,
    Op,
    Param,
    Params,
    Shape,
    as_float,
    bincount,
    linear_magnitudes,
    object_array,
    torch_module,
)

# (arrays, params, fill) -> the moved array; ``fill`` is what padding writes (the case's
# value for the forward, 0 for the index map).
Move = Callable[[list[np.ndarray], Params, Any], np.ndarray]
TorchMove = Callable[[Any, Sequence[Any], Params], Any]


def rearrangement(name: str, move: Move, torch_form: TorchMove, *, doc: str,
                  arg_names: tuple[str, ...] = ("input",), min_args: int = 1,
                  max_args: int = 1, params: tuple[Param, ...] = (),
                  integer_args: frozenset[int] = frozenset(),
                  check: Callable[[Sequence[ArgInfo], Params], None] | None = None,
                  positional: tuple[str, ...] = (), variadic: str | None = None,
                  fill: Callable[[Params], float] = lambda params: 0.0,
                  callable_: bool = True, infix: str | None = None,
                  sized: Callable[[list[Shape], Params], Shape] | None = None) -> Op:
    """An op whose value is its inputs' elements moved by ``move``; ``integer_args`` (index
    tensors) steer the move and get no gradient; ``fill(params)`` is the padding value.
    The result's shape is ``move`` applied to zero-strided placeholders, which allocates
    nothing for a move that only selects or views; an op whose result can be larger than
    its inputs (tile, repeat, pad) gives ``sized``, its shape in integer arithmetic, so that
    a huge result is refused before anything is allocated."""

    def shape(args: Sequence[ArgInfo], params: Params) -> Shape:
        if check is not None:
            check(args, params)
        if sized is not None:
            return sized([a.shape for a in args], params)
        placeholders = [np.broadcast_to(np.zeros((), np.int64 if i in integer_args else
                                                 np.int8), a.shape)
                        for i, a in enumerate(args)]
        try:
            return tuple(np.shape(move(placeholders, params, 0)))
        except (ValueError, IndexError, TypeError) as exc:
            raise SpecError(f"{name}(): {exc}") from None

    def forward(args: Arrays, params: Params) -> np.ndarray:
        # Integer data (indices a traced forward reshapes or expands) stays integer, as in
        # torch: a later gather or index reads it as indices.
        integral = all(np.asarray(a).dtype.kind in "biu" for i, a in enumerate(args)
                       if i not in integer_args)
        arrays = [np.asarray(a) if i in integer_args or integral else as_float(a)
                  for i, a in enumerate(args)]
        moved = np.asarray(move(arrays, params, fill(params)))
        return moved if integral else as_float(moved)

    def symbolic(args: Arrays, params: Params) -> np.ndarray:
        import sympy

        arrays = [np.asarray(a) if i in integer_args else object_array(a)
                  for i, a in enumerate(args)]
        return object_array(move(arrays, params, sympy.nsimplify(fill(params))))

    def vjp(g: np.ndarray, args: Arrays, out: np.ndarray, params: Params,
            needs: Sequence[bool]) -> Gradients:
        sources, offset = _sources(move, integer_args, args, params)
        weights = as_float(g).reshape(-1)
        totals = bincount(sources, weights, offset + 1)[1:]  # [0]: what padding filled in
        return _split(integer_args, totals, args, ())

    def probes_vjp(g: np.ndarray, args: Arrays, out: np.ndarray, params: Params,
                   needs: Sequence[bool]) -> Gradients:
        # Probe k's sources shifted into a bin range of its own: one bincount for all, each
        # bin summed in the same order as one probe's alone.
        sources, offset = _sources(move, integer_args, args, params)
        count = len(g)
        shifted = (sources[np.newaxis, :]
                   + (offset + 1) * np.arange(count, dtype=sources.dtype)[:, np.newaxis])
        weights = as_float(g).reshape(-1)
        totals = bincount(shifted.reshape(-1), weights, count * (offset + 1))
        return _split(integer_args, totals.reshape(count, offset + 1)[:, 1:], args, (count,))

    return Op(
        name=name, arg_names=arg_names, group="structure", doc=doc, min_args=min_args,
        max_args=max_args, params=params, shape=shape,
        torch=lambda args, p: torch_form(torch_module(), args, p), numpy=forward, vjp=vjp,
        vjp_magnitude=linear_magnitudes(vjp), probes_vjp=probes_vjp, sympy=symbolic,
        integer_args=integer_args,
        nondifferentiable_args=integer_args, positional=positional, variadic=variadic,
        callable=callable_, infix=infix)


def _sources(move: Move, integer_args: frozenset[int], args: Arrays,
             params: Params) -> tuple[np.ndarray, int]:
    """Where each output element of ``move`` comes from: 1 + its flat position among the real
    arguments' elements laid end to end (0: what padding filled in); and their count."""
    maps, offset = [], 0
    for i, a in enumerate(args):
        if i in integer_args:
            maps.append(np.asarray(a))
            continue
        size = int(np.size(a))
        maps.append(np.arange(offset + 1, offset + size + 1).reshape(np.shape(a)))
        offset += size
    return np.asarray(move(maps, params, 0)).reshape(-1), offset


def _split(integer_args: frozenset[int], totals: np.ndarray, args: Arrays,
           lead: tuple[int, ...]) -> Gradients:
    """The summed cotangent (``lead`` + the arguments' elements end to end) cut back into
    each real argument's gradient."""
    grads: Gradients = []
    start = 0
    for i, a in enumerate(args):
        if i in integer_args:
            grads.append(None)
            continue
        size = int(np.size(a))
        grads.append(totals[..., start:start + size].reshape((*lead, *np.shape(a))))
        start += size
    return grads


def checked_indices(index: np.ndarray, size: int, op: str) -> np.ndarray:
    """Class or row indices in [0, size), as torch requires (numpy would wrap -1)."""
    index = np.asarray(index)
    if index.size and (index.min() < 0 or index.max() >= size):
        bad = index[(index < 0) | (index >= size)].reshape(-1)[0]
        raise SpecError(f"{op}(): index {int(bad)} is out of range for a dim of size {size}")
    return index
