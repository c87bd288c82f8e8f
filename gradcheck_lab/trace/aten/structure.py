"""Shape and structure: views (as functional steps), joins, pads, copies and fills."""

from __future__ import annotations

from typing import Any

from gradcheck_lab.ops.structure import INDEX, index_text
from gradcheck_lab.trace.aten.table import Args, Writer, ints, register

MAX_JOINED = 64  # cat/stack take at most this many tensors per call of the language's op


def _reshape(w: Writer, a: Args) -> int:
    x = w.node(a["self"])
    shape = ints(a.get("size", a.get("shape")))
    return x if shape == w.shape(x) else w.call("reshape", x, shape=shape)


def _expand(w: Writer, a: Args) -> int:
    x = w.node(a["self"])
    shape = w.shape(x)
    size = ints(a["size"])
    lead = len(size) - len(shape)
    size = tuple(shape[i - lead] if s == -1 and i >= lead else s for i, s in enumerate(size))
    return x if size == shape else w.call("expand", x, size=size)


def _transpose(w: Writer, a: Args) -> int:
    x = w.node(a["self"])
    if len(w.shape(x)) < 2 and a.get("dim0") is None:
        return x
    dim0, dim1 = (0, 1) if a.get("dim0") is None else (int(a["dim0"]), int(a["dim1"]))
    return w.call("transpose", x, dim0=dim0, dim1=dim1)


def _squeeze(w: Writer, a: Args) -> int:
    x = w.node(a["self"])
    shape = w.shape(x)
    given = a.get("dim")
    wanted = range(len(shape)) if given is None else ints(given)
    axes = {d % max(len(shape), 1) for d in wanted}
    kept = tuple(s for i, s in enumerate(shape) if not (s == 1 and i in axes))
    return x if kept == shape else w.call("reshape", x, shape=kept)


def _slice(w: Writer, a: Args) -> int:
    """slice(self, dim, start, end, step) as a subscript; an open end arrives as
    sys.maxsize, clamped to the dim's size."""
    x = w.node(a["self"])
    shape = w.shape(x)
    dim = int(a["dim"]) % len(shape)
    size = shape[dim]
    start = 0 if a["start"] is None else int(a["start"])
    end = size if a["end"] is None else int(a["end"])
    start = min(max(start + size if start < 0 else start, 0), size)
    end = min(max(end + size if end < 0 else end, start), size)
    step = int(a["step"] or 1)
    if (start, end, step) == (0, size, 1):
        return x
    item = slice(start or None, None if end == size else end, None if step == 1 else step)
    return w.call("getitem", x, **{INDEX: index_text([slice(None)] * dim + [item])})


def join(w: Writer, op: str, nodes: list[int], dim: int) -> int:
    """cat/stack of ``nodes`` along ``dim``; more than MAX_JOINED joined in groups, the
    groups' results concatenated along the same dim."""
    if len(nodes) == 1 and op == "cat":
        return nodes[0]
    if len(nodes) <= MAX_JOINED:
        return w.call(op, *nodes, dim=dim)
    groups = [w.call(op, *nodes[i:i + MAX_JOINED], dim=dim)
              for i in range(0, len(nodes), MAX_JOINED)]
    return join(w, "cat", groups, dim)


def _joined(op: str) -> Any:
    def translate(w: Writer, a: Args) -> int:
        nodes = [w.node(t) for t in a["tensors"]]
        if op == "cat":  # torch's legacy rule: a 1-d empty tensor joins anything
            nodes = [n for n in nodes if w.shape(n) != (0,)] or nodes[:1]
        return join(w, op, nodes, int(a["dim"]))

    return translate


