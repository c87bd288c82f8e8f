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
    # Exactly these values, row-major, where drawing would not do: int64 indices that must be
    # distinct or negative ("index"), reals with zeros in them ("at").
    index: tuple[int, ...] | None = None
    at: tuple[float, ...] | None = None

    @property
    def is_integer(self) -> bool:
        """Not real: a class index, an index or a condition (never differentiated)."""
        return self.classes is not None or self.condition or self.index is not None


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
    # Output padding that adds rows past the last window (torch's OpInfo sample): no weight
    # reaches them, so both adjoints skip them.
    Example("conv_transpose2d", (real(1, 2, 2, 2), real(2, 1, 2, 2), real(2)),
            {"stride": (3, 1), "padding": (1, 0), "output_padding": (2, 2), "groups": 2,
             "dilation": (2, 3)}),
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


# Matrix functions (ops/matrix.py) need matrices a uniform draw gives only by luck: invertible
# and well conditioned (inv, solve, slogdet), positive definite (cholesky), symmetric with
# eigenvalues well apart (eigh, where 1 / gap enters the gradient). Each is built from a
# seed of its own and fixed as values.
def matrix(kind: str, *shape: int, seed: int = 0) -> Arg:
    rng = np.random.default_rng(SEED + 100 + seed)
    n = shape[-1]
    x = rng.uniform(-1.0, 1.0, shape)
    if kind == "invertible":  # diagonally dominant: cond(A) stays below about 10
        values = x + n * np.eye(n)
    elif kind == "spd":
        values = x @ np.swapaxes(x, -1, -2) + np.eye(n)
    else:  # symmetric, eigenvalues -2..2 at least 4 / n apart, in a random orthogonal basis
        q, _ = np.linalg.qr(rng.standard_normal(shape))
        spread = np.linspace(-2.0, 2.0, n) + rng.uniform(0.0, 0.5 / n, (*shape[:-2], n))
        values = (q * spread[..., None, :]) @ np.swapaxes(q, -1, -2)
        values = (values + np.swapaxes(values, -1, -2)) / 2  # exactly symmetric
    return Arg(tuple(shape), at=tuple(float(v) for v in np.ravel(values)))


def pick(op: str, args: tuple[Arg, ...], part: int, **params: ParamValue) -> Example:
    """One result of an op that gives several (``eigh(A)[1]``): the hidden part keyword."""
    return Example(op, args, {**params, "part": part})


EXAMPLES += [
    Example("inv", (matrix("invertible", 3, 3),)),
    Example("inv", (matrix("invertible", 2, 3, 3),)),  # batched
    Example("inv", (matrix("invertible", 1, 1),)),
    Example("inv", (matrix("invertible", 4, 4),)),  # beyond sympy: torch confirms it
    Example("solve", (matrix("invertible", 3, 3), real(3, 2))),
    Example("solve", (matrix("invertible", 3, 3), real(3))),  # a vector
    Example("solve", (matrix("invertible", 2, 3, 3), real(2, 3))),  # a batch of vectors
    Example("solve", (matrix("invertible", 2, 2, 2), real(2, 1))),  # B broadcast
    Example("solve", (matrix("invertible", 1, 2, 2), real(3, 2, 1))),  # both broadcast
    Example("solve", (matrix("invertible", 2, 2), real(3, 1, 2)), {"left": False}),
    Example("solve", (matrix("invertible", 4, 4), real(4, 2))),
    Example("det", (real(3, 3),)),
    Example("det", (real(2, 2, 2),)),
    Example("det", (real(1, 1),)),
    Example("det", (matrix("invertible", 4, 4),)),
    pick("slogdet", (matrix("invertible", 3, 3),), 1),
    pick("slogdet", (real(2, 3, 3),), -1),
    pick("slogdet", (real(2, 2),), 0),  # the sign: no gradient
    pick("slogdet", (matrix("invertible", 4, 4),), 1),
    Example("cholesky", (matrix("spd", 3, 3),)),
    Example("cholesky", (matrix("spd", 2, 3, 3, seed=1),), {"upper": True}),
    Example("cholesky", (matrix("spd", 4, 4),)),
    pick("qr", (real(4, 3),), 0),
    pick("qr", (real(4, 3),), 1),
    pick("qr", (real(3, 5),), 0),  # more columns than rows
    pick("qr", (real(3, 5),), 1),
    pick("qr", (real(2, 3, 3),), -1),
    pick("qr", (real(3, 4),), 0, mode="complete"),
    pick("eigh", (matrix("symmetric", 3, 3),), 0),
    pick("eigh", (matrix("symmetric", 3, 3),), 1),
    pick("eigh", (matrix("symmetric", 2, 4, 4, seed=1),), 1),
    pick("eigh", (matrix("symmetric", 3, 3, seed=2),), 1, UPLO="U"),
    Example("eigvalsh", (matrix("symmetric", 4, 4),)),
    Example("eigvalsh", (matrix("symmetric", 2, 3, 3, seed=3),), {"UPLO": "U"}),
    pick("svd", (real(4, 3),), 0, full_matrices=False),
    pick("svd", (real(4, 3),), 1, full_matrices=False),
    pick("svd", (real(4, 3),), 2, full_matrices=False),
    pick("svd", (real(3, 5),), 0, full_matrices=False),
    pick("svd", (real(3, 5),), 2, full_matrices=False),
    pick("svd", (real(3, 3),), 0),  # full_matrices=True: a square A
    pick("svd", (real(2, 3, 3),), 2),
    pick("svd", (real(2, 3, 2),), 1),  # S of a non-square A with full_matrices=True
    Example("svdvals", (real(3, 4),)),
    Example("svdvals", (real(2, 3, 3),)),
    Example("matrix_exp", (real(3, 3),)),
    Example("matrix_exp", (real(2, 2, 2),)),
    Example("matrix_exp", (real(1, 1),)),
    Example("matrix_exp", (real(3, 3, low=-4.0, high=4.0),)),  # ||A||_1 > 5.4: squarings
]

# grid_sample and interpolate (ops/sampling.py). A grid reaches past [-1, 1] by how far its
# padding mode is worth exercising (reflection: more than one reflection); a seeded uniform
# draw never puts a sample exactly on a pixel or half-way between two (the kinks). Bicubic's
# second-order tangents sum terms far larger than the result (its four weights' second
# derivatives sum to 0): their rounding, up to some 100 ulps, is about what
# tests/test_second_order.py allows where the result is small (64 ulps of 1), and a few
# draws exceed it (border at reach 1.5 or 1.6); these do not.
GRID_REACH = {"zeros": 1.2, "border": 1.4, "reflection": 2.6}


def grid(*shape: int, padding: str = "zeros") -> Arg:
    return Arg(tuple(shape), -GRID_REACH[padding], GRID_REACH[padding])


EXAMPLES += [
    *(Example("grid_sample", (real(1, 2, 3, 4), grid(1, 2, 3, 2, padding=padding)),
              {"mode": mode, "padding_mode": padding, "align_corners": align})
      for mode in ("bilinear", "nearest", "bicubic") for padding in GRID_REACH
      for align in (False, True)),
    *(Example("grid_sample", (real(1, 2, 2, 3, 2), grid(1, 2, 1, 2, 3, padding=padding)),
              {"mode": mode, "padding_mode": padding, "align_corners": align})
      for mode in ("bilinear", "nearest")
      for padding, align in [("zeros", False), ("border", True), ("reflection", False),
                             ("reflection", True)]),
    Example("grid_sample", (real(2, 1, 3, 3), grid(2, 2, 2, 2))),  # a batch of two
    # interpolate: non-integer scale factors (the source index comes from the scale itself,
    # not from the sizes), sizes, align_corners and recompute_scale_factor, in each mode.
    Example("interpolate", (real(1, 2, 5),), {"scale_factor": 1.7}),
    Example("interpolate", (real(1, 2, 5),), {"size": 3}),
    Example("interpolate", (real(1, 2, 3, 4),), {"size": (5, 3)}),
    # torch's 2-d nearest kernel copies where the size is unchanged and halves where it
    # doubles, whatever the scale factor: 3 -> 3 at 1.2, 4 -> 8 at 2.1.
    Example("interpolate", (real(1, 2, 3, 4),), {"scale_factor": (1.2, 2.1)}),
    Example("interpolate", (real(1, 1, 2, 3, 2),), {"scale_factor": (1.5, 0.7, 2.5)}),
    Example("interpolate", (real(1, 2, 5),), {"scale_factor": 0.7, "mode": "nearest-exact"}),
    Example("interpolate", (real(1, 2, 3, 4),), {"scale_factor": 1.7, "mode": "nearest-exact"}),
    Example("interpolate", (real(1, 1, 2, 3, 2),), {"size": (3, 4, 3), "mode": "nearest-exact"}),
    Example("interpolate", (real(1, 2, 5),), {"scale_factor": 1.6, "mode": "linear"}),
    Example("interpolate", (real(1, 2, 5),), {"size": 7, "mode": "linear", "align_corners": True}),
    Example("interpolate", (real(1, 2, 5),),
            {"scale_factor": 2.3, "mode": "linear", "recompute_scale_factor": True}),
    Example("interpolate", (real(1, 2, 3, 4),), {"scale_factor": (1.7, 0.6), "mode": "bilinear"}),
    Example("interpolate", (real(1, 2, 3, 4),),
            {"size": (5, 7), "mode": "bilinear", "align_corners": True}),
    Example("interpolate", (real(1, 2, 3, 4),),
            {"scale_factor": 1.5, "mode": "bilinear", "recompute_scale_factor": True}),
    Example("interpolate", (real(1, 2, 3, 4),), {"scale_factor": 1.7, "mode": "bicubic"}),
    Example("interpolate", (real(1, 2, 3, 4),),
            {"size": (4, 6), "mode": "bicubic", "align_corners": True}),
    Example("interpolate", (real(1, 2, 3, 4),), {"scale_factor": 0.8, "mode": "bicubic"}),
    Example("interpolate", (real(1, 2, 3, 4),),
            {"scale_factor": 1.6, "mode": "bicubic", "recompute_scale_factor": True}),
    Example("interpolate", (real(1, 1, 2, 3, 2),), {"scale_factor": 1.5, "mode": "trilinear"}),
    Example("interpolate", (real(1, 1, 2, 3, 2),),
            {"size": (3, 2, 4), "mode": "trilinear", "align_corners": True}),
    Example("interpolate", (real(1, 1, 2, 3, 2),), {"scale_factor": (0.6, 1.4, 2.2),
                                                    "mode": "trilinear",
                                                    "recompute_scale_factor": True}),
]

