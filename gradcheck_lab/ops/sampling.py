"""Resampling with torch semantics: grid_sample (the input read at the real-valued locations a
grid gives, 4-d and 5-d) and interpolate (resizing by nearest, nearest-exact, linear,
bilinear, bicubic or trilinear interpolation).

Both read every output element as a weighted sum of input pixels. Along one spatial dim a
source coordinate reads a few pixels, its taps: one (nearest), two (linear) or four (cubic
convolution, Keys' kernel with A = -0.75, as torch); the taps of the dims combine as products.
The numpy forms gather the taps (grid_sample) or apply one matrix per dim (interpolate, whose
taps do not depend on any value); the VJPs scatter the same weights back, and grid_sample's
gradient in its grid differentiates the weights (the floor of a coordinate is locally
constant, so only the weights move). The sympy forms write every pixel's weight along a dim
as the kernel's pieces times Heaviside steps of the symbolic coordinate (padding folded in
with Min, Max and a floor), and leave differentiating them to sympy; interpolate's weights
are numbers, the float64 ones torch computes, so its sympy form is the same sum written out.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
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
    SparseMatrix,
    Subscript,
    along_axes,
    as_float,
    bincount,
    object_array,
    torch_module,
)
from gradcheck_lab.ops.windows import check_work

CUBIC_A = -0.75  # torch's cubic convolution constant without antialias (OpenCV's)
GRID_MODES = ("bilinear", "nearest", "bicubic")
PADDING_MODES = ("zeros", "border", "reflection")
TAPS = {"nearest": 1, "bilinear": 2, "bicubic": 4}
# The sympy forms write every pixel's weight at every sample (grid_sample) or every output
# element (interpolate): beyond this many elements the exact oracle leaves them to the rule
# sweep.
EXACT_MAX_ELEMENTS = 64


# --- cubic convolution -----------------------------------------------------------------------
# Written once for numpy arrays and sympy expressions alike, in torch's order of operations.


def _kernel_pieces(a: Any, order: int = 0) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
    """The coefficients of Keys' kernel for |s| <= 1 and for 1 < |s| < 2, highest power
    first, differentiated ``order`` times."""
    near: tuple[Any, ...] = (a + 2, -(a + 3), 0, 1)
    far: tuple[Any, ...] = (a, -5 * a, 8 * a, -4 * a)
    for _ in range(order):
        near, far = (tuple(c * (len(p) - 1 - i) for i, c in enumerate(p[:-1]))
                     for p in (near, far))
    return near, far


def _horner(coefficients: Sequence[Any], s: Any) -> Any:
    """((c0 s + c1) s + c2) s + c3: torch's cubic_convolution1 and 2 exactly (its + 0 is
    exact)."""
    value = coefficients[0]
    for c in coefficients[1:]:
        value = value * s + c
    return value


def cubic_weights(t: Any, a: Any, order: int = 0) -> list[Any]:
    """The weights of the taps floor(x) - 1 .. floor(x) + 2 at t = x - floor(x), as torch's
    get_cubic_upsample_coefficients computes them, or their ``order``-th derivatives in t."""
    near, far = _kernel_pieces(a, order)
    rest, sign = 1 - t, (-1) ** order
    return [_horner(far, t + 1), _horner(near, t), sign * _horner(near, rest),
            sign * _horner(far, rest + 1)]


def _cubic_sizes(t: np.ndarray, spread: np.ndarray, order: int) -> list[np.ndarray]:
    """What rounding acts on in cubic_weights (order 0) or their slopes (order 1): the
    polynomial's terms in absolute value, and its derivative times the size of the
    coordinate, whose rounding t carries."""
    near, far = _kernel_pieces(CUBIC_A, order)
    steeper = cubic_weights(t, CUBIC_A, order + 1)
    return [_horner([abs(c) for c in piece], np.abs(s)) + np.abs(d) * spread
            for piece, s, d in zip((far, near, near, far), (t + 1, t, 1 - t, 2 - t), steeper,
                                   strict=True)]


# --- grid_sample: where a grid value reads ---------------------------------------------------


def _unnormalize(g: Any, size: int, align_corners: bool) -> tuple[Any, float]:
    """A grid value in [-1, 1] as a pixel coordinate, and its derivative: -1 and 1 are the
    corner pixels' centres with align_corners, else their outer edges."""
    if align_corners:
        return (g + 1) / 2 * (size - 1), (size - 1) / 2
    return ((g + 1) * size - 1) / 2, size / 2


