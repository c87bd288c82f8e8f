"""Elementwise ops: arithmetic operators and the unary functions.

Each op is one entry: its scalar sympy form (from which sympy derives the derivative rule),
its numpy forward and its torch form, and for the operators how constants fold exactly.
Broadcasting and its VJP (summing back) are shared. Adding an elementwise function is adding
one ``_elementwise(...)`` line to FUNCTIONS (and a hand-written derivative to
tests/test_derivatives.py, which fails until it has one).
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Sequence
from fractions import Fraction
from typing import Any

import numpy as np

from gradcheck_lab.errors import SpecError
from gradcheck_lab.ops.base import (
    ArgInfo,
    FoldRule,
    Op,
    Params,
    Shape,
    broadcast_shapes,
    elementwise_sympy,
    torch_module,
    unbroadcast,
)

SympyForm = Callable[..., Any]


def _broadcast_rule(name: str) -> Callable[[Sequence[ArgInfo], Params], Shape]:
    def rule(args: Sequence[ArgInfo], params: Params) -> Shape:
        return broadcast_shapes(*(a.shape for a in args))

    return rule


def _elementwise(
    name: str,
    arity: int,
    sympy_form: SympyForm,
    numpy_forward: Callable[..., np.ndarray],
    torch_forward: Callable[..., Any],
    *,
    callable_: bool = True,
    infix: str | None = None,
    kinks: Callable[..., np.ndarray] | None = None,
    limits: Callable[..., None] | None = None,
    derivative_terms: Callable[..., np.ndarray] | None = None,
    fold: FoldRule | None = None,
    exact_limit: Callable[[Sequence[ArgInfo]], str | None] | None = None,
    flat_at_zero: bool = False,
    smooth_range: tuple[float, float] = (-2.0, 2.0),
    torch_scalar_args: frozenset[int] = frozenset(),
    doc: str = "",
) -> Op:
    """An elementwise op whose derivative rule sympy derives from ``sympy_form``.

    ``limits(gradients, args)`` patches elements where the derived formula is an
    indeterminate form but the derivative has a well-defined limit (0 ** b for pow).
    ``derivative_terms(*args)``: the sum of |terms| a backward computes f'(x) from, where that
    is larger than |f'(x)|: torch's sigmoid' is y·(1 - y), 0 at y = 1 where the exact value
    is 4e-18, and its rounding is relative to y, not to the result.
    """

    def vjp(g: np.ndarray, args: Sequence[np.ndarray], out: np.ndarray, params: Params,
            needs: Sequence[bool]) -> list[np.ndarray | None]:
        return _chain_rule(op, g, args, needs, limits, None)

    def vjp_magnitude(g: np.ndarray, args: Sequence[np.ndarray], out: np.ndarray,
                      params: Params, needs: Sequence[bool]) -> list[np.ndarray | None]:
        return _chain_rule(op, g, args, needs, limits, derivative_terms or _no_terms)

    def symbolic(args: Sequence[np.ndarray], params: Params) -> np.ndarray:
        import sympy

        return elementwise_sympy(lambda *s: sympy_form(sympy, *s))(*args)

    def forward(args: Sequence[np.ndarray], params: Params) -> np.ndarray:
        with np.errstate(all="ignore"):
            return np.asarray(numpy_forward(*args), dtype=np.float64)

    op = Op(
        name=name, min_args=arity, max_args=arity, shape=_broadcast_rule(name),
        torch=lambda args, params: torch_forward(torch_module(), *args),
        numpy=forward, vjp=vjp, vjp_magnitude=vjp_magnitude, sympy=symbolic,
        kinks=(lambda args, params: kinks(*args)) if kinks is not None else None,
        flat_at_zero=flat_at_zero, callable=callable_, infix=infix, scalar_form=sympy_form,
        fold=fold, exact_limit=exact_limit, arg_names=("x",) if arity == 1 else ("a", "b"),
        group="operator" if not callable_ else "elementwise", smooth_range=smooth_range,
        torch_scalar_args=torch_scalar_args, doc=doc,
    )
    return op


def _no_terms(*args: np.ndarray) -> float:
    return 0.0


def _chain_rule(op: Op, g: np.ndarray, args: Sequence[np.ndarray], needs: Sequence[bool],
                limits: Callable[..., None] | None,
                terms: Callable[..., np.ndarray | float] | None) -> list[np.ndarray | None]:
    """g times each needed partial derivative, summed back over broadcast dims. ``terms``
    given: the magnitude rule instead, |g| times the larger of |f'| and ``terms(*args)``."""
    grads: list[np.ndarray | None] = []
    for position, arg in enumerate(args):
        if not needs[position]:
            grads.append(None)
            continue
        local = op.rule().partial(position, *args)
        if limits is not None:
            limits(position, local, args)
        with np.errstate(all="ignore"):
            if terms is None:
                term = g * local
            else:
                term = np.abs(g) * np.maximum(np.abs(local), terms(*args))
            grads.append(unbroadcast(term, np.shape(arg)))
    return grads