def _pad(mode: str) -> Any:
    """constant_pad_nd(self, pad, value) and the reflection/replication pads; a negative
    width crops, as a slice, before the rest is padded."""
    def translate(w: Writer, a: Args) -> int:
        x = w.node(a["self"])
        widths = list(ints(a.get("pad", a.get("padding"))))
        shape = w.shape(x)
        items: list[Any] = [slice(None)] * len(shape)
        for k in range(len(widths) // 2):
            dim = len(shape) - 1 - k
            left, right = widths[2 * k], widths[2 * k + 1]
            if left < 0 or right < 0:
                items[dim] = slice(-min(left, 0) or None, min(right, 0) or None)
                widths[2 * k], widths[2 * k + 1] = max(left, 0), max(right, 0)
        if any(item != slice(None) for item in items):
            x = w.call("getitem", x, **{INDEX: index_text(items)})
        if not any(widths):
            return x
        params: dict[str, Any] = {"pad": tuple(widths), "mode": mode}
        if mode == "constant":
            params["value"] = float(a["value"] or 0.0)
        return w.call("pad", x, **params)

    return translate


def _unfold(w: Writer, a: Args) -> int:
    """Tensor.unfold(self, dimension, size, step): the windows of ``dimension`` as a new dim
    there, each window's elements as a new last dim."""
    x = w.node(a["self"])
    shape = w.shape(x)
    dim, size, step = int(a["dimension"]) % max(len(shape), 1), int(a["size"]), int(a["step"])
    count = (shape[dim] - size) // step + 1 if shape else 1
    windows = [w.call("narrow", x, dim=dim, start=i * step, length=size) for i in range(count)]
    return w.call("movedim", join(w, "stack", windows, dim), source=dim + 1, destination=-1)


def _filled(w: Writer, a: Args) -> int:
    """fill(self, value) / zero(self): the value everywhere (self's values play no part)."""
    shape = w.shape(w.node(a["self"]))
    value = w.node(a.get("value", 0))
    return value if shape == w.shape(value) else w.call("expand", value, size=shape)


def _copy(w: Writer, a: Args) -> int:
    """copy(self, src): src, broadcast to self's shape (and promoted where self is real)."""
    shape = w.shape(w.node(a["self"]))
    src = w.node(a["src"])
    if getattr(a["self"], "kind", "real") == "real" and getattr(a["src"], "kind", "real") in (
            "int", "bool"):
        src = w.call("mul", src, w.const(1))
    return src if w.shape(src) == shape else w.call("expand", src, size=shape)


_VIEWS = {
    "view": _reshape, "_unsafe_view": _reshape, "reshape": _reshape, "_reshape_alias": _reshape,
    "expand": _expand, "transpose": _transpose, "t": _transpose, "squeeze": _squeeze,
    "slice": _slice, "unfold": _unfold,
    "permute": lambda w, a: w.call("permute", w.node(a["self"]), dims=ints(a["dims"])),
    "unsqueeze": lambda w, a: w.call("unsqueeze", w.node(a["self"]), dim=int(a["dim"])),
    "select": lambda w, a: w.call("select", w.node(a["self"]), dim=int(a["dim"]),
                                  index=int(a["index"])),
    "diagonal": lambda w, a: w.call("diagonal", w.node(a["self"]), offset=int(a["offset"]),
                                    dim1=int(a["dim1"]), dim2=int(a["dim2"])),
}
for _packet, _translate in _VIEWS.items():
    for _overload in ("default", "int", "Tensor", "dim", "dims"):
        register(f"aten.{_packet}.{_overload} aten.{_packet}_copy.{_overload}", _translate)
register("aten.cat.default", _joined("cat"))
register("aten.stack.default", _joined("stack"))
register("aten.flip.default", lambda w, a: w.call("flip", w.node(a["self"]),
                                                  dims=ints(a["dims"])))
register("aten.roll.default", lambda w, a: w.call(
    "roll", w.node(a["self"]), shifts=ints(a["shifts"]),
    dims=ints(a["dims"]) if a["dims"] else None))
register("aten.repeat.default", lambda w, a: w.call("tile", w.node(a["self"]),
                                                    dims=ints(a["repeats"])))
register("aten.constant_pad_nd.default", _pad("constant"))
for _d in (1, 2, 3):
    register(f"aten.reflection_pad{_d}d.default", _pad("reflect"))
    register(f"aten.replication_pad{_d}d.default", _pad("replicate"))
register("aten.tril.default", lambda w, a: w.call("tril", w.node(a["self"]),
                                                  diagonal=int(a["diagonal"])))
register("aten.triu.default", lambda w, a: w.call("triu", w.node(a["self"]),
                                                  diagonal=int(a["diagonal"])))
register("aten.index_select.default", lambda w, a: w.call(
    "index_select", w.node(a["self"]), w.node(a["index"]), dim=int(a["dim"])))
register("aten.gather.default", lambda w, a: w.call(
    "gather", w.node(a["self"]), w.node(a["index"]), dim=int(a["dim"])))
register("aten.embedding.default", lambda w, a: w.call(
    "embedding", w.node(a["indices"]), w.node(a["weight"])))
register("aten.fill.Scalar aten.fill.Tensor aten.zero.default", _filled)
register("aten.copy.default", _copy)
