"""Indexing by tensors and writing into views, with torch semantics: ``index`` (x[i, :, j]),
``index_put``, ``scatter scatter_add scatter_reduce masked_scatter``, the view scatters that
in-place writes become (``select_scatter slice_scatter diagonal_scatter as_strided_scatter``),
``as_strided``, and ``unfold``/``fold`` (im2col and its transpose, col2im).

Each is an ``ops.grouping.grouping``: a planner that says which elements of the arguments each
output element takes (and how they combine), from the shapes, params and integer index tensors
alone. Out-of-range indices, a write of two values to one element (which torch leaves
undefined) and too short a source are SpecErrors when evaluated; the shape rules check what
the shapes decide.
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
    Param,
    Params,
    Shape,
    broadcast_shapes,
    int_param,
    normalize_dim,
)
from gradcheck_lab.ops.grouping import (
    REDUCTIONS,
    Plan,
    added,
    distinct,
    given_positions,
    grouping,
    moved,
    written,
)
from gradcheck_lab.ops.windows import per_dim

# --- checks shared by the shape rules and the planners -----------------------------------------


def _int(params: Params, key: str) -> int:
    return int_param(params, key)


def _ints(value: Any) -> tuple[int, ...]:
    return (value,) if isinstance(value, int) else tuple(value)


def require_index(info: ArgInfo, op: str, what: str) -> None:
    """An index argument is an integer (or bool) tensor, or a constant integer."""
    if info.is_integer:
        return
    if info.is_constant and info.const is not None and info.const.denominator == 1:
        return
    raise SpecError(f"{op}(): {what} must be an int64 tensor (integer indices), not real")


def in_range(index: np.ndarray, size: int, op: str, dim: int, wrap: bool) -> np.ndarray:
    """Indices into a dim of ``size``: in [0, size), or with ``wrap`` in [-size, size) and
    made non-negative (advanced indexing's negatives count from the end, scatter's do not)."""
    low = -size if wrap else 0
    bad = (index < low) | (index >= size)
    if np.any(bad):
        raise SpecError(f"{op}(): index {int(index[bad].reshape(-1)[0])} is out of range for "
                        f"dim {dim} of size {size}")
    return np.where(index < 0, index + size, index) if wrap else index


def same_shape(shape: Shape, wanted: Shape, op: str, what: str) -> None:
    if tuple(shape) != tuple(wanted):
        raise SpecError(f"{op}(): {what} must have shape {list(wanted)}, got {list(shape)}")


def fitted_shape(values: Shape, target: Shape, op: str) -> None:
    """Written values broadcast to the indexed shape, as aten.index_put takes them (Python's
    x[i] = v drops v's leading size-1 dims before it gets there)."""
    if len(values) > len(target) or any(
            v not in (1, t) for v, t in zip(values[::-1], target[::-1], strict=False)):
        raise SpecError(f"{op}(): values of shape {list(values)} cannot be broadcast to the "
                        f"indexed shape {list(target)}")


def fitted(values: np.ndarray, target: Shape, op: str) -> np.ndarray:
    fitted_shape(values.shape, target, op)
    return np.broadcast_to(values, target)


# --- index and index_put --------------------------------------------------------------------
# torch's indices list, one slot per argument i0, i1, ...: a slot not given is None (a full
# slice of one dim); an int64 tensor indexes one dim; a bool mask (index_put only) as many as
# it has, as its nonzero() positions. The broadcast index dims go where the indexed dims are
# when those are adjacent, else first (numpy's rule too).

MAX_INDICES = 8
INDEX_SLOTS = tuple(f"i{k}" for k in range(MAX_INDICES))


def _slots(params: Params, first: int, count: int) -> list[tuple[int, int]]:
    """(argument number, slot) of each given index argument, the slots counted from the
    signature position ``first``."""
    return [(k, position - first) for k, position in enumerate(given_positions(params, count))
            if position >= first]


def _entries(x_shape: Shape, slots: list[tuple[int, Shape, bool]], op: str
             ) -> list[tuple[int, int, Shape, bool]]:
    """(slot, first dim, shape, is_mask) of each index, after the full slices before it."""
    if not slots:
        raise SpecError(f"{op}() needs at least one index tensor (i0, i1, ...; None where a "
                        "dim is taken whole)")
    given = {slot: (shape, mask) for slot, shape, mask in slots}
    entries, dim = [], 0
    for slot in range(max(given) + 1):
        shape, mask = given.get(slot, ((), False))
        if slot in given:
            if mask and not shape:
                raise SpecError(f"{op}(): i{slot} is a 0-d mask: index with a mask of the "
                                "indexed dims' shape")
            entries.append((slot, dim, shape, mask))
        dim += len(shape) if mask else 1
    if dim > len(x_shape):
        raise SpecError(f"{op}(): the indices cover {dim} dims of a {len(x_shape)}-d input")
    for slot, first, shape, mask in entries:
        if mask and tuple(x_shape[first:first + len(shape)]) != tuple(shape):
            raise SpecError(f"{op}(): the mask i{slot} of shape {list(shape)} does not match "
                            f"the input's dims {list(x_shape[first:first + len(shape)])}")
    return entries


def _indexed_shape(x_shape: Shape, entries: list[tuple[int, int, Shape, bool]],
                   op: str) -> Shape | None:
    """The shape x[key] has, as torch places the broadcast index dims; None where a mask's
    count of True elements (known only from its values) is part of it."""
    if any(mask for *_, mask in entries):
        return None
    try:
        broadcast = broadcast_shapes(*(shape for _, _, shape, _ in entries))
    except SpecError as exc:
        raise SpecError(f"{op}(): the index tensors' {exc.message}") from None
    dims = [dim for _, dim, _, _ in entries]
    rest = tuple(n for d, n in enumerate(x_shape) if d not in dims)
    if dims == list(range(dims[0], dims[0] + len(dims))):
        return (*x_shape[:dims[0]], *broadcast, *x_shape[dims[-1] + 1:])
    return (*broadcast, *rest)


def _index_infos(args: Sequence[ArgInfo], params: Params, first: int, op: str
                 ) -> list[tuple[int, int, Shape, bool]]:
    slots = []
    for k, slot in _slots(params, first, len(args)):
        require_index(args[k], op, f"i{slot}")
        slots.append((slot, args[k].shape, args[k].is_bool))
    return _entries(args[0].shape, slots, op)


def _key(x_shape: Shape, maps: list[np.ndarray], params: Params, first: int,
         op: str) -> tuple[Any, ...]:
    """The numpy key of the given indices: full slices, wrapped int arrays, masks'
    nonzero() positions."""
    slots = [(slot, maps[k]) for k, slot in _slots(params, first, len(maps))]
    entries = _entries(x_shape, [(slot, np.shape(a), a.dtype == np.bool_) for slot, a in slots],
                       op)
    values = dict(slots)
    key: list[Any] = []
    for slot, dim, _, mask in entries:
        key.extend([slice(None)] * (dim - len(key)))
        if mask:
            key.extend(np.nonzero(values[slot]))
        else:
            key.append(in_range(values[slot], x_shape[dim], op, dim, wrap=True))
    return tuple(key)


def _index_shape(args: Sequence[ArgInfo], params: Params) -> Shape:
    entries = _index_infos(args, params, 1, "index")
    if any(mask for *_, mask in entries):
        raise SpecError("index(): a bool mask index gives a shape that depends on its values; "
                        "pass its nonzero() positions as int64 index tensors instead")
    shape = _indexed_shape(args[0].shape, entries, "index")
    assert shape is not None  # no masks
    return shape


def _index_plan(maps: list[np.ndarray], params: Params) -> Plan:
    x = maps[0]
    return moved(x[_key(x.shape, maps, params, 1, "index")])


def _torch_indices(t: Any, args: Sequence[Any], params: Params, first: int) -> list[Any]:
    """torch's indices list: None where a slot is not given, long (or bool) tensors."""
    slots = dict((slot, args[k]) for k, slot in _slots(params, first, len(args)))
    return [None if slot not in slots else as_long(t, slots[slot])
            for slot in range(max(slots) + 1)]


def as_long(t: Any, value: Any) -> Any:
    """An index for torch: a constant (a float tensor or number) as int64."""
    if not t.is_tensor(value):
        return t.tensor(int(value))
    return value if value.dtype in (t.int64, t.bool) else value.long()


def _index_torch(t: Any, args: Sequence[Any], params: Params) -> Any:
    return t.ops.aten.index.Tensor(args[0], _torch_indices(t, args, params, 1))


def _index_put_shape(args: Sequence[ArgInfo], params: Params) -> Shape:
    if 1 not in given_positions(params, len(args)):
        raise SpecError("index_put() needs values: index_put(x, values, i0, i1, ...)")
    entries = _index_infos(args, params, 2, "index_put")
    target = _indexed_shape(args[0].shape, entries, "index_put")
    if target is not None:
        fitted_shape(args[1].shape, target, "index_put")
    return args[0].shape


def _index_put_plan(maps: list[np.ndarray], params: Params) -> Plan:
    x, values = maps[0], maps[1]
    positions = np.arange(x.size).reshape(x.shape)[_key(x.shape, maps, params, 2, "index_put")]
    values = fitted(values, positions.shape, "index_put")
    if params["accumulate"]:
        return added(x, None, positions, values)
    distinct(positions, "index_put", "index_put without accumulate")
    return written(x, positions, values)


def _index_put_torch(t: Any, args: Sequence[Any], params: Params) -> Any:
    return t.ops.aten.index_put.default(args[0], _torch_indices(t, args, params, 2), args[1],
                                        bool(params["accumulate"]))


INDEX_OPS = [
    grouping("index", _index_plan, _index_torch, shape=_index_shape,
             arg_names=("input", *INDEX_SLOTS), min_args=1,
             params=(Param(GIVEN, "dims", hidden=True),),
             index_args=frozenset(range(1, MAX_INDICES + 1)),
             doc="x[i0, :, i2] as index(x, i0, None, i2) (aten.index): int64 index tensors, "
                 "broadcast; None (or a slot left out) takes a dim whole; negatives count "
                 "from the end; no bool masks (the shape would depend on their values: pass "
                 "their nonzero() positions)"),
    grouping("index_put", _index_put_plan, _index_put_torch, shape=_index_put_shape,
             arg_names=("input", "values", *INDEX_SLOTS), min_args=2,
             params=(Param("accumulate", "bool", default=False), Param(GIVEN, "dims",
                                                                       hidden=True)),
             index_args=frozenset(range(2, MAX_INDICES + 2)),
             doc="x[i0, :, i2] = values as index_put(x, values, i0, None, i2); an index may "
                 "be a bool mask; without accumulate each element is written once at most"),
]


# --- scatter, scatter_add, scatter_reduce, masked_scatter -------------------------------------


def _scatter_check(args: Sequence[ArgInfo], params: Params, op: str,
                   scalar_src: bool = False) -> int:
    """torch's scatter geometry: index with the input's dims, no larger than src (a 0-d src
    for scatter: a value written at every index), nor than the input off ``dim``."""
    x, index, src = (a.shape for a in args)
    require_index(args[1], op, "index")
    if args[1].is_bool:
        raise SpecError(f"{op}(): index must be an int64 tensor, not a mask")
    dim = normalize_dim(_int(params, "dim"), len(x), op)
    if len(index) != len(x):
        raise SpecError(f"{op}(): index needs as many dims as input ({len(x)}), got "
                        f"{len(index)}")
    if not (scalar_src and src == ()) and len(src) != len(index):
        raise SpecError(f"{op}(): src needs as many dims as index ({len(index)}), got "
                        f"{len(src)}")
    for d, size in enumerate(index):
        if (src and size > src[d]) or (d != dim and size > x[d]):
            raise SpecError(f"{op}(): index shape {list(index)} exceeds src shape {list(src)} "
                            f"or, outside dim {dim}, input shape {list(x)}")
    return dim


def _scatter_targets(maps: list[np.ndarray], params: Params, op: str
                     ) -> tuple[np.ndarray, np.ndarray]:
    """The flat output position of each index element, and the src element it takes."""
    x, index, src = maps
    dim = normalize_dim(_int(params, "dim"), x.ndim, op)
    checked = in_range(index, x.shape[dim] if x.ndim else 1, op, dim, wrap=False)
    positions: np.ndarray
    if x.ndim:
        coords: list[np.ndarray] = list(np.indices(index.shape, sparse=True))
        coords[dim] = checked
        positions = np.ravel_multi_index(tuple(np.broadcast_arrays(*coords)), x.shape)
    else:
        positions = checked  # a 0-d input: its one element, index 0
    window = src[tuple(slice(0, n) for n in index.shape)] if src.ndim else src
    return positions, np.broadcast_to(window, index.shape)


def _scatter_plan(maps: list[np.ndarray], params: Params) -> Plan:
    positions, sources = _scatter_targets(maps, params, "scatter")
    distinct(positions, "scatter", "index")
    return written(maps[0], positions, sources)


def _scatter_add_plan(maps: list[np.ndarray], params: Params) -> Plan:
    positions, sources = _scatter_targets(maps, params, "scatter_add")
    return added(maps[0], None, positions, sources)


def _scatter_reduce_plan(maps: list[np.ndarray], params: Params) -> Plan:
    positions, sources = _scatter_targets(maps, params, "scatter_reduce")
    if params["include_self"]:
        return added(maps[0], None, positions, sources)
    kept = np.ones(maps[0].shape, dtype=bool)
    kept.reshape(-1)[positions.reshape(-1)] = False  # written: the input takes no part
    return added(maps[0], kept, positions, sources)


def _read_window(src: Any, index: Any) -> Any:
    """The part of ``src`` a scatter reads: the index's shape from its corner (torch reads no
    more, but its backward of a larger src fails: "invalid gradient")."""
    if src.ndim == 0:  # scatter.value's number
        return src.expand(index.shape)
    return src[tuple(slice(0, size) for size in index.shape)]


def _scatter_torch(t: Any, args: Sequence[Any], params: Params) -> Any:
    x, index, src = args
    return t.scatter(x, _int(params, "dim"), as_long(t, index), _read_window(src, index))


def _scatter_shape(op: str, scalar_src: bool = False) -> Callable[..., Shape]:
    def rule(args: Sequence[ArgInfo], params: Params) -> Shape:
        _scatter_check(args, params, op, scalar_src)
        return args[0].shape

    return rule


def _masked_scatter_shape(args: Sequence[ArgInfo], params: Params) -> Shape:
    return broadcast_shapes(args[0].shape, args[1].shape)


def _masked_scatter_plan(maps: list[np.ndarray], params: Params) -> Plan:
    x, mask, source = maps
    shape = np.broadcast_shapes(x.shape, mask.shape)
    chosen = np.flatnonzero(np.broadcast_to(mask, shape))
    if chosen.size > source.size:
        raise SpecError(f"masked_scatter(): the mask selects {chosen.size} elements, but source "
                        f"has {source.size}")
    base = np.broadcast_to(x, shape)
    return written(base, chosen, source.reshape(-1)[:chosen.size])


_SCATTER_PARAMS = (Param("dim", "int", required=True),)
_SCATTER_ORDER = ("input", "dim", "index", "src")
_SCATTER_ARGS = ("input", "index", "src")

SCATTERS = [
    grouping("scatter", _scatter_plan, _scatter_torch, shape=_scatter_shape("scatter", True),
             arg_names=_SCATTER_ARGS, positional=_SCATTER_ORDER, params=_SCATTER_PARAMS,
             index_args=frozenset({1}),
             doc="out[i][index[i][j]] = src[i][j] for dim=1 (index int64, each target once; "
                 "a 0-d src is a value written at every index)"),
    grouping("scatter_add", _scatter_add_plan,
             lambda t, a, p: t.scatter_add(a[0], _int(p, "dim"), as_long(t, a[1]),
                                           _read_window(a[2], a[1])),
             shape=_scatter_shape("scatter_add"), arg_names=_SCATTER_ARGS,
             positional=_SCATTER_ORDER, params=_SCATTER_PARAMS, index_args=frozenset({1}),
             doc="out[i][index[i][j]] += src[i][j] for dim=1 (index int64)"),
    grouping("scatter_reduce", _scatter_reduce_plan,
             lambda t, a, p: t.scatter_reduce(a[0], _int(p, "dim"), as_long(t, a[1]),
                                              _read_window(a[2], a[1]), str(p["reduce"]),
                                              include_self=bool(p["include_self"])),
             shape=_scatter_shape("scatter_reduce"), arg_names=_SCATTER_ARGS,
             positional=(*_SCATTER_ORDER, "reduce", "include_self"),
             params=(*_SCATTER_PARAMS, Param("reduce", "str", required=True, choices=REDUCTIONS),
                     Param("include_self", "bool", default=True)),
             index_args=frozenset({1}), reduction=lambda p: str(p["reduce"]), extremes=True,
             doc="src reduced into input at index along dim: sum, prod (exact gradient at "
                 "zeros), mean, amax, amin (a tie is a kink); include_self=False leaves "
                 "the written elements' input out"),
    grouping("masked_scatter", _masked_scatter_plan,
             lambda t, a, p: t.masked_scatter(a[0], a[1], a[2]), shape=_masked_scatter_shape,
             arg_names=("input", "mask", "source"), bool_args=frozenset({1}),
             doc="source's first elements, in order, where mask (a condition, broadcast) "
                 "holds; input elsewhere"),
]


# --- writes into views, and as_strided ---------------------------------------------------------


def _zeros(shape: Shape) -> np.ndarray:
    """A placeholder of ``shape`` that holds no memory: what a shape rule takes views of."""
    return np.broadcast_to(np.int8(0), shape)


def _select_view(grid: np.ndarray, params: Params) -> np.ndarray:
    op = "select_scatter"
    if not grid.ndim:
        raise SpecError(f"{op}(): a 0-d input has no dim to select from")
    dim = normalize_dim(_int(params, "dim"), grid.ndim, op)
    index, size = _int(params, "index"), grid.shape[dim]
    if not -size <= index < size:
        raise SpecError(f"{op}(): index={index} is out of range for dim {dim} of size {size}")
    return grid[(slice(None),) * dim + (index % size,)]


def _slice_key(shape: Shape, params: Params) -> tuple[Any, ...]:
    op = "slice_scatter"
    if not shape:
        raise SpecError(f"{op}(): a 0-d input has no dim to slice")
    dim = normalize_dim(_int(params, "dim"), len(shape), op)
    if _int(params, "step") < 1:
        raise SpecError(f"{op}(): step={params['step']} must be positive, as torch's")
    part = slice(params["start"], params["end"], params["step"])
    return (slice(None),) * dim + (part,)


def _diagonal_view(grid: np.ndarray, params: Params) -> np.ndarray:
    op = "diagonal_scatter"
    if grid.ndim < 2:
        raise SpecError(f"{op}() needs at least 2 dims")
    dim1, dim2 = (normalize_dim(_int(params, k), grid.ndim, op) for k in ("dim1", "dim2"))
    if dim1 == dim2:
        raise SpecError(f"{op}(): dim1 and dim2 must differ")
    return np.diagonal(grid, _int(params, "offset"), dim1, dim2)


def _strided_size(shape: Shape, params: Params, op: str) -> Shape:
    """An as_strided view's shape, its parameters checked in integers (nothing allocated: a
    view of zero strides may be far larger than its input)."""
    size, stride = _ints(params["size"]), _ints(params["stride"])
    offset = _int(params, "storage_offset")
    if len(size) != len(stride):
        raise SpecError(f"{op}(): size {list(size)} and stride {list(stride)} need as many "
                        "entries")
    if min(size, default=0) < 0 or min(stride, default=0) < 0 or offset < 0:
        raise SpecError(f"{op}(): sizes, strides and storage_offset must not be negative")
    numel = math.prod(shape)
    last = offset + sum((n - 1) * s for n, s in zip(size, stride, strict=True))
    if math.prod(size) and last >= numel:
        raise SpecError(f"{op}(): the view reaches element {last} of an input of {numel}")
    return tuple(size)


def _strided(shape: Shape, params: Params, op: str) -> np.ndarray:
    """The flat positions, in the input's row-major order, of an as_strided view."""
    size = _strided_size(shape, params, op)
    stride, offset = _ints(params["stride"]), _int(params, "storage_offset")
    positions = np.full(size, offset, dtype=np.int64)
    for d, (n, s) in enumerate(zip(size, stride, strict=True)):
        positions += (np.arange(n, dtype=np.int64) * s).reshape((-1,) + (1,) * (len(size)
                                                                                - d - 1))
    return positions


def _view_shape(view: Callable[[Shape, Params], Shape], op: str) -> Callable[..., Shape]:
    """The shape rule of a view scatter: src has the view's shape; the output, input's."""
    def rule(args: Sequence[ArgInfo], params: Params) -> Shape:
        same_shape(args[1].shape, view(args[0].shape, params), op, "src")
        return args[0].shape

    return rule


def _slice_shape(shape: Shape, params: Params) -> Shape:
    return _zeros(shape)[_slice_key(shape, params)].shape


def _as_strided_scatter_view(shape: Shape, params: Params) -> Shape:
    size = _strided_size(shape, params, "as_strided_scatter")
    if math.prod(size) > math.prod(shape):  # more positions than elements: some repeat
        raise SpecError(f"as_strided_scatter(): an overlapping view ({math.prod(size)} "
                        f"positions in an input of {math.prod(shape)})")
    positions = _strided(shape, params, "as_strided_scatter")
    distinct(positions, "as_strided_scatter", "an overlapping view")
    return positions.shape


def _as_strided_shape(args: Sequence[ArgInfo], params: Params) -> Shape:
    return _strided_size(args[0].shape, params, "as_strided")


def _clone(t: Any, x: Any) -> Any:
    """A contiguous copy with its own storage: as_strided counts from its first element."""
    return x.clone(memory_format=t.contiguous_format)


def _as_strided_scatter_torch(t: Any, args: Sequence[Any], params: Params) -> Any:
    """torch's as_strided_scatter, written as an index_put at the positions torch's own
    as_strided reads: torch 2.13's backward gives the input the view's cotangent and zeros
    elsewhere, the reverse of its derivative (tests/test_ops.py compares the forwards)."""
    x, src = args
    grid = t.arange(x.numel(), device=x.device)
    positions = t.as_strided(grid, _ints(params["size"]), _ints(params["stride"]),
                             _int(params, "storage_offset")).reshape(-1)
    return x.reshape(-1).index_put((positions,), src.reshape(-1)).reshape(x.shape)


VIEWS = [
    grouping("select_scatter", lambda m, p: written(m[0], _select_view(m[0], p), m[1]),
             lambda t, a, p: t.select_scatter(a[0], a[1], _int(p, "dim"), _int(p, "index")),
             shape=_view_shape(lambda s, p: _select_view(_zeros(s), p).shape,
                               "select_scatter"),
             arg_names=("input", "src"),
             params=(Param("dim", "int", required=True), Param("index", "int", required=True)),
             doc="input with input.select(dim, index) replaced by src", group="structure"),
    grouping("slice_scatter", lambda m, p: written(m[0], m[0][_slice_key(m[0].shape, p)], m[1]),
             lambda t, a, p: t.slice_scatter(a[0], a[1], _int(p, "dim"), p["start"], p["end"],
                                             _int(p, "step")),
             shape=_view_shape(_slice_shape, "slice_scatter"), arg_names=("input", "src"),
             params=(Param("dim", "int", default=0), Param("start", "int"),
                     Param("end", "int"), Param("step", "int", default=1)),
             doc="input with the slice start:end:step of dim replaced by src",
             group="structure"),
    grouping("diagonal_scatter", lambda m, p: written(m[0], _diagonal_view(m[0], p), m[1]),
             lambda t, a, p: t.diagonal_scatter(a[0], a[1], _int(p, "offset"), _int(p, "dim1"),
                                                _int(p, "dim2")),
             shape=_view_shape(lambda s, p: _diagonal_view(_zeros(s), p).shape,
                               "diagonal_scatter"),
             arg_names=("input", "src"),
             params=(Param("offset", "int", default=0), Param("dim1", "int", default=0),
                     Param("dim2", "int", default=1)),
             doc="input with its diagonal (as diagonal() takes it) replaced by src",
             group="structure"),
    grouping("as_strided", lambda m, p: moved(m[0].reshape(-1)[_strided(m[0].shape, p,
                                                                        "as_strided")]),
             lambda t, a, p: t.as_strided(_clone(t, a[0]), _ints(p["size"]),
                                          _ints(p["stride"]), _int(p, "storage_offset")),
             shape=_as_strided_shape, arg_names=("input",),
             params=(Param("size", "dims", required=True),
                     Param("stride", "dims", required=True),
                     Param("storage_offset", "int", default=0)),
             doc="the view of size and stride over the input's row-major elements (elements "
                 "may repeat)", group="structure"),
    grouping("as_strided_scatter",
             lambda m, p: written(m[0], _strided(m[0].shape, p, "as_strided_scatter"), m[1]),
             _as_strided_scatter_torch,
             shape=_view_shape(_as_strided_scatter_view, "as_strided_scatter"),
             arg_names=("input", "src"),
             params=(Param("size", "dims", required=True),
                     Param("stride", "dims", required=True),
                     Param("storage_offset", "int", default=0)),
             doc="input with the as_strided view replaced by src (the view must not overlap "
                 "itself)", group="structure"),
]


# --- unfold (im2col) and fold (col2im) -----------------------------------------------------------


@dataclass(frozen=True)
class Patches:
    """The sliding blocks of F.unfold over (N, C, H, W): per-dim settings, the blocks'
    count along each spatial dim (two of each)."""

    kernel: tuple[int, ...]
    dilation: tuple[int, ...]
    padding: tuple[int, ...]
    stride: tuple[int, ...]
    blocks: tuple[int, ...]


def _patches(spatial: Shape, params: Params, op: str) -> Patches:
    kernel = per_dim(params["kernel_size"], 2, op, "kernel_size", 1)
    dilation = per_dim(params["dilation"], 2, op, "dilation", 1)
    padding = per_dim(params["padding"], 2, op, "padding", 0)
    stride = per_dim(params["stride"], 2, op, "stride", 1)
    blocks = tuple((n + 2 * p - d * (k - 1) - 1) // s + 1 for n, k, d, p, s in zip(
        spatial, kernel, dilation, padding, stride, strict=True))
    if min(blocks) < 1:
        raise SpecError(f"{op}(): the kernel {list(kernel)} (dilation {list(dilation)}) does "
                        f"not fit the padded {list(spatial)}")
    return Patches(kernel, dilation, padding, stride, blocks)


