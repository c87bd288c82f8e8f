"""The shape of one op of the case language, and helpers shared by the op modules.

An op carries everything about itself in one record: how it is spelled, its shape rule, its
torch lowering, its numpy forward and vector-Jacobian product (the symbolic oracle's rule
sweep), its sympy form over object arrays (the exact oracle, and the tests that confirm the
closed-form rules), how constants fold through it, where it has kinks, and what the exact
oracle cannot afford of it. Nothing outside ``ops/`` names an op. torch and sympy are imported
lazily, inside the functions that use them.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from types import EllipsisType
from typing import Any, Protocol

import numpy as np

from gradcheck_lab.errors import SpecError
from gradcheck_lab.ops.derivatives import ElementwiseRule, SecondOrderRule, derive, derive_second
from gradcheck_lab.ops.second_order import (
    JvpRule,
    PairRule,
    complex_step_jvp,
    complex_step_pairs,
)

Shape = tuple[int, ...]
# A numpy basic index written out as a tuple: (Ellipsis, *slices), (n, c, *position).
Subscript = tuple[int | slice | EllipsisType | None, ...]
ParamValue = int | bool | float | str | tuple[int, ...] | tuple[float, ...] | None
Params = dict[str, ParamValue]
Arrays = Sequence[np.ndarray]
Gradients = list[np.ndarray | None]
ShapeRule = Callable[[Sequence["ArgInfo"], Params], Shape]
# (cotangent of the output, arguments, output, params, which arguments need a gradient)
VjpRule = Callable[[np.ndarray, Arrays, np.ndarray, Params, Sequence[bool]], Gradients]
TorchForm = Callable[[Sequence[Any], Params], Any]
# Exact constant folding: the arguments' values and the bit limit of an exact result; None when
# the op does not fold these values. Raises SpecError for a constant that cannot be evaluated.
FoldRule = Callable[[Sequence[Fraction], int], Fraction | None]
# Exhaustive finite differences move one element of one argument at a time, a batch of them at
# once: (the arguments, the moved argument's position, the moved flat indices (B,), their new
# values (B,), the op's output at the arguments, ``evaluate``: the op itself applied to other
# arguments) -> (B, *output shape): the output with element indices[b] set to values[b], for
# each b; None where the rule does not cover these arguments (the caller evaluates the op
# whole). A rule only slices and scatters: the values it keeps are the output's, the values
# it replaces the op's own on the slice of the arguments they depend on.
MovesRule = Callable[[Sequence[Any], int, Any, Any, Any, Callable[[Sequence[Any]], Any]],
                     Any]
PARAM_KINDS = ("int", "dims", "bool", "float", "floats", "str", "text")
# The hidden keyword that records which tensor arguments a call gave (``clamp(x, max=1)``
# gives positions (0, 2)); ops that take it see exactly those arguments, in that order.
GIVEN = "given"
# What an op's value is: "real"; "bool" (comparisons); "int" (one_hot); or "promote", as
# torch promotes: real when any argument is real, else int64, bool operands counting as 0/1.
RESULT_KINDS = ("real", "bool", "int", "promote")


@dataclass(frozen=True)
class Param:
    """A static keyword of an op. ``kind``: "int", "dims" (an int or a tuple of ints), "bool",
    "float" (a real number, ints accepted), "floats" (a real number or a tuple of them, one per
    dim: interpolate's scale_factor), "str" (one of ``choices``) or "text" (any short string,
    which the op's shape rule checks: einsum's equation)."""

    name: str
    kind: str
    default: ParamValue = None
    required: bool = False
    choices: tuple[str, ...] = ()
    # Set by the parser, never written in a case file: ``GIVEN``, the positions of the
    # tensor arguments a call gave, for ops whose optional ones may be skipped by keyword.
    hidden: bool = False

    def __post_init__(self) -> None:
        if self.kind not in PARAM_KINDS:
            raise ValueError(f"Param {self.name}: kind {self.kind!r} is not one of {PARAM_KINDS}")


@dataclass(frozen=True)
class ArgInfo:
    """What the shape rule (and the exact oracle's cost rule) knows of an argument."""

    shape: Shape
    is_integer: bool  # not real: an integer tensor, or a bool one
    is_constant: bool = False
    const: Fraction | None = None  # the value of a constant argument
    is_bool: bool = False


@dataclass(frozen=True)
class Op:
    """One op: spelling, shape rule, and its forms for torch, numpy and sympy."""

    name: str
    min_args: int
    max_args: int
    shape: ShapeRule
    torch: TorchForm
    numpy: Callable[[Arrays, Params], np.ndarray]
    vjp: VjpRule
    sympy: Callable[[Arrays, Params], np.ndarray]
    # Same signature as vjp, but sums |terms| where vjp sums terms: the size of what rounding
    # acts on in a backward pass (softmax - onehot is 1e-17 but is computed from numbers near
    # 1). Tolerances scale with it; see ``linear_magnitudes`` for ops linear in each argument.
    vjp_magnitude: VjpRule
    params: tuple[Param, ...] = ()
    # Argument positions that may be integer or bool tensors (class targets, operands that
    # promote); all others must be real.
    integer_args: frozenset[int] = frozenset()
    # Positions that must be bool tensors (where's condition, the operands of & | ~).
    bool_args: frozenset[int] = frozenset()
    returns: str = "real"  # one of RESULT_KINDS
    # Positions that never get a gradient (integer targets).
    nondifferentiable_args: frozenset[int] = frozenset()
    # Positions whose constant arguments the torch form gets as Python numbers, as a user
    # writes x ** 2.0: torch's pow(Tensor, Scalar) differentiates twice to 0 at x = 0, where
    # pow(Tensor, Tensor) gives nan; the tool's lowering must not be what fails.
    torch_scalar_args: frozenset[int] = frozenset()
    # Where the op is not differentiable: a mask over its first argument, or None.
    kinks: Callable[[Sequence[np.ndarray], Params], np.ndarray] | None = None
    kink_where: str = "at 0"  # the kink in words, after the op's name: "relu at 0"
    # Where the op's value is 0 its derivative is 0 too (relu's flat side): a kink or a tie of
    # the op that consumes it, among those zeros, changes no gradient.
    flat_at_zero: bool = False
    callable: bool = True  # False for operators (add, ...) that have no function spelling
    infix: str | None = None
    # Elementwise ops: the scalar sympy form f(sympy, *symbols), from which sympy derives the
    # partial derivatives (``ops.derivatives.derive``); None for structural ops.
    scalar_form: Callable[..., Any] | None = None
    fold: FoldRule | None = None
    # Why the exact oracle cannot afford this node (an expression that sympy cannot expand or
    # differentiate in good time), given its arguments; None when it can.
    exact_limit: Callable[[Sequence[ArgInfo]], str | None] | None = None
    # Elementwise ops: an interval where the op is smooth and well conditioned, what the tests
    # sample it in (a kink inside it is avoided: values keep |x| >= 0.25).
    smooth_range: tuple[float, float] = (-2.0, 2.0)
    # The tensor arguments' names, as torch calls them (len == max_args; later ones optional).
    arg_names: tuple[str, ...] = ()
    # torch's positional order where it interleaves tensors and keywords (layer_norm's
    # input, normalized_shape, weight, bias, eps); empty: the tensors, then the keywords.
    positional: tuple[str, ...] = ()
    # "list": the tensors come as one list (cat([a, b], dim=1)); "star": as the positional
    # arguments after the keywords of ``positional`` (einsum("ij,jk", a, b)); None: fixed.
    variadic: str | None = None
    group: str = "other"  # its row of the function table (docs/expressions.md)
    doc: str = ""
    # A composite: defined in terms of other ops, which the program builder writes in its
    # place (``expand(builder, args, params) -> node``, see ``Expander``); its torch form is
    # torch's own function, which tests/test_ops.py confirms the definition against.
    expand: Callable[[Any, list[int], Params], int] | None = None
    # The second-order sweep's rules (``ops.second_order``): the JVP and the VJP beside its
    # tangent. Elementwise ops give them from sympy's second partials; None (structural
    # ops): their numpy forward and VJP differentiated by a complex step.
    jvp: JvpRule | None = None
    pairs: PairRule | None = None
    # Which output elements one moved element of an argument reaches (``MovesRule``);
    # elementwise ops have ``elementwise_moves``; None: the op is evaluated whole.
    moves: MovesRule | None = None
    # ``vjp`` for every probe of a sweep at once: g, and each gradient it gives, carry a
    # leading probe axis (``program.sweep.probe_sweeps``); None: vjp is asked once per probe.
    probes_vjp: VjpRule | None = None

    @property
    def jvp_rule(self) -> JvpRule:
        return self.jvp if self.jvp is not None else complex_step_jvp(self.numpy)

    @property
    def pair_rule(self) -> PairRule:
        return self.pairs if self.pairs is not None else complex_step_pairs(self.numpy,
                                                                             self.vjp)

    @property
    def moves_rule(self) -> MovesRule | None:
        return self.moves if self.moves is not None else (
            elementwise_moves if self.is_elementwise else None)

    @property
    def is_elementwise(self) -> bool:
        return self.scalar_form is not None

    def rule(self, params: Params | None = None) -> ElementwiseRule:
        """An elementwise op's partial derivatives, derived by sympy once per op and keyword
        values (``params``: the op's keywords, its defaults when None)."""
        return derive(self.name, *self._derivation(params))

    def second_rule(self, params: Params | None = None) -> SecondOrderRule:
        """An elementwise op's second partials (``rule``'s, differentiated once more)."""
        return derive_second(self.name, *self._derivation(params))

    def _derivation(self, params: Params | None) -> tuple[int, Any, tuple[tuple[str, Any], ...]]:
        """What ``derive`` and ``derive_second`` are cached by: the arity the call gives, the
        scalar form and the keyword values (the op's defaults when ``params`` is None)."""
        if self.scalar_form is None:
            raise TypeError(f"{self.name} is not elementwise: it has no derived rule")
        keywords = {p.name: p.default for p in self.params} if params is None else params
        given = keywords.get(GIVEN)
        arity = len(given) if isinstance(given, tuple) else self.min_args
        return arity, self.scalar_form, tuple(sorted(keywords.items()))

    @property
    def spelled(self) -> str:
        """How messages name it: ``'+'`` for an operator, ``sum()`` for a function."""
        return f"'{self.infix}'" if self.infix else f"{self.name}()"

    @property
    def is_prefix(self) -> bool:
        """A unary operator written before its operand (``-x``)."""
        return self.infix is not None and self.max_args == 1

    def signature(self) -> str:
        """``sum(input, dim=None, keepdim=False)``, ``linear(input, weight[, bias])``: the
        tensor arguments (optional ones in brackets), then the keywords with defaults."""
        names = self.arg_names or tuple(f"x{i + 1}" for i in range(self.max_args))
        keywords = {p.name: p.name if p.required else f"{p.name}={p.default!r}"
                    for p in self.params if not p.hidden}
        if self.positional or GIVEN in {p.name for p in self.params}:
            # Optional tensors that may be skipped, or interleaved with keywords: torch's way.
            order = self.positional or (*names, *keywords)
            parts = [keywords.pop(slot) if slot in keywords else
                     slot if names.index(slot) < self.min_args else f"{slot}=None"
                     for slot in order]
            return f"{self.name}({', '.join([*parts, *keywords.values()])})"
        text = ", ".join(names[:self.min_args])
        optional = names[self.min_args:]
        text += "".join(f"[, {name}" for name in optional) + "]" * len(optional)
        return f"{self.name}({', '.join([text, *keywords.values()])})"


class Expander(Protocol):
    """What a composite's ``expand`` builds with (``program.graph`` gives it): calls of ops
    by name (keywords filled with their defaults), constants, and what is known of a node."""

    def call(self, name: str, *args: int, **params: ParamValue) -> int: ...

    def const(self, value: float | int | Fraction) -> int: ...

    def shape(self, node: int) -> Shape: ...


def composite(name: str, expand: Callable[[Any, list[int], Params], int], torch: TorchForm,
              *, shape: ShapeRule, doc: str, arg_names: tuple[str, ...],
              min_args: int | None = None, params: tuple[Param, ...] = (),
              integer_args: frozenset[int] = frozenset(), positional: tuple[str, ...] = (),
              group: str = "loss") -> Op:
    """An op written as other ops: ``shape`` checks the arguments (and gives the shape the
    expansion must have); ``torch`` is torch's own function of that name."""

    def expanded_only(*args: Any) -> Any:
        raise AssertionError(f"{name} is a composite: the program holds its expansion")

    return Op(name=name, min_args=min_args or len(arg_names), max_args=len(arg_names),
              shape=shape, torch=torch, numpy=expanded_only, vjp=expanded_only,
              vjp_magnitude=expanded_only, sympy=expanded_only, params=params,
              integer_args=integer_args, nondifferentiable_args=integer_args,
              arg_names=arg_names, positional=positional, group=group, doc=doc,
              expand=expand)


def elementwise_moves(args: Sequence[Any], position: int, indices: Any, values: Any, out: Any,
                      evaluate: Callable[[Sequence[Any]], Any]) -> Any:
    """``MovesRule`` of an elementwise op: a moved element reaches the output element at the
    same place, unless the argument is broadcast (then it reaches many: None)."""
    torch = torch_module()
    if not torch.is_tensor(out) or tuple(args[position].shape) != tuple(out.shape):
        return None
    at = [values if k == position else
          arg.broadcast_to(out.shape).reshape(-1)[indices] if torch.is_tensor(arg) else arg
          for k, arg in enumerate(args)]
    return moved_copies(out, indices, evaluate(at).to(out.dtype))


def moved_copies(tensor: Any, indices: Any, values: Any) -> Any:
    """B copies of ``tensor``, copy b with its flat element ``indices[b]`` set to
    ``values[b]``."""
    torch = torch_module()
    copies = tensor.reshape(1, -1).repeat(len(indices), 1)
    copies[torch.arange(len(indices), device=copies.device), indices] = values
    return copies.reshape(len(indices), *tensor.shape)


def replaced_rows(out: Any, rows: Any, new_rows: Any) -> Any:
    """(B, M, N) copies of the 2-d ``out`` (M, N), copy b with row rows[b] set to
    new_rows[b] (a matrix product's moved left operand reaches one row of it)."""
    torch = torch_module()
    result = out.unsqueeze(0).repeat(len(rows), 1, 1)
    result[torch.arange(len(rows), device=out.device), rows] = new_rows.to(out.dtype)
    return result


def replaced_columns(out: Any, columns: Any, new_columns: Any) -> Any:
    """(B, M, N) copies of the 2-d ``out`` (M, N), copy b with column columns[b] set to
    new_columns[:, b] (a moved right operand reaches one column)."""
    torch = torch_module()
    result = out.unsqueeze(0).repeat(len(columns), 1, 1)
    result.transpose(1, 2)[torch.arange(len(columns), device=out.device), columns] = (
        new_columns.T.to(out.dtype))
    return result


def linear_magnitudes(vjp: VjpRule) -> VjpRule:
    """The magnitude rule of an op whose VJP is a sum of products of the cotangent and the
    arguments (sum, mean, matmul, linear): the same VJP on absolute values."""

    def magnitudes(g: np.ndarray, args: Arrays, out: np.ndarray, params: Params,
                   needs: Sequence[bool]) -> Gradients:
        grads = vjp(np.abs(g), [np.abs(a) for a in args], np.abs(out), params, needs)
        return [None if grad is None else np.abs(grad) for grad in grads]

    return magnitudes


def suggest(name: str, choices: Sequence[str]) -> str:
    """' (did you mean 'x'?)' when a close match exists, else ''."""
    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def torch_module() -> Any:
    import torch

    return torch


# One numpy, BLAS or LAPACK call runs to its end whatever the case budget says (an interval
# timer interrupts Python between calls, not inside one): an op whose single call would take
# more than this many operations, counted from the shapes by the textbook formula (a matrix
# product of m x k and k x n is 2mkn; an SVD of n x n some 26n³), is refused by its shape rule,
# before anything is allocated. At the limit one call takes under a second to a few seconds
# on two shared cores (a 1,700 x 1,700 product 0.3 s, a 720 x 720 SVD with its vectors 1 to
# 4 s).
MAX_KERNEL_FLOPS = 10**10


def check_kernel_cost(op: str, what: str, flops: float, remedy: str) -> None:
    """A SpecError where one call of ``op`` would take more than MAX_KERNEL_FLOPS operations:
    ``what`` names the call ("a 4000 x 4000 A in LAPACK"), ``remedy`` what to do instead."""
    if flops > MAX_KERNEL_FLOPS:
        raise SpecError(f"{op}(): {what} would take about {flops:.2g} operations in one call "
                        f"(limit {MAX_KERNEL_FLOPS:.0e}), which the case budget cannot stop: "
                        f"{remedy}")


@dataclass(frozen=True)
class SparseMatrix:
    """An (out, size) matrix by its entries (rows sorted, columns sorted within a row): what a
    resampling op (adaptive pooling, interpolation) applies along one axis, in memory that
    grows with its entries, where the dense matrix holds out·size values whatever the input
    (8,000 to 8,000 is 512 MB)."""

    rows: np.ndarray
    cols: np.ndarray
    weights: np.ndarray
    shape: tuple[int, int]

    @classmethod
    def from_entries(cls, rows: np.ndarray, cols: np.ndarray, weights: np.ndarray,
                     shape: tuple[int, int]) -> SparseMatrix:
        """Entries at the same place added in the order given, as np.add.at adds them into a
        dense zero matrix."""
        keys = np.asarray(rows, dtype=np.int64) * shape[1] + np.asarray(cols, dtype=np.int64)
        places, where = np.unique(keys, return_inverse=True)
        summed = np.zeros(len(places), dtype=np.result_type(weights, np.float64))
        np.add.at(summed, where.reshape(-1), weights)
        return cls(places // shape[1], places % shape[1], summed, shape)

    @property
    def T(self) -> SparseMatrix:  # noqa: N802 (as numpy spells it)
        order = np.lexsort((self.rows, self.cols))
        return SparseMatrix(self.cols[order], self.rows[order], self.weights[order],
                            (self.shape[1], self.shape[0]))

    def absolute(self) -> SparseMatrix:
        return SparseMatrix(self.rows, self.cols, np.abs(self.weights), self.shape)

    def row_entries(self, row: int) -> tuple[np.ndarray, np.ndarray]:
        """The columns and weights of one row."""
        start, end = np.searchsorted(self.rows, [row, row + 1])
        return self.cols[start:end], self.weights[start:end]

    def along(self, x: np.ndarray, axis: int) -> np.ndarray:
        """The matrix applied to ``axis`` of x (size -> out): out[.., i, ..] = the sum over j of
        M[i, j]·x[.., j, ..], each row's products summed in column order."""
        moved = np.moveaxis(np.asarray(x), axis, -1)
        products = moved[..., self.cols] * self.weights
        result = np.zeros((*moved.shape[:-1], self.shape[0]), dtype=products.dtype)
        if len(self.rows):
            starts = np.flatnonzero(np.concatenate([[True], self.rows[1:] != self.rows[:-1]]))
            result[..., self.rows[starts]] = np.add.reduceat(products, starts, axis=-1)
        return np.moveaxis(result, -1, axis)


def along_axes(x: np.ndarray, matrices: Sequence[tuple[int, SparseMatrix]]) -> np.ndarray:
    """Each (axis, matrix) applied in turn: those that shrink their axis first, then those
    that grow theirs (each group in the order given), so that no intermediate holds more
    elements than the larger of x and the result (an axis grown 10^4 times before another is
    shrunk 10^4 times would)."""
    for axis, matrix in sorted(matrices, key=lambda item: item[1].shape[0] > item[1].shape[1]):
        x = matrix.along(x, axis)
    return x


def broadcast_shapes(*shapes: Shape) -> Shape:
    """torch/numpy broadcasting, with an error that names both shapes."""
    ndim = max(len(s) for s in shapes)
    result = []
    for axis in range(ndim):
        sizes = {s[axis - ndim + len(s)] for s in shapes if axis - ndim + len(s) >= 0}
        sizes.discard(1)
        if len(sizes) > 1:
            listed = " and ".join(str(list(s)) for s in shapes)
            raise SpecError(f"shapes {listed} cannot be broadcast together")
        result.append(sizes.pop() if sizes else 1)
    return tuple(result)


def as_float(values: Any) -> np.ndarray:
    """``values`` as float64, or as complex128 where they are complex: the second-order sweep
    differentiates a structural op's rules by a complex step, which a cast to float64 would
    silently undo."""
    values = np.asarray(values)
    return values.astype(np.complex128 if values.dtype.kind == "c" else np.float64, copy=False)


def real_sign(values: np.ndarray) -> np.ndarray:
    """np.sign, of the real part where ``values`` carry a complex step: the sign is locally
    constant, so its derivative along the step is 0 (numpy's complex sign is z/|z|)."""
    return np.sign(values.real) if np.iscomplexobj(values) else np.sign(values)


def real_abs(values: np.ndarray) -> np.ndarray:
    """np.abs, as sign(x)·x where ``values`` carry a complex step: its derivative along the
    step is sign(x), where numpy's complex modulus would give 0."""
    return real_sign(values) * values if np.iscomplexobj(values) else np.abs(values)


def bincount(sources: np.ndarray, weights: np.ndarray, length: int) -> np.ndarray:
    """np.bincount, for complex weights too (it takes real ones only)."""
    if weights.dtype.kind == "c":
        return (np.bincount(sources, weights.real, length)
                + 1j * np.bincount(sources, weights.imag, length))
    return np.bincount(sources, weights, length)


def unbroadcast(gradient: np.ndarray, shape: Shape) -> np.ndarray:
    """Sum a broadcast gradient back down to ``shape`` (the VJP of broadcasting)."""
    extra = gradient.ndim - len(shape)
    if extra > 0:
        gradient = gradient.sum(axis=tuple(range(extra)))
    axes = tuple(i for i, size in enumerate(shape) if size == 1 and gradient.shape[i] != 1)
    if axes:
        gradient = gradient.sum(axis=axes, keepdims=True)
    return gradient.reshape(shape)


def unbroadcast_probes(gradient: np.ndarray, shape: Shape) -> np.ndarray:
    """``unbroadcast`` behind a leading probe axis: (probes, *broadcast) summed back down to
    (probes, *shape)."""
    extra = gradient.ndim - 1 - len(shape)
    if extra > 0:
        gradient = gradient.sum(axis=tuple(range(1, extra + 1)))
    axes = tuple(i + 1 for i, size in enumerate(shape)
                 if size == 1 and gradient.shape[i + 1] != 1)
    if axes:
        gradient = gradient.sum(axis=axes, keepdims=True)
    return gradient.reshape((gradient.shape[0], *shape))


def normalize_dim(dim: int, ndim: int, op: str) -> int:
    """A dim in [-ndim, ndim) made non-negative; 0-d tensors accept dim 0 and -1 as torch does."""
    size = max(ndim, 1)
    if not -size <= dim < size:
        raise SpecError(f"{op}(): dim={dim} is out of range for a {ndim}-d tensor")
    return dim % size


def normalize_dims(dim: ParamValue, ndim: int, op: str) -> tuple[int, ...] | None:
    """None (all dims) or a sorted tuple of distinct non-negative dims."""
    if dim is None:
        return None
    if isinstance(dim, bool):
        raise SpecError(f"{op}(): dim= needs an integer")
    dims = as_ints(dim, "dim")
    if not dims:
        raise SpecError(f"{op}(): dim=() is ambiguous; leave dim out to reduce over all dims")
    normalized = tuple(normalize_dim(d, ndim, op) for d in dims)
    if len(set(normalized)) != len(normalized):
        raise SpecError(f"{op}(): dim={dim} repeats a dim")
    return tuple(sorted(normalized))


def _number_param(value: ParamValue, key: str) -> int | float:
    if isinstance(value, (int, float)):
        return value
    raise TypeError(f"param {key}={value!r} is not a number")


def int_param(params: Params, key: str, default: int | None = None) -> int:
    """The value of an "int" param (``default`` where the params leave it out): the parser
    (casefile.expr) and the trace writer give one an int."""
    return int(_number_param(params[key] if default is None else params.get(key, default), key))


def float_param(params: Params, key: str, default: float | None = None) -> float:
    """The value of a "float" param (an int accepted) as a float; ``default`` as above."""
    return float(_number_param(params[key] if default is None else params.get(key, default),
                               key))


def optional_int_param(params: Params, key: str) -> int | None:
    """The value of an "int" param whose default is None."""
    value = params[key]
    return None if value is None else int(_number_param(value, key))


def optional_float_param(params: Params, key: str) -> float | None:
    """The value of a "float" param whose default is None."""
    value = params[key]
    return None if value is None else float(_number_param(value, key))


def as_ints(value: ParamValue, key: str) -> tuple[int, ...]:
    """The value of a "dims" param (one int or a tuple of them) as a tuple of ints."""
    if isinstance(value, int):
        return (value,)
    if isinstance(value, tuple):
        ints = tuple(item for item in value if isinstance(item, int))
        if len(ints) == len(value):
            return ints
    raise TypeError(f"param {key}={value!r} is not an int or a tuple of ints")


def dims_param(params: Params, key: str) -> tuple[int, ...]:
    """``as_ints`` of a "dims" param's value."""
    return as_ints(params[key], key)


def object_array(values: Any) -> np.ndarray:
    """A numpy object array (keeps sympy expressions and Fractions intact)."""
    array = np.empty(np.shape(values), dtype=object)
    array[...] = values
    return array


def elementwise_sympy(function: Callable[..., Any]) -> Callable[..., np.ndarray]:
    """Apply a scalar sympy function over object arrays, with broadcasting."""
    vectorized = np.vectorize(function, otypes=[object])

    def apply(*arrays: np.ndarray) -> np.ndarray:
        return object_array(vectorized(*arrays))

    return apply
