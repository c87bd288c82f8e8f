"""Reductions: sum and mean over all dims or over ``dim=`` (int or tuple), ``keepdim=``;
logsumexp over ``dim=`` (required, as in torch)."""

from __future__ import annotations

from collections.abc import Sequence

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
    linear_magnitudes,
    normalize_dims,
    object_array,
    torch_module,
)

_PARAMS = (Param("dim", "dims"), Param("keepdim", "bool", default=False))


def _axes(params: Params, ndim: int, op: str) -> tuple[int, ...]:
    dims = normalize_dims(params["dim"], ndim, op)  # validates dim=0 / -1 on a 0-d tensor
    if ndim == 0:
        return ()  # a 0-d tensor has no axis: reducing it over dim 0 (as torch allows) is a no-op
    return tuple(range(ndim)) if dims is None else dims


def _reduced_shape(op: str) -> ShapeRule:
    def rule(args: Sequence[ArgInfo], params: Params) -> Shape:
        shape = args[0].shape
        axes = _axes(params, len(shape), op)
        if params["keepdim"]:
            return tuple(1 if i in axes else n for i, n in enumerate(shape))
        return tuple(n for i, n in enumerate(shape) if i not in axes)

    return rule


def _count(shape: Shape, axes: tuple[int, ...]) -> int:
    return int(np.prod([shape[i] for i in axes], dtype=np.int64)) if shape else 1


def _expand_back(g: np.ndarray, shape: Shape, axes: tuple[int, ...]) -> np.ndarray:
    """The VJP of a reduction: broadcast the cotangent back over the reduced axes."""
    kept = tuple(1 if i in axes else n for i, n in enumerate(shape))
    return np.broadcast_to(np.reshape(g, kept), shape).copy()


def _torch_reduce(name: str) -> TorchForm:
    def lower(args: Sequence[object], params: Params) -> object:
        torch = torch_module()
        (a,) = args
        axes = _axes(params, a.ndim, name)
        if a.ndim == 0:
            return getattr(torch, name)(a)
        return getattr(torch, name)(a, dim=axes, keepdim=bool(params["keepdim"]))

    return lower


def _sum_vjp(g: np.ndarray, args: Arrays, out: np.ndarray, params: Params,
             needs: Sequence[bool]) -> Gradients:
    shape = np.shape(args[0])
    return [_expand_back(g, shape, _axes(params, len(shape), "sum"))]


def _mean_vjp(g: np.ndarray, args: Arrays, out: np.ndarray, params: Params,
              needs: Sequence[bool]) -> Gradients:
    shape = np.shape(args[0])
    axes = _axes(params, len(shape), "mean")
    return [_expand_back(g, shape, axes) / _count(shape, axes)]


def _sympy_sum(args: Sequence[np.ndarray], params: Params) -> np.ndarray:
    a = args[0]
    axes = _axes(params, a.ndim, "sum")
    return object_array(np.sum(a, axis=axes, keepdims=bool(params["keepdim"])))


def _sympy_mean(args: Sequence[np.ndarray], params: Params) -> np.ndarray:
    import sympy

    a = args[0]
    axes = _axes(params, a.ndim, "mean")
    total = np.sum(a, axis=axes, keepdims=bool(params["keepdim"]))
    return object_array(total) / sympy.Integer(_count(a.shape, axes))


SUM = Op(
    name="sum",
    arg_names=("input",),
    group="reduction",
    doc="over every dim, or `dim` (an int or a tuple of ints)",
    min_args=1,
    max_args=1,
    params=_PARAMS,
    shape=_reduced_shape("sum"),
    torch=_torch_reduce("sum"),
    numpy=lambda args, p: np.sum(args[0], axis=_axes(p, np.ndim(args[0]), "sum"),
                                 keepdims=bool(p["keepdim"])),
    vjp=_sum_vjp,
    vjp_magnitude=linear_magnitudes(_sum_vjp),
    sympy=_sympy_sum,
)

MEAN = Op(
    name="mean",
    arg_names=("input",),
    group="reduction",
    doc="over every dim, or `dim` (an int or a tuple of ints)",
    min_args=1,
    max_args=1,
    params=_PARAMS,
    shape=_reduced_shape("mean"),
    torch=_torch_reduce("mean"),
    numpy=lambda args, p: np.mean(args[0], axis=_axes(p, np.ndim(args[0]), "mean"),
                                  keepdims=bool(p["keepdim"])),
    vjp=_mean_vjp,
    vjp_magnitude=linear_magnitudes(_mean_vjp),
    sympy=_sympy_mean,
)



def _logsumexp_shape(args: Sequence[ArgInfo], params: Params) -> Shape:
    if params["dim"] is None:
        raise SpecError("logsumexp() needs dim= (an int or a tuple of ints), as torch does")
    return _reduced_shape("logsumexp")(args, params)


def _logsumexp_numpy(args: Sequence[np.ndarray], params: Params) -> np.ndarray:
    """log(sum(exp(x))) shifted by the max, so that exp never overflows (as torch does); a
    slice of all -inf gives -inf, not nan."""
    a = np.asarray(args[0], dtype=np.float64)
    axes = _axes(params, a.ndim, "logsumexp")
    peak = np.max(a, axis=axes, keepdims=True)
    peak = np.where(np.isfinite(peak), peak, 0.0)
    with np.errstate(divide="ignore"):
        total = np.log(np.sum(np.exp(a - peak), axis=axes, keepdims=True)) + peak
    return total if params["keepdim"] or a.ndim == 0 else np.squeeze(total, axis=axes)


def _logsumexp_vjp(g: np.ndarray, args: Arrays, out: np.ndarray, params: Params,
                   needs: Sequence[bool]) -> Gradients:
    """y = logsumexp(x): dx = dy * exp(x - y), the softmax over the reduced axes."""
    shape = np.shape(args[0])
    axes = _axes(params, len(shape), "logsumexp")
    softmax = np.exp(args[0] - _expand_back(out, shape, axes))
    return [_expand_back(g, shape, axes) * softmax]


def _logsumexp_magnitude(g: np.ndarray, args: Arrays, out: np.ndarray, params: Params,
                         needs: Sequence[bool]) -> Gradients:
    # One term per element, |dy| times a softmax weight (positive).
    return [np.abs(grad) for grad in _logsumexp_vjp(np.abs(g), args, out, params, needs)]


def _sympy_logsumexp(args: Sequence[np.ndarray], params: Params) -> np.ndarray:
    import sympy

    a = args[0]
    axes = _axes(params, a.ndim, "logsumexp")
    total = object_array(np.sum(elementwise_sympy(sympy.exp)(a), axis=axes,
                                keepdims=bool(params["keepdim"])))
    return elementwise_sympy(sympy.log)(total)


def _torch_logsumexp(args: Sequence[object], params: Params) -> object:
    torch = torch_module()
    (a,) = args
    axes = _axes(params, a.ndim, "logsumexp")
    return torch.logsumexp(a, dim=axes or 0, keepdim=bool(params["keepdim"]))


LOGSUMEXP = Op(
    name="logsumexp",
    arg_names=("input",),
    group="reduction",
    doc="`dim` is required, as in torch",
    min_args=1,
    max_args=1,
    params=(Param("dim", "dims", required=True), Param("keepdim", "bool", default=False)),
    shape=_logsumexp_shape,
    torch=_torch_logsumexp,
    numpy=_logsumexp_numpy,
    vjp=_logsumexp_vjp,
    vjp_magnitude=_logsumexp_magnitude,
    sympy=_sympy_logsumexp,
)

REDUCTIONS = [SUM, MEAN, LOGSUMEXP]
