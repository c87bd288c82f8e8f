"""--sensitivity: the smallest planted relative error each check catches, in one element and in
all elements, found by re-running the comparison on planted autograd gradients."""

from __future__ import annotations

import json
import math

import pytest

import gradcheck_lab
from gradcheck_lab.casefile import build_case
from gradcheck_lab.compare import OracleResults, Verdict, compare
from gradcheck_lab.compare.tolerances import default_rtol, rule_for
from gradcheck_lab.diagnose.sensitivity import GRID, _planted, measure, smallest_caught
from gradcheck_lab.doors.cli import EXIT_FAIL, EXIT_PASS, main
from gradcheck_lab.oracles import autograd, finite_difference, symbolic
from gradcheck_lab.subject.function import FunctionUnderTest
from gradcheck_lab.subject.points import make_point
from gradcheck_lab.subject.probes import make_probes
from tests.conftest import CASES, DATA

# Small (exact symbolic oracle) and larger (rule sweep: over 64 differentiated elements).
SMALL = {"output": "sum(tanh(x) * w)",
         "inputs": {"x": [0.5, -1.25, 2.0], "w": [1.5, -0.5, 3.0]}}
SWEEP = {"output": "mean(sigmoid(linear(x, W, b)) ** 2)",
         "inputs": {"x": {"shape": [4, 12], "init": "randn"},
                    "W": {"shape": [8, 12], "init": "randn"},
                    "b": {"shape": [8], "init": "randn"}}}


def figures(spec: dict, dtypes: tuple[str, ...] = ("float64", "float32")) -> dict[str, dict]:
    results = gradcheck_lab.check(**spec, dtypes=dtypes, sensitivity=True)
    assert all(r.status == "pass" for r in results), [r.message for r in results]
    return {r.dtype: r.sensitivity for r in results}


@pytest.mark.parametrize("spec", [SMALL, SWEEP], ids=["exact", "sweep"])
def test_float64_catches_errors_near_its_tolerance(spec: dict) -> None:
    found = figures(spec, ("float64",))["float64"]
    assert found["one_element"] < 1e-6
    assert found["all_elements"] < 1e-7
    # Nothing below the tolerance itself fails: the figures are the tolerance seen from outside.
    assert found["one_element"] >= default_rtol("float64")
    assert found["all_elements"] >= default_rtol("float64")


@pytest.mark.parametrize("spec", [SMALL, SWEEP], ids=["exact", "sweep"])
def test_float32_figures_are_larger_and_follow_its_epsilon(spec: dict) -> None:
    found = figures(spec)
    for which in ("one_element", "all_elements"):
        assert found["float32"][which] > found["float64"][which]
        for dtype in ("float64", "float32"):
            # rtol = sqrt(eps): a planted error is caught once it exceeds the bounds of both
            # sides, a few rtol.
            rtol = default_rtol(dtype)
            assert rtol <= found[dtype][which] <= 8 * rtol, (dtype, which, found)
    assert found["float32"]["one_element"] / found["float64"]["one_element"] > 1e3


def test_the_element_is_the_largest_gradient_and_named() -> None:
    found = figures(SMALL, ("float64",))["float64"]
    # d/dx sum(tanh(x) * w) = w · (1 - tanh(x)²): largest in magnitude at x[0] (1.18).
    assert found["element"] == "x[0]"


def test_json_has_the_field_only_when_asked() -> None:
    (with_it,) = gradcheck_lab.check(**SMALL, sensitivity=True)
    data = with_it.to_json()
    assert set(data["sensitivity"]) == {"one_element", "all_elements", "element"}
    json.dumps(data)  # plain JSON
    (without,) = gradcheck_lab.check(**SMALL)
    assert "sensitivity" not in without.to_json()


def test_a_planted_error_just_above_the_figure_fails_and_just_below_passes() -> None:
    """The figures agree with the comparison itself, for every element at once."""
    case = build_case({"name": "t", **SWEEP}, label="<t>", base_dir=None, default_name="t")
    point = make_point(case, "float64")
    probes = make_probes(case.program.output_node.shape, case.seed)
    sym = symbolic.gradients(case.program, point, probes)
    ag = autograd.gradients(FunctionUnderTest(case, "float64", "cpu"), point, probes)
    fd = finite_difference.estimate(FunctionUnderTest(case, "float64", "cpu"), point, probes,
                                    term_scale=sym.term_scale)
    rule = rule_for("float64")
    baseline = compare(OracleResults(case, point, probes, sym, ag, fd), rule)
    found = measure(OracleResults(case, point, probes, sym, ag, fd), rule, baseline)
    r = found["all_elements"]
    assert compare(OracleResults(case, point, probes, sym, _planted(ag, None, r * 1.05), fd),
                   rule).status == "fail"
    assert compare(OracleResults(case, point, probes, sym, _planted(ag, None, r * 0.9), fd),
                   rule).status == "pass"
    # The real gradients are untouched by the planting.
    assert compare(OracleResults(case, point, probes, sym, ag, fd), rule).status == "pass"


def test_bisection_finds_a_threshold_within_a_few_percent() -> None:
    threshold = 3.3e-7

    def trial(r: float) -> Verdict:
        return Verdict("fail" if r >= threshold else "pass", "")

    found, verdict = smallest_caught(trial)
    assert threshold <= found <= threshold * 1.05
    assert verdict is not None and verdict.status == "fail"
    assert smallest_caught(lambda r: Verdict("pass", "")) == (None, None)
    assert smallest_caught(lambda r: Verdict("fail", ""))[0] == GRID[0]


def test_a_check_that_fails_anyway_is_not_measured() -> None:
    (result,) = gradcheck_lab.check(output="sum(x ** 2)", inputs={"x": [1.0, 2.0]},
                                    impl=lambda x: 1.5 * (x ** 2).sum(), sensitivity=True)
    assert result.status == "fail"
    assert "note" in result.sensitivity and "one_element" not in result.sensitivity


def test_cli_flag_reports_a_line_and_the_json_field(tmp_path, capsys) -> None:
    report = tmp_path / "out.json"
    assert main(["run", str(CASES / "r144.yaml"), "--sensitivity", "--json",
                 str(report)]) == EXIT_PASS
    out = capsys.readouterr().out
    assert "sensitivity: catches a relative error of" in out
    (result,) = json.loads(report.read_text())["results"]
    sensitivity = result["sensitivity"]
    assert 0 < sensitivity["one_element"] < 1e-6 and 0 < sensitivity["all_elements"] < 1e-7
    assert sensitivity["element"] in {"x", "y", "z"}
    assert math.isfinite(sensitivity["one_element"])


@pytest.mark.slow
def test_cli_flag_on_a_failing_case_says_it_was_not_measured(capsys) -> None:
    assert main(["run", str(DATA / "planted" / "linear_sign.yaml"), "--sensitivity",
                 "--case-timeout", "0"]) == EXIT_FAIL
    assert "sensitivity: not measured" in capsys.readouterr().out
