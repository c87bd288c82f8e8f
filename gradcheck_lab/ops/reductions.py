"""Reductions: sum and mean over all dims or over ``dim=`` (int or tuple), ``keepdim=``;
logsumexp over ``dim=`` (required, as in torch)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
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
    VjpRule,
    as_float,
    elementwise_sympy,
    linear_magnitudes,
    normalize_dims,
    object_array,
    torch_module,
)

_PARAMS = (Param("dim", "dims"), Param("keepdim", "bool", default=False))


def reduction_axes(params: Params, ndim: int, op: str) -> tuple[int, ...]:
    dims = normalize_dims(params["dim"], ndim, op)  # validates dim=0 / -1 on a 0-d tensor
    if ndim == 0:
        return ()  # a 0-d tensor has no axis: reducing it over dim 0 (as torch allows) is a no-op
    return tuple(range(ndim)) if dims is None else dims


def reduced_shape(op: str) -> ShapeRule:
    def rule(args: Sequence[ArgInfo], params: Params) -> Shape:
        shape = args[0].shape
        axes = reduction_axes(params, len(shape), op)
        if params["keepdim"]:
            return tuple(1 if i in axes else n for i, n in enumerate(shape))
        return tuple(n for i, n in enumerate(shape) if i not in axes)

    return rule


def reduced_count(shape: Shape, axes: tuple[int, ...]) -> int:
    return int(np.prod([shape[i] for i in axes], dtype=np.int64)) if shape else 1


def expand_back(g: np.ndarray, shape: Shape, axes: tuple[int, ...]) -> np.ndarray:
    """The VJP of a reduction: broadcast the cotangent back over the reduced axes."""
    kept = tuple(1 if i in axes else n for i, n in enumerate(shape))
    return np.broadcast_to(np.reshape(g, kept), shape).copy()


def expand_back_probes(g: np.ndarray, shape: Shape, axes: tuple[int, ...]) -> np.ndarray:
    """``expand_back`` behind a leading probe axis: (probes, *reduced) to (probes, *shape)."""
    kept = tuple(1 if i in axes else n for i, n in enumerate(shape))
    return np.broadcast_to(np.reshape(g, (len(g), *kept)), (len(g), *shape)).copy()


def slices_of(a: np.ndarray, axes: tuple[int, ...]) -> tuple[np.ndarray, Shape]:
    """The reduced axes moved last and flattened: (rows, reduced elements), and the kept
    shape (reduced dims of size 1) to give each row's result back in."""
    kept = tuple(1 if i in axes else n for i, n in enumerate(a.shape))
    moved = np.moveaxis(a, axes, tuple(range(a.ndim - len(axes), a.ndim)))
    return moved.reshape(-1, int(np.prod([a.shape[i] for i in axes], dtype=np.int64))), kept


# The forms of a reduction over ``axes`` (a tuple of distinct dims; () for a 0-d tensor),
# each keeping the reduced dims as size 1: ``reduction`` squeezes them where keepdim=False.
KeptForm = Callable[[Any, tuple[int, ...], Params], Any]
# (cotangent, input, output; both broadcast back to the input's shape), axes, params.
ReducedVjp = Callable[[np.ndarray, np.ndarray, np.ndarray, tuple[int, ...], Params],
                      np.ndarray]


def unslice(rows: np.ndarray, shape: Shape, axes: tuple[int, ...]) -> np.ndarray:
    """The inverse of ``slices_of`` for values of every element: back to ``shape``."""
    kept = [n for i, n in enumerate(shape) if i not in axes]
    moved = rows.reshape((*kept, *(shape[i] for i in axes)))
    return np.moveaxis(moved, tuple(range(len(kept), len(shape))), axes)


