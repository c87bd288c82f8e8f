"""From aten ops, as a traced forward ran them, to the case language's ops: one entry per aten
overload, keyed by its name (``aten.mul.Tensor``). Each entry writes the op's meaning into the
program with ``Writer`` (tensors as program nodes, numbers as constants) and returns its node,
or a tuple for aten ops that return several tensors (max_pool2d_with_indices: the values, and
None for the indices, which no gradient flows through).

Only names are looked up here, never torch's derivative formulas: the symbolic oracle then
differentiates the translated program itself. An in-place overload (``add_``) is its
functional twin; ``oracles.trace`` rebinds the mutated tensor.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from fractions import Fraction
from typing import Any, Protocol

from gradcheck_lab.errors import SpecError
from gradcheck_lab.ops.base import GIVEN
from gradcheck_lab.ops.structure import INDEX, index_text


class Writer(Protocol):
    """What a translation writes with (``oracles.trace`` gives it)."""

    def call(self, name: str, *args: int, **params: Any) -> int: ...

    def const(self, value: float | int | Fraction) -> int: ...

    def shape(self, node: int) -> tuple[int, ...]: ...

    def node(self, value: Any) -> int:
        """A traced tensor's node, or a number (or constant tensor) as a constant."""
        ...


Translation = Callable[[Writer, Sequence[Any], dict[str, Any]], Any]
TABLE: dict[str, Translation] = {}

_REDUCTION = {0: "none", 1: "mean", 2: "sum"}  # aten's reduction enum


def _register(names: str, translation: Translation) -> None:
    for name in names.split():
        TABLE[name] = translation


def _unary(op: str) -> Translation:
    return lambda w, args, kw: w.call(op, w.node(args[0]))


def _binary(op: str) -> Translation:
    return lambda w, args, kw: w.call(op, w.node(args[0]), w.node(args[1]))


def _with_alpha(op: str) -> Translation:
    """add/sub(self, other, alpha): self op alpha·other."""
    def translate(w: Writer, args: Sequence[Any], kw: dict[str, Any]) -> int:
        other = w.node(args[1])
        alpha = kw.get("alpha", args[2] if len(args) > 2 else 1)
        if alpha != 1:
            other = w.call("mul", w.const(alpha), other)
        return w.call(op, w.node(args[0]), other)

    return translate


def _rsub(w: Writer, args: Sequence[Any], kw: dict[str, Any]) -> int:
    """rsub(self, other, alpha) = other - alpha·self."""
    alpha = kw.get("alpha", args[2] if len(args) > 2 else 1)
    scaled = w.node(args[0]) if alpha == 1 else w.call("mul", w.const(alpha), w.node(args[0]))
    return w.call("sub", w.node(args[1]), scaled)


def _div_mode(w: Writer, args: Sequence[Any], kw: dict[str, Any]) -> int:
    quotient = w.call("div", w.node(args[0]), w.node(args[1]))
    mode = kw.get("rounding_mode", args[2] if len(args) > 2 else None)
    return quotient if mode is None else w.call(mode, quotient)  # "floor" or "trunc"


def _dims(value: Any) -> Any:
    """aten's dim lists as the language's dim= (None or [] for every dim)."""
    if value is None or (isinstance(value, (list, tuple)) and not value):
        return None
    return tuple(value) if isinstance(value, (list, tuple)) else value


def _reduce(op: str) -> Translation:
    """sum/mean/amax/amin/prod/logsumexp(self, dim=None, keepdim=False)."""
    def translate(w: Writer, args: Sequence[Any], kw: dict[str, Any]) -> int:
        dim = _dims(kw.get("dim", args[1] if len(args) > 1 else None))
        keepdim = bool(kw.get("keepdim", args[2] if len(args) > 2 else False))
        params = {"dim": dim} if dim is not None else {}
        if keepdim:
            params["keepdim"] = True
        return w.call(op, w.node(args[0]), **params)

    return translate


