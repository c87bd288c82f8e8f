"""Convolutions with torch semantics: conv1d conv2d conv3d and conv_transpose1d/2d/3d, with
``stride``, ``padding`` (ints, or "same"/"valid" for the forward convolutions), ``dilation``,
``groups`` and, for the transposed ones, ``output_padding``.

Three numpy kernels serve all six ops, since a transposed convolution is the adjoint of a
convolution in its input: ``_correlate`` (the forward), ``_input_adjoint`` (what the forward's
VJP gives x, and the transposed forward) and ``_weight_adjoint`` (what it gives w). The sympy
forms are explicit loops over object arrays, a gather for the convolution and a scatter for the
transposed one, written independently of the numpy kernels so the tests compare two codings.
"""

from __future__ import annotations

import math
import warnings
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
    ParamValue,
    Shape,
    Subscript,
    as_float,
    check_kernel_cost,
    int_param,
    linear_magnitudes,
    object_array,
    torch_module,
)
from gradcheck_lab.ops.windows import (
    LAYOUT_DOCS,
    Geometry,
    batched,
    check_layout,
    check_window_work,
    crop,
    pad,
    per_dim,
    scatter_windows,
    unbatched,
    window_view,
)

_SPATIAL = "xyz"  # einsum letters for up to three output positions
_KERNEL = "ijk"  # and kernel offsets


def _letters(d: int) -> tuple[str, str]:
    return _SPATIAL[:d], _KERNEL[:d]


# --- geometry ----------------------------------------------------------------------------------


