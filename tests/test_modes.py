"""`order: 2` (Hessian-vector products) and `modes: [reverse, forward]` (Jacobian-vector
products), each checked three ways and folded into the case's one result."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import torch

from gradcheck_lab import check, run_file

SPEC = "sum(tanh(x @ w) ** 2)"
INPUTS = {"x": [0.5, -1.0, 2.0], "w": [[1.0, 2.0], [3.0, -1.0], [0.5, 0.25]]}


def run_yaml(tmp_path: Path, text: str) -> list:
    path = tmp_path / "case.yaml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return run_file(path)


@pytest.mark.slow
def test_the_spec_passes_second_order_and_forward_mode_from_yaml(tmp_path: Path) -> None:
    (result,) = run_yaml(tmp_path, f"""\
        inputs: {{x: [0.5, -1.0, 2.0], w: [[1.0, 2.0], [3.0, -1.0], [0.5, 0.25]]}}
        output: {SPEC}
        order: 2
        modes: [reverse, forward]
        """)
    assert result.status == "pass", result.message
    assert result.counts["second_order"] == 9  # every element of x and w
    assert result.counts["forward_mode"] == 1


class ExpUnderNoGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        y = torch.exp(x)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, grad):
        (y,) = ctx.saved_tensors
        with torch.no_grad():  # first order right; the gradient cannot be differentiated
            return grad * y


class Exp(torch.autograd.Function):
    """exp with a differentiable backward and a forward-mode rule (jvp)."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        ctx.save_for_forward(x)
        return torch.exp(x)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad * torch.exp(x)

    @staticmethod
    def jvp(ctx, tangent):
        (x,) = ctx.saved_tensors
        return tangent * torch.exp(x)


class ExpWrongJvp(Exp):
    @staticmethod
    def jvp(ctx, tangent):
        (x,) = ctx.saved_tensors
        return -tangent * torch.exp(x)  # planted: wrong sign in forward mode only


class ExpNoJvp(torch.autograd.Function):
    forward = Exp.forward
    backward = Exp.backward


def test_a_backward_under_no_grad_fails_second_order_naming_autograd() -> None:
    (first,) = check("sum(exp(x))", {"x": [0.5, -1.0]},
                     impl=lambda x: ExpUnderNoGrad.apply(x).sum())
    assert first.status == "pass", first.message  # first order cannot see it
    (result,) = check("sum(exp(x))", {"x": [0.5, -1.0]}, order=2,
                      impl=lambda x: ExpUnderNoGrad.apply(x).sum())
    assert result.status == "fail"
    hvp = [m for m in result.mismatches if m.check == "hvp"]
    assert hvp and {m.odd_oracle for m in hvp} == {"autograd"}
    assert "no_grad or on detached tensors" in result.message


@pytest.mark.parametrize("output, inputs", [
    ("sum(exp(x))", {"x": [0.5, -1.0]}),
    ("sum(3 * x) + sum(x * y)", {"x": [0.5, -1.0], "y": [2.0, 4.0]}),  # constant and mixed
])
def test_correct_functions_pass_second_order(output: str, inputs: dict) -> None:
    impl = (lambda x: Exp.apply(x).sum()) if output == "sum(exp(x))" else None
    (result,) = check(output, inputs, order=2, impl=impl)
    assert result.status == "pass", result.message


def test_a_wrong_jvp_fails_forward_mode_naming_autograd() -> None:
    (good,) = check("exp(x)", {"x": [0.5, -1.0]}, modes=["reverse", "forward"],
                    impl=lambda x: Exp.apply(x))
    assert good.status == "pass", good.message
    (result,) = check("exp(x)", {"x": [0.5, -1.0]}, modes=["reverse", "forward"],
                      impl=lambda x: ExpWrongJvp.apply(x))
    assert result.status == "fail"
    jvp = [m for m in result.mismatches if m.check == "jvp"]
    assert jvp and {m.odd_oracle for m in jvp} == {"autograd"}
    assert jvp[0].probe is not None  # a tensor output: one row per cotangent
    assert "forward mode" in result.message


