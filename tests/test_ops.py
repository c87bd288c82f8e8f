"""Every op of the case language, confirmed three ways at small sizes.

For each example in ``EXAMPLES`` (an op, its argument shapes, its params and value ranges that
keep it differentiable):

* the closed-form VJP rule agrees with the exact Jacobian that sympy derives from the op's
  sympy form (object arrays of Symbols, ``sympy.diff``, the point substituted at 30 digits);
* the sympy form evaluates to the numpy forward;
* the numpy forward and VJP agree with torch's forward and ``torch.autograd.grad`` in float64;
* the shape rule predicts the shape numpy and torch actually produce.

Then the shape rules' refusals, pow at a zero base, the kink masks, and cross_entropy's
class-range check.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np
import pytest
import sympy
from numpy.typing import ArrayLike

from gradcheck_lab.errors import SpecError
from gradcheck_lab.ops import OPS, ArgInfo, Op, Params, ParamValue, Shape
from gradcheck_lab.ops.derivatives import drop_steps

SEED = 20240611
EPS64 = float(np.finfo(np.float64).eps)
# Two float64 computations of the same math (numpy vs torch, closed-form rule vs the exact
# value rounded once) each round once per elementary operation. Our examples have at most a
# few dozen terms per output and a handful of transcendental calls (each within a few ulps in
# libm or torch's kernels), so they can differ by at most a few dozen ulps of the magnitude of
# the terms involved. 64 ulps (about 1.4e-14 at scale 1) leaves headroom for that and is still
# some twelve orders of magnitude below what a wrong rule (a missing term, a wrong sign, a
# wrong reduction axis) produces at these O(1) values.
ULPS = 64
EXACT_DIGITS = 30  # the exact Jacobian is evaluated at 30 digits, then rounded once


def assert_same_math(actual: ArrayLike, expected: ArrayLike, scale: ArrayLike | None = None,
                     ulps: int = ULPS) -> None:
    """The same math computed two ways in float64: equal shapes, and values within ``ulps`` ulps
    of ``scale`` (by default max(1, |expected|): absolute below 1, relative above)."""
    actual, expected = np.asarray(actual, dtype=np.float64), np.asarray(expected, np.float64)
    assert actual.shape == expected.shape
    if scale is None:
        scale = np.maximum(1.0, np.abs(expected))
    np.testing.assert_array_less(np.abs(actual - expected), ulps * EPS64 * scale + 1e-300)


# --- the example table --------------------------------------------------------------------


@dataclass(frozen=True)
class Arg:
    """One argument: its shape and where its values are drawn from."""

    shape: Shape
    low: float = -2.0
    high: float = 2.0
    away_from_zero: bool = False  # |value| in [0.25, high]: clear of relu/abs's kink at 0
    classes: int | None = None  # an integer class-index target in [0, classes)
    condition: bool = False  # a bool tensor, as a comparison gives
    frozen: bool = False  # real, but torch's function takes no gradient for it (a weight)

    @property
    def is_integer(self) -> bool:
        """Not real: a class index or a condition (never differentiated)."""
        return self.classes is not None or self.condition


@dataclass(frozen=True)
class Example:
    op: str
    args: tuple[Arg, ...]
    params: Params = field(default_factory=dict)

    @property
    def full_params(self) -> Params:
        """The example's params over the op's defaults, as the case loader passes them."""
        return {p.name: p.default for p in OPS[self.op].params} | self.params

    @property
    def id(self) -> str:
        shapes = ", ".join(
            ("int" if a.is_integer else "") + "x".join(map(str, a.shape)) or "()"
            for a in self.args)
        params = "".join(f", {k}={v}" for k, v in self.params.items())
        return f"{self.op}({shapes}{params})"


def real(*shape: int, low: float = -2.0, high: float = 2.0) -> Arg:
    return Arg(tuple(shape), low, high)


def positive(*shape: int) -> Arg:
    return Arg(tuple(shape), 0.25, 3.0)


def classes(count: int, *shape: int) -> Arg:
    return Arg(tuple(shape), classes=count)


def probabilities(*shape: int) -> Arg:
    return Arg(tuple(shape), 0.05, 0.95)


def signs(*shape: int) -> Arg:
    return Arg(tuple(shape), -1.0, 1.0, away_from_zero=True)


def weight(*shape: int) -> Arg:
    return Arg(tuple(shape), 0.25, 3.0, frozen=True)


def condition(*shape: int) -> Arg:
    return Arg(tuple(shape), condition=True)


def has_derivative(op: Op) -> bool:
    return op.returns not in ("bool", "int")  # conditions and one_hot


def unary(name: str, arg: Arg) -> list[Example]:
    """A unary elementwise op at a 0-d, a 1-d and a 2-d argument drawn like ``arg``."""
    return [Example(name, (Arg(shape, arg.low, arg.high, arg.away_from_zero),))
            for shape in [(), (4,), (2, 3)]]


def reductions(name: str) -> list[Example]:
    return [
        Example(name, (real(),)),
        Example(name, (real(5),)),
        Example(name, (real(2, 3),)),
        Example(name, (real(2, 3),), {"keepdim": True}),
        Example(name, (real(2, 3),), {"dim": 0}),
        Example(name, (real(2, 3),), {"dim": -1, "keepdim": True}),
        Example(name, (real(2, 3, 2),), {"dim": (0, 2)}),
        Example(name, (real(2, 3, 2),), {"dim": (-1, 1), "keepdim": True}),
    ]


# Every unary elementwise op, in the range its op table entry says it is smooth in (clear of
# its kink, if it has one): a new elementwise function is tested here without an edit.
EXAMPLES = [
    *(example for name, op in OPS.items()
      if op.is_elementwise and op.min_args == op.max_args == 1 and not op.bool_args
      for example in unary(name, Arg((), *op.smooth_range, away_from_zero=op.kinks is not None))),
    # Conditions and selection. Comparisons and & | ^ ~ have no derivative: their forms are
    # confirmed against each other; where and clamp three ways.
    Example("gt", (real(2, 3), real(3))),
    Example("lt", (real(2, 3), real())),
    Example("ge", (real(4), real(4))),
    Example("le", (real(3, 1), real(1, 2))),
    Example("eq", (Arg((2, 3), classes=3), Arg((3,), classes=3))),  # integer tensors compare
    Example("ne", (Arg((4,), classes=2), Arg((), classes=2))),
    Example("logical_and", (condition(2, 3), condition(3))),
    Example("logical_or", (condition(4), condition(4))),
    Example("logical_xor", (condition(2, 2), condition(2, 2))),
    Example("logical_not", (condition(2, 3),)),
    Example("where", (condition(2, 3), real(2, 3), real(3))),
    Example("where", (condition(3), real(), real(2, 3))),
    Example("clamp", (real(2, 3), real(3, low=-1.0, high=0.0)), {"given": (0, 1)}),
    Example("clamp", (real(2, 3), real(low=0.0, high=1.0)), {"given": (0, 2)}),
    Example("clamp", (real(2, 3, low=-3.0, high=3.0), real(3, low=-1.0, high=0.0),
                      real(2, 1, low=0.5, high=1.5)), {"given": (0, 1, 2)}),
    # min above max: the value is max everywhere, and max alone has a gradient.
    Example("clamp", (real(2, 3), real(3, low=1.0, high=2.0), real(3, low=-2.0, high=0.5)),
            {"given": (0, 1, 2)}),
    Example("add", (real(2, 3), real(2, 3))),
    Example("add", (real(2, 3), real(3))),  # broadcasting: the VJP sums back
    Example("sub", (real(3, 1), real(1, 2))),
    Example("sub", (real(), real(2, 2))),
    Example("mul", (real(2, 3), real())),
    Example("mul", (real(2, 1, 3), real(2, 3))),
    Example("div", (real(2, 3), positive(2, 1))),
    Example("div", (real(3), Arg((3,), -2.0, 2.0, away_from_zero=True))),
    Example("pow", (positive(2, 3), real(2, 3, low=-1.5, high=2.5))),
    Example("softplus", (real(2, 3),), {"beta": 2.5}),
    Example("softplus", (real(8, low=-4.0, high=4.0),), {"beta": 0.5, "threshold": 1.0}),
    Example("softplus", (real(4),), {"beta": -1.5}),
    Example("gelu", (real(2, 3, low=-3.0, high=3.0),), {"approximate": "tanh"}),
    Example("elu", (Arg((2, 3), -2.0, 2.0, away_from_zero=True),), {"alpha": 0.5}),
    Example("celu", (real(2, 3),), {"alpha": 2.0}),
    Example("leaky_relu", (Arg((6,), -2.0, 2.0, away_from_zero=True),),
            {"negative_slope": 0.2}),
    Example("hardtanh", (real(2, 4, low=-3.0, high=3.0),), {"min_val": -0.5, "max_val": 1.5}),
    Example("atan2", (real(2, 3), real(3))),
    Example("hypot", (real(2, 3), real(2, 1))),
    Example("remainder", (real(2, 3, low=-5.0, high=5.0), positive(3))),
    Example("remainder", (real(3), Arg((3,), -2.0, 2.0, away_from_zero=True))),
    Example("fmod", (real(2, 3, low=-5.0, high=5.0), Arg((3,), -2.0, 2.0, away_from_zero=True))),
    Example("maximum", (real(2, 3), real(3))),
    Example("minimum", (real(3, 1), real(1, 2))),
    Example("pow", (positive(3), real())),
    *reductions("sum"),
    *reductions("mean"),
    # Structure: each moves elements; the VJP adds each cotangent back where it came from.
    Example("getitem", (real(4, 5),), {"index": "1:3, ::2"}),
    Example("getitem", (real(2, 3, 4),), {"index": "..., -1"}),
    Example("getitem", (real(3, 4),), {"index": "None, 1"}),
    Example("getitem", (real(5),), {"index": "-3:"}),
    Example("narrow", (real(3, 5),), {"dim": 1, "start": 1, "length": 3}),
    Example("narrow", (real(4, 2),), {"dim": 0, "start": -2, "length": 2}),
    Example("flip", (real(3, 4),), {"dims": (0, 1)}),
    Example("flip", (real(5),), {"dims": 0}),
    Example("roll", (real(3, 4),), {"shifts": (1, -2), "dims": (0, 1)}),
    Example("roll", (real(2, 3),), {"shifts": 4}),
    Example("cat", (real(2, 3), real(1, 3), real(4, 3)), {"dim": 0}),
    Example("cat", (real(2, 3), real(2, 1)), {"dim": -1}),
    Example("stack", (real(2, 3), real(2, 3)), {"dim": 1}),
    Example("stack", (real(3), real(3), real(3)), {"dim": 0}),
    Example("split", (real(5, 3),), {"split_size_or_sections": 2, "dim": 0, "part": 2}),
    Example("split", (real(2, 6),), {"split_size_or_sections": (1, 3, 2), "dim": 1,
                                     "part": 1}),
    Example("chunk", (real(7, 2),), {"chunks": 3, "dim": 0, "part": -1}),
    Example("squeeze", (real(1, 3, 1),), {"dim": None}),
    Example("squeeze", (real(1, 3, 1),), {"dim": (0, 1)}),  # 1 is not size 1: kept
    Example("unsqueeze", (real(2, 3),), {"dim": -1}),
    Example("expand", (real(3, 1),), {"size": (2, 3, 4)}),
    Example("expand", (real(1, 4),), {"size": (3, -1)}),
    Example("broadcast_to", (real(3),), {"size": (2, 3)}),
    Example("permute", (real(2, 3, 4),), {"dims": (2, 0, 1)}),
    Example("movedim", (real(2, 3, 4),), {"source": 0, "destination": -1}),
    Example("movedim", (real(2, 3, 4),), {"source": (0, 1), "destination": (2, 0)}),
    Example("tile", (real(2, 3),), {"dims": (2, 1)}),
    Example("tile", (real(3),), {"dims": (2, 2)}),
    Example("repeat_interleave", (real(2, 3),), {"repeats": 2, "dim": 1}),
    Example("repeat_interleave", (real(2, 2),), {"repeats": 3}),
    Example("diagonal", (real(3, 4),), {"offset": 1}),
    Example("diagonal", (real(2, 3, 3),), {"offset": -1, "dim1": 1, "dim2": 2}),
    Example("tril", (real(3, 4),), {"diagonal": 0}),
    Example("triu", (real(2, 3, 3),), {"diagonal": -1}),
    Example("index_select", (real(4, 3), classes(4, 5)), {"dim": 0}),
    Example("index_select", (real(2, 5), classes(5, 3)), {"dim": 1}),
    Example("gather", (real(3, 4), classes(4, 3, 2)), {"dim": 1}),
    Example("gather", (real(4, 3), classes(4, 2, 3)), {"dim": 0}),
    Example("embedding", (classes(5, 2, 3), real(5, 4))),
    Example("pad", (real(2, 3),), {"pad": (1, 2)}),
    Example("pad", (real(2, 3),), {"pad": (1, 0, 2, 1), "value": 0.5}),
    Example("pad", (real(1, 2, 4),), {"pad": (2, 1), "mode": "reflect"}),
    Example("pad", (real(1, 3, 3),), {"pad": (1, 2, 2, 0), "mode": "replicate"}),
    Example("pad", (real(2, 3),), {"pad": (2, 3), "mode": "circular"}),
    Example("one_hot", (classes(4, 3),), {"num_classes": 4}),
    Example("einsum", (real(2, 3), real(3, 4)), {"equation": "ij,jk->ik"}),
    Example("einsum", (real(2, 3), real(2, 3)), {"equation": "ij,ij"}),
    Example("einsum", (real(2, 3), real(4)), {"equation": "ij,k->kji"}),
    Example("einsum", (real(2, 3, 4),), {"equation": "bij->j"}),  # i, b summed away
    Example("einsum", (real(2, 3), real(3), real(3, 2)), {"equation": "ij,j,jk->ik"}),
    Example("dot", (real(4), real(4))),
    Example("outer", (real(3), real(2))),
    Example("bmm", (real(2, 3, 4), real(2, 4, 2))),
    Example("trace", (real(3, 4),)),
    Example("matmul", (real(2, 1, 3, 4), real(3, 4, 2))),  # batch dims broadcast
    Example("pack", (real(2, 3), real(), real(4))),  # named outputs, joined
    Example("softmin", (real(2, 3),)),
    Example("softmin", (real(2, 3),), {"dim": 0}),
    Example("glu", (real(2, 4),)),
    Example("glu", (real(4, 3),), {"dim": 0}),
    Example("glu", (real(6),)),
    *reductions("prod"),
    *reductions("amax"),
    *reductions("amin"),
    *(e for name in ("max", "min") for e in reductions(name)
      if not isinstance(e.params.get("dim"), tuple)),  # one dim at most, as torch
    *(Example(name, (real(5),), params) for name in ("var", "std")
      for params in ({}, {"correction": 0}, {"correction": 2.5})),
    *(Example(name, (real(2, 3, 2),), params) for name in ("var", "std")
      for params in ({"dim": 1}, {"dim": (0, 2), "keepdim": True}, {"dim": -1})),
    Example("var", (real(),), {"correction": 0}),  # one element: no spread
    *(Example("vector_norm", (Arg((2, 3), away_from_zero=True),), params)
      for params in ({}, {"ord": 1.0}, {"ord": 3.0}, {"ord": 0.5, "dim": 1},
                     {"dim": (0, 1), "keepdim": True})),
    Example("norm", (real(4),)),
    Example("norm", (Arg((2, 3), away_from_zero=True),), {"p": 1.5, "dim": 0}),
    *(Example(name, (real(*shape, low=low, high=2.0),), {"dim": dim})
      for name, low in (("cumsum", -2.0), ("cumprod", -2.0), ("logcumsumexp", -2.0))
      for shape, dim in (((5,), 0), ((2, 4), 1), ((3, 2), 0), ((2, 3), -1), ((), 0))),
    Example("matmul", (real(3), real(3))),  # 1-d @ 1-d: a dot product, 0-d result
    Example("matmul", (real(2, 3), real(3))),
    Example("matmul", (real(3), real(3, 2))),
    Example("matmul", (real(2, 3), real(3, 4))),
    Example("matmul", (real(2, 2, 3), real(2, 3, 2))),  # batched
    Example("matmul", (real(1, 2, 3), real(2, 3, 2))),  # batch dims broadcast
    Example("matmul", (real(2, 3), real(2, 3, 2))),  # 2-d @ batched
    Example("matmul", (real(3), real(2, 3, 2))),  # 1-d @ batched
    Example("matmul", (real(2, 2, 3), real(3))),  # batched @ 1-d
    Example("linear", (real(3), real(2, 3))),
    Example("linear", (real(3), real(2, 3), real(2))),
    Example("linear", (real(4, 3), real(2, 3))),
    Example("linear", (real(4, 3), real(2, 3), real(2))),
    Example("linear", (real(2, 2, 3), real(2, 3), real(2))),
    *(Example(name, (real(*shape),), params)
      for name in ("softmax", "log_softmax")
      for shape, params in [((4,), {}), ((2, 3), {}), ((2, 3), {"dim": 0}),
                            ((2, 3), {"dim": -2}), ((2, 3, 2), {"dim": 1})]),
    Example("cross_entropy", (real(3, 4), classes(4, 3))),  # (N, C) logits, class indices
    Example("cross_entropy", (real(3, 4), classes(4, 3), weight(4)), {"reduction": "sum"}),
    Example("cross_entropy", (real(3, 4), classes(4, 3), weight(4)),
            {"label_smoothing": 0.2}),
    Example("cross_entropy", (real(5, 3), Arg((5,), classes=3)), {"ignore_index": 1}),
    Example("cross_entropy", (real(3, 4), classes(4, 3)),
            {"reduction": "none", "label_smoothing": 0.1}),
    Example("cross_entropy", (real(3, 4), probabilities(3, 4), weight(4)),
            {"label_smoothing": 0.3}),
    Example("cross_entropy", (real(4), classes(4)), {"reduction": "none"}),
    Example("nll_loss", (real(3, 4, low=-3.0, high=-0.1), classes(4, 3))),
    Example("nll_loss", (real(3, 4), classes(4, 3), weight(4)), {"reduction": "none"}),
    Example("nll_loss", (real(5, 3), Arg((5,), classes=3)), {"ignore_index": 0}),
    Example("cross_entropy", (real(4), classes(4))),  # (C,) logits, one 0-d class index
    Example("cross_entropy", (real(3, 4), real(3, 4, low=0.0, high=1.0))),  # probabilities
    Example("cross_entropy", (real(4), real(4, low=0.0, high=1.0))),
    Example("mse_loss", (real(2, 3), real(2, 3))),
    Example("mse_loss", (real(), real())),
]

# Shape ops, logsumexp, layer_norm, conv2d and max_pool2d. Continuous random values make ties
# in a max_pool window (its kinks) a probability-zero event.
EXAMPLES += [
    Example("reshape", (real(2, 3),), {"shape": (3, 2)}),
    Example("reshape", (real(2, 3),), {"shape": (-1,)}),
    Example("reshape", (real(2, 3, 2),), {"shape": (2, -1, 3)}),
    Example("reshape", (real(2, 3),), {"shape": 6}),  # an int: a 1-d result
    Example("reshape", (real(1),), {"shape": ()}),  # one element to a 0-d tensor
    Example("reshape", (real(),), {"shape": (1, -1)}),
    Example("flatten", (real(2, 3, 2),)),
    Example("flatten", (real(2, 3, 2),), {"start_dim": 1}),
    Example("flatten", (real(2, 3, 2, 2),), {"start_dim": 1, "end_dim": -2}),
    Example("flatten", (real(4),)),
    Example("flatten", (real(),)),  # a 0-d tensor flattens to shape [1]
    Example("transpose", (real(2, 3),), {"dim0": 0, "dim1": 1}),
    Example("transpose", (real(2, 3, 4),), {"dim0": -1, "dim1": 0}),
    Example("transpose", (real(2, 3, 2),), {"dim0": -2, "dim1": -1}),
    Example("transpose", (real(2, 3),), {"dim0": 1, "dim1": 1}),
    Example("transpose", (real(),), {"dim0": 0, "dim1": -1}),
    Example("select", (real(3),), {"dim": 0, "index": 1}),  # a 0-d result
    Example("select", (real(2, 3),), {"dim": 1, "index": -1}),
    Example("select", (real(2, 3, 4),), {"dim": -2, "index": 0}),
    Example("logsumexp", (real(4),), {"dim": 0}),
    Example("logsumexp", (real(2, 3),), {"dim": 1}),
    Example("logsumexp", (real(2, 3),), {"dim": -2, "keepdim": True}),
    Example("logsumexp", (real(2, 3, 2),), {"dim": (0, 2)}),
    Example("logsumexp", (real(),), {"dim": 0}),
    Example("logsumexp", (real(3, low=700.0, high=760.0),), {"dim": 0}),  # exp overflows
    Example("layer_norm", (real(4),)),
    Example("layer_norm", (real(2, 3), real(3), real(3))),
    Example("layer_norm", (real(2, 3), real(3))),
    Example("layer_norm", (real(2, 3), real(3)), {"eps": 0.5}),
    Example("layer_norm", (real(3, 4), real(4), real(4)), {"normalized_shape": 4}),
    Example("layer_norm", (real(2, 2, 3), real(2, 3), real(2, 3)),
            {"normalized_shape": (2, 3)}),
    Example("conv2d", (real(1, 2, 4, 4), real(3, 2, 3, 3), real(3))),
    Example("conv2d", (real(1, 1, 4, 4), real(2, 1, 3, 3)), {"padding": 1}),
    Example("conv2d", (real(2, 1, 5, 5), real(2, 1, 3, 3), real(2)), {"stride": 2}),
    Example("conv2d", (real(1, 1, 5, 5), real(1, 1, 3, 3), real(1)),
            {"stride": 2, "padding": 1}),
    Example("conv2d", (real(1, 2, 4, 5), real(2, 2, 2, 3)),  # non-square kernel and settings
            {"stride": (1, 2), "padding": (1, 0)}),
    Example("conv2d", (real(2, 4, 4), real(1, 2, 2, 2), real(1))),  # unbatched (C, H, W)
    Example("max_pool2d", (real(1, 1, 4, 4),), {"kernel_size": 2}),
    Example("max_pool2d", (real(1, 2, 4, 4),), {"kernel_size": 2, "stride": 1}),  # overlapping
    Example("max_pool2d", (real(2, 1, 5, 5),), {"kernel_size": 3, "stride": 2}),
    Example("max_pool2d", (real(1, 1, 4, 6),), {"kernel_size": (2, 3)}),
    Example("max_pool2d", (real(1, 1, 5, 5),), {"kernel_size": 2}),  # the last row/col unused
    Example("max_pool2d", (real(2, 4, 4),), {"kernel_size": 2, "stride": (2, 1)}),  # unbatched
    # Grouped, dilated, "same" and "valid" convolutions in 1, 2 and 3 dims.
    Example("conv2d", (real(1, 4, 5, 6), real(6, 2, 3, 2), real(6)),
            {"groups": 2, "dilation": (2, 1), "stride": (1, 2), "padding": 1}),
    Example("conv2d", (real(1, 2, 4, 5), real(2, 2, 2, 3)), {"padding": "same"}),  # even kernel
    Example("conv2d", (real(1, 3, 4, 4), real(3, 1, 3, 3)), {"groups": 3, "padding": "valid"}),
    Example("conv1d", (real(2, 3, 9), real(4, 3, 3), real(4)), {"stride": 2, "dilation": 2}),
    Example("conv1d", (real(3, 7), real(2, 3, 4)), {"padding": "same"}),  # unbatched (C, L)
    Example("conv3d", (real(1, 2, 3, 4, 3), real(2, 2, 2, 3, 2), real(2)),
            {"padding": (1, 0, 1)}),
    Example("conv3d", (real(1, 2, 4, 4, 4), real(2, 1, 2, 2, 2)), {"groups": 2, "stride": 2}),
    Example("conv_transpose2d", (real(1, 4, 3, 3), real(4, 3, 3, 2), real(6)),
            {"groups": 2, "stride": 2, "padding": 1, "output_padding": 1, "dilation": (1, 2)}),
    Example("conv_transpose2d", (real(2, 2, 3), real(2, 3, 2, 2))),  # unbatched
    Example("conv_transpose1d", (real(2, 3, 4), real(3, 2, 3), real(2)),
            {"stride": 3, "output_padding": 2}),
    Example("conv_transpose3d", (real(1, 2, 2, 3, 2), real(2, 1, 2, 2, 2)), {"stride": 2}),
    # Pooling with padding (read as -inf by max, as 0 by avg), dilation and ceil_mode.
    Example("max_pool2d", (real(1, 2, 5, 6),),
            {"kernel_size": 3, "stride": 2, "padding": 1, "ceil_mode": True}),
    Example("max_pool2d", (real(1, 1, 5, 5),), {"kernel_size": 2, "dilation": 2}),
    Example("max_pool1d", (real(2, 3, 7),), {"kernel_size": 3, "ceil_mode": True}),
    Example("max_pool1d", (real(2, 6),), {"kernel_size": 2, "stride": 1, "padding": 1}),
    Example("max_pool3d", (real(1, 1, 3, 4, 4),), {"kernel_size": 2, "stride": (1, 2, 2)}),
    Example("avg_pool2d", (real(1, 2, 5, 6),),
            {"kernel_size": 3, "stride": 2, "padding": 1, "ceil_mode": True}),
    Example("avg_pool2d", (real(1, 2, 5, 6),), {"kernel_size": 3, "stride": 2, "padding": 1,
                                                "ceil_mode": True, "count_include_pad": False}),
    Example("avg_pool2d", (real(2, 4, 4),), {"kernel_size": 2, "divisor_override": 3}),
    Example("avg_pool1d", (real(2, 3, 7),), {"kernel_size": 3, "padding": 1}),
    Example("avg_pool3d", (real(1, 1, 3, 4, 5),),
            {"kernel_size": (2, 3, 2), "stride": 2, "ceil_mode": True}),
    Example("adaptive_avg_pool2d", (real(1, 2, 5, 7),), {"output_size": (3, 4)}),
    Example("adaptive_avg_pool2d", (real(2, 4, 4),), {"output_size": 1}),  # global pooling
    Example("adaptive_avg_pool1d", (real(2, 7),), {"output_size": 3}),
    Example("adaptive_avg_pool3d", (real(1, 1, 3, 4, 5),), {"output_size": (2, 2, 3)}),
]

# sum/mean over dim= of a 0-d tensor: torch accepts dim 0 and -1 and reduces nothing (this
# once crashed the numpy and sympy forms with an AxisError).
EXAMPLES += [
    Example("sum", (real(),), {"dim": 0}),
    Example("mean", (real(),), {"dim": -1, "keepdim": True}),
]

CASES = [pytest.param(e, id=e.id) for e in EXAMPLES]


# Composites (ops written as other ops): each against torch's own function of its name.
COMPOSITE_EXAMPLES = [
    Example("l1_loss", (real(3, 4), real(3, 4))),
    Example("l1_loss", (real(3, 4), real(4)), {"reduction": "none"}),
    Example("smooth_l1_loss", (real(3, 4), real(3, 4)), {"beta": 0.5}),
    Example("smooth_l1_loss", (real(5), real(5)), {"reduction": "sum"}),
    Example("smooth_l1_loss", (real(5), real(5)), {"beta": 0.0}),
    Example("huber_loss", (real(3, 4), real(3, 4)), {"delta": 0.7}),
    Example("huber_loss", (real(6), real(6)), {"reduction": "none"}),
    Example("binary_cross_entropy", (probabilities(3, 4), probabilities(3, 4))),
    Example("binary_cross_entropy", (probabilities(3, 4), probabilities(3, 4), weight(4)),
            {"reduction": "sum"}),
    Example("binary_cross_entropy_with_logits", (real(3, 4), probabilities(3, 4)),
            {"given": (0, 1)}),
    Example("binary_cross_entropy_with_logits", (real(3, 4), probabilities(3, 4), weight(4)),
            {"given": (0, 1, 3), "reduction": "none"}),
    Example("binary_cross_entropy_with_logits",
            (real(3, 4), probabilities(3, 4), weight(3, 1), weight(4)),
            {"given": (0, 1, 2, 3)}),
    Example("kl_div", (real(3, 4, low=-3.0, high=-0.2), probabilities(3, 4)),
            {"reduction": "batchmean"}),
    Example("kl_div", (real(3, 4), real(3, 4)), {"log_target": True, "reduction": "sum"}),
    Example("poisson_nll_loss", (real(3, 4), positive(3, 4))),
    Example("poisson_nll_loss", (positive(3, 4), positive(3, 4)),
            {"log_input": False, "reduction": "none"}),
    Example("poisson_nll_loss", (real(3, 4), Arg((3, 4), 0.0, 4.0)), {"full": True}),
    Example("margin_ranking_loss", (real(5), real(5), signs(5)), {"margin": 0.3}),
    Example("pairwise_distance", (real(3, 4), real(3, 4))),
    Example("pairwise_distance", (real(3, 4), real(4)), {"p": 1.5, "keepdim": True}),
    Example("triplet_margin_loss", (real(3, 4), real(3, 4), real(3, 4)), {"margin": 2.0}),
    Example("triplet_margin_loss", (real(3, 4), real(3, 4), real(3, 4)),
            {"swap": True, "p": 3.0, "reduction": "none", "margin": 3.0}),
    Example("cosine_similarity", (real(3, 4), real(3, 4))),
    Example("cosine_similarity", (real(3, 4), real(3, 4)), {"dim": 0, "eps": 1e-6}),
]


def statistic(*shape: int) -> Arg:
    """A running mean: real, never differentiated (torch refuses a gradient for it)."""
    return Arg(tuple(shape), frozen=True)


# Normalization, dropout and attention (ops/normalization.py, ops/attention.py). batch_norm
# and group_norm skip optional tensors by keyword: "given" lists the positions a call gave.
COMPOSITE_EXAMPLES += [
    Example("batch_norm", (real(5, 3),), {"given": (0,), "training": True}),
    Example("batch_norm", (real(3, 2, 2, 3), real(2), real(2)),
            {"given": (0, 3, 4), "training": True, "eps": 1e-3}),
    Example("batch_norm", (real(4, 3), statistic(3), weight(3), real(3), real(3)),
            {"given": (0, 1, 2, 3, 4), "training": True, "momentum": 0.3}),
    Example("batch_norm", (real(4, 3), statistic(3), weight(3)), {"given": (0, 1, 2)}),
    Example("batch_norm", (real(2, 3, 2, 2), statistic(3), weight(3), real(3), real(3)),
            {"given": (0, 1, 2, 3, 4), "eps": 0.1}),
    Example("batch_norm", (real(2, 3, 4), statistic(3), weight(3), real(3)),
            {"given": (0, 1, 2, 4)}),
    Example("group_norm", (real(2, 4, 3),), {"num_groups": 2, "given": (0,)}),
    Example("group_norm", (real(2, 6, 2, 2), real(6), real(6)),
            {"num_groups": 3, "given": (0, 1, 2), "eps": 1e-3}),
    # (bias without weight: torch 2.13's own group_norm backward fails, "tensor does not have
    # a device"; tests/test_op_cases.py checks that spelling.)
    Example("group_norm", (real(3, 4, 2), real(4), real(4)),
            {"num_groups": 4, "given": (0, 1, 2)}),
    Example("group_norm", (real(2, 4, 3), real(4)), {"num_groups": 1, "given": (0, 1)}),
    Example("rms_norm", (real(3, 4),), {"normalized_shape": (4,), "eps": 1e-6}),
    Example("rms_norm", (real(2, 3, 4), real(3, 4)), {"normalized_shape": (3, 4), "eps": 1e-5}),
    Example("rms_norm", (real(3, 5), real(5)), {"normalized_shape": 5,
                                                 "eps": float(np.finfo(np.float64).eps)}),
    Example("dropout", (real(3, 4),), {"p": 0.0}),
    Example("dropout", (real(3, 4),), {"p": 0.5, "training": False}),
    Example("scaled_dot_product_attention", (real(2, 3, 4), real(2, 5, 4), real(2, 5, 6))),
    Example("scaled_dot_product_attention",
            (real(2, 3, 4), real(2, 5, 4), real(2, 5, 6), condition(3, 5))),
    Example("scaled_dot_product_attention",
            (real(2, 3, 4), real(2, 5, 4), real(2, 5, 6), real(2, 3, 5)), {"scale": 0.3}),
    Example("scaled_dot_product_attention", (real(4, 3), real(4, 3), real(4, 2)),
            {"is_causal": True}),
    Example("scaled_dot_product_attention",
            (real(2, 2, 3, 4), real(2, 2, 5, 4), real(2, 2, 5, 3)), {"is_causal": True}),
    Example("scaled_dot_product_attention",
            (real(2, 2, 3, 4), real(2, 2, 5, 4), real(2, 2, 5, 3), condition(2, 1, 3, 5)),
            {"scale": 1.5}),
    # Row 4 of this mask keeps nothing: torch gives it weights 0 (and output 0), not nan.
    Example("scaled_dot_product_attention",
            (real(6, 3), real(2, 3), real(2, 2), condition(6, 2))),
    Example("scaled_dot_product_attention",  # batch dims broadcast, as matmul's
            (real(1, 2, 3, 4), real(2, 1, 5, 4), real(2, 2, 5, 3), real(3, 1))),
]


def test_examples_cover_every_op() -> None:
    assert {e.op for e in EXAMPLES} | {e.op for e in COMPOSITE_EXAMPLES} == set(OPS)
    assert {e.op for e in COMPOSITE_EXAMPLES} == {n for n, op in OPS.items() if op.expand}


@pytest.mark.parametrize("example", [pytest.param(e, id=e.id) for e in COMPOSITE_EXAMPLES])
# The broadcasting examples are deliberate: the language broadcasts as torch does.
@pytest.mark.filterwarnings("ignore:Using a target size:UserWarning")
def test_composite_definitions_match_torchs_own_function(example: Example) -> None:
    """The expansion (numpy forward, rule-sweep VJP) against torch.nn.functional's own
    function and its autograd, in float64."""
    import torch

    from gradcheck_lab.program.graph import ProgramBuilder
    from gradcheck_lab.program.interpret import NUMPY, interpret
    from gradcheck_lab.program.ir import Const
    from gradcheck_lab.program.sweep import sweep

    op, params = OPS[example.op], example.full_params
    values = sample(example)
    builder = ProgramBuilder()
    indices = [builder.add_input(f"a{i}", arg.shape, arg.is_integer and not arg.condition,
                                 not (arg.is_integer or arg.frozen))
               for i, arg in enumerate(example.args)]
    # A condition is what a comparison gives (inputs are real or integer): a 0/1 input > 0.5.
    half = builder.add_expression(Const(Fraction(1, 2), None), "output")
    arguments = [builder.add_call("gt", [index, half], (), "output", None) if arg.condition
                 else index for index, arg in zip(indices, example.args, strict=True)]
    output = builder.add_call(example.op, arguments, tuple(params.items()), "output", None)
    program = builder.build(output)
    feeds = [v.astype(np.float64) if arg.condition else v
             for arg, v in zip(example.args, values, strict=True)]
    env = interpret(program, dict(zip(indices, feeds, strict=True)), [output], NUMPY)
    tensors = [torch.from_numpy(v) if arg.is_integer  # a condition: a bool tensor
               else torch.tensor(v, dtype=torch.float64, requires_grad=not arg.frozen)
               for arg, v in zip(example.args, values, strict=True)]
    reference = op.torch(tensors, params)
    assert_same_math(env[output], reference.detach().numpy())
    g = cotangent(tuple(reference.shape))
    differentiated = [i for i, arg in enumerate(example.args)
                      if not (arg.frozen or arg.is_integer)]
    expected = torch.autograd.grad(reference, [tensors[i] for i in differentiated],
                                   grad_outputs=torch.from_numpy(g))
    grads = sweep(program, env, g)
    for i, want in zip(differentiated, expected, strict=True):
        assert_same_math(grads[f"a{i}"], want.numpy(), scale=np.maximum(1.0, np.abs(want.numpy())))


def test_examples_cover_the_required_variants() -> None:
    shapes = {(e.op, tuple(len(a.shape) for a in e.args)) for e in EXAMPLES}
    assert {("matmul", (1, 1)), ("matmul", (2, 2)), ("matmul", (3, 3))} <= shapes
    assert {("linear", (1, 2)), ("linear", (2, 2, 1))} <= shapes
    assert {("cross_entropy", (2, 1)), ("cross_entropy", (1, 0)),
            ("cross_entropy", (2, 2))} <= shapes
    for name in ("sum", "mean", "softmax", "log_softmax", "logsumexp"):
        dims = {e.params.get("dim") for e in EXAMPLES if e.op == name}
        assert len(dims) >= 3, name
    params = {(e.op, k, v) for e in EXAMPLES for k, v in e.params.items()}
    assert ("reshape", "shape", (-1,)) in params
    assert any(op == "transpose" and isinstance(v, int) and v < 0 for op, _, v in params)
    assert {("conv2d", "stride", 2), ("conv2d", "padding", 1)} <= params
    assert ("max_pool2d", "stride", 1) in params  # overlapping windows
    kernels = {e.args[1].shape[2:] for e in EXAMPLES if e.op == "conv2d"}
    assert any(height != width for height, width in kernels)
    assert {len(e.args) for e in EXAMPLES if e.op in ("conv2d", "layer_norm")} >= {2, 3}


# --- sampling ------------------------------------------------------------------------------


def sample(example: Example) -> list[np.ndarray]:
    """The example's argument values, drawn from a fixed seed."""
    rng = np.random.default_rng(SEED)
    values = []
    for arg in example.args:
        if arg.condition:
            values.append(np.asarray(rng.random(arg.shape) < 0.5))
        elif arg.is_integer:
            values.append(np.asarray(rng.integers(0, arg.classes, arg.shape), dtype=np.int64))
        elif arg.away_from_zero:
            sign = rng.choice([-1.0, 1.0], arg.shape)
            values.append(np.asarray(sign * rng.uniform(0.25, arg.high, arg.shape)))
        else:
            values.append(np.asarray(rng.uniform(arg.low, arg.high, arg.shape)))
    return values


