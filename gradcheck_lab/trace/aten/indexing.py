"""Indexing, scatters (what writes into views become), and order statistics."""

from __future__ import annotations

from typing import Any

import numpy as np

from gradcheck_lab.errors import SpecError
from gradcheck_lab.ops.base import GIVEN
from gradcheck_lab.trace.aten.table import Args, Writer, ints, register


def _index_nodes(w: Writer, indices: list[Any], first_slot: int
                 ) -> tuple[list[int], list[int]]:
    """aten's ``Tensor?[] indices`` as the language's index slots: (nodes, positions), a None
    taking its dim whole. A bool mask over k dims is its k nonzero() position vectors, from
    its value at the point (the result's shape depends on it), as torch computes them."""
    nodes, positions, slot = [], [], first_slot
    for index in indices:
        if index is None:
            slot += 1
            continue
        mask = getattr(index, "constant", None) if getattr(index, "kind", "") == "bool" else None
        columns = np.nonzero(mask) if mask is not None else None
        for column in (columns if columns is not None else [None]):
            nodes.append(w.node(index if column is None else np.asarray(column)))
            positions.append(slot)
            slot += 1
    return nodes, positions


def _index(w: Writer, a: Args) -> int:
    nodes, positions = _index_nodes(w, a["indices"], 1)
    return w.call("index", w.node(a["self"]), *nodes, **{GIVEN: (0, *positions)})


def _index_put(w: Writer, a: Args) -> int:
    nodes, positions = _index_nodes(w, a["indices"], 2)
    return w.call("index_put", w.node(a["self"]), w.node(a["values"]), *nodes,
                  accumulate=bool(a["accumulate"]), **{GIVEN: (0, 1, *positions)})


def _masked_select(w: Writer, a: Args) -> int:
    """masked_select(self, mask): the elements where the mask (its value at the point) holds,
    in row-major order over their broadcast shape."""
    mask = a["mask"].constant if hasattr(a["mask"], "constant") else np.asarray(a["mask"])
    x = w.node(a["self"])
    shape = np.broadcast_shapes(w.shape(x), np.shape(mask))
    if w.shape(x) != shape:
        x = w.call("expand", x, size=tuple(shape))
    columns = np.nonzero(np.broadcast_to(mask, shape))
    return w.call("index", x, *(w.node(np.asarray(c)) for c in columns),
                  **{GIVEN: tuple(range(len(columns) + 1))})


def _scatter(op: str) -> Any:
    """scatter(self, dim, index, src | value) / scatter_add(self, dim, index, src)."""
    def translate(w: Writer, a: Args) -> int:
        src = a["src"] if "src" in a else a["value"]
        return w.call(op, w.node(a["self"]), w.node(a["index"]), w.node(src), dim=int(a["dim"]))

    return translate


def _scatter_reduce(w: Writer, a: Args) -> int:
    reduce = {"add": "sum", "multiply": "prod"}.get(a["reduce"], a["reduce"])
    return w.call("scatter_reduce", w.node(a["self"]), w.node(a["index"]), w.node(a["src"]),
                  dim=int(a["dim"]), reduce=reduce, include_self=bool(a.get("include_self", True)))


def _values_and_nothing(op: str, *names: str, **fixed: object) -> Any:
    """An order statistic's values (its indices are integer data: left unbound)."""
    def translate(w: Writer, a: Args) -> tuple[int, None]:
        params = {name: a[name] for name in names if a.get(name) is not None} | fixed
        return w.call(op, w.node(a["self"]), **params), None

    return translate


def _topk(w: Writer, a: Args) -> tuple[int, None]:
    """topk(self, k, dim, largest, sorted); unsorted, the order is the kernel's own."""
    if not a["sorted"]:
        raise SpecError("topk(sorted=False): the order of its values is torch's kernel's own")
    return _values_and_nothing("topk", "k", "dim", "largest")(w, a)


register("aten.index.Tensor", _index)
register("aten.index_put.default aten._index_put_impl.default", _index_put)
register("aten.masked_select.default", _masked_select)
register("aten.scatter.src aten.scatter.value", _scatter("scatter"))
register("aten.scatter_add.default", _scatter("scatter_add"))
register("aten.scatter.reduce aten.scatter.value_reduce aten.scatter_reduce.two",
         _scatter_reduce)
register("aten.masked_scatter.default", lambda w, a: w.call(
    "masked_scatter", w.node(a["self"]), w.node(a["mask"]), w.node(a["source"])))
register("aten.select_scatter.default", lambda w, a: w.call(
    "select_scatter", w.node(a["self"]), w.node(a["src"]), dim=int(a["dim"]),
    index=int(a["index"])))
register("aten.slice_scatter.default", lambda w, a: w.call(
    "slice_scatter", w.node(a["self"]), w.node(a["src"]), dim=int(a["dim"]),
    start=a["start"], end=a["end"], step=int(a["step"])))
register("aten.diagonal_scatter.default", lambda w, a: w.call(
    "diagonal_scatter", w.node(a["self"]), w.node(a["src"]), offset=int(a["offset"]),
    dim1=int(a["dim1"]), dim2=int(a["dim2"])))
register("aten.as_strided.default aten.as_strided_copy.default", lambda w, a: w.call(
    "as_strided", w.node(a["self"]), size=ints(a["size"]), stride=ints(a["stride"]),
    storage_offset=int(a["storage_offset"] or 0)))
register("aten.as_strided_scatter.default", lambda w, a: w.call(
    "as_strided_scatter", w.node(a["self"]), w.node(a["src"]), size=ints(a["size"]),
    stride=ints(a["stride"]), storage_offset=int(a["storage_offset"] or 0)))
register("aten.sort.default", _values_and_nothing("sort", "dim", "descending"))
register("aten.sort.stable", _values_and_nothing("sort", "dim", "descending", "stable"))
register("aten.topk.default", _topk)
register("aten.kthvalue.default", _values_and_nothing("kthvalue", "k", "dim", "keepdim"))
register("aten.median.default", lambda w, a: w.call("median", w.node(a["self"])))
register("aten.median.dim", _values_and_nothing("median", "dim", "keepdim"))
register("aten.cummax.default", _values_and_nothing("cummax", "dim"))
register("aten.cummin.default", _values_and_nothing("cummin", "dim"))
register("aten.im2col.default", lambda w, a: w.call(
    "unfold", w.node(a["self"]), kernel_size=ints(a["kernel_size"]),
    dilation=ints(a["dilation"]), padding=ints(a["padding"]), stride=ints(a["stride"])))
register("aten.col2im.default", lambda w, a: w.call(
    "fold", w.node(a["self"]), output_size=ints(a["output_size"]),
    kernel_size=ints(a["kernel_size"]), dilation=ints(a["dilation"]),
    padding=ints(a["padding"]), stride=ints(a["stride"])))
