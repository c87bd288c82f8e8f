"""Structure ops, spelled as torch spells them: subscripts (``x[1:3, ::2]``, ``x[..., 0]``),
narrow flip roll cat stack split chunk squeeze unsqueeze expand broadcast_to permute movedim
tile repeat_interleave diagonal tril triu index_select gather embedding pad. Each is one
``ops.rearrange.rearrangement``: a numpy move of elements, the same over floats, sympy
objects and index maps, beside the torch call.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np

from gradcheck_lab.errors import SpecError
from gradcheck_lab.ops.base import (
    ArgInfo,
    Op,
    Param,
    Params,
    Shape,
    as_ints,
    int_param,
    normalize_dim,
    optional_float_param,
    torch_module,
)
from gradcheck_lab.ops.rearrange import checked_indices, rearrangement

INDEX = "index"  # the hidden keyword of a subscript: its items, as the parser writes them
PART = "part"  # the hidden keyword of split(...)[k] and chunk(...)[k]


def _dim(params: Params, key: str, ndim: int, op: str) -> int:
    return normalize_dim(int_param(params, key), ndim, op)


def _ints(value: Any) -> tuple[int, ...]:
    return (value,) if isinstance(value, int) else tuple(value)


# --- subscripts -------------------------------------------------------------------------------


def index_text(items: Sequence[Any]) -> str:
    """The canonical text of a subscript: ints, slices "a:b:c" (parts may be empty), "..."
    and "None", joined by ", ". The parser writes it; ``parse_index`` reads it back."""
    def item(value: Any) -> str:
        if value is Ellipsis:
            return "..."
        if value is None:
            return "None"
        if isinstance(value, slice):
            parts = ["" if v is None else str(v) for v in (value.start, value.stop, value.step)]
            return ":".join(parts)
        return str(int(value))

    return ", ".join(item(value) for value in items)


def parse_index(text: str) -> tuple[Any, ...]:
    def item(part: str) -> Any:
        if part == "...":
            return Ellipsis
        if part == "None":
            return None
        if ":" in part:
            bounds = [int(v) if v else None for v in part.split(":")]
            return slice(*bounds)
        return int(part)

    return tuple(item(part) for part in text.split(", ")) if text else ()


def _getitem_check(args: Sequence[ArgInfo], params: Params) -> None:
    for item in parse_index(str(params[INDEX])):
        if isinstance(item, slice) and item.step is not None and item.step <= 0:
            raise SpecError("a slice step must be positive, as torch's (use flip() to "
                            "reverse)")


GETITEM = rearrangement(
    "getitem", lambda a, p, fill: a[0][parse_index(str(p[INDEX]))],
    lambda t, args, p: args[0][parse_index(str(p[INDEX]))],
    params=(Param(INDEX, "text", hidden=True),), check=_getitem_check, callable_=False,
    infix="[]",
    doc="x[...]: ints, slices with constant bounds and positive steps, ..., None")


# --- narrowing and reordering ----------------------------------------------------------------


def _narrow(a: list[np.ndarray], p: Params, fill: Any) -> np.ndarray:
    x = a[0]
    dim = _dim(p, "dim", x.ndim, "narrow")
    size = x.shape[dim]
    start, length = int_param(p, "start"), int_param(p, "length")
    start = start + size if start < 0 else start
    if not (0 <= start <= size and length >= 0 and start + length <= size):
        raise SpecError(f"narrow(): start={p['start']}, length={length} do not fit a dim "
                        f"of size {size}")
    return x[(slice(None),) * dim + (slice(start, start + length),)]


def _axes(value: Any, ndim: int, op: str) -> tuple[int, ...]:
    return tuple(normalize_dim(d, ndim, op) for d in _ints(value))


def _squeeze(a: list[np.ndarray], p: Params, fill: Any) -> np.ndarray:
    x = a[0]
    axes = range(x.ndim) if p["dim"] is None else _axes(p["dim"], x.ndim, "squeeze")
    return np.squeeze(x, axis=tuple(d for d in axes if x.shape[d] == 1))


def _unsqueeze(a: list[np.ndarray], p: Params, fill: Any) -> np.ndarray:
    x = a[0]
    return np.expand_dims(x, normalize_dim(int_param(p, "dim"), x.ndim + 1, "unsqueeze"))


def _expanded(x: np.ndarray, sizes: tuple[int, ...]) -> tuple[int, ...]:
    """torch's expand sizes: -1 keeps a dim; new dims lead."""
    lead = len(sizes) - x.ndim
    if lead < 0:
        raise SpecError(f"expand(): {len(sizes)} sizes for a {x.ndim}-d tensor")
    return tuple(x.shape[i - lead] if size == -1 and i >= lead else size
                 for i, size in enumerate(sizes))


