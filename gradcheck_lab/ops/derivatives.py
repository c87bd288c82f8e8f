"""Elementwise derivative rules: differentiated by sympy, evaluated over numpy arrays.

Each elementwise op gives its scalar sympy form; sympy differentiates it once (cached per op)
and the derivative is compiled here into numpy calls by walking the expression tree: no
``lambdify``, no generated code. Where float64 overflows into NaN (sigmoid' at -800 is
inf/inf) the affected elements are re-evaluated by mpmath at 30 digits.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np

NumpyFunction = Callable[..., Any]
# numpy has no erf: the C library's, elementwise (correctly rounded to an ulp or so).
erf = np.vectorize(math.erf, otypes=[np.float64])
erfc = np.vectorize(math.erfc, otypes=[np.float64])
_HIGH_PRECISION_DIGITS = 30
_MAX_HIGH_PRECISION_ELEMENTS = 100_000


@dataclass(frozen=True)
class ElementwiseRule:
    """A scalar function of k symbols and its k partial derivatives, sympy and numpy forms."""

    symbols: tuple[Any, ...]
    function: Any
    partials: tuple[Any, ...]
    partials_numpy: tuple[NumpyFunction, ...]

    def partial(self, position: int, *arrays: np.ndarray) -> np.ndarray:
        """∂f/∂(argument position) evaluated elementwise over broadcast arrays."""
        return evaluate_elementwise(self.partials[position], self.partials_numpy[position],
                                    self.symbols, arrays)


@dataclass(frozen=True)
class SecondOrderRule:
    """The second partial derivatives of an elementwise op, for the second-order sweep:
    ``seconds[i][j]`` is ∂²f/∂s_i∂s_j (sympy), ``seconds_numpy`` the same compiled."""

    symbols: tuple[Any, ...]
    seconds: tuple[tuple[Any, ...], ...]
    seconds_numpy: tuple[tuple[NumpyFunction, ...], ...]

    def second(self, i: int, j: int, *arrays: np.ndarray) -> np.ndarray:
        """∂²f/∂s_i∂s_j evaluated elementwise over broadcast arrays."""
        return evaluate_elementwise(self.seconds[i][j], self.seconds_numpy[i][j], self.symbols,
                                    arrays)


# Within ``one_point_partials``: each partial evaluated there, by (rule, argument position,
# limits, the argument arrays' identities), with those arrays kept alive so that no identity
# is reused while the scope lasts.
_SHARED: contextvars.ContextVar[dict[tuple[int, ...], tuple[np.ndarray, Any]] | None] = (
    contextvars.ContextVar("gradcheck_lab_shared_partials", default=None))


@contextlib.contextmanager
def one_point_partials() -> Iterator[None]:
    """Within, an elementwise partial is evaluated once per op and argument arrays: the
    sweeps of one point (each probe's, the magnitudes', the domain's slopes) differentiate the
    same ops at the same values. The arrays must not change while the scope lasts."""
    token = _SHARED.set({})
    try:
        yield
    finally:
        _SHARED.reset(token)


def shared_partial(rule: ElementwiseRule, position: int, arrays: Sequence[np.ndarray],
                   patch: Callable[..., None] | None) -> np.ndarray:
    """``rule``'s partial in argument ``position`` with the op's limits ``patch``ed in,
    evaluated once per ``one_point_partials`` scope (every time outside one). Read-only to the
    caller: the same array is handed to every sweep."""
    shared = _SHARED.get()
    key = (id(rule), position, id(patch), *map(id, arrays))
    if shared is not None and key in shared:
        return shared[key][0]
    local = rule.partial(position, *arrays)
    if patch is not None:
        patch(position, local, arrays)
    if shared is not None:
        shared[key] = (local, (rule, patch, tuple(arrays)))
    return local


def evaluate_elementwise(expr: Any, compiled: NumpyFunction, symbols: Sequence[Any],
                         arrays: Sequence[np.ndarray]) -> np.ndarray:
    """A derived formula evaluated in float64 over broadcast arrays; where float64 overflows
    into NaN from finite inputs (sigmoid' at -800 is inf/inf), re-evaluated at 30 digits."""
    with np.errstate(all="ignore"):
        result = np.asarray(compiled(*arrays), dtype=np.float64)
    shape = np.broadcast_shapes(*(np.shape(a) for a in arrays))
    # A fresh array of the full shape is the caller's to patch (the op's limits); a formula
    # that is one of its arguments (d(x·y)/dx is y) or smaller than the broadcast is copied.
    if (result.shape != shape or not result.flags.owndata
            or any(result is array for array in arrays)):
        result = np.broadcast_to(result, shape).copy()
    nan = np.isnan(result)
    if not nan.any():  # the common case: nothing to re-evaluate
        return result
    inputs_finite = np.ones(shape, dtype=bool)
    for array in arrays:
        inputs_finite &= np.broadcast_to(np.isfinite(array), shape)
    # NaN from finite inputs is overflow inside the formula; a signed infinity is a genuine
    # value (1/x at 0) and keeps its sign.
    redo = np.argwhere(nan & inputs_finite)
    if 0 < len(redo) <= _MAX_HIGH_PRECISION_ELEMENTS:
        broadcast = [np.broadcast_to(a, shape) for a in arrays]
        for index in map(tuple, redo):
            point = [float(b[index]) for b in broadcast]
            result[index] = high_precision(expr, symbols, point)
    return result


def high_precision(expr: Any, symbols: Sequence[Any], point: Sequence[float]) -> float:
    """``expr`` at ``point``, evaluated by sympy at 30 digits and rounded once."""
    import sympy

    substitutions = {
        symbol: sympy.Float(value, _HIGH_PRECISION_DIGITS)
        for symbol, value in zip(symbols, point, strict=True)
    }
    return sympy_to_float(expr.xreplace(substitutions).evalf(_HIGH_PRECISION_DIGITS))


def sympy_to_float(value: Any) -> float:
    """A float for a sympy number: zoo/oo become inf, non-real values become nan."""
    import sympy

    if value is sympy.zoo or value is sympy.oo:
        return float("inf")
    if value is sympy.S.NegativeInfinity:
        return float("-inf")
    if value is sympy.nan:
        return float("nan")
    try:
        if value.is_real is False:
            return float("nan")
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


@functools.cache
def derive(name: str, arity: int, form: Callable[..., Any],
           keywords: tuple[tuple[str, Any], ...] = ()) -> ElementwiseRule:
    """Differentiate ``form(sympy, *symbols, **keywords)``; cached per op and keywords (float
    keywords taken at the exact value of their binary floats)."""
    import sympy

    symbols = tuple(sympy.Symbol(f"s{i}", real=True) for i in range(arity))
    function = form(sympy, *symbols, **exact_keywords(dict(keywords)))
    partials = tuple(drop_steps(sympy.diff(function, symbol)) for symbol in symbols)
    compiled = tuple(compile_to_numpy(p, symbols) for p in partials)
    return ElementwiseRule(symbols, function, partials, compiled)


@functools.cache
def derive_second(name: str, arity: int, form: Callable[..., Any],
                  keywords: tuple[tuple[str, Any], ...] = ()) -> SecondOrderRule:
    """The second partials of ``form``, differentiated from the first ones; cached like
    ``derive`` and derived only when a case asks for second order."""
    import sympy

    first = derive(name, arity, form, keywords)
    seconds = tuple(tuple(drop_steps(sympy.diff(partial, symbol)) for symbol in first.symbols)
                    for partial in first.partials)
    compiled = tuple(tuple(compile_to_numpy(e, first.symbols) for e in row) for row in seconds)
    return SecondOrderRule(first.symbols, seconds, compiled)


def exact_keywords(params: dict[str, Any]) -> dict[str, Any]:
    """Keyword values for a sympy form: floats as the exact rationals of their binary values
    (what torch computes with), everything else as it is."""
    import sympy

    def exact(value: Any) -> Any:
        if isinstance(value, float):
            fraction = Fraction(value)
            return sympy.Rational(fraction.numerator, fraction.denominator)
        return value

    return {key: exact(value) for key, value in params.items()}


def drop_steps(expr: Any) -> Any:
    """The derivative of a step function (floor, ceiling; sign's DiracDelta) is 0 wherever it
    exists; sympy leaves it unevaluated. Where it does not exist is a kink of the op."""
    import sympy

    if not hasattr(expr, "has") or not expr.has(sympy.Derivative, sympy.DiracDelta):
        return expr

    def is_step(e: Any) -> bool:
        return isinstance(e, sympy.Derivative) and isinstance(e.expr,
                                                               (sympy.floor, sympy.ceiling))

    # floor(a / b) differentiates to Subs(Derivative(floor(ξ), ξ), ξ, a / b) / b. One
    # xreplace of the whole terms (replace() re-sorts half-rebuilt Subs, which sympy 1.14
    # cannot compare).
    zero = sympy.S.Zero
    mapping = {e: zero for e in expr.atoms(sympy.Derivative) if is_step(e)}
    mapping |= {e: zero for e in expr.atoms(sympy.Subs) if is_step(e.expr)}
    mapping |= {e: zero for e in expr.atoms(sympy.DiracDelta)}
    return expr.xreplace(mapping) if mapping else expr


def compile_to_numpy(expr: Any, symbols: Sequence[Any]) -> NumpyFunction:
    """A numpy function of ``symbols`` that computes ``expr``, built by walking its tree."""
    import sympy

    position = {symbol: i for i, symbol in enumerate(symbols)}
    unary: dict[Any, Callable[[Any], Any]] = {
        sympy.exp: np.exp, sympy.log: np.log, sympy.sin: np.sin, sympy.cos: np.cos,
        sympy.tan: np.tan, sympy.tanh: np.tanh, sympy.sinh: np.sinh, sympy.cosh: np.cosh,
        sympy.sign: np.sign, sympy.Abs: np.abs, sympy.asin: np.arcsin, sympy.acos: np.arccos,
        sympy.atan: np.arctan, sympy.asinh: np.arcsinh, sympy.acosh: np.arccosh,
        sympy.atanh: np.arctanh, sympy.floor: np.floor, sympy.ceiling: np.ceil,
        sympy.erf: erf, sympy.erfc: erfc,
    }
    relations = {
        sympy.StrictGreaterThan: np.greater, sympy.GreaterThan: np.greater_equal,
        sympy.StrictLessThan: np.less, sympy.LessThan: np.less_equal,
        sympy.Equality: np.equal, sympy.Unequality: np.not_equal,
    }

    def build(node: Any) -> NumpyFunction:
        if node in position:
            index = position[node]
            return lambda *a: a[index]
        if node is sympy.true:
            return lambda *a: True
        if node is sympy.false:
            return lambda *a: False
        if node.is_number and not node.free_symbols:
            constant = sympy_to_float(node)
            return lambda *a: constant
        if node.is_Add:
            terms = [build(t) for t in node.args]
            return lambda *a: functools.reduce(np.add, (t(*a) for t in terms))
        if node.is_Mul:
            factors = [build(f) for f in node.args]
            return lambda *a: functools.reduce(np.multiply, (f(*a) for f in factors))
        if node.is_Pow:
            base, exponent = build(node.args[0]), node.args[1]
            if exponent == sympy.Rational(1, 2):
                return lambda *a: np.sqrt(base(*a))
            if exponent == sympy.Rational(-1, 2):
                return lambda *a: 1.0 / np.sqrt(base(*a))
            power = build(exponent)
            return lambda *a: np.power(base(*a), power(*a))
        if node.func in unary:
            function, argument = unary[node.func], build(node.args[0])
            return lambda *a: function(argument(*a))
        if node.func in relations:
            relation = relations[node.func]
            left, right = build(node.args[0]), build(node.args[1])
            return lambda *a: relation(left(*a), right(*a))
        logic = _logic(node, build)
        if logic is not None:
            return logic
        if isinstance(node, sympy.Piecewise):
            pieces = [(build(e), build(c)) for e, c in node.args]

            def piecewise(*a: Any) -> Any:
                shape = np.broadcast_shapes(*(np.shape(x) for x in a))
                result = np.full(shape, np.nan)
                done = np.zeros(shape, dtype=bool)
                for value, condition in pieces:
                    take = np.broadcast_to(condition(*a), shape) & ~done
                    result = np.where(take, np.broadcast_to(value(*a), shape), result)
                    done |= take
                return result

            return piecewise
        raise NotImplementedError(f"no numpy form for sympy {node.func.__name__}")

    return build(expr)


def _logic(node: Any, build: Callable[[Any], NumpyFunction]) -> NumpyFunction | None:
    """And, Or, Xor, Not and ITE (a condition chosen by a condition, from nested Piecewise)
    over numpy bool arrays; None for any other node."""
    import sympy

    reducers = {sympy.And: np.logical_and, sympy.Or: np.logical_or, sympy.Xor: np.logical_xor}
    if node.func in reducers:
        combine, operands = reducers[node.func], [build(c) for c in node.args]
        return lambda *a: functools.reduce(combine, (c(*a) for c in operands))
    if node.func is sympy.Not:
        operand = build(node.args[0])
        return lambda *a: np.logical_not(operand(*a))
    if node.func is sympy.ITE:
        test, then, otherwise = (build(c) for c in node.args)
        return lambda *a: np.where(test(*a), then(*a), otherwise(*a))
    return None
