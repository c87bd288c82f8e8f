"""Pooling with torch semantics, over 1, 2 or 3 spatial dims: max_pool (``padding``,
``dilation``, ``ceil_mode``), avg_pool (``padding``, ``ceil_mode``, ``count_include_pad``,
``divisor_override``) and adaptive_avg_pool (``output_size``).

The numpy forms read strided window views (``ops.windows``); the sympy forms are loops over the
windows' in-bounds elements, written independently of them.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence

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
    SparseMatrix,
    Subscript,
    along_axes,
    as_float,
    bincount,
    float_param,
    int_param,
    linear_magnitudes,
    object_array,
    torch_module,
)
from gradcheck_lab.ops.windows import (
    LAYOUT_DOCS,
    Geometry,
    check_layout,
    check_window_work,
    crop,
    pad,
    per_dim,
    scatter_windows,
    window_view,
)

# --- geometry of max_pool and avg_pool ---------------------------------------------------------


def _pool_geometry(name: str, d: int, spatial: Shape, params: Params
                   ) -> tuple[Geometry, tuple[int, ...]]:
    """The windows and the output size, as torch computes them: with ``ceil_mode`` a last,
    partial window is kept when it starts inside the input or its left padding. The padding
    after is what that last window needs (at least 0); the view is cut to the output size."""
    kernel = per_dim(params["kernel_size"], d, name, "kernel_size", 1)
    stride = kernel if params["stride"] is None else per_dim(params["stride"], d, name,
                                                             "stride", 1)
    padding = per_dim(params["padding"], d, name, "padding", 0)
    dilation = per_dim(params.get("dilation", 1), d, name, "dilation", 1)
    outs, after = [], []
    for axis, size, k, s, p, dil in zip(("length",) if d == 1 else
                                        ("depth", "height", "width")[3 - d:],
                                        spatial, kernel, stride, padding, dilation, strict=True):
        span = dil * (k - 1) + 1
        if 2 * p > span:
            raise SpecError(f"{name}(): padding={p} must be at most half the kernel's extent "
                            f"{span} (torch refuses more)")
        if size + 2 * p < span:
            extra = f" padded to {size + 2 * p}" if p else ""
            raise SpecError(f"{name}(): the kernel's {axis} {span} is larger than the "
                            f"input's {axis} {size}{extra}")
        room = size + 2 * p - span
        out = (-(-room // s) if params["ceil_mode"] else room // s) + 1
        if params["ceil_mode"] and (out - 1) * s >= size + p:
            out -= 1  # the last window would start in the padding after the input
        outs.append(out)
        after.append(max(0, (out - 1) * s + span - size - p))
    geometry = Geometry(kernel, stride, dilation, tuple(zip(padding, after, strict=True)))
    return geometry, tuple(outs)


def _pool_shape(name: str, d: int) -> Callable[..., Shape]:
    def rule(args: Sequence[ArgInfo], params: Params) -> Shape:
        x = args[0].shape
        check_layout(x, d, name)
        if params.get("return_indices"):
            raise SpecError(f"{name}(): return_indices=True gives the indices as a second "
                            "output, which has no gradient; leave it False")
        if params.get("divisor_override") is not None and \
                int_param(params, "divisor_override") < 1:
            raise SpecError(f"{name}(): divisor_override= must be at least 1")
        geometry, out = _pool_geometry(name, d, x[-d:], params)
        check_window_work(name, x, geometry, out)
        return (*x[:-d], *out)

    return rule


def _windows(x: np.ndarray, geometry: Geometry, out: Sequence[int],
             fill: float) -> np.ndarray:
    """(..., *spatial) -> (..., *out, *kernel), padding read as ``fill``."""
    view = window_view(pad(x, geometry, fill), geometry)
    reached: Subscript = (Ellipsis, *(slice(0, n) for n in out), *(slice(None),) * len(out))
    return view[reached]


def _flat(windows: np.ndarray, d: int) -> np.ndarray:
    return windows.reshape(*windows.shape[:-d], -1)


# --- max_pool ----------------------------------------------------------------------------------


def _max_parts(x: np.ndarray, d: int, name: str, params: Params
               ) -> tuple[np.ndarray, np.ndarray]:
    """The windows of x flattened (..., *out, K) with padding as -inf, and for each window
    element its flat index within one spatial block of x (-1 in the padding)."""
    geometry, out = _pool_geometry(name, d, np.shape(x)[-d:], params)
    windows = _flat(_windows(as_float(x), geometry, out, -np.inf), d)
    block = np.arange(math.prod(np.shape(x)[-d:]), dtype=np.float64).reshape(np.shape(x)[-d:])
    where = _flat(_windows(block, geometry, out, -1.0), d).astype(np.int64)
    return windows, where


def _scatter(values: np.ndarray, positions: np.ndarray, shape: Shape, d: int) -> np.ndarray:
    """Sum ``values`` (..., *out) into blocks of ``shape`` (..., *spatial) at the in-block
    flat ``positions`` (same shape as ``values``)."""
    blocks = math.prod(shape[:-d])
    block_size = math.prod(shape[-d:])
    offsets = (np.arange(blocks) * block_size).reshape(*shape[:-d], *(1,) * d)
    total = bincount((positions + offsets).ravel(), values.ravel(), blocks * block_size)
    return total.reshape(shape)


def _max_vjp(name: str, d: int) -> Callable[..., Gradients]:
    def vjp(g: np.ndarray, args: Arrays, out: np.ndarray, params: Params,
            needs: Sequence[bool]) -> Gradients:
        """Each window's cotangent goes to its max, the first in row-major order where several
        tie (as torch's CPU kernel picks; ties are reported as kinks anyway)."""
        windows, where = _max_parts(args[0], d, name, params)
        chosen = np.argmax(windows, axis=-1)[..., np.newaxis]
        positions = np.take_along_axis(np.broadcast_to(where, windows.shape), chosen,
                                       axis=-1)[..., 0]
        return [_scatter(as_float(g), positions, np.shape(args[0]), d)]

    return vjp


def _max_magnitude(name: str, d: int) -> Callable[..., Gradients]:
    vjp = _max_vjp(name, d)

    def magnitude(g: np.ndarray, args: Arrays, out: np.ndarray, params: Params,
                  needs: Sequence[bool]) -> Gradients:
        # One term per window, routed by the argmax of x itself (not of |x|).
        return [None if grad is None else np.abs(grad)
                for grad in vjp(np.abs(g), args, out, params, needs)]

    return magnitude


def _max_kinks(name: str, d: int) -> Callable[..., np.ndarray]:
    def kinks(args: Sequence[np.ndarray], params: Params) -> np.ndarray:
        """The elements of x that tie for the max of a window: there it has no derivative."""
        x = np.asarray(args[0])
        windows, where = _max_parts(x, d, name, params)
        at_max = windows == np.max(windows, axis=-1, keepdims=True)
        tied = at_max & (np.sum(at_max, axis=-1, keepdims=True) > 1)
        # Padding (-1) is never tied with a real maximum; 0 stands in for it, with weight 0.
        positions = np.maximum(np.broadcast_to(where, windows.shape), 0)
        counts = np.zeros(np.shape(x))
        for k in range(windows.shape[-1]):
            counts += _scatter(tied[..., k].astype(np.float64), positions[..., k], np.shape(x), d)
        return counts > 0

    return kinks


def _in_bounds(x: np.ndarray, d: int, geometry: Geometry, index: tuple[int, ...],
               ) -> list[object]:
    """The elements of x that the window of output ``index`` reads (padding left out)."""
    ranges = []
    for o, k, s, dil, (low, _), size in zip(index[-d:], geometry.kernel, geometry.stride,
                                            geometry.dilation, geometry.padding,
                                            x.shape[-d:], strict=True):
        ranges.append([o * s - low + j * dil for j in range(k)
                       if 0 <= o * s - low + j * dil < size])
    return [x[index[:-d] + at] for at in itertools.product(*ranges)]


def _max_sympy(name: str, d: int) -> Callable[..., np.ndarray]:
    def form(args: Sequence[np.ndarray], params: Params) -> np.ndarray:
        import sympy

        x = args[0]
        geometry, out_sizes = _pool_geometry(name, d, x.shape[-d:], params)
        out = np.empty((*x.shape[:-d], *out_sizes), dtype=object)
        for index in np.ndindex(*out.shape):
            out[index] = sympy.Max(*_in_bounds(x, d, geometry, index))
        return object_array(out)

    return form


def _max_torch(name: str) -> Callable[..., object]:
    def lower(args: Sequence[object], params: Params) -> object:
        return getattr(torch_module().nn.functional, name)(
            args[0], params["kernel_size"], params["stride"], params["padding"],
            params["dilation"], params["ceil_mode"])

    return lower


def _max_pool(d: int) -> Op:
    name = f"max_pool{d}d"
    return Op(
        name=name,
        arg_names=("input",),
        positional=("input", "kernel_size", "stride", "padding", "dilation", "ceil_mode",
                    "return_indices"),
        group="nn",
        doc=(f"`input` {LAYOUT_DOCS[d]}; `stride` defaults to `kernel_size`; `padding` (read "
             "as -inf), `dilation`, `ceil_mode`; a window whose max is tied is a kink "
             "(skipped, as relu at 0), except a tie among relu's zeros"),
        min_args=1,
        max_args=1,
        params=(Param("kernel_size", "dims", required=True), Param("stride", "dims"),
                Param("padding", "dims", default=0), Param("dilation", "dims", default=1),
                Param("ceil_mode", "bool", default=False),
                Param("return_indices", "bool", default=False)),
        shape=_pool_shape(name, d),
        torch=_max_torch(name),
        numpy=lambda args, p: np.max(_max_parts(args[0], d, name, p)[0], axis=-1),
        vjp=_max_vjp(name, d),
        vjp_magnitude=_max_magnitude(name, d),
        sympy=_max_sympy(name, d),
        kinks=_max_kinks(name, d),
        kink_where="where a window's maximum is tied",
    )


# --- avg_pool ----------------------------------------------------------------------------------


def _divisors(name: str, d: int, spatial: Shape, params: Params) -> np.ndarray:
    """What each window's sum is divided by (*out), as torch's kernels count: the window cut
    at the end of the padding, or at the input's bounds without ``count_include_pad``, or
    ``divisor_override``."""
    geometry, out = _pool_geometry(name, d, spatial, params)
    if params.get("divisor_override") is not None:
        return np.full(out, float_param(params, "divisor_override"))
    counts = []
    for n, k, s, (low, _), size in zip(out, geometry.kernel, geometry.stride, geometry.padding,
                                       spatial, strict=True):
        start = np.arange(n) * s - low
        end = np.minimum(start + k, size + low)
        if not params["count_include_pad"]:
            start, end = np.maximum(start, 0), np.minimum(end, size)
        counts.append((end - start).astype(np.float64))
    total = counts[0]
    for more in counts[1:]:
        total = np.multiply.outer(total, more)
    return total


def _avg_numpy(name: str, d: int) -> Callable[..., np.ndarray]:
    def forward(args: Sequence[np.ndarray], params: Params) -> np.ndarray:
        x = args[0]
        geometry, out = _pool_geometry(name, d, np.shape(x)[-d:], params)
        sums = _flat(_windows(x, geometry, out, 0.0), d).sum(axis=-1)
        return sums / _divisors(name, d, np.shape(x)[-d:], params)

    return forward


def _avg_vjp(name: str, d: int) -> Callable[..., Gradients]:
    def vjp(g: np.ndarray, args: Arrays, out: np.ndarray, params: Params,
            needs: Sequence[bool]) -> Gradients:
        """Each window's cotangent over its divisor, added to every element it averaged."""
        x = args[0]
        spatial = np.shape(x)[-d:]
        geometry, _ = _pool_geometry(name, d, spatial, params)
        share = as_float(g) / _divisors(name, d, spatial, params)
        widened: Subscript = (Ellipsis, *(np.newaxis,) * d)
        spread = np.broadcast_to(share[widened],
                                 (*share.shape, *geometry.kernel))
        full = scatter_windows(spread, geometry, geometry.padded_shape(np.shape(x)))
        return [crop(full, geometry, spatial)]

    return vjp


def _avg_sympy(name: str, d: int) -> Callable[..., np.ndarray]:
    def form(args: Sequence[np.ndarray], params: Params) -> np.ndarray:
        import sympy

        x = args[0]
        spatial = x.shape[-d:]
        geometry, out_sizes = _pool_geometry(name, d, spatial, params)
        out = np.empty((*x.shape[:-d], *out_sizes), dtype=object)
        for index in np.ndindex(*out.shape):
            read = _in_bounds(x, d, geometry, index)
            if params.get("divisor_override") is not None:
                divisor = int_param(params, "divisor_override")
            elif params["count_include_pad"]:
                divisor = math.prod(
                    min(o * s - low + k, size + low) - (o * s - low) for o, k, s, (low, _), size
                    in zip(index[-d:], geometry.kernel, geometry.stride, geometry.padding,
                           spatial, strict=True))
            else:
                divisor = len(read)
            out[index] = sympy.Add(*read) / divisor
        return object_array(out)

    return form


def _avg_torch(name: str, d: int) -> Callable[..., object]:
    def lower(args: Sequence[object], params: Params) -> object:
        extra = {} if d == 1 else {"divisor_override": params["divisor_override"]}
        return getattr(torch_module().nn.functional, name)(
            args[0], params["kernel_size"], params["stride"], params["padding"],
            params["ceil_mode"], params["count_include_pad"], **extra)

    return lower


def _avg_pool(d: int) -> Op:
    name = f"avg_pool{d}d"
    override = () if d == 1 else (Param("divisor_override", "int"),)
    return Op(
        name=name,
        arg_names=("input",),
        positional=("input", "kernel_size", "stride", "padding", "ceil_mode",
                    "count_include_pad", *(p.name for p in override)),
        group="nn",
        doc=(f"`input` {LAYOUT_DOCS[d]}; `stride` defaults to `kernel_size`; `padding` (zeros), "
             "`ceil_mode`, `count_include_pad`" + ("" if d == 1 else ", `divisor_override`")),
        min_args=1,
        max_args=1,
        params=(Param("kernel_size", "dims", required=True), Param("stride", "dims"),
                Param("padding", "dims", default=0), Param("ceil_mode", "bool", default=False),
                Param("count_include_pad", "bool", default=True), *override),
        shape=_pool_shape(name, d),
        torch=_avg_torch(name, d),
        numpy=_avg_numpy(name, d),
        vjp=_avg_vjp(name, d),
        vjp_magnitude=linear_magnitudes(_avg_vjp(name, d)),
        sympy=_avg_sympy(name, d),
    )


# --- adaptive_avg_pool -------------------------------------------------------------------------


def _bin(size: int, out: int, i: int) -> tuple[int, int]:
    """torch's adaptive window i: [floor(i L / out), ceil((i + 1) L / out))."""
    return i * size // out, -(-(i + 1) * size // out)


def _averaging(size: int, out: int) -> SparseMatrix:
    """(out, size): 1 / its length on each window. Its entries are the windows' lengths,
    at most size + 2·out together (a window is at most ceil(size / out) + 1 long), where the
    dense matrix holds out·size values."""
    index = np.arange(out, dtype=np.int64)
    starts, ends = index * size // out, -(-(index + 1) * size // out)
    lengths = ends - starts
    rows = np.repeat(index, lengths)
    first = np.cumsum(lengths) - lengths  # where each row's entries begin
    cols = np.arange(len(rows), dtype=np.int64) - np.repeat(first - starts, lengths)
    return SparseMatrix(rows, cols, np.repeat(1.0 / lengths, lengths), (out, size))


def _output_size(name: str, d: int, params: Params) -> tuple[int, ...]:
    return per_dim(params["output_size"], d, name, "output_size", 1)


def _adaptive_shape(name: str, d: int) -> Callable[..., Shape]:
    def rule(args: Sequence[ArgInfo], params: Params) -> Shape:
        x = args[0].shape
        check_layout(x, d, name)
        return (*x[:-d], *_output_size(name, d, params))

    return rule


def _along_spatial(x: np.ndarray, d: int, matrices: Sequence[SparseMatrix]) -> np.ndarray:
    """Apply one matrix (new size, old size) to each spatial axis in turn."""
    return along_axes(x, list(zip(range(np.ndim(x) - d, np.ndim(x)), matrices, strict=True)))


def _adaptive_numpy(name: str, d: int) -> Callable[..., np.ndarray]:
    def forward(args: Sequence[np.ndarray], params: Params) -> np.ndarray:
        spatial = np.shape(args[0])[-d:]
        return _along_spatial(args[0], d, [_averaging(size, out) for size, out in zip(
            spatial, _output_size(name, d, params), strict=True)])

    return forward


def _adaptive_vjp(name: str, d: int) -> Callable[..., Gradients]:
    def vjp(g: np.ndarray, args: Arrays, out: np.ndarray, params: Params,
            needs: Sequence[bool]) -> Gradients:
        spatial = np.shape(args[0])[-d:]
        return [_along_spatial(as_float(g), d, [
            _averaging(size, o).T for size, o in zip(spatial, _output_size(name, d, params),
                                                     strict=True)])]

    return vjp


def _adaptive_sympy(name: str, d: int) -> Callable[..., np.ndarray]:
    def form(args: Sequence[np.ndarray], params: Params) -> np.ndarray:
        import sympy

        x = args[0]
        sizes = _output_size(name, d, params)
        out = np.empty((*x.shape[:-d], *sizes), dtype=object)
        for index in np.ndindex(*out.shape):
            bins = [_bin(size, o, i) for size, o, i in zip(x.shape[-d:], sizes, index[-d:],
                                                           strict=True)]
            where: Subscript = (*index[:-d], *(slice(start, end) for start, end in bins))
            window = x[where]
            out[index] = sympy.Add(*window.ravel()) / window.size
        return object_array(out)

    return form


def _adaptive_pool(d: int) -> Op:
    name = f"adaptive_avg_pool{d}d"
    return Op(
        name=name,
        arg_names=("input",),
        positional=("input", "output_size"),
        group="nn",
        doc=f"`input` {LAYOUT_DOCS[d]}; `output_size` an int or one per dim, as torch bins",
        min_args=1,
        max_args=1,
        params=(Param("output_size", "dims", required=True),),
        shape=_adaptive_shape(name, d),
        torch=lambda args, p: getattr(torch_module().nn.functional, name)(args[0],
                                                                          p["output_size"]),
        numpy=_adaptive_numpy(name, d),
        vjp=_adaptive_vjp(name, d),
        vjp_magnitude=linear_magnitudes(_adaptive_vjp(name, d)),
        sympy=_adaptive_sympy(name, d),
    )


POOLING = [*(_max_pool(d) for d in (1, 2, 3)), *(_avg_pool(d) for d in (1, 2, 3)),
           *(_adaptive_pool(d) for d in (1, 2, 3))]
