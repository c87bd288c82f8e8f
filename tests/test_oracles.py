"""The three oracles, each on its own: exactness, agreement of the two symbolic paths,
finite-difference error bars that hold, autograd's handling of missing gradients, probes."""

from __future__ import annotations

import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import sympy

from gradcheck_lab.casefile import build_case, load_file
from gradcheck_lab.oracles import autograd, finite_difference, symbolic
from gradcheck_lab.subject.function import FunctionUnderTest
from gradcheck_lab.subject.points import make_point
from gradcheck_lab.subject.probes import FULL_JACOBIAN_MAX_OUTPUTS, RANDOM_PROBES, make_probes
from tests.conftest import CASES, REPO

EPS64 = float(np.finfo(np.float64).eps)


def case_from(data: dict, impl=None):
    return build_case(data, label="<test>", base_dir=None, default_name="t", impl=impl)


def oracle_inputs(case, dtype: str = "float64"):
    point = make_point(case, dtype)
    probes = make_probes(case.program.output_node.shape, case.seed)
    return point, probes


def test_r144_is_exact() -> None:
    (case,) = load_file(CASES / "r144.yaml")
    point, probes = oracle_inputs(case)
    grads = symbolic.gradients(case.program, point, probes)
    assert grads.method == symbolic.METHOD_EXACT
    assert {name: float(g) for name, g in grads.per_probe[0].items()} == {
        "x": 72.0, "y": 72.0, "z": 96.0}
    assert float(grads.value) == 144.0
    x, y, z = (sympy.Symbol(n, real=True) for n in "xyz")
    # The formula itself is kept (for `explain`): dr/dz = 2 z (x + y)^2.
    assert sympy.simplify(grads.formulas["z"][()] - 2 * z * (x + y) ** 2) == 0


def test_the_exact_oracle_works_at_the_binary_value_torch_sees() -> None:
    # A literal 0.1 is the float64 nearest 1/10 for torch; the exact oracle differentiates at
    # that same value: d/dx 3x² = 6x, exactly 6·float(0.1), rounded once (not 6/10).
    case = case_from({"inputs": {"x": Fraction(1, 10)}, "output": "x * x * 3"})
    point, probes = oracle_inputs(case)
    grads = symbolic.gradients(case.program, point, probes, mode="exact")
    assert grads.per_probe[0]["x"] == float(6 * Fraction(0.1))
    assert float(6 * Fraction(0.1)) != float(Fraction(3, 5))  # the two readings differ


@pytest.mark.parametrize("output, inputs", [
    ("mean(x**2)", {"x": {"shape": [2, 3], "init": "randn"}}),
    ("sum(softmax(x) * log_softmax(x))", {"x": {"shape": [5], "init": "randn"}}),
    ("cross_entropy(linear(x, W, b), t)", {
        "x": {"shape": [3, 4], "init": "randn", "requires_grad": False},
        "W": {"shape": [2, 4], "init": "randn"}, "b": {"shape": [2], "init": "randn"},
        "t": {"value": [0, 1, 1], "dtype": "int64"}}),
    ("tanh(A @ v) / (1 + sigmoid(v @ A))", {
        "A": {"shape": [3, 3], "init": "randn"}, "v": {"shape": [3], "init": "randn"}}),
])
def test_rule_sweep_matches_exact_elementwise_sympy(output: str, inputs: dict) -> None:
    case = case_from({"inputs": inputs, "output": output})
    point, probes = oracle_inputs(case)
    exact = symbolic.gradients(case.program, point, probes, mode="exact")
    swept = symbolic.gradients(case.program, point, probes, mode="sweep")
    for k in range(len(probes)):
        for name, reference in exact.per_probe[k].items():
            # Both are float64 results of the same math; the sweep rounds at every step, so
            # allow a few hundred ulps of the gradient's scale.
            scale = max(1.0, float(np.max(np.abs(reference))))
            np.testing.assert_allclose(swept.per_probe[k][name], reference, rtol=0,
                                       atol=256 * EPS64 * scale)



