"""Elementwise aten ops: functions, arithmetic, comparisons, selection, casts."""

from __future__ import annotations

import math

from gradcheck_lab.ops.base import GIVEN
from gradcheck_lab.trace.aten.table import Args, Translation, Writer, number, register, scaled

_SAME_NAME = ("abs acos acosh asin asinh atan atanh ceil cos cosh erf erfc exp exp2 expm1 "
              "floor frac log log10 log1p log2 neg reciprocal relu round rsqrt sigmoid sign "
              "sin sinh sqrt tan tanh trunc silu mish hardsigmoid hardswish logical_not "
              "square relu6 selu")


def _unary(op: str) -> Translation:
    return lambda w, a: w.call(op, w.node(a["self"]))


def _binary(op: str) -> Translation:
    return lambda w, a: w.call(op, w.node(a["self"]), w.node(a["other"]))


for _name in _SAME_NAME.split():
    register(f"aten.{_name}.default", _unary(_name))
register("aten.sgn.default", _unary("sign"))
register("aten.bitwise_not.default", _unary("logical_not"))
register("aten.positive.default aten._conj.default aten.conj.default aten.resolve_conj.default "
         "aten.resolve_neg.default", lambda w, a: w.node(a["self"]))
register("aten.deg2rad.default",
         lambda w, a: w.call("mul", w.node(a["self"]), w.const(math.pi / 180)))
register("aten.rad2deg.default",
         lambda w, a: w.call("mul", w.node(a["self"]), w.const(180 / math.pi)))
register("aten.round.decimals", lambda w, a: w.call("div", w.call(
    "round", w.call("mul", w.node(a["self"]), w.const(10 ** a["decimals"]))),
    w.const(10 ** a["decimals"])))

for _name in ("mul", "maximum", "minimum", "atan2", "hypot", "remainder", "fmod", "lt", "le",
              "gt", "ge", "eq", "ne", "logical_and", "logical_or", "logical_xor"):
    register(f"aten.{_name}.Tensor aten.{_name}.Scalar aten.{_name}.default",
             _binary(_name))
for _name, _op in (("bitwise_and", "logical_and"), ("bitwise_or", "logical_or"),
                   ("bitwise_xor", "logical_xor"), ("greater", "gt"), ("less", "lt"),
                   ("fmax", "maximum"), ("fmin", "minimum"), ("true_divide", "div")):
    register(f"aten.{_name}.Tensor aten.{_name}.Scalar aten.{_name}.default", _binary(_op))
register("aten.div.Tensor aten.div.Scalar", _binary("div"))


def _pow(w: Writer, a: Args) -> int:
    base = a.get("self")
    return w.call("pow", w.node(base), w.node(a["exponent"]))


register("aten.pow.Tensor_Scalar aten.pow.Tensor_Tensor aten.pow.Scalar", _pow)


def _with_alpha(op: str) -> Translation:
    """add/sub(self, other, alpha): self op alpha·other."""
    return lambda w, a: w.call(op, w.node(a["self"]), scaled(w, a["alpha"], w.node(a["other"])))


register("aten.add.Tensor aten.add.Scalar", _with_alpha("add"))
register("aten.sub.Tensor aten.sub.Scalar", _with_alpha("sub"))
register("aten.rsub.Tensor aten.rsub.Scalar", lambda w, a: w.call(
    "sub", w.node(a["other"]), scaled(w, a["alpha"], w.node(a["self"]))))


def _div_mode(w: Writer, a: Args) -> int:
    quotient = w.call("div", w.node(a["self"]), w.node(a["other"]))
    mode = a["rounding_mode"]
    return quotient if mode is None else w.call(mode, quotient)  # "floor" or "trunc"


register("aten.div.Tensor_mode aten.div.Scalar_mode", _div_mode)
register("aten.floor_divide.default aten.floor_divide.Scalar", lambda w, a: w.call(
    "floor", w.call("div", w.node(a["self"]), w.node(a["other"]))))


def _where(w: Writer, a: Args) -> int:
    return w.call("where", w.node(a["condition"]), w.node(a["self"]), w.node(a["other"]))


register("aten.where.self aten.where.ScalarSelf aten.where.ScalarOther aten.where.Scalar",
         _where)
