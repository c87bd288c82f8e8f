"""derivatives.py on its own: sympy-derived elementwise rules compiled to numpy (no lambdify).

Each rule is checked against the derivative written by hand, the high-precision fallback
against values float64 cannot compute directly, and Piecewise against relu's kink.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest
import sympy
from numpy.typing import ArrayLike

from gradcheck_lab.ops import OPS
from gradcheck_lab.ops.derivatives import ElementwiseRule, compile_to_numpy

EPS64 = float(np.finfo(np.float64).eps)
# The compiled rule and the hand-written derivative evaluate the same function at the same
# float64 point through at most ~5 float64 operations each (libm calls within ~1 ulp, plus
# products, sums and one division), so they differ by a few ulps of the value; 16 ulps leaves
# headroom. Below 1 the bound is absolute (16 ulps of 1), above 1 relative.
ULPS = 16


def assert_same_math(actual: ArrayLike, expected: ArrayLike, ulps: int = ULPS) -> None:
    """The same derivative computed two ways in float64."""
    actual, expected = np.asarray(actual, dtype=np.float64), np.asarray(expected, np.float64)
    assert actual.shape == expected.shape
    tolerance = ulps * EPS64 * np.maximum(1.0, np.abs(expected))
    np.testing.assert_array_less(np.abs(actual - expected), tolerance)


def rule(name: str) -> ElementwiseRule:
    """The op's rule at its default keywords."""
    return OPS[name].rule()


def grid(low: float, high: float) -> np.ndarray:
    return np.linspace(low, high, 41)


def stable_sigmoid_derivative(x: np.ndarray) -> np.ndarray:
    e = np.exp(-np.abs(x))  # σ'(x) = σ'(-x) = e^{-|x|} / (1 + e^{-|x|})², never overflows
    return e / (1.0 + e) ** 2


def stable_sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def normal_cdf(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.vectorize(math.erf)(x / math.sqrt(2.0)))


def normal_pdf(x: np.ndarray) -> np.ndarray:
    return np.exp(-0.5 * x**2) / math.sqrt(2.0 * math.pi)


def mish_derivative(x: np.ndarray) -> np.ndarray:
    t = np.tanh(np.log1p(np.exp(x)))  # d/dx x·tanh(sp(x)) = t + x·(1 - t²)·sp'(x)
    return t + x * (1.0 - t**2) * stable_sigmoid(x)


SELU_ALPHA, SELU_SCALE = 1.6732632423543772848170429916717, 1.0507009873554804934193349852946

