"""Every op's second-order rules, confirmed against elementwise sympy at small sizes; then the
second-order sweep against the exact oracle on whole programs, and `order: 2` at the scale of
real networks.

For each example of tests/test_ops.py (every op of the language, its shapes and params), with
a tangent ȧ of the differentiated arguments, an adjoint g of the output and its tangent ġ:

* the JVP rule gives J·ȧ, J the Jacobian sympy derives from the op's sympy form;
* the pair rule gives the op's VJP g·J beside its tangent ġ·J + g·(∂J/∂a)·ȧ, which sympy
  gets by differentiating the directional derivative of g·y along ȧ once more.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import sympy

from gradcheck_lab import check, run_file
from gradcheck_lab.casefile import build_case, load_file
from gradcheck_lab.ops import OPS
from gradcheck_lab.ops.derivatives import drop_steps
from gradcheck_lab.oracles import symbolic
from gradcheck_lab.subject.points import make_point
from gradcheck_lab.subject.probes import make_probes, make_tangents
from tests.conftest import CASES, DATA
from tests.test_ops import (
    EXACT_CASES as EXAMPLES,
)
from tests.test_ops import (
    TORCH_CASES,
    ULPS,
    Example,
    assert_same_math,
    conditioning,
    cotangent,
    evaluate,
    has_derivative,
    needs_gradient,
    sample,
    symbols_for,
    torch_jacobians,
)


def tangents_for(example: Example, values: list[np.ndarray]) -> list[np.ndarray | None]:
    rng = np.random.default_rng(11)
    return [rng.standard_normal(np.shape(v)) if needed else None
            for v, needed in zip(values, needs_gradient(example), strict=True)]


@pytest.mark.slow
@pytest.mark.parametrize("example", EXAMPLES)
def test_second_order_rules_match_exact_sympy(example: Example) -> None:
    op, params = OPS[example.op], example.full_params
    values = sample(example)
    out = op.numpy(values, params)
    if not has_derivative(op):
        return  # a comparison or one_hot: nothing is differentiated through it
    tangents = tangents_for(example, values)
    g = cotangent(np.shape(out))
    g_dot = np.random.default_rng(12).standard_normal(np.shape(out))
    jvp = op.jvp_rule(values, tangents, out, params)
    pairs = op.pair_rule(g, g_dot, values, tangents, out, params, needs_gradient(example))

    arrays, point = symbols_for(example, values)
    outputs = np.asarray(op.sympy(arrays, params), dtype=object).ravel()
    differentiated = [(array.ravel(), t.ravel()) for array, t in zip(arrays, tangents,
                                                                     strict=True)
                      if t is not None]

    def derivative(expr: object, symbol: sympy.Symbol) -> object:
        return drop_steps(sympy.diff(expr, symbol)) if isinstance(expr, sympy.Basic) else 0

    # The directional derivative of each output along the tangent, and of g·y.
    directional = [sum((derivative(y, s) * sympy.Float(float(t), 30)
                        for names, ts in differentiated for s, t in zip(names, ts, strict=True)),
                       sympy.S.Zero) for y in outputs]
    expected_jvp = np.array([evaluate(d, point) for d in directional]).reshape(np.shape(out))
    assert_same_math(jvp, expected_jvp)

    weighted = sum((sympy.Float(float(w), 30) * d
                    for w, d in zip(g.ravel(), directional, strict=True)), sympy.S.Zero)
    for position, array in enumerate(arrays):
        if not needs_gradient(example)[position]:
            assert pairs[position] is None
            continue
        grad, grad_dot = pairs[position]
        jacobian = np.array([[evaluate(derivative(y, x), point) for x in array.ravel()]
                             for y in outputs]).reshape(len(outputs), array.size)
        assert_same_math(grad, (g.ravel() @ jacobian).reshape(array.shape),
                         scale=np.maximum(1.0, (np.abs(g.ravel()) @ np.abs(jacobian))
                                          .reshape(array.shape)))
        second = np.array([evaluate(derivative(weighted, x), point) for x in array.ravel()])
        expected = (g_dot.ravel() @ jacobian + second).reshape(array.shape)
        # Rounding scales with what the rule sums: |ġ|·|J| and the second-order part.
        scale = np.maximum(1.0, (np.abs(g_dot.ravel()) @ np.abs(jacobian)).reshape(
            array.shape) + np.abs(second).reshape(array.shape))
        assert_same_math(grad_dot, expected, scale=scale, ulps=ULPS)


@pytest.mark.parametrize("example", TORCH_CASES)
def test_second_order_rules_match_torch_double_backward(example: Example) -> None:
    """The exact test's twin where sympy cannot (eigh, svd, qr, matrix_exp; inv, det, solve,
    cholesky above 3 x 3), against torch's double backward in float64: the JVP is J·ȧ with J
    torch's Jacobian; the pair rule's tangent ġ·J + g·(∂J/∂a)·ȧ, whose second term is the
    gradient of <g·J, ȧ> (the VJP, taken with create_graph) by the symmetry of second
    partials. Tolerances: the rounding of both, amplified by the factorization's
    conditioning."""
    import torch

    op, params = OPS[example.op], example.full_params
    values = sample(example)
    out = op.numpy(values, params)
    tangents = tangents_for(example, values)
    g = cotangent(np.shape(out))
    g_dot = np.random.default_rng(12).standard_normal(np.shape(out))
    needs = needs_gradient(example)
    jvp = op.jvp_rule(values, tangents, out, params)
    pairs = op.pair_rule(g, g_dot, values, tangents, out, params, needs)
    kappa = conditioning(example, values)

    jacobians = torch_jacobians(example, values)
    moved = [(j, t.ravel()) for j, t in zip(jacobians, tangents, strict=True) if t is not None]
    assert_same_math(jvp, sum(j @ t for j, t in moved).reshape(np.shape(out)),
                     scale=kappa * np.maximum(1.0, sum(np.abs(j) @ np.abs(t) for j, t in moved)
                                              .reshape(np.shape(out))))
    tensors = [torch.tensor(v, requires_grad=need) for v, need in zip(values, needs, strict=True)]
    differentiated = [t for t in tensors if t.requires_grad]
    grads = torch.autograd.grad(op.torch(tensors, params), differentiated,
                                grad_outputs=torch.from_numpy(g), create_graph=True)
    along = sum((grad * torch.from_numpy(t)).sum()
                for grad, t in zip(grads, [t for t in tangents if t is not None], strict=True))
    second = torch.autograd.grad(along, differentiated, allow_unused=True,
                                 materialize_grads=True)
    for position, jacobian in enumerate(jacobians):
        if not needs[position]:
            assert pairs[position] is None
            continue
        grad, grad_dot = pairs[position]
        k = sum(needs[:position])
        shape = values[position].shape
        assert_same_math(grad, grads[k].detach().numpy(), scale=kappa * np.maximum(
            1.0, (np.abs(g.ravel()) @ np.abs(jacobian)).reshape(shape)))
        expected = (g_dot.ravel() @ jacobian).reshape(shape) + second[k].numpy()
        scale = np.maximum(1.0, (np.abs(g_dot.ravel()) @ np.abs(jacobian)).reshape(shape)
                           + np.abs(second[k].numpy()))
        assert_same_math(grad_dot, expected, scale=kappa * scale)


# -- whole programs: the second-order sweep against the exact oracle ----------------------

SMALL_PROGRAMS = [
    ("sum(tanh(x @ w) ** 2)", {"x": [[0.5, -1.0], [0.3, 2.0]], "w": [[1.0, -0.5], [0.25, 0.75]]}),
    ("logsumexp(x * y, dim=0)", {"x": [0.3, -1.2, 0.8], "y": [1.5, 0.5, -2.0]}),
    ("sum(2 ** x)", {"x": [0.3, 1.2, -0.4]}),
    ("sum(x ** y)", {"x": [0.3, 1.2, 2.5], "y": [1.5, -0.5, 2.0]}),
    ("sum(softmax(x, dim=-1) * log_softmax(x, dim=-1))", {"x": [[0.1, -0.3, 2.0]]}),
    ("amax(x * x, dim=0) + sum(abs(x) * x)", {"x": [0.3, -1.7, 1.1]}),
    ("sum(cumprod(x, dim=0) * layer_norm(x, [3]))", {"x": [0.7, -1.3, 0.4]}),
]


@pytest.mark.slow
@pytest.mark.parametrize("output, inputs", SMALL_PROGRAMS, ids=[o for o, _ in SMALL_PROGRAMS])
def test_the_second_order_sweep_matches_the_exact_oracle(output: str, inputs: dict) -> None:
    case = build_case({"name": "t", "inputs": inputs, "output": output}, label="test",
                      base_dir=None, default_name="t")
    program = case.program
    point = make_point(case, "float64", 0)
    probes = make_probes(program.output_node.shape, 0, case.outputs)
    tangents = make_tangents({s.name: s.shape for s in case.differentiable_inputs}, 0)
    exact, method_exact = symbolic.hessian_vector_products(program, point, probes, tangents,
                                                           "exact")
    swept, method_sweep = symbolic.hessian_vector_products(program, point, probes, tangents,
                                                           "sweep")
    assert (method_exact, method_sweep) == (symbolic.METHOD_EXACT, symbolic.METHOD_SWEEP)
    for exact_probe, swept_probe in zip(exact, swept, strict=True):
        assert exact_probe.keys() == swept_probe.keys()
        for name, value in exact_probe.items():
            assert_same_math(swept_probe[name], value)


ZOO_CORRECT = sorted((DATA / "zoo" / "correct").glob("*.yaml"))
# float64 overflows inside these rules (exp(1000), hypot's squares at 1e200) where the exact
# oracle, which order 2 uses for them, does not: the sweep's nan there is not compared.
OVERFLOW_IN_FLOAT64 = {"impl_logsumexp_large", "impl_hypot_huge"}


@pytest.mark.slow
@pytest.mark.parametrize("path", ZOO_CORRECT, ids=lambda p: p.stem)
def test_the_second_order_sweep_matches_the_exact_oracle_on_the_zoo(path: Path) -> None:
    """The numerically awkward correct functions of the zoo (saturated activations, huge and
    tiny values, kinks nearby): the sweep's Hessian-vector products are the exact ones."""
    for case in load_file(path):
        if case.traced or not symbolic.exact_hvp_is_affordable(case.program):
            continue
        point = make_point(case, "float64", 0)
        probes = make_probes(case.program.output_node.shape, case.seed, case.outputs)
        tangents = make_tangents({s.name: s.shape for s in case.differentiable_inputs},
                                 case.seed)
        exact, _ = symbolic.hessian_vector_products(case.program, point, probes, tangents,
                                                    "exact")
        swept, _ = symbolic.hessian_vector_products(case.program, point, probes, tangents,
                                                    "sweep")
        for exact_probe, swept_probe in zip(exact, swept, strict=True):
            for name, value in exact_probe.items():
                finite = np.isfinite(value) & np.isfinite(swept_probe[name])
                if case.name not in OVERFLOW_IN_FLOAT64:
                    assert np.array_equal(finite, np.isfinite(value)), (case.name, name)
                # The sweep rounds at each of its float64 steps: sqrt(eps) of the largest
                # element, the bound the comparison holds it to.
                scale = max(1.0, float(np.max(np.abs(value[finite]), initial=0.0)))
                np.testing.assert_allclose(swept_probe[name][finite], value[finite], rtol=0,
                                           atol=SWEEP_RTOL * scale, err_msg=case.name)


