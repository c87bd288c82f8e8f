"""``gradcheck-lab steps``: the V of finite-difference error against step size."""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

from gradcheck_lab.casefile.loader import build_case
from gradcheck_lab.casefile.selection import select_case
from gradcheck_lab.doors.cli import EXIT_ERROR, EXIT_PASS, main
from gradcheck_lab.inspect import steps
from gradcheck_lab.inspect.steps import step_curve
from tests.conftest import CASES

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def case_from(data: dict, impl=None):
    return build_case(data, label="<test>", base_dir=None, default_name="t", impl=impl)


def test_smooth_function_has_its_minimum_error_at_a_moderate_step() -> None:
    curve = step_curve(case_from({"inputs": {"x": 0.7}, "output": "sin(x) * exp(x)"}),
                       "float64")
    x = 0.7
    assert curve.symbolic == pytest.approx(math.exp(x) * (math.sin(x) + math.cos(x)), rel=1e-15)
    assert curve.steps[0] == pytest.approx(1e-14) and curve.steps[-1] == pytest.approx(1e-1)
    # Round-off dominates at tiny steps, truncation (h²/6·|f'''|) at large ones: a V whose
    # bottom is near (eps/|f'''|)^(1/3), about 1e-5, and far below both ends.
    assert 1e-9 < curve.best_step < 1e-3
    assert curve.best_error < 1e-9
    small, large = curve.errors[curve.steps < 1e-12], curve.errors[curve.steps > 1e-2]
    assert small.min() > 100 * curve.best_error
    assert large.min() > 1e4 * curve.best_error
    # Truncation at h = 0.1 is h²/6·|f'''(x)| to leading order.
    third = 2 * math.exp(x) * (math.cos(x) - math.sin(x))
    assert curve.errors[-1] == pytest.approx(0.1**2 / 6 * abs(third), rel=0.05)
    # The check's step, 1e-6·max(1, |x|), is on the curve and close to its bottom.
    assert curve.check_step == pytest.approx(1e-6)
    assert curve.check_step in curve.steps
    assert curve.check_error < 1e-9


def test_the_worst_element_is_chosen() -> None:
    # The impl adds 1e-3·v[2]² to the spec: only v[2]'s difference is off (by 6e-3), far
    # beyond the round-off of every other element's.
    case = case_from({"inputs": {"x": 0.1, "v": [1.0, 2.0, 3.0]}, "output": "x * sum(v)"},
                     impl=lambda x, v: x * v.sum() + 1e-3 * v[2] ** 2)
    curve = step_curve(case, "float64")
    assert (curve.input, curve.index, curve.element) == ("v", (2,), "v[2]")
    assert curve.check_step == pytest.approx(3e-6)  # 1e-6·|v[2]|
    assert curve.check_error == pytest.approx(6e-3, rel=1e-6)
    assert "largest finite-difference error" in curve.chosen_because


def test_largest_gradient_when_there_are_too_many_elements(monkeypatch) -> None:
    case = case_from({"inputs": {"v": [0.5, -3.0, 1.0]}, "output": "sum(v ** 4)"})
    monkeypatch.setattr(steps, "ALL_PARTIALS_MAX_ELEMENTS", 2)
    curve = step_curve(case, "float64")
    assert curve.element == "v[1]"  # 4v³ = -108
    assert curve.symbolic == -108.0
    assert "largest |gradient|" in curve.chosen_because


def test_differences_are_of_the_impl() -> None:
    # An impl that computes x**2 + x/2 against the spec x**2: its differences converge to
    # 2x + 1/2, half a unit from the symbolic 2x, wherever round-off is small.
    curve = step_curve(case_from({"inputs": {"x": 1.5}, "output": "x ** 2"},
                                 impl=lambda x: x**2 + x / 2), "float64")
    assert curve.symbolic == 3.0
    assert curve.check_error == pytest.approx(0.5, abs=1e-8)
    assert np.allclose(curve.errors[curve.steps >= 1e-6], 0.5, atol=1e-8)


def test_kinks_are_noted() -> None:
    curve = step_curve(case_from({"inputs": {"x": 0.0}, "output": "relu(x) + x"}), "float64")
    assert curve.kinks
    assert "relu at 0" in steps.summary(curve)


@pytest.mark.slow
def test_cli_writes_png_and_svg(tmp_path: Path, capsys) -> None:
    png = tmp_path / "steps.png"
    assert main(["steps", str(CASES / "r144.yaml"), "-o", str(png)]) == EXIT_PASS
    out = capsys.readouterr().out
    assert "r144: ∂output/∂" in out and "the check's step h = " in out
    assert out.endswith(f"wrote {png}\n")
    assert png.read_bytes()[:8] == PNG_SIGNATURE
    svg = tmp_path / "steps.svg"
    spec = f"{CASES / 'custom_linear.yaml'}::custom_linear_loss"
    assert main(["steps", spec, "-o", str(svg)]) == EXIT_PASS
    root = ET.parse(svg).getroot()
    texts = ["".join(e.itertext()) for e in root.iter("{http://www.w3.org/2000/svg}text")]
    assert any(t.startswith("custom_linear_loss: ∂output/∂") for t in texts)
    assert any("check's step h = 1e-6·max(1, |x|)" in t for t in texts)


def test_cli_errors_are_one_line(tmp_path: Path, capsys) -> None:
    assert main(["steps", str(tmp_path / "none.yaml"), "-o",
                 str(tmp_path / "s.png")]) == EXIT_ERROR
    err = capsys.readouterr().err
    assert err.startswith("gradcheck-lab steps: no such file") and err.count("\n") == 1
    assert main(["steps", str(CASES / "custom_linear.yaml"), "-o",
                 str(tmp_path / "s.png")]) == EXIT_ERROR
    err = capsys.readouterr().err
    assert "holds 2 cases" in err and err.count("\n") == 1


def test_a_case_without_differentiated_inputs_is_a_load_error(write_case, tmp_path: Path,
                                                              capsys) -> None:
    path = write_case("inputs:\n  x: {value: 1.0, requires_grad: false}\noutput: x * 2\n")
    assert main(["steps", str(path), "-o", str(tmp_path / "s.png")]) == EXIT_ERROR
    err = capsys.readouterr().err
    assert "no input requires a gradient" in err and err.count("\n") == 1


def test_the_bundled_cases_select_an_element() -> None:
    curve = step_curve(select_case(str(CASES / "mean_square.yaml")), "float64")
    assert curve.input == "x" and len(curve.index) == 2
    assert np.isfinite(curve.errors).all()
