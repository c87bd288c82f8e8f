"""Shape ops: reshape, flatten, transpose and select (integer indexing), with torch semantics.

They only move elements, so each VJP moves the cotangent back (reshape it, or swap the same two
axes) and each is linear: the magnitude rule is the VJP on absolute values.
"""

from __future__ import annotations

import math
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
    ParamValue,
    Shape,
    as_ints,
    linear_magnitudes,
    normalize_dim,
    object_array,
    torch_module,
)


def _target_shape(requested: ParamValue, shape: Shape) -> Shape:
    """reshape's ``shape=`` (an int or a tuple, one entry may be -1) resolved against the
    input's shape, as torch does; a SpecError naming the op otherwise."""
    if not isinstance(requested, (int, tuple)) or isinstance(requested, bool):
        raise SpecError("reshape(): shape= needs an int or a tuple of ints, as in shape=(2, -1)")
    sizes = as_ints(requested, "shape")
    total = math.prod(shape)
    spelled = list(sizes)
    if sizes.count(-1) > 1:
        raise SpecError(f"reshape(): shape={spelled} has more than one -1")
    if any(size < -1 for size in sizes):
        raise SpecError(f"reshape(): shape={spelled} has a negative size")
    known = math.prod(size for size in sizes if size != -1)
    if -1 in sizes:
        if known == 0 or total % known:
            raise SpecError(f"reshape(): shape={spelled} is invalid for an input of "
                            f"{total} elements (shape {list(shape)})")
        sizes = tuple(total // known if size == -1 else size for size in sizes)
    elif known != total:
        raise SpecError(f"reshape(): shape={spelled} is invalid for an input of "
                        f"{total} elements (shape {list(shape)})")
    return sizes


def _reshape_shape(args: Sequence[ArgInfo], params: Params) -> Shape:
    return _target_shape(params["shape"], args[0].shape)


def _reshape_vjp(g: np.ndarray, args: Arrays, out: np.ndarray, params: Params,
                 needs: Sequence[bool]) -> Gradients:
    return [np.reshape(g, np.shape(args[0]))]


def _reshape_probes_vjp(g: np.ndarray, args: Arrays, out: np.ndarray, params: Params,
                        needs: Sequence[bool]) -> Gradients:
    """reshape's and flatten's VJP behind a leading probe axis."""
    return [np.reshape(g, (len(g), *np.shape(args[0])))]


RESHAPE = Op(
    name="reshape",
    arg_names=("input",),
    group="structure",
    doc="`shape` may hold one -1",
    min_args=1,
    max_args=1,
    params=(Param("shape", "dims", required=True),),
    shape=_reshape_shape,
    torch=lambda args, p: torch_module().reshape(
        args[0], _target_shape(p["shape"], tuple(args[0].shape))),
    numpy=lambda args, p: np.reshape(args[0], _target_shape(p["shape"], np.shape(args[0]))),
    vjp=_reshape_vjp,
    vjp_magnitude=linear_magnitudes(_reshape_vjp),
    probes_vjp=_reshape_probes_vjp,
    sympy=lambda args, p: object_array(
        np.reshape(args[0], _target_shape(p["shape"], np.shape(args[0])))),
)


def _flatten_span(params: Params, ndim: int) -> tuple[int, int]:
    """start and end dims, made non-negative (a 0-d tensor flattens to shape [1])."""
    start = normalize_dim(_integer(params["start_dim"], "flatten", "start_dim"), ndim, "flatten")
    end = normalize_dim(_integer(params["end_dim"], "flatten", "end_dim"), ndim, "flatten")
    if start > end:
        raise SpecError(f"flatten(): start_dim={params['start_dim']} comes after "
                        f"end_dim={params['end_dim']} for a {ndim}-d tensor")
    return start, end


def _flattened(shape: Shape, params: Params) -> Shape:
    start, end = _flatten_span(params, len(shape))
    if not shape:
        return (1,)
    return (*shape[:start], math.prod(shape[start:end + 1]), *shape[end + 1:])


def _integer(value: ParamValue, op: str, name: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise SpecError(f"{op}(): {name}= needs an integer")
    return value


def _flatten_vjp(g: np.ndarray, args: Arrays, out: np.ndarray, params: Params,
                 needs: Sequence[bool]) -> Gradients:
    return [np.reshape(g, np.shape(args[0]))]


FLATTEN = Op(
    name="flatten",
    arg_names=("input",),
    group="structure",
    doc="dims `start_dim` to `end_dim` into one",
    min_args=1,
    max_args=1,
    params=(Param("start_dim", "int", default=0), Param("end_dim", "int", default=-1)),
    shape=lambda args, p: _flattened(args[0].shape, p),
    torch=lambda args, p: torch_module().flatten(
        args[0], _integer(p["start_dim"], "flatten", "start_dim"),
        _integer(p["end_dim"], "flatten", "end_dim")),
    numpy=lambda args, p: np.reshape(args[0], _flattened(np.shape(args[0]), p)),
    vjp=_flatten_vjp,
    vjp_magnitude=linear_magnitudes(_flatten_vjp),
    probes_vjp=_reshape_probes_vjp,
    sympy=lambda args, p: object_array(np.reshape(args[0], _flattened(np.shape(args[0]), p))),
)


def _transpose_axes(params: Params, ndim: int) -> tuple[int, int]:
    dim0 = normalize_dim(_integer(params["dim0"], "transpose", "dim0"), ndim, "transpose")
    dim1 = normalize_dim(_integer(params["dim1"], "transpose", "dim1"), ndim, "transpose")
    return dim0, dim1


def _swap(array: np.ndarray, params: Params) -> np.ndarray:
    if np.ndim(array) == 0:
        return np.asarray(array)  # torch allows transpose(x, 0, -1) of a 0-d tensor: a no-op
    return np.swapaxes(array, *_transpose_axes(params, np.ndim(array)))


def _transpose_shape(args: Sequence[ArgInfo], params: Params) -> Shape:
    shape = list(args[0].shape)
    dim0, dim1 = _transpose_axes(params, len(shape))
    if shape:
        shape[dim0], shape[dim1] = shape[dim1], shape[dim0]
    return tuple(shape)


def _transpose_vjp(g: np.ndarray, args: Arrays, out: np.ndarray, params: Params,
                   needs: Sequence[bool]) -> Gradients:
    return [_swap(g, params)]  # a swap of two axes is its own inverse


def _transpose_probes_vjp(g: np.ndarray, args: Arrays, out: np.ndarray, params: Params,
                          needs: Sequence[bool]) -> Gradients:
    if np.ndim(args[0]) == 0:
        return [np.asarray(g)]
    dim0, dim1 = _transpose_axes(params, np.ndim(args[0]))
    return [np.swapaxes(g, dim0 + 1, dim1 + 1)]  # behind the probe axis


TRANSPOSE = Op(
    name="transpose",
    arg_names=("input",),
    group="structure",
    doc="swaps `dim0` and `dim1`",
    min_args=1,
    max_args=1,
    params=(Param("dim0", "int", required=True), Param("dim1", "int", required=True)),
    shape=_transpose_shape,
    torch=lambda args, p: torch_module().transpose(
        args[0], *_transpose_axes(p, args[0].ndim)),
    numpy=lambda args, p: _swap(args[0], p),
    vjp=_transpose_vjp,
    probes_vjp=_transpose_probes_vjp,
    vjp_magnitude=linear_magnitudes(_transpose_vjp),
    sympy=lambda args, p: object_array(_swap(args[0], p)),
)

def _selected(params: Params, shape: Shape) -> tuple[int, int]:
    """select's (dim, index), both made non-negative and checked against the shape."""
    if not shape:
        raise SpecError("select(): a 0-d tensor has no dim to select from")
    dim = normalize_dim(_integer(params["dim"], "select", "dim"), len(shape), "select")
    index = _integer(params["index"], "select", "index")
    if not -shape[dim] <= index < shape[dim]:
        raise SpecError(f"select(): index={index} is out of range for dim {dim} of size "
                        f"{shape[dim]}")
    return dim, index % shape[dim]


def _take(array: np.ndarray, params: Params) -> np.ndarray:
    dim, index = _selected(params, np.shape(array))
    return np.asarray(np.take(array, index, axis=dim))


def _select_shape(args: Sequence[ArgInfo], params: Params) -> Shape:
    dim, _ = _selected(params, args[0].shape)
    return args[0].shape[:dim] + args[0].shape[dim + 1:]


def _select_vjp(g: np.ndarray, args: Arrays, out: np.ndarray, params: Params,
                needs: Sequence[bool]) -> Gradients:
    """The cotangent goes back to the selected slice; every other element gets 0."""
    dim, index = _selected(params, np.shape(args[0]))
    grad = np.zeros(np.shape(args[0]), dtype=np.result_type(g, np.float64))
    where: list[slice | int] = [slice(None)] * grad.ndim
    where[dim] = index
    grad[tuple(where)] = g
    return [grad]


def _select_probes_vjp(g: np.ndarray, args: Arrays, out: np.ndarray, params: Params,
                       needs: Sequence[bool]) -> Gradients:
    dim, index = _selected(params, np.shape(args[0]))
    grad = np.zeros((len(g), *np.shape(args[0])), dtype=np.result_type(g, np.float64))
    where: list[slice | int] = [slice(None)] * grad.ndim
    where[dim + 1] = index  # behind the probe axis
    grad[tuple(where)] = g
    return [grad]


SELECT = Op(
    name="select",
    arg_names=("input",),
    group="structure",
    doc=("indexing by an integer along `dim` (torch.select; negative indices count from the "
         "end): `x[:, 2]` is select(x, 1, 2)"),
    min_args=1,
    max_args=1,
    params=(Param("dim", "int", required=True), Param("index", "int", required=True)),
    shape=_select_shape,
    torch=lambda args, p: torch_module().select(args[0], *_selected(p, tuple(args[0].shape))),
    numpy=lambda args, p: _take(args[0], p),
    vjp=_select_vjp,
    probes_vjp=_select_probes_vjp,
    vjp_magnitude=linear_magnitudes(_select_vjp),
    sympy=lambda args, p: object_array(_take(args[0], p)),
)

SHAPE_OPS = [RESHAPE, FLATTEN, TRANSPOSE, SELECT]
