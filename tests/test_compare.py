"""The comparison on its own: which oracle is the odd one out, and when nothing is wrong.

The symbolic and finite-difference results are real; the autograd (or symbolic) result is
perturbed by hand, so each test knows exactly which element is wrong and by whom.
"""

from __future__ import annotations

import dataclasses
from fractions import Fraction

import numpy as np
import pytest
import torch

from gradcheck_lab.casefile import Tolerance, build_case
from gradcheck_lab.compare import OracleResults, compare
from gradcheck_lab.compare.tolerances import default_rtol, rule_for
from gradcheck_lab.oracles import autograd, finite_difference, symbolic
from gradcheck_lab.oracles.contract import Estimates, FiniteDifferences, Gradients
from gradcheck_lab.subject.function import FunctionUnderTest
from gradcheck_lab.subject.points import make_point
from gradcheck_lab.subject.probes import make_probes

SPEC = {"inputs": {"x": [0.5, -1.0, 2.0], "w": [[1.0, 2.0], [3.0, -1.0], [0.5, 0.25]]},
        "output": "sum(tanh(x @ w) ** 2)"}


def oracles(data: dict = SPEC, dtype: str = "float64"):
    case = build_case(data, label="<test>", base_dir=None, default_name="t")
    point = make_point(case, dtype)
    probes = make_probes(case.program.output_node.shape, case.seed)
    sym = symbolic.gradients(case.program, point, probes)
    ag = autograd.gradients(FunctionUnderTest(case, dtype, "cpu"), point, probes)
    fd = finite_difference.estimate(FunctionUnderTest(case, "float64", "cpu"), point, probes,
                                    term_scale=sym.term_scale)
    return case, point, probes, sym, ag, fd


def perturbed(grads: Gradients, name: str, index: tuple, factor: float = 1.0,
              value: float | None = None) -> Gradients:
    """One element changed at every probe: multiplied by ``factor``, or set to ``value``."""
    def change(probe: dict) -> dict:
        changed = {k: v.copy() for k, v in probe.items()}
        changed[name][index] = value if value is not None else changed[name][index] * factor
        return changed

    return deterministic(grads, change)


def deterministic(grads: Gradients, change) -> Gradients:
    """Gradients changed by hand at every probe, as a deterministic backward would give them
    every time it runs."""
    per_probe = tuple(change(probe) for probe in grads.per_probe)
    return dataclasses.replace(grads, per_probe=per_probe,
                               reruns={label: per_probe[grads.rerun_probe]
                                       for label in grads.reruns})


def verdict(case, point, probes, sym, ag, fd, dtype="float64", override=None):
    return compare(OracleResults(case, point, probes, sym, ag, fd),
                   rule_for(dtype, override))


def test_correct_gradients_pass_with_counts() -> None:
    case, point, probes, sym, ag, fd = oracles()
    result = verdict(case, point, probes, sym, ag, fd)
    assert result.status == "pass", result.message
    assert result.mismatches == []
    assert result.counts["gradient_elements"] == 9
    assert result.counts["symbolic_vs_autograd"] == 9
    assert result.counts["finite_difference"] == 9


def test_one_wrong_autograd_element_names_autograd_and_the_element() -> None:
    case, point, probes, sym, ag, fd = oracles()
    result = verdict(case, point, probes, sym, perturbed(ag, "w", (1, 0), 1.001), fd)
    assert result.status == "fail"
    (mismatch,) = result.mismatches
    assert (mismatch.input, mismatch.index, mismatch.odd_oracle) == ("w", (1, 0), "autograd")
    assert mismatch.oracles == ("symbolic", "autograd")
    assert mismatch.rel_err == pytest.approx(1e-3, rel=1e-6)
    assert result.message == "autograd is the odd one out: w (1 element); x agrees"


def test_a_wrong_symbolic_result_is_named_too() -> None:
    case, point, probes, sym, ag, fd = oracles()
    result = verdict(case, point, probes, perturbed(sym, "x", (2,), -1.0), ag, fd)
    assert [m.odd_oracle for m in result.mismatches] == ["symbolic"]


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_nan_or_inf_in_a_gradient_is_a_mismatch(bad: float) -> None:
    case, point, probes, sym, ag, fd = oracles()
    result = verdict(case, point, probes, sym, perturbed(ag, "x", (0,), value=bad), fd)
    assert result.status == "fail"
    assert result.mismatches[0].index == (0,)


def test_detects_a_relative_error_of_1e_minus_5_everywhere_in_float64() -> None:
    case, point, probes, sym, ag, fd = oracles()
    scaled = deterministic(ag, lambda probe: {k: v * (1 + 1e-5) for k, v in probe.items()})
    result = verdict(case, point, probes, sym, scaled, fd)
    assert result.status == "fail"
    assert {m.odd_oracle for m in result.mismatches} == {"autograd"}