# Indexing by tensors and writes into views (ops/indexing.py). Indices are fixed where their
# values matter: distinct where a write would otherwise land twice, negative where they wrap,
# repeated where a gradient sums. "given" lists the tensor arguments a call gave: index(x, i,
# None, j) gives (0, 1, 3), None taking dim 1 whole.


def at_indices(shape: tuple[int, ...], *values: int) -> Arg:
    """int64 indices with exactly these values, row-major."""
    return Arg(shape, index=values)


def at_values(shape: tuple[int, ...], *values: float) -> Arg:
    """Real values fixed as given, row-major (zeros where a product's gradient is special)."""
    return Arg(shape, at=values)


SCATTER_INDEX = at_indices((2, 3), 0, 0, 2, 3, 3, 3)  # repeats: groups of 2, 1 and 3

EXAMPLES += [
    # Indexed dims apart: the broadcast index dims go first.
    Example("index", (real(3, 4, 5), at_indices((3,), 0, 2, -1), at_indices((3,), 1, 1, 4)),
            {"given": (0, 1, 3)}),
    # Adjacent, after a full slice: in place, broadcast (2, 1) with (3,).
    Example("index", (real(3, 4, 5), at_indices((2, 1), 0, -2), at_indices((3,), 3, 0, 1)),
            {"given": (0, 2, 3)}),
    Example("index", (real(4, 3), at_indices((2, 2), 3, 0, 0, 1))),  # a repeated row sums
    Example("index", (real(2, 5), at_indices((), 3)), {"given": (0, 2)}),  # a 0-d index
    Example("index", (real(2, 3, 4), at_indices((2,), 1, 0), at_indices((), -1)),
            {"given": (0, 1, 3)}),
    Example("index_put", (real(3, 4), real(2), at_indices((2,), 0, 2), at_indices((2,), 1, -1))),
    Example("index_put", (real(3, 4, 2), real(2, 1), at_indices((2,), 3, 0)),
            {"given": (0, 1, 3)}),  # x[:, [3, 0]] = v, v broadcast over the last dim
    Example("index_put", (real(4, 3), real(3, 3), at_indices((3,), 1, 1, -1)),
            {"accumulate": True}),  # row 1 takes two rows of values
    Example("index_put", (real(3, 4), real(), condition(3, 4))),  # x[mask] = v
    Example("index_put", (real(2, 3, 2), real(1, 2), condition(3)), {"given": (0, 1, 3)}),
    Example("index_put", (real(2, 3), real(1, 3), at_indices((2,), -1, 1)),
            {"accumulate": True}),
    Example("scatter", (real(3, 4), at_indices((3, 2), 0, 1, 2, 3, 1, 0), real(3, 2)),
            {"dim": 1}),
    Example("scatter", (real(3, 4), at_indices((2, 3), 0, 1, 2, 1, 2, 0), real(2, 3)),
            {"dim": 0}),
    Example("scatter", (real(3, 4), at_indices((2, 2), 3, 0, 1, 2), real()),
            {"dim": 1}),  # scatter.value: a 0-d src written at every index
    Example("scatter_add", (real(3, 4), at_indices((3, 3), 0, 0, 1, 3, 3, 3, 2, 1, 2),
                            real(3, 3)), {"dim": 1}),
    Example("scatter_add", (real(3, 2), at_indices((4, 2), 0, 1, 2, 2, 0, 0, 2, 1),
                            real(4, 2)), {"dim": 0}),
    *(Example("scatter_reduce", (real(2, 4), SCATTER_INDEX, real(2, 3)),
              {"dim": 1, "reduce": reduce, "include_self": include})
      for reduce in ("sum", "prod", "mean", "amax", "amin") for include in (True, False)),
    # prod at zeros: two src zeros at one place, an input zero left alone, an input zero
    # with a src zero; the gradient is the product of the others, as torch's.
    *(Example("scatter_reduce", (at_values((2, 4), 1.5, 0.0, -0.5, 2.0, 1.2, 0.7, -1.0, 0.0),
                                 at_indices((2, 3), 0, 0, 2, 3, 3, 3),
                                 at_values((2, 3), 0.0, 0.0, 0.8, -1.3, 0.0, 0.9)),
              {"dim": 1, "reduce": "prod", "include_self": include}) for include in (True, False)),
    Example("masked_scatter", (real(2, 3), condition(2, 3), real(6))),
    Example("masked_scatter", (real(3), condition(2, 3), real(2, 4))),  # input broadcast
    Example("select_scatter", (real(3, 4), real(3)), {"dim": 1, "index": -1}),
    Example("select_scatter", (real(2, 3, 2), real(3, 2)), {"dim": 0, "index": 1}),
    Example("slice_scatter", (real(5, 3), real(2, 3)), {"dim": 0, "start": 1, "end": 4,
                                                        "step": 2}),
    Example("slice_scatter", (real(2, 6), real(2, 3)), {"dim": 1, "start": -3}),
    Example("diagonal_scatter", (real(3, 4), real(3)), {"offset": 1}),
    Example("diagonal_scatter", (real(2, 3, 3), real(2, 2)), {"offset": -1, "dim1": 1,
                                                              "dim2": 2}),
    Example("as_strided", (real(3, 4),), {"size": (2, 3), "stride": (3, 1),
                                          "storage_offset": 1}),
    Example("as_strided", (real(2, 3),), {"size": (3, 2), "stride": (1, 2)}),
    Example("as_strided", (real(5),), {"size": (3, 3), "stride": (1, 1)}),  # overlapping
    Example("as_strided_scatter", (real(3, 4), real(2, 2)), {"size": (2, 2), "stride": (4, 2),
                                                             "storage_offset": 1}),
    Example("unfold", (real(1, 2, 4, 4),), {"kernel_size": 2}),
    Example("unfold", (real(2, 4, 5),), {"kernel_size": (2, 3), "padding": 1, "stride": (2, 1),
                                         "dilation": (1, 2)}),  # unbatched
    Example("fold", (real(1, 8, 9),), {"output_size": (4, 4), "kernel_size": 2}),  # overlaps
    Example("fold", (real(12, 4),), {"output_size": (3, 4), "kernel_size": 2, "stride": 2,
                                     "padding": (1, 0)}),  # unbatched
]

# Order statistics (ops/sorting.py): continuous random values never tie (their kinks). At
# most 6 elements, what the exact oracle affords of a sorting network (ops/sorting.py).
EXAMPLES += [
    Example("sort", (real(5),)),
    Example("sort", (real(2, 3),), {"dim": 0, "descending": True}),
    Example("sort", (real(2, 3),), {"stable": True}),
    Example("sort", (real(),)),
    Example("msort", (real(3, 2),)),
    Example("topk", (real(6),), {"k": 3}),
    Example("topk", (real(3, 2),), {"k": 2, "dim": 0, "largest": False}),
    Example("kthvalue", (real(5),), {"k": 2}),
    Example("kthvalue", (real(2, 3),), {"k": 3, "dim": 1, "keepdim": True}),
    Example("median", (real(5),)),
    Example("median", (real(2, 2),)),  # 4 elements: the lower of the middle two
    Example("median", (real(2, 3),), {"dim": 1}),
    Example("median", (real(3, 2),), {"dim": 0, "keepdim": True}),
    Example("cummax", (real(5),), {"dim": 0}),
    Example("cummax", (real(2, 4),), {"dim": 1}),
    Example("cummin", (real(3, 2),), {"dim": 0}),
    Example("cummin", (real(),), {"dim": -1}),
]

CASES = [pytest.param(e, id=e.id) for e in EXAMPLES]