def cotangent(shape: Shape) -> np.ndarray:
    return np.asarray(np.random.default_rng(SEED + 1).standard_normal(shape))


Substitution = dict[sympy.Symbol, sympy.Float]


def symbols_for(example: Example,
                values: list[np.ndarray]) -> tuple[list[np.ndarray], Substitution]:
    """Object arrays of real Symbols for the real arguments (integer targets stay numbers),
    and the point as a substitution at EXACT_DIGITS digits (Float(x) of a float is exact)."""
    arrays: list[np.ndarray] = []
    point: Substitution = {}
    for position, (arg, value) in enumerate(zip(example.args, values, strict=True)):
        if arg.is_integer:
            arrays.append(value)
            continue
        names = [sympy.Symbol(f"a{position}_{k}", real=True) for k in range(value.size)]
        array = np.empty(value.size, dtype=object)
        array[:] = names
        arrays.append(array.reshape(value.shape))
        point.update({s: sympy.Float(float(v), EXACT_DIGITS) for s, v in
                      zip(names, value.ravel(), strict=True)})
    return arrays, point


def evaluate(expr: object, point: Substitution) -> float:
    value = sympy.sympify(expr).xreplace(point)
    if isinstance(value, sympy.logic.boolalg.BooleanAtom):  # a condition, decided
        return float(bool(value))
    return float(value.evalf(EXACT_DIGITS))