SWEEP_RTOL = float(np.sqrt(np.finfo(np.float64).eps))


@pytest.mark.parametrize("output, inputs", [
    ("sum(x ** 2 + x ** 3 + x ** 1)", {"x": [0.0, 1.2]}),
    ("sum(relu(x) ** 2)", {"x": [-0.5, 1.2]}),
    ("sum(x ** y)", {"x": [0.0, 1.2], "y": [2.0, 3.0]}),
    ("sum(x ** y)", {"x": [0.0, 1.2], "y": [0.0, 3.0]}),
    ("sum(x ** 0)", {"x": [0.0, 1.2]}),
])
@pytest.mark.parametrize("mode", ["exact", "sweep"])
def test_second_order_at_a_zero_base_agrees_with_torch(output: str, inputs: dict,
                                                       mode: str) -> None:
    """0 ** b: sympy's second partials are 0/0 there; the sweep takes torch's limits
    (b·(b-1)·a**(b-2), 0 where b·(b-1) = 0) and, as torch, none for a variable exponent."""
    (result,) = check(output, inputs, order=2, symbolic=mode)
    assert result.status == "pass", result.message


# -- order 2 at the scale of real networks ------------------------------------------------

def test_order_2_runs_past_the_exact_oracle_on_the_rule_sweep() -> None:
    (result,) = check("sum(x ** 3)", {"x": {"shape": [100], "init": "randn"}}, order=2)
    assert result.status == "pass", result.message
    assert result.counts["second_order_symbolic_vs_autograd"] == 100
    assert result.counts["second_order_finite_difference"] == 100
    assert "rule sweep" in result.tolerance["second_order"]


