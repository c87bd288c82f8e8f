"""Convolution and pooling: conv2d and max_pool2d, with torch semantics.

Inputs are (N, C, H, W) or unbatched (C, H, W), as torch accepts. ``stride``, ``padding`` and
``kernel_size`` take an int or a pair (height, width). The numpy forms work on strided views of
the windows (im2col without the copy) and ``tensordot``; the sympy forms are explicit loops over
object arrays, written independently of the numpy ones so that the tests compare two codings.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

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
    linear_magnitudes,
    object_array,
    torch_module,
)

Pair = tuple[int, int]
# The numpy forms materialize the zero-padded input and the windows (N·oH·oW·C·kH·kW values for
# conv2d): refuse settings that would make either larger than the loader lets any node be, at
# load time, rather than run out of memory later (torch itself never materializes them).
MAX_WORK_ELEMENTS = 100_000_000


def _pair(value: ParamValue, op: str, name: str, minimum: int) -> Pair:
    """An int or a pair of ints, each at least ``minimum``."""
    if isinstance(value, bool) or value is None:
        raise SpecError(f"{op}(): {name}= needs an int or a pair of ints")
    pair = (value, value) if isinstance(value, int) else tuple(value)
    if len(pair) != 2:
        raise SpecError(f"{op}(): {name}={list(pair)} needs one int or two (height, width)")
    if min(pair) < minimum:
        raise SpecError(f"{op}(): {name}= must be at least {minimum}, got {value}")
    return pair[0], pair[1]


def _spatial(shape: Shape, op: str, what: str) -> None:
    if len(shape) not in (3, 4):
        raise SpecError(f"{op}(): {what} must be (N, C, H, W) or (C, H, W), got shape "
                        f"{list(shape)}")


def _out_size(size: int, kernel: int, stride: int, padding: int, op: str, axis: str) -> int:
    if size + 2 * padding < kernel:
        padded = f" padded to {size + 2 * padding}" if padding else ""
        raise SpecError(f"{op}(): the kernel's {axis} {kernel} is larger than the input's "
                        f"{axis} {size}{padded}")
    return (size + 2 * padding - kernel) // stride + 1


def _check_work(op: str, what: str, elements: int) -> None:
    if elements > MAX_WORK_ELEMENTS:
        raise SpecError(f"{op}(): {what} would hold {elements} elements (limit "
                        f"{MAX_WORK_ELEMENTS}); use a smaller kernel, a larger stride or less "
                        "padding")


def _batched(x: np.ndarray) -> np.ndarray:
    """(C, H, W) as a batch of one, so that one code path serves both layouts."""
    return x[np.newaxis] if np.ndim(x) == 3 else x


def _windows(x: np.ndarray, kernel: Pair, stride: Pair) -> np.ndarray:
    """(..., H, W) -> (..., out H, out W, kH, kW): a strided view, no copy."""
    view = sliding_window_view(x, kernel, axis=(-2, -1))
    return view[..., ::stride[0], ::stride[1], :, :]


# --- conv2d ------------------------------------------------------------------------------------


def _conv_settings(params: Params) -> tuple[Pair, Pair]:
    return (_pair(params["stride"], "conv2d", "stride", 1),
            _pair(params["padding"], "conv2d", "padding", 0))


def _conv_shape(args: Sequence[ArgInfo], params: Params) -> Shape:
    x, weight = args[0].shape, args[1].shape
    _spatial(x, "conv2d", "x")
    if len(weight) != 4:
        raise SpecError(f"conv2d(x, w, b): w must be 4-d (out channels, in channels, kH, kW), "
                        f"got shape {list(weight)}")
    if x[-3] != weight[1]:
        raise SpecError(f"conv2d(x, w, b): x has {x[-3]} channels (dim {len(x) - 3} of shape "
                        f"{list(x)}) but w expects {weight[1]} (shape {list(weight)})")
    if len(args) == 3 and args[2].shape != (weight[0],):
        raise SpecError(f"conv2d(x, w, b): b must have shape [{weight[0]}], got "
                        f"{list(args[2].shape)}")
    stride, padding = _conv_settings(params)
    height = _out_size(x[-2], weight[2], stride[0], padding[0], "conv2d", "height")
    width = _out_size(x[-1], weight[3], stride[1], padding[1], "conv2d", "width")
    lead = math.prod(x[:-2])  # batch × channels
    _check_work("conv2d", "the padded input",
                lead * (x[-2] + 2 * padding[0]) * (x[-1] + 2 * padding[1]))
    _check_work("conv2d", "the windows", lead * height * width * weight[2] * weight[3])
    return (*x[:-3], weight[0], height, width)


def _pad(x: np.ndarray, padding: Pair) -> np.ndarray:
    return np.pad(x, ((0, 0), (0, 0), (padding[0],) * 2, (padding[1],) * 2))


def _conv_numpy(args: Sequence[np.ndarray], params: Params) -> np.ndarray:
    x, weight = _batched(args[0]), args[1]
    stride, padding = _conv_settings(params)
    windows = _windows(_pad(x, padding), weight.shape[2:], stride)  # (N, C, oH, oW, kH, kW)
    out = np.moveaxis(np.tensordot(windows, weight, axes=([1, 4, 5], [1, 2, 3])), -1, 1)
    if len(args) == 3:
        out = out + args[2][:, np.newaxis, np.newaxis]
    return out[0] if np.ndim(args[0]) == 3 else out


def _conv_vjp(g: np.ndarray, args: Arrays, out: np.ndarray, params: Params,
              needs: Sequence[bool]) -> Gradients:
    """y[n,o,h,w] = b[o] + sum x_pad[n,c,h s + i,w s + j] w[o,c,i,j]: db sums dy, dw correlates
    dy with the windows, dx scatters dy · w back over every window position (then unpads)."""
    x, weight = _batched(args[0]), args[1]
    g = _batched(np.asarray(g))
    stride, padding = _conv_settings(params)
    kernel = weight.shape[2:]
    grads: list[np.ndarray | None] = [None] * len(args)
    if needs[0]:
        spread = np.tensordot(g, weight, axes=([1], [0]))  # (N, oH, oW, C, kH, kW)
        padded = np.zeros(_pad(x, padding).shape)
        rows, cols = g.shape[2], g.shape[3]
        for i in range(kernel[0]):
            for j in range(kernel[1]):
                padded[:, :, i:i + stride[0] * (rows - 1) + 1:stride[0],
                       j:j + stride[1] * (cols - 1) + 1:stride[1]] += np.moveaxis(
                           spread[..., i, j], -1, 1)
        dx = padded[:, :, padding[0]:padding[0] + x.shape[2], padding[1]:padding[1] + x.shape[3]]
        grads[0] = dx[0] if np.ndim(args[0]) == 3 else dx
    if needs[1]:
        windows = _windows(_pad(x, padding), kernel, stride)
        grads[1] = np.tensordot(g, windows, axes=([0, 2, 3], [0, 2, 3]))
    if len(args) == 3 and needs[2]:
        grads[2] = g.sum(axis=(0, 2, 3))
    return grads


def _conv_sympy(args: Sequence[np.ndarray], params: Params) -> np.ndarray:
    x, weight = _batched(args[0]), args[1]
    stride, padding = _conv_settings(params)
    batch, channels, height, width = x.shape
    outs, _, kh, kw = weight.shape
    padded = np.zeros((batch, channels, height + 2 * padding[0], width + 2 * padding[1]),
                      dtype=object)
    padded[:, :, padding[0]:padding[0] + height, padding[1]:padding[1] + width] = x
    rows = (height + 2 * padding[0] - kh) // stride[0] + 1
    cols = (width + 2 * padding[1] - kw) // stride[1] + 1
    out = np.empty((batch, outs, rows, cols), dtype=object)
    for n, o, r, c in np.ndindex(*out.shape):
        total = args[2][o] if len(args) == 3 else 0
        for channel, i, j in np.ndindex(channels, kh, kw):
            pixel = padded[n, channel, r * stride[0] + i, c * stride[1] + j]
            total = total + pixel * weight[o, channel, i, j]
        out[n, o, r, c] = total
    return object_array(out[0] if np.ndim(args[0]) == 3 else out)


def _conv_torch(args: Sequence[object], params: Params) -> object:
    stride, padding = _conv_settings(params)
    return torch_module().nn.functional.conv2d(*args, stride=stride, padding=padding)


CONV2D = Op(
    name="conv2d",
    arg_names=("input", "weight", "bias"),
    group="nn",
    doc=("`input` `(N, C, H, W)` or `(C, H, W)`, `weight` `(O, C, kH, kW)`, `bias` optional; "
         "`stride`, `padding` an int or `(h, w)`"),
    min_args=2,
    max_args=3,
    params=(Param("stride", "dims", default=1), Param("padding", "dims", default=0)),
    shape=_conv_shape,
    torch=_conv_torch,
    numpy=_conv_numpy,
    vjp=_conv_vjp,
    vjp_magnitude=linear_magnitudes(_conv_vjp),  # linear in x, in w and in b
    sympy=_conv_sympy,
)


# --- max_pool2d --------------------------------------------------------------------------------


def _pool_settings(params: Params) -> tuple[Pair, Pair]:
    kernel = _pair(params["kernel_size"], "max_pool2d", "kernel_size", 1)
    stride = params["stride"]
    return kernel, kernel if stride is None else _pair(stride, "max_pool2d", "stride", 1)


def _pool_shape(args: Sequence[ArgInfo], params: Params) -> Shape:
    x = args[0].shape
    _spatial(x, "max_pool2d", "x")
    kernel, stride = _pool_settings(params)
    height = _out_size(x[-2], kernel[0], stride[0], 0, "max_pool2d", "height")
    width = _out_size(x[-1], kernel[1], stride[1], 0, "max_pool2d", "width")
    _check_work("max_pool2d", "the windows", math.prod(x[:-2]) * height * width * math.prod(kernel))
    return (*x[:-2], height, width)


def _pool_windows(x: np.ndarray, params: Params) -> tuple[np.ndarray, np.ndarray]:
    """The windows of x flattened, (..., oH, oW, kH·kW), and for each window element its flat
    index within one (H, W) plane, (oH, oW, kH·kW)."""
    kernel, stride = _pool_settings(params)
    windows = _windows(x, kernel, stride)
    plane = np.arange(x.shape[-2] * x.shape[-1]).reshape(x.shape[-2:])
    where = _windows(plane, kernel, stride)
    return (windows.reshape(*windows.shape[:-2], -1), where.reshape(*where.shape[:-2], -1))


def _scatter(values: np.ndarray, positions: np.ndarray, shape: Shape) -> np.ndarray:
    """Sum ``values`` (..., oH, oW) into planes of ``shape`` (..., H, W) at the in-plane flat
    ``positions`` (same shape as ``values``)."""
    planes = math.prod(shape[:-2])
    plane_size = shape[-2] * shape[-1]
    offsets = (np.arange(planes) * plane_size).reshape(*shape[:-2], 1, 1)
    total = np.bincount((positions + offsets).ravel(), weights=values.ravel(),
                        minlength=planes * plane_size)
    return total.reshape(shape)


def _pool_vjp(g: np.ndarray, args: Arrays, out: np.ndarray, params: Params,
              needs: Sequence[bool]) -> Gradients:
    """The cotangent of each window goes to its max, the first one in row-major order where
    several tie (as torch's CPU kernel picks; ties are reported as kinks anyway)."""
    x = args[0]
    windows, where = _pool_windows(x, params)
    chosen = np.argmax(windows, axis=-1)
    positions = np.take_along_axis(np.broadcast_to(where, windows.shape),
                                   chosen[..., np.newaxis], axis=-1)[..., 0]
    return [_scatter(np.asarray(g, dtype=np.float64), positions, np.shape(x))]


def _pool_magnitude(g: np.ndarray, args: Arrays, out: np.ndarray, params: Params,
                    needs: Sequence[bool]) -> Gradients:
    # One term per window, routed by the argmax of x itself (not of |x|).
    return [np.abs(grad) for grad in _pool_vjp(np.abs(g), args, out, params, needs)]


def _pool_kinks(args: Sequence[np.ndarray], params: Params) -> np.ndarray:
    """The elements of x that tie for the max of a window: there the max has no derivative."""
    x = np.asarray(args[0])
    windows, where = _pool_windows(x, params)
    at_max = windows == np.max(windows, axis=-1, keepdims=True)
    tied = at_max & (np.sum(at_max, axis=-1, keepdims=True) > 1)
    positions = np.broadcast_to(where, windows.shape)
    counts = np.zeros(np.shape(x))
    for k in range(windows.shape[-1]):
        counts += _scatter(tied[..., k].astype(np.float64), positions[..., k], np.shape(x))
    return counts > 0


def _pool_sympy(args: Sequence[np.ndarray], params: Params) -> np.ndarray:
    import sympy

    x = args[0]
    kernel, stride = _pool_settings(params)
    rows = (x.shape[-2] - kernel[0]) // stride[0] + 1
    cols = (x.shape[-1] - kernel[1]) // stride[1] + 1
    out = np.empty((*x.shape[:-2], rows, cols), dtype=object)
    for index in np.ndindex(*out.shape):
        *lead, r, c = index
        window = x[(*lead, slice(r * stride[0], r * stride[0] + kernel[0]),
                    slice(c * stride[1], c * stride[1] + kernel[1]))]
        out[index] = sympy.Max(*window.ravel())
    return object_array(out)


def _pool_torch(args: Sequence[object], params: Params) -> object:
    kernel, stride = _pool_settings(params)
    return torch_module().nn.functional.max_pool2d(args[0], kernel, stride)


MAX_POOL2D = Op(
    name="max_pool2d",
    arg_names=("input",),
    group="nn",
    doc=("`stride` defaults to `kernel_size`, no padding; a window whose max is tied is a kink "
         "(skipped, as relu at 0), except a tie among relu's zeros, where the gradient is 0 "
         "whichever element wins"),
    min_args=1,
    max_args=1,
    params=(Param("kernel_size", "dims", required=True), Param("stride", "dims")),
    shape=_pool_shape,
    torch=_pool_torch,
    numpy=lambda args, p: np.max(_pool_windows(args[0], p)[0], axis=-1),
    vjp=_pool_vjp,
    vjp_magnitude=_pool_magnitude,
    sympy=_pool_sympy,
    kinks=_pool_kinks,
    kink_where="where a window's maximum is tied",
)

CONV = [CONV2D, MAX_POOL2D]