def needs_gradient(example: Example) -> list[bool]:
    return [not (a.is_integer or a.frozen) for a in example.args]


# --- the three-way checks -------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("example", CASES)
def test_vjp_and_magnitude_rules_match_exact_sympy_jacobian(example: Example) -> None:
    op, params = OPS[example.op], example.full_params
    values = sample(example)
    out = op.numpy(values, params)
    g = cotangent(np.shape(out))
    grads = op.vjp(g, values, out, params, needs_gradient(example))
    magnitudes = op.vjp_magnitude(g, values, out, params, needs_gradient(example))
    if not has_derivative(op):  # a comparison: nothing flows back through it
        assert grads == magnitudes == [None] * len(values)
        return

    arrays, point = symbols_for(example, values)
    outputs = np.asarray(op.sympy(arrays, params), dtype=object).ravel()
    for position, array in enumerate(arrays):
        if not needs_gradient(example)[position]:
            assert grads[position] is None  # class indices and weights get no gradient
            continue
        # Steps (floor, sign) differentiate to unevaluated Derivatives: 0 where they exist.
        jacobian = np.array([[evaluate(drop_steps(sympy.diff(y, x)), point)
                              for x in array.ravel()]
                             for y in outputs]).reshape(len(outputs), array.size)
        expected = (g.ravel() @ jacobian).reshape(array.shape)
        # The rule's rounding error scales with the terms it sums, |g| @ |J|, not with the
        # (possibly cancelling) result.
        terms = (np.abs(g.ravel()) @ np.abs(jacobian)).reshape(array.shape)
        assert_same_math(grads[position], expected, scale=np.maximum(1.0, terms))
        # The magnitude rule sums |terms| at least as finely as the Jacobian does, so by the
        # triangle inequality it bounds |g| @ |J| (and hence the VJP) from above.
        assert np.all(np.isfinite(magnitudes[position]))
        assert np.all(magnitudes[position] >= terms * (1 - 1e-12)), (magnitudes[position], terms)