def _padding(value: ParamValue, d: int, op: str, extent: Sequence[int],
             stride: Sequence[int]) -> tuple[tuple[int, int], ...]:
    """padding= as (before, after) per dim: symmetric ints, "valid" (none) or "same" (the output
    as long as the input; an odd total puts the extra element after, as torch does)."""
    if value == "valid":
        return ((0, 0),) * d
    if value == "same":
        if any(s != 1 for s in stride):
            raise SpecError(f"{op}(): padding='same' needs stride=1 (torch refuses it too)")
        return tuple(((span - 1) // 2, span - 1 - (span - 1) // 2) for span in extent)
    return tuple((p, p) for p in per_dim(value, d, op, "padding", 0))


def _geometry(name: str, d: int, weight: Shape, params: Params) -> Geometry:
    kernel = tuple(weight[2:])
    stride = per_dim(params["stride"], d, name, "stride", 1)
    dilation = per_dim(params["dilation"], d, name, "dilation", 1)
    extent = tuple(dil * (k - 1) + 1 for k, dil in zip(kernel, dilation, strict=True))
    if name.startswith("conv_transpose"):  # no "same" or "valid" there
        padding = tuple((p, p) for p in per_dim(params["padding"], d, name, "padding", 0))
    else:
        padding = _padding(params["padding"], d, name, extent, stride)
    return Geometry(kernel, stride, dilation, padding)


def _check_weight(name: str, d: int, weight: Shape, transposed: bool) -> None:
    if len(weight) != d + 2:
        layout = "in channels, out channels / groups" if transposed else \
            "out channels, in channels / groups"
        raise SpecError(f"{name}(x, w, b): w must be {d + 2}-d ({layout}, kernel), got shape "
                        f"{list(weight)}")


def _group_counts(name: str, params: Params, channels: int, weight: Shape,
                  transposed: bool) -> int:
    """The output channels, checking the channel counts divide by groups as torch requires."""
    groups = params["groups"]
    if not isinstance(groups, int) or isinstance(groups, bool) or groups < 1:
        raise SpecError(f"{name}(): groups= must be a positive int, got {groups}")
    if transposed:
        if weight[0] != channels:
            raise SpecError(f"{name}(x, w, b): x has {channels} channels but w expects "
                            f"{weight[0]} (its dim 0)")
        if channels % groups:
            raise SpecError(f"{name}(): groups={groups} does not divide the {channels} input "
                            "channels")
        return weight[1] * groups
    if channels % groups or weight[0] % groups:
        raise SpecError(f"{name}(): groups={groups} must divide the {channels} input channels "
                        f"and the {weight[0]} output channels")
    if weight[1] * groups != channels:
        expects = f"{weight[1]} per group of {groups}" if groups > 1 else f"{weight[1]}"
        raise SpecError(f"{name}(x, w, b): x has {channels} channels but w expects {expects} "
                        f"(shape {list(weight)})")
    return weight[0]


def _shape_rule(name: str, d: int, transposed: bool) -> Callable[..., Shape]:
    def rule(args: Sequence[ArgInfo], params: Params) -> Shape:
        x = args[0].shape
        check_layout(x, d, name)
        _check_weight(name, d, args[1].shape, transposed)
        outs = _group_counts(name, params, x[-d - 1], args[1].shape, transposed)
        if len(args) == 3 and args[2].shape != (outs,):
            raise SpecError(f"{name}(x, w, b): b must have shape [{outs}], got "
                            f"{list(args[2].shape)}")
        geometry = _geometry(name, d, args[1].shape, params)
        if transposed:
            spatial = _transposed_sizes(name, x[-d:], geometry, params)
            check_window_work(name, (*x[:-d - 1], outs, *spatial), geometry, x[-d:])
        else:
            spatial = geometry.out_sizes(x[-d:], name)
            check_window_work(name, x, geometry, spatial)
        # One BLAS product of the windows with the weights: a multiply-add for each window
        # element and each channel of the other side of its group.
        windowed = x[-d:] if transposed else spatial
        check_kernel_cost(name, f"the product of its windows with w {list(args[1].shape)}",
                          2 * math.prod(x[:-d]) * outs // int_param(params, "groups")
                          * math.prod(windowed) * math.prod(geometry.kernel),
                          "use fewer channels, a smaller kernel or a smaller input")
        return (*x[:-d - 1], outs, *spatial)

    return rule


def _transposed_sizes(name: str, spatial: Shape, geometry: Geometry,
                      params: Params) -> tuple[int, ...]:
    """(in - 1) stride - 2 padding + dilation (k - 1) + output_padding + 1, per dim."""
    d = len(spatial)
    extra = per_dim(params["output_padding"], d, name, "output_padding", 0)
    sizes = []
    for size, span, stride, dil, (low, high), more in zip(
            spatial, geometry.extent, geometry.stride, geometry.dilation, geometry.padding,
            extra, strict=True):
        if more >= max(stride, dil):
            raise SpecError(f"{name}(): output_padding={more} must be smaller than the stride "
                            f"or the dilation ({max(stride, dil)})")
        out = (size - 1) * stride - low - high + span + more
        if out < 1:
            raise SpecError(f"{name}(): padding={low} leaves no output (size {out})")
        sizes.append(out)
    return tuple(sizes)


# --- numpy kernels -----------------------------------------------------------------------------


def _by_group(array: np.ndarray, groups: int, axis: int) -> np.ndarray:
    """Split ``axis`` into (groups, size / groups)."""
    shape = array.shape
    return array.reshape(*shape[:axis], groups, shape[axis] // groups, *shape[axis + 1:])


def _correlate(x: np.ndarray, weight: np.ndarray, geometry: Geometry,
               groups: int) -> np.ndarray:
    """y[n, o, p] = sum over c in o's group, k: x_pad[n, c, p stride + k dilation] w[o, c, k],
    for batched x (N, C, *spatial) and w (O, C / groups, *kernel)."""
    out, kernel = _letters(len(geometry.kernel))
    windows = _by_group(window_view(pad(x, geometry), geometry), groups, 1)
    w = _by_group(weight, groups, 0)
    y = np.einsum(f"ngc{out}{kernel},goc{kernel}->ngo{out}", windows, w, optimize=True)
    return y.reshape(y.shape[0], -1, *y.shape[3:])


def _input_adjoint(g: np.ndarray, weight: np.ndarray, geometry: Geometry, groups: int,
                   spatial: Sequence[int]) -> np.ndarray:
    """The VJP of ``_correlate`` in x: each output's cotangent times w, added back over its
    window, then unpadded to ``spatial``."""
    out, kernel = _letters(len(geometry.kernel))
    spread = np.einsum(f"ngo{out},goc{kernel}->ngc{out}{kernel}", _by_group(g, groups, 1),
                       _by_group(weight, groups, 0), optimize=True)
    spread = spread.reshape(spread.shape[0], -1, *spread.shape[3:])
    channels = spread.shape[1]
    padded_shape = geometry.padded_shape((g.shape[0], channels, *spatial))
    return crop(scatter_windows(spread, geometry, padded_shape), geometry, spatial)


def _weight_adjoint(x: np.ndarray, g: np.ndarray, geometry: Geometry,
                    groups: int) -> np.ndarray:
    """The VJP of ``_correlate`` in w: the cotangent correlated with the input's windows.
    Only the windows ``g`` has a cotangent for count: a transposed convolution's output
    padding adds rows past the last window, which no weight reaches."""
    out, kernel = _letters(len(geometry.kernel))
    windows = window_view(pad(x, geometry), geometry)
    reached: Subscript = (slice(None), slice(None), *(slice(0, size) for size in g.shape[2:]))
    windows = _by_group(windows[reached], groups, 1)
    dw = np.einsum(f"ngc{out}{kernel},ngo{out}->goc{kernel}", windows, _by_group(g, groups, 1),
                   optimize=True)
    return dw.reshape(-1, *dw.shape[2:])


def _probes_vjp(name: str, d: int) -> Callable[..., Gradients]:
    """A convolution's VJP for every probe at once (g with a leading probe axis): the input
    adjoint once over probes × batch (it is separable in the batch), the weight adjoint per
    probe (it sums over the batch)."""
    def vjp(g: np.ndarray, args: Arrays, out: np.ndarray, params: Params,
            needs: Sequence[bool]) -> Gradients:
        geometry, groups = _settings(name, d, args, params)
        x, count = batched(args[0], d), len(g)
        g = as_float(g).reshape(count, *x.shape[:1], *np.shape(g)[-(d + 1):])  # (P, N, O, ...)
        grads: list[np.ndarray | None] = [None] * len(args)
        if needs[0]:
            flat = g.reshape(count * x.shape[0], *g.shape[2:])
            dx = _input_adjoint(flat, args[1], geometry, groups, x.shape[2:])
            grads[0] = dx.reshape(count, *np.shape(args[0]))
        if needs[1]:
            grads[1] = np.stack([_weight_adjoint(x, g[k], geometry, groups)
                                 for k in range(count)])
        if len(args) == 3 and needs[2]:
            grads[2] = g.sum(axis=(1, *range(3, 3 + d)))
        return grads

    return vjp


def _bias_shape(d: int) -> tuple[slice | None, ...]:
    return (slice(None), *(None,) * d)


# --- forms of the forward convolutions ---------------------------------------------------------


def _settings(name: str, d: int, args: Sequence[np.ndarray], params: Params
              ) -> tuple[Geometry, int]:
    groups = params["groups"]
    assert isinstance(groups, int)  # the shape rule checked it
    return _geometry(name, d, np.shape(args[1]), params), groups


def _conv_numpy(name: str, d: int) -> Callable[..., np.ndarray]:
    def forward(args: Sequence[np.ndarray], params: Params) -> np.ndarray:
        geometry, groups = _settings(name, d, args, params)
        y = _correlate(batched(args[0], d), args[1], geometry, groups)
        if len(args) == 3:
            y = y + args[2][_bias_shape(d)]
        return unbatched(y, args[0], d)

    return forward


def _vjp(name: str, d: int, transposed: bool) -> Callable[..., Gradients]:
    """A convolution's VJP from its two adjoints; a transposed convolution is the input
    adjoint of a convolution with w, so there dx is that convolution of dy, and dw its weight
    adjoint with the roles of input and cotangent swapped."""
    def vjp(g: np.ndarray, args: Arrays, out: np.ndarray, params: Params,
            needs: Sequence[bool]) -> Gradients:
        geometry, groups = _settings(name, d, args, params)
        x, g = batched(args[0], d), batched(as_float(g), d)
        grads: list[np.ndarray | None] = [None] * len(args)
        if needs[0]:
            if transposed:  # output padding's extra rows reach no input element
                reached: Subscript = (slice(None), slice(None),
                                      *(slice(0, size) for size in x.shape[2:]))
                dx = _correlate(g, args[1], geometry, groups)[reached]
            else:
                dx = _input_adjoint(g, args[1], geometry, groups, x.shape[2:])
            grads[0] = unbatched(dx, args[0], d)
        if needs[1]:
            grads[1] = (_weight_adjoint(g, x, geometry, groups) if transposed
                        else _weight_adjoint(x, g, geometry, groups))
        if len(args) == 3 and needs[2]:
            grads[2] = g.sum(axis=(0, *range(2, 2 + d)))
        return grads

    return vjp


def _conv_sympy(name: str, d: int) -> Callable[..., np.ndarray]:
    """A gather: each output element written out as its sum of products."""
    def form(args: Sequence[np.ndarray], params: Params) -> np.ndarray:
        geometry, groups = _settings(name, d, args, params)
        x, weight = batched(args[0], d), args[1]
        padded = np.zeros(geometry.padded_shape(x.shape), dtype=object)
        inner: Subscript = (slice(None), slice(None), *(
            slice(low, low + size) for (low, _), size in zip(geometry.padding, x.shape[2:],
                                                             strict=True)))
        padded[inner] = x
        outs, per_group = weight.shape[0], weight.shape[1]
        out = np.empty((x.shape[0], outs, *geometry.out_sizes(x.shape[2:], name)), dtype=object)
        for n, o, *position in np.ndindex(*out.shape):
            total = args[2][o] if len(args) == 3 else 0
            first = (o // (outs // groups)) * per_group
            for c, *offset in np.ndindex(per_group, *geometry.kernel):
                at = (n, first + c, *(p * s + k * dil for p, s, k, dil in zip(
                    position, geometry.stride, offset, geometry.dilation, strict=True)))
                tap = (o, c, *offset)
                total = total + padded[at] * weight[tap]
            where = (n, o, *position)
            out[where] = total
        return object_array(unbatched(out, args[0], d))

    return form


def _conv_torch(name: str, d: int) -> Callable[..., object]:
    def lower(args: Sequence[object], params: Params) -> object:
        function = getattr(torch_module().nn.functional, name)
        with warnings.catch_warnings():
            # "same" with an even kernel: torch warns that it copies the input to pad it,
            # which is its business, not the user's.
            warnings.filterwarnings("ignore", "Using padding='same'", UserWarning)
            return function(*args, stride=params["stride"], padding=params["padding"],
                            dilation=params["dilation"], groups=params["groups"])

    return lower


# --- forms of the transposed convolutions ------------------------------------------------------


def _transposed_numpy(name: str, d: int) -> Callable[..., np.ndarray]:
    def forward(args: Sequence[np.ndarray], params: Params) -> np.ndarray:
        geometry, groups = _settings(name, d, args, params)
        x = batched(args[0], d)
        spatial = _transposed_sizes(name, x.shape[2:], geometry, params)
        y = _input_adjoint(x, args[1], geometry, groups, spatial)
        if len(args) == 3:
            y = y + args[2][_bias_shape(d)]
        return unbatched(y, args[0], d)

    return forward


def _transposed_sympy(name: str, d: int) -> Callable[..., np.ndarray]:
    """A scatter: each input element times each weight added at the output it reaches."""
    def form(args: Sequence[np.ndarray], params: Params) -> np.ndarray:
        geometry, groups = _settings(name, d, args, params)
        x, weight = batched(args[0], d), args[1]
        spatial = _transposed_sizes(name, x.shape[2:], geometry, params)
        per_group_in, per_group_out = x.shape[1] // groups, weight.shape[1]
        full = np.zeros(geometry.padded_shape((x.shape[0], per_group_out * groups, *spatial)),
                        dtype=object)
        for n, c, *position in np.ndindex(*x.shape):
            first = (c // per_group_in) * per_group_out
            for o, *offset in np.ndindex(per_group_out, *geometry.kernel):
                at = (n, first + o, *(p * s + k * dil for p, s, k, dil in zip(
                    position, geometry.stride, offset, geometry.dilation, strict=True)))
                read, tap = (n, c, *position), (c, o, *offset)
                full[at] += x[read] * weight[tap]
        out = crop(full, geometry, spatial)
        if len(args) == 3:
            out = out + args[2][_bias_shape(d)]
        return object_array(unbatched(out, args[0], d))

    return form


def _transposed_torch(name: str) -> Callable[..., object]:
    def lower(args: Sequence[object], params: Params) -> object:
        function = getattr(torch_module().nn.functional, name)
        return function(*args, stride=params["stride"], padding=params["padding"],
                        output_padding=params["output_padding"], groups=params["groups"],
                        dilation=params["dilation"])

    return lower


# --- the ops -----------------------------------------------------------------------------------

def _convolution(d: int) -> Op:
    name = f"conv{d}d"
    return Op(
        name=name,
        arg_names=("input", "weight", "bias"),
        positional=("input", "weight", "bias", "stride", "padding", "dilation", "groups"),
        group="nn",
        doc=(f"`input` {LAYOUT_DOCS[d]}, `weight` `(O, C / groups, *kernel)`, `bias` optional; "
             "`stride`, `padding` (or `'same'`, `'valid'`), `dilation` an int or one per dim; "
             "`groups`"),
        min_args=2,
        max_args=3,
        params=(Param("stride", "dims", default=1),
                Param("padding", "dims", default=0, choices=("same", "valid")),
                Param("dilation", "dims", default=1), Param("groups", "int", default=1)),
        shape=_shape_rule(name, d, transposed=False),
        torch=_conv_torch(name, d),
        numpy=_conv_numpy(name, d),
        vjp=_vjp(name, d, transposed=False),
        vjp_magnitude=linear_magnitudes(_vjp(name, d, transposed=False)),  # linear in x, w, b
        probes_vjp=_probes_vjp(name, d),
        sympy=_conv_sympy(name, d),
    )


def _transposed_convolution(d: int) -> Op:
    name = f"conv_transpose{d}d"
    return Op(
        name=name,
        arg_names=("input", "weight", "bias"),
        positional=("input", "weight", "bias", "stride", "padding", "output_padding", "groups",
                    "dilation"),
        group="nn",
        doc=(f"the adjoint of conv{d}d in its input: `input` {LAYOUT_DOCS[d]}, `weight` "
             "`(C, O / groups, *kernel)`; `stride`, `padding`, `output_padding`, `groups`, "
             "`dilation`"),
        min_args=2,
        max_args=3,
        params=(Param("stride", "dims", default=1), Param("padding", "dims", default=0),
                Param("output_padding", "dims", default=0), Param("groups", "int", default=1),
                Param("dilation", "dims", default=1)),
        shape=_shape_rule(name, d, transposed=True),
        torch=_transposed_torch(name),
        numpy=_transposed_numpy(name, d),
        vjp=_vjp(name, d, transposed=True),
        vjp_magnitude=linear_magnitudes(_vjp(name, d, transposed=True)),
        sympy=_transposed_sympy(name, d),
    )


CONV = [*(_convolution(d) for d in (1, 2, 3)), *(_transposed_convolution(d) for d in (1, 2, 3))]
