"""Neural-network ops: cross_entropy, mse_loss and layer_norm, with torch semantics.

Closed-form VJPs (the rule sweep) and sympy forms over object arrays (the exact oracle and the
tests that confirm the closed forms agree with sympy's differentiation).
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction

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
    elementwise_sympy,
    object_array,
    torch_module,
)
from gradcheck_lab.ops.softmax import log_softmax, softmax, sympy_log_softmax

# cross_entropy(logits, target), mean reduction. logits (N, C) or (C,); target either class
# indices (an integer tensor of shape (N,) or ()) or probabilities (real, logits' shape).


def _cross_entropy_shape(args: Sequence[ArgInfo], params: Params) -> Shape:
    logits, target = args
    if len(logits.shape) not in (1, 2):
        raise SpecError(
            f"cross_entropy: logits must be (N, C) or (C,), got shape {list(logits.shape)}")
    indices_shape = logits.shape[:-1]
    if target.is_integer and target.shape != indices_shape:
        raise SpecError(
            f"cross_entropy: class-index target must have shape {list(indices_shape)} for "
            f"logits of shape {list(logits.shape)}, got {list(target.shape)}")
    if not target.is_integer and target.shape != logits.shape:
        raise SpecError(
            f"cross_entropy: target must be class indices (an integer tensor of shape "
            f"{list(indices_shape)}; write {{value: [...], dtype: int64}} or init: randint) "
            f"or probabilities of the logits' shape {list(logits.shape)}; "
            f"got a real tensor of shape {list(target.shape)}")
    return ()


def _batch_size(logits: np.ndarray) -> int:
    return logits.shape[0] if logits.ndim == 2 else 1


def _check_classes(target: np.ndarray, classes: int) -> np.ndarray:
    indices = np.asarray(target).astype(np.int64)
    bad = indices[(indices < 0) | (indices >= classes)]
    if bad.size:
        raise SpecError(
            f"cross_entropy: target class {int(bad.flat[0])} is outside [0, {classes})")
    return indices


def _is_index_target(target: np.ndarray) -> bool:
    return np.issubdtype(np.asarray(target).dtype, np.integer)


def _cross_entropy_numpy(args: Sequence[np.ndarray], params: Params) -> np.ndarray:
    logits, target = args
    log_probs = log_softmax(logits, -1)
    if _is_index_target(target):
        indices = _check_classes(target, logits.shape[-1])
        picked = np.take_along_axis(log_probs, indices[..., np.newaxis], axis=-1)
        return np.asarray(-np.mean(picked))
    return np.asarray(-np.sum(target * log_probs) / _batch_size(logits))


def _cross_entropy_vjp(g: np.ndarray, args: Arrays, out: np.ndarray, params: Params,
                       needs: Sequence[bool]) -> Gradients:
    """d/dz = (softmax(z) * sum(t) - t) / N (t one-hot for indices); d/dt = -log_softmax / N."""
    logits, target = args
    n = _batch_size(logits)
    probs = softmax(logits, -1)
    if _is_index_target(target):
        onehot = np.zeros_like(logits)
        indices = _check_classes(target, logits.shape[-1])
        np.put_along_axis(onehot, indices[..., np.newaxis], 1.0, axis=-1)
        return [g * (probs - onehot) / n, None]
    grads: list[np.ndarray | None] = [None, None]
    if needs[0]:
        grads[0] = g * (probs * np.sum(target, axis=-1, keepdims=True) - target) / n
    if needs[1]:
        grads[1] = -g * log_softmax(logits, -1) / n
    return grads


def _cross_entropy_magnitude(g: np.ndarray, args: Arrays, out: np.ndarray, params: Params,
                             needs: Sequence[bool]) -> Gradients:
    logits, target = args
    n = _batch_size(logits)
    g = np.abs(g)
    probs = softmax(logits, -1)
    if _is_index_target(target):
        return [g * (probs + 1.0) / n, None]
    grads: list[np.ndarray | None] = [None, None]
    if needs[0]:
        grads[0] = g * (probs * np.sum(np.abs(target), axis=-1, keepdims=True)
                        + np.abs(target)) / n
    if needs[1]:
        grads[1] = g * np.abs(log_softmax(logits, -1)) / n
    return grads


def _cross_entropy_sympy(args: Sequence[np.ndarray], params: Params) -> np.ndarray:
    import sympy

    logits, target = args
    log_probs = sympy_log_softmax(logits, -1)
    n = sympy.Integer(_batch_size(logits))
    if _is_index_target(target):
        indices = _check_classes(target, logits.shape[-1])
        picked = np.take_along_axis(log_probs, indices[..., np.newaxis], axis=-1)
        return object_array(-np.sum(picked) / n)
    return object_array(-np.sum(target * log_probs) / n)


def _cross_entropy_torch(args: Sequence[object], params: Params) -> object:
    torch = torch_module()
    logits, target = args
    if not target.is_floating_point():
        target = target.long()
    return torch.nn.functional.cross_entropy(logits, target)


CROSS_ENTROPY = Op(
    name="cross_entropy",
    arg_names=("input", "target"),
    group="loss",
    doc=("mean reduction; `input` `(N, C)` or `(C,)`; `target` class indices (int64) or "
         "probabilities"),
    min_args=2,
    max_args=2,
    shape=_cross_entropy_shape,
    torch=_cross_entropy_torch,
    numpy=_cross_entropy_numpy,
    vjp=_cross_entropy_vjp,
    vjp_magnitude=_cross_entropy_magnitude,
    sympy=_cross_entropy_sympy,
    integer_args=frozenset({1}),
)


def _mse_shape(args: Sequence[ArgInfo], params: Params) -> Shape:
    if args[0].shape != args[1].shape:
        raise SpecError(
            f"mse_loss(pred, target) needs equal shapes, got {list(args[0].shape)} and "
            f"{list(args[1].shape)} (torch would broadcast them, usually a bug)")
    return ()


def _mse_vjp(g: np.ndarray, args: Arrays, out: np.ndarray, params: Params,
             needs: Sequence[bool]) -> Gradients:
    """L = mean((p - t)^2): dp = 2 (p - t) / n, dt = -dp."""
    pred, target = args
    local = 2.0 * (pred - target) / max(pred.size, 1) * g
    return [local if needs[0] else None, -local if needs[1] else None]


def _mse_magnitude(g: np.ndarray, args: Arrays, out: np.ndarray, params: Params,
                   needs: Sequence[bool]) -> Gradients:
    pred, target = args
    local = 2.0 * (np.abs(pred) + np.abs(target)) / max(pred.size, 1) * np.abs(g)
    return [local if needs[0] else None, local if needs[1] else None]


MSE_LOSS = Op(
    name="mse_loss",
    arg_names=("input", "target"),
    group="loss",
    doc="`mean((input - target)**2)`; shapes must be equal",
    min_args=2,
    max_args=2,
    shape=_mse_shape,
    torch=lambda args, p: torch_module().nn.functional.mse_loss(args[0], args[1]),
    numpy=lambda args, p: np.asarray(np.mean((args[0] - args[1]) ** 2)),
    vjp=_mse_vjp,
    vjp_magnitude=_mse_magnitude,
    sympy=lambda args, p: object_array(np.sum((args[0] - args[1]) ** 2) / max(args[0].size, 1)),
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
    normalized = (requested,) if isinstance(requested, int) else tuple(requested)
    if not normalized or len(normalized) > len(shape) or shape[-len(normalized):] != normalized:
        raise SpecError(
            f"layer_norm(): normalized_shape={list(normalized)} must be the trailing dims of x, "
            f"whose shape is {list(shape)}")
    return tuple(range(len(shape) - len(normalized), len(shape)))


def _layer_norm_shape(args: Sequence[ArgInfo], params: Params) -> Shape:
    shape = args[0].shape
    axes = _normalized_axes(shape, params)
    normalized = tuple(shape[i] for i in axes)
    if not params["eps"] > 0:
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
    xhat, rstd, axes = _layer_norm_parts(args[0], params)
    leading = tuple(range(np.ndim(args[0]) - len(axes)))
    grads: list[np.ndarray | None] = [None] * len(args)
    if needs[0]:
        d = g * args[1] if len(args) > 1 else g
        grads[0] = rstd * (d - np.mean(d, axis=axes, keepdims=True)
                           - xhat * np.mean(d * xhat, axis=axes, keepdims=True))
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
    eps = Fraction(params["eps"])  # the float64 eps that torch and numpy add, exactly
    centered = x - object_array(np.sum(x, axis=axes, keepdims=True)) / count
    variance = object_array(np.sum(centered**2, axis=axes, keepdims=True)) / count
    rstd = elementwise_sympy(
        lambda v: 1 / sympy.sqrt(v + sympy.Rational(eps.numerator, eps.denominator)))(variance)
    out = centered * rstd
    if len(args) > 1:
        out = out * args[1]
    return object_array(out + args[2] if len(args) > 2 else out)


def _layer_norm_torch(args: Sequence[object], params: Params) -> object:
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
    sympy=_layer_norm_sympy,
)

NN = [CROSS_ENTROPY, MSE_LOSS, LAYER_NORM]