@pytest.mark.parametrize("example", CASES)
def test_sympy_form_evaluates_to_numpy_forward(example: Example) -> None:
    op, params = OPS[example.op], example.full_params
    values = sample(example)
    arrays, point = symbols_for(example, values)
    exact = np.asarray(op.sympy(arrays, params), dtype=object)
    expected = np.array([evaluate(y, point) for y in exact.ravel()]).reshape(exact.shape)
    assert_same_math(op.numpy(values, params), expected)


@pytest.mark.parametrize("example", CASES)
def test_numpy_forward_and_vjp_match_torch_autograd(example: Example) -> None:
    import torch

    op, params = OPS[example.op], example.full_params
    values = sample(example)
    tensors = [torch.from_numpy(v) if arg.is_integer
               else torch.tensor(v, dtype=torch.float64, requires_grad=not arg.frozen)
               for arg, v in zip(example.args, values, strict=True)]
    torch_out = op.torch(tensors, params)
    out = op.numpy(values, params)
    assert torch_out.dtype == {"bool": torch.bool, "int": torch.int64}.get(op.returns,
                                                                          torch.float64)
    assert out.dtype == torch_out.detach().numpy().dtype
    assert_same_math(out, torch_out.detach().numpy())
    if not has_derivative(op):
        return

    g = cotangent(np.shape(out))
    differentiable = [t for t in tensors if t.requires_grad]
    expected = torch.autograd.grad(torch_out, differentiable, grad_outputs=torch.from_numpy(g))
    grads = [gr for gr in op.vjp(g, values, out, params, needs_gradient(example))
             if gr is not None]
    assert len(grads) == len(expected)
    for actual, reference in zip(grads, expected, strict=True):
        assert_same_math(actual, reference.numpy())


