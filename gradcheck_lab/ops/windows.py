"""Sliding windows over the spatial dims of (N, C, *spatial) tensors: the geometry that
convolution and pooling share (per-dim settings, output sizes, padding, strided and dilated
window views, and the scatter that is a window view's adjoint).

``d`` is the number of spatial dims (1, 2 or 3). The numpy views are strided, not copies
(im2col without the copy); the arithmetic on them is the ops' own.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from gradcheck_lab.errors import SpecError
from gradcheck_lab.ops.base import ParamValue, Shape, Subscript, as_ints

Dims = tuple[int, ...]
# The numpy forms materialize the padded input and the windows (N·C·prod(out)·prod(kernel)
# values for a convolution): refuse settings that would make either larger than the loader
# lets any node be, at load time, rather than run out of memory later.
MAX_WORK_ELEMENTS = 100_000_000
AXIS_NAMES = {1: ("length",), 2: ("height", "width"), 3: ("depth", "height", "width")}
LAYOUTS = {1: "(N, C, L) or (C, L)", 2: "(N, C, H, W) or (C, H, W)",
           3: "(N, C, D, H, W) or (C, D, H, W)"}
LAYOUT_DOCS = {d: f"`{layout.split(' or ')[0]}` or `{layout.split(' or ')[1]}`"
               for d, layout in LAYOUTS.items()}  # as docs/expressions.md writes them
COUNT_WORDS = {1: "one int", 2: "one int or two (height, width)",
               3: "one int or three (depth, height, width)"}


def per_dim(value: ParamValue, d: int, op: str, name: str, minimum: int) -> Dims:
    """An int (the same for every spatial dim) or one int per spatial dim, each at least
    ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, (int, tuple)):
        raise SpecError(f"{op}(): {name}= needs an int or a tuple of {d} ints")
    values = (value,) * d if isinstance(value, int) else as_ints(value, name)
    if len(values) == 1 and d > 1:
        values = values * d  # torch accepts (k,) for every dim
    if len(values) != d:
        raise SpecError(f"{op}(): {name}={list(values)} needs {COUNT_WORDS[d]}")
    if min(values) < minimum:
        raise SpecError(f"{op}(): {name}= must be at least {minimum}, got {value}")
    return values


def check_layout(shape: Shape, d: int, op: str, what: str = "x") -> None:
    if len(shape) not in (d + 1, d + 2):
        raise SpecError(f"{op}(): {what} must be {LAYOUTS[d]}, got shape {list(shape)}")


def batched(x: np.ndarray, d: int) -> np.ndarray:
    """(C, *spatial) as a batch of one, so that one code path serves both layouts."""
    return x[np.newaxis] if np.ndim(x) == d + 1 else x


def unbatched(out: np.ndarray, like: np.ndarray, d: int) -> np.ndarray:
    return out[0] if np.ndim(like) == d + 1 else out


@dataclass(frozen=True)
class Geometry:
    """Where the windows of one op lie: per spatial dim, the kernel, stride, dilation and the
    padding before and after."""

    kernel: Dims
    stride: Dims
    dilation: Dims
    padding: tuple[tuple[int, int], ...]

    @property
    def extent(self) -> Dims:
        """What one window spans, dilation included."""
        return tuple(dil * (k - 1) + 1 for k, dil in zip(self.kernel, self.dilation,
                                                         strict=True))

    def out_sizes(self, spatial: Shape, op: str) -> Dims:
        sizes = []
        for axis, size, span, stride, (low, high) in zip(
                AXIS_NAMES[len(spatial)], spatial, self.extent, self.stride, self.padding,
                strict=True):
            padded = size + low + high
            if padded < span:
                extra = f" padded to {padded}" if low or high else ""
                raise SpecError(f"{op}(): the kernel's {axis} {span} is larger than the "
                                f"input's {axis} {size}{extra}")
            sizes.append((padded - span) // stride + 1)
        return tuple(sizes)

    def padded_shape(self, shape: Shape) -> Shape:
        d = len(self.kernel)
        return (*shape[:-d], *(size + low + high for size, (low, high)
                               in zip(shape[-d:], self.padding, strict=True)))


def check_work(op: str, what: str, elements: int) -> None:
    if elements > MAX_WORK_ELEMENTS:
        raise SpecError(f"{op}(): {what} would hold {elements} elements (limit "
                        f"{MAX_WORK_ELEMENTS}); use a smaller kernel, a larger stride or less "
                        "padding")


def check_window_work(op: str, shape: Shape, geometry: Geometry, out: Dims) -> None:
    lead = math.prod(shape[:-len(out)])
    check_work(op, "the padded input", math.prod(geometry.padded_shape(shape)))
    check_work(op, "the windows", lead * math.prod(out) * math.prod(geometry.kernel))


def pad(x: np.ndarray, geometry: Geometry, value: float = 0.0) -> np.ndarray:
    lead = [(0, 0)] * (np.ndim(x) - len(geometry.padding))
    return np.pad(x, [*lead, *geometry.padding], constant_values=value)


def window_view(padded: np.ndarray, geometry: Geometry) -> np.ndarray:
    """(..., *padded spatial) -> (..., *out, *kernel): a strided view, no copy."""
    d = len(geometry.kernel)
    view = sliding_window_view(padded, geometry.extent, axis=tuple(range(-d, 0)))
    steps: Subscript = (Ellipsis, *(slice(None, None, s) for s in geometry.stride),
             *(slice(None, None, dil) for dil in geometry.dilation))
    return view[steps]


def scatter_windows(spread: np.ndarray, geometry: Geometry, padded_shape: Shape) -> np.ndarray:
    """The adjoint of ``window_view``: every window element (..., *out, *kernel) added back
    where it was read, in a zero array of ``padded_shape``."""
    d = len(geometry.kernel)
    out = spread.shape[-2 * d:-d]
    total = np.zeros(padded_shape, dtype=spread.dtype)
    for offset in itertools.product(*(range(k) for k in geometry.kernel)):
        where = tuple(slice(k * dil, k * dil + s * (n - 1) + 1, s) for k, dil, s, n in zip(
            offset, geometry.dilation, geometry.stride, out, strict=True))
        into: Subscript = (Ellipsis, *where)
        read: Subscript = (Ellipsis, *offset)
        total[into] += spread[read]
    return total


def crop(padded: np.ndarray, geometry: Geometry, spatial: Sequence[int]) -> np.ndarray:
    """The inverse of ``pad``: the input's own positions of a padded array."""
    where: Subscript = (Ellipsis, *(slice(low, low + size) for (low, _), size in zip(
        geometry.padding, spatial, strict=True)))
    return padded[where]
