"""Spread and size: ``var std`` (with torch's ``correction``, 1 by default: Bessel's) and the
p-norms ``vector_norm(x, ord)`` and ``norm(x, p)``, over every dim or ``dim``.

std and the norms have a kink where their value is 0 (a slice of equal elements, a zero
vector: sqrt at 0), and the 1-norm, and any p below 1, wherever an element is 0 (abs at 0).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from gradcheck_lab.errors import SpecError
from gradcheck_lab.ops.base import (
    Param,
    Params,
    Shape,
    float_param,
    object_array,
    real_abs,
    real_sign,
)
from gradcheck_lab.ops.reductions import reduced_count, reduction

_DIMS = (Param("dim", "dims"),)
_KEEPDIM = (Param("keepdim", "bool", default=False),)


def _dof(shape: Shape, axes: tuple[int, ...], params: Params) -> float:
    """N - correction: what the sum of squares is divided by."""
    return reduced_count(shape, axes) - float_param(params, "correction")


def _check_dof(shape: Shape, axes: tuple[int, ...], params: Params) -> None:
    if _dof(shape, axes, params) <= 0:
        raise SpecError(f"{reduced_count(shape, axes)} element(s) per slice with "
                        f"correction={params['correction']}: the variance divides by "
                        "N - correction <= 0 (torch gives inf or nan)")


def _centred(x: np.ndarray, axes: tuple[int, ...]) -> np.ndarray:
    return x - np.mean(x, axis=axes, keepdims=True) if axes else np.zeros_like(x)


def _var(a: np.ndarray, axes: tuple[int, ...], params: Params) -> np.ndarray:
    return np.sum(_centred(a, axes) ** 2, axis=axes, keepdims=True) / _dof(a.shape, axes,
                                                                           params)


def _sympy_var(a: np.ndarray, axes: tuple[int, ...], params: Params) -> np.ndarray:
    import sympy

    count = sympy.Integer(reduced_count(a.shape, axes))
    correction = sympy.nsimplify(params["correction"])
    mean = object_array(np.sum(a, axis=axes, keepdims=True)) / count
    squares = object_array((a - mean) ** 2)
    return object_array(np.sum(squares, axis=axes, keepdims=True)) / (count - correction)


def _var_vjp(g: np.ndarray, x: np.ndarray, out: np.ndarray, axes: tuple[int, ...],
             params: Params) -> np.ndarray:
    return g * 2.0 * _centred(x, axes) / _dof(x.shape, axes, params)


def _var_magnitude(g: np.ndarray, x: np.ndarray, out: np.ndarray, axes: tuple[int, ...],
                   params: Params) -> np.ndarray:
    # x - mean is computed from numbers of the size of x: its rounding is relative to them.
    mean = np.abs(np.mean(x, axis=axes, keepdims=True)) if axes else 0.0
    return np.abs(g) * 2.0 * (np.abs(x) + mean) / _dof(x.shape, axes, params)


def _torch_moment(name: str) -> Any:
    def lower(torch: Any, a: Any, axes: tuple[int, ...], params: Params) -> Any:
        if not axes:  # one element, correction 0: no spread
            return a * 0
        return getattr(torch, name)(a, dim=axes, correction=params["correction"],
                                    keepdim=True)

    return lower


def _flat_slices(g: np.ndarray, x: np.ndarray, out: np.ndarray, axes: tuple[int, ...],
                 params: Params) -> np.ndarray:
    """Where the reduced value is 0: sqrt at 0, every element of the slice."""
    return out == 0


_MOMENT_PARAMS = (*_DIMS, Param("correction", "float", default=1), *_KEEPDIM)

VAR = reduction(
    "var", numpy_form=_var, sympy_form=_sympy_var, torch_form=_torch_moment("var"),
    vjp=_var_vjp, magnitude=_var_magnitude, params=_MOMENT_PARAMS, check=_check_dof,
    scales_g=True, doc="sum((x - mean)²) / (N - correction), over every dim or `dim`")

STD = reduction(
    "std", numpy_form=lambda a, axes, p: np.sqrt(_var(a, axes, p)),
    sympy_form=lambda a, axes, p: _sqrt(_sympy_var(a, axes, p)),
    torch_form=_torch_moment("std"),
    vjp=lambda g, x, out, axes, p: _var_vjp(g, x, out, axes, p) / (2.0 * out),
    magnitude=lambda g, x, out, axes, p: _var_magnitude(g, x, out, axes, p) / (2.0 * out),
    kinks=_flat_slices, kink_where="where it is 0 (a slice of equal elements)",
    params=_MOMENT_PARAMS, check=_check_dof, scales_g=True,
    doc="sqrt(var(x)), with var's `correction`")


def _sqrt(values: np.ndarray) -> np.ndarray:
    import sympy

    flat = np.empty(values.size, dtype=object)
    flat[:] = [sympy.sqrt(v) for v in values.reshape(-1)]
    return flat.reshape(values.shape)


# --- p-norms --------------------------------------------------------------------------------


MAX_ORDER = 64


def _order(params: Params) -> float:
    return float_param(params, "ord" if "ord" in params else "p")


def _check_order(shape: Shape, axes: tuple[int, ...], params: Params) -> None:
    if _order(params) == math.inf:
        raise SpecError("the norm's order must be finite: write amax(abs(x)) for the "
                        "largest |element| (ord=inf)")
    if not _order(params) > 0:
        raise SpecError("the norm's order must be positive (0 counts non-zeros and has no "
                        "gradient)")
    if _order(params) > MAX_ORDER:
        # |x|^p overflows float64 for |x| > 2^(1024/p), and exact powers of that size are
        # integers of millions of digits (the exact oracle would run for hours).
        raise SpecError(f"the norm's order must be at most {MAX_ORDER} (larger ones overflow "
                        "float64; write amax(abs(x)) for the largest |element|)")


def _norm(a: np.ndarray, axes: tuple[int, ...], params: Params) -> np.ndarray:
    order = _order(params)
    if order == 2:
        return np.sqrt(np.sum(a * a, axis=axes, keepdims=True))
    return np.sum(real_abs(a) ** order, axis=axes, keepdims=True) ** (1.0 / order)


def _sympy_norm(a: np.ndarray, axes: tuple[int, ...], params: Params) -> np.ndarray:
    import sympy

    order = sympy.nsimplify(_order(params))
    # An even integer order needs no Abs (whose derivative is sign, undefined at 0).
    powers = a**order if order.is_integer and order % 2 == 0 else np.vectorize(
        lambda v: sympy.Abs(v) ** order, otypes=[object])(a)
    total = object_array(np.sum(object_array(powers), axis=axes, keepdims=True))
    flat = np.empty(total.size, dtype=object)
    flat[:] = [v ** (1 / order) for v in total.reshape(-1)]
    return flat.reshape(total.shape)


def _norm_vjp(g: np.ndarray, x: np.ndarray, out: np.ndarray, axes: tuple[int, ...],
              params: Params) -> np.ndarray:
    """d|x|_p / dx = sign(x)·|x|^(p-1) / |x|_p^(p-1)."""
    order = _order(params)
    with np.errstate(all="ignore"):
        return g * real_sign(x) * (real_abs(x) / out) ** (order - 1)


def _norm_kinks(g: np.ndarray, x: np.ndarray, out: np.ndarray, axes: tuple[int, ...],
                params: Params) -> np.ndarray:
    zero_slice = out == 0
    return zero_slice | (x == 0) if _order(params) <= 1 else zero_slice


def _torch_norm(name: str) -> Any:
    def lower(torch: Any, a: Any, axes: tuple[int, ...], params: Params) -> Any:
        if not axes:
            return a.abs()
        if name == "vector_norm":
            return torch.linalg.vector_norm(a, ord=params["ord"], dim=axes, keepdim=True)
        return torch.norm(a, p=params["p"], dim=axes, keepdim=True)

    return lower


def _p_norm(name: str, order: str) -> Any:
    return reduction(
        name, numpy_form=_norm, sympy_form=_sympy_norm, torch_form=_torch_norm(name),
        vjp=_norm_vjp, kinks=_norm_kinks, scales_g=True,
        kink_where="where it is 0, and for an order up to 1 where an element is 0",
        params=(Param(order, "float", default=2.0), *_DIMS, *_KEEPDIM), check=_check_order,
        doc=f"(sum |x|^{order})^(1/{order}) over every dim or `dim`; `{order}` a positive "
            "number")


MOMENTS = [VAR, STD, _p_norm("vector_norm", "ord"), _p_norm("norm", "p")]