def _moment(op: str) -> Translation:
    """var/std.correction(self, dim=None, *, correction=None, keepdim=False)."""
    def translate(w: Writer, args: Sequence[Any], kw: dict[str, Any]) -> int:
        dim = _dims(kw.get("dim", args[1] if len(args) > 1 else None))
        correction = kw.get("correction")
        params: dict[str, Any] = {"correction": 1 if correction is None else correction,
                                  "keepdim": bool(kw.get("keepdim", False))}
        if dim is not None:
            params["dim"] = dim
        return w.call(op, w.node(args[0]), **params)

    return translate


def _scan(op: str) -> Translation:
    return lambda w, args, kw: w.call(op, w.node(args[0]), dim=int(args[1]))


def _softmax(op: str) -> Translation:
    """_softmax/_log_softmax(self, dim, half_to_float)."""
    return lambda w, args, kw: w.call(op, w.node(args[0]), dim=int(args[1]))


def _addmm(w: Writer, args: Sequence[Any], kw: dict[str, Any]) -> int:
    """addmm(bias, a, b, beta=1, alpha=1) = beta·bias + alpha·(a @ b): F.linear's lowering."""
    product = w.call("matmul", w.node(args[1]), w.node(args[2]))
    alpha, beta = kw.get("alpha", 1), kw.get("beta", 1)
    if alpha != 1:
        product = w.call("mul", w.const(alpha), product)
    bias = w.node(args[0])
    if beta != 1:
        bias = w.call("mul", w.const(beta), bias)
    return w.call("add", bias, product)


def _transpose_2d(w: Writer, args: Sequence[Any], kw: dict[str, Any]) -> int:
    x = w.node(args[0])
    return x if len(w.shape(x)) < 2 else w.call("transpose", x, dim0=0, dim1=1)


def _reshape(w: Writer, args: Sequence[Any], kw: dict[str, Any]) -> int:
    return w.call("reshape", w.node(args[0]), shape=tuple(int(s) for s in args[1]))


def _expand(w: Writer, args: Sequence[Any], kw: dict[str, Any]) -> int:
    x = w.node(args[0])
    size = tuple(int(s) for s in args[1])
    if size == w.shape(x):
        return x
    return w.call("expand", x, size=size)


def _squeeze(w: Writer, args: Sequence[Any], kw: dict[str, Any]) -> int:
    x = w.node(args[0])
    dims = _dims(args[1]) if len(args) > 1 else None
    shape = w.shape(x)
    if dims is None:
        dims = tuple(i for i, size in enumerate(shape) if size == 1)
    dims = (dims,) if isinstance(dims, int) else dims
    kept = [size for i, size in enumerate(shape)
            if not (size == 1 and (i in dims or i - len(shape) in dims))]
    return w.call("reshape", x, shape=tuple(kept))


def _slice(w: Writer, args: Sequence[Any], kw: dict[str, Any]) -> int:
    """slice.Tensor(self, dim=0, start=None, end=None, step=1); an open end arrives as
    sys.maxsize, clamped here to the dim's size."""
    x = w.node(args[0])
    shape = w.shape(x)
    dim = int(args[1]) if len(args) > 1 else 0
    dim = dim % len(shape)
    start = args[2] if len(args) > 2 else None
    end = args[3] if len(args) > 3 else None
    step = args[4] if len(args) > 4 else 1
    start = None if start in (None, 0) else max(min(int(start), shape[dim]), -shape[dim])
    end = None if end is None or end >= shape[dim] else max(int(end), -shape[dim])
    if start is None and end is None and step == 1:
        return x
    items = [slice(None)] * dim + [slice(start, end, None if step == 1 else int(step))]
    return w.call("getitem", x, **{INDEX: index_text(items)})


def _cat(op: str) -> Translation:
    def translate(w: Writer, args: Sequence[Any], kw: dict[str, Any]) -> int:
        dim = int(kw.get("dim", args[1] if len(args) > 1 else 0))
        return w.call(op, *(w.node(t) for t in args[0]), dim=dim)

    return translate


def _clamp(w: Writer, args: Sequence[Any], kw: dict[str, Any]) -> int:
    """clamp(self, min=None, max=None), either a number or a tensor."""
    low = kw.get("min", args[1] if len(args) > 1 else None)
    high = kw.get("max", args[2] if len(args) > 2 else None)
    given, tensors = [0], [w.node(args[0])]
    for position, bound in ((1, low), (2, high)):
        if bound is not None:
            given.append(position)
            tensors.append(w.node(bound))
    return w.call("clamp", *tensors, **{GIVEN: tuple(given)})