def reduction(name: str, *, numpy_form: KeptForm, sympy_form: KeptForm,
              torch_form: Callable[[Any, Any, tuple[int, ...], Params], Any],
              vjp: ReducedVjp, magnitude: ReducedVjp | None = None,
              kinks: ReducedVjp | None = None, kink_where: str = "",
              params: tuple[Param, ...] = _PARAMS, check: Callable[..., None] | None = None,
              exact_limit: Callable[[Sequence[ArgInfo]], str | None] | None = None,
              scales_g: bool = False, doc: str = "") -> Op:
    """A reduction of one tensor over ``dim`` (all dims when None) with ``keepdim``, from
    forms that keep the reduced dims. ``magnitude`` defaults to the VJP of |g| and |x|;
    ``kinks(g, x, out)`` (g unused: ones) marks elements where the reduction has a kink;
    ``check(shape, axes, params)`` refuses what torch would (var over one element).
    ``scales_g``: the VJP multiplies the broadcast g elementwise, and nothing else reads g
    (``g * f(x, out)``), so it takes every probe at once behind a leading axis."""

    def axes_of(a: Any, params: Params) -> tuple[int, ...]:
        return reduction_axes(params, np.ndim(a), name)

    def squeeze(kept: Any, axes: tuple[int, ...], params: Params) -> Any:
        return kept if params["keepdim"] or not axes else kept.squeeze(axes)

    def shape(args: Sequence[ArgInfo], params: Params) -> Shape:
        if check is not None:
            check(args[0].shape, reduction_axes(params, len(args[0].shape), name), params)
        return reduced_shape(name)(args, params)

    def backward(rule: ReducedVjp, spread: Callable[..., np.ndarray] = expand_back) -> VjpRule:
        """``rule`` given g spread back over the reduced axes (by ``expand_back_probes``
        behind a leading probe axis)."""
        def apply(g: np.ndarray, args: Arrays, out: np.ndarray, params: Params,
                  needs: Sequence[bool]) -> Gradients:
            a = np.asarray(args[0])
            axes = axes_of(a, params)
            return [rule(spread(g, a.shape, axes), a, expand_back(out, a.shape, axes),
                         axes, params)]

        return apply

    def default_magnitude(g: np.ndarray, x: np.ndarray, out: np.ndarray,
                          axes: tuple[int, ...], params: Params) -> np.ndarray:
        return np.abs(vjp(np.abs(g), np.abs(x), np.abs(out), axes, params))

    def forward(args: Arrays, params: Params) -> np.ndarray:
        a = as_float(args[0])
        axes = axes_of(a, params)
        with np.errstate(all="ignore"):
            return squeeze(np.asarray(numpy_form(a, axes, params)), axes, params)

    def symbolic(args: Arrays, params: Params) -> np.ndarray:
        axes = axes_of(args[0], params)
        kept = object_array(sympy_form(object_array(args[0]), axes, params))
        return kept if params["keepdim"] or not axes else object_array(
            np.squeeze(kept, axis=axes))

    def lower(args: Sequence[Any], params: Params) -> Any:
        axes = axes_of(args[0], params)
        return squeeze(torch_form(torch_module(), args[0], axes, params), axes, params)

    def kink_mask(args: Sequence[np.ndarray], params: Params) -> np.ndarray:
        a = as_float(args[0])
        axes = axes_of(a, params)
        out = expand_back(np.asarray(numpy_form(a, axes, params)), a.shape, axes)
        assert kinks is not None  # kink_mask is the Op's kinks only where kinks is given
        return kinks(np.ones_like(a), a, out, axes, params)

    return Op(
        name=name, arg_names=("input",), group="reduction", doc=doc, min_args=1, max_args=1,
        params=params, shape=shape, torch=lower, numpy=forward, vjp=backward(vjp),
        vjp_magnitude=backward(magnitude or default_magnitude), sympy=symbolic,
        probes_vjp=backward(vjp, expand_back_probes) if scales_g else None,
        kinks=kink_mask if kinks is not None else None, kink_where=kink_where,
        exact_limit=exact_limit)


def _torch_reduce(name: str) -> TorchForm:
    def lower(args: Sequence[Any], params: Params) -> Any:
        torch = torch_module()
        (a,) = args
        axes = reduction_axes(params, a.ndim, name)
        if a.ndim == 0:
            return getattr(torch, name)(a)
        return getattr(torch, name)(a, dim=axes, keepdim=bool(params["keepdim"]))

    return lower


def _spread(name: str, expand: Callable[[np.ndarray, Shape, tuple[int, ...]], np.ndarray]
            ) -> VjpRule:
    """sum's VJP, g broadcast back over the reduced axes by ``expand`` (``expand_back``, or
    ``expand_back_probes`` behind a leading probe axis); mean's, that over the count."""

    def vjp(g: np.ndarray, args: Arrays, out: np.ndarray, params: Params,
            needs: Sequence[bool]) -> Gradients:
        shape = np.shape(args[0])
        axes = reduction_axes(params, len(shape), name)
        spread = expand(g, shape, axes)
        return [spread / reduced_count(shape, axes) if name == "mean" else spread]

    return vjp


_sum_vjp, _sum_probes_vjp = _spread("sum", expand_back), _spread("sum", expand_back_probes)
_mean_vjp, _mean_probes_vjp = _spread("mean", expand_back), _spread("mean", expand_back_probes)


def _sympy_sum(args: Sequence[np.ndarray], params: Params) -> np.ndarray:
    a = args[0]
    axes = reduction_axes(params, a.ndim, "sum")
    return object_array(np.sum(a, axis=axes, keepdims=bool(params["keepdim"])))


def _sympy_mean(args: Sequence[np.ndarray], params: Params) -> np.ndarray:
    import sympy

    a = args[0]
    axes = reduction_axes(params, a.ndim, "mean")
    total = np.sum(a, axis=axes, keepdims=bool(params["keepdim"]))
    return object_array(total) / sympy.Integer(reduced_count(a.shape, axes))


