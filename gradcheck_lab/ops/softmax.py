"""Softmax and its kin over one ``dim``: softmax, log_softmax, softmin, and glu (the gated
linear unit, which halves ``dim``), with torch semantics.

Closed-form VJPs (the rule sweep) and sympy forms over object arrays (the exact oracle and the
tests that confirm the closed forms agree with sympy's differentiation).
"""

from __future__ import annotations

from collections.abc import Sequence
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
    ShapeRule,
    TorchForm,
    elementwise_sympy,
    int_param,
    normalize_dim,
    object_array,
    torch_module,
)

_DIM = (Param("dim", "int", default=-1),)


def _dim(params: Params, ndim: int, op: str) -> int:
    return normalize_dim(int_param(params, "dim"), ndim, op)


def _same_shape(op: str) -> ShapeRule:
    def rule(args: Sequence[ArgInfo], params: Params) -> Shape:
        _dim(params, len(args[0].shape), op)
        return args[0].shape

    return rule


def log_softmax(x: np.ndarray, axis: int | None) -> np.ndarray:
    shifted = x - np.max(x, axis=axis, keepdims=True)
    return shifted - np.log(np.sum(np.exp(shifted), axis=axis, keepdims=True))


def softmax(x: np.ndarray, axis: int | None) -> np.ndarray:
    return np.exp(log_softmax(x, axis))


def _axis(x: np.ndarray, params: Params, op: str) -> int | None:
    """The numpy axis (None for a 0-d tensor, where softmax is over its single element)."""
    return None if x.ndim == 0 else _dim(params, x.ndim, op)


def _softmax_vjp(g: np.ndarray, args: Arrays, out: np.ndarray, params: Params,
                 needs: Sequence[bool]) -> Gradients:
    """y = softmax(x): dx = y * (dy - sum(dy * y))."""
    axis = _axis(args[0], params, "softmax")
    return [out * (g - np.sum(g * out, axis=axis, keepdims=True))]


def _probe_axis(x: np.ndarray, params: Params, op: str) -> int | tuple[int, ...]:
    """``_axis`` behind a leading probe axis (a 0-d tensor's single element: no axis)."""
    return () if x.ndim == 0 else _dim(params, x.ndim, op) + 1


def _softmax_probes_vjp(g: np.ndarray, args: Arrays, out: np.ndarray, params: Params,
                        needs: Sequence[bool]) -> Gradients:
    axis = _probe_axis(args[0], params, "softmax")
    return [out * (g - np.sum(g * out, axis=axis, keepdims=True))]


def _log_softmax_probes_vjp(g: np.ndarray, args: Arrays, out: np.ndarray, params: Params,
                            needs: Sequence[bool]) -> Gradients:
    axis = _probe_axis(args[0], params, "log_softmax")
    return [g - np.exp(out) * np.sum(g, axis=axis, keepdims=True)]


def _softmax_magnitude(g: np.ndarray, args: Arrays, out: np.ndarray, params: Params,
                       needs: Sequence[bool]) -> Gradients:
    axis = _axis(args[0], params, "softmax")
    g = np.abs(g)
    return [out * (g + np.sum(g * out, axis=axis, keepdims=True))]


def _log_softmax_vjp(g: np.ndarray, args: Arrays, out: np.ndarray, params: Params,
                     needs: Sequence[bool]) -> Gradients:
    """y = log_softmax(x): dx = dy - softmax(x) * sum(dy)."""
    axis = _axis(args[0], params, "log_softmax")
    return [g - np.exp(out) * np.sum(g, axis=axis, keepdims=True)]


def _log_softmax_magnitude(g: np.ndarray, args: Arrays, out: np.ndarray, params: Params,
                           needs: Sequence[bool]) -> Gradients:
    axis = _axis(args[0], params, "log_softmax")
    g = np.abs(g)
    return [g + np.exp(out) * np.sum(g, axis=axis, keepdims=True)]


def sympy_log_softmax(x: np.ndarray, axis: int | None) -> np.ndarray:
    import sympy

    exps = elementwise_sympy(sympy.exp)(x)
    total = object_array(np.sum(exps, axis=axis, keepdims=True))
    return x - elementwise_sympy(sympy.log)(total)


def _sympy_softmax(x: np.ndarray, axis: int | None) -> np.ndarray:
    import sympy

    exps = elementwise_sympy(sympy.exp)(x)
    return exps / object_array(np.sum(exps, axis=axis, keepdims=True))


def _torch_softmax(name: str) -> TorchForm:
    def lower(args: Sequence[Any], params: Params) -> Any:
        (x,) = args
        return getattr(torch_module(), name)(x, dim=_dim(params, x.ndim, name))

    return lower