@pytest.mark.parametrize("example", CASES)
def test_shape_rule_predicts_actual_shapes(example: Example) -> None:
    import torch

    op, params = OPS[example.op], example.full_params
    values = sample(example)
    infos = [ArgInfo(a.shape, a.is_integer) for a in example.args]
    predicted = tuple(op.shape(infos, params))
    tensors = [torch.from_numpy(v) for v in values]
    assert np.shape(op.numpy(values, params)) == predicted
    assert tuple(op.torch(tensors, params).shape) == predicted


# --- shape rules refuse bad input -------------------------------------------------------------


def check_shapes(op: Op, *shapes: Shape, integer: tuple[int, ...] = (),
                 **params: ParamValue) -> Shape:
    infos = [ArgInfo(tuple(s), i in integer) for i, s in enumerate(shapes)]
    return op.shape(infos, {p.name: p.default for p in op.params} | params)


@pytest.mark.parametrize("op, shapes, integer, params, message", [
    ("matmul", [(2, 3), (4, 2)], (), {}, "inner sizes differ"),
    ("matmul", [(3,), (4,)], (), {}, "inner sizes differ"),
    ("matmul", [(2, 3), (2,)], (), {}, "inner sizes differ"),
    ("matmul", [(), (3,)], (), {}, "scalar"),
    ("matmul", [(3, 2), ()], (), {}, "scalar"),
    ("matmul", [(2, 2, 3), (3, 3, 2)], (), {}, "cannot be broadcast"),
    ("linear", [(4, 3), (3,)], (), {}, "W must be 2-d"),
    ("linear", [(4, 3), (2, 4)], (), {}, "last dim must equal"),
    ("linear", [(), (2, 3)], (), {}, "last dim must equal"),
    ("linear", [(4, 3), (2, 3), (3,)], (), {}, "b must have shape [2]"),
    ("linear", [(4, 3), (2, 3), (1, 2)], (), {}, "b must have shape [2]"),
    ("add", [(2, 3), (4,)], (), {}, "cannot be broadcast"),
    ("mul", [(2, 3), (3, 2)], (), {}, "cannot be broadcast"),
    ("pow", [(2, 1, 3), (2, 2)], (), {}, "cannot be broadcast"),
    ("cross_entropy", [(3, 4), (4,)], (1,), {}, "class-index target must have shape [3]"),
    ("cross_entropy", [(4,), (1,)], (1,), {}, "class-index target must have shape []"),
    ("cross_entropy", [(3, 4), (3,)], (), {}, "probabilities of the logits' shape"),
    ("cross_entropy", [(2, 3, 4), (2, 3)], (1,), {}, "logits must be (N, C) or (C,)"),
    ("mse_loss", [(2, 3), (3,)], (), {}, "needs equal shapes"),
    ("mse_loss", [(2, 3), (3, 2)], (), {}, "needs equal shapes"),
    ("sum", [(2, 3)], (), {"dim": 2}, "out of range"),
    ("mean", [(2, 3)], (), {"dim": -3}, "out of range"),
    ("sum", [(2, 3)], (), {"dim": (0, 5)}, "out of range"),
    ("sum", [()], (), {"dim": 1}, "out of range"),
    ("softmax", [(2, 3)], (), {"dim": 2}, "out of range"),
    ("log_softmax", [(4,)], (), {"dim": -2}, "out of range"),
    ("sum", [(2, 3)], (), {"dim": (0, -2)}, "repeats a dim"),
    ("mean", [(2, 3)], (), {"dim": (1, 1)}, "repeats a dim"),
    ("sum", [(2, 3)], (), {"dim": ()}, "dim=() is ambiguous"),
    ("mean", [(2, 3)], (), {"dim": ()}, "dim=() is ambiguous"),
    ("sum", [(2, 3)], (), {"dim": True}, "needs an integer"),
    ("reshape", [(2, 3)], (), {"shape": (4, -1)}, "reshape(): shape=[4, -1] is invalid for an "
                                                  "input of 6 elements"),
    ("reshape", [(2, 3)], (), {"shape": (5,)}, "reshape(): shape=[5] is invalid"),
    ("reshape", [(2, 3)], (), {"shape": 7}, "reshape(): shape=[7] is invalid"),
    ("reshape", [(2, 3)], (), {"shape": (-1, -1)}, "reshape(): shape=[-1, -1] has more than one"),
    ("reshape", [(2, 3)], (), {"shape": (-2, -3)}, "reshape(): shape=[-2, -3] has a negative"),
    ("reshape", [(2, 3)], (), {"shape": (0, -1)}, "reshape(): shape=[0, -1] is invalid"),
    ("reshape", [(2, 3)], (), {"shape": ()}, "reshape(): shape=[] is invalid"),
    ("flatten", [(2, 3, 4)], (), {"start_dim": 2, "end_dim": 1}, "flatten(): start_dim=2 comes "
                                                                 "after end_dim=1"),
    ("flatten", [(2, 3)], (), {"start_dim": 2}, "flatten(): dim=2 is out of range"),
    ("flatten", [(2, 3)], (), {"end_dim": -3}, "flatten(): dim=-3 is out of range"),
    ("transpose", [(2, 3)], (), {"dim0": 2, "dim1": 0}, "transpose(): dim=2 is out of range"),
    ("transpose", [(2, 3)], (), {"dim0": 0, "dim1": -3}, "transpose(): dim=-3 is out of range"),
    ("select", [(2, 3)], (), {"dim": 1, "index": 3}, "select(): index=3 is out of range"),
    ("select", [(2, 3)], (), {"dim": 0, "index": -3}, "select(): index=-3 is out of range"),
    ("select", [()], (), {"dim": 0, "index": 0}, "select(): a 0-d tensor has no dim"),
    ("logsumexp", [(2, 3)], (), {"dim": 2}, "logsumexp(): dim=2 is out of range"),
    ("logsumexp", [(2, 3)], (), {"dim": (0, -2)}, "logsumexp(): dim=(0, -2) repeats a dim"),
    ("logsumexp", [(2, 3)], (), {}, "logsumexp() needs dim="),
    ("layer_norm", [()], (), {}, "layer_norm(): x must have at least 1 dimension"),
    ("layer_norm", [(2, 3)], (), {"normalized_shape": 2}, "layer_norm(): normalized_shape=[2] "
                                                          "must be the trailing dims of x"),
    ("layer_norm", [(2, 3)], (), {"normalized_shape": (1, 2, 3)}, "must be the trailing dims"),
    ("layer_norm", [(2, 3), (2,)], (), {}, "weight must have the normalized shape [3]"),
    ("layer_norm", [(2, 3)], (), {"eps": 0.0}, "layer_norm(): eps=0.0 must be positive"),
    ("layer_norm", [(2, 3), (3,), (1, 3)], (), {}, "bias must have the normalized shape [3]"),
    ("layer_norm", [(2, 3, 4), (4,)], (), {"normalized_shape": (3, 4)},
     "weight must have the normalized shape [3, 4]"),
    ("conv2d", [(4, 4), (2, 1, 3, 3)], (), {}, "conv2d(): x must be (N, C, H, W) or (C, H, W)"),
    ("conv2d", [(1, 1, 1, 4, 4), (2, 1, 3, 3)], (), {}, "x must be (N, C, H, W)"),
    ("conv2d", [(1, 1, 4, 4), (2, 1, 3)], (), {}, "w must be 4-d"),
    ("conv2d", [(1, 2, 4, 4), (3, 1, 3, 3)], (), {}, "x has 2 channels"),
    ("conv2d", [(2, 4, 4), (3, 1, 3, 3)], (), {}, "x has 2 channels"),
    ("conv2d", [(1, 1, 4, 4), (3, 1, 3, 3), (2,)], (), {}, "b must have shape [3]"),
    ("conv2d", [(1, 1, 2, 5), (1, 1, 3, 3)], (), {}, "conv2d(): the kernel's height 3 is "
                                                    "larger than the input's height 2"),
    ("conv2d", [(1, 1, 5, 1), (1, 1, 3, 4)], (), {"padding": (0, 1)},
     "kernel's width 4 is larger than the input's width 1 padded to 3"),
    ("conv2d", [(1, 1, 4, 4), (1, 1, 3, 3)], (), {"stride": 0}, "conv2d(): stride= must be at "
                                                               "least 1"),
    ("conv2d", [(1, 1, 4, 4), (1, 1, 3, 3)], (), {"padding": (0, -1)}, "padding= must be at "
                                                                      "least 0"),
    ("conv2d", [(1, 1, 4, 4), (1, 1, 3, 3)], (), {"stride": (1, 1, 1)}, "needs one int or two"),
    ("conv2d", [(1, 1, 4, 4), (1, 1, 3, 3)], (), {"padding": 10**5}, "conv2d(): the padded "
                                                                     "input would hold"),
    ("conv2d", [(1, 1, 2000, 2000), (1, 1, 1000, 1000)], (), {}, "conv2d(): the windows would "
                                                                 "hold 1002001000000 elements"),
    ("max_pool2d", [(1, 1, 2000, 2000)], (), {"kernel_size": 1000, "stride": 1},
     "max_pool2d(): the windows would hold"),
    ("max_pool2d", [(4, 4)], (), {"kernel_size": 2}, "max_pool2d(): x must be (N, C, H, W)"),
    ("max_pool2d", [(1, 1, 4, 4)], (), {"kernel_size": 5}, "max_pool2d(): the kernel's height 5 "
                                                           "is larger than the input's height 4"),
    ("max_pool2d", [(1, 1, 4, 2)], (), {"kernel_size": (2, 3)}, "kernel's width 3 is larger"),
    ("max_pool2d", [(1, 1, 4, 4)], (), {"kernel_size": 0}, "kernel_size= must be at least 1"),
    ("max_pool2d", [(1, 1, 4, 4)], (), {"kernel_size": 2, "stride": 0}, "stride= must be at "
                                                                        "least 1"),
    ("max_pool2d", [(1, 1, 4, 4)], (), {}, "max_pool2d(): kernel_size= needs an int"),
    ("conv2d", [(1, 4, 4, 4), (2, 2, 3, 3)], (), {"groups": 3}, "groups=3 must divide the 4 "
                                                                "input channels"),
    ("conv2d", [(1, 4, 4, 4), (2, 4, 3, 3)], (), {"groups": 2}, "x has 4 channels but w expects "
                                                                "4 per group of 2"),
    ("conv2d", [(1, 1, 4, 4), (1, 1, 3, 3)], (), {"padding": "same", "stride": 2},
     "padding='same' needs stride=1"),
    ("conv2d", [(1, 1, 4, 4), (1, 1, 3, 3)], (), {"dilation": 2, "padding": 0},
     "the kernel's height 5 is larger than the input's height 4"),
    ("conv1d", [(1, 1, 4, 4), (1, 1, 3)], (), {}, "conv1d(): x must be (N, C, L) or (C, L)"),
    ("conv3d", [(1, 1, 4, 4, 4), (1, 1, 3, 3)], (), {}, "w must be 5-d"),
    ("conv_transpose2d", [(1, 2, 3, 3), (3, 2, 2, 2)], (), {}, "x has 2 channels but w expects 3"),
    ("conv_transpose2d", [(1, 2, 3, 3), (2, 2, 2, 2)], (), {"output_padding": 1},
     "output_padding=1 must be smaller than the stride or the dilation (1)"),
    ("max_pool2d", [(1, 1, 4, 4)], (), {"kernel_size": 2, "padding": 2}, "padding=2 must be at "
                                                                         "most half"),
    ("max_pool2d", [(1, 1, 4, 4)], (), {"kernel_size": 2, "return_indices": True},
     "return_indices=True"),
    ("avg_pool2d", [(1, 1, 4, 4)], (), {"kernel_size": 2, "divisor_override": 0},
     "divisor_override= must be at least 1"),
    ("adaptive_avg_pool2d", [(1, 1, 4, 4)], (), {"output_size": 0}, "output_size= must be at "
                                                                     "least 1"),
])
def test_shape_rule_rejects(op: str, shapes: list[Shape], integer: tuple[int, ...],
                            params: Params, message: str) -> None:
    with pytest.raises(SpecError, match=re.escape(message)):
        check_shapes(OPS[op], *shapes, integer=integer, **params)


