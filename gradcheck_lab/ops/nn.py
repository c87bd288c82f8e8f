"""Neural-network ops: mse_loss and layer_norm, with torch semantics.

Closed-form VJPs (the rule sweep) and sympy forms over object arrays (the exact oracle and the
tests that confirm the closed forms agree with sympy's differentiation).
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction
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
    as_ints,
    elementwise_sympy,
    float_param,
    object_array,
    torch_module,
)

_MSE_REDUCTION = Param("reduction", "str", default="mean", choices=("none", "mean", "sum"))


def _mse_shape(args: Sequence[ArgInfo], params: Params) -> Shape:
    if args[0].shape != args[1].shape:
        raise SpecError(
            f"mse_loss(pred, target) needs equal shapes, got {list(args[0].shape)} and "
            f"{list(args[1].shape)} (torch would broadcast them, usually a bug)")
    return args[0].shape if params["reduction"] == "none" else ()


def _mse_scale(size: int, params: Params) -> float:
    """The factor each squared difference carries: 1/n for "mean", 1 otherwise."""
    return 1.0 / max(size, 1) if params["reduction"] == "mean" else 1.0


def _mse_vjp(g: np.ndarray, args: Arrays, out: np.ndarray, params: Params,
             needs: Sequence[bool]) -> Gradients:
    """L = s * sum((p - t)^2) (or elementwise for "none"): dp = 2 s (p - t) g, dt = -dp."""
    pred, target = args
    local = 2.0 * _mse_scale(np.size(pred), params) * (pred - target) * g
    return [local if needs[0] else None, -local if needs[1] else None]


def _mse_magnitude(g: np.ndarray, args: Arrays, out: np.ndarray, params: Params,
                   needs: Sequence[bool]) -> Gradients:
    pred, target = args
    local = 2.0 * _mse_scale(np.size(pred), params) * (np.abs(pred) + np.abs(target)) * np.abs(g)
    return [local if needs[0] else None, local if needs[1] else None]


def _mse_numpy(args: Sequence[np.ndarray], params: Params) -> np.ndarray:
    squared = (args[0] - args[1]) ** 2
    if params["reduction"] == "none":
        return squared
    return np.asarray(np.sum(squared) * _mse_scale(np.size(squared), params))


def _mse_sympy(args: Sequence[np.ndarray], params: Params) -> np.ndarray:
    squared = (args[0] - args[1]) ** 2
    if params["reduction"] == "none":
        return squared
    total = np.sum(squared)
    return object_array(total / max(np.size(squared), 1) if params["reduction"] == "mean"
                        else total)


MSE_LOSS = Op(
    name="mse_loss",
    arg_names=("input", "target"),
    group="loss",
    doc="`mean((input - target)**2)`; shapes must be equal; `reduction` as torch",
    min_args=2,
    max_args=2,
    params=(_MSE_REDUCTION,),
    shape=_mse_shape,
    torch=lambda args, p: torch_module().nn.functional.mse_loss(
        args[0], args[1], reduction=str(p["reduction"])),
    numpy=_mse_numpy,
    vjp=_mse_vjp,
    vjp_magnitude=_mse_magnitude,
    sympy=_mse_sympy,
)


# layer_norm(x, weight?, bias?, normalized_shape=None, eps=1e-5): torch.nn.functional.layer_norm
# over the trailing dims ``normalized_shape`` (default: the last dim alone).
LAYER_NORM_EPS = 1e-5  # torch's default


def _normalized_axes(shape: Shape, params: Params) -> tuple[int, ...]:
    """The trailing axes layer_norm normalizes over, checked against the input's shape."""
    requested = params["normalized_shape"]
    if not shape:
        raise SpecError("layer_norm(): x must have at least 1 dimension, got a scalar")
    if requested is None:
        requested = shape[-1:]
    if isinstance(requested, bool):
        raise SpecError("layer_norm(): normalized_shape= needs an int or a tuple of ints")
    normalized = as_ints(requested, "normalized_shape")
    if not normalized or len(normalized) > len(shape) or shape[-len(normalized):] != normalized:
        raise SpecError(
            f"layer_norm(): normalized_shape={list(normalized)} must be the trailing dims of x, "
            f"whose shape is {list(shape)}")
    return tuple(range(len(shape) - len(normalized), len(shape)))


def _layer_norm_shape(args: Sequence[ArgInfo], params: Params) -> Shape:
    shape = args[0].shape
    axes = _normalized_axes(shape, params)
    normalized = tuple(shape[i] for i in axes)
    if not float_param(params, "eps") > 0:
        raise SpecError(f"layer_norm(): eps={params['eps']} must be positive (it keeps "
                        "1/sqrt(var + eps) finite)")
    for position, name in ((1, "weight"), (2, "bias")):
        if len(args) > position and args[position].shape != normalized:
            raise SpecError(
                f"layer_norm(x, weight, bias): {name} must have the normalized shape "
                f"{list(normalized)}, got {list(args[position].shape)}")
    return shape


def _layer_norm_parts(x: np.ndarray, params: Params) -> tuple[np.ndarray, np.ndarray,
                                                              tuple[int, ...]]:
    """(x - mean) / sqrt(var + eps) and 1 / sqrt(var + eps) (var biased, as torch's)."""
    axes = _normalized_axes(np.shape(x), params)
    centered = x - np.mean(x, axis=axes, keepdims=True)
    rstd = 1.0 / np.sqrt(np.mean(centered**2, axis=axes, keepdims=True) + params["eps"])
    return centered * rstd, rstd, axes