def test_finite_differences_are_odd_when_symbolic_and_autograd_agree() -> None:
    # With an impl, finite differences of its forward against its backward: a disagreement
    # means the forward does not compute what the backward differentiates.
    case, point, probes, sym, ag, fd = oracles()
    with_impl = dataclasses.replace(case, impl=lambda x, w: (torch.tanh(x @ w) ** 2).sum())
    estimates = fd.per_input["x"]
    wrong = estimates.partials.copy()
    wrong[0, 1] += 0.5
    broken = dataclasses.replace(fd, per_input={**fd.per_input,
                                                "x": dataclasses.replace(estimates,
                                                                         partials=wrong)})
    result = verdict(with_impl, point, probes, sym, ag, broken)
    (mismatch,) = result.mismatches
    assert (mismatch.odd_oracle, mismatch.index) == ("finite_difference", (1,))
    # Spec only, the function differenced is the spec itself: the differences are wrong on
    # their own (a step too large, aliasing), which is a note, not a failure.
    alone = verdict(case, point, probes, sym, ag, broken)
    assert alone.status == "pass", alone.message
    assert any("differences' own error" in note for note in alone.notes)


def test_a_wide_finite_difference_error_bar_is_inconclusive_not_a_failure() -> None:
    case, point, probes, sym, ag, fd = oracles()
    estimates = fd.per_input["x"]
    noisy = dataclasses.replace(estimates, partials=estimates.partials + 0.5,
                                partial_errors=estimates.partial_errors + 10.0)
    result = verdict(case, point, probes, sym, ag,
                     dataclasses.replace(fd, per_input={**fd.per_input, "x": noisy}))
    assert result.status == "pass"
    assert any("inconclusive at 3" in note for note in result.notes)


def test_without_finite_differences_at_the_element_the_majority_decides() -> None:
    case, point, probes, sym, ag, fd = oracles()
    only_directions = {
        name: Estimates(np.zeros(0, dtype=np.int64), np.zeros((len(probes), 0)),
                        np.zeros((len(probes), 0)), e.directions, e.directional,
                        e.directional_errors)
        for name, e in finite_difference.estimate(FunctionUnderTest(case, "float64", "cpu"),
                                                  point, probes,
                                                  mode="projections").per_input.items()}
    projected = FiniteDifferences("projections", fd.value, only_directions, 0)
    result = verdict(case, point, probes, sym, perturbed(ag, "w", (0, 1), 1.5), projected)
    assert result.mismatches[0].odd_oracle == "autograd"


def test_tolerance_override_replaces_the_derived_rule() -> None:
    case, point, probes, sym, ag, fd = oracles()
    slightly_off = perturbed(ag, "x", (0,), 1 + 1e-6)
    assert verdict(case, point, probes, sym, slightly_off, fd).status == "fail"
    loose = Tolerance(rtol=1e-4, atol=None)
    result = verdict(case, point, probes, sym, slightly_off, fd, override=loose)
    assert result.status == "pass"
    assert result.tolerance["rtol"] == 1e-4


def test_float32_tolerance_comes_from_float32_epsilon() -> None:
    case, point, probes, sym, ag, fd = oracles(dtype="float32")
    result = verdict(case, point, probes, sym, ag, fd, dtype="float32")
    assert result.status == "pass", result.message
    assert result.tolerance["rtol"] == default_rtol("float32") == pytest.approx(3.4527e-4,
                                                                                 rel=1e-4)


def test_a_wrong_hand_worked_answer_makes_expect_the_odd_one() -> None:
    data = {"inputs": {"x": 1, "y": 3, "z": 3}, "let": {"q": "(x + y) * z"},
            "output": "q**2", "expect": {"value": 144, "grad": {"x": 72, "y": 70, "z": 96}}}
    case, point, probes, sym, ag, fd = oracles(data)
    result = verdict(case, point, probes, sym, ag, fd)
    (mismatch,) = result.mismatches
    assert (mismatch.check, mismatch.input, mismatch.odd_oracle) == ("expect", "y", "expect")
    assert mismatch.values["expect"] == 70
    assert "expect.grad.y" in result.message


def test_an_expected_value_expression_is_evaluated() -> None:
    data = {"inputs": {"x": {"shape": [2, 2], "init": "randn"}}, "output": "mean(x**2)",
            "expect": {"grad": {"x": "x / 3"}}}  # wrong on purpose: the gradient is x / 2
    case, point, probes, sym, ag, fd = oracles(data)
    result = verdict(case, point, probes, sym, ag, fd)
    assert {m.odd_oracle for m in result.mismatches} == {"expect"}
    assert len(result.mismatches) == 4


def test_forward_value_mismatch_between_spec_and_impl() -> None:
    data = {"inputs": {"x": [1.0, 2.0]}, "output": "sum(x * x)"}
    case = build_case(data, label="<t>", base_dir=None, default_name="t",
                      impl=lambda x: (x * x).sum() + 1e-3)
    point = make_point(case, "float64")
    probes = make_probes((), 0)
    sym = symbolic.gradients(case.program, point, probes)
    ag = autograd.gradients(FunctionUnderTest(case, "float64", "cpu"), point, probes)
    fd = finite_difference.estimate(FunctionUnderTest(case, "float64", "cpu"), point, probes)
    result = verdict(case, point, probes, sym, ag, fd)
    (mismatch,) = result.mismatches
    assert mismatch.check == "value"
    assert mismatch.values["autograd"] == pytest.approx(5.001)
    assert mismatch.values["symbolic"] == float(Fraction(5))