def test_shape_rules_accept_the_boundary_cases() -> None:
    # The refusals above are refusals, not a rule that rejects everything near them.
    assert check_shapes(OPS["sum"], (2, 3), dim=-2) == (3,)
    assert check_shapes(OPS["softmax"], (), dim=-1) == ()
    assert check_shapes(OPS["linear"], (3,), (2, 3), (2,)) == (2,)
    assert check_shapes(OPS["cross_entropy"], (4,), (), integer=(1,)) == ()
    assert check_shapes(OPS["matmul"], (5, 1, 2, 3), (4, 3, 2)) == (5, 4, 2, 2)
    assert check_shapes(OPS["reshape"], (2, 3), shape=(-1, 2)) == (3, 2)
    assert check_shapes(OPS["flatten"], (2, 3, 4), start_dim=-2) == (2, 12)
    assert check_shapes(OPS["conv2d"], (1, 1, 2, 2), (1, 1, 3, 3), padding=1) == (1, 1, 2, 2)
    assert check_shapes(OPS["conv2d"], (1, 1, 3, 3), (1, 1, 3, 3), stride=5) == (1, 1, 1, 1)
    assert check_shapes(OPS["max_pool2d"], (1, 4, 4), kernel_size=4) == (1, 1, 1)
    assert check_shapes(OPS["layer_norm"], (2, 3, 4), (3, 4), normalized_shape=(3, 4)) == (2, 3, 4)


