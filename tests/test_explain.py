"""``gradcheck-lab explain`` and the case selection shared with graph and steps."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from gradcheck_lab.casefile.loader import build_case
from gradcheck_lab.casefile.selection import SelectionError, select_case
from gradcheck_lab.doors.cli import EXIT_ERROR, EXIT_PASS, main
from gradcheck_lab.inspect.explain import explain
from gradcheck_lab.program.naming import format_number, node_names, spell
from tests.conftest import CASES

R144 = CASES / "r144.yaml"


def explain_cli(capsys, *args: str) -> tuple[int, str, str]:
    code = main(["explain", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def section(text: str, title: str) -> str:
    """The lines of one blank-line separated section, starting with ``title``."""
    blocks = text.split("\n\n")
    return next(block for block in blocks if block.startswith(title))


def test_r144_values_local_derivatives_chain_and_formulas(capsys) -> None:
    code, out, err = explain_cli(capsys, str(R144))
    assert code == EXIT_PASS and err == ""
    values = section(out, "values at the point").splitlines()
    assert "  p = x + y = 4" in values
    assert "  q = p * z = 12" in values
    assert "  output = q ** 2 = 144" in values
    local = section(out, "local derivatives").splitlines()
    # sympy's pretty form writes multiplication as ⋅
    assert "  ∂output/∂q = 2⋅q = 24" in local
    assert "  ∂q/∂p = z = 3" in local
    assert "  ∂q/∂z = p = 4" in local
    assert "  ∂p/∂x = 1" in local
    chain = section(out, "chain rule").splitlines()
    assert "  ∂output/∂x = ∂output/∂q · ∂q/∂p · ∂p/∂x = 24 · 3 · 1 = 72" in chain
    assert "  ∂output/∂z = ∂output/∂q · ∂q/∂z = 24 · 4 = 96" in chain
    gradients = section(out, "gradients")
    assert "∂output/∂x = 2⋅z ⋅(x + y) = 72" in gradients  # z² on the line above
    assert "∂output/∂z = 2⋅z⋅(x + y)  = 96" in gradients


def test_latex_formulas(capsys) -> None:
    code, out, _ = explain_cli(capsys, str(R144), "--latex")
    assert code == EXIT_PASS
    assert r"\frac{\partial output}{\partial q} = 2 q = 24" in out
    assert r"\frac{\partial output}{\partial x} = 2 z^{2} \left(x + y\right) = 72" in out


def test_paths_of_the_chain_rule_add_up_to_the_gradient() -> None:
    # The output uses s directly and through u: two paths from the output down to x.
    case = build_case({"inputs": {"x": 0.5},
                       "let": {"s": "sin(x)", "u": "s * s + s"},
                       "output": "u * s"}, label="<test>", base_dir=None, default_name="t")
    out = explain(case, "float64")
    s, c = math.sin(0.5), math.cos(0.5)
    expected = (3 * s**2 + 2 * s) * c  # d/dx (s³ + s²)
    chain = section(out, "chain rule").splitlines()
    assert chain[1] == f"  ∂output/∂x = {format_number(expected)}, the sum of 2 paths:"
    products = [float(line.rpartition(" = ")[2]) for line in chain[2:]]
    assert len(products) == 2
    assert chain[2].startswith("      ∂output/∂u · ∂u/∂s · ∂s/∂x = ")
    assert sum(products) == pytest.approx(expected, rel=1e-7)


def test_tensor_case_shows_op_chain_and_one_representative_formula(write_case, capsys) -> None:
    path = write_case("name: squares\ninputs:\n  v: [1.0, -2.0, 3.0]\n"
                      "let:\n  h: tanh(v)\noutput: sum(v ** 2)\n")
    code, out, _ = explain_cli(capsys, str(path))
    assert code == EXIT_PASS
    assert "grad norm" in section(out, "inputs")
    chain = section(out, "op chain").splitlines()
    assert chain[1] == "  h = tanh(v)"  # a let nothing uses is still listed
    assert "  output = sum(v ** 2)" in chain
    assert any(line.startswith("    v ** 2") and "[3]" in line for line in chain)
    assert any(line.startswith("    sum(·)") and "value 14" in line for line in chain)
    # The largest gradient element is v[2]: d/dv[2] sum(v**2) = 2 v[2] = 6.
    assert "∂output/∂v[2] = 2⋅v[2] = 6" in section(out, "representative element")


def test_large_tensor_case_has_no_per_element_formula(capsys) -> None:
    code, out, _ = explain_cli(capsys, str(CASES / "mnist_mlp_ce.yaml"))
    assert code == EXIT_PASS
    assert "rule sweep" in out.splitlines()[1]
    assert "    linear(x, W1, b1)" in out
    assert "no per-element formula" in section(out, "representative element")


def test_tensor_output_is_explained_through_the_first_probe(capsys) -> None:
    code, out, _ = explain_cli(capsys,
                               f"{CASES / 'custom_linear.yaml'}::custom_linear_layer")
    assert code == EXIT_PASS
    assert "gradients of output[0, 0]" in out
    assert "impl custom_linear.py:layer" in out
    # d linear(x, W, b)[0, 0] / d W[0, k] = x[0, k]: the formula is one input element.
    assert "∂output[0, 0]/∂W[0, 0] = x[0, 0] = " in out


def test_dtype_rounds_the_point(write_case, capsys) -> None:
    path = write_case("inputs:\n  x: 16777217\noutput: x * 2\n")  # 2**24 + 1
    _, out64, _ = explain_cli(capsys, str(path))
    _, out32, _ = explain_cli(capsys, str(path), "--dtype", "float32")
    assert "point: float64" in out64 and "  x = 16777217\n" in out64
    # float32 has a 24-bit significand: 2**24 + 1 rounds to 2**24
    assert "point: float32" in out32 and "  x = 16777216\n" in out32


# --- selecting a case: errors are one line, exit 2 ------------------------------------------


def one_line_error(capsys, *args: str) -> str:
    code, out, err = explain_cli(capsys, *args)
    assert code == EXIT_ERROR
    assert out == ""
    assert err.count("\n") == 1, err
    return err


def test_missing_file(capsys) -> None:
    err = one_line_error(capsys, "no/such/case.yaml")
    assert err == "gradcheck-lab explain: no such file: no/such/case.yaml\n"


def test_file_with_several_cases_needs_a_name(capsys) -> None:
    err = one_line_error(capsys, str(CASES / "custom_linear.yaml"))
    assert "holds 2 cases" in err
    assert "custom_linear_layer, custom_linear_loss" in err


def test_unknown_case_name(capsys) -> None:
    err = one_line_error(capsys, f"{CASES / 'custom_linear.yaml'}::custom_lineer")
    assert "no case named 'custom_lineer'" in err
    assert "custom_linear_layer" in err


def test_directory_and_empty_name(capsys) -> None:
    assert "is a directory" in one_line_error(capsys, str(CASES))
    assert "empty case name" in one_line_error(capsys, f"{R144}::")


def test_invalid_case_is_its_one_line_error(write_case, capsys) -> None:
    path = write_case("inputs:\n  x: 1\noutput: x +* 2\n")
    err = one_line_error(capsys, str(path))
    assert f"{path}:3" in err or "case.yaml:3" in err
    assert "output" in err


def test_named_invalid_case_in_a_file_of_several(write_case) -> None:
    path = write_case("cases:\n  - name: good\n    inputs: {x: 1}\n    output: x\n"
                      "  - name: bad\n    inputs: {x: 1}\n    output: y\n")
    assert select_case(f"{path}::good").name == "good"
    with pytest.raises(SelectionError, match="undefined name 'y'"):
        select_case(f"{path}::bad")


# --- spelling the program -----------------------------------------------------------------


def test_spell_writes_case_syntax() -> None:
    case = build_case({"inputs": {"x": [1.0, 2.0], "W": [[1.0, 2.0]]},
                       "let": {"h": "-sum(x ** -2, dim=0) / (x - 1)"},
                       "output": "sum(softmax(W, dim=1)) + sum(h)"},
                      label="<test>", base_dir=None, default_name="t")
    program = case.program
    names = node_names(program)
    # Unnamed infix operands get parentheses, needed or not; so do negative constants.
    assert spell(program, program.lets["h"], names) == "(-sum(x ** (-2), dim=0)) / (x - 1)"
    # dim=-1 is softmax's default, so it is left out; named nodes are not expanded
    assert spell(program, program.output, names) == "sum(softmax(W, dim=1)) + sum(h)"
    assert spell(program, program.output, names, depth=1) == "· + ·"


def test_select_case_by_name() -> None:
    case = select_case(f"{CASES / 'custom_linear.yaml'}::custom_linear_loss")
    assert case.name == "custom_linear_loss"
    assert Path(case.file).name == "custom_linear.yaml"


@pytest.mark.parametrize("output, target", [
    ("cross_entropy(W, t)", [1, 0]), ("nll_loss(log_softmax(W, dim=1), t)", [1, 0]),
    ("sum(gather(W, 1, t))", [[1], [0]]), ("sum(index_select(W, 0, t))", [1, 0]),
    ("sum(embedding(t, W))", [1, 0]), ("sum(one_hot(t, 2) * W)", [1, 0]),
])
def test_explain_reads_integer_targets_as_integers(write_case, capsys, output: str,
                                                   target: list) -> None:
    # Class targets went to the ops as sympy integers in an object array, which
    # cross_entropy read as probabilities and gather refused as indices: a traceback.
    path = write_case(f"inputs:\n  t: {{value: {target}, dtype: int64}}\n"
                      f"  W: [[1.0, 2.0], [3.0, 4.0]]\noutput: {output}\n")
    assert main(["explain", str(path)]) == 0
    assert "representative element" in capsys.readouterr().out
