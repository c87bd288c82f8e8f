"""Every elementwise op and activation as a case of its own: loaded from its spelling, checked
by all three oracles at float64 and float32, and passing; the same functions at realistic
sizes under the rule sweep. (tests/test_ops.py confirms each rule against elementwise sympy
and torch; this is the user's view: a case that names the op.)"""

from __future__ import annotations

from typing import Any

import pytest

from gradcheck_lab import check
from gradcheck_lab.ops import OPS

SEED = 7
DTYPES = ["float64", "float32"]


def uniform(shape: list[int], low: float, high: float, seed: int = SEED) -> dict[str, Any]:
    return {"shape": shape, "init": "uniform", "low": low, "high": high, "seed": seed}


def assert_all_three_agree(results: list[Any]) -> None:
    assert [r.dtype for r in results] == DTYPES
    for result in results:
        assert result.status == "pass", (result.dtype, result.message)
        counts = result.counts
        # Both comparisons happened on every gradient element of every probe, not a skip or
        # a subset.
        compared = counts["probes"] * counts["gradient_elements"]
        assert counts["symbolic_vs_autograd"] == compared > 0, counts
        assert counts["finite_difference"] == compared, counts


UNARY = sorted(name for name, op in OPS.items()
               if op.is_elementwise and op.callable and op.max_args == 1)


@pytest.mark.parametrize("name", UNARY)
def test_each_unary_function_passes_at_float64_and_float32(name: str) -> None:
    low, high = OPS[name].smooth_range
    results = check(f"{name}(x)", {"x": uniform([3, 4], low, high)}, name=name, dtypes=DTYPES)
    assert_all_three_agree(results)


# Arguments of the binary functions: b clear of 0 where the function divides by it.
BINARY_INPUTS = {
    "atan2": ((-2.0, 2.0), (-2.0, 2.0)),
    "hypot": ((-2.0, 2.0), (-2.0, 2.0)),
    "remainder": ((-5.0, 5.0), (0.5, 2.0)),
    "fmod": ((-5.0, 5.0), (-2.0, -0.5)),
    "maximum": ((-2.0, 2.0), (-2.0, 2.0)),
    "minimum": ((-2.0, 2.0), (-2.0, 2.0)),
}


def test_every_binary_function_has_a_case() -> None:
    binary = {name for name, op in OPS.items()
              if op.is_elementwise and op.callable and op.max_args == 2}
    assert binary == set(BINARY_INPUTS)


@pytest.mark.parametrize("name", sorted(BINARY_INPUTS))
def test_each_binary_function_passes_broadcasting_at_float64_and_float32(name: str) -> None:
    (a_low, a_high), (b_low, b_high) = BINARY_INPUTS[name]
    results = check(f"{name}(a, b)", {"a": uniform([3, 4], a_low, a_high),
                                      "b": uniform([4], b_low, b_high, seed=SEED + 1)},
                    name=name, dtypes=DTYPES)
    assert_all_three_agree(results)


@pytest.mark.parametrize("spelled", [
    "softplus(x, beta=2.5)",
    "softplus(x, 0.5, 1.0)",  # torch's positional order: beta, threshold
    "gelu(x, approximate='tanh')",
    "elu(x, alpha=0.5)",
    "celu(x, alpha=2.0)",
    "leaky_relu(x, negative_slope=0.2)",
    "leaky_relu(x, 0.2)",
    "hardtanh(x, min_val=-0.5, max_val=1.5)",
])
def test_activations_with_keywords_pass(spelled: str) -> None:
    results = check(spelled, {"x": uniform([3, 4], -3.0, 3.0)}, dtypes=DTYPES)
    assert_all_three_agree(results)


@pytest.mark.parametrize("text, message", [
    ("softplus(x, beta=0)", "beta= must not be 0"),
    ("celu(x, alpha=0.0)", "alpha= must not be 0"),
    ("hardtanh(x, min_val=2.0, max_val=1.0)", "min_val= must not exceed max_val="),
    ("gelu(x, approximate='fast')", "approximate"),
    ("leaky_relu(x, slope=0.2)", "negative_slope"),
])
def test_bad_keywords_are_refused_at_load(text: str, message: str) -> None:
    from gradcheck_lab.errors import CaseError

    with pytest.raises(CaseError, match=message):
        check(text, {"x": [0.5, 1.0]})


ACTIVATIONS = sorted(name for name, op in OPS.items() if op.group == "activation")


def test_activations_at_mnist_like_sizes_pass_under_the_rule_sweep() -> None:
    """Batch 64, 128 features: every activation of a hidden layer, summed to a loss."""
    terms = " + ".join(f"{name}(h)" for name in ACTIVATIONS)
    # h[55, 103] = -0.99999999702 is -1 in float32, on hardtanh's kink: avoid_kinks moves
    # the point off it (a skip otherwise, as relu's kink is).
    results = check(f"mean({terms})", {"h": uniform([64, 128], -4.0, 4.0)},
                    symbolic="sweep", dtypes=DTYPES, avoid_kinks=True)
    for result in results:
        assert result.status == "pass", (result.dtype, result.message)
        assert result.oracles["symbolic"].startswith("rule sweep"), result.oracles
        assert result.counts["symbolic_vs_autograd"] == 64 * 128  # a scalar: one probe counted