def sympy_refuses(example: Example) -> str | None:
    """Why sympy cannot afford the example's op at its sizes (eigh, svd, qr and matrix_exp
    always; inv, det, solve above 3 x 3), or None. Its sympy form raises there, and the
    three-way checks confirm its rules against torch's Jacobian instead."""
    limit = OPS[example.op].exact_limit
    return None if limit is None else limit(
        [ArgInfo(a.shape, a.is_integer) for a in example.args])


EXACT_CASES = [case for case in CASES if sympy_refuses(case.values[0]) is None]
TORCH_CASES = [case for case in CASES if sympy_refuses(case.values[0]) is not None]


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
        if arg.index is not None or arg.at is not None:
            fixed = arg.index if arg.index is not None else arg.at
            kind = np.int64 if arg.index is not None else np.float64
            values.append(np.asarray(fixed, dtype=kind).reshape(arg.shape))
        elif arg.condition:
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
@pytest.mark.parametrize("example", EXACT_CASES)
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


@pytest.mark.parametrize("example", EXACT_CASES)
def test_sympy_form_evaluates_to_numpy_forward(example: Example) -> None:
    op, params = OPS[example.op], example.full_params
    values = sample(example)
    arrays, point = symbols_for(example, values)
    exact = np.asarray(op.sympy(arrays, params), dtype=object)
    expected = np.array([evaluate(y, point) for y in exact.ravel()]).reshape(exact.shape)
    assert_same_math(op.numpy(values, params), expected)


# --- where sympy cannot: torch's Jacobian ---------------------------------------------------


def conditioning(example: Example, values: list[np.ndarray]) -> float:
    """How much a float64 matrix function's rounding is amplified (at least 1): a computed
    inverse, R⁻¹ or 1/σ is off by eps·cond(A); an eigenvector or singular vector by
    eps·||A|| / (its distance to the next eigenvalue or singular value) (Golub & Van Loan,
    sections 2.6 and 8.1); e^A by eps·||A|| for a normal A. Other ops: 1."""
    name, a = example.op, values[0]
    if name not in {"inv", "solve", "det", "slogdet", "cholesky", "qr", "eigh", "eigvalsh",
                    "svd", "svdvals", "matrix_exp"}:
        return 1.0
    s = np.linalg.svd(a, compute_uv=False)
    if name == "matrix_exp":
        return max(1.0, float(np.max(s)))
    distances = [np.min(s[..., -1])]
    if name in ("eigh", "eigvalsh"):
        distances.append(np.min(np.diff(np.linalg.eigvalsh(a), axis=-1)))
    if name in ("svd", "svdvals") and s.shape[-1] > 1:
        distances.append(np.min(-np.diff(s, axis=-1)))
    return max(1.0, float(np.max(s) / min(distances)))


def torch_jacobians(example: Example, values: list[np.ndarray]) -> list[np.ndarray]:
    """Torch's float64 Jacobian of the op (built from its backward) for each argument, as
    (output elements, argument elements)."""
    import torch

    params = example.full_params
    tensors = tuple(torch.from_numpy(v) for v in values)
    jacobians = torch.autograd.functional.jacobian(
        lambda *t: OPS[example.op].torch(list(t), params), tensors)
    size = int(np.prod(np.shape(OPS[example.op].numpy(values, params))))
    return [j.numpy().reshape(size, v.size) for j, v in zip(jacobians, values, strict=True)]


PROBED_CASES = [pytest.param(e, id=e.id) for e in EXAMPLES if OPS[e.op].probes_vjp]


def test_the_common_ops_take_every_probe_at_once() -> None:
    """The ops the bundled cases and real suites sweep most (elementwise, shape moves,
    matmul) answer for every probe in one call: a rule sweep pays per op, not per probe."""
    batched = {name for name, op in OPS.items() if op.probes_vjp is not None}
    assert {"mul", "add", "div", "sub", "pow", "tanh", "exp", "matmul", "getitem", "select",
            "stack", "cat", "transpose", "permute", "reshape", "flatten", "unsqueeze",
            "pad"} <= batched


@pytest.mark.parametrize("example", PROBED_CASES)
def test_the_probes_vjp_is_the_vjp_of_each_probe(example: Example) -> None:
    """Three cotangents through ``probes_vjp`` at once: each row the plain VJP of its own
    cotangent, to the rounding of sums taken in another order (a few ulps of the terms)."""
    op, params = OPS[example.op], example.full_params
    values = sample(example)
    out = op.numpy(values, params)
    rng = np.random.default_rng(SEED + 2)
    cotangents = rng.standard_normal((3, *np.shape(out)))
    needs = needs_gradient(example)
    together = op.probes_vjp(cotangents, values, out, params, needs)
    for k, g in enumerate(cotangents):
        alone = op.vjp(g, values, out, params, needs)
        terms = op.vjp_magnitude(np.abs(g), values, out, params, needs)
        for position, (row, grad) in enumerate(zip(together, alone, strict=True)):
            assert (row is None) == (grad is None), position
            if grad is not None:
                assert_same_math(row[k], grad, scale=np.maximum(1.0, terms[position]))


@pytest.mark.parametrize("example", TORCH_CASES)
def test_vjp_and_magnitude_rules_match_torch_jacobian(example: Example) -> None:
    """The exact test's twin where sympy cannot (eigh, svd, qr, matrix_exp; inv, det, solve,
    cholesky above 3 x 3): the VJP against g @ J with J torch's float64 Jacobian, to the
    rounding of both, amplified by the factorization's conditioning; the magnitude rule at
    least |g| @ |J|; and the sympy form refuses with a reason instead of hanging."""
    op, params = OPS[example.op], example.full_params
    values = sample(example)
    out = op.numpy(values, params)
    g = cotangent(np.shape(out))
    grads = op.vjp(g, values, out, params, needs_gradient(example))
    magnitudes = op.vjp_magnitude(g, values, out, params, needs_gradient(example))
    kappa = conditioning(example, values)
    for position, jacobian in enumerate(torch_jacobians(example, values)):
        shape = values[position].shape
        expected = (g.ravel() @ jacobian).reshape(shape)
        terms = (np.abs(g.ravel()) @ np.abs(jacobian)).reshape(shape)
        scale = kappa * np.maximum(1.0, terms)
        assert_same_math(grads[position], expected, scale=scale)
        # torch's J carries rounding too: the bound holds to that rounding.
        assert np.all(magnitudes[position] >= terms - ULPS * EPS64 * scale)
    arrays, _ = symbols_for(example, values)
    with pytest.raises(SpecError, match=re.escape(str(sympy_refuses(example)))):
        op.sympy(arrays, params)


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
    # A result torch gives no gradient path (slogdet's sign) differentiates to zeros, as the
    # tool's autograd oracle reads it.
    expected = torch.autograd.grad(torch_out, differentiable, grad_outputs=torch.from_numpy(g),
                                   materialize_grads=True)
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
    assert kinked == (set(KINKS_AT) | set(REDUCTION_KINKS) | MAX_POOLS | set(MATRIX_KINKS)
                      | set(ORDER_KINKS) | {"scatter_reduce"} | SAMPLERS)


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


# --- grid_sample's kinks, and the sampling ops' refusals ------------------------------------

SAMPLERS = {"grid_sample"}


def grid_params(**given: ParamValue) -> Params:
    return {p.name: p.default for p in OPS["grid_sample"].params} | given


@pytest.mark.parametrize("example", [e for e in EXAMPLES if e.op in SAMPLERS], ids=str)
def test_grid_sample_examples_are_off_kinks(example: Example) -> None:
    # Otherwise the three-way checks above would compare at a kink.
    mask = OPS["grid_sample"].kinks(sample(example), example.full_params)
    assert mask.shape == () and not mask


# One sample on a 1x1x3x4 image, its other grid component at 0.1 (clear of every kink):
# values of one component on a kink, and off one. Without align_corners x reads column
# u = 2x + 1.5 (x = -0.25: column 1's centre, x = 0: half-way between columns 1 and 2); with
# it, y reads row u = y + 1.
GRID_KINKS = [
    # mode, padding_mode, align_corners, component (0: x, 1: y), on a kink, off one
    ("bilinear", "zeros", False, 0, [-0.25, -1.25, 1.25], [-0.2, -1.75, 1.75, 0.0]),
    # border: the clamp's ends are kinks; the clamped stretch beyond them is flat.
    ("bilinear", "border", False, 0, [-0.75, 0.75, -0.25], [-1.25, 1.25, -0.2]),
    # reflection: u = -1 reflects onto column 0, u = 5 onto column 2; u = -0.5 and 3.5 are
    # folds inside the clamped stretches.
    ("bilinear", "reflection", False, 0, [-1.25, 1.75, 0.75], [-1.0, 1.0, 0.1]),
    ("bilinear", "zeros", True, 1, [0.0, -2.0, 2.0], [0.3, -2.5, 2.5]),
    ("bilinear", "reflection", True, 1, [1.0, 2.0, -2.0], [1.5, -0.3]),
    ("nearest", "zeros", False, 0, [0.0, -1.0, 1.0], [-0.25, -1.5, 0.1]),
    ("nearest", "border", False, 0, [0.0, 0.5], [-1.0, 1.0, -0.25]),
    ("nearest", "reflection", True, 1, [-0.5, 1.5], [1.0, 0.2]),
    # bicubic is C1: its second derivative breaks on a pixel, within the taps' reach.
    ("bicubic", "zeros", False, 0, [-0.25, -1.75, 1.75], [-2.25, 2.25, 0.0]),
    ("bicubic", "border", True, 1, [0.0, -2.0, 2.0], [-3.0, 3.0, 0.5]),
    ("bicubic", "reflection", False, 0, [-3.25, 3.25], [-3.0, 0.0]),
]