def _movedim(a: list[np.ndarray], p: Params, fill: Any) -> np.ndarray:
    x = a[0]
    source, destination = _ints(p["source"]), _ints(p["destination"])
    if len(source) != len(destination):
        raise SpecError("movedim(): source and destination need as many dims")
    return np.moveaxis(x, _axes(source, x.ndim, "movedim"),
                       _axes(destination, x.ndim, "movedim"))


def _permute(a: list[np.ndarray], p: Params, fill: Any) -> np.ndarray:
    x = a[0]
    dims = _axes(p["dims"], x.ndim, "permute")
    if sorted(dims) != list(range(x.ndim)):
        raise SpecError(f"permute(): dims={list(_ints(p['dims']))} is not an order of the "
                        f"{x.ndim} dims")
    return np.transpose(x, dims)


def _roll(a: list[np.ndarray], p: Params, fill: Any) -> np.ndarray:
    shifts = _ints(p["shifts"])
    if p["dims"] is None:  # the flattened tensor, shape kept
        if len(shifts) != 1:
            raise SpecError("roll(): without dims, shifts is one int")
        return np.roll(a[0], shifts[0])
    dims = _axes(p["dims"], a[0].ndim, "roll")
    if len(dims) != len(shifts):
        raise SpecError("roll(): shifts and dims need as many entries")
    return np.roll(a[0], shifts, axis=dims)


def _triangle(upper: bool) -> Any:
    def move(a: list[np.ndarray], p: Params, fill: Any) -> np.ndarray:
        if a[0].ndim < 2:
            raise SpecError(f"{'triu' if upper else 'tril'}() needs at least 2 dims")
        k = int_param(p, "diagonal")
        return np.triu(a[0], k) if upper else np.tril(a[0], k)

    return move


def _tile_shape(shapes: list[Shape], p: Params) -> Shape:
    """np.tile's and torch.tile's rule: the shorter of shape and dims is padded with leading
    1s, then multiplied dim by dim."""
    shape, dims = shapes[0], _ints(p["dims"])
    if min(dims, default=0) < 0:
        raise SpecError(f"tile(): dims must not be negative, got {list(dims)}")
    width = max(len(shape), len(dims))
    shape = (1,) * (width - len(shape)) + tuple(shape)
    dims = (1,) * (width - len(dims)) + tuple(dims)
    return tuple(n * k for n, k in zip(shape, dims, strict=True))


def _repeat_interleave_shape(shapes: list[Shape], p: Params) -> Shape:
    shape, repeats = shapes[0], int_param(p, "repeats")
    if repeats < 0:
        raise SpecError(f"repeat_interleave(): repeats must not be negative, got {repeats}")
    if p["dim"] is None:
        return (math.prod(shape) * repeats,)
    dim = _dim(p, "dim", len(shape), "repeat_interleave")
    return tuple(n * repeats if i == dim else n for i, n in enumerate(shape))