def _bound(op: str, position: int) -> Translation:
    """clamp_min/clamp_max(self, bound)."""
    def translate(w: Writer, args: Sequence[Any], kw: dict[str, Any]) -> int:
        return w.call("clamp", w.node(args[0]), w.node(args[1]), **{GIVEN: (0, position)})

    return translate


def _convolution(w: Writer, args: Sequence[Any], kw: dict[str, Any]) -> int:
    """convolution(input, weight, bias, stride, padding, dilation, transposed,
    output_padding, groups): conv{d}d or conv_transpose{d}d."""
    x, weight, bias, stride, padding, dilation, transposed, output_padding, groups = args
    d = len(w.shape(w.node(weight))) - 2
    tensors = [w.node(x), w.node(weight)] + ([] if bias is None else [w.node(bias)])
    params: dict[str, Any] = {"stride": tuple(stride), "padding": tuple(padding),
                              "dilation": tuple(dilation), "groups": int(groups)}
    if transposed:
        return w.call(f"conv_transpose{d}d", *tensors, output_padding=tuple(output_padding),
                      **params)
    return w.call(f"conv{d}d", *tensors, **params)


def _max_pool(d: int) -> Translation:
    """max_pool{d}d_with_indices(self, kernel_size, stride=[], padding=0, dilation=1,
    ceil_mode=False) -> (values, indices)."""
    def translate(w: Writer, args: Sequence[Any], kw: dict[str, Any]) -> tuple[int, None]:
        names = ("kernel_size", "stride", "padding", "dilation", "ceil_mode")
        given = dict(zip(names, args[1:], strict=False)) | kw
        params = {key: tuple(value) if isinstance(value, (list, tuple)) else value
                  for key, value in given.items() if value not in ([], ())}
        return w.call(f"max_pool{d}d", w.node(args[0]), **params), None

    return translate


def _avg_pool(d: int) -> Translation:
    def translate(w: Writer, args: Sequence[Any], kw: dict[str, Any]) -> int:
        names = ("kernel_size", "stride", "padding", "ceil_mode", "count_include_pad",
                 "divisor_override")
        given = dict(zip(names, args[1:], strict=False)) | kw
        params = {key: tuple(value) if isinstance(value, (list, tuple)) else value
                  for key, value in given.items() if value not in ([], ()) and value is not None}
        return w.call(f"avg_pool{d}d", w.node(args[0]), **params)

    return translate


def _layer_norm(w: Writer, args: Sequence[Any], kw: dict[str, Any]) -> tuple[int, None, None]:
    """native_layer_norm(input, normalized_shape, weight, bias, eps) -> (out, mean, rstd)."""
    x, shape, weight, bias, eps = args
    tensors = [w.node(x)]
    given = [0]
    for position, tensor in ((1, weight), (2, bias)):
        if tensor is not None:
            tensors.append(w.node(tensor))
            given.append(position)
    if given == [0, 2]:  # a bias without a weight: weight 1
        tensors.insert(1, w.call("expand", w.const(1), size=tuple(shape)))
    out = w.call("layer_norm", *tensors, normalized_shape=tuple(shape), eps=float(eps))
    return out, None, None


def _nll_loss(w: Writer, args: Sequence[Any], kw: dict[str, Any]) -> tuple[int, None]:
    """nll_loss_forward(self, target, weight, reduction, ignore_index) -> (loss, weight sum)."""
    x, target, weight, reduction, ignore_index = args
    tensors = [w.node(x), w.node(target)] + ([] if weight is None else [w.node(weight)])
    return w.call("nll_loss", *tensors, reduction=_REDUCTION[int(reduction)],
                  ignore_index=int(ignore_index)), None


def _mse_loss(w: Writer, args: Sequence[Any], kw: dict[str, Any]) -> int:
    reduction = _REDUCTION[int(kw.get("reduction", args[2] if len(args) > 2 else 1))]
    return w.call("mse_loss", w.node(args[0]), w.node(args[1]), reduction=reduction)