def _patch_map(shape: Shape, patches: Patches) -> np.ndarray:
    """(N, C·kh·kw, L): the flat position in an (N, C, H, W) image of each column element of
    its unfold, -1 where the block reads padding."""
    n, c, height, width = shape
    (kh, kw), (dh, dw) = patches.kernel, patches.dilation
    (ph, pw), (sh, sw) = patches.padding, patches.stride
    (bh, bw) = patches.blocks
    rows = (np.arange(kh) * dh)[:, None, None, None] + (np.arange(bh) * sh)[None, None, :, None]
    cols = (np.arange(kw) * dw)[None, :, None, None] + (np.arange(bw) * sw)[None, None, None, :]
    rows, cols = rows - ph, cols - pw
    inside = (rows >= 0) & (rows < height) & (cols >= 0) & (cols < width)
    within = np.where(inside, rows * width + cols, -1)  # (kh, kw, bh, bw)
    base = (np.arange(n * c) * height * width).reshape(n, c, 1, 1, 1, 1)
    flat = np.where(within >= 0, base + within, -1)
    return flat.reshape(n, c * kh * kw, bh * bw)


def _unfold_shape(args: Sequence[ArgInfo], params: Params) -> Shape:
    x = args[0].shape
    if len(x) not in (3, 4):
        raise SpecError(f"unfold(): input must be (N, C, H, W) or (C, H, W), got {list(x)}")
    patches = _patches(x[-2:], params, "unfold")
    kh, kw = patches.kernel
    return (*x[:-3], x[-3] * kh * kw, math.prod(patches.blocks))