def _stable_sigmoid(a: np.ndarray) -> np.ndarray:
    positive = a >= 0
    safe = np.where(positive, -a, a)  # exp never overflows
    e = np.exp(safe)
    return np.where(positive, 1.0 / (1.0 + e), e / (1.0 + e))


def _pow_limits(position: int, local: np.ndarray, args: Sequence[np.ndarray]) -> None:
    """Where sympy's form of a partial of a**b is 0/0 or 0·inf at a = 0, use its limit there:
    ∂/∂a = b·a**b/a is 0/0, and b·a**(b-1) (torch's formula) is its value, 0 for b = 0 (a**0
    is 1 everywhere); ∂/∂b = a**b·log(a) is 0·(-inf), and for b >= 0 its limit from the right
    (and torch's value) is 0."""
    base, exponent = np.broadcast_arrays(*args)
    at_zero = base == 0
    if not at_zero.any():
        return
    if position == 0:
        with np.errstate(all="ignore"):
            limit = np.where(exponent == 0, 0.0, exponent * np.power(base, exponent - 1))
        local[at_zero] = limit[at_zero]
    else:
        local[at_zero & (exponent >= 0)] = 0.0


# --- exact constant folding -----------------------------------------------------------------

def _fold_divide(values: Sequence[Fraction], max_bits: int) -> Fraction:
    if values[1] == 0:
        raise SpecError("division by zero in a constant")
    return values[0] / values[1]


def _fold_pow(values: Sequence[Fraction], max_bits: int) -> Fraction:
    base, exponent = values
    if exponent.denominator != 1:
        if base < 0:
            raise SpecError("a negative constant to a fractional power is not real")
        if base == 0:
            if exponent > 0:
                return Fraction(0)
            raise SpecError("division by zero in a constant")
        return Fraction(_fractional_power(base, float(exponent)))
    power = exponent.numerator
    if base == 0:
        if power < 0:
            raise SpecError("division by zero in a constant")
        return Fraction(0) if power > 0 else Fraction(1)
    # The exact result's numerator and denominator have about |power| times the bits of
    # the base's: (1 + 1e-20) ** 1000000 is near 1 but holds 66 million bits.
    bits = max((part.bit_length() - 1) * abs(power) + 1
               for part in (base.numerator, base.denominator))
    if bits > max_bits:
        raise SpecError(f"constant power is too large to evaluate exactly (about {bits:.3g} "
                        f"bits, limit {max_bits})")
    return base**power


def _fractional_power(base: Fraction, exponent: float) -> float:
    """base ** exponent for base > 0, as exact as float pow wherever float(base) is a normal
    float64 (100 ** 0.5 is 10); through logarithms where it is not (2**1100, 10**-400)."""
    out_of_range = SpecError("constant power is out of the float64 range")
    try:
        as_float = float(base)
    except OverflowError:
        as_float = math.inf
    if math.isfinite(as_float) and as_float >= sys.float_info.min:
        try:
            power = as_float**exponent
        except OverflowError:
            raise out_of_range from None
        if power == 0.0:  # underflow: the exact value is positive
            raise out_of_range
        return power
    log2 = exponent * (math.log2(base.numerator) - math.log2(base.denominator))
    if abs(log2) > 1000:
        raise out_of_range
    return 2.0**log2