def _keywords(op: str, *names: str) -> Translation:
    """aten.op(self, *names): the language's op of that name with those keywords."""
    def translate(w: Writer, args: Sequence[Any], kw: dict[str, Any]) -> int:
        given = dict(zip(names, args[1:], strict=False)) | kw
        return w.call(op, w.node(args[0]), **given)

    return translate


def _pad(w: Writer, args: Sequence[Any], kw: dict[str, Any]) -> int:
    """constant_pad_nd(self, pad, value=0)."""
    value = kw.get("value", args[2] if len(args) > 2 else 0)
    return w.call("pad", w.node(args[0]), pad=tuple(int(p) for p in args[1]),
                  value=float(value))


def _unfold(w: Writer, args: Sequence[Any], kw: dict[str, Any]) -> int:
    """unfold(self, dim, size, step): the windows of ``dim`` as a new dim there, each
    window's elements as a new last dim (Tensor.unfold, im2col's first step)."""
    x = w.node(args[0])
    shape = w.shape(x)
    dim, size, step = int(args[1]) % max(len(shape), 1), int(args[2]), int(args[3])
    count = (shape[dim] - size) // step + 1
    windows = [w.call("narrow", x, dim=dim, start=i * step, length=size) for i in range(count)]
    return w.call("movedim", w.call("stack", *windows, dim=dim), source=dim + 1,
                  destination=-1)


def _identity(w: Writer, args: Sequence[Any], kw: dict[str, Any]) -> int:
    return w.node(args[0])


def _first_of_pair(op: str) -> Translation:
    return lambda w, args, kw: (w.call(op, w.node(args[0])), None)


# --- the table ---------------------------------------------------------------------------------

_UNARY = ("abs acos acosh asin asinh atan atanh ceil cos cosh erf erfc exp exp2 expm1 floor "
          "frac log log10 log1p log2 neg reciprocal relu round rsqrt sigmoid sign sin sinh sqrt "
          "tan tanh trunc silu mish hardsigmoid hardswish logical_not")
for _name in _UNARY.split():
    _register(f"aten.{_name}.default aten.{_name}_.default", _unary(_name))
_register("aten.bitwise_not.default", _unary("logical_not"))
for _name in ("mul", "div", "maximum", "minimum", "atan2", "hypot", "remainder", "fmod",
              "lt", "le", "gt", "ge", "eq", "ne", "logical_and", "logical_or", "logical_xor"):
    _register(f"aten.{_name}.Tensor aten.{_name}.Scalar aten.{_name}.default "
              f"aten.{_name}_.Tensor aten.{_name}_.Scalar", _binary(_name))
_register("aten.bitwise_and.Tensor", _binary("logical_and"))
_register("aten.bitwise_or.Tensor", _binary("logical_or"))
_register("aten.bitwise_xor.Tensor", _binary("logical_xor"))
_register("aten.pow.Tensor_Scalar aten.pow.Tensor_Tensor aten.pow.Scalar aten.pow_.Scalar "
          "aten.pow_.Tensor", _binary("pow"))
_register("aten.add.Tensor aten.add.Scalar aten.add_.Tensor aten.add_.Scalar", _with_alpha("add"))
_register("aten.sub.Tensor aten.sub.Scalar aten.sub_.Tensor aten.sub_.Scalar", _with_alpha("sub"))
_register("aten.rsub.Tensor aten.rsub.Scalar", _rsub)
_register("aten.div.Tensor_mode aten.div_.Tensor_mode", _div_mode)
_register("aten.where.self", lambda w, a, kw: w.call("where", *(w.node(t) for t in a[:3])))
_register("aten.clamp.default aten.clamp.Tensor aten.clamp_.default aten.clamp_.Tensor",
          _clamp)
_register("aten.clamp_min.default aten.clamp_min.Tensor aten.clamp_min_.default",
          _bound("clamp", 1))
_register("aten.clamp_max.default aten.clamp_max.Tensor aten.clamp_max_.default",
          _bound("clamp", 2))