@pytest.mark.parametrize("mode, padding, align, component, on, off", GRID_KINKS)
def test_grid_sample_kink_mask_marks_where_a_sample_breaks_the_derivative(
        mode: str, padding: str, align: bool, component: int, on: list[float],
        off: list[float]) -> None:
    """On a kink the one-sided slopes along the grid component differ (bicubic: the
    one-sided second derivatives), or the value jumps (nearest); off one they agree. The
    mask is 0-d: it is read against the input's shape, and the kink is in the grid."""
    op = OPS["grid_sample"]
    params = grid_params(mode=mode, padding_mode=padding, align_corners=align)
    image = np.random.default_rng(SEED).standard_normal((1, 1, 3, 4))

    def at(value: float) -> np.ndarray:
        point = np.full((1, 1, 1, 2), 0.1)
        point[..., component] = value
        return point

    def f(value: float) -> float:
        return float(op.numpy([image, at(value)], params).sum())

    for value, expect_kink in [*((v, True) for v in on), *((v, False) for v in off)]:
        mask = op.kinks([image, at(value)], params)
        assert mask.shape == () and bool(mask) is expect_kink, value
        if mode == "bicubic":
            h = 1e-5
            right = (f(value + 2 * h) - 2 * f(value + h) + f(value)) / h**2
            left = (f(value) - 2 * f(value - h) + f(value - 2 * h)) / h**2
            broken = abs(left - right) > 1e-2
        else:
            h = 1e-7
            right, left = (f(value + h) - f(value)) / h, (f(value) - f(value - h)) / h
            broken = abs(left - right) > 1e-3 or max(abs(left), abs(right)) > 1e3
        assert broken is expect_kink, (value, left, right)


def test_a_sample_on_a_pixel_is_reported_as_a_kink_of_grid_sample() -> None:
    from gradcheck_lab import check

    image = {"shape": [1, 1, 3, 4], "init": "uniform", "low": -1.0, "high": 1.0, "seed": 3}
    (result,) = check("sum(grid_sample(img, g))", {"img": image, "g": [[[[-0.25, 0.1]]]]})
    assert result.status == "skip"
    assert "grid_sample where a grid sample sits on a pixel" in result.message


def check_sampling_shapes(op: str, *shapes: Shape, **params: ParamValue) -> Shape:
    return check_shapes(OPS[op], *shapes, **params)


@pytest.mark.parametrize("op, shapes, params, message", [
    ("grid_sample", [(1, 2, 3), (1, 2, 2)], {}, "grid_sample(): input must be (N, C, H, W) or "
                                                "(N, C, D, H, W)"),
    ("grid_sample", [(1, 2, 3, 4), (1, 2, 2, 3)], {}, "a 4-d input needs a grid "
                                                      "(N, Ho, Wo, 2), got shape [1, 2, 2, 3]"),
    ("grid_sample", [(1, 2, 2, 3, 4), (1, 2, 2, 2)], {}, "a 5-d input needs a grid "
                                                         "(N, Do, Ho, Wo, 3)"),
    ("grid_sample", [(1, 2, 3, 4), (2, 2, 2, 2)], {}, "the grid's batch size 2 differs from "
                                                      "the input's 1"),
    ("grid_sample", [(1, 2, 2, 3, 4), (1, 2, 2, 2, 3)], {"mode": "bicubic"},
     "grid_sample(): mode='bicubic' takes a 4-d input only"),
    ("grid_sample", [(1, 1, 10**4, 10**4), (1, 10**4, 10**3, 2)], {"mode": "bicubic"},
     "grid_sample(): the taps it reads would hold"),
    ("interpolate", [(2, 3)], {"size": 4}, "interpolate(): input must be (N, C, L), "
                                           "(N, C, H, W) or (N, C, D, H, W)"),
    ("interpolate", [(1, 2, 3, 4)], {}, "interpolate(): give exactly one of size= and "
                                        "scale_factor="),
    ("interpolate", [(1, 2, 3, 4)], {"size": 4, "scale_factor": 2.0}, "give exactly one"),
    ("interpolate", [(1, 2, 3, 4)], {"size": (4,)}, "interpolate(): size=[4] needs one value "
                                                    "per spatial dim (2)"),
    ("interpolate", [(1, 2, 3, 4)], {"scale_factor": (1.5, 2.0, 2.0)}, "scale_factor=[1.5, "
                                                                       "2.0, 2.0] needs one"),
    ("interpolate", [(1, 2, 3, 4)], {"size": (0, 3)}, "interpolate(): size= must be at least 1"),
    ("interpolate", [(1, 2, 3, 4)], {"scale_factor": -1.0}, "scale_factor= must be positive"),
    ("interpolate", [(1, 2, 3, 4)], {"scale_factor": 0.3}, "scale_factor=0.3 leaves an input "
                                                           "of spatial size [3, 4] no output"),
    ("interpolate", [(1, 2, 3, 4)], {"size": 5, "recompute_scale_factor": True},
     "recompute_scale_factor=True is not meaningful with an explicit size"),
    ("interpolate", [(1, 2, 3, 4)], {"size": 5, "mode": "bilinear", "antialias": True},
     "interpolate(): antialias=True (which mode='lanczos' needs) is not supported"),
    ("interpolate", [(1, 2, 3, 4)], {"size": 5, "mode": "lanczos"}, "antialias=True"),
    ("interpolate", [(1, 2, 3, 4)], {"size": 5, "mode": "area"}, "interpolate(): mode='area' "
                                                                 "is adaptive average pooling: "
                                                                 "write adaptive_avg_pool2d"),
    ("interpolate", [(1, 2, 3, 4)], {"size": 5, "align_corners": False},
     "interpolate(): align_corners= is only for the modes linear, bilinear, bicubic and "
     "trilinear, not 'nearest'"),
    ("interpolate", [(1, 2, 3)], {"size": 5, "mode": "bilinear"}, "interpolate(): "
     "mode='bilinear' needs a 4-d input (N, C, H, W), got a 3-d one"),
    ("interpolate", [(1, 2, 3, 4)], {"size": 5, "mode": "trilinear"}, "needs a 5-d input"),
    ("interpolate", [(1, 2, 3, 4)], {"size": 5, "mode": "linear"}, "needs a 3-d input"),
    ("interpolate", [(1, 1, 1000, 1000)], {"scale_factor": 20.0}, "interpolate(): the output "
                                                                  "would hold"),
])
def test_sampling_shape_rules_refuse(op: str, shapes: list[Shape], params: Params,
                                     message: str) -> None:
    with pytest.raises(SpecError, match=re.escape(message)):
        check_sampling_shapes(op, *shapes, **params)


@pytest.mark.parametrize("text, shape", [
    ("interpolate(img, scale_factor=1.5)", (2, 1, 9, 7)),
    ("interpolate(img, scale_factor=(1.5, 0.6), mode='bilinear', align_corners=True)",
     (2, 1, 9, 3)),
    ("interpolate(img, (4, 4), None, 'bicubic')", (2, 1, 4, 4)),  # torch's positional order
    ("interpolate(img, size=3, mode='nearest-exact')", (2, 1, 3, 3)),
    ("interpolate(img, scale_factor=2, recompute_scale_factor=True)", (2, 1, 12, 10)),
    ("grid_sample(img, g)", (2, 1, 3, 4)),
    ("grid_sample(img, g, 'nearest', 'reflection', True)", (2, 1, 3, 4)),
])
def test_the_case_language_spells_grid_sample_and_interpolate(text: str, shape: Shape) -> None:
    from gradcheck_lab.casefile.expr import parse_expression
    from gradcheck_lab.program.graph import ProgramBuilder

    builder = ProgramBuilder()
    builder.add_input("img", (2, 1, 6, 5), False, True)
    builder.add_input("g", (2, 3, 4, 2), False, True)
    index = builder.add_expression(parse_expression(text), "output")
    assert builder.nodes[index].shape == shape


@pytest.mark.parametrize("text, message", [
    ("interpolate(img, scale_factor=(1.5, y))", "interpolate(): scale_factor= needs a number"),
    ("interpolate(img, size=2.5)", "interpolate(): size= needs an integer"),
    ("grid_sample(img, g, mode='cubic')", "grid_sample(): mode='cubic' is not one of"),
    ("grid_sample(img, g, align_corners=None)", "grid_sample(): align_corners= needs True or "
                                                "False"),
])
def test_the_sampling_ops_refuse_malformed_keywords(text: str, message: str) -> None:
    from gradcheck_lab.casefile.expr import parse_expression

    with pytest.raises(SpecError, match=re.escape(message)):
        parse_expression(text)


