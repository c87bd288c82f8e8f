"""Matrix products: matmul (``@``, torch.matmul semantics) and linear (x @ W.T + b)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from gradcheck_lab.errors import SpecError
from gradcheck_lab.ops.base import (
    ArgInfo,
    Arrays,
    Gradients,
    Op,
    Params,
    Shape,
    broadcast_shapes,
    check_kernel_cost,
    linear_magnitudes,
    object_array,
    replaced_columns,
    replaced_rows,
    torch_module,
    unbroadcast,
    unbroadcast_probes,
)


def _matmul_shape(args: Sequence[ArgInfo], params: Params) -> Shape:
    a, b = args[0].shape, args[1].shape
    if not a or not b:
        raise SpecError("@ needs tensors of at least 1 dimension on both sides, got a scalar")
    if a[-1] != (b[0] if len(b) == 1 else b[-2]):
        raise SpecError(f"@ cannot multiply shapes {list(a)} and {list(b)}: inner sizes differ")
    if len(a) == 1 and len(b) == 1:
        out: Shape = ()
    elif len(b) == 1:
        out = a[:-1]
    elif len(a) == 1:
        out = b[:-2] + b[-1:]
    else:
        out = (*broadcast_shapes(a[:-2], b[:-2]), a[-2], b[-1])
    # One BLAS call: a multiply-add for every output element and every inner index.
    check_kernel_cost("matmul", f"a product of {list(a)} and {list(b)}",
                      2 * math.prod(out) * a[-1], "use smaller matrices")
    return out


def _matmul_vjp(g: np.ndarray, args: Arrays, out: np.ndarray, params: Params,
                needs: Sequence[bool]) -> Gradients:
    """C = A @ B: dA = dC @ B^T, dB = A^T @ dC, with 1-d operands promoted and batch dims summed."""
    return _matmul_gradients(g, args, needs, ())


def _matmul_probes_vjp(g: np.ndarray, args: Arrays, out: np.ndarray, params: Params,
                       needs: Sequence[bool]) -> Gradients:
    """``_matmul_vjp`` behind a leading probe axis: a batch dim of dC that no operand has,
    kept where the other batch dims are summed."""
    return _matmul_gradients(g, args, needs, (len(g),))


def _matmul_gradients(g: np.ndarray, args: Arrays, needs: Sequence[bool],
                      probes: tuple[int, ...]) -> Gradients:
    a, b = args
    a2 = a[np.newaxis, :] if a.ndim == 1 else a
    b2 = b[:, np.newaxis] if b.ndim == 1 else b
    g2 = np.asarray(g)
    if b.ndim == 1:
        g2 = g2[..., np.newaxis]
    if a.ndim == 1:
        g2 = g2[..., np.newaxis, :]
    summed_to = unbroadcast_probes if probes else unbroadcast
    grads: list[np.ndarray | None] = [None, None]
    if needs[0]:
        grads[0] = summed_to(g2 @ np.swapaxes(b2, -1, -2), a2.shape).reshape(
            (*probes, *a.shape))
    if needs[1]:
        grads[1] = summed_to(np.swapaxes(a2, -1, -2) @ g2, b2.shape).reshape(
            (*probes, *b.shape))
    return grads


def _linear_shape(args: Sequence[ArgInfo], params: Params) -> Shape:
    x, weight = args[0].shape, args[1].shape
    if len(weight) != 2:
        raise SpecError(f"linear(x, W, b): W must be 2-d (out, in), got shape {list(weight)}")
    if not x or x[-1] != weight[1]:
        raise SpecError(
            f"linear(x, W, b): x's last dim must equal W's in-features {weight[1]}, "
            f"got x of shape {list(x)}")
    if len(args) == 3 and args[2].shape != (weight[0],):
        raise SpecError(
            f"linear(x, W, b): b must have shape [{weight[0]}], got {list(args[2].shape)}")
    check_kernel_cost("linear", f"x {list(x)} times W {list(weight)}",
                      2 * math.prod(x) * weight[0], "use smaller matrices")
    return (*x[:-1], weight[0])


def _linear_vjp(g: np.ndarray, args: Arrays, out: np.ndarray, params: Params,
                needs: Sequence[bool]) -> Gradients:
    """y = x W^T + b: dx = dy W, dW = dy^T x (summed over batch), db = sum of dy over batch."""
    x, weight = args[0], args[1]
    g2 = np.reshape(g, (-1, weight.shape[0]))
    grads: list[np.ndarray | None] = [None] * len(args)
    if needs[0]:
        grads[0] = np.reshape(g2 @ weight, x.shape)
    if needs[1]:
        grads[1] = g2.T @ np.reshape(x, (-1, weight.shape[1]))
    if len(args) == 3 and needs[2]:
        grads[2] = g2.sum(axis=0)
    return grads


def _linear_probes_vjp(g: np.ndarray, args: Arrays, out: np.ndarray, params: Params,
                       needs: Sequence[bool]) -> Gradients:
    """``_linear_vjp`` behind a leading probe axis: dx over probes × rows at once, dW and db
    summed over each probe's rows."""
    x, weight = args[0], args[1]
    count = len(g)
    g3 = np.reshape(g, (count, -1, weight.shape[0]))  # (P, rows, out features)
    grads: list[np.ndarray | None] = [None] * len(args)
    if needs[0]:
        grads[0] = np.reshape(g3.reshape(-1, weight.shape[0]) @ weight, (count, *x.shape))
    if needs[1]:
        grads[1] = np.swapaxes(g3, 1, 2) @ np.reshape(x, (-1, weight.shape[1]))
    if len(args) == 3 and needs[2]:
        grads[2] = g3.sum(axis=1)
    return grads