# The exact oracle expands a constant power into a product: beyond this exponent the
# expression is too large to differentiate in good time.
EXACT_MAX_EXPONENT = 64


def _pow_exact_limit(args: Sequence[ArgInfo]) -> str | None:
    exponent = args[1]
    if not exponent.is_constant or exponent.const is None:
        return "a power with a non-constant exponent"
    if abs(exponent.const) > EXACT_MAX_EXPONENT:
        return f"a constant exponent beyond ±{EXACT_MAX_EXPONENT}"
    return None


OPERATORS = [
    _elementwise("add", 2, lambda sp, a, b: a + b, np.add, lambda t, a, b: a + b,
                 callable_=False, infix="+", fold=lambda v, bits: v[0] + v[1]),
    _elementwise("sub", 2, lambda sp, a, b: a - b, np.subtract, lambda t, a, b: a - b,
                 callable_=False, infix="-", fold=lambda v, bits: v[0] - v[1]),
    _elementwise("mul", 2, lambda sp, a, b: a * b, np.multiply, lambda t, a, b: a * b,
                 callable_=False, infix="*", fold=lambda v, bits: v[0] * v[1]),
    _elementwise("div", 2, lambda sp, a, b: a / b, np.divide, lambda t, a, b: a / b,
                 callable_=False, infix="/", fold=_fold_divide),
    _elementwise("pow", 2, lambda sp, a, b: a**b, np.power, lambda t, a, b: t.pow(a, b),
                 callable_=False, infix="**", limits=_pow_limits, fold=_fold_pow,
                 exact_limit=_pow_exact_limit, torch_scalar_args=frozenset({1})),
    _elementwise("neg", 1, lambda sp, a: -a, np.negative, lambda t, a: -a,
                 callable_=False, infix="-", fold=lambda v, bits: -v[0]),
]

FUNCTIONS = [
    _elementwise("exp", 1, lambda sp, s: sp.exp(s), np.exp, lambda t, a: t.exp(a)),
    _elementwise("log", 1, lambda sp, s: sp.log(s), np.log, lambda t, a: t.log(a),
                 smooth_range=(0.25, 3.0)),
    _elementwise("sqrt", 1, lambda sp, s: sp.sqrt(s), np.sqrt, lambda t, a: t.sqrt(a),
                 smooth_range=(0.25, 3.0)),
    _elementwise("sin", 1, lambda sp, s: sp.sin(s), np.sin, lambda t, a: t.sin(a),
                 smooth_range=(-3.0, 3.0)),
    _elementwise("cos", 1, lambda sp, s: sp.cos(s), np.cos, lambda t, a: t.cos(a),
                 smooth_range=(-3.0, 3.0)),
    # Clear of the poles at ±π/2.
    _elementwise("tan", 1, lambda sp, s: sp.tan(s), np.tan, lambda t, a: t.tan(a),
                 smooth_range=(-1.2, 1.2)),
    _elementwise("tanh", 1, lambda sp, s: sp.tanh(s), np.tanh, lambda t, a: t.tanh(a),
                 derivative_terms=lambda a: 1.0 + np.tanh(a) ** 2),  # 1 - y**2
    _elementwise("sigmoid", 1, lambda sp, s: 1 / (1 + sp.exp(-s)), _stable_sigmoid,
                 lambda t, a: t.sigmoid(a),
                 derivative_terms=lambda a: _stable_sigmoid(a) * (1.0 + _stable_sigmoid(a)),
                 smooth_range=(-4.0, 4.0)),
    # relu as a Piecewise, not Max(0, s): sympy differentiates Max into Heaviside, whose
    # value at 0 is 1/2; the kink at 0 is reported instead of compared.
    _elementwise("relu", 1, lambda sp, s: sp.Piecewise((s, s > 0), (0, True)),
                 lambda a: np.maximum(a, 0.0), lambda t, a: t.relu(a),
                 kinks=lambda a: a == 0, flat_at_zero=True),
    _elementwise("abs", 1, lambda sp, s: sp.Abs(s), np.abs, lambda t, a: t.abs(a),
                 kinks=lambda a: a == 0),
]