@pytest.mark.parametrize("shape, given", [
    ((1, 1, 3), {"scale_factor": 1.2}),  # 1-d nearest: size unchanged
    ((1, 1, 2, 3, 2), {"scale_factor": (2.1, 1.2, 1.7)}),  # 3-d nearest: doubled, unchanged
    ((1, 1, 3, 4), {"scale_factor": 1.06, "mode": "bicubic"}),  # bicubic: both unchanged
])
def test_interpolate_vjp_is_the_adjoint_where_torchs_backward_is_not(
        shape: Shape, given: Params) -> None:
    """Where a size is unchanged (or doubled, nearest) but the scale factor is not exactly
    1 (2), torch 2.13's forward reads the input by the scale factor while its backward
    copies (or halves) the index: not the forward's adjoint. The op's VJP is the adjoint of
    the forward torch computes, so a check reports torch's backward there; the examples
    above keep clear of these sizes."""
    import torch

    op = OPS["interpolate"]
    params = {p.name: p.default for p in op.params} | given
    rng = np.random.default_rng(SEED)
    x, v = rng.standard_normal(shape), rng.standard_normal(shape)
    tensor = torch.tensor(x, requires_grad=True)
    out = op.torch([tensor], params)
    assert_same_math(op.numpy([x], params), out.detach().numpy())
    g = rng.standard_normal(tuple(out.shape))
    (ours,) = op.vjp(g, [x], out.detach().numpy(), params, [True])
    assert_same_math(np.sum(op.numpy([v], params) * g), np.sum(v * ours))
    (torchs,) = torch.autograd.grad(out, tensor, torch.from_numpy(g))
    assert not np.allclose(torchs.numpy(), ours)


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


# --- matrix functions ---------------------------------------------------------------------------

# For each op of ops/matrix.py with kinks: (keywords, A, a direction E, on a kink?). On one, the
# function is broken along E (one-sided slopes differ, or the value jumps: a sign flips); off
# one, it is smooth along the same E.
MATRIX_KINKS: dict[str, list[tuple[Params, list[list[float]], list[list[float]], bool]]] = {
    "eigvalsh": [({}, [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 3.0]],
                  [[1.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]], True),  # λ = 1 twice
                 ({}, [[1.0, 0.0, 0.0], [0.0, 1.5, 0.0], [0.0, 0.0, 3.0]],
                  [[1.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]], False)],
    # (1, -1)/√2 is the eigenvector of 1: its entries tie for the largest, with both signs.
    "eigh": [({"part": 1}, [[2.0, 1.0], [1.0, 2.0]], [[1.0, 0.0], [0.0, 0.0]], True),
             ({"part": 1}, [[2.0, 1.0], [1.0, 3.0]], [[1.0, 0.0], [0.0, 0.0]], False),
             ({"part": 0}, [[1.0, 0.0], [0.0, 1.0]], [[1.0, 0.0], [0.0, 0.0]], True),
             ({"part": 0}, [[2.0, 1.0], [1.0, 2.0]], [[1.0, 0.0], [0.0, 0.0]], False)],
    "svdvals": [({}, [[2.0, 0.0, 0.0], [0.0, 2.0, 0.0], [0.0, 0.0, 1.0]],
                 [[1.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]], True),  # σ = 2 twice
                ({}, [[1.0, 0.0], [0.0, 0.0]], [[0.0, 0.0], [0.0, 1.0]], True),  # σ = |t|
                ({}, [[3.0, 0.0], [0.0, 0.5]], [[0.0, 0.0], [0.0, 1.0]], False)],
    # U of [[1, 2], [2, 1]] has the column (1, -1)/√2; Vh's row follows its sign.
    "svd": [({"part": 0}, [[1.0, 2.0], [2.0, 1.0]], [[1.0, 0.0], [0.0, 0.0]], True),
            ({"part": 2}, [[1.0, 2.0], [2.0, 1.0]], [[1.0, 0.0], [0.0, 0.0]], True),
            ({"part": 0}, [[1.0, 2.0], [2.0, 3.0]], [[1.0, 0.0], [0.0, 0.0]], False),
            ({"part": 1}, [[1.0, 0.0], [0.0, 0.0]], [[0.0, 0.0], [0.0, 1.0]], True)],
    # det = 4t along E: the sign jumps from -1 to 1.
    "slogdet": [({"part": 0}, [[1.0, 2.0], [2.0, 4.0]], [[1.0, 0.0], [0.0, 0.0]], True),
                ({"part": 0}, [[2.0, 1.0], [1.0, 3.0]], [[1.0, 0.0], [0.0, 0.0]], False),
                ({"part": 1}, [[2.0, 1.0], [1.0, 3.0]], [[1.0, 0.0], [0.0, 0.0]], False)],
    # The identity needs no reflection, a move below its diagonal does (R_00 = 1, then -1);
    # the pivot A_00 crossing 0 flips R_00's sign.
    "qr": [({"part": 1}, [[1.0, 0.0], [0.0, 1.0]], [[0.0, 0.0], [1.0, 0.0]], True),
           ({"part": 0}, [[0.0, 1.0], [1.0, 1.0]], [[1.0, 0.0], [0.0, 0.0]], True),
           ({"part": 1}, [[2.0, 1.0], [1.0, 3.0]], [[1.0, 0.0], [0.0, 0.0]], False),
           ({"part": 0}, [[2.0, 1.0], [1.0, 3.0]], [[0.0, 0.0], [1.0, 0.0]], False)],
}


@pytest.mark.parametrize("name", list(MATRIX_KINKS))
def test_matrix_kinks_are_where_the_function_breaks(name: str) -> None:
    op = OPS[name]
    h = 1e-7
    for keywords, a, e, on_kink in MATRIX_KINKS[name]:
        params = {p.name: p.default for p in op.params} | keywords
        a, e = np.array(a), np.array(e)
        mask = op.kinks([a], params)
        assert mask.shape == a.shape and (mask.all() if on_kink else not mask.any()), (a, mask)
        # The sum of the outputs weighted unevenly: a tie's kink shows in some weighted sum.
        weights = np.arange(1.0, 1.0 + op.numpy([a], params).size).reshape(
            np.shape(op.numpy([a], params)))
        total = [float(np.sum(weights * op.numpy([a + s * e], params))) for s in (-h, 0.0, h)]
        left, right = (total[1] - total[0]) / h, (total[2] - total[1]) / h
        broken = abs(left - right) > 1e-3 or max(abs(left), abs(right)) > 1e3
        assert broken is on_kink, (keywords, a, left, right)


@pytest.mark.parametrize("example", [e for e in EXAMPLES if e.op in MATRIX_KINKS], ids=str)
def test_matrix_examples_are_off_their_kinks(example: Example) -> None:
    # Otherwise the three-way checks above would compare where no derivative exists.
    assert not OPS[example.op].kinks(sample(example), example.full_params).any()


@pytest.mark.parametrize("op, shapes, params, message", [
    ("inv", [(3,)], {}, "inv(): A must be a matrix (..., m, n), got shape [3]"),
    ("inv", [(2, 3)], {}, "inv(): A must be square (..., n, n), got shape [2, 3]"),
    ("matrix_exp", [(4, 2, 3)], {}, "matrix_exp(): A must be square"),
    ("det", [(2, 0, 0)], {}, "det(): A is empty (shape [2, 0, 0])"),
    ("eigvalsh", [(0, 2, 2)], {}, "eigvalsh(): A is empty (shape [0, 2, 2])"),
    ("solve", [(2, 2), (2, 0)], {}, "solve(): B is empty (shape [2, 0])"),
    ("cholesky", [(3, 2)], {}, "cholesky(): A must be square"),
    ("eigvalsh", [()], {}, "eigvalsh(): A must be a matrix"),
    ("solve", [(3, 3), ()], {}, "solve(): B must be a vector (..., n) or a matrix (..., n, k), "
                               "got a 0-d tensor"),
    ("solve", [(3, 3), (4, 2)], {}, "solve(): B must be a vector (..., 3) or a matrix (..., n, k) "
                                   "with n = 3 to match A [3, 3], got shape [4, 2]"),
    ("solve", [(3, 3), (3, 2)], {"left": False}, "a matrix (..., k, n) with n = 3"),
    ("solve", [(3, 3), (3,)], {"left": False}, "a vector B with left=False is not supported"),
    ("solve", [(2, 3, 3), (3, 3, 2)], {}, "solve(): the batch dims of A [2, 3, 3] and B "
                                         "[3, 3, 2] cannot be broadcast together"),
    ("solve", [(3, 2), (3,)], {}, "solve(): A must be square"),
    ("eigh", [(3, 3)], {"part": 2}, "eigh() gives 2 tensors (eigenvalues, eigenvectors): pick "
                                    "one with [k], -2 <= k < 2; [2] is not one"),
    ("slogdet", [(3, 3)], {"part": -3}, "[-3] is not one"),
    ("qr", [(3, 4)], {"part": 0, "mode": "r"}, "qr(): mode='r' computes no Q"),
    ("qr", [(4, 3)], {"part": 1, "mode": "complete"}, "mode='complete' of a 4 x 3 matrix"),
    ("svd", [(4, 3)], {"part": 0}, "svd(): full_matrices=True of a 4 x 3 matrix: the 1 extra"),
    ("svd", [(2, 5)], {"part": 2}, "write full_matrices=False"),
    ("svd", [(3,)], {"part": 1}, "svd(): A must be a matrix"),
])
def test_matrix_shape_rules_reject(op: str, shapes: list[Shape], params: Params,
                                   message: str) -> None:
    with pytest.raises(SpecError, match=re.escape(message)):
        check_shapes(OPS[op], *shapes, **params)