def test_a_function_without_jvp_is_an_error_saying_so() -> None:
    (result,) = check("exp(x)", {"x": [0.5, -1.0]}, modes=["reverse", "forward"],
                      impl=lambda x: ExpNoJvp.apply(x))
    assert result.status == "error"
    assert "jvp" in result.message and "modes" in result.message


def test_second_order_beyond_the_exact_oracle_runs_on_the_rule_sweep(tmp_path: Path) -> None:
    (result,) = run_yaml(tmp_path, """\
        inputs:
          x: {shape: [100], init: randn}
        output: sum(x ** 3)
        order: 2
        """)
    assert result.status == "pass", result.message
    assert result.counts["second_order"] == 100
    assert "rule sweep" in result.tolerance["second_order"]


@pytest.mark.slow
def test_order_2_and_forward_mode_run_through_pytest(pytester: pytest.Pytester) -> None:
    (pytester.path / "cases").mkdir()
    (pytester.path / "cases" / "second.yaml").write_text(textwrap.dedent(f"""\
        inputs: {{x: [0.5, -1.0, 2.0], w: [[1.0, 2.0], [3.0, -1.0], [0.5, 0.25]]}}
        output: {SPEC}
        order: 2
        modes: [reverse, forward]
        """), encoding="utf-8")
    (pytester.path / "cases" / "nograd.yaml").write_text(textwrap.dedent("""\
        inputs: {x: [0.5, -1.0]}
        output: sum(exp(x))
        impl: impl.py:bad
        order: 2
        """), encoding="utf-8")
    (pytester.path / "cases" / "impl.py").write_text(textwrap.dedent("""\
        import torch

        class ExpUnderNoGrad(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x):
                y = torch.exp(x)
                ctx.save_for_backward(y)
                return y

            @staticmethod
            def backward(ctx, grad):
                (y,) = ctx.saved_tensors
                with torch.no_grad():
                    return grad * y

        def bad(x):
            return ExpUnderNoGrad.apply(x).sum()
        """), encoding="utf-8")
    result = pytester.runpytest("-q", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*second order: Hessian-vector products disagree*"])


@pytest.mark.parametrize("output, inputs, dtype", [
    ("sum(softmax(x))", {"x": [0.3, -1.7, 2.5]}, "float64"),  # constant: exact HVP 0
    ("sum(sin(x) ** 2 + cos(x) ** 2)", {"x": [0.3, -1.7, 2.5]}, "float64"),
    ("logsumexp(x, dim=0)", {"x": [40.0, 0.0, -3.0, 2.0]}, "float64"),
    ("cross_entropy(x, t)", {"x": [15.0, 0.0, -3.0, 2.0], "t": {"value": 0, "dtype": "int64"}},
     "float32"),
])
def test_near_zero_hessian_vector_products_are_rounding_not_bugs(output, inputs, dtype) -> None:
    (result,) = check(output, inputs, order=2, dtypes=[dtype])
    assert result.status == "pass", result.message


def test_second_order_never_blames_the_exact_oracle_when_first_order_is_wrong() -> None:
    class ExpOff(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return x.exp()

        @staticmethod
        def backward(ctx, grad):
            (x,) = ctx.saved_tensors
            return grad * x.exp() * 1.01  # wrong, and differentiable: wrong at order 2 too

    (result,) = check("sum(exp(x))", {"x": [0.3, 1.2, -0.7]}, order=2,
                      impl=lambda x: ExpOff.apply(x).sum())
    assert result.status == "fail"
    assert "symbolic is the odd one out" not in result.message
    assert {m.odd_oracle for m in result.mismatches if m.check == "gradient"} == {"autograd"}


def test_order_2_takes_exponents_the_exact_oracle_cannot_expand() -> None:
    (result,) = check("sum(x ** 100)", {"x": [0.3, 1.7]}, order=2)
    assert result.status == "pass", result.message
    assert "rule sweep" in result.tolerance["second_order"]