UNARY_BY_HAND = {
    "exp": (grid(-3, 3), np.exp),
    "log": (grid(0.05, 5), lambda x: 1.0 / x),
    "sqrt": (grid(0.05, 5), lambda x: 0.5 / np.sqrt(x)),
    "sin": (grid(-3, 3), np.cos),
    "cos": (grid(-3, 3), lambda x: -np.sin(x)),
    "tan": (grid(-1.4, 1.4), lambda x: 1.0 / np.cos(x) ** 2),
    "tanh": (grid(-4, 4), lambda x: 1.0 - np.tanh(x) ** 2),
    "sigmoid": (grid(-20, 20), stable_sigmoid_derivative),
    "relu": (grid(-2, 2), lambda x: (x > 0).astype(np.float64)),  # the grid includes 0
    "abs": (grid(-2, 2), np.sign),
    "neg": (grid(-2, 2), lambda x: -np.ones_like(x)),
    "asin": (grid(-0.95, 0.95), lambda x: 1.0 / np.sqrt(1.0 - x**2)),
    "acos": (grid(-0.95, 0.95), lambda x: -1.0 / np.sqrt(1.0 - x**2)),
    "atan": (grid(-4, 4), lambda x: 1.0 / (1.0 + x**2)),
    "sinh": (grid(-3, 3), np.cosh),
    "cosh": (grid(-3, 3), np.sinh),
    "asinh": (grid(-4, 4), lambda x: 1.0 / np.sqrt(x**2 + 1.0)),
    "acosh": (grid(1.05, 5), lambda x: 1.0 / np.sqrt(x**2 - 1.0)),
    "atanh": (grid(-0.95, 0.95), lambda x: 1.0 / (1.0 - x**2)),
    "log1p": (grid(-0.9, 4), lambda x: 1.0 / (1.0 + x)),
    "expm1": (grid(-3, 3), np.exp),
    "log2": (grid(0.05, 5), lambda x: 1.0 / (x * np.log(2.0))),
    "log10": (grid(0.05, 5), lambda x: 1.0 / (x * np.log(10.0))),
    "exp2": (grid(-3, 3), lambda x: np.exp2(x) * np.log(2.0)),
    "rsqrt": (grid(0.05, 5), lambda x: -0.5 * x**-1.5),
    "reciprocal": (grid(0.05, 5), lambda x: -1.0 / x**2),
    "square": (grid(-3, 3), lambda x: 2.0 * x),
    "erf": (grid(-3, 3), lambda x: 2.0 / np.sqrt(np.pi) * np.exp(-x**2)),
    "erfc": (grid(-3, 3), lambda x: -2.0 / np.sqrt(np.pi) * np.exp(-x**2)),
    # Steps: flat wherever the derivative exists (the jumps are kinks, never compared).
    "sign": (grid(-2, 2), np.zeros_like),
    "floor": (grid(-2, 2), np.zeros_like),
    "ceil": (grid(-2, 2), np.zeros_like),
    "round": (grid(-2, 2), np.zeros_like),
    "trunc": (grid(-2, 2), np.zeros_like),
    "frac": (grid(-2, 2), np.ones_like),
    # Activations at torch's default keywords.
    "softplus": (grid(-5, 5), lambda x: 1.0 - stable_sigmoid(-x)),
    "gelu": (grid(-4, 4), lambda x: normal_cdf(x) + x * normal_pdf(x)),
    "silu": (grid(-5, 5), lambda x: stable_sigmoid(x) * (1.0 + x * stable_sigmoid(-x))),
    "mish": (grid(-5, 5), mish_derivative),
    "elu": (grid(-3, 3), lambda x: np.where(x > 0, 1.0, np.exp(x))),
    "selu": (grid(-3, 3), lambda x: SELU_SCALE * np.where(x > 0, 1.0, SELU_ALPHA * np.exp(x))),
    "celu": (grid(-3, 3), lambda x: np.where(x > 0, 1.0, np.exp(x))),
    "leaky_relu": (grid(-2, 2), lambda x: np.where(x > 0, 1.0, 0.01)),
    "hardtanh": (grid(-2, 2), lambda x: ((x > -1) & (x < 1)) * 1.0),
    "relu6": (grid(-2, 8), lambda x: ((x > 0) & (x < 6)) * 1.0),
    "hardsigmoid": (grid(-5, 5), lambda x: ((x > -3) & (x < 3)) / 6.0),
    "hardswish": (grid(-5, 5), lambda x: np.where(x <= -3, 0.0,
                                                  np.where(x >= 3, 1.0, (2 * x + 3) / 6))),
    "logsigmoid": (grid(-5, 5), lambda x: stable_sigmoid(-x)),
    "softsign": (grid(-4, 4), lambda x: 1.0 / (1.0 + np.abs(x)) ** 2),
    "tanhshrink": (grid(-3, 3), lambda x: np.tanh(x) ** 2),
}


def differentiable_elementwise(arity: int) -> set[str]:
    """Elementwise ops of exactly ``arity`` arguments that have derivatives (comparisons and
    the logic of conditions have none)."""
    return {name for name, op in OPS.items() if op.is_elementwise and op.returns != "bool"
            and op.min_args == op.max_args == arity}


def test_every_unary_op_has_a_hand_written_derivative() -> None:
    assert differentiable_elementwise(1) == set(UNARY_BY_HAND)


@pytest.mark.parametrize("name", list(UNARY_BY_HAND))
def test_unary_rule_matches_derivative_by_hand(name: str) -> None:
    x, by_hand = UNARY_BY_HAND[name]
    assert_same_math(rule(name).partial(0, x), by_hand(x))