@pytest.mark.parametrize("output", [
    "sum(clamp(x, min=0) ** 0.5)", "sum(relu(x) ** 0.5)", "sum(maximum(x, 0.0) ** 0.5)",
    "sum(hardtanh(x, min_val=0.0, max_val=9.0) ** 0.5)", "sum(relu6(x) ** 0.5)",
    "sum(where(x > 0, x, 0.0) ** 0.5)",
])
def test_an_infinite_slope_behind_a_flat_op_is_zero_in_the_sweep_as_in_sympy(
        output: str) -> None:
    # Where clamp (relu, maximum, where) is flat the composite is constant: the gradient is
    # 0, though pow's slope at the clamped 0 is infinite (entmax's bisection: 0·inf = nan
    # made the sweep the odd one out of a correct backward).
    case = case_from({"inputs": {"x": [-1.0, 2.0, -0.5]}, "output": output})
    point, probes = oracle_inputs(case)
    exact = symbolic.gradients(case.program, point, probes, mode="exact")
    swept = symbolic.gradients(case.program, point, probes, mode="sweep")
    for k in range(len(probes)):
        np.testing.assert_array_equal(swept.per_probe[k]["x"], exact.per_probe[k]["x"])
    assert swept.per_probe[0]["x"][0] == 0.0


def test_an_isolated_zero_slope_still_makes_an_infinite_one_undefined() -> None:
    # x**2 has slope 0 at 0 only at that point: sqrt(x**2) = |x| has a kink there, and the
    # sweep keeps 0·inf undefined rather than calling it 0.
    case = case_from({"inputs": {"x": [0.0, 2.0]}, "output": "sum(sqrt(x ** 2))"})
    point, probes = oracle_inputs(case)
    swept = symbolic.gradients(case.program, point, probes, mode="sweep")
    assert np.isnan(swept.per_probe[0]["x"][0])