REORDER = [
    rearrangement(
        "narrow", _narrow,
        lambda t, args, p: t.narrow(args[0], int_param(p, "dim"), int_param(p, "start"),
                                    int_param(p, "length")),
        params=(Param("dim", "int", required=True), Param("start", "int", required=True),
                Param("length", "int", required=True)),
        doc="`length` elements from `start` along `dim`"),
    rearrangement(
        "flip", lambda a, p, fill: np.flip(a[0], axis=_axes(p["dims"], a[0].ndim, "flip")),
        lambda t, args, p: t.flip(args[0], _ints(p["dims"])),
        params=(Param("dims", "dims", required=True),), doc="reverses `dims`"),
    rearrangement(
        "roll", _roll, lambda t, args, p: t.roll(args[0], p["shifts"], p["dims"]),
        params=(Param("shifts", "dims", required=True), Param("dims", "dims")),
        doc="shifts elements along `dims` (all flattened when None), wrapping around"),
    rearrangement("squeeze", _squeeze,
                  lambda t, args, p: args[0].squeeze() if p["dim"] is None else
                  args[0].squeeze(p["dim"]),
                  params=(Param("dim", "dims"),), doc="drops size-1 dims (of `dim`)"),
    rearrangement("unsqueeze", _unsqueeze,
                  lambda t, args, p: t.unsqueeze(args[0], int_param(p, "dim")),
                  params=(Param("dim", "int", required=True),),
                  doc="a size-1 dim at `dim`"),
    rearrangement(
        "expand", lambda a, p, fill: np.broadcast_to(a[0], _expanded(a[0], _ints(p["size"]))),
        lambda t, args, p: args[0].expand(*_ints(p["size"])),
        params=(Param("size", "dims", required=True),),
        doc="x.expand(*size): size-1 dims repeated, -1 keeps a dim"),
    rearrangement(
        "broadcast_to", lambda a, p, fill: np.broadcast_to(a[0], _ints(p["size"])),
        lambda t, args, p: t.broadcast_to(args[0], _ints(p["size"])),
        params=(Param("size", "dims", required=True),), doc="broadcast to `size`"),
    rearrangement("permute", _permute,
                  lambda t, args, p: t.permute(args[0], _ints(p["dims"])),
                  params=(Param("dims", "dims", required=True),), doc="reorders the dims"),
    rearrangement("movedim", _movedim,
                  lambda t, args, p: t.movedim(args[0], p["source"], p["destination"]),
                  params=(Param("source", "dims", required=True),
                          Param("destination", "dims", required=True)),
                  doc="moves dims `source` to `destination`"),
    rearrangement("tile", lambda a, p, fill: np.tile(a[0], _ints(p["dims"])),
                  lambda t, args, p: t.tile(args[0], _ints(p["dims"])),
                  params=(Param("dims", "dims", required=True),), sized=_tile_shape,
                  doc="repeats the whole tensor `dims` times per dim"),
    rearrangement(
        "repeat_interleave",
        lambda a, p, fill: np.repeat(a[0], int_param(p, "repeats"), axis=None if p["dim"] is None
                                     else _dim(p, "dim", a[0].ndim, "repeat_interleave")),
        lambda t, args, p: t.repeat_interleave(args[0], int_param(p, "repeats"), dim=p["dim"]),
        params=(Param("repeats", "int", required=True), Param("dim", "int")),
        sized=_repeat_interleave_shape,
        doc="each element `repeats` times along `dim` (flattened when None)"),
    rearrangement(
        "diagonal", lambda a, p, fill: np.diagonal(
            a[0], int_param(p, "offset"), _dim(p, "dim1", a[0].ndim, "diagonal"),
            _dim(p, "dim2", a[0].ndim, "diagonal")).copy(),
        lambda t, args, p: t.diagonal(args[0], int_param(p, "offset"), int_param(p, "dim1"),
                                      int_param(p, "dim2")),
        params=(Param("offset", "int", default=0), Param("dim1", "int", default=0),
                Param("dim2", "int", default=1)),
        doc="the diagonal of dims `dim1`, `dim2`, last"),
    rearrangement("tril", _triangle(False),
                  lambda t, args, p: t.tril(args[0], int_param(p, "diagonal")),
                  params=(Param("diagonal", "int", default=0),),
                  doc="the lower triangle, zeros above"),
    rearrangement("triu", _triangle(True),
                  lambda t, args, p: t.triu(args[0], int_param(p, "diagonal")),
                  params=(Param("diagonal", "int", default=0),),
                  doc="the upper triangle, zeros below"),
]


