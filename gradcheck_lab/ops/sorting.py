"""Order statistics, giving torch's values (their indices are integer data, never
differentiated): ``sort msort topk kthvalue median cummax cummin``.

Each output element is one element of the input, picked by comparing values: ``pick`` gives,
for the real parts of the input, the flat position of the element that lands at each output
place (NaN ordered largest, as torch's sort; median and the running extremes propagate it).
The forward gathers those elements, the VJP sends each cotangent back to the element that
landed there. Where the pick depends on a tie (two equal elements trading places changes
which one lands where) the function has a kink, reported and skipped as max's. The sympy
forms are exact: a sorting network of Min and Max (Batcher's odd-even merge sort), and Max
and Min over prefixes for the running extremes.
"""

from __future__ import annotations

import math
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
    int_param,
    normalize_dim,
    object_array,
    torch_module,
)

# (real values moved so the compared dim is last, params) -> per output place, the position
# along that last dim of the element that lands there
Pick = Callable[[np.ndarray, Params], np.ndarray]
# (the same, a mask of the elements whose tie is a kink)
TieRule = Callable[[np.ndarray, Params], np.ndarray]
# (one slice of sympy expressions, params) -> its output values
SympyRule = Callable[[list[Any], Params], list[Any]]

# The sorting network's nested Min/Max grow with the slice: the exact oracle takes about 0.5 s
# for a sort of 4 elements, 4 s of 6, 5 to 14 s of 8 (a running max, Max over prefixes, 1.5 s
# for 8). Its cost rule sees the input's shape, not the dim sorted, so it counts every element
# as one slice; beyond these the rule sweep, exact here too (it only routes cotangents), runs.
EXACT_MAX_SORTED = 6
EXACT_MAX_RUNNING = 16
# What the sympy form builds at all, asked for (symbolic: exact) past the cost rule: a
# network over one slice of this many would take minutes to differentiate, not forever.
SYMPY_MAX_SLICE = 16


def _int(params: Params, key: str) -> int:
    return int_param(params, key)


def _dim_of(params: Params, ndim: int, op: str) -> int | None:
    """The compared dim, non-negative; None: every element at once (median without dim)."""
    if "dim" not in params:
        return 0  # msort
    return None if params["dim"] is None else normalize_dim(_int(params, "dim"), ndim, op)


def _last(x: np.ndarray, dim: int | None) -> np.ndarray:
    """``x`` with the compared dim last (the whole tensor flattened when None; 0-d as 1)."""
    if dim is None or x.ndim == 0:
        return x.reshape(-1) if dim is None else x.reshape(1)
    return np.moveaxis(x, dim, -1)


def _back(picked: np.ndarray, shape: Shape, dim: int | None, keep: bool) -> np.ndarray:
    """Output places (compared dim last) back in torch's layout: the dim in place, or
    dropped (``keep`` False: a reduction)."""
    if dim is None:
        return picked.reshape(())
    if not shape:
        return picked.reshape(()) if picked.shape[-1:] == (1,) else picked
    if keep:
        return np.moveaxis(picked, -1, dim)
    return picked[..., 0]


def _order(x: np.ndarray, descending: bool) -> np.ndarray:
    """Positions along the last dim in sorted order; NaN largest, as torch's."""
    order = np.argsort(x, axis=-1, kind="stable")
    return np.flip(order, -1) if descending else order