def test_matrix_shape_rules_accept_the_boundary_cases() -> None:
    assert check_shapes(OPS["solve"], (3, 3), (3,)) == (3,)
    assert check_shapes(OPS["solve"], (2, 3, 3), (3,)) == (2, 3)  # one vector for the batch
    assert check_shapes(OPS["solve"], (2, 3, 3), (3, 3)) == (2, 3, 3)  # a matrix, not 3 vectors
    assert check_shapes(OPS["solve"], (3, 3), (5, 3), left=False) == (5, 3)
    assert check_shapes(OPS["qr"], (3, 4), part=0, mode="complete") == (3, 3)
    assert check_shapes(OPS["qr"], (2, 5, 3), part=1) == (2, 3, 3)
    assert check_shapes(OPS["svd"], (4, 3), part=1) == (3,)  # S needs no extra vectors
    assert check_shapes(OPS["svd"], (2, 5), part=2, full_matrices=False) == (2, 5)
    assert check_shapes(OPS["svdvals"], (2, 5)) == (2,)
    assert check_shapes(OPS["slogdet"], (4, 2, 2), part=-1) == (4,)


@pytest.mark.parametrize("text, shape", [
    ("eigh(s)[1]", (3, 3)),
    ("eigh(s, UPLO='U')[0]", (3,)),
    ("eigvalsh(s)[0]", ()),  # one result: [0] indexes it
    ("qr(x)[0] @ qr(x)[-1]", (4, 3)),
    ("svd(x, full_matrices=False)[2]", (3, 3)),
    ("svd(x)[1]", (3,)),
    ("slogdet(s)[1] + det(s)", ()),
    ("solve(s, x[0]) + inv(s) @ x[1]", (3,)),
    ("cholesky(s @ transpose(s, 0, 1) + 3, upper=True)", (3, 3)),
    ("matrix_exp(s)", (3, 3)),
])
def test_the_case_language_spells_the_matrix_functions(text: str, shape: Shape) -> None:
    from gradcheck_lab.casefile.expr import parse_expression
    from gradcheck_lab.program.graph import ProgramBuilder

    builder = ProgramBuilder()
    builder.add_input("s", (3, 3), False, True)
    builder.add_input("x", (4, 3), False, True)
    index = builder.add_expression(parse_expression(text), "output")
    assert builder.nodes[index].shape == shape


@pytest.mark.parametrize("text, message", [
    ("eigh(s)", "eigh() gives several tensors: pick one with [k], as in eigh(...)[0]"),
    ("svd(x, full_matrices=False)", "svd() gives several tensors"),
    ("qr(x)[0:1]", "qr(...)[k] takes one integer k"),
])
def test_a_matrix_function_of_several_results_needs_one_picked(text: str, message: str) -> None:
    from gradcheck_lab.casefile.expr import parse_expression

    with pytest.raises(SpecError, match=re.escape(message)):
        parse_expression(text)


@pytest.mark.parametrize("name, keywords", [
    ("eigvalsh", {}), ("eigvalsh", {"UPLO": "U"}), ("eigh", {"UPLO": "U", "part": 1}),
    ("cholesky", {}), ("cholesky", {"upper": True}),
])
def test_eigh_and_cholesky_read_one_triangle_and_differentiate_the_symmetric_part(
        name: str, keywords: Params) -> None:
    """As torch: the value of a non-symmetric A is that of the symmetric matrix its triangle
    spells, and the gradient is that of f((X + Xᵀ)/2) there, the derivative along symmetric
    moves (a move of one entry alone changes the value through one triangle only)."""
    import torch

    op = OPS[name]
    params = {p.name: p.default for p in op.params} | keywords
    upper = params.get("UPLO") == "U" or params.get("upper") is True
    symmetric = np.array([[4.0, 1.0, 0.5], [1.0, 3.0, 0.2], [0.5, 0.2, 2.0]])
    a = symmetric + np.array([[0.0, 0.3, -0.2], [-0.3, 0.0, 0.1], [0.2, -0.1, 0.0]])
    kept = np.triu(a) if upper else np.tril(a)
    spelled = kept + np.swapaxes(kept, 0, 1) - np.diag(np.diag(a))
    out = op.numpy([a], params)
    tensor = torch.tensor(a, requires_grad=True)
    reference = op.torch([tensor], params)
    assert_same_math(out, reference.detach().numpy())
    assert_same_math(out, op.numpy([spelled], params))
    g = cotangent(out.shape)
    (grad,) = op.vjp(g, [a], out, params, [True])
    (expected,) = torch.autograd.grad(reference, [tensor], torch.from_numpy(g))
    assert_same_math(grad, expected.numpy())
    h = 1e-5  # central differences: O(h²) = 1e-10 truncation, eps / h = 2e-11 rounding

    def along(e: np.ndarray) -> float:
        moved = [float(np.sum(g * op.numpy([(m + m.T) / 2], params)))
                 for m in (spelled + h * e, spelled - h * e)]
        return (moved[0] - moved[1]) / (2 * h)

    differences = np.array([[along(np.eye(3)[:, [i]] @ np.eye(3)[[j], :]) for j in range(3)]
                            for i in range(3)])
    np.testing.assert_allclose(grad, differences, rtol=0, atol=1e-8 * max(1.0, np.abs(grad).max()))


def test_eigh_and_svd_vectors_are_signed_alike_in_numpy_and_torch() -> None:
    """numpy's LAPACK and torch's pick opposite signs for many of these; both forms sign each
    eigenvector, and each column of U, so that its largest entry is positive (Vh's rows follow
    U's, so U diag(S) Vh is still A)."""
    import torch

    rng = np.random.default_rng(SEED)
    for n in (2, 3, 5):
        x = rng.uniform(-2.0, 2.0, (20, n, n + 1))
        s = x[..., :n] + np.swapaxes(x[..., :n], -1, -2)
        ours = {}
        for name, a, keywords in [("eigh", s, {"part": 1}), ("svd", x, {"part": 0}),
                                  ("svd", x, {"part": 2})]:
            op = OPS[name]
            params = {p.name: p.default for p in op.params} | keywords
            params |= {"full_matrices": False} if name == "svd" else {}
            ours[name, keywords["part"]] = op.numpy([a], params)
            # A flipped sign is a difference of order 1; rounding, even at the worst
            # conditioning among these random matrices, stays far below 1e-8.
            np.testing.assert_allclose(ours[name, keywords["part"]],
                                       op.torch([torch.from_numpy(a)], params).numpy(),
                                       rtol=0, atol=1e-8)
        for vectors in (ours["eigh", 1], ours["svd", 0]):
            at = np.argmax(np.abs(vectors), axis=-2)[..., None, :]
            assert np.all(np.take_along_axis(vectors, at, axis=-2) > 0)
        singular_values = np.linalg.svd(x, compute_uv=False)
        np.testing.assert_allclose((ours["svd", 0] * singular_values[..., None, :])
                                   @ ours["svd", 2], x, rtol=0, atol=1e-13)


def test_det_gradient_is_the_cofactor_matrix_at_a_singular_a_too() -> None:
    import torch

    op = OPS["det"]
    for a, cofactors in [
        ([[1.0, 2.0], [2.0, 4.0]], [[4.0, -2.0], [-2.0, 1.0]]),
        ([[1.0, 2.0, 3.0], [2.0, 4.0, 6.0], [1.0, 0.0, 1.0]],  # rank 2
         [[4.0, 4.0, -4.0], [-2.0, -2.0, 2.0], [0.0, 0.0, 0.0]]),
        ([[1.0, 2.0, 3.0], [2.0, 4.0, 6.0], [3.0, 6.0, 9.0]], np.zeros((3, 3))),  # rank 1
    ]:
        a = np.array(a)
        (grad,) = op.vjp(np.array(1.0), [a], op.numpy([a], {}), {}, [True])
        assert_same_math(grad, cofactors)
        # torch's own first-order path multiplies by det(A) = 0 here and gives zeros; with
        # create_graph it takes the adjugate through the SVD, as our rule does.
        tensor = torch.tensor(a, requires_grad=True)
        (reference,) = torch.autograd.grad(torch.linalg.det(tensor), [tensor], create_graph=True)
        # Each path rounds its (n-1)-minors, products of n-1 singular values: an absolute
        # error of a few ulps of ||A||^(n-1), not of 1. Where the exact cofactors are 0 (rank
        # 1) both are that rounding alone, and the two LAPACK paths differ by it (seen: 2e-14
        # for ||A||^2 = 196, against 64 ulps of 1 = 1.4e-14).
        minor_scale = np.full(a.shape, max(1.0, np.linalg.norm(a) ** (len(a) - 1)))
        assert_same_math(grad, reference.detach().numpy(), scale=minor_scale)