@pytest.mark.parametrize("text, shape", [
    ("reshape(x, shape=(4, -1))", (4, 6)),
    ("reshape(x, (3, 8))", (3, 8)),  # params may also follow the tensors positionally
    ("flatten(x, start_dim=1)", (2, 12)),
    ("flatten(x)", (24,)),
    ("transpose(x, dim0=-1, dim1=0)", (4, 3, 2)),
    ("logsumexp(x, dim=(0, 2), keepdim=True)", (1, 3, 1)),
    ("layer_norm(x, w, b)", (2, 3, 4)),
    ("layer_norm(x, normalized_shape=(3, 4))", (2, 3, 4)),
    ("conv2d(img, k, c, stride=(1, 2), padding=1)", (2, 4, 6, 3)),
    ("max_pool2d(img, 2)", (2, 1, 3, 2)),
    ("max_pool2d(img, kernel_size=(3, 2), stride=1)", (2, 1, 4, 4)),
])
def test_the_case_language_spells_the_new_ops(text: str, shape: Shape) -> None:
    from gradcheck_lab.casefile.expr import parse_expression
    from gradcheck_lab.program.graph import ProgramBuilder

    builder = ProgramBuilder()
    builder.add_input("x", (2, 3, 4), False, True)
    builder.add_input("w", (4,), False, True)
    builder.add_input("b", (4,), False, True)
    builder.add_input("img", (2, 1, 6, 5), False, True)
    builder.add_input("k", (4, 1, 3, 3), False, True)
    builder.add_input("c", (4,), False, True)
    index = builder.add_expression(parse_expression(text), "output")
    assert builder.nodes[index].shape == shape


@pytest.mark.parametrize("text, message", [
    ("reshape(x)", "reshape() needs the keyword shape="),
    ("transpose(x, dim0=0)", "transpose() needs the keyword dim1="),
    ("logsumexp(x)", "logsumexp() needs the keyword dim="),
    ("max_pool2d(x)", "max_pool2d() needs the keyword kernel_size="),
    ("conv2d(x, k, padding=True)", "conv2d(): padding= needs an integer"),
    ("reshape(x, shape=(2, y))", "reshape(): shape= needs an integer"),
])
def test_the_new_ops_refuse_missing_or_malformed_keywords(text: str, message: str) -> None:
    from gradcheck_lab.casefile.expr import parse_expression

    with pytest.raises(SpecError, match=re.escape(message)):
        parse_expression(text)


# --- pow at a zero base -----------------------------------------------------------------------
# The table above keeps pow's base positive (so that log(a) in ∂/∂b is real). A zero base is
# still an ordinary point of a**b for b >= 1 (relu(x) ** 2 produces it at every negative x);
# there sympy's ∂/∂a = a**b·b/a is 0/0, and ∂/∂b = a**b·log(a) is 0·(-inf).


def pow_vjp_and_torch(base: np.ndarray, exponent: float) -> tuple[list, list]:
    """pow's VJP rule and torch.autograd.grad at (base, exponent), with a cotangent of ones."""
    import torch

    op, b = OPS["pow"], np.full_like(base, exponent)
    rule = op.vjp(np.ones_like(base), [base, b], op.numpy([base, b], {}), {}, [True, True])
    tensors = [torch.tensor(v, requires_grad=True) for v in (base, b)]
    reference = torch.autograd.grad(op.torch(tensors, {}).sum(), tensors)
    return rule, [r.numpy() for r in reference]


@pytest.mark.parametrize("exponent", [1.0, 2.0, 3.0])
def test_pow_gradient_wrt_base_at_zero_base(exponent: float) -> None:
    base = np.array([0.0, 0.5, 2.0])
    by_hand = exponent * base ** (exponent - 1)  # b·a^(b-1): 1, 0, 0 at a = 0 for b = 1, 2, 3
    (rule, _), (reference, _) = pow_vjp_and_torch(base, exponent)
    assert_same_math(reference, by_hand)  # torch agrees with the hand-written derivative
    assert_same_math(rule, by_hand)


@pytest.mark.parametrize("exponent", [0.5, 1.0, 2.0])
def test_pow_gradient_wrt_exponent_at_zero_base_is_its_limit(exponent: float) -> None:
    base = np.array([0.0, 0.5, 2.0])
    with np.errstate(divide="ignore", invalid="ignore"):
        by_hand = np.where(base == 0, 0.0, base**exponent * np.log(base))  # a^b·log a -> 0
    (_, rule), (_, reference) = pow_vjp_and_torch(base, exponent)
    assert_same_math(reference, by_hand)
    assert_same_math(rule, by_hand)


# --- kinks ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["relu", "abs"])
def test_kink_mask_is_exactly_where_the_argument_is_zero(name: str) -> None:
    x = np.array([[-1.0, 0.0, 2.0], [-0.0, 5e-324, -5e-324]])
    mask = OPS[name].kinks([x], {})
    np.testing.assert_array_equal(mask, [[False, True, False], [True, False, False]])


# For each elementwise op with kinks: argument tuples on a kink, and tuples just off one.
KINKS_AT: dict[str, tuple[list[tuple[float, ...]], list[tuple[float, ...]]]] = {
    "relu": ([(0.0,)], [(1e-3,), (-1e-3,)]),
    "abs": ([(0.0,)], [(1e-3,), (-1e-3,)]),
    "sign": ([(0.0,)], [(0.5,), (-0.5,)]),
    "floor": ([(2.0,), (-1.0,), (0.0,)], [(1.5,), (-0.5,)]),
    "ceil": ([(2.0,), (-1.0,)], [(1.5,), (-0.5,)]),
    "trunc": ([(2.0,), (-1.0,)], [(1.5,), (-0.5,)]),
    "frac": ([(2.0,), (-1.0,)], [(1.5,), (-0.5,)]),
    "round": ([(0.5,), (-1.5,)], [(1.0,), (0.25,)]),
    "atan2": ([(0.0, -1.0), (0.0, 0.0)], [(0.0, 1.0), (1.0, -1.0)]),
    "hypot": ([(0.0, 0.0)], [(0.0, 1.0), (1.0, 0.0)]),
    "remainder": ([(3.0, 1.5), (-2.0, 1.0)], [(1.0, 1.5), (0.5, -2.0)]),
    "fmod": ([(3.0, 1.5), (-2.0, 1.0)], [(1.0, 1.5), (0.5, -2.0)]),
    "maximum": ([(1.0, 1.0)], [(1.0, 2.0), (2.0, 1.0)]),
    "minimum": ([(1.0, 1.0)], [(1.0, 2.0), (2.0, 1.0)]),
    # At beta·x = threshold torch switches from log1p(exp(x)) to x: a jump of 2e-9.
    "softplus": ([(20.0,)], [(19.0,), (21.0,)]),
    "elu": ([], [(0.0,), (-1.0,)]),  # alpha = 1: exp(x) meets 1 at 0, smoothly
    "selu": ([(0.0,)], [(1.0,), (-1.0,)]),
    "leaky_relu": ([(0.0,)], [(1.0,), (-1.0,)]),
    "hardtanh": ([(1.0,), (-1.0,)], [(0.5,), (1.5,)]),
    "relu6": ([(0.0,), (6.0,)], [(3.0,), (7.0,)]),
    "hardsigmoid": ([(3.0,), (-3.0,)], [(0.0,), (4.0,)]),
    "hardswish": ([(3.0,), (-3.0,)], [(0.0,), (-4.0,)]),
    # A condition flips where its sides meet: its value jumps from 0 to 1 there.
    **{name: ([(1.0, 1.0)], [(1.0, 2.0), (2.0, 1.0)])
       for name in ("lt", "le", "gt", "ge", "eq", "ne")},
    # clamp(x, -1, 1): on either bound.
    "clamp": ([(-1.0, -1.0, 1.0), (1.0, -1.0, 1.0)],
              [(0.0, -1.0, 1.0), (2.0, -1.0, 1.0), (-2.0, -1.0, 1.0)]),
}
# Keywords beyond the defaults the kink table's points need.
KINK_PARAMS: dict[str, Params] = {"clamp": {"given": (0, 1, 2)}}