def selection(name: str, pick: Pick, ties: TieRule, sympy_rule: SympyRule, *,
              shape: Callable[[Sequence[ArgInfo], Params], Shape],
              torch_form: Callable[[Any, Any, Params], Any], params: tuple[Param, ...],
              keep: Callable[[Params], bool], doc: str, exact_most: int = EXACT_MAX_SORTED) -> Op:
    """An op whose output places each take one input element, as ``pick`` orders them along
    the compared dim; ``keep(params)``: whether that dim stays (else it is reduced to one)."""

    def sources(x: np.ndarray, params: Params) -> np.ndarray:
        """The flat input position of each output element."""
        dim = _dim_of(params, x.ndim, name)
        grid = _last(np.arange(x.size).reshape(x.shape), dim)
        chosen = np.take_along_axis(grid, pick(_last(x.real, dim), params), axis=-1)
        return _back(chosen, x.shape, dim, keep(params))

    def forward(args: Arrays, params: Params) -> np.ndarray:
        x = as_float(args[0])
        return x.reshape(-1)[sources(x, params)]

    def backward(magnitudes: bool) -> Callable[..., Gradients]:
        def apply(g: np.ndarray, args: Arrays, out: np.ndarray, params: Params,
                  needs: Sequence[bool]) -> Gradients:
            x = as_float(args[0])
            weights = as_float(g).reshape(-1)
            weights = np.abs(weights) if magnitudes else weights
            return [bincount(sources(x, params).reshape(-1), weights, x.size).reshape(x.shape)]

        return apply

    def symbolic(args: Arrays, params: Params) -> np.ndarray:
        x = object_array(args[0])
        dim = _dim_of(params, x.ndim, name)
        rows = _last(x, dim)
        flat = rows.reshape(-1, rows.shape[-1])
        out = [sympy_rule(list(row), params) for row in flat]
        values = object_array(np.array(out, dtype=object).reshape(*rows.shape[:-1], -1))
        return object_array(_back(values, x.shape, dim, keep(params)))

    def kinks(args: Sequence[np.ndarray], params: Params) -> np.ndarray:
        x = np.asarray(args[0], dtype=np.float64)
        dim = _dim_of(params, x.ndim, name)
        mask = ties(_last(x, dim), params)
        if dim is None:
            return mask.reshape(x.shape)
        return mask.reshape(x.shape) if x.ndim == 0 else np.moveaxis(mask, -1, dim)

    return Op(
        name=name, arg_names=("input",), group="reduction", doc=doc, min_args=1, max_args=1,
        params=params, shape=shape, torch=lambda args, p: torch_form(torch_module(), args[0], p),
        numpy=forward, vjp=backward(False), vjp_magnitude=backward(True), sympy=symbolic,
        kinks=kinks, kink_where="at a tie that decides where an element lands",
        exact_limit=_exact_limit(name, exact_most))


def _exact_limit(name: str, most: int) -> Callable[[Sequence[ArgInfo]], str | None]:
    def limit(args: Sequence[ArgInfo]) -> str | None:
        size = math.prod(args[0].shape)
        if size > most:
            return f"{name}() of {size} elements (sympy affords {most})"
        return None

    return limit


# --- sympy: a sorting network ----------------------------------------------------------------