BINARY_BY_HAND = {
    "add": (lambda a, b: np.ones_like(a), lambda a, b: np.ones_like(a)),
    "sub": (lambda a, b: np.ones_like(a), lambda a, b: -np.ones_like(a)),
    "mul": (lambda a, b: b, lambda a, b: a),
    "div": (lambda a, b: 1.0 / b, lambda a, b: -a / b**2),
    "pow": (lambda a, b: b * a ** (b - 1), lambda a, b: a**b * np.log(a)),
    "atan2": (lambda a, b: b / (a**2 + b**2), lambda a, b: -a / (a**2 + b**2)),
    "hypot": (lambda a, b: a / np.hypot(a, b), lambda a, b: b / np.hypot(a, b)),
    "remainder": (lambda a, b: np.ones_like(a), lambda a, b: -np.floor(a / b)),
    "fmod": (lambda a, b: np.ones_like(a), lambda a, b: -np.trunc(a / b)),
    # A tie (a kink, never compared) goes to b, as sympy's Piecewise puts it.
    "maximum": (lambda a, b: (a > b) * 1.0, lambda a, b: (a <= b) * 1.0),
    "minimum": (lambda a, b: (a < b) * 1.0, lambda a, b: (a >= b) * 1.0),
}


def test_every_binary_op_has_hand_written_derivatives() -> None:
    assert differentiable_elementwise(2) == set(BINARY_BY_HAND)


def test_the_ops_of_other_arities_are_where_and_clamp() -> None:
    others = {name for name, op in OPS.items() if op.is_elementwise and op.returns != "bool"}
    assert others - differentiable_elementwise(1) - differentiable_elementwise(2) == {
        "where", "clamp"}


def test_where_rule_passes_the_gradient_to_the_branch_taken() -> None:
    condition = np.array([True, False, True])
    a, b = np.array([1.0, 2.0, 3.0]), np.array([-1.0, -2.0, -3.0])
    where = OPS["where"].rule()
    np.testing.assert_array_equal(where.partial(1, condition, a, b), [1, 0, 1])
    np.testing.assert_array_equal(where.partial(2, condition, a, b), [0, 1, 0])


@pytest.mark.parametrize("given", [(0, 1), (0, 2), (0, 1, 2)], ids=["min", "max", "both"])
def test_clamp_rule_sends_the_gradient_to_whichever_value_is_returned(given) -> None:
    x = grid(-2, 2) + 0.01  # never on a bound
    low, high = np.full_like(x, -0.5), np.full_like(x, 1.0)
    bounds = {1: low, 2: high}
    args = [x, *(bounds[position] for position in given[1:])]
    rule = OPS["clamp"].rule({"given": given})
    inside = np.ones_like(x, dtype=bool)
    if 1 in given:
        inside &= x > low
    if 2 in given:
        inside &= x < high
    np.testing.assert_array_equal(rule.partial(0, *args), inside * 1.0)
    for slot, position in enumerate(given[1:], start=1):
        bound = bounds[position]
        chosen = (x <= bound) if position == 1 else (x >= bound)
        np.testing.assert_array_equal(rule.partial(slot, *args), chosen * 1.0)


@pytest.mark.parametrize("name", list(BINARY_BY_HAND))
def test_binary_rule_matches_derivatives_by_hand(name: str) -> None:
    a, b = np.meshgrid(grid(0.2, 3), grid(-2, 2) + 0.05)  # b never 0 (div); a > 0 (pow, log)
    if name in ("remainder", "fmod"):
        # Where a / b is (nearly) whole the partial jumps: the rule computes a · (1/b), not
        # a / b, and the two floors may differ by one there. Those points are kinks.
        q = a / b
        away = np.abs(q - np.round(q)) > 1e-9
        a, b = a[away], b[away]
    compiled = rule(name)
    for position, by_hand in enumerate(BINARY_BY_HAND[name]):
        assert_same_math(compiled.partial(position, a, b), by_hand(a, b))


@pytest.mark.parametrize("x", [-800.0, 800.0])
def test_sigmoid_derivative_is_finite_and_zero_far_out(x: float) -> None:
    # At -800, float64 evaluates sympy's e^{-s} / (1 + e^{-s})² as inf/inf; the fallback
    # recomputes at 30 digits: e^{-800} ≈ 1e-348, below the smallest subnormal, so 0.
    (value,) = rule("sigmoid").partial(0, np.array([x]))
    assert np.isfinite(value)
    assert value == 0.0