def _linear_numpy(args: Sequence[np.ndarray], params: Params) -> np.ndarray:
    out = np.matmul(args[0], args[1].T)
    return out + args[2] if len(args) == 3 else out


def _matmul_moves(args: Sequence[Any], position: int, indices: Any, values: Any, out: Any,
                  evaluate: Callable[[Sequence[Any]], Any]) -> Any:
    """A @ B of matrices: a moved A[i, k] reaches row i of the product, B[k, j] column j."""
    a, b = args
    if a.dim() != 2 or b.dim() != 2:
        return None
    batch = torch_module().arange(len(indices), device=out.device)
    if position == 0:
        rows = a[indices // a.shape[1]]  # a copy: advanced indexing
        rows[batch, indices % a.shape[1]] = values
        return replaced_rows(out, indices // a.shape[1], evaluate([rows, b]))
    columns = b[:, indices % b.shape[1]]
    columns[indices // b.shape[1], batch] = values
    return replaced_columns(out, indices % b.shape[1], evaluate([a, columns]))


def _linear_moves(args: Sequence[Any], position: int, indices: Any, values: Any, out: Any,
                  evaluate: Callable[[Sequence[Any]], Any]) -> Any:
    """x W^T + b: a moved x[..., r, k] reaches row r of the output (its leading dims
    flattened), a moved W[i, k] or b[i] column i."""
    x, weight = args[0], args[1]
    bias = args[2] if len(args) == 3 else None
    features = weight.shape[1]
    batch = torch_module().arange(len(indices), device=out.device)
    flat_out = out.reshape(-1, weight.shape[0])
    if position == 0:
        rows = x.reshape(-1, features)[indices // features]
        rows[batch, indices % features] = values
        moved = replaced_rows(flat_out, indices // features,
                              evaluate([rows, *args[1:]]))
        return moved.reshape(len(indices), *out.shape)
    outputs = indices // features if position == 1 else indices
    if position == 1:
        weights = weight[outputs]
        weights[batch, indices % features] = values
        biases = None if bias is None else bias[outputs]
    else:
        weights, biases = weight[outputs], values
    columns = evaluate([x, weights] + ([] if biases is None else [biases]))
    moved = replaced_columns(flat_out, outputs, columns.reshape(-1, len(indices)))
    return moved.reshape(len(indices), *out.shape)


def _linear_torch(args: Sequence[object], params: Params) -> object:
    functional = torch_module().nn.functional
    return functional.linear(*args)


MATMUL = Op(
    name="matmul",
    arg_names=("input", "other"),
    group="linalg",
    doc="a @ b: the matrix product with torch.matmul's semantics (batch dims broadcast)",
    min_args=2,
    max_args=2,
    shape=_matmul_shape,
    torch=lambda args, p: torch_module().matmul(args[0], args[1]),
    numpy=lambda args, p: np.asarray(np.matmul(args[0], args[1])),
    vjp=_matmul_vjp,
    vjp_magnitude=linear_magnitudes(_matmul_vjp),
    probes_vjp=_matmul_probes_vjp,
    sympy=lambda args, p: object_array(np.matmul(args[0], args[1])),
    moves=_matmul_moves,
    infix="@",  # and matmul(a, b), as torch.matmul
)

LINEAR = Op(
    name="linear",
    arg_names=("input", "weight", "bias"),
    group="linalg",
    doc="`input @ weight.T + bias`; `bias` optional",
    min_args=2,
    max_args=3,
    shape=_linear_shape,
    torch=_linear_torch,
    numpy=_linear_numpy,
    vjp=_linear_vjp,
    vjp_magnitude=linear_magnitudes(_linear_vjp),
    probes_vjp=_linear_probes_vjp,
    sympy=lambda args, p: object_array(_linear_numpy(args, p)),
    moves=_linear_moves,
)

LINALG = [MATMUL, LINEAR]