@pytest.mark.parametrize("output", ["sum(2 ** x)", "sum(x ** y)", "sum(y ** x * x)"])
def test_variable_exponents_pass_at_order_2_at_any_size(output: str) -> None:
    inputs = {"x": {"shape": [80], "init": "uniform", "low": 0.5, "high": 2.0, "seed": 1},
              "y": {"shape": [80], "init": "uniform", "low": -1.5, "high": 2.5, "seed": 2}}
    (result,) = check(output, inputs, order=2)
    assert result.status == "pass", result.message
    assert result.counts["second_order"] == 160  # every element of x and y (unused: 0)


SECOND_ORDER_WRONG = "first order agrees, so the backward is right but its own derivative is not"


def test_a_wrong_double_backward_is_caught_past_the_exact_oracle() -> None:
    """A Function whose backward calls a second Function (a hand-written double backward,
    as fused kernels have) that is right forward and wrong backward."""
    import torch

    class CubeGrad(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, grad):
            ctx.save_for_backward(x, grad)
            return 3 * x * x * grad

        @staticmethod
        def backward(ctx, upstream):
            x, grad = ctx.saved_tensors
            return upstream * 3 * x * grad, upstream * 3 * x * x  # d/dx is 6·x·grad

    class Cube(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return x ** 3

        @staticmethod
        def backward(ctx, grad):
            (x,) = ctx.saved_tensors
            return CubeGrad.apply(x, grad)

    (result,) = check("sum(x ** 3)", {"x": {"shape": [100], "init": "randn", "seed": 3}},
                      order=2, impl=lambda x: Cube.apply(x).sum())
    assert result.status == "fail"
    assert {m.check for m in result.mismatches} == {"hvp"}
    assert {m.odd_oracle for m in result.mismatches} == {"autograd"}
    assert SECOND_ORDER_WRONG in result.message


@pytest.mark.slow
def test_the_mnist_mlp_passes_at_order_2_and_its_detached_twin_fails() -> None:
    passing = run_file(CASES / "mnist_order2.yaml")
    assert [r.status for r in passing] == ["pass", "pass"], [r.message for r in passing]
    for result in passing:
        assert result.counts["second_order_symbolic_vs_autograd"] == 109_386
    (failing,) = run_file(DATA / "planted" / "mnist_order2_detached.yaml")
    assert failing.status == "fail"
    assert {m.check for m in failing.mismatches} == {"hvp"}
    assert {m.odd_oracle for m in failing.mismatches} == {"autograd"}
    # W3 and b3 come after the last tanh: their Hessian-vector products do not need tanh''.
    assert {m.input for m in failing.mismatches} == {"W1", "b1", "W2", "b2"}
    assert SECOND_ORDER_WRONG in failing.message
    assert ("second order: Hessian-vector products disagree; autograd is the odd one out: W1 "
            "(100352 elements), b1 (128 elements), W2") in failing.message