@pytest.mark.parametrize("name, a, message", [
    ("inv", [[1.0, 2.0], [2.0, 4.0]], "inv(): A is singular"),
    ("cholesky", [[1.0, 2.0], [2.0, 1.0]], "cholesky(): A is not positive definite"),
])
def test_a_matrix_outside_an_ops_domain_is_a_spec_error(name: str, a: list[list[float]],
                                                         message: str) -> None:
    op = OPS[name]
    with pytest.raises(SpecError, match=re.escape(message)):
        op.numpy([np.array(a)], {p.name: p.default for p in op.params})


# --- indexing and order statistics (ops/indexing.py, ops/sorting.py) ---------------------------

# Order statistics with ties: a 1-d input, keywords, and the elements the mask must mark. A
# sort's sum is smooth at a tie (the tied values only trade places), so the slopes are taken
# of the outputs weighted by their place.
ORDER_KINKS: dict[str, tuple[list[float], Params, list[bool]]] = {
    "sort": ([1.0, 3.0, 3.0, 2.0], {}, [False, True, True, False]),
    "msort": ([2.0, 0.5, 2.0], {}, [True, False, True]),
    "topk": ([3.0, 1.0, 3.0, 2.0], {"k": 2}, [True, False, True, False]),
    "kthvalue": ([2.0, 1.0, 2.0, 5.0], {"k": 2}, [True, False, True, False]),
    "median": ([1.0, 3.0, 3.0], {}, [False, True, True]),
    "cummax": ([1.0, 3.0, 3.0, 2.0], {"dim": 0}, [False, True, True, False]),
    "cummin": ([2.0, 0.0, 1.0, 0.0], {"dim": 0}, [False, True, False, True]),
}
# Ties that decide nothing: below topk's k, away from the k-th value, none at all.
ORDER_SMOOTH: list[tuple[str, list[float], Params]] = [
    ("topk", [5.0, 0.0, 0.0, 1.0], {"k": 2}),
    ("kthvalue", [1.0, 1.0, 2.0, 5.0], {"k": 3}),
    ("sort", [0.5, -1.0, 2.0], {}),
]


def weighted_slopes(op: Op, x: np.ndarray, params: Params, element: int,
                    h: float = 1e-7) -> tuple[float, float]:
    """The one-sided slopes along x[element] of the outputs weighted 1, 2, 3, ... by place."""
    def value(step: float) -> float:
        moved = x.copy()
        moved[element] += step
        out = np.asarray(op.numpy([moved], params)).reshape(-1)
        return float(np.arange(1, out.size + 1) @ out)

    return (value(0.0) - value(-h)) / h, (value(h) - value(0.0)) / h


@pytest.mark.parametrize("name", list(ORDER_KINKS))
def test_order_statistic_kinks_are_where_one_sided_slopes_differ(name: str) -> None:
    op = OPS[name]
    values, keywords, expected = ORDER_KINKS[name]
    params = {p.name: p.default for p in op.params} | keywords
    x = np.array(values)
    np.testing.assert_array_equal(op.kinks([x], params), expected)
    for element, marked in enumerate(expected):
        left, right = weighted_slopes(op, x, params, element)
        assert (abs(left - right) > 1e-3) is marked, (element, left, right)


@pytest.mark.parametrize("name, values, keywords", ORDER_SMOOTH)
def test_order_statistics_are_smooth_at_ties_that_decide_nothing(name: str, values: list[float],
                                                                 keywords: Params) -> None:
    op = OPS[name]
    params = {p.name: p.default for p in op.params} | keywords
    assert not op.kinks([np.array(values)], params).any()


ORDER_STATISTICS = {"sort", "msort", "topk", "kthvalue", "median", "cummax", "cummin"}


@pytest.mark.parametrize("example", [e for e in EXAMPLES if e.op in ORDER_STATISTICS |
                                     {"scatter_reduce"}], ids=str)
def test_order_statistic_examples_have_no_ties(example: Example) -> None:
    # Otherwise the three-way checks above would compare at a kink.
    assert not OPS[example.op].kinks(sample(example), example.full_params).any()


@pytest.mark.parametrize("include_self, expected", [(True, [True, False, True]),
                                                    (False, [True, False, False])])
def test_scatter_reduce_kinks_are_tied_extremes(include_self: bool,
                                                expected: list[bool]) -> None:
    """Output 0 takes 3 and 3 from src (and the input's 1); output 2 the input's 2 and src's 2,
    a tie only where the input takes part; output 1 is the input's alone."""
    x, index, src = np.array([1.0, 5.0, 2.0]), np.array([0, 0, 2]), np.array([3.0, 3.0, 2.0])
    for reduce in ("amax", "sum", "prod", "mean"):
        op = OPS["scatter_reduce"]
        params = {"dim": 0, "reduce": reduce, "include_self": include_self}
        mask = op.kinks([x, index, src], params)
        np.testing.assert_array_equal(mask, expected if reduce == "amax" else [False] * 3)
    low = OPS["scatter_reduce"].kinks([x, index, -src], {"dim": 0, "reduce": "amin",
                                                          "include_self": False})
    np.testing.assert_array_equal(low, [True, False, False])


def infos(*shapes: Shape, integer: tuple[int, ...] = (), masks: tuple[int, ...] = ()
          ) -> list[ArgInfo]:
    return [ArgInfo(tuple(s), i in integer or i in masks, is_bool=i in masks)
            for i, s in enumerate(shapes)]


@pytest.mark.parametrize("op, args, params, message", [
    ("index", infos((3, 4)), {"given": (0,)}, "index() needs at least one index tensor"),
    ("index", infos((3, 4), (2,)), {}, "index(): i0 must be an int64 tensor"),
    ("index", infos((3, 4), (3, 4), masks=(1,)), {}, "a bool mask index gives a shape that "
                                                     "depends on its values"),
    ("index", infos((3,), (2,), (2,), integer=(1, 2)), {}, "the indices cover 2 dims of a 1-d"),
    ("index", infos((3, 4), (2,), (3,), integer=(1, 2)), {}, "index(): the index tensors' "
                                                             "shapes [2] and [3] cannot be"),
    ("index_put", infos((3, 4), (3,), (2,), integer=(2,)), {},
     "values of shape [3] cannot be broadcast to the indexed shape [2, 4]"),
    ("index_put", infos((3, 4), (), (2, 3), masks=(2,)), {},
     "the mask i0 of shape [2, 3] does not match the input's dims [3, 4]"),
    ("index_put", infos((3, 4), (), (), masks=(2,)), {}, "i0 is a 0-d mask"),
    ("scatter", infos((3, 4), (3,), (3,), integer=(1,)), {"dim": 1},
     "index needs as many dims as input (2), got 1"),
    ("scatter_add", infos((3, 4), (3, 2), (), integer=(1,)), {"dim": 1},
     "src needs as many dims as index (2), got 0"),
    ("scatter", infos((3, 4), (4, 2), (4, 2), integer=(1,)), {"dim": 1},
     "index shape [4, 2] exceeds src shape [4, 2] or, outside dim 1, input shape [3, 4]"),
    ("scatter_reduce", infos((3, 4), (3, 2), (2, 2), integer=(1,)),
     {"dim": 1, "reduce": "sum"}, "index shape [3, 2] exceeds src shape [2, 2]"),
    ("scatter", infos((3, 4), (3, 4), (3, 4), masks=(1,)), {"dim": 1}, "not a mask"),
    ("masked_scatter", infos((2, 3), (4,), (6,), masks=(1,)), {}, "cannot be broadcast"),
    ("select_scatter", infos((3, 4), (4,)), {"dim": 1, "index": 0},
     "select_scatter(): src must have shape [3], got [4]"),
    ("select_scatter", infos((3, 4), (3,)), {"dim": 1, "index": 4},
     "index=4 is out of range for dim 1 of size 4"),
    ("slice_scatter", infos((3, 4), (3, 4)), {"step": 0}, "step=0 must be positive"),
    ("slice_scatter", infos((5, 2), (3, 2)), {"start": 1, "end": 3},
     "src must have shape [2, 2], got [3, 2]"),
    ("diagonal_scatter", infos((3, 4), (3,)), {"dim1": 1, "dim2": -1}, "dim1 and dim2 must differ"),
    ("as_strided", infos((3, 4)), {"size": (3, 3), "stride": (4, 1), "storage_offset": 3},
     "as_strided(): the view reaches element 13 of an input of 12"),
    ("as_strided", infos((3, 4)), {"size": (2,), "stride": (-1,)}, "must not be negative"),
    ("as_strided", infos((3, 4)), {"size": (2, 2), "stride": (1,)}, "need as many entries"),
    ("as_strided_scatter", infos((3, 4), (3,)), {"size": (3,), "stride": (0,)},
     "an overlapping view writes one element twice"),
    ("unfold", infos((4, 4)), {"kernel_size": 2}, "input must be (N, C, H, W) or (C, H, W)"),
    ("unfold", infos((1, 1, 4, 4)), {"kernel_size": 3, "dilation": 2},
     "the kernel [3, 3] (dilation [2, 2]) does not fit the padded [4, 4]"),
    ("fold", infos((1, 6, 9)), {"output_size": 4, "kernel_size": 2},
     "input's dim 1 (6) must be divisible by the kernel's 4 elements"),
    ("fold", infos((1, 8, 8)), {"output_size": 4, "kernel_size": 2},
     "input's last dim (8) must be the 9 blocks that output_size=[4, 4] has"),
    ("sort", infos((3, 4)), {"dim": 2}, "sort(): dim=2 is out of range"),
    ("topk", infos((3, 4)), {"k": 5}, "topk(): k=5 is out of range for a dim of size 4"),
    ("topk", infos((3, 4)), {"k": 2, "sorted": False}, "sorted=False leaves the order"),
    ("kthvalue", infos((3, 4)), {"k": 0}, "kthvalue(): k=0 is out of range"),
    ("median", infos((3, 4)), {"keepdim": True}, "median(): keepdim=True needs dim="),
    ("msort", infos(()), {}, "msort() needs at least 1 dim"),
    ("cummax", infos((3, 4)), {"dim": -3}, "cummax(): dim=-3 is out of range"),
])
def test_indexing_and_order_shape_rules_refuse(op: str, args: list[ArgInfo], params: Params,
                                               message: str) -> None:
    with pytest.raises(SpecError, match=re.escape(message)):
        OPS[op].shape(args, {p.name: p.default for p in OPS[op].params} | params)


