"""Reductions, scans, softmax and matrix products."""

from __future__ import annotations

import math
from typing import Any

from gradcheck_lab.trace.aten.table import Args, Translation, Writer, dims, register, scaled


def _reduce(op: str, dim_key: str = "dim") -> Translation:
    """sum/mean/amax/amin/prod/logsumexp(self, dim, keepdim): dim None or [] is every dim."""
    def translate(w: Writer, a: Args) -> int:
        params: dict[str, Any] = {}
        dim = dims(a.get(dim_key))
        if dim is not None:
            params["dim"] = dim
        if a.get("keepdim"):
            params["keepdim"] = True
        return w.call(op, w.node(a["self"]), **params)

    return translate


for _name in ("sum", "mean", "amax", "amin", "prod", "logsumexp"):
    register(f"aten.{_name}.default aten.{_name}.dim_IntList aten.{_name}.dim "
             f"aten.{_name}.dim_int", _reduce(_name))
register("aten.max.default", _reduce("amax"))
register("aten.min.default", _reduce("amin"))
register("aten.max.dim", lambda w, a: (_reduce("amax")(w, a), None))
register("aten.min.dim", lambda w, a: (_reduce("amin")(w, a), None))


def _moment(op: str) -> Translation:
    """var/std(self, dim, correction | unbiased, keepdim)."""
    def translate(w: Writer, a: Args) -> int:
        correction = a.get("correction")
        if "unbiased" in a:
            correction = 1 if a["unbiased"] else 0
        params: dict[str, Any] = {"correction": 1 if correction is None else correction,
                                  "keepdim": bool(a.get("keepdim"))}
        dim = dims(a.get("dim"))
        if dim is not None:
            params["dim"] = dim
        return w.call(op, w.node(a["self"]), **params)

    return translate


def _moment_mean(op: str) -> Translation:
    """var_mean/std_mean: the moment and the mean."""
    return lambda w, a: (_moment(op)(w, a), _reduce("mean")(w, a))


for _name in ("var", "std"):
    register(f"aten.{_name}.correction aten.{_name}.dim aten.{_name}.default",
             _moment(_name))
    register(f"aten.{_name}_mean.correction aten.{_name}_mean.dim aten.{_name}_mean.default",
             _moment_mean(_name))


def _vector_norm(w: Writer, a: Args) -> int:
    """linalg_vector_norm(self, ord, dim, keepdim): a positive finite order as the language's
    vector_norm; ±inf the largest or smallest |element|; 0 the count of non-zeros (whose
    gradient is 0)."""
    order = float(a["ord"])
    params: dict[str, Any] = {"keepdim": bool(a["keepdim"])}
    dim = dims(a["dim"])
    if dim is not None:
        params["dim"] = dim
    x = w.node(a["self"])
    if order in (math.inf, -math.inf):
        return w.call("amax" if order > 0 else "amin", w.call("abs", x), **params)
    if order == 0:
        nonzero = w.call("where", w.call("ne", x, w.const(0)), w.const(1), w.const(0))
        return w.call("sum", nonzero, **params)
    return w.call("vector_norm", x, ord=order, **params)


register("aten.linalg_vector_norm.default", _vector_norm)


def _scan(op: str) -> Translation:
    return lambda w, a: w.call(op, w.node(a["self"]), dim=int(a["dim"]))


for _name in ("cumsum", "cumprod", "logcumsumexp"):
    register(f"aten.{_name}.default", _scan(_name))
register("aten._softmax.default aten.softmax.int",
         lambda w, a: w.call("softmax", w.node(a["self"]), dim=int(a["dim"])))
register("aten._log_softmax.default aten.log_softmax.int",
         lambda w, a: w.call("log_softmax", w.node(a["self"]), dim=int(a["dim"])))

# --- matrix products ----------------------------------------------------------------------------

register("aten.mm.default aten.bmm.default aten.mv.default aten.matmul.default aten.dot.default "
         "aten.vdot.default",
         lambda w, a: w.call("matmul", w.node(a["self"]), w.node(a.get("mat2", a.get(
             "vec", a.get("other", a.get("tensor")))))))


def _plus_product(product_of: str, first: str, second: str) -> Translation:
    """addmm/addmv/baddbmm(self, a, b, beta, alpha) = beta·self + alpha·(a @ b)."""
    def translate(w: Writer, a: Args) -> int:
        product = w.call("matmul", w.node(a[first]), w.node(a[second]))
        if product_of == "sum":  # addbmm: the batch of products summed
            product = w.call("sum", product, dim=0)
        product = scaled(w, a["alpha"], product)
        if a["beta"] == 0:  # beta 0: self is ignored, nan included
            return product
        return w.call("add", scaled(w, a["beta"], w.node(a["self"])), product)

    return translate


register("aten.addmm.default", _plus_product("product", "mat1", "mat2"))
register("aten.addmv.default", _plus_product("product", "mat", "vec"))
register("aten.baddbmm.default", _plus_product("product", "batch1", "batch2"))
register("aten.addbmm.default", _plus_product("sum", "batch1", "batch2"))
register("aten.outer.default aten.ger.default",
         lambda w, a: w.call("outer", w.node(a["self"]), w.node(a["vec2"])))