def _unfold_plan(maps: list[np.ndarray], params: Params) -> Plan:
    x = maps[0]
    image = x if x.ndim == 4 else x[None]
    positions = _patch_map(image.shape, _patches(image.shape[-2:], params, "unfold"))
    sources = np.where(positions >= 0, image.reshape(-1)[np.maximum(positions, 0)], -1)
    return moved(sources if x.ndim == 4 else sources[0])


def _fold_geometry(columns: Shape, params: Params) -> tuple[Shape, Patches]:
    """The (N, C, H, W) image fold writes (N absent for 2-d columns) and its blocks."""
    op = "fold"
    if len(columns) not in (2, 3):
        raise SpecError(f"fold(): input must be (N, C·kh·kw, L) or (C·kh·kw, L), got "
                        f"{list(columns)}")
    size = per_dim(params["output_size"], 2, op, "output_size", 1)
    patches = _patches(size, params, op)
    per_channel = math.prod(patches.kernel)
    if columns[-2] % per_channel:
        raise SpecError(f"fold(): input's dim {len(columns) - 2} ({columns[-2]}) must be "
                        f"divisible by the kernel's {per_channel} elements")
    if columns[-1] != math.prod(patches.blocks):
        raise SpecError(f"fold(): input's last dim ({columns[-1]}) must be the "
                        f"{math.prod(patches.blocks)} blocks that output_size={list(size)} has")
    return (*columns[:-2], columns[-2] // per_channel, *size), patches


def _fold_plan(maps: list[np.ndarray], params: Params) -> Plan:
    columns = maps[0]
    shape, patches = _fold_geometry(columns.shape, params)
    image = shape if len(shape) == 4 else (1, *shape)
    positions = _patch_map(image, patches).reshape(-1)
    kept = positions >= 0
    return Plan(shape, positions[kept], columns.reshape(-1)[kept])


_PATCH_PARAMS = (Param("dilation", "dims", default=1), Param("padding", "dims", default=0),
                 Param("stride", "dims", default=1))

PATCHES = [
    grouping("unfold", _unfold_plan,
             lambda t, a, p: t.nn.functional.unfold(a[0], p["kernel_size"], p["dilation"],
                                                    p["padding"], p["stride"]),
             shape=_unfold_shape, arg_names=("input",),
             params=(Param("kernel_size", "dims", required=True), *_PATCH_PARAMS),
             doc="F.unfold (im2col): (N, C, H, W) to the blocks' columns (N, C·kh·kw, L)",
             group="nn"),
    grouping("fold", _fold_plan,
             lambda t, a, p: t.nn.functional.fold(a[0], p["output_size"], p["kernel_size"],
                                                  p["dilation"], p["padding"], p["stride"]),
             shape=lambda a, p: _fold_geometry(a[0].shape, p)[0], arg_names=("input",),
             params=(Param("output_size", "dims", required=True),
                     Param("kernel_size", "dims", required=True), *_PATCH_PARAMS),
             doc="F.fold (col2im), unfold's transpose: the columns summed back into "
                 "(N, C, *output_size)", group="nn"),
]

INDEX_SCATTER = [*INDEX_OPS, *SCATTERS, *VIEWS, *PATCHES]