_register("aten.gelu.default aten.gelu_.default", _keywords("gelu", "approximate"))
_register("aten.softplus.default", _keywords("softplus", "beta", "threshold"))
_register("aten.leaky_relu.default aten.leaky_relu_.default",
          _keywords("leaky_relu", "negative_slope"))
_register("aten.hardtanh.default aten.hardtanh_.default",
          _keywords("hardtanh", "min_val", "max_val"))
_register("aten.log_sigmoid_forward.default", _first_of_pair("logsigmoid"))
for _name in ("sum", "mean", "amax", "amin", "prod", "logsumexp"):
    _register(f"aten.{_name}.default aten.{_name}.dim_IntList aten.{_name}.dim "
              f"aten.{_name}.dim_int", _reduce(_name))
_register("aten.var.correction", _moment("var"))
_register("aten.std.correction", _moment("std"))
for _name in ("cumsum", "cumprod", "logcumsumexp"):
    _register(f"aten.{_name}.default", _scan(_name))
_register("aten._softmax.default", _softmax("softmax"))
_register("aten._log_softmax.default", _softmax("log_softmax"))
_register("aten.mm.default aten.bmm.default aten.mv.default aten.matmul.default aten.dot.default",
          _binary("matmul"))
_register("aten.addmm.default", _addmm)
_register("aten.t.default aten.t_.default aten.numpy_T.default", _transpose_2d)
_register("aten.transpose.int aten.transpose_.default",
          lambda w, a, kw: w.call("transpose", w.node(a[0]), dim0=int(a[1]), dim1=int(a[2])))
_register("aten.permute.default", lambda w, a, kw: w.call("permute", w.node(a[0]),
                                                          dims=tuple(a[1])))
_register("aten.view.default aten._unsafe_view.default aten.reshape.default "
          "aten._reshape_alias.default", _reshape)
_register("aten.expand.default", _expand)
_register("aten.unsqueeze.default aten.unsqueeze_.default",
          lambda w, a, kw: w.call("unsqueeze", w.node(a[0]), dim=int(a[1])))
_register("aten.squeeze.dim aten.squeeze.dims aten.squeeze.default aten.squeeze_.dim "
          "aten.squeeze_.dims aten.squeeze_.default", _squeeze)
_register("aten.slice.Tensor", _slice)
_register("aten.select.int", lambda w, a, kw: w.call("select", w.node(a[0]), dim=int(a[1]),
                                                     index=int(a[2])))
_register("aten.cat.default", _cat("cat"))
_register("aten.stack.default", _cat("stack"))
_register("aten.flip.default", lambda w, a, kw: w.call("flip", w.node(a[0]), dims=tuple(a[1])))
_register("aten.constant_pad_nd.default", _pad)
_register("aten.unfold.default", _unfold)
_register("aten.convolution.default", _convolution)
for _d in (1, 2, 3):
    _register(f"aten.max_pool{_d}d_with_indices.default", _max_pool(_d))
    _register(f"aten.avg_pool{_d}d.default", _avg_pool(_d))
_register("aten.native_layer_norm.default", _layer_norm)
_register("aten.nll_loss_forward.default", _nll_loss)
_register("aten.mse_loss.default", _mse_loss)
_register("aten.embedding.default",
          lambda w, a, kw: w.call("embedding", w.node(a[1]), w.node(a[0])))
_register("aten.gather.default", lambda w, a, kw: w.call("gather", w.node(a[0]), w.node(a[2]),
                                                         dim=int(a[1])))
_register("aten.index_select.default",
          lambda w, a, kw: w.call("index_select", w.node(a[0]), w.node(a[2]), dim=int(a[1])))
# Copies, aliases and casts carry the values on unchanged (a cast's precision is measured and
# reported by the precision oracle, as for a written spec).
_register("aten.clone.default aten.alias.default aten.detach.default aten.lift_fresh.default "
          "aten._to_copy.default aten.contiguous.default aten.to.dtype aten.copy.default "
          "aten._conj.default aten.positive.default", _identity)



def translation(name: str) -> Translation | None:
    return TABLE.get(name)


def refuse(name: str, where: str) -> SpecError:
    return SpecError(f"the traced forward ran {name}{where}, which has no translation into "
                     "the case language: write the case's output: (see README, Expressions)",
                     key="impl")