SOFTMAX = Op(
    name="softmax",
    arg_names=("input",),
    group="nn",
    doc="over `dim`",
    min_args=1,
    max_args=1,
    params=_DIM,
    shape=_same_shape("softmax"),
    torch=_torch_softmax("softmax"),
    numpy=lambda args, p: softmax(args[0], _axis(args[0], p, "softmax")),
    vjp=_softmax_vjp,
    vjp_magnitude=_softmax_magnitude,
    probes_vjp=_softmax_probes_vjp,
    sympy=lambda args, p: _sympy_softmax(args[0], _axis(args[0], p, "softmax")),
)

LOG_SOFTMAX = Op(
    name="log_softmax",
    arg_names=("input",),
    group="nn",
    doc="over `dim`",
    min_args=1,
    max_args=1,
    params=_DIM,
    shape=_same_shape("log_softmax"),
    torch=_torch_softmax("log_softmax"),
    numpy=lambda args, p: log_softmax(args[0], _axis(args[0], p, "log_softmax")),
    vjp=_log_softmax_vjp,
    vjp_magnitude=_log_softmax_magnitude,
    probes_vjp=_log_softmax_probes_vjp,
    sympy=lambda args, p: sympy_log_softmax(args[0], _axis(args[0], p, "log_softmax")),
)



def _softmin_vjp(g: np.ndarray, args: Arrays, out: np.ndarray, params: Params,
                 needs: Sequence[bool]) -> Gradients:
    """softmin(x) = softmax(-x): softmax's VJP, negated."""
    return [None if grad is None else -grad for grad in _softmax_vjp(g, args, out, params, needs)]


SOFTMIN = Op(
    name="softmin",
    arg_names=("input",),
    group="nn",
    doc="softmax(-input) over `dim`",
    min_args=1,
    max_args=1,
    params=_DIM,
    shape=_same_shape("softmin"),
    torch=lambda args, p: torch_module().nn.functional.softmin(
        args[0], dim=_dim(p, args[0].ndim, "softmin")),
    numpy=lambda args, p: softmax(-np.asarray(args[0]), _axis(args[0], p, "softmin")),
    vjp=_softmin_vjp,
    vjp_magnitude=_softmax_magnitude,
    sympy=lambda args, p: _sympy_softmax(-args[0], _axis(args[0], p, "softmin")),
)


# glu(x, dim): the first half of x along dim, gated by the sigmoid of the second half.


def _halves(x: np.ndarray, params: Params) -> tuple[np.ndarray, np.ndarray, int]:
    axis = _dim(params, np.ndim(x), "glu")
    first, second = np.split(np.asarray(x), 2, axis=axis)
    return first, second, axis


def _glu_shape(args: Sequence[ArgInfo], params: Params) -> Shape:
    shape = args[0].shape
    if not shape:
        raise SpecError("glu() needs at least one dim to halve")
    axis = _dim(params, len(shape), "glu")
    if shape[axis] % 2:
        raise SpecError(f"glu(): dim {axis} has {shape[axis]} elements; it must be even "
                        "(the two halves gate each other)")
    return tuple(n // 2 if i == axis else n for i, n in enumerate(shape))


def _gate(b: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * b))  # sigmoid, without overflow


def _glu(args: Arrays, params: Params) -> np.ndarray:
    a, b, _ = _halves(args[0], params)
    return a * _gate(b)


def _glu_vjp(g: np.ndarray, args: Arrays, out: np.ndarray, params: Params,
             needs: Sequence[bool]) -> Gradients:
    a, b, axis = _halves(args[0], params)
    gate = _gate(b)
    return [np.concatenate([g * gate, g * a * gate * (1.0 - gate)], axis=axis)]


def _glu_magnitude(g: np.ndarray, args: Arrays, out: np.ndarray, params: Params,
                   needs: Sequence[bool]) -> Gradients:
    a, b, axis = _halves(args[0], params)
    gate = _gate(b)
    g = np.abs(g)
    # torch's sigmoid' is σ·(1 - σ), computed from σ (rounding relative to it), not from
    # the product.
    return [np.concatenate([g * gate, g * np.abs(a) * gate], axis=axis)]


def _sympy_glu(args: Sequence[np.ndarray], params: Params) -> np.ndarray:
    import sympy

    a, b, _ = _halves(object_array(args[0]), params)
    return object_array(a) * elementwise_sympy(lambda v: 1 / (1 + sympy.exp(-v)))(b)


GLU = Op(
    name="glu",
    arg_names=("input",),
    group="nn",
    doc="a·sigmoid(b), a and b the halves of `input` along `dim` (its size must be even)",
    min_args=1,
    max_args=1,
    params=_DIM,
    shape=_glu_shape,
    torch=lambda args, p: torch_module().nn.functional.glu(
        args[0], dim=_dim(p, args[0].ndim, "glu")),
    numpy=_glu,
    vjp=_glu_vjp,
    vjp_magnitude=_glu_magnitude,
    sympy=_sympy_glu,
)

SOFTMAX_OPS = [SOFTMAX, LOG_SOFTMAX, SOFTMIN, GLU]