register("aten.masked_fill.Scalar aten.masked_fill.Tensor", lambda w, a: w.call(
    "where", w.node(a["mask"]), w.node(a["value"]), w.node(a["self"])))


def _clamp(w: Writer, a: Args) -> int:
    """clamp(self, min=None, max=None), each bound a number or a tensor."""
    given, tensors = [0], [w.node(a["self"])]
    for position, bound in ((1, a.get("min")), (2, a.get("max"))):
        if bound is not None:
            given.append(position)
            tensors.append(w.node(bound))
    return w.call("clamp", *tensors, **{GIVEN: tuple(given)})


def _bound(position: int) -> Translation:
    """clamp_min/clamp_max(self, bound)."""
    def translate(w: Writer, a: Args) -> int:
        bound = a["min"] if position == 1 else a["max"]
        return w.call("clamp", w.node(a["self"]), w.node(bound), **{GIVEN: (0, position)})

    return translate


register("aten.clamp.default aten.clamp.Tensor", _clamp)
register("aten.clamp_min.default aten.clamp_min.Tensor", _bound(1))
register("aten.clamp_max.default aten.clamp_max.Tensor", _bound(2))
register("aten.hardtanh.default", lambda w, a: w.call(
    "hardtanh", w.node(a["self"]), min_val=float(a["min_val"]), max_val=float(a["max_val"])))
register("aten.gelu.default", lambda w, a: w.call("gelu", w.node(a["self"]),
                                                  approximate=a["approximate"]))
register("aten.softplus.default", lambda w, a: w.call(
    "softplus", w.node(a["self"]), beta=float(a["beta"]), threshold=float(a["threshold"])))
register("aten.leaky_relu.default", lambda w, a: w.call(
    "leaky_relu", w.node(a["self"]), negative_slope=float(a["negative_slope"])))
register("aten.log_sigmoid_forward.default",
         lambda w, a: (w.call("logsigmoid", w.node(a["self"])), None))


def _elu(w: Writer, a: Args) -> int:
    """elu(self, alpha, scale, input_scale) = scale·elu(input_scale·x, alpha)."""
    inner = scaled(w, number(a["input_scale"]), w.node(a["self"]))
    return scaled(w, number(a["scale"]), w.call("elu", inner, alpha=float(a["alpha"])))


register("aten.elu.default", _elu)


def _rrelu(w: Writer, a: Args) -> int:
    """rrelu_with_noise(self, noise, lower, upper, training): in eval mode leaky_relu with
    the mean slope; training draws a slope per element (refused as random)."""
    if a["training"]:
        from gradcheck_lab.errors import SpecError

        raise SpecError("rrelu in training mode draws a random slope per element on every "
                        "call: the forward is not a function of its inputs")
    slope = (float(a["lower"]) + float(a["upper"])) / 2
    return w.call("leaky_relu", w.node(a["self"]), negative_slope=slope)


register("aten.rrelu_with_noise.default aten.rrelu_with_noise_functional.default", _rrelu)
register("aten.celu.default", lambda w, a: w.call("celu", w.node(a["self"]),
                                                  alpha=float(a["alpha"])))


def _cast(w: Writer, a: Args) -> int:
    """_to_copy / to / type casts: a real value stays itself (the precision oracle measures
    what a cast costs); an integer or bool one made real is multiplied by 1 (promoted); a
    cast to an integer or bool dtype is refused here and read as the constant it is."""
    import torch

    node = w.node(a["self"])
    dtype = a.get("dtype")
    if dtype is None or (dtype.is_floating_point if isinstance(dtype, torch.dtype) else True):
        if isinstance(a["self"], (int, float)) or getattr(a["self"], "kind", "real") != "real":
            return w.call("mul", node, w.const(1))
        return node
    from gradcheck_lab.errors import SpecError

    kind = "a complex" if dtype.is_complex else "an integer"
    raise SpecError(f"a cast to {dtype}: {kind} value")


register("aten._to_copy.default aten.to.dtype aten.to.dtype_layout aten.to.device "
         "aten.to.other", _cast)
register("aten.clone.default aten.contiguous.default aten.alias.default aten.detach.default "
         "aten.lift_fresh.default aten.lift_fresh_copy.default aten.alias_copy.default "
         "aten.detach_copy.default", lambda w, a: w.node(a["self"]))