def evaluate_op(name: str, *args: object, **params: ParamValue) -> np.ndarray:
    op = OPS[name]
    return op.numpy([np.asarray(a) for a in args], {p.name: p.default for p in op.params}
                    | params)


@pytest.mark.parametrize("call, message", [
    (lambda: evaluate_op("index", np.zeros((3, 4)), [0, 3]),
     "index(): index 3 is out of range for dim 0 of size 3"),
    (lambda: evaluate_op("index", np.zeros((3, 4)), [-5], given=(0, 2)),
     "index -5 is out of range for dim 1 of size 4"),
    (lambda: evaluate_op("index", np.zeros(3), np.array(1.5)), "an index must be an integer"),
    (lambda: evaluate_op("index_put", np.zeros((3, 4)), np.ones(2), [1, -2], [0, 0]),
     "index_put(): index_put without accumulate writes one element twice"),
    (lambda: evaluate_op("scatter", np.zeros((2, 3)), np.array([[0, 0]]), np.ones((1, 2)), dim=1),
     "scatter(): index writes one element twice"),
    (lambda: evaluate_op("scatter_add", np.zeros((2, 3)), np.array([[-1]]), np.ones((1, 1)),
                         dim=1), "scatter_add(): index -1 is out of range for dim 1 of size 3"),
    (lambda: evaluate_op("masked_scatter", np.zeros(4), np.array([1, 1, 0, 1], bool),
                         np.ones(2)), "the mask selects 3 elements, but source has 2"),
])
def test_index_values_are_checked_when_evaluated(call: object, message: str) -> None:
    with pytest.raises(SpecError, match=re.escape(message)):
        call()  # type: ignore[operator]


def test_the_sympy_form_refuses_a_mask_on_differentiated_inputs() -> None:
    """The exact oracle does not reach it (the cost rule sends a computed mask to the rule
    sweep), but a sympy form asked to index by a relation says why it cannot."""
    x = sympy.Symbol("x", real=True)
    mask = np.array([x > 0, sympy.true], dtype=object)
    with pytest.raises(SpecError, match="must have a value, not depend on the differentiated"):
        OPS["masked_scatter"].sympy([np.array([x, x], dtype=object), mask,
                                     np.array([x], dtype=object)], {})
    assert OPS["masked_scatter"].exact_limit(infos((2,), (2,), (1,), masks=(1,))) is not None
    assert OPS["index"].exact_limit(infos((2,), (1,), integer=(1,))) is None


def test_index_matches_torchs_advanced_indexing_spelled_with_slices() -> None:
    """index(x, None, i, j) is x[:, i, j]; index(x, i, None, j) is x[i, :, j], whose broadcast
    index dims go first; the torch form calls aten.index itself, this spells it in Python."""
    import torch

    x = np.random.default_rng(1).standard_normal((3, 4, 5))
    i, j = np.array([[0], [2]]), np.array([1, -1, 3])
    t, ti, tj = torch.from_numpy(x), torch.from_numpy(i), torch.from_numpy(j)
    np.testing.assert_array_equal(evaluate_op("index", x, i, j, given=(0, 2, 3)),
                                  t[:, ti, tj].numpy())
    np.testing.assert_array_equal(evaluate_op("index", x, i, j, given=(0, 1, 3)),
                                  t[ti, :, tj].numpy())


def test_as_strided_scatter_forward_is_torchs_own() -> None:
    """Its torch form is an index_put (torch 2.13's as_strided_scatter backward gives the
    input the view's cotangent, zeros elsewhere: the reverse of its derivative); the value is
    torch's own function's."""
    import torch

    x, src = np.arange(12.0).reshape(3, 4), -np.arange(1.0, 7.0).reshape(3, 2)
    params = {"size": (3, 2), "stride": (4, 2), "storage_offset": 1}
    expected = torch.as_strided_scatter(torch.from_numpy(x), torch.from_numpy(src),
                                        (3, 2), (4, 2), 1)
    np.testing.assert_array_equal(evaluate_op("as_strided_scatter", x, src, **params),
                                  expected.numpy())


@pytest.mark.parametrize("text, shape, given", [
    ("index(x, None, i)", (2, 2, 4), (0, 2)),
    ("index(x, i, None, k)", (2, 3), (0, 1, 3)),  # apart: the index dims first
    ("index(x, 1, i)", (2, 4), (0, 1, 2)),  # a constant index
    ("index_put(x, v, None, i, accumulate=True)", (2, 3, 4), (0, 1, 3)),
    ("index_put(x, v[0, 0, 0], i2=k)", (2, 3, 4), (0, 1, 4)),
    ("scatter(x, 2, j, x[:, :, :2])", (2, 3, 4), None),
    ("scatter_reduce(x, 2, j, x[:, :, :2], 'amax', include_self=False)", (2, 3, 4), None),
    ("sort(x, 0, True)", (2, 3, 4), None),
    ("topk(x, 2, dim=1, largest=False)", (2, 2, 4), None),
    ("median(x)", (), None),
    ("kthvalue(x, 2, 1, True)", (2, 1, 4), None),
])
def test_the_case_language_spells_indexing_and_order_statistics(
        text: str, shape: Shape, given: tuple[int, ...] | None) -> None:
    from gradcheck_lab.casefile.expr import parse_expression
    from gradcheck_lab.program.graph import ProgramBuilder

    builder = ProgramBuilder()
    builder.add_input("x", (2, 3, 4), False, True)
    builder.add_input("v", (2, 2, 4), False, True)
    builder.add_input("i", (2,), True, False)
    builder.add_input("k", (2,), True, False)
    builder.add_input("j", (2, 3, 2), True, False)
    node = builder.nodes[builder.add_expression(parse_expression(text), "output")]
    assert node.shape == shape
    assert node.param_dict.get("given") == given


@pytest.mark.slow
@pytest.mark.parametrize("spelled", [
    "sum(index(x, None, i) ** 2)", "index_put(x, x[0, :2] * x[1, :2], i, i, accumulate=True)",
    "scatter_reduce(x, 1, j, x[:, :2] * 2, 'prod', include_self=False)",
    "masked_scatter(x, x > 0, x ** 2)", "sort(x, dim=0) * x", "cummin(x, 1) + topk(x, 3)[:, :1]",
    "fold(unfold(unsqueeze(x, 0), 2), (3, 4), 2)",
    "as_strided_scatter(x, x[:, :2] ** 2, (3, 2), (4, 2))",
])
def test_indexing_and_order_statistic_cases_pass(spelled: str) -> None:
    from gradcheck_lab import check

    inputs = {"x": {"shape": [3, 4], "init": "uniform", "low": -2.0, "high": 2.0, "seed": 5},
              "i": {"value": [2, 0], "dtype": "int64"},
              "j": {"value": [[1, 3], [0, 2], [3, 3]], "dtype": "int64"}}
    for result in check(spelled, inputs, dtypes=["float64", "float32"]):
        assert result.status == "pass", (result.dtype, result.message)


def test_the_sympy_sorting_network_refuses_a_slice_it_would_take_minutes_over() -> None:
    x = np.array(sympy.symbols("x0:17", real=True), dtype=object)
    with pytest.raises(SpecError, match="sympy sorts at most 16 elements at once"):
        OPS["sort"].sympy([x], {"dim": -1, "descending": False, "stable": False})
    assert OPS["sort"].exact_limit([ArgInfo((7,), False)]) == "sort() of 7 elements (sympy " \
                                                               "affords 6)"