def test_sigmoid_high_precision_fallback_gives_the_true_value() -> None:
    # At -720, e^{720} overflows float64 (inf/inf again) but σ'(-720) ≈ e^{-720} ≈ 2.0e-313
    # is a representable subnormal: the fallback must return it, not just "something finite".
    x = np.array([-720.0, -1.0])
    values = rule("sigmoid").partial(0, x)
    # Subnormal spacing is 5e-324, about 2e-11 of e^{-720}: both are rounded once from nearly
    # the same real number, so a relative 1e-9 is a loose bound that still pins the value.
    np.testing.assert_allclose(values[0], np.exp(-720.0), rtol=1e-9, atol=0)
    assert values[0] > 0
    assert_same_math(values[1], stable_sigmoid_derivative(x[1]))


def test_high_precision_fallback_keeps_the_shape_of_0d_and_2d_arrays() -> None:
    sigmoid = rule("sigmoid")
    assert sigmoid.partial(0, np.array(-800.0)).shape == ()
    grid_2d = np.array([[-800.0, 800.0], [-720.0, 0.0]])
    values = sigmoid.partial(0, grid_2d)
    assert values.shape == (2, 2)
    assert np.all(np.isfinite(values))
    assert values[1, 1] == 0.25  # σ'(0) = 1/4 exactly, from the float64 formula


def test_fallback_keeps_the_sign_of_an_infinite_derivative() -> None:
    # ∂(a/b)/∂b = -a/b² at b = 0 is -inf for a = 1 and +inf for a = -1, in IEEE float64 and in
    # torch.autograd alike; the compiled float64 formula already gets both signs right.
    import torch

    a, b = np.array([1.0, -1.0]), np.array([0.0, 0.0])
    with np.errstate(divide="ignore"):
        by_hand = -a / b**2
    np.testing.assert_array_equal(by_hand, [-np.inf, np.inf])
    tb = torch.tensor(b, requires_grad=True)
    (reference,) = torch.autograd.grad((torch.from_numpy(a) / tb).sum(), tb)
    np.testing.assert_array_equal(reference.numpy(), by_hand)
    np.testing.assert_array_equal(rule("div").partial(1, a, b), by_hand)


def test_relu_derivative_piecewise_is_zero_at_and_below_zero_one_above() -> None:
    x = np.array([-3.0, -5e-324, -0.0, 0.0, 5e-324, 2.0])
    np.testing.assert_array_equal(rule("relu").partial(0, x), [0, 0, 0, 0, 1, 1])
    s = sympy.Symbol("s", real=True)
    derivative = sympy.diff(sympy.Piecewise((s, s > 0), (0, True)), s)
    assert isinstance(derivative, sympy.Piecewise)
    np.testing.assert_array_equal(compile_to_numpy(derivative, (s,))(x), [0, 0, 0, 0, 1, 1])


def test_piecewise_takes_the_first_matching_piece() -> None:
    s = sympy.Symbol("s", real=True)
    expr = sympy.Piecewise((s**2, s < -1), (3 * s, s <= 1), (2 - s, True))
    x = np.array([-2.0, -1.0, 0.5, 1.0, 4.0])
    np.testing.assert_array_equal(compile_to_numpy(expr, (s,))(x), [4.0, -3.0, 1.5, 3.0, -2.0])


@pytest.mark.parametrize("make", [
    lambda a, b: sympy.exp(a) * sympy.sin(b) / (1 + a**2),
    lambda a, b: sympy.log(a) * sympy.sqrt(a + b**2) - sympy.tanh(b) ** 3,
    lambda a, b: sympy.Abs(b) / sympy.sqrt(a) + sympy.cos(a * b) ** 2,
], ids=["exp-sin-div", "log-sqrt-tanh", "abs-rsqrt-cos"])
def test_compiled_expression_matches_sympy_evaluation(
        make: Callable[[sympy.Symbol, sympy.Symbol], sympy.Expr]) -> None:
    a, b = sympy.symbols("a b", real=True)
    expr = make(a, b)
    rng = np.random.default_rng(7)
    x, y = rng.uniform(0.2, 2.0, 6), rng.uniform(-2.0, 2.0, 6)
    compiled = compile_to_numpy(expr, (a, b))(x, y)
    exact = [float(expr.xreplace({a: sympy.Float(p, 30), b: sympy.Float(q, 30)}).evalf(30))
             for p, q in zip(x, y, strict=True)]
    assert_same_math(compiled, exact)


def test_compile_refuses_what_it_cannot_translate() -> None:
    s = sympy.Symbol("s", real=True)
    with pytest.raises(NotImplementedError, match="gamma"):
        compile_to_numpy(sympy.gamma(s), (s,))
