"""The shape of one op of the case language, and helpers shared by the op modules.

An op carries everything about itself in one record: how it is spelled, its shape rule, its
torch lowering, its numpy forward and vector-Jacobian product (the symbolic oracle's rule
sweep), and its sympy form over object arrays (the exact oracle, and the tests that confirm
the closed-form rules). torch and sympy are imported lazily, inside the functions that use them.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from gradcheck_lab.errors import SpecError

Shape = tuple[int, ...]
ParamValue = int | bool | tuple[int, ...] | None
Params = dict[str, ParamValue]
Arrays = Sequence[np.ndarray]
Gradients = list[np.ndarray | None]
ShapeRule = Callable[[Sequence["ArgInfo"], Params], Shape]
# (cotangent of the output, arguments, output, params, which arguments need a gradient)
VjpRule = Callable[[np.ndarray, Arrays, np.ndarray, Params, Sequence[bool]], Gradients]
TorchForm = Callable[[Sequence[Any], Params], Any]


@dataclass(frozen=True)
class Param:
    """A static keyword of an op: ``kind`` is "int", "dims" (int or tuple of ints) or "bool"."""

    name: str
    kind: str
    default: ParamValue = None
    required: bool = False


@dataclass(frozen=True)
class ArgInfo:
    """What the shape rule knows of an argument."""

    shape: Shape
    is_integer: bool
    is_constant: bool = False


@dataclass(frozen=True)
class Op:
    """One op: spelling, shape rule, and its forms for torch, numpy and sympy."""

    name: str
    min_args: int
    max_args: int
    shape: ShapeRule
    torch: TorchForm
    numpy: Callable[[Arrays, Params], np.ndarray]
    vjp: VjpRule
    sympy: Callable[[Arrays, Params], np.ndarray]
    # Same signature as vjp, but sums |terms| where vjp sums terms: the size of what rounding
    # acts on in a backward pass (softmax - onehot is 1e-17 but is computed from numbers near
    # 1). Tolerances scale with it; see ``linear_magnitudes`` for ops linear in each argument.
    vjp_magnitude: VjpRule
    params: tuple[Param, ...] = ()
    # Argument positions that may be integer tensors (class targets); all others must be real.
    integer_args: frozenset[int] = frozenset()
    # Positions that never get a gradient (integer targets).
    nondifferentiable_args: frozenset[int] = frozenset()
    # Where the op is not differentiable: a mask over its first argument, or None.
    kinks: Callable[[Sequence[np.ndarray], Params], np.ndarray] | None = None
    kink_where: str = "at 0"  # the kink in words, after the op's name: "relu at 0"
    callable: bool = True  # False for operators (add, ...) that have no function spelling
    infix: str | None = None
    doc: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def linear_magnitudes(vjp: VjpRule) -> VjpRule:
    """The magnitude rule of an op whose VJP is a sum of products of the cotangent and the
    arguments (sum, mean, matmul, linear): the same VJP on absolute values."""

    def magnitudes(g: np.ndarray, args: Arrays, out: np.ndarray, params: Params,
                   needs: Sequence[bool]) -> Gradients:
        grads = vjp(np.abs(g), [np.abs(a) for a in args], np.abs(out), params, needs)
        return [None if grad is None else np.abs(grad) for grad in grads]

    return magnitudes


def suggest(name: str, choices: Sequence[str]) -> str:
    """' (did you mean 'x'?)' when a close match exists, else ''."""
    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def torch_module() -> Any:
    import torch

    return torch


def broadcast_shapes(*shapes: Shape) -> Shape:
    """torch/numpy broadcasting, with an error that names both shapes."""
    ndim = max(len(s) for s in shapes)
    result = []
    for axis in range(ndim):
        sizes = {s[axis - ndim + len(s)] for s in shapes if axis - ndim + len(s) >= 0}
        sizes.discard(1)
        if len(sizes) > 1:
            listed = " and ".join(str(list(s)) for s in shapes)
            raise SpecError(f"shapes {listed} cannot be broadcast together")
        result.append(sizes.pop() if sizes else 1)
    return tuple(result)


def unbroadcast(gradient: np.ndarray, shape: Shape) -> np.ndarray:
    """Sum a broadcast gradient back down to ``shape`` (the VJP of broadcasting)."""
    extra = gradient.ndim - len(shape)
    if extra > 0:
        gradient = gradient.sum(axis=tuple(range(extra)))
    axes = tuple(i for i, size in enumerate(shape) if size == 1 and gradient.shape[i] != 1)
    if axes:
        gradient = gradient.sum(axis=axes, keepdims=True)
    return gradient.reshape(shape)


def normalize_dim(dim: int, ndim: int, op: str) -> int:
    """A dim in [-ndim, ndim) made non-negative; 0-d tensors accept dim 0 and -1 as torch does."""
    size = max(ndim, 1)
    if not -size <= dim < size:
        raise SpecError(f"{op}(): dim={dim} is out of range for a {ndim}-d tensor")
    return dim % size


def normalize_dims(dim: ParamValue, ndim: int, op: str) -> tuple[int, ...] | None:
    """None (all dims) or a sorted tuple of distinct non-negative dims."""
    if dim is None:
        return None
    if isinstance(dim, bool):
        raise SpecError(f"{op}(): dim= needs an integer")
    dims = (dim,) if isinstance(dim, int) else tuple(dim)
    if not dims:
        raise SpecError(f"{op}(): dim=() is ambiguous; leave dim out to reduce over all dims")
    normalized = tuple(normalize_dim(d, ndim, op) for d in dims)
    if len(set(normalized)) != len(normalized):
        raise SpecError(f"{op}(): dim={dim} repeats a dim")
    return tuple(sorted(normalized))


def object_array(values: Any) -> np.ndarray:
    """A numpy object array (keeps sympy expressions and Fractions intact)."""
    array = np.empty(np.shape(values), dtype=object)
    array[...] = values
    return array


def elementwise_sympy(function: Callable[..., Any]) -> Callable[..., np.ndarray]:
    """Apply a scalar sympy function over object arrays, with broadcasting."""
    vectorized = np.vectorize(function, otypes=[object])

    def apply(*arrays: np.ndarray) -> np.ndarray:
        return object_array(vectorized(*arrays))

    return apply