def test_devices_must_agree_within_the_dtype_tolerance() -> None:
    from gradcheck_lab.compare.devices import compare_devices

    case, point, probes, sym, ag, fd = oracles()
    rule = rule_for("float64")
    same = OracleResults(case, point, probes, sym, ag, fd)
    assert compare_devices(ag, same, rule, ("cpu", "cuda")).mismatches == []
    kernel_bug = perturbed(ag, "w", (2, 1), 1 + 1e-6)
    found = compare_devices(ag, OracleResults(case, point, probes, sym, kernel_bug, fd), rule,
                            ("cpu", "cuda"))
    (mismatch,) = found.mismatches
    assert (mismatch.check, mismatch.input, mismatch.index) == ("device", "w", (2, 1))
    assert mismatch.oracles == ("autograd@cpu", "autograd@cuda")


def test_a_large_output_does_not_hide_a_wrong_small_gradient() -> None:
    # The loss is about 2.7e43 (exp(100)); b's gradient is 2b, about 1. An error of 1e-6
    # relative in b's gradient is a bug however large the loss is.
    data = {"inputs": {"a": [100.0, 1.0], "b": [0.5, -0.25, 1.0]},
            "output": "sum(exp(a)) + sum(b ** 2)"}
    case, point, probes, sym, ag, fd = oracles(data)
    assert verdict(case, point, probes, sym, ag, fd).status == "pass"
    result = verdict(case, point, probes, sym, perturbed(ag, "b", (1,), 1 + 1e-6), fd)
    assert result.status == "fail", result.message
    assert [(m.input, m.index) for m in result.mismatches] == [("b", (1,))]
    # Differences of a 2.7e43 loss cannot resolve b's gradient: finite differences abstain.
    assert "could not tell" in result.message


def test_a_tiny_exact_gradient_computed_as_a_difference_of_ones_passes() -> None:
    # A confident prediction: softmax of the true class is 1 - 7.9e-18, so its exact logit
    # gradient is -7.9e-18, while float64 autograd computes p - 1 = 0. That is rounding of
    # terms near 1, not a bug; a gradient off by 1e-6 of those terms still is one.
    data = {"inputs": {"z": [[40.0, 0.0, 1.0]], "t": {"value": [0], "dtype": "int64"}},
            "output": "cross_entropy(z, t)"}
    case, point, probes, sym, ag, fd = oracles(data)
    assert sym.method.startswith("exact")
    exact, computed = sym.per_probe[0]["z"][0, 0], ag.per_probe[0]["z"][0, 0]
    assert exact < 0 and abs(exact) < 1e-16 and computed != exact
    result = verdict(case, point, probes, sym, ag, fd)
    assert result.status == "pass", result.message
    wrong = verdict(case, point, probes, sym, perturbed(ag, "z", (0, 0), value=1e-6), fd)
    assert wrong.status == "fail"


def test_term_magnitudes_bound_every_gradient_term() -> None:
    # The magnitude sweep sums |terms|, so it is at least |gradient| everywhere, and equal
    # where no terms cancel (a sum of squares of positive numbers).
    *_, sym, _ag, _fd = oracles()
    for name, gradient in sym.per_probe[0].items():
        assert np.all(sym.term_magnitudes[0][name] >= np.abs(gradient) * (1 - 1e-12))
    positive = {"inputs": {"x": [0.5, 1.0, 2.0]}, "output": "sum(x ** 2)"}
    _, _, _, sym, *_ = oracles(positive)
    np.testing.assert_allclose(sym.term_magnitudes[0]["x"], sym.per_probe[0]["x"])


def test_an_impl_computing_another_function_does_not_make_symbolic_odd() -> None:
    # The impl computes sum(x**3) for the spec sum(x**2): its backward is right for what it
    # computes, and finite differences of it side with autograd. That is no evidence against
    # the spec's gradient, so nobody is named odd on the gradient; the value check says why.
    data = {"inputs": {"x": [1.0, 2.0]}, "output": "sum(x * x)"}
    case = build_case(data, label="<t>", base_dir=None, default_name="t",
                      impl=lambda x: (x ** 3).sum())
    point = make_point(case, "float64")
    probes = make_probes((), 0)
    sym = symbolic.gradients(case.program, point, probes)
    ag = autograd.gradients(FunctionUnderTest(case, "float64", "cpu"), point, probes)
    fd = finite_difference.estimate(FunctionUnderTest(case, "float64", "cpu"), point, probes)
    result = verdict(case, point, probes, sym, ag, fd)
    assert result.status == "fail"
    gradient = [m for m in result.mismatches if m.check == "gradient"]
    assert gradient and {m.odd_oracle for m in gradient} == {None}
    assert "symbolic is the odd one out" not in result.message
    assert "forward is not the spec's" in result.message
    assert "value:" in result.message
