"""Running reductions along one ``dim`` (required, as in torch): ``cumsum cumprod
logcumsumexp``. Element i of the result reduces elements 0..i, so the VJP of element i of
the input gathers the cotangents of elements i.. of the result.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from gradcheck_lab.ops.base import (
    ArgInfo,
    Arrays,
    Gradients,
    Op,
    Param,
    Params,
    Shape,
    as_float,
    int_param,
    normalize_dim,
    object_array,
    torch_module,
)

ScanRule = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]


def _dim(a: Any, params: Params, name: str) -> int:
    return normalize_dim(int_param(params, "dim"), np.ndim(a), name)


def _along_last(function: Callable[..., np.ndarray], *arrays: np.ndarray,
                dim: int) -> np.ndarray:
    """``function`` of arrays whose scanned dim is moved last, moved back; 0-d as 1-d."""
    if np.ndim(arrays[0]) == 0:
        return function(*(np.reshape(a, (1,)) for a in arrays)).reshape(())
    moved = [np.moveaxis(a, dim, -1) for a in arrays]
    return np.moveaxis(function(*moved), -1, dim)


def _reverse_cumsum(a: np.ndarray) -> np.ndarray:
    return np.flip(np.cumsum(np.flip(a, -1), -1), -1)


def _cumprod_vjp(g: np.ndarray, x: np.ndarray, out: np.ndarray) -> np.ndarray:
    """d out[j] / d x[i] = prod(x[:j+1] without x[i]) for j >= i: exact where x has zeros
    (out / x is not). O(n²) per row; scans are short."""
    n = x.shape[-1]
    grad = np.zeros(np.broadcast_shapes(g.shape, x.shape), dtype=np.result_type(g, x))
    for i in range(n):
        others = x.copy()
        others[..., i] = 1.0
        partial = np.cumprod(others, axis=-1)[..., i:]
        grad[..., i] = np.sum(g[..., i:] * partial, axis=-1)
    return grad


# The complex step of logcumsumexp weighs every earlier element at every element: one
# (..., n, n) matrix would hold n times the input (10^5 elements in a row: 80 GB). Blocks
# of b elements along the row, b² weights per row at most this many together, carry the sum
# from one block to the next.
_BLOCK_WEIGHTS = 2**22


def _logcumsumexp(a: np.ndarray) -> np.ndarray:
    real = np.logaddexp.accumulate(a.real, axis=-1)
    if a.dtype.kind != "c":
        return real
    # A complex step a + ih·t (np.logaddexp takes no complex): the value plus i times its
    # derivative along the imaginary part, d out[j] = sum over i <= j of exp(a[i] - out[j]) t[i]
    # = exp(out[s - 1] - out[j]) d out[s - 1] + the sum over s <= i <= j, s where j's block
    # starts.
    n = a.shape[-1]
    rows = max(1, a.size // max(n, 1))
    block = max(1, min(n, math.isqrt(_BLOCK_WEIGHTS // rows)))
    tangent = np.zeros(real.shape, dtype=np.result_type(real, a.imag))
    with np.errstate(all="ignore"):
        for start in range(0, n, block):
            end = min(start + block, n)
            weights = np.exp(a.real[..., None, start:end] - real[..., start:end, None])
            weights = np.tril(np.nan_to_num(weights, nan=0.0))
            part = np.einsum("...ji,...i->...j", weights, a.imag[..., start:end])
            if start:
                carry = np.exp(real[..., start - 1:start] - real[..., start:end])
                part = part + np.nan_to_num(carry, nan=0.0) * tangent[..., start - 1:start]
            tangent[..., start:end] = part
    return real + 1j * tangent


def _logcumsumexp_vjp(g: np.ndarray, x: np.ndarray, out: np.ndarray) -> np.ndarray:
    """d out[j] / d x[i] = exp(x[i] - out[j]) for j >= i."""
    n = x.shape[-1]
    grad = np.zeros(np.broadcast_shapes(g.shape, x.shape), dtype=np.result_type(g, x))
    with np.errstate(all="ignore"):
        for i in range(n):
            weights = np.exp(x[..., i:i + 1] - out[..., i:])
            grad[..., i] = np.sum(g[..., i:] * weights, axis=-1)
    return np.nan_to_num(grad, nan=0.0)


def _sympy_scan(kind: str) -> Callable[[np.ndarray], np.ndarray]:
    def scan(row: np.ndarray) -> np.ndarray:
        import sympy

        out = object_array(np.empty(row.shape, dtype=object))
        total: Any = None
        for index in np.ndindex(*row.shape[:-1]):
            total = None
            for k in range(row.shape[-1]):
                at = (*index, k)
                value = row[at]
                term = sympy.exp(value) if kind == "logcumsumexp" else value
                total = term if total is None else (
                    total * term if kind == "cumprod" else total + term)
                out[at] = sympy.log(total) if kind == "logcumsumexp" else total
        return out

    return scan


def _scan(name: str, numpy_scan: Callable[[np.ndarray], np.ndarray], vjp_rule: ScanRule,
          magnitude_rule: ScanRule, doc: str) -> Op:
    def shape(args: Sequence[ArgInfo], params: Params) -> Shape:
        normalize_dim(int_param(params, "dim"), len(args[0].shape), name)
        return args[0].shape

    def backward(rule: ScanRule) -> Callable[..., Gradients]:
        def apply(g: np.ndarray, args: Arrays, out: np.ndarray, params: Params,
                  needs: Sequence[bool]) -> Gradients:
            x = as_float(args[0])
            return [_along_last(rule, as_float(g), x,
                                as_float(out), dim=_dim(x, params, name))]

        return apply

    return Op(
        name=name, arg_names=("input",), group="reduction", doc=doc, min_args=1, max_args=1,
        params=(Param("dim", "int", required=True),), shape=shape,
        torch=lambda args, p: getattr(torch_module(), name)(args[0], dim=int_param(p, "dim")),
        numpy=lambda args, p: _along_last(numpy_scan, as_float(args[0]),
                                          dim=_dim(args[0], p, name)),
        vjp=backward(vjp_rule), vjp_magnitude=backward(magnitude_rule),
        sympy=lambda args, p: _along_last(_sympy_scan(name), object_array(args[0]),
                                          dim=_dim(args[0], p, name)))


SCANS = [
    _scan("cumsum", lambda a: np.cumsum(a, axis=-1), lambda g, x, out: _reverse_cumsum(g),
          lambda g, x, out: _reverse_cumsum(np.abs(g)), "running sum along `dim`"),
    _scan("cumprod", lambda a: np.cumprod(a, axis=-1), _cumprod_vjp,
          lambda g, x, out: np.abs(_cumprod_vjp(np.abs(g), np.abs(x), np.abs(out))),
          "running product along `dim` (exact gradient at zeros)"),
    _scan("logcumsumexp", _logcumsumexp, _logcumsumexp_vjp,
          lambda g, x, out: _logcumsumexp_vjp(np.abs(g), x, out),
          "log of the running sum of exp along `dim`"),
]