def _batcher(n: int) -> list[tuple[int, int]]:
    """Batcher's odd-even merge sort: compare-exchange pairs sorting n (a power of 2)."""
    pairs: list[tuple[int, int]] = []
    p = 1
    while p < n:
        k = p
        while k >= 1:
            for j in range(k % p, n - k, 2 * k):
                pairs.extend((i + j, i + j + k) for i in range(min(k, n - j - k))
                             if (i + j) // (2 * p) == (i + j + k) // (2 * p))
            k //= 2
        p *= 2
    return pairs


def sorted_symbolic(row: list[Any]) -> list[Any]:
    """``row`` in ascending order as Min/Max expressions (padded with +oo to a power of 2,
    which Min and Max drop at once)."""
    import sympy

    if len(row) > SYMPY_MAX_SLICE:
        raise SpecError(f"sympy sorts at most {SYMPY_MAX_SLICE} elements at once (a sorting "
                        f"network of Min and Max), not {len(row)}: use the rule sweep")
    size = 1 << max(len(row) - 1, 0).bit_length()
    values = [*row, *[sympy.oo] * (size - len(row))]
    for i, j in _batcher(size):
        values[i], values[j] = sympy.Min(values[i], values[j]), sympy.Max(values[i], values[j])
    return values[:len(row)]


# --- ties --------------------------------------------------------------------------------------


def _adjacent_ties(x: np.ndarray, order: np.ndarray, matters: np.ndarray) -> np.ndarray:
    """The elements of a pair, adjacent in sorted ``order``, that are equal, where
    ``matters`` (over the pairs: the first element's place) says the pair decides the
    output."""
    ranked = np.take_along_axis(x, order, axis=-1)
    pair = (ranked[..., 1:] == ranked[..., :-1]) & matters[..., :-1]
    marked = np.zeros(x.shape, dtype=bool)
    marked[..., 1:] |= pair
    marked[..., :-1] |= pair
    mask = np.zeros(x.shape, dtype=bool)
    np.put_along_axis(mask, order, marked, axis=-1)
    return mask


def _sort_ties(x: np.ndarray, params: Params) -> np.ndarray:
    return _adjacent_ties(x, _order(x, False), np.ones(x.shape, dtype=bool))


def _equal_to_picked(x: np.ndarray, picked: np.ndarray) -> np.ndarray:
    """Elements equal to the picked one of their slice, where it is not alone."""
    value = np.take_along_axis(x, picked, axis=-1)
    hit = x == value
    return hit & (np.sum(hit, axis=-1, keepdims=True) > 1)


# --- sort, msort, topk ------------------------------------------------------------------------


def _sort_pick(x: np.ndarray, params: Params) -> np.ndarray:
    return _order(x, bool(params.get("descending", False)))


def _sort_symbolic(row: list[Any], params: Params) -> list[Any]:
    ascending = sorted_symbolic(row)
    return ascending[::-1] if params.get("descending") else ascending


def _same_shape(op: str) -> Callable[[Sequence[ArgInfo], Params], Shape]:
    def rule(args: Sequence[ArgInfo], params: Params) -> Shape:
        _dim_of(params, len(args[0].shape), op)
        return args[0].shape

    return rule


def _msort_shape(args: Sequence[ArgInfo], params: Params) -> Shape:
    if not args[0].shape:
        raise SpecError("msort() needs at least 1 dim")
    return args[0].shape


def _k(params: Params) -> int:
    return _int(params, "k")


def _topk_shape(args: Sequence[ArgInfo], params: Params) -> Shape:
    shape = args[0].shape
    dim = _dim_of(params, len(shape), "topk")
    size = shape[dim] if shape and dim is not None else 1
    if not (0 if shape else 1) <= _k(params) <= size:  # torch's k=0 of a 0-d tensor is 0-d
        raise SpecError(f"topk(): k={_k(params)} is out of range for a dim of size {size}")
    if not params["sorted"]:
        raise SpecError("topk(): sorted=False leaves the order of the values to torch's "
                        "kernel; use sorted=True")
    return tuple(_k(params) if d == dim else n for d, n in enumerate(shape))


def _topk_pick(x: np.ndarray, params: Params) -> np.ndarray:
    return _order(x, bool(params["largest"]))[..., :_k(params)]


def _topk_ties(x: np.ndarray, params: Params) -> np.ndarray:
    order = _order(x, bool(params["largest"]))
    # a pair whose first element is among the k: it decides a value (or which one is in)
    places = np.broadcast_to(np.arange(x.shape[-1]) < _k(params), x.shape)
    return _adjacent_ties(x, order, places)


def _topk_symbolic(row: list[Any], params: Params) -> list[Any]:
    ascending = sorted_symbolic(row)
    return (ascending[::-1] if params["largest"] else ascending)[:_k(params)]


def _topk_torch(t: Any, x: Any, params: Params) -> Any:
    return t.topk(x, _k(params), _int(params, "dim"), bool(params["largest"]),
                  bool(params["sorted"])).values


# --- kthvalue and median: one element per slice -------------------------------------------------


def _reduced_shape(op: str, k: Callable[[Params, int], int]) -> Callable[..., Shape]:
    """A one-element-per-slice rule: ``k(params, size)`` (1-based) is checked in range."""
    def rule(args: Sequence[ArgInfo], params: Params) -> Shape:
        shape = args[0].shape
        dim = _dim_of(params, len(shape), op)
        if dim is None:
            if params.get("keepdim"):
                raise SpecError(f"{op}(): keepdim=True needs dim=")
            return ()
        size = shape[dim] if shape else 1
        if not 1 <= k(params, size) <= size:
            raise SpecError(f"{op}(): k={k(params, size)} is out of range for a dim of size "
                            f"{size}")
        if params["keepdim"]:
            return tuple(1 if d == dim else n for d, n in enumerate(shape))
        return tuple(n for d, n in enumerate(shape) if d != dim)

    return rule


def _kth_pick(x: np.ndarray, params: Params) -> np.ndarray:
    return _order(x, False)[..., _k(params) - 1:_k(params)]


def _median_pick(x: np.ndarray, params: Params) -> np.ndarray:
    """The lower median; the first NaN of a slice that has one (torch's median is NaN)."""
    lower = _order(x, False)[..., (x.shape[-1] - 1) // 2:(x.shape[-1] + 1) // 2]
    nan = np.isnan(x)
    return np.where(nan.any(axis=-1, keepdims=True), np.argmax(nan, axis=-1)[..., None],
                    lower)


def _one_pick_ties(pick: Pick) -> TieRule:
    return lambda x, params: _equal_to_picked(x, pick(x, params))


def _kth_symbolic(row: list[Any], params: Params) -> list[Any]:
    return [sorted_symbolic(row)[_k(params) - 1]]


def _median_symbolic(row: list[Any], params: Params) -> list[Any]:
    return [sorted_symbolic(row)[(len(row) - 1) // 2]]


def _median_torch(t: Any, x: Any, params: Params) -> Any:
    if params["dim"] is None:
        return t.median(x)
    return t.median(x, _int(params, "dim"), bool(params["keepdim"])).values


# --- cummax and cummin --------------------------------------------------------------------------


def _running_pick(largest: bool) -> Pick:
    """The position of the running extreme: the latest of equals (torch's), a NaN once one
    is seen."""
    def pick(x: np.ndarray, params: Params) -> np.ndarray:
        picked = np.zeros(x.shape, dtype=np.int64)
        best = x[..., 0]
        where = np.zeros(x.shape[:-1], dtype=np.int64)
        for i in range(x.shape[-1]):
            value = x[..., i]
            better = (value >= best) if largest else (value <= best)
            take = (np.isnan(value) & ~np.isnan(best)) | (better & ~np.isnan(best)) | (i == 0)
            best, where = np.where(take, value, best), np.where(take, i, where)
            picked[..., i] = where
        return picked

    return pick


def _running_ties(largest: bool) -> TieRule:
    """Elements tied for the running extreme at some place they take part in."""
    def ties(x: np.ndarray, params: Params) -> np.ndarray:
        best = (np.fmax if largest else np.fmin).accumulate(x, axis=-1)
        mask = np.zeros(x.shape, dtype=bool)
        for i in range(x.shape[-1]):
            hit = x[..., :i + 1] == best[..., i:i + 1]
            mask[..., :i + 1] |= hit & (hit.sum(axis=-1, keepdims=True) > 1)
        return mask

    return ties


def _running_symbolic(largest: bool) -> SympyRule:
    def rule(row: list[Any], params: Params) -> list[Any]:
        import sympy

        pick = sympy.Max if largest else sympy.Min
        return [pick(*row[:i + 1]) for i in range(len(row))]

    return rule


_SORT_PARAMS = (Param("dim", "int", default=-1), Param("descending", "bool", default=False),
                Param("stable", "bool", default=False))
_KTH_PARAMS = (Param("k", "int", required=True), Param("dim", "int", default=-1),
               Param("keepdim", "bool", default=False))


def _running(name: str, largest: bool) -> Op:
    return selection(
        name, _running_pick(largest), _running_ties(largest), _running_symbolic(largest),
        shape=_same_shape(name), params=(Param("dim", "int", required=True),),
        torch_form=lambda t, x, p: getattr(t, name)(x, _int(p, "dim")).values,
        keep=lambda p: True, exact_most=EXACT_MAX_RUNNING,
        doc=f"running {'max' if largest else 'min'} along `dim` (the values)")


SORTING = [
    selection("sort", _sort_pick, _sort_ties, _sort_symbolic, shape=_same_shape("sort"),
              params=_SORT_PARAMS, keep=lambda p: True,
              torch_form=lambda t, x, p: t.sort(x, dim=_int(p, "dim"),
                                                descending=bool(p["descending"]),
                                                stable=bool(p["stable"])).values,
              doc="the values sorted along `dim` (NaN largest); a tie is a kink"),
    selection("msort", _sort_pick, _sort_ties, _sort_symbolic, shape=_msort_shape, params=(),
              keep=lambda p: True, torch_form=lambda t, x, p: t.msort(x),
              doc="sort along dim 0"),
    selection("topk", _topk_pick, _topk_ties, _topk_symbolic, shape=_topk_shape,
              params=(Param("k", "int", required=True), Param("dim", "int", default=-1),
                      Param("largest", "bool", default=True),
                      Param("sorted", "bool", default=True)),
              keep=lambda p: True, torch_form=_topk_torch,
              doc="the k largest (smallest) values along `dim`, in order; sorted=True only"),
    selection("kthvalue", _kth_pick, _one_pick_ties(_kth_pick), _kth_symbolic,
              shape=_reduced_shape("kthvalue", lambda p, size: _k(p)), params=_KTH_PARAMS,
              keep=lambda p: bool(p["keepdim"]),
              torch_form=lambda t, x, p: t.kthvalue(x, _k(p), _int(p, "dim"),
                                                    bool(p["keepdim"])).values,
              doc="the k-th smallest value along `dim` (k from 1)"),
    selection("median", _median_pick, _one_pick_ties(_median_pick), _median_symbolic,
              shape=_reduced_shape("median", lambda p, size: (size + 1) // 2),
              params=(Param("dim", "int"), Param("keepdim", "bool", default=False)),
              keep=lambda p: bool(p["keepdim"]), torch_form=_median_torch,
              doc="the lower median of every element, or along `dim` (NaN if one is NaN)"),
    _running("cummax", True),
    _running("cummin", False),
]