def _layer_norm_numpy(args: Sequence[np.ndarray], params: Params) -> np.ndarray:
    normalized, _, _ = _layer_norm_parts(args[0], params)
    if len(args) > 1:
        normalized = normalized * args[1]
    return normalized + args[2] if len(args) > 2 else normalized


def _layer_norm_vjp(g: np.ndarray, args: Arrays, out: np.ndarray, params: Params,
                    needs: Sequence[bool]) -> Gradients:
    """y = x̂ w + b, x̂ = (x - mean) r, r = 1/sqrt(var + eps): with d = dy w,
    dx = r (d - mean(d) - x̂ mean(d x̂)); dw = sum of dy x̂ over the leading dims; db = sum dy."""
    return _layer_norm_gradients(g, args, params, needs, 0)


def _layer_norm_probes_vjp(g: np.ndarray, args: Arrays, out: np.ndarray, params: Params,
                           needs: Sequence[bool]) -> Gradients:
    return _layer_norm_gradients(g, args, params, needs, 1)


def _layer_norm_gradients(g: np.ndarray, args: Arrays, params: Params, needs: Sequence[bool],
                          probe_axes: int) -> Gradients:
    """``_layer_norm_vjp``, with ``probe_axes`` (0 or 1) leading axes on g kept apart."""
    xhat, rstd, axes = _layer_norm_parts(args[0], params)
    ndim = np.ndim(args[0])
    trailing = tuple(axis - ndim for axis in axes)  # the normalized dims, counted from the end
    leading = tuple(range(probe_axes, probe_axes + ndim - len(axes)))
    grads: list[np.ndarray | None] = [None] * len(args)
    if needs[0]:
        d = g * args[1] if len(args) > 1 else g
        grads[0] = rstd * (d - np.mean(d, axis=trailing, keepdims=True)
                           - xhat * np.mean(d * xhat, axis=trailing, keepdims=True))
    if len(args) > 1 and needs[1]:
        grads[1] = np.sum(g * xhat, axis=leading)
    if len(args) > 2 and needs[2]:
        grads[2] = np.sum(g, axis=leading)
    return grads


def _layer_norm_magnitude(g: np.ndarray, args: Arrays, out: np.ndarray, params: Params,
                          needs: Sequence[bool]) -> Gradients:
    # The three terms of dx each taken in absolute value (a triangle-inequality bound on
    # |dy| @ |J|); dw and db sum one product per row.
    xhat, rstd, axes = _layer_norm_parts(args[0], params)
    leading = tuple(range(np.ndim(args[0]) - len(axes)))
    g = np.abs(g)
    grads: list[np.ndarray | None] = [None] * len(args)
    if needs[0]:
        d = g * np.abs(args[1]) if len(args) > 1 else g
        grads[0] = rstd * (d + np.mean(d, axis=axes, keepdims=True)
                           + np.abs(xhat) * np.mean(d * np.abs(xhat), axis=axes, keepdims=True))
    if len(args) > 1 and needs[1]:
        grads[1] = np.sum(g * np.abs(xhat), axis=leading)
    if len(args) > 2 and needs[2]:
        grads[2] = np.sum(g, axis=leading)
    return grads


def _layer_norm_sympy(args: Sequence[np.ndarray], params: Params) -> np.ndarray:
    import sympy

    x = args[0]
    axes = _normalized_axes(np.shape(x), params)
    count = sympy.Integer(int(np.prod([x.shape[i] for i in axes])))
    eps = Fraction(float_param(params, "eps"))  # the float64 eps that torch and numpy add, exactly
    centered = x - object_array(np.sum(x, axis=axes, keepdims=True)) / count
    variance = object_array(np.sum(centered**2, axis=axes, keepdims=True)) / count
    rstd = elementwise_sympy(
        lambda v: 1 / sympy.sqrt(v + sympy.Rational(eps.numerator, eps.denominator)))(variance)
    out = centered * rstd
    if len(args) > 1:
        out = out * args[1]
    return object_array(out + args[2] if len(args) > 2 else out)


def _layer_norm_torch(args: Sequence[Any], params: Params) -> Any:
    x = args[0]
    axes = _normalized_axes(tuple(x.shape), params)
    return torch_module().nn.functional.layer_norm(
        x, [x.shape[i] for i in axes], *args[1:], eps=params["eps"])


LAYER_NORM = Op(
    name="layer_norm",
    arg_names=("input", "weight", "bias"),
    positional=("input", "normalized_shape", "weight", "bias", "eps"),
    group="nn",
    doc=("over the last dim, or the trailing dims `normalized_shape`; `weight`, `bias` "
         "optional"),
    min_args=1,
    max_args=3,
    params=(Param("normalized_shape", "dims"),
            Param("eps", "float", default=LAYER_NORM_EPS)),
    shape=_layer_norm_shape,
    torch=_layer_norm_torch,
    numpy=_layer_norm_numpy,
    vjp=_layer_norm_vjp,
    vjp_magnitude=_layer_norm_magnitude,
    probes_vjp=_layer_norm_probes_vjp,
    sympy=_layer_norm_sympy,
)

NN = [MSE_LOSS, LAYER_NORM]
