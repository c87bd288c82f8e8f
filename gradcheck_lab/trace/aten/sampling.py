"""Resampling: upsampling kernels as ``interpolate``, grid samplers as ``grid_sample``, and the
affine grid as a matrix product with its (constant) base grid."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from gradcheck_lab.errors import SpecError
from gradcheck_lab.trace.aten.table import Args, Writer, ints, register

_GRID_MODES = ("bilinear", "nearest", "bicubic")  # aten's interpolation_mode enum
_GRID_PADDINGS = ("zeros", "border", "reflection")  # aten's padding_mode enum
_SCALE_KEYS = ("scales_d", "scales_h", "scales_w")


def _upsample(mode: str, dims: int, antialias: bool = False) -> Any:
    """upsample_*(input, output_size, [align_corners,] scales... | scale_factors): torch's
    kernels read a given scale as is (the source index is out / scale), so a scale, where
    given, is what the language's ``interpolate`` gets; else the size."""
    def translate(w: Writer, a: Args) -> int:
        x = w.node(a.get("input", a.get("self")))
        spatial = w.shape(x)[2:]
        scales = a.get("scale_factors")
        if scales is None and "output_size" in a and any(
                a.get(key) is not None for key in _scale_keys(dims, a)):
            scales = [a.get(key) for key in _scale_keys(dims, a)]
        params: dict[str, Any] = {"mode": mode}
        if "align_corners" in a and mode not in ("nearest", "nearest-exact"):
            params["align_corners"] = bool(a["align_corners"])
        if antialias:
            params["antialias"] = True
        if scales is not None and all(s is not None for s in scales):
            sizes = tuple(math.floor(n * float(s)) for n, s in zip(spatial, scales,
                                                                  strict=True))
            given = a.get("output_size")
            if given is not None and tuple(ints(given)) != sizes:
                raise SpecError(f"an upsampling to {list(ints(given))} with scales "
                                f"{list(scales)}, which interpolate() cannot say at once")
            params["scale_factor"] = tuple(float(s) for s in scales)
        else:
            params["size"] = ints(a["output_size"])
        return w.call("interpolate", x, **params)

    return translate


def _scale_keys(dims: int, a: Args) -> tuple[str, ...]:
    return ("scales",) if "scales" in a else _SCALE_KEYS[3 - dims:]


for _d, _linear in ((1, "linear"), (2, "bilinear"), (3, "trilinear")):
    for _overload in ("default", "vec"):
        register(f"aten.upsample_nearest{_d}d.{_overload}", _upsample("nearest", _d))
        register(f"aten._upsample_nearest_exact{_d}d.{_overload}",
                 _upsample("nearest-exact", _d))
        _name = {1: "upsample_linear1d", 2: "upsample_bilinear2d", 3: "upsample_trilinear3d"}[_d]
        register(f"aten.{_name}.{_overload}", _upsample(_linear, _d))
for _overload in ("default", "vec"):
    register(f"aten.upsample_bicubic2d.{_overload}", _upsample("bicubic", 2))
    register(f"aten._upsample_bilinear2d_aa.{_overload}", _upsample("bilinear", 2, True))
    register(f"aten._upsample_bicubic2d_aa.{_overload}", _upsample("bicubic", 2, True))


def _grid_sampler(w: Writer, a: Args) -> int:
    """grid_sampler_2d/3d(input, grid, interpolation_mode, padding_mode, align_corners)."""
    return w.call("grid_sample", w.node(a["input"]), w.node(a["grid"]),
                  mode=_GRID_MODES[int(a["interpolation_mode"])],
                  padding_mode=_GRID_PADDINGS[int(a["padding_mode"])],
                  align_corners=bool(a["align_corners"]))


register("aten.grid_sampler_2d.default aten.grid_sampler_3d.default "
         "aten.grid_sampler.default", _grid_sampler)


def _affine_grid(w: Writer, a: Args) -> int:
    """affine_grid_generator(theta, size, align_corners): each output location's normalized
    coordinates (and a 1), a constant, times thetaᵀ."""
    size = ints(a["size"])
    spatial = size[2:]
    axes = [_coordinates(n, bool(a["align_corners"])) for n in reversed(spatial)]
    mesh = np.meshgrid(*axes[::-1], indexing="ij")[::-1]  # x varies fastest, as torch's
    base = np.stack([*mesh, np.ones(spatial)], axis=-1).reshape(1, -1, len(spatial) + 1)
    theta = w.node(a["theta"])
    grid = w.call("matmul", w.node(base), w.call("transpose", theta, dim0=1, dim1=2))
    return w.call("reshape", grid, shape=(size[0], *spatial, len(spatial)))


def _coordinates(n: int, align_corners: bool) -> np.ndarray:
    """torch's normalized coordinates of n points in [-1, 1] (pixel centres unless the
    corners are aligned)."""
    if n <= 1:
        return np.zeros(max(n, 1))
    points = np.linspace(-1.0, 1.0, n)
    return points if align_corners else points * (n - 1) / n


register("aten.affine_grid_generator.default", _affine_grid)