def _clip(v: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """v clamped to [0, size - 1], the real part deciding, and its slope (0 on the bounds,
    as torch's clip_coordinates_set_grad)."""
    low, high = v.real <= 0, v.real >= size - 1
    return np.where(low, 0.0, np.where(high, size - 1.0, v)), (~(low | high)).astype(float)


def _reflect(v: np.ndarray, size: int, align_corners: bool) -> tuple[np.ndarray, np.ndarray]:
    """v reflected off the corner pixels' centres (align_corners) or outer edges until it
    lies between them, and its slope (±1), as torch's reflect_coordinates."""
    twice_low, twice_high = (0, 2 * (size - 1)) if align_corners else (-1, 2 * size - 1)
    if twice_low == twice_high:  # one pixel, aligned: every coordinate is its centre
        return np.zeros_like(v), np.zeros(np.shape(v))
    low, span = twice_low / 2, (twice_high - twice_low) / 2
    shifted = v - low
    flip = np.where(shifted.real < 0, -1.0, 1.0)
    distance = shifted * flip
    # fmod of the real part; a complex step moves the remainder as it moves the distance.
    extra = np.fmod(distance.real, span)
    if np.iscomplexobj(distance):
        extra = extra + 1j * distance.imag
    odd = np.floor(distance.real / span) % 2 == 1
    return np.where(odd, span - extra, extra) + low, flip * np.where(odd, -1.0, 1.0)


def _padded(v: np.ndarray, size: int, padding: str,
            align_corners: bool) -> tuple[np.ndarray, np.ndarray]:
    """A coordinate brought inside the input by padding_mode (zeros: left as it is, read as
    0 outside), and its slope."""
    if padding == "zeros":
        return v, np.ones(np.shape(v))
    slope: Any = 1.0
    if padding == "reflection":
        v, slope = _reflect(v, size, align_corners)
    v, inside = _clip(v, size)
    return v, slope * inside


@dataclass(frozen=True)
class _Taps:
    """What one dim of the samples reads: per tap (the first axis) the pixel index (0 where
    the tap falls outside, with weight 0), its weight and the weight's derivative in the grid
    value; and for the magnitude rule, what rounding acts on in each of these two."""

    index: np.ndarray
    weight: np.ndarray
    slope: np.ndarray
    weight_size: np.ndarray
    slope_size: np.ndarray


def _taps(index: np.ndarray, size: int, *values: np.ndarray) -> _Taps:
    inside = (index >= 0) & (index <= size - 1)
    return _Taps(np.where(inside, index, 0).astype(np.int64),
                 *(np.where(inside, v, 0.0) for v in values))


def _grid_taps(g: np.ndarray, size: int, params: Params) -> _Taps:
    """The taps of one grid component ``g`` (real, or complex for a complex step) along the
    dim of ``size`` pixels it addresses."""
    mode, padding, align = params["mode"], params["padding_mode"], bool(params["align_corners"])
    u, du = _unnormalize(g, size, align)
    if mode == "bicubic":
        # torch pads each tap's index, not the coordinate (get_value_bounded).
        base = np.floor(u.real)
        t, spread = u - base, np.abs(u) + np.abs(base) + 1
        index = base + np.arange(-1, 3).reshape(-1, *(1,) * np.ndim(u))
        if padding != "zeros":
            index = _padded(index, size, str(padding), align)[0]
        return _taps(index, size, np.stack(cubic_weights(t, CUBIC_A)),
                     np.stack(cubic_weights(t, CUBIC_A, 1)) * du,
                     np.stack(_cubic_sizes(t, spread, 0)),
                     np.stack(_cubic_sizes(t, spread, 1)) * abs(du))
    v, dv = _padded(u, size, str(padding), align)
    if mode == "nearest":  # nearbyint: half-way rounds to even, as np.rint; weight exactly 1
        ones, zeros = np.ones((1, *np.shape(v))), np.zeros((1, *np.shape(v)))
        return _taps(np.rint(v.real)[np.newaxis], size, np.ones_like(v)[np.newaxis], zeros,
                     ones, zeros)
    base = np.floor(v.real)
    weight, slope = np.stack([(base + 1) - v, v - base]), np.stack([-dv * du, dv * du])
    # The weights cancel the coordinate's integer part: its rounding is the coordinate's.
    spread = np.abs(u) + np.abs(base) + 1
    return _taps(np.stack([base, base + 1]), size, weight, slope, np.abs(weight) + spread,
                 np.abs(slope))


@dataclass(frozen=True)
class _Samples:
    """Every sample's taps over all dims, (K, N, M) for K combinations of one tap per dim, N
    images and M samples each: the flat pixel index within an image, the weight, and per
    spatial dim the weight's derivative in the grid component that addresses it."""

    index: np.ndarray
    weight: np.ndarray
    partials: list[np.ndarray]


def _outer(a: np.ndarray, b: np.ndarray, combine: Callable[..., np.ndarray]) -> np.ndarray:
    """(Ka, ...) and (Kb, ...) combined pairwise into (Ka · Kb, ...)."""
    return combine(a[:, np.newaxis], b[np.newaxis]).reshape(-1, *a.shape[1:])


def _samples(grid: np.ndarray, spatial: Sequence[int], params: Params,
             sizes: bool = False) -> _Samples:
    """The samples' taps; with ``sizes``, what rounding acts on in place of the weights and
    their derivatives (the magnitude rule's)."""
    d, images = len(spatial), grid.shape[0]
    flat = grid.reshape(images, -1, d)
    index = np.zeros((1, *flat.shape[:2]), dtype=np.int64)
    weight: np.ndarray = np.ones((1, *flat.shape[:2]))
    partials: list[np.ndarray] = []
    for axis, size in enumerate(spatial):
        # The grid's last dim runs x, y[, z]: the spatial dims from the last.
        taps = _grid_taps(flat[..., d - 1 - axis], size, params)
        tap_weight, tap_slope = ((taps.weight_size, taps.slope_size) if sizes
                                 else (taps.weight, taps.slope))
        index = _outer(index * size, taps.index, np.add)
        partials = [*(_outer(p, tap_weight, np.multiply) for p in partials),
                    _outer(weight, tap_slope, np.multiply)]
        weight = _outer(weight, tap_weight, np.multiply)
    return _Samples(index, weight, partials)


def _gather(images: np.ndarray, index: np.ndarray) -> np.ndarray:
    """(N, C, P) pixels read at (K, N, M) flat indices: (C, K, N, M)."""
    return images.transpose(1, 0, 2)[:, np.arange(images.shape[0])[:, np.newaxis], index]


# --- grid_sample: its forms --------------------------------------------------------------------


def _grid_numpy(args: Sequence[np.ndarray], params: Params) -> np.ndarray:
    x, grid = as_float(args[0]), as_float(args[1])
    images, channels = x.shape[:2]
    samples = _samples(grid, x.shape[2:], params)
    values = _gather(x.reshape(images, channels, -1), samples.index)
    out = np.einsum("knm,cknm->ncm", samples.weight, values)
    return out.reshape(images, channels, *grid.shape[1:-1])


def _grid_gradients(absolute: bool) -> Callable[..., Gradients]:
    """The VJP: each sample's cotangent times its weights, added to the pixels it read; in
    the grid, the cotangent times the values read times the weights' derivatives. With
    ``absolute``, the magnitude rule: the same sums over absolute values, with what rounding
    acts on in the weights in place of the weights (a weight near 0 cancels a coordinate
    near an integer)."""

    def vjp(g: np.ndarray, args: Arrays, out: np.ndarray, params: Params,
            needs: Sequence[bool]) -> Gradients:
        x, grid = as_float(args[0]), as_float(args[1])
        images, channels = x.shape[:2]
        pixels = math.prod(x.shape[2:])
        samples = _samples(grid, x.shape[2:], params, sizes=absolute)
        g = as_float(g).reshape(images, channels, -1)
        weight, partials = samples.weight, samples.partials
        if absolute:
            g = np.abs(g)
        grads: Gradients = [None, None]
        if needs[0]:
            shares = g.transpose(1, 0, 2)[:, np.newaxis] * weight[np.newaxis]  # (C, K, N, M)
            image = np.arange(images)[np.newaxis, :] * channels + np.arange(channels)[:, None]
            positions = image[:, np.newaxis, :, np.newaxis] * pixels + samples.index
            grads[0] = bincount(positions.ravel(), shares.ravel(),
                                images * channels * pixels).reshape(x.shape)
        if needs[1]:
            values = _gather(x.reshape(images, channels, -1), samples.index)
            read = np.einsum("ncm,cknm->knm", g, np.abs(values) if absolute else values)
            per_dim = [np.sum(read * p, axis=0) for p in partials]
            grads[1] = np.stack(per_dim[::-1], axis=-1).reshape(grid.shape)
        return grads

    return vjp


def _on_kink(g: np.ndarray, size: int, params: Params) -> np.ndarray:
    """Where a grid component's derivative breaks along its dim: bilinear, where its
    coordinate (reflected first) sits on a pixel between the first and last pixel it can
    read (the clamping and reflection boundaries are pixels too); bicubic, the same for its
    second derivative (its weights are C1); nearest, where its coordinate is half-way
    between two pixels it can read (a jump)."""
    mode, padding, align = params["mode"], params["padding_mode"], bool(params["align_corners"])
    u = _unnormalize(g, size, align)[0]
    if padding != "zeros" and size == 1:  # every coordinate reads the one pixel
        return np.zeros(np.shape(u), dtype=bool)
    if mode == "nearest":
        v = _padded(u, size, str(padding), align)[0]
        return (v - np.floor(v) == 0.5) & (v >= -0.5) & (v <= size - 0.5)
    if mode == "bilinear" and padding == "reflection":
        u = _reflect(u, size, align)[0]
    reach = {("bilinear", "zeros"): (-1, size), ("bicubic", "zeros"): (-2, size + 1),
             ("bicubic", "border"): (-1, size), ("bicubic", "reflection"): (-np.inf, np.inf)}
    low, high = reach.get((str(mode), str(padding)), (0, size - 1))
    return (u == np.floor(u)) & (u >= low) & (u <= high)


def _grid_kinks(args: Sequence[np.ndarray], params: Params) -> np.ndarray:
    """0-d: the kinks are in the grid, and the mask is read against the input's shape."""
    spatial = np.shape(args[0])[2:]
    grid = np.asarray(args[1], dtype=np.float64)
    d = len(spatial)
    return np.asarray(any(bool(np.any(_on_kink(grid[..., d - 1 - axis], size, params)))
                          for axis, size in enumerate(spatial)))


def _between(v: Any, low: float | None, high: float | None) -> Any:
    """1 where low <= v < high (an end of None is open), else 0, as Heaviside steps: they
    differentiate to DiracDelta, which is 0 wherever the derivative exists."""
    import sympy

    inside = sympy.Integer(1) if low is None else sympy.Heaviside(v - low, 1)
    return inside if high is None else inside - sympy.Heaviside(v - high, 1)


def _symbolic_reflect(v: Any, size: int, align_corners: bool) -> Any:
    """torch's reflect_coordinates as a triangle wave: the distance from ``low``, folded
    into one period (a floor, whose derivative is 0), mirrored about its middle."""
    import sympy

    twice_low, twice_high = (0, 2 * (size - 1)) if align_corners else (-1, 2 * size - 1)
    if twice_low == twice_high:
        return sympy.Integer(0)
    low, span = sympy.Rational(twice_low, 2), sympy.Rational(twice_high - twice_low, 2)
    distance = v - low
    folded = distance - 2 * span * sympy.floor(distance / (2 * span))
    return low + span - sympy.Abs(folded - span)


def _symbolic_padded(v: Any, size: int, padding: str, align_corners: bool) -> Any:
    import sympy

    if padding == "zeros":
        return v
    if padding == "reflection":
        v = _symbolic_reflect(v, size, align_corners)
    return sympy.Min(sympy.Max(v, 0), size - 1)


def _linear_pixel_weights(v: Any, size: int) -> list[Any]:
    """Bilinear along a dim: pixel p weighs 1 - |v - p| where v lies within one of it."""
    return [(v - p + 1) * _between(v, p - 1, p) + (p + 1 - v) * _between(v, p, p + 1)
            for p in range(size)]


def _nearest_pixel_weights(v: Any, size: int) -> list[Any]:
    """Pixel p is read where v rounds to it, half-way rounding to even: its interval is
    closed for an even p, open for an odd one."""
    import sympy

    half = sympy.Rational(1, 2)
    return [sympy.Heaviside(v - p + half, 1 - p % 2) * sympy.Heaviside(p + half - v, 1 - p % 2)
            for p in range(size)]


def _reflected_pixel(tap: int, size: int, align_corners: bool) -> int:
    """The pixel an integer tap reads under reflection padding: mirrored about the corner
    pixels' centres (align_corners: period 2 (size - 1)) or outer edges (period 2 size)."""
    if align_corners:
        turn = tap % (2 * (size - 1))
        return turn if turn < size else 2 * (size - 1) - turn
    turn = tap % (2 * size)
    return turn if turn < size else 2 * size - 1 - turn


def _cubic_pixel_weights(u: Any, size: int, padding: str, align_corners: bool) -> list[Any]:
    """Bicubic along a dim: tap k of the four (k = 0..3, at floor(u) - 1 + k) is padded to
    a pixel, and adds its weight there on the set of u where it lands on it. Reflection is
    periodic in u: u is folded into one period first."""
    import sympy

    a = sympy.Rational(-3, 4)
    terms: list[list[Any]] = [[] for _ in range(size)]
    if padding == "reflection":
        period = 2 * size if not align_corners else 2 * (size - 1)
        if period == 0:  # one pixel, aligned: every tap reads it, and the weights sum to 1
            return [sympy.Integer(1)]
        turn = u - period * sympy.floor(u / period)
        for whole, k in itertools.product(range(period), range(4)):
            pixel = _reflected_pixel(whole - 1 + k, size, align_corners)
            terms[pixel].append(cubic_weights(turn - whole, a)[k] * _between(turn, whole,
                                                                              whole + 1))
        return [sympy.Add(*t) for t in terms]
    t = u - sympy.floor(u)
    for pixel, k in itertools.product(range(size), range(4)):
        first = pixel + 1 - k  # the floor that puts tap k on the pixel
        if padding == "zeros" or 0 < pixel < size - 1:
            terms[pixel].append(cubic_weights(u - first, a)[k] * _between(u, first, first + 1))
            continue
        # border: every tap beyond the first (last) pixel reads it
        low = None if pixel == 0 else first
        high = None if pixel == size - 1 else first + 1
        terms[pixel].append(cubic_weights(t, a)[k] * _between(u, low, high))
    return [sympy.Add(*t) for t in terms]


def _pixel_weights(g: Any, size: int, params: Params) -> list[Any]:
    """The weight of each of the ``size`` pixels along the dim grid value ``g`` addresses."""
    mode, padding, align = params["mode"], str(params["padding_mode"]), bool(
        params["align_corners"])
    u = _unnormalize(g, size, align)[0]
    if mode == "bicubic":  # the taps are padded, not the coordinate
        return _cubic_pixel_weights(u, size, padding, align)
    v = _symbolic_padded(u, size, padding, align)
    if mode == "nearest":
        return _nearest_pixel_weights(v, size)
    return _linear_pixel_weights(v, size)


def _grid_sympy(args: Sequence[np.ndarray], params: Params) -> np.ndarray:
    import sympy

    x, grid = args
    spatial = x.shape[2:]
    d = len(spatial)
    out = np.empty((*x.shape[:2], *grid.shape[1:-1]), dtype=object)
    for sample in np.ndindex(*grid.shape[:-1]):
        coordinates = [(*sample, d - 1 - axis) for axis in range(d)]  # grid[..., d - 1 - axis]
        weights = [_pixel_weights(grid[at], size, params)
                   for at, size in zip(coordinates, spatial, strict=True)]
        for c in range(x.shape[1]):
            plane, where = x[sample[0], c], (sample[0], c, *sample[1:])
            out[where] = sympy.Add(*(
                plane[pixel] * sympy.Mul(*(w[i] for w, i in zip(weights, pixel, strict=True)))
                for pixel in np.ndindex(*spatial)))
    return object_array(out)


def _grid_shape(args: Sequence[ArgInfo], params: Params) -> Shape:
    x, grid = args[0].shape, args[1].shape
    if len(x) not in (4, 5) or 0 in x[2:]:
        raise SpecError(f"grid_sample(): input must be (N, C, H, W) or (N, C, D, H, W) with "
                        f"non-empty spatial dims, got shape {list(x)}")
    d = len(x) - 2
    if len(grid) != len(x) or grid[-1] != d:
        layout = "(N, Ho, Wo, 2)" if d == 2 else "(N, Do, Ho, Wo, 3)"
        raise SpecError(f"grid_sample(): a {len(x)}-d input needs a grid {layout}, got shape "
                        f"{list(grid)}")
    if grid[0] != x[0]:
        raise SpecError(f"grid_sample(): the grid's batch size {grid[0]} differs from the "
                        f"input's {x[0]}")
    if params["mode"] == "bicubic" and d == 3:
        raise SpecError("grid_sample(): mode='bicubic' takes a 4-d input only (torch has no "
                        "3-d bicubic sampling)")
    out = (x[0], x[1], *grid[1:-1])
    check_work("grid_sample", "the taps it reads", math.prod(out) * TAPS[str(params["mode"])] ** d)
    return out


def _grid_exact_limit(args: Sequence[ArgInfo]) -> str | None:
    x, grid = args[0].shape, args[1].shape
    size, out = math.prod(x), math.prod(x[:2]) * math.prod(grid[1:-1])
    if max(size, out) > EXACT_MAX_ELEMENTS:
        return (f"a grid_sample of {size} input and {out} output elements (sympy affords "
                f"{EXACT_MAX_ELEMENTS} of each)")
    return None


def _grid_torch(args: Sequence[Any], params: Params) -> Any:
    return torch_module().nn.functional.grid_sample(
        args[0], args[1], mode=params["mode"], padding_mode=params["padding_mode"],
        align_corners=params["align_corners"])


GRID_SAMPLE = Op(
    name="grid_sample",
    arg_names=("input", "grid"),
    positional=("input", "grid", "mode", "padding_mode", "align_corners"),
    group="nn",
    doc=("`input` `(N, C, H, W)` read at `grid` `(N, Ho, Wo, 2)`, or `(N, C, D, H, W)` at "
         "`(N, Do, Ho, Wo, 3)` (x, y[, z] in [-1, 1]); `mode` `'bilinear'`, `'nearest'` "
         "(half-way rounds to even) or `'bicubic'` (4-d only); `padding_mode` `'zeros'`, "
         "`'border'` or `'reflection'`; a sample on a pixel, on a clamping or reflection "
         "boundary, or half-way between pixels (nearest) is a kink"),
    min_args=2,
    max_args=2,
    params=(Param("mode", "str", default="bilinear", choices=GRID_MODES),
            Param("padding_mode", "str", default="zeros", choices=PADDING_MODES),
            Param("align_corners", "bool", default=False)),
    shape=_grid_shape,
    torch=_grid_torch,
    numpy=_grid_numpy,
    vjp=_grid_gradients(absolute=False),
    vjp_magnitude=_grid_gradients(absolute=True),
    sympy=_grid_sympy,
    kinks=_grid_kinks,
    kink_where=("where a grid sample sits on a pixel or a padding boundary (bilinear; "
                "bicubic's second derivative) or half-way between pixels (nearest)"),
    exact_limit=_grid_exact_limit,
)


# --- interpolate: the resize along each dim -------------------------------------------------

INTERPOLATE_MODES = ("nearest", "nearest-exact", "linear", "bilinear", "bicubic", "trilinear",
                     "area", "lanczos")
NEAREST_MODES = ("nearest", "nearest-exact")
RANKS = {"linear": 3, "bilinear": 4, "bicubic": 4, "trilinear": 5}
LAYOUTS = {3: "(N, C, L)", 4: "(N, C, H, W)", 5: "(N, C, D, H, W)"}


@dataclass(frozen=True)
class _Resize:
    """What interpolate does along each spatial dim: the input and output sizes, and the
    scale factor aten computes the source index from (None: from the sizes)."""

    mode: str
    align_corners: bool
    rank: int  # the input's ndim (torch's 2-d nearest kernel differs from its 1-d and 3-d)
    sizes: tuple[int, ...]
    outs: tuple[int, ...]
    scales: tuple[float | None, ...]


def _check_mode(mode: str, ndim: int, params: Params) -> None:
    d = ndim - 2
    if mode == "area":
        raise SpecError(f"interpolate(): mode='area' is adaptive average pooling: write "
                        f"adaptive_avg_pool{d}d(input, output_size)")
    if params["antialias"] or mode == "lanczos":
        raise SpecError("interpolate(): antialias=True (which mode='lanczos' needs) is not "
                        "supported: its filters widen with the downscaling factor, a "
                        "different interpolation than the one implemented here")
    if mode in NEAREST_MODES and params["align_corners"] is not None:
        raise SpecError(f"interpolate(): align_corners= is only for the modes linear, "
                        f"bilinear, bicubic and trilinear, not {mode!r} (torch refuses it too)")
    if mode in RANKS and ndim != RANKS[mode]:
        raise SpecError(f"interpolate(): mode={mode!r} needs a {RANKS[mode]}-d input "
                        f"{LAYOUTS[RANKS[mode]]}, got a {ndim}-d one")


def _per_dim(value: Any, d: int, name: str) -> tuple[Any, ...]:
    values = tuple(value) if isinstance(value, tuple) else (value,) * d
    if len(values) != d:
        raise SpecError(f"interpolate(): {name}={list(values)} needs one value per spatial "
                        f"dim ({d}), as torch")
    return values


def _output_sizes(spatial: Shape, params: Params
                  ) -> tuple[tuple[int, ...], tuple[float | None, ...]]:
    """The output's spatial sizes, and the scale factors aten gets."""
    size, scale = params["size"], params["scale_factor"]
    d = len(spatial)
    if (size is None) == (scale is None):
        raise SpecError("interpolate(): give exactly one of size= and scale_factor=")
    if size is not None:
        if params["recompute_scale_factor"]:
            raise SpecError("interpolate(): recompute_scale_factor=True is not meaningful "
                            "with an explicit size (torch refuses it too)")
        outs = tuple(int(s) for s in _per_dim(size, d, "size"))
        if min(outs) < 1:
            raise SpecError(f"interpolate(): size= must be at least 1, got {size}")
        return outs, (None,) * d
    scales = tuple(float(s) for s in _per_dim(scale, d, "scale_factor"))
    if min(scales) <= 0:
        raise SpecError(f"interpolate(): scale_factor= must be positive, got {scale}")
    # int(): aten truncates size × scale in float64, as Python does with recompute.
    outs = tuple(int(n * s) for n, s in zip(spatial, scales, strict=True))
    if min(outs) < 1:
        raise SpecError(f"interpolate(): scale_factor={scale} leaves an input of spatial "
                        f"size {list(spatial)} no output")
    return outs, (None,) * d if params["recompute_scale_factor"] else scales


def _resize(shape: Shape, params: Params) -> _Resize:
    if len(shape) not in (3, 4, 5) or 0 in shape[2:]:
        raise SpecError(f"interpolate(): input must be (N, C, L), (N, C, H, W) or "
                        f"(N, C, D, H, W) with non-empty spatial dims, got shape {list(shape)}")
    mode = str(params["mode"])
    _check_mode(mode, len(shape), params)
    outs, scales = _output_sizes(shape[2:], params)
    return _Resize(mode, bool(params["align_corners"]), len(shape), tuple(shape[2:]), outs,
                   scales)


def _nearest_source(size: int, out: int, scale: float | None, exact: bool,
                    rank: int) -> np.ndarray:
    """The pixel each output position copies: floor(position × step), or floor((position +
    0.5) × step) for nearest-exact, computed in float32 as aten does."""
    if not exact and rank == 4 and out in (size, 2 * size):
        # torch 2.13's 2-d nearest kernel copies or halves the index at these sizes,
        # whatever the scale factor (nearest_idx); its 1-d and 3-d kernels do not.
        return np.arange(out) // (out // size)
    step = np.float32(1.0 / scale) if scale else np.float32(size) / np.float32(out)
    position = np.arange(out)
    if exact:  # (position + 0.5) × step in float64, then floorf rounds it to float32
        source = np.floor(((position + 0.5) * np.float64(step)).astype(np.float32))
    else:
        source = np.floor(position.astype(np.float32) * step)
    return np.minimum(source.astype(np.int64), size - 1)


def _linear_source(size: int, out: int, scale: float | None, align_corners: bool,
                   cubic: bool) -> tuple[np.ndarray, np.ndarray]:
    """The first tap of each output position and its distance from it, as aten's
    area_pixel_compute_source_index and guard_index_and_lambda (floorf: in float32)."""
    if align_corners:
        ratio = (size - 1) / (out - 1) if out > 1 else 0.0
    else:
        ratio = 1.0 / scale if scale else size / out
    position = np.arange(out, dtype=np.float64)
    real = ratio * position if align_corners else ratio * (position + 0.5) - 0.5
    if not cubic and not align_corners:
        real = np.maximum(real, 0.0)
    index = np.minimum(np.floor(real.astype(np.float32)).astype(np.int64), size - 1)
    return index, np.clip(real - index, 0.0, 1.0)


def _resize_matrix(resize: _Resize, axis: int) -> SparseMatrix:
    """(out, in): the weight of each input pixel in each output position along ``axis``; at
    most four entries a row (bicubic), where a dense matrix holds out·in values."""
    size, out, scale = resize.sizes[axis], resize.outs[axis], resize.scales[axis]
    rows = np.arange(out)
    if resize.mode in NEAREST_MODES:
        return SparseMatrix(rows, _nearest_source(size, out, scale,
                                                  resize.mode == "nearest-exact", resize.rank),
                            np.ones(out), (out, size))
    if resize.mode == "bicubic":  # four taps, each clamped to the input (border padding)
        index, t = _linear_source(size, out, scale, resize.align_corners, cubic=True)
        taps = [(np.clip(index + k - 1, 0, size - 1), weight)
                for k, weight in enumerate(cubic_weights(t, CUBIC_A))]
    elif size == out:  # aten's linear kernels copy when the size is unchanged, whatever scale
        return SparseMatrix(rows, rows, np.ones(out), (out, size))
    else:
        index, lam = _linear_source(size, out, scale, resize.align_corners, cubic=False)
        taps = [(index, 1.0 - lam), (index + (index < size - 1), lam)]
    # Taps that land on the same pixel (clamped at a border) add up in this order, as they did
    # into a dense matrix.
    return SparseMatrix.from_entries(
        np.tile(rows, len(taps)), np.concatenate([cols for cols, _ in taps]),
        np.concatenate([np.broadcast_to(weight, (out,)) for _, weight in taps]), (out, size))


def _along_spatial(x: np.ndarray, matrices: Sequence[SparseMatrix]) -> np.ndarray:
    """Apply one matrix (new size, old size) to each spatial axis."""
    return along_axes(x, list(enumerate(matrices, start=2)))


# --- interpolate: its forms --------------------------------------------------------------------


def _interpolate_numpy(args: Sequence[np.ndarray], params: Params) -> np.ndarray:
    resize = _resize(np.shape(args[0]), params)
    return _along_spatial(as_float(args[0]), [_resize_matrix(resize, axis)
                                              for axis in range(len(resize.sizes))])


def _interpolate_vjp(absolute: bool) -> Callable[..., Gradients]:
    """The transposed matrices applied to the cotangent; with ``absolute``, their absolute
    values to |g| (bicubic weights can be negative)."""

    def vjp(g: np.ndarray, args: Arrays, out: np.ndarray, params: Params,
            needs: Sequence[bool]) -> Gradients:
        resize = _resize(np.shape(args[0]), params)
        matrices = [_resize_matrix(resize, axis).T for axis in range(len(resize.sizes))]
        if absolute:
            return [_along_spatial(np.abs(as_float(g)), [m.absolute() for m in matrices])]
        return [_along_spatial(as_float(g), matrices)]

    return vjp


def _exact(value: float) -> Any:
    import sympy

    ratio = Fraction(value)
    return sympy.Rational(ratio.numerator, ratio.denominator)


def _interpolate_sympy(args: Sequence[np.ndarray], params: Params) -> np.ndarray:
    """Each output element as its sum of weighted input elements (the weights exactly the
    float64 ones the numpy form uses: they are what torch computes)."""
    x = args[0]
    resize = _resize(x.shape, params)
    matrices = [_resize_matrix(resize, axis) for axis in range(len(resize.sizes))]
    taps = [[[(int(i), _exact(float(w))) for i, w in zip(*matrix.row_entries(row), strict=True)
              if w != 0] for row in range(matrix.shape[0])] for matrix in matrices]
    out = np.empty((*x.shape[:2], *resize.outs), dtype=object)
    for where in np.ndindex(*resize.outs):
        total: Any = 0
        for combination in np.ndindex(*(len(taps[a][o]) for a, o in enumerate(where))):
            chosen = [taps[a][o][k] for a, (o, k) in enumerate(zip(where, combination,
                                                                   strict=True))]
            weight = math.prod(w for _, w in chosen)
            at: Subscript = (slice(None), slice(None), *(i for i, _ in chosen))
            total = total + x[at] * weight
        into: Subscript = (slice(None), slice(None), *where)
        out[into] = total
    return object_array(out)


def _interpolate_shape(args: Sequence[ArgInfo], params: Params) -> Shape:
    shape = args[0].shape
    resize = _resize(shape, params)
    out = (*shape[:2], *resize.outs)
    check_work("interpolate", "the output", math.prod(out))
    return out


def _interpolate_exact_limit(args: Sequence[ArgInfo]) -> str | None:
    # The output's size needs the keywords; the exact oracle bounds it with every node's.
    size = math.prod(args[0].shape)
    if size > EXACT_MAX_ELEMENTS:
        return (f"an interpolate of {size} input elements (sympy affords "
                f"{EXACT_MAX_ELEMENTS})")
    return None


def _interpolate_torch(args: Sequence[Any], params: Params) -> Any:
    return torch_module().nn.functional.interpolate(
        args[0], size=params["size"], scale_factor=params["scale_factor"], mode=params["mode"],
        align_corners=params["align_corners"],
        recompute_scale_factor=params["recompute_scale_factor"], antialias=params["antialias"])


INTERPOLATE = Op(
    name="interpolate",
    arg_names=("input",),
    positional=("input", "size", "scale_factor", "mode", "align_corners",
                "recompute_scale_factor", "antialias"),
    group="nn",
    doc=("`input` `(N, C, L)`, `(N, C, H, W)` or `(N, C, D, H, W)`; `size` (ints) or "
         "`scale_factor` (numbers), one for every dim or one per dim; the scale factor "
         "itself places the source pixels unless `recompute_scale_factor=True`, as torch; "
         "`mode` `'nearest'`, `'nearest-exact'`, `'linear'` (3-d), `'bilinear'` or "
         "`'bicubic'` (4-d), `'trilinear'` (5-d); no `antialias` (nor `'lanczos'`); "
         "`'area'` is `adaptive_avg_poolNd`"),
    min_args=1,
    max_args=1,
    params=(Param("size", "dims"), Param("scale_factor", "floats"),
            Param("mode", "str", default="nearest", choices=INTERPOLATE_MODES),
            Param("align_corners", "bool"), Param("recompute_scale_factor", "bool"),
            Param("antialias", "bool", default=False)),
    shape=_interpolate_shape,
    torch=_interpolate_torch,
    numpy=_interpolate_numpy,
    vjp=_interpolate_vjp(absolute=False),
    vjp_magnitude=_interpolate_vjp(absolute=True),
    sympy=_interpolate_sympy,
    exact_limit=_interpolate_exact_limit,
)

SAMPLING = [GRID_SAMPLE, INTERPOLATE]