@pytest.mark.slow
def test_symbolic_oracle_never_imports_torch(tmp_path: Path) -> None:
    script = """
import sys
import numpy as np
from gradcheck_lab.casefile import build_case
from gradcheck_lab.oracles import symbolic
from gradcheck_lab.subject.probes import make_probes
from gradcheck_lab.subject.points import Point
rng = np.random.default_rng(0)
x, W = rng.uniform(0.1, 1.0, (1, 2, 4, 4)), rng.uniform(-1.0, 1.0, (2, 2, 2, 2))
# The reach of the language: convolutions, pooling, composites (losses, norms, attention),
# structure and activations, each in both symbolic modes.
for output in ["sum(tanh(conv2d(x, W, padding='same')))",
               "sum(max_pool2d(x, 3, 1, 1) * avg_pool2d(x, 3, 1, 1, True))",
               "sum(conv_transpose2d(adaptive_avg_pool2d(x, 2), W, stride=2))",
               "smooth_l1_loss(batch_norm(x, None, None, training=True), gelu(x))",
               "sum(scaled_dot_product_attention(x[0], x[0], x[0], is_causal=True))",
               "cross_entropy(cat([x[0, 0], pad(x[0, 1], (1, 1))[:, 1:-1]]), "
               "softmax(repeat_interleave(x[0, 1], 2, 0), 1), label_smoothing=0.1)"]:
    case = build_case({"inputs": {"x": x.tolist(), "W": W.tolist()}, "output": output},
                      label="t", base_dir=None, default_name="t")
    point = Point("float64", {"x": x, "W": W}, {})
    probes = make_probes((), 0)
    for mode in ("exact", "sweep"):
        symbolic.gradients(case.program, point, probes, mode=mode)
print("torch" in sys.modules)
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          cwd=REPO, check=True)
    assert done.stdout.strip() == "False"


def test_random_inputs_follow_the_documented_definition() -> None:
    import torch

    case = case_from({"inputs": {
        "a": {"shape": [3, 2], "init": "randn", "seed": 7, "std": 2, "mean": 1},
        "b": {"shape": [4], "init": "uniform", "low": -2, "high": 5, "seed": 8},
        "t": {"shape": [5], "init": "randint", "low": 1, "high": 4, "seed": 9},
    }, "output": "sum(a) + sum(b)"})
    point = make_point(case, "float64")
    gen = torch.Generator().manual_seed
    expected_a = torch.randn((3, 2), generator=gen(7), dtype=torch.float64) * 2 + 1
    expected_b = torch.rand((4,), generator=gen(8), dtype=torch.float64) * 7 - 2
    expected_t = torch.randint(1, 4, (5,), generator=gen(9))
    np.testing.assert_array_equal(point.values["a"], expected_a.numpy())
    np.testing.assert_array_equal(point.values["b"], expected_b.numpy())
    np.testing.assert_array_equal(point.values["t"], expected_t.numpy())


def test_float32_point_is_rounded_so_oracles_see_the_same_values() -> None:
    case = case_from({"inputs": {"x": [0.1, 1 / 3]}, "output": "sum(x)"})
    point = make_point(case, "float32")
    np.testing.assert_array_equal(point.values["x"],
                                  np.array([0.1, 1 / 3], dtype=np.float32).astype(np.float64))
    assert "x" not in point.exact  # exact literals only at float64


def test_probes_cover_the_jacobian_or_use_seeded_cotangents() -> None:
    # A scalar output: cotangent 1, and a seeded multiple c of it, of either sign, away from
    # 1 and below 1 in size (grad_output must be used, and c·g must not overflow).
    one, scaled = make_probes((), 0)
    assert float(one.cotangent) == 1.0 and scaled.multiple_of == 0
    cs = [float(make_probes((), seed)[1].cotangent) for seed in range(40)]
    assert all(0.25 <= abs(c) <= 0.71 for c in cs)
    assert min(cs) < 0 < max(cs)
    assert make_probes((), 3)[1].cotangent == make_probes((), 3)[1].cotangent
    small = make_probes((2, 3), 0)
    assert len(small) == 6
    np.testing.assert_array_equal(sum(p.cotangent for p in small), np.ones((2, 3)))
    large = make_probes((FULL_JACOBIAN_MAX_OUTPUTS + 1,), 5)
    assert len(large) == RANDOM_PROBES
    again = make_probes((FULL_JACOBIAN_MAX_OUTPUTS + 1,), 5)
    other_seed = make_probes((FULL_JACOBIAN_MAX_OUTPUTS + 1,), 6)
    np.testing.assert_array_equal(large[0].cotangent, again[0].cotangent)
    assert not np.array_equal(large[0].cotangent, other_seed[0].cotangent)


@pytest.mark.parametrize("output, values", [
    ("sum(exp(x) * sin(x))", [0.3, -1.2, 2.5]),
    ("sum(tan(x))", [1.5, 1.57]),  # near the pole: large third derivative
    ("sum(log(x))", [1e-3, 7.0]),
])
def test_finite_difference_error_bars_cover_the_true_error(output: str, values: list) -> None:
    case = case_from({"inputs": {"x": values}, "output": output})
    point, probes = oracle_inputs(case)
    exact = symbolic.gradients(case.program, point, probes, mode="exact").per_probe[0]["x"]
    fd = finite_difference.estimate(FunctionUnderTest(case, "float64", "cpu"), point, probes,
                                    mode="all")
    estimates = fd.per_input["x"]
    true_error = np.abs(estimates.partials[0] - exact.reshape(-1)[estimates.indices])
    assert np.all(true_error <= estimates.partial_errors[0])


def test_finite_difference_bars_widen_for_cancellation() -> None:
    # (x + 1e8) - 1e8 rounds at 1e8: the difference quotient is off by ~1e-3 and its bar
    # must say so instead of claiming 1e-10 accuracy.
    case = case_from({"inputs": {"x": [0.5, 1.5]}, "output": "sum((x + 1e8) - 1e8)"})
    point, probes = oracle_inputs(case)
    sym = symbolic.gradients(case.program, point, probes)
    fd = finite_difference.estimate(FunctionUnderTest(case, "float64", "cpu"), point, probes,
                                    mode="all", term_scale=sym.term_scale)
    estimates = fd.per_input["x"]
    assert np.all(np.abs(estimates.partials[0] - 1.0) <= estimates.partial_errors[0])
    assert np.all(estimates.partial_errors[0] > 1e-4)


def test_projections_for_large_inputs_and_focus_elements() -> None:
    case = case_from({"inputs": {"W": {"shape": [50, 50], "init": "randn"}},
                      "output": "sum(tanh(W) ** 2)"})
    point, probes = oracle_inputs(case)
    focus = {"W": np.array([3, 77])}
    fd = finite_difference.estimate(FunctionUnderTest(case, "float64", "cpu"), point, probes,
                                    focus=focus)
    estimates = fd.per_input["W"]
    assert list(estimates.indices) == [3, 77]
    assert estimates.directions.shape == (finite_difference.DIRECTIONS_PER_INPUT, 50, 50)
    exact = symbolic.gradients(case.program, point, probes, mode="sweep").per_probe[0]["W"]
    projected = np.tensordot(estimates.directions, exact, axes=2)
    assert np.all(np.abs(estimates.directional[0] - projected) <= estimates.directional_errors[0])


def test_autograd_counts_a_missing_gradient_as_zeros_and_says_so() -> None:
    import torch

    class DropsBias(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, b):
            return (x * 2 + b).sum()

        @staticmethod
        def backward(ctx, grad):
            return grad * 2 * torch.ones(3, dtype=grad.dtype), None

    case = case_from({"inputs": {"x": [1.0, 2.0, 3.0], "b": 0.5},
                      "output": "sum(x * 2 + b)"}, impl=lambda x, b: DropsBias.apply(x, b))
    point, probes = oracle_inputs(case)
    grads = autograd.gradients(FunctionUnderTest(case, "float64", "cpu"), point, probes)
    assert float(grads.per_probe[0]["b"]) == 0.0
    np.testing.assert_array_equal(grads.per_probe[0]["x"], [2.0, 2.0, 2.0])
    assert any("no gradient for b" in note for note in grads.notes)


def test_relu_exactly_at_zero_is_a_kink_not_a_failure() -> None:
    from gradcheck_lab.pipeline import run_case

    case = case_from({"inputs": {"x": [1.0, 0.0, -2.0]}, "output": "sum(relu(x))"})
    (result,) = run_case(case)
    assert result.status == "skip"
    assert "not differentiable at x[1]" in result.message


def test_a_pool_tie_among_relu_zeros_is_no_kink_but_a_tie_of_positives_is() -> None:
    from gradcheck_lab.pipeline import run_case

    # Window 0 of relu(x) is [0, 0, 0, 0] (all negative before relu): tied, yet the gradient
    # is 0 whichever wins. Window 1 is [0.5, 0.5, 0, 0]: a true kink of max_pool2d.
    flat = {"x": [[[[-1.0, -2.0], [-3.0, -0.5]]]], "w": [[[[1.0]]]]}
    (result,) = run_case(case_from({"inputs": flat,
                                    "output": "sum(max_pool2d(relu(x * w), kernel_size=2))"}))
    assert result.status == "pass", result.message
    tied = {"x": [[[[0.5, 0.5], [-3.0, -0.5]]]], "w": [[[[1.0]]]]}
    (result,) = run_case(case_from({"inputs": tied,
                                    "output": "sum(max_pool2d(relu(x * w), kernel_size=2))"}))
    assert result.status == "skip"
    assert "max_pool2d where a window's maximum is tied" in result.message


def test_avoid_kinks_moves_a_point_off_the_kink_and_says_so() -> None:
    from gradcheck_lab.pipeline import run_case

    data = {"inputs": {"x": [1.0, 0.0, -2.0]}, "output": "sum(relu(x) * x)"}
    (skipped,) = run_case(case_from(data))
    assert skipped.status == "skip"
    (moved,) = run_case(case_from({**data, "avoid_kinks": True}))
    assert moved.status == "pass", moved.message
    (note,) = [n for n in moved.notes if "avoid_kinks moved it off" in n]
    assert "x[1]" in note


def test_avoid_kinks_moves_little_and_reproducibly() -> None:
    from gradcheck_lab.subject.points import KINK_SHIFT, make_point, moved_off_kinks

    case = case_from({"inputs": {"x": [1.0, 0.0, -2.0]}, "output": "sum(relu(x))",
                      "avoid_kinks": True})
    point = make_point(case, "float64")
    first, again = moved_off_kinks(case, point, 1), moved_off_kinks(case, point, 1)
    np.testing.assert_array_equal(first.values["x"], again.values["x"])
    x = point.values["x"]
    shift = np.abs(first.values["x"] - x) / np.maximum(1.0, np.abs(x))
    assert np.all(shift > 0) and np.all(shift < 6 * KINK_SHIFT)


def test_nested_matmuls_take_the_sweep_not_minutes_of_sympy() -> None:
    from tests.conftest import time_limit

    # 392 scalars pass the size limits, but each output element's expression would hold
    # billions of terms: exact differentiation once took over five minutes here.
    case = case_from({"inputs": {"x": {"shape": [8, 8], "init": "randn", "seed": 1}},
                      "let": {"h": "tanh(x @ x)", "g": "softmax(h @ h, dim=1)"},
                      "output": "select(g @ g, dim=0, index=0)"})
    assert not symbolic.exact_is_affordable(case.program)
    assert "expressions too large" in symbolic.exact_unaffordable_because(case.program)
    with time_limit(60):
        point, probes = oracle_inputs(case)
        grads = symbolic.gradients(case.program, point, probes)
    assert grads.method.startswith("rule sweep")


def test_a_tie_that_exists_only_in_float32_is_a_kink_there() -> None:
    from gradcheck_lab.pipeline import run_case

    # 1001 and 1001.000001 differ in float64 but are one float32 number: torch breaks the tie
    # its own way, so the float32 result is a skip, and float64 is checked as usual.
    case = case_from({"inputs": {"x": [[[1.0, 1.000001], [0.0, 0.5]]]},
                      "output": "sum(max_pool2d(x + 1000, kernel_size=2))",
                      "dtypes": ["float32", "float64"]})
    float32, float64 = run_case(case)
    assert float32.status == "skip" and "window's maximum is tied" in float32.message
    assert float64.status == "pass", float64.message


def nested_sin(depth: int) -> str:
    return "sin(" * depth + "x" + ")" * depth


@pytest.mark.slow
def test_deep_nesting_goes_to_the_sweep_and_forced_exact_is_an_error_at_its_key() -> None:
    """sympy recurses about five frames per level: past EXACT_MAX_NESTING the auto mode takes
    the rule sweep (and says why), and --symbolic exact is an error at the key instead of a
    RecursionError from inside sympy."""
    from gradcheck_lab.errors import SpecError

    depth = symbolic.EXACT_MAX_NESTING + 80
    case = case_from({"inputs": {"x": 0.5}, "let": {"y": nested_sin(depth)}, "output": "y"})
    point, probes = oracle_inputs(case)
    assert symbolic.nesting_depth(case.program) == (depth, "let.y")
    assert "nested 180 deep (let.y" in symbolic.exact_unaffordable_because(case.program)
    swept = symbolic.gradients(case.program, point, probes)
    assert swept.method == symbolic.METHOD_SWEEP
    expected = 1.0
    value = 0.5
    for _ in range(depth):  # the chain rule by hand: d sin(u) = cos(u) du
        expected *= np.cos(value)
        value = np.sin(value)
    assert np.isclose(float(swept.per_probe[0]["x"]), expected, rtol=1e-12)
    with pytest.raises(SpecError) as raised:
        symbolic.gradients(case.program, point, probes, mode="exact")
    assert raised.value.key == "let.y"
    assert "nested 180 deep" in raised.value.message
    # At the limit itself sympy's recursion still fits: exact, not a RecursionError.
    shallow = case_from({"inputs": {"x": 0.5}, "output": nested_sin(symbolic.EXACT_MAX_NESTING)})
    assert symbolic.exact_is_affordable(shallow.program)
    point, probes = oracle_inputs(shallow)
    assert symbolic.gradients(shallow.program, point, probes, mode="exact").exact


def test_chained_powers_count_against_the_exact_oracle() -> None:
    """Each power is under the expression language's limit; chained through lets they
    multiply (x**64**... is a rational of millions of bits at x = 1.1): the sweep, with the
    reason."""
    lets = {"a0": "x ** 64", **{f"a{i}": f"a{i - 1} ** 64" for i in range(1, 4)}}
    case = case_from({"inputs": {"x": 1.0}, "let": lets, "output": "a3"})
    assert symbolic.polynomial_degree(case.program) == (64.0 ** 4, "let.a3")
    reason = symbolic.exact_unaffordable_because(case.program)
    assert "a power of degree about 1.68e+07 in the inputs (let.a3" in reason
    small = case_from({"inputs": {"x": 1.0}, "let": {"a": "x ** 16", "b": "a ** 16 * x"},
                       "output": "b"})
    assert symbolic.polynomial_degree(small.program)[0] == 257.0
    assert symbolic.exact_is_affordable(small.program)


@pytest.mark.slow
def test_finite_differences_stay_within_their_budget_and_say_how(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Thousands of scalar inputs would cost inputs × 8 directions × 4 evaluations of a
    program as large: the directions are cut to the budget, a seeded sample of the inputs
    when there are more inputs than estimates, and the note says so. (A smaller budget
    than the default keeps the test fast; the rule is the same.)"""
    monkeypatch.setattr(finite_difference, "FD_MAX_WORK", 60_000)
    count = 300
    inputs = {f"x{i}": 0.1 + i / count for i in range(count)}
    sums = {f"s{k}": " + ".join(f"x{i}" for i in range(k * 50, (k + 1) * 50))
            for k in range(count // 50)}
    case = case_from({"inputs": inputs, "let": sums,
                      "output": " + ".join(f"sin(s{k})" for k in range(count // 50))})
    budget = finite_difference.estimate_budget(case)
    assert budget == finite_difference.FD_MAX_WORK // len(case.program.nodes) < count
    point, probes = oracle_inputs(case)
    fd = finite_difference.estimate(FunctionUnderTest(case, "float64", "cpu"), point, probes,
                                    mode="projections")
    directed = [name for name, e in fd.per_input.items() if len(e.directions)]
    assert len(directed) == budget
    again = finite_difference.estimate(FunctionUnderTest(case, "float64", "cpu"), point,
                                       probes, mode="projections")
    assert directed == [name for name, e in again.per_input.items() if len(e.directions)]
    assert fd.evaluations <= 4 * budget + 1
    (note,) = [n for n in fd.notes if "budget" in n]
    assert f"1 random direction for {budget} of the {count} inputs, sampled" in note
    few = finite_difference._directions_within(case.differentiable_inputs[:100], 400, 0)
    assert few == (4, None)
