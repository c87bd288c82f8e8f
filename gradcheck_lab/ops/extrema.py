"""The largest and smallest element: ``amax amin`` over ``dim`` (an int or a tuple), ``max
min`` over everything or one ``dim`` (giving the values, torch's ``.values``). The gradient
goes to the extreme element; where several tie, the function has a kink there (torch splits
the gradient among them, or picks one), reported and skipped as relu's at 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from gradcheck_lab.errors import SpecError
from gradcheck_lab.ops.base import ArgInfo, Op, Param, Params, Shape
from gradcheck_lab.ops.reductions import reduction, slices_of


def _extreme_of(largest: bool) -> Any:
    return np.max if largest else np.min


def _sympy_extreme(largest: bool) -> Any:
    def form(a: np.ndarray, axes: tuple[int, ...], params: Params) -> np.ndarray:
        import sympy

        pick = sympy.Max if largest else sympy.Min
        rows, kept = slices_of(a, axes)
        values = np.empty(rows.shape[0], dtype=object)
        values[:] = [pick(*row) for row in rows]
        return values.reshape(kept)

    return form


def _torch_extreme(name: str) -> Any:
    def lower(torch: Any, a: Any, axes: tuple[int, ...], params: Params) -> Any:
        if not axes:
            return a
        if name in ("amax", "amin"):
            return getattr(torch, name)(a, dim=axes, keepdim=True)
        if params["dim"] is None:  # max(x): over everything, a 0-d value; kept dims back
            return getattr(torch, name)(a).reshape([1] * a.ndim)
        return getattr(torch, name)(a, dim=axes[0], keepdim=True).values

    return lower


def _to_the_extreme(g: np.ndarray, x: np.ndarray, out: np.ndarray, axes: tuple[int, ...],
                    params: Params) -> np.ndarray:
    """The cotangent, shared by the elements equal to the extreme (one, off a tie)."""
    hit = x == out
    count = np.sum(hit, axis=axes, keepdims=True) if axes else np.ones_like(x)
    return np.where(hit, g / count, 0.0)


def _ties(g: np.ndarray, x: np.ndarray, out: np.ndarray, axes: tuple[int, ...],
          params: Params) -> np.ndarray:
    hit = x == out
    if not axes:
        return np.zeros(x.shape, dtype=bool)
    return hit & (np.sum(hit, axis=axes, keepdims=True) > 1)


# sympy's Max compares its arguments pairwise as it builds (0.2 s for 8, 6 s for 24): beyond
# this many input elements the exact oracle leaves the case to the rule sweep.
EXACT_MAX_ELEMENTS = 16


def _exact_limit(args: Sequence[ArgInfo]) -> str | None:
    size = int(np.prod(args[0].shape, dtype=np.int64))
    if size > EXACT_MAX_ELEMENTS:
        return f"a max or min over {size} elements (sympy affords {EXACT_MAX_ELEMENTS})"
    return None


def _one_dim(name: str) -> Any:
    def check(shape: Shape, axes: tuple[int, ...], params: Params) -> None:
        if isinstance(params["dim"], tuple) and len(params["dim"]) != 1:
            raise SpecError(f"{name}() takes one dim (an int), as torch does; amax and amin "
                            "take a tuple")

    return check


def _extreme(name: str, largest: bool, one_dim: bool) -> Op:
    word = "largest" if largest else "smallest"
    doc = (f"the {word} element over every dim, or the {word} along `dim` (the values)"
           if one_dim else f"the {word} element over every dim, or `dim` (an int or a tuple)")
    return reduction(
        name,
        numpy_form=lambda a, axes, p: _extreme_of(largest)(a, axis=axes, keepdims=True),
        sympy_form=_sympy_extreme(largest), torch_form=_torch_extreme(name),
        vjp=_to_the_extreme, kinks=_ties, kink_where="at a tie for the extreme",
        params=(Param("dim", "dims"), Param("keepdim", "bool", default=False)),
        check=_one_dim(name) if one_dim else None, exact_limit=_exact_limit, doc=doc)


EXTREMA = [_extreme("amax", True, False), _extreme("amin", False, False),
           _extreme("max", True, True), _extreme("min", False, True)]