# --- joining and splitting -------------------------------------------------------------------


def _join(stack: bool) -> Any:
    def move(a: list[np.ndarray], p: Params, fill: Any) -> np.ndarray:
        ndim = a[0].ndim + (1 if stack else 0)
        dim = _dim(p, "dim", ndim, "stack" if stack else "cat")
        return np.stack(a, axis=dim) if stack else np.concatenate(a, axis=dim)

    return move


def _split_bounds(size: int, sizes: tuple[int, ...]) -> list[tuple[int, int]]:
    """Piece bounds along a dim of ``size``: one int, pieces of that size (the last may be
    shorter), as torch.split; several ints, those sizes (summing to ``size``)."""
    if len(sizes) == 1:
        step = sizes[0]
        if step <= 0:
            raise SpecError("split(): the split size must be positive")
        return [(start, min(start + step, size)) for start in range(0, size, step)]
    if sum(sizes) != size or min(sizes) < 0:
        raise SpecError(f"split(): sizes {list(sizes)} do not add up to the dim's {size}")
    starts = np.cumsum((0, *sizes[:-1]))
    return [(int(s), int(s) + n) for s, n in zip(starts, sizes, strict=True)]


def _piece(chunks: bool) -> Any:
    def move(a: list[np.ndarray], p: Params, fill: Any) -> np.ndarray:
        x = a[0]
        name = "chunk" if chunks else "split"
        dim = _dim(p, "dim", x.ndim, name)
        size = x.shape[dim]
        if chunks:
            count = int_param(p, "chunks")
            if count <= 0:
                raise SpecError("chunk(): chunks must be positive")
            bounds = _split_bounds(size, (max(math.ceil(size / count), 1),))
        else:
            bounds = _split_bounds(size, _ints(p["split_size_or_sections"]))
        part = int_param(p, PART)
        if not -len(bounds) <= part < len(bounds):
            raise SpecError(f"{name}() gives {len(bounds)} pieces; [{part}] is not one")
        start, stop = bounds[part]
        return x[(slice(None),) * dim + (slice(start, stop),)]

    return move


JOINS = [
    rearrangement("cat", _join(False),
                  lambda t, args, p: t.cat(list(args), dim=int_param(p, "dim")),
                  arg_names=("tensors",), max_args=64, variadic="list",
                  params=(Param("dim", "int", default=0),),
                  doc="joins the tensors along `dim`: cat([a, b], dim=1)"),
    rearrangement("stack", _join(True),
                  lambda t, args, p: t.stack(list(args), dim=int_param(p, "dim")),
                  arg_names=("tensors",), max_args=64, variadic="list",
                  params=(Param("dim", "int", default=0),),
                  doc="stacks the tensors along a new dim `dim`"),
    rearrangement("split", _piece(False),
                  lambda t, args, p: t.split(args[0], _split_arg(p), int_param(p, "dim"))[
                      int_param(p, PART)],
                  arg_names=("tensor",),
                  params=(Param("split_size_or_sections", "dims", required=True),
                          Param("dim", "int", default=0), Param(PART, "int", hidden=True)),
                  doc="split(x, size, dim)[k]: piece k (pick one with [k])"),
    rearrangement("chunk", _piece(True),
                  lambda t, args, p: t.chunk(args[0], int_param(p, "chunks"), int_param(p, "dim"))[
                      int_param(p, PART)],
                  params=(Param("chunks", "int", required=True),
                          Param("dim", "int", default=0), Param(PART, "int", hidden=True)),
                  doc="chunk(x, n, dim)[k]: piece k of n (pick one with [k])"),
]


def _split_arg(p: Params) -> Any:
    value = p["split_size_or_sections"]
    return value if isinstance(value, int) else list(as_ints(value, "split_size_or_sections"))