# Reductions with kinks: an input, keywords, and the elements the mask must mark.
REDUCTION_KINKS: dict[str, tuple[list[float], Params, list[bool]]] = {
    "amax": ([1.0, 3.0, 3.0, 2.0], {}, [False, True, True, False]),
    "amin": ([1.0, 3.0, 1.0, 2.0], {}, [True, False, True, False]),
    "max": ([3.0, 3.0, 2.0], {"dim": 0}, [True, True, False]),
    "min": ([1.0, 3.0, 2.0], {}, [False, False, False]),  # no tie: smooth
    "std": ([2.0, 2.0, 2.0], {}, [True, True, True]),
    "vector_norm": ([0.0, 1.0, -2.0], {}, [False, False, False]),  # 2-norm: smooth at x_i = 0
    "norm": ([0.0, 1.0, -2.0], {"p": 1.0}, [True, False, False]),  # 1-norm: abs at 0
}


def test_the_ops_with_kinks_are_the_listed_ones() -> None:
    kinked = {name for name, op in OPS.items() if op.kinks is not None}
    assert kinked == set(KINKS_AT) | set(REDUCTION_KINKS) | MAX_POOLS


@pytest.mark.parametrize("name", list(REDUCTION_KINKS))
def test_reduction_kinks_are_where_one_sided_slopes_differ(name: str) -> None:
    op = OPS[name]
    values, keywords, expected = REDUCTION_KINKS[name]
    params = {p.name: p.default for p in op.params} | keywords
    x = np.array(values)
    np.testing.assert_array_equal(op.kinks([x], params), expected)
    h = 1e-7
    for element, marked in enumerate(expected):
        step = np.zeros_like(x)
        step[element] = h
        total = [float(np.sum(op.numpy([x + d * step], params))) for d in (-1.0, 0.0, 1.0)]
        left, right = (total[1] - total[0]) / h, (total[2] - total[1]) / h
        assert (abs(left - right) > 1e-3) is marked, (element, left, right)


@pytest.mark.parametrize("name", list(KINKS_AT))
def test_kink_masks_mark_where_the_first_argument_breaks_the_derivative(name: str) -> None:
    """On a kink the one-sided slopes along the first argument differ (or the value jumps);
    off one they agree, and the mask says which is which."""
    op = OPS[name]
    defaults = {p.name: p.default for p in op.params} | KINK_PARAMS.get(name, {})
    on, off = KINKS_AT[name]
    h = 1e-7

    def value(point: tuple[float, ...], step: float = 0.0) -> float:
        first, *rest = point
        return float(op.numpy([np.array(first + step), *map(np.array, rest)], defaults))

    for point, expect_kink in [*((p, True) for p in on), *((p, False) for p in off)]:
        mask = op.kinks([np.array(v) for v in point], defaults)
        assert bool(mask) is expect_kink, point
        right = (value(point, h) - value(point)) / h
        left = (value(point) - value(point, -h)) / h
        # A jump shows as slopes of order jump / h; off a kink these ops' slopes are O(1).
        broken = abs(left - right) > 1e-3 or max(abs(left), abs(right)) > 1e3
        assert broken is expect_kink, (point, left, right)


def test_clamp_has_a_kink_where_its_bounds_meet_below_them_only() -> None:
    """min = max = 0.5: below, the value is min(min, max), a tie of the bounds (a kink in
    them); above, it is max alone, smooth in every argument."""
    mask = OPS["clamp"].kinks([np.array([0.0, 3.0]), np.array(0.5), np.array(0.5)],
                              {"given": (0, 1, 2)})
    np.testing.assert_array_equal(mask, [True, False])


MAX_POOLS = {"max_pool1d", "max_pool2d", "max_pool3d"}


def pool_params(**given: ParamValue) -> Params:
    return {p.name: p.default for p in OPS["max_pool2d"].params} | given


def test_max_pool_kink_mask_is_exactly_the_tied_maxima_of_a_window() -> None:
    x = np.array([[[[1.0, 3.0, 0.0, 0.0],    # window (0, 0): max 3 once
                    [2.0, -1.0, 0.0, -1.0],   # window (0, 1): max 0 three times
                    [5.0, 2.0, 4.0, 7.0],     # window (1, 0): max 5 twice
                    [5.0, 4.5, 6.0, 6.5]]]])  # window (1, 1): max 7 once
    mask = OPS["max_pool2d"].kinks([x], pool_params(kernel_size=2))
    expected = np.zeros(x.shape, dtype=bool)
    expected[0, 0, 0, 2] = expected[0, 0, 0, 3] = expected[0, 0, 1, 2] = True
    expected[0, 0, 2, 0] = expected[0, 0, 3, 0] = True
    np.testing.assert_array_equal(mask, expected)
    # Overlapping windows (stride 1): a tie in any window that contains the element counts,
    # and a value that ties only outside its windows' max does not.
    y = np.array([[[1.0, 1.0, 3.0], [0.0, 2.0, 0.0]]])  # the 1s and 0s tie below the max
    mask = OPS["max_pool2d"].kinks([y], pool_params(kernel_size=2, stride=1))
    np.testing.assert_array_equal(mask, [[[False, False, False], [False, False, False]]])
    z = np.array([[[2.0, 1.0, 2.0], [0.0, 2.0, 0.0]]])
    mask = OPS["max_pool2d"].kinks([z], pool_params(kernel_size=2, stride=1))
    np.testing.assert_array_equal(mask, [[[True, False, True], [False, True, False]]])
    # With padding the windows shift ([pad, 0], [1, 1]); ceil_mode's partial window counts.
    w = np.array([[[0.0, 1.0, 1.0]]])
    mask = OPS["max_pool2d"].kinks([w], pool_params(kernel_size=(1, 2), padding=(0, 1)))
    np.testing.assert_array_equal(mask, [[[False, True, True]]])
    mask = OPS["max_pool2d"].kinks([w], pool_params(kernel_size=(1, 2), ceil_mode=True))
    np.testing.assert_array_equal(mask, [[[False, False, False]]])  # windows [0, 1] and [1]
    mask = OPS["max_pool2d"].kinks([w], pool_params(kernel_size=(1, 2), stride=1))
    np.testing.assert_array_equal(mask, [[[False, True, True]]])


@pytest.mark.parametrize("example", [e for e in EXAMPLES if e.op in MAX_POOLS], ids=str)
def test_max_pool_examples_have_no_ties(example: Example) -> None:
    # Otherwise the three-way checks above would compare at a kink.
    assert not OPS[example.op].kinks(sample(example), example.full_params).any()


# --- cross_entropy's class range ------------------------------------------------------------


@pytest.mark.parametrize("target", [[0, 3, 1], [0, -1, 2]], ids=["C", "-1"])
@pytest.mark.parametrize("form", ["numpy", "vjp", "sympy"])
def test_cross_entropy_rejects_a_class_outside_range(target: list[int], form: str) -> None:
    op = OPS["cross_entropy"]
    defaults = {p.name: p.default for p in op.params}
    logits, indices = np.zeros((3, 3)), np.array(target, dtype=np.int64)
    bad = next(t for t in target if not 0 <= t < 3)
    calls = {
        "numpy": lambda: op.numpy([logits, indices], defaults),
        "vjp": lambda: op.vjp(np.array(1.0), [logits, indices], np.array(0.0), defaults,
                              [True, False]),
        "sympy": lambda: op.sympy([logits.astype(object), indices], defaults),
    }
    with pytest.raises(SpecError, match=re.escape(f"target class {bad} is outside [0, 3)")):
        calls[form]()


def test_cross_entropy_accepts_the_edge_classes() -> None:
    logits = np.zeros((2, 3))
    defaults = {p.name: p.default for p in OPS["cross_entropy"].params}
    loss = OPS["cross_entropy"].numpy([logits, np.array([0, 2])], defaults)
    assert_same_math(loss, np.log(3.0))
