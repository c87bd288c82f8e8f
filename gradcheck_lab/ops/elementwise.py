"""Elementwise ops: arithmetic operators, the math functions and their binary kin.

Each op is one entry of ``ops.pointwise.elementwise``: its scalar sympy form (from which
sympy derives the derivative rule), its numpy forward and its torch form, and for the
operators how constants fold exactly. Adding an elementwise function is adding one line to
FUNCTIONS (and a hand-written derivative to tests/test_derivatives.py, which fails until it
has one); tests/test_ops.py checks it three ways in its ``smooth_range``.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from fractions import Fraction
from typing import Any

import numpy as np

from gradcheck_lab.errors import SpecError
from gradcheck_lab.ops.base import ArgInfo
from gradcheck_lab.ops.derivatives import erf, erfc
from gradcheck_lab.ops.pointwise import elementwise as _elementwise


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


def _pow_second_limits(i: int, j: int, local: np.ndarray, args: Sequence[np.ndarray]) -> None:
    """∂²(a**b)/∂a² at a = 0, where sympy's form is 0/0: b·(b-1)·a**(b-2), and 0 where
    b·(b-1) = 0, as torch's double backward gives it (it differentiates b·a**(b-1), guarded
    by b == 0). The partials in b keep sympy's value there (0·log 0: nan), as torch's do: a
    variable exponent at a zero base has no derivative in a."""
    if (i, j) != (0, 0):
        return
    base, exponent = np.broadcast_arrays(*args)
    at_zero = base == 0
    if at_zero.any():
        with np.errstate(all="ignore"):
            factor = exponent * (exponent - 1)
            limit = np.where(factor == 0, 0.0, factor * np.power(base, exponent - 2))
        local[at_zero] = limit[at_zero]


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
        return None  # x ** y stays one symbolic power (its derivative has log(x))
    if abs(exponent.const) > EXACT_MAX_EXPONENT:
        return f"a constant exponent beyond ±{EXACT_MAX_EXPONENT}"
    return None


OPERATORS = [
    _elementwise("add", 2, lambda sp, a, b: a + b, np.add, lambda t, a, b: a + b,
                 callable_=False, infix="+", fold=lambda v, bits: v[0] + v[1],
                 returns="promote"),
    _elementwise("sub", 2, lambda sp, a, b: a - b, np.subtract, lambda t, a, b: a - b,
                 callable_=False, infix="-", fold=lambda v, bits: v[0] - v[1],
                 returns="promote"),
    _elementwise("mul", 2, lambda sp, a, b: a * b, np.multiply, lambda t, a, b: a * b,
                 callable_=False, infix="*", fold=lambda v, bits: v[0] * v[1],
                 returns="promote"),
    _elementwise("div", 2, lambda sp, a, b: a / b, np.divide, lambda t, a, b: a / b,
                 callable_=False, infix="/", fold=_fold_divide),
    _elementwise("pow", 2, lambda sp, a, b: a**b, np.power, lambda t, a, b: t.pow(a, b),
                 callable_=False, infix="**", limits=_pow_limits,
                 second_limits=_pow_second_limits, fold=_fold_pow,
                 exact_limit=_pow_exact_limit, torch_scalar_args=frozenset({1})),
    _elementwise("neg", 1, lambda sp, a: -a, np.negative, lambda t, a: -a,
                 callable_=False, infix="-", fold=lambda v, bits: -v[0], returns="promote"),
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
                 kinks=lambda a: a == 0, flat_at_zero=True, zero_slope_is_flat=True),
    _elementwise("abs", 1, lambda sp, s: sp.Abs(s), np.abs, lambda t, a: t.abs(a),
                 kinks=lambda a: a == 0),
    _elementwise("asin", 1, lambda sp, s: sp.asin(s), np.arcsin, lambda t, a: t.asin(a),
                 smooth_range=(-0.9, 0.9)),
    _elementwise("acos", 1, lambda sp, s: sp.acos(s), np.arccos, lambda t, a: t.acos(a),
                 smooth_range=(-0.9, 0.9)),
    _elementwise("atan", 1, lambda sp, s: sp.atan(s), np.arctan, lambda t, a: t.atan(a)),
    _elementwise("sinh", 1, lambda sp, s: sp.sinh(s), np.sinh, lambda t, a: t.sinh(a)),
    _elementwise("cosh", 1, lambda sp, s: sp.cosh(s), np.cosh, lambda t, a: t.cosh(a)),
    _elementwise("asinh", 1, lambda sp, s: sp.asinh(s), np.arcsinh, lambda t, a: t.asinh(a)),
    _elementwise("acosh", 1, lambda sp, s: sp.acosh(s), np.arccosh, lambda t, a: t.acosh(a),
                 smooth_range=(1.25, 3.0)),
    _elementwise("atanh", 1, lambda sp, s: sp.atanh(s), np.arctanh, lambda t, a: t.atanh(a),
                 smooth_range=(-0.9, 0.9)),
    _elementwise("log1p", 1, lambda sp, s: sp.log(1 + s), np.log1p, lambda t, a: t.log1p(a),
                 smooth_range=(-0.75, 2.0)),
    _elementwise("expm1", 1, lambda sp, s: sp.exp(s) - 1, np.expm1, lambda t, a: t.expm1(a)),
    _elementwise("log2", 1, lambda sp, s: sp.log(s) / sp.log(2), np.log2,
                 lambda t, a: t.log2(a), smooth_range=(0.25, 3.0)),
    _elementwise("log10", 1, lambda sp, s: sp.log(s) / sp.log(10), np.log10,
                 lambda t, a: t.log10(a), smooth_range=(0.25, 3.0)),
    _elementwise("exp2", 1, lambda sp, s: sp.Integer(2) ** s, np.exp2, lambda t, a: t.exp2(a)),
    _elementwise("rsqrt", 1, lambda sp, s: 1 / sp.sqrt(s), lambda a: 1.0 / np.sqrt(a),
                 lambda t, a: t.rsqrt(a), smooth_range=(0.25, 3.0)),
    _elementwise("reciprocal", 1, lambda sp, s: 1 / s, np.reciprocal,
                 lambda t, a: t.reciprocal(a), smooth_range=(0.25, 3.0)),
    _elementwise("square", 1, lambda sp, s: s**2, np.square, lambda t, a: t.square(a)),
    _elementwise("erf", 1, lambda sp, s: sp.erf(s), erf, lambda t, a: t.erf(a)),
    _elementwise("erfc", 1, lambda sp, s: sp.erfc(s), erfc, lambda t, a: t.erfc(a)),
    # Steps: derivative 0 wherever it exists; where it does not (a jump) is a kink.
    _elementwise("sign", 1, lambda sp, s: sp.Piecewise((1, s > 0), (-1, s < 0), (0, True)),
                 np.sign, lambda t, a: t.sign(a), kinks=lambda a: a == 0, zero_slope_is_flat=True),
    _elementwise("floor", 1, lambda sp, s: sp.floor(s), np.floor, lambda t, a: t.floor(a),
                 kinks=lambda a: a == np.floor(a), kink_where="at an integer",
                 zero_slope_is_flat=True),
    _elementwise("ceil", 1, lambda sp, s: sp.ceiling(s), np.ceil, lambda t, a: t.ceil(a),
                 kinks=lambda a: a == np.floor(a), kink_where="at an integer",
                 zero_slope_is_flat=True),
    # torch.round rounds half to even, as numpy; sympy's floor(s + 1/2) differs only at the
    # halves, which are kinks and never compared.
    _elementwise("round", 1, lambda sp, s: sp.floor(s + sp.Rational(1, 2)), np.round,
                 lambda t, a: t.round(a), kinks=lambda a: a - np.floor(a) == 0.5,
                 kink_where="at a half-integer", zero_slope_is_flat=True),
    _elementwise("trunc", 1, lambda sp, s: _trunc(sp, s), np.trunc, lambda t, a: t.trunc(a),
                 kinks=lambda a: a == np.floor(a), kink_where="at an integer",
                 zero_slope_is_flat=True),
    # torch.frac keeps the sign: x - trunc(x), not x - floor(x).
    _elementwise("frac", 1, lambda sp, s: s - _trunc(sp, s), lambda a: a - np.trunc(a),
                 lambda t, a: t.frac(a), kinks=lambda a: a == np.floor(a),
                 kink_where="at an integer"),
]


def _trunc(sp: Any, s: Any) -> Any:
    return sp.Piecewise((sp.floor(s), s >= 0), (sp.ceiling(s), True))


def _quotient_is_whole(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    with np.errstate(all="ignore"):
        q = a / b
    return q == np.floor(q)


BINARY = [
    _elementwise("atan2", 2, lambda sp, a, b: sp.atan2(a, b), np.arctan2,
                 lambda t, a, b: t.atan2(a, b),
                 kinks=lambda a, b: (a == 0) & (b <= 0),
                 kink_where="on its branch cut (input 0, other <= 0)"),
    _elementwise("hypot", 2, lambda sp, a, b: sp.sqrt(a**2 + b**2), np.hypot,
                 lambda t, a, b: t.hypot(a, b), kinks=lambda a, b: (a == 0) & (b == 0),
                 kink_where="at (0, 0)"),
    # Python's modulo (the sign of the divisor), and C's fmod (the sign of the dividend).
    _elementwise("remainder", 2, lambda sp, a, b: a - b * sp.floor(a / b), np.remainder,
                 lambda t, a, b: t.remainder(a, b), infix="%", kinks=_quotient_is_whole,
                 kink_where="where input / other is whole"),
    _elementwise("fmod", 2, lambda sp, a, b: a - b * _trunc(sp, a / b), np.fmod,
                 lambda t, a, b: t.fmod(a, b), kinks=_quotient_is_whole,
                 kink_where="where input / other is whole"),
    _elementwise("maximum", 2, lambda sp, a, b: sp.Piecewise((a, a > b), (b, True)),
                 np.maximum, lambda t, a, b: t.maximum(a, b), kinks=lambda a, b: a == b,
                 kink_where="at a tie", zero_slope_is_flat=True),
    _elementwise("minimum", 2, lambda sp, a, b: sp.Piecewise((a, a < b), (b, True)),
                 np.minimum, lambda t, a, b: t.minimum(a, b), kinks=lambda a, b: a == b,
                 kink_where="at a tie", zero_slope_is_flat=True),
]