# --- indexing by tensors -----------------------------------------------------------------------


def _index_select(a: list[np.ndarray], p: Params, fill: Any) -> np.ndarray:
    x, index = a
    if np.ndim(index) > 1:
        raise SpecError("index_select(): index must be 0-d or 1-d")
    dim = _dim(p, "dim", x.ndim, "index_select")
    return np.take(x, checked_indices(np.reshape(index, -1), x.shape[dim] if x.ndim else 1,
                                      "index_select"), axis=dim if x.ndim else None)


def _gather(a: list[np.ndarray], p: Params, fill: Any) -> np.ndarray:
    x, index = a
    if np.ndim(index) != x.ndim:
        raise SpecError("gather(): index needs as many dims as input")
    dim = _dim(p, "dim", x.ndim, "gather")
    if any(index.shape[d] > x.shape[d] for d in range(x.ndim) if d != dim):
        raise SpecError(f"gather(): index shape {list(index.shape)} exceeds input shape "
                        f"{list(x.shape)} outside dim {dim}")
    window = x[tuple(slice(None) if d == dim else slice(0, index.shape[d])
                     for d in range(x.ndim))]
    return np.take_along_axis(window, checked_indices(index, x.shape[dim], "gather"), axis=dim)


def _embedding(a: list[np.ndarray], p: Params, fill: Any) -> np.ndarray:
    index, weight = a
    if weight.ndim != 2:
        raise SpecError("embedding(): weight must be 2-d (num_embeddings, embedding_dim)")
    return weight[checked_indices(index, weight.shape[0], "embedding")]