SUM = Op(
    name="sum",
    arg_names=("input",),
    group="reduction",
    doc="over every dim, or `dim` (an int or a tuple of ints)",
    min_args=1,
    max_args=1,
    params=_PARAMS,
    shape=reduced_shape("sum"),
    torch=_torch_reduce("sum"),
    numpy=lambda args, p: np.sum(args[0], axis=reduction_axes(p, np.ndim(args[0]), "sum"),
                                 keepdims=bool(p["keepdim"])),
    vjp=_sum_vjp,
    vjp_magnitude=linear_magnitudes(_sum_vjp),
    probes_vjp=_sum_probes_vjp,
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
    shape=reduced_shape("mean"),
    torch=_torch_reduce("mean"),
    numpy=lambda args, p: np.mean(args[0], axis=reduction_axes(p, np.ndim(args[0]), "mean"),
                                  keepdims=bool(p["keepdim"])),
    vjp=_mean_vjp,
    vjp_magnitude=linear_magnitudes(_mean_vjp),
    probes_vjp=_mean_probes_vjp,
    sympy=_sympy_mean,
)



def _product_of_the_others(x: np.ndarray, axes: tuple[int, ...]) -> np.ndarray:
    """For each element, the product of the other elements of its slice: the derivative of
    prod, exact where elements are 0 (prod / x is not)."""
    rows, _ = slices_of(x, axes)
    ones = np.ones((rows.shape[0], 1))
    before = np.cumprod(np.concatenate([ones, rows[:, :-1]], axis=1), axis=1)
    after = np.cumprod(np.concatenate([ones, rows[:, :0:-1]], axis=1), axis=1)[:, ::-1]
    return unslice(before * after, x.shape, axes)


def _prod_torch(torch: Any, a: Any, axes: tuple[int, ...], params: Params) -> Any:
    for axis in sorted(axes, reverse=True):  # torch.prod takes one dim at a time
        a = a.prod(dim=axis, keepdim=True)
    return a


PROD = reduction(
    "prod",
    numpy_form=lambda a, axes, p: np.prod(a, axis=axes, keepdims=True),
    sympy_form=lambda a, axes, p: np.prod(a, axis=axes, keepdims=True),
    torch_form=_prod_torch,
    vjp=lambda g, x, out, axes, p: g * _product_of_the_others(x, axes),
    doc="over every dim, or `dim` (an int, or a tuple of ints beyond torch)")


def _logsumexp_shape(args: Sequence[ArgInfo], params: Params) -> Shape:
    if params["dim"] is None:
        raise SpecError("logsumexp() needs dim= (an int or a tuple of ints), as torch does")
    return reduced_shape("logsumexp")(args, params)


def _logsumexp_numpy(args: Sequence[np.ndarray], params: Params) -> np.ndarray:
    """log(sum(exp(x))) shifted by the max, so that exp never overflows (as torch does); a
    slice of all -inf gives -inf, not nan."""
    a = as_float(args[0])
    axes = reduction_axes(params, a.ndim, "logsumexp")
    peak = np.max(a, axis=axes, keepdims=True)
    peak = np.where(np.isfinite(peak), peak, 0.0)
    with np.errstate(divide="ignore"):
        total = np.log(np.sum(np.exp(a - peak), axis=axes, keepdims=True)) + peak
    return total if params["keepdim"] or a.ndim == 0 else np.squeeze(total, axis=axes)


def _logsumexp_vjp(g: np.ndarray, args: Arrays, out: np.ndarray, params: Params,
                   needs: Sequence[bool]) -> Gradients:
    """y = logsumexp(x): dx = dy * exp(x - y), the softmax over the reduced axes."""
    shape = np.shape(args[0])
    axes = reduction_axes(params, len(shape), "logsumexp")
    softmax = np.exp(args[0] - expand_back(out, shape, axes))
    return [expand_back(g, shape, axes) * softmax]


def _logsumexp_magnitude(g: np.ndarray, args: Arrays, out: np.ndarray, params: Params,
                         needs: Sequence[bool]) -> Gradients:
    # One term per element, |dy| times a softmax weight (positive).
    return [None if grad is None else np.abs(grad)
            for grad in _logsumexp_vjp(np.abs(g), args, out, params, needs)]


def _sympy_logsumexp(args: Sequence[np.ndarray], params: Params) -> np.ndarray:
    import sympy

    a = args[0]
    axes = reduction_axes(params, a.ndim, "logsumexp")
    total = object_array(np.sum(elementwise_sympy(sympy.exp)(a), axis=axes,
                                keepdims=bool(params["keepdim"])))
    return elementwise_sympy(sympy.log)(total)


def _torch_logsumexp(args: Sequence[Any], params: Params) -> Any:
    torch = torch_module()
    (a,) = args
    axes = reduction_axes(params, a.ndim, "logsumexp")
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

REDUCTIONS = [SUM, MEAN, PROD, LOGSUMEXP]