def _pad_widths(x: np.ndarray, pad: tuple[int, ...], mode: str) -> list[tuple[int, int]]:
    """torch's pad tuple (last dim's left, right, then the dim before...) as numpy's."""
    if len(pad) % 2 or len(pad) // 2 > x.ndim:
        raise SpecError(f"pad(): pad={list(pad)} needs pairs, one per padded dim from the "
                        f"last (the input has {x.ndim})")
    if min(pad, default=0) < 0:
        raise SpecError("pad(): negative padding (cropping) is not supported; slice instead")
    widths = [(0, 0)] * x.ndim
    for k in range(len(pad) // 2):
        widths[x.ndim - 1 - k] = (pad[2 * k], pad[2 * k + 1])
    if mode != "constant" and len(pad) // 2 >= x.ndim:
        raise SpecError(f"pad(): mode={mode!r} keeps a leading (batch or channel) dim, as "
                        f"torch does: it pads at most {x.ndim - 1} of a {x.ndim}-d input's dims")
    if mode != "constant" and any(n == 0 for w, n in zip(widths, x.shape, strict=True)
                                  if max(w)):
        raise SpecError(f"pad(): mode={mode!r} cannot pad an empty dim (it copies elements "
                        "that are not there)")
    if mode == "reflect" and any(max(w) >= n for w, n in zip(widths, x.shape, strict=True)
                                 if max(w)):
        raise SpecError("pad(): reflect padding must be smaller than the padded dim")
    return widths


def _pad_shape(shapes: list[Shape], p: Params) -> Shape:
    placeholder = np.broadcast_to(np.zeros((), np.int8), shapes[0])  # only its shape is read
    widths = _pad_widths(placeholder, _ints(p["pad"]), str(p["mode"]))
    return tuple(n + left + right for n, (left, right) in zip(shapes[0], widths, strict=True))


_NUMPY_PAD_MODES: dict[str, Literal["reflect", "edge", "wrap"]] = {
    "reflect": "reflect", "replicate": "edge", "circular": "wrap"}


def _pad(a: list[np.ndarray], p: Params, fill: Any) -> np.ndarray:
    x, mode = a[0], str(p["mode"])
    widths = _pad_widths(x, _ints(p["pad"]), mode)
    if mode == "constant":
        return np.pad(x, widths, mode="constant", constant_values=fill)
    return np.pad(x, widths, mode=_NUMPY_PAD_MODES[mode])


def _pad_torch(t: Any, args: Sequence[Any], p: Params) -> Any:
    value = None if p["mode"] != "constant" else optional_float_param(p, "value") or 0.0
    return t.nn.functional.pad(args[0], _ints(p["pad"]), mode=str(p["mode"]), value=value)


INDEXING = [
    rearrangement("index_select", _index_select,
                  lambda t, args, p: t.index_select(args[0], int_param(p, "dim"), args[1]),
                  arg_names=("input", "index"), min_args=2, max_args=2,
                  integer_args=frozenset({1}), positional=("input", "dim", "index"),
                  params=(Param("dim", "int", required=True),),
                  doc="the entries `index` (int64, 1-d) along `dim`"),
    rearrangement("gather", _gather, lambda t, args, p: t.gather(args[0], int_param(p, "dim"),
                                                                  args[1]),
                  arg_names=("input", "index"), min_args=2, max_args=2,
                  integer_args=frozenset({1}), positional=("input", "dim", "index"),
                  params=(Param("dim", "int", required=True),),
                  doc="out[i][j] = input[i][index[i][j]] for dim=1 (index int64)"),
    rearrangement("embedding", _embedding,
                  lambda t, args, p: t.nn.functional.embedding(args[0], args[1]),
                  arg_names=("input", "weight"), min_args=2, max_args=2,
                  integer_args=frozenset({0}),
                  doc="rows of `weight` picked by the int64 `input`"),
    rearrangement("pad", _pad, _pad_torch, positional=("input", "pad", "mode", "value"),
                  sized=_pad_shape,
                  params=(Param("pad", "dims", required=True),
                          Param("mode", "str", default="constant",
                                choices=("constant", "reflect", "replicate", "circular")),
                          Param("value", "float")),
                  fill=lambda p: optional_float_param(p, "value") or 0.0,
                  doc="torch's pad tuple (last dim first); mode constant (with `value`), "
                      "reflect, replicate or circular"),
]


def _one_hot(args: Sequence[np.ndarray], params: Params) -> np.ndarray:
    count = int_param(params, "num_classes")
    # A comparison with the classes: the result's own elements, where rows of np.eye(count)
    # held count² more (200,000 classes: 298 GiB).
    index = np.asarray(checked_indices(args[0], count, "one_hot"))
    return (index[..., np.newaxis] == np.arange(count)).astype(np.int64)


def _one_hot_shape(args: Sequence[ArgInfo], params: Params) -> tuple[int, ...]:
    if int_param(params, "num_classes") <= 0:
        raise SpecError("one_hot() needs num_classes= (positive): a shape must not depend "
                        "on the values")
    return (*args[0].shape, int_param(params, "num_classes"))


ONE_HOT = Op(
    name="one_hot", arg_names=("tensor",), group="structure", min_args=1, max_args=1,
    doc="int64 one-hot rows of the class indices `tensor`, as torch",
    params=(Param("num_classes", "int", default=-1),), shape=_one_hot_shape,
    torch=lambda args, p: torch_module().nn.functional.one_hot(args[0],
                                                                int_param(p, "num_classes")),
    numpy=_one_hot, sympy=_one_hot, vjp=lambda *a: [None], vjp_magnitude=lambda *a: [None],
    integer_args=frozenset({0}), nondifferentiable_args=frozenset({0}), returns="int")

# A case's named outputs ({o: ..., attn: ...}) joined into the one output the oracles see:
# each flattened, in order. Never written in an expression.
PACK = rearrangement(
    "pack", lambda a, p, fill: np.concatenate([np.reshape(x, -1) for x in a]),
    lambda t, args, p: t.cat([x.reshape(-1) for x in args]), arg_names=("outputs",),
    max_args=64, callable_=False, doc="the named outputs, flattened and joined")

STRUCTURE = [GETITEM, *REORDER, *JOINS, *INDEXING, ONE_HOT, PACK]
