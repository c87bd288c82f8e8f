"""The loader: every mistake in a case file becomes a CaseError at `file:line[:column]: key`,
one invalid case does not hide the others, and the bundled cases load."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gradcheck_lab.casefile import Case, ImplRef, LoadLimits, build_case, load_file
from gradcheck_lab.casefile.loader import derived_seed, load_bytes
from gradcheck_lab.errors import CaseError
from tests.conftest import CASES, REPO, finishes_within

DEFAULT_LOAD_LIMITS = LoadLimits()
# Start-up and import take ~0.6 s (more on a loaded machine); the code these probes once caught
# ran for minutes.
SUBPROCESS_SECONDS = 5.0


def load_one(write_case, text: str, limits: LoadLimits = DEFAULT_LOAD_LIMITS) -> Case | CaseError:
    """The single result of loading ``text`` as a case file."""
    (result,) = load_file(write_case(text), limits)
    return result


def error_of(write_case, text: str, limits: LoadLimits = DEFAULT_LOAD_LIMITS) -> CaseError:
    result = load_one(write_case, text, limits)
    assert isinstance(result, CaseError), f"expected an error, loaded {result!r}"
    return result


def case_of(write_case, text: str, limits: LoadLimits = DEFAULT_LOAD_LIMITS) -> Case:
    result = load_one(write_case, text, limits)
    assert isinstance(result, Case), f"expected a case, got {result}"
    return result


def text_at(error: CaseError) -> str:
    """The file's text from the error's line and 1-based column onwards."""
    line = Path(error.file).read_text(encoding="utf-8").splitlines()[error.line - 1]
    return line[error.column - 1:]


def assert_points_at(error: CaseError, line: int, fragment: str) -> None:
    """The error names ``line``; its column, when there is one, is where ``fragment`` starts."""
    assert error.line == line, str(error)
    if error.column is not None:
        assert text_at(error).startswith(fragment), str(error)


def loads_without_raising(text: str) -> str:
    """A script that loads ``text`` as a case file and fails if load_bytes raises."""
    return ("from pathlib import Path\n"
            "from gradcheck_lab.casefile.loader import load_bytes\n"
            f"load_bytes({text.encode()!r}, 'case.yaml', Path('.'))\n")


SCALAR_X = "inputs:\n  x: 1\n"


# -- where an error is reported ------------------------------------------------------------


@pytest.mark.parametrize("text, line, key, fragment", [
    pytest.param(
        "inputs:\n  x: 1\noutptu: x**2\n",
        3, "outptu", "unknown key 'outptu' (did you mean 'output'?)", id="misspelled-key"),
    pytest.param(
        "inputs:\n  x: {shape: [2], init: randn, sede: 1}\noutput: sum(x)\n",
        2, "inputs.x.sede", "unknown key 'sede' (did you mean 'seed'?)", id="misspelled-input-key"),
    pytest.param(
        SCALAR_X + "output: x\ntolerance: {rtl: 1e-3}\n",
        4, "tolerance.rtl", "unknown key 'rtl' (did you mean 'rtol'?)",
        id="misspelled-tolerance-key"),
    pytest.param(
        "inputs:\n  u: {shape: [2], init: uniform, hihg: 2}\noutput: sum(u)\n",
        2, "inputs.u.hihg", "unknown key 'hihg' (did you mean 'high'?)",
        id="misspelled-init-key"),
    pytest.param(
        "# a comment\ninputs:\n  x: 1\n",
        2, "output", "missing required key 'output'", id="missing-output"),
    pytest.param(
        "output: x\n", 1, "inputs", "missing required key 'inputs'", id="missing-inputs"),
    pytest.param(
        "inputs: [1, 2]\noutput: x\n", 1, "inputs", "expected a mapping", id="inputs-not-mapping"),
    pytest.param(
        SCALAR_X + "output: x\ndtypes: float64\n", 4, "dtypes", "expected a list",
        id="dtypes-not-list"),
    pytest.param(
        SCALAR_X + "output: x\nseed: abc\n", 4, "seed", "whole number", id="seed-not-int"),
    pytest.param(
        SCALAR_X + "output: x\nseed: -1\n", 4, "seed", "whole number", id="seed-negative"),
    pytest.param(
        "inputs:\n  x: 1\n  u:\n    shape: [2]\n    init: randn\n    requires_grad: yes\n"
        "output: x\n",
        6, "inputs.u.requires_grad", "expected true or false, got 'yes'",
        id="yes-is-not-a-bool"),
    pytest.param(
        SCALAR_X + "output: [1, 2]\n", 3, "output", "expected an expression",
        id="output-not-expression"),
    pytest.param(
        "inputs:\n  x: 1\n  v: [1, .nan]\noutput: x\n",
        3, "inputs.v", "nan is not allowed", id="nan-in-input"),
    pytest.param(
        "inputs:\n  x: .inf\noutput: x\n", 2, "inputs.x", "inf is not allowed", id="inf-input"),
    pytest.param(
        "inputs:\n  x: {value: [1, -.inf]}\noutput: sum(x)\n",
        2, "inputs.x.value", "inf is not allowed", id="inf-in-value"),
    pytest.param(
        SCALAR_X + "output: x\ntolerance:\n  atol: .inf\n",
        5, "tolerance.atol", "inf is not allowed", id="inf-in-tolerance"),
    pytest.param(
        SCALAR_X + "output: x\ndtypes: [float64, float128]\n",
        4, "dtypes[1]", "got 'float128'", id="unknown-dtype"),
    pytest.param(
        SCALAR_X + "output: x\ndevices: [cpu, tpu]\n",
        4, "devices[1]", "unknown device 'tpu'", id="unknown-device"),
    pytest.param(
        "inputs:\n  x: 1\n  u: {shape: [2], init: uniform, low: 2, high: 1}\noutput: x\n",
        3, "inputs.u", "low must be below high", id="low-above-high"),
    pytest.param(
        "inputs:\n  x: 1\n  u: {shape: [2], init: uniform, low: 1, high: 1}\noutput: x\n",
        3, "inputs.u", "low must be below high", id="low-equals-high"),
    pytest.param(
        "inputs:\n  x: 1\n  t: {shape: [2], init: randint}\noutput: x\n",
        3, "inputs.t", "randint needs high", id="randint-without-high"),
    pytest.param(
        SCALAR_X + "output: x\ntolerance: {rtol: 0}\n",
        4, "tolerance.rtol", "expected a positive number, got 0", id="zero-rtol"),
    pytest.param(
        SCALAR_X + "output: x\ntolerance:\n  rtol: 1e-7\n  atol: -1e-9\n",
        6, "tolerance.atol", "expected a positive number", id="negative-atol"),
    pytest.param(
        SCALAR_X + "output: x\ntolerance:\n  float32: {rtol: 1e-3}\n",
        5, "tolerance.float32", "not among the case's dtypes", id="tolerance-for-other-dtype"),
    pytest.param(
        "inputs:\n  x: 1\nlet:\n  x: x * 2\noutput: x\n",
        4, "let.x", "'x' is already an input", id="let-shadows-input"),
    pytest.param(
        "inputs:\n  x: 1\n  t: {value: [1, 2.5], dtype: int64}\noutput: x\n",
        3, "inputs.t", "holds 2.5, not an integer", id="int64-literal-not-integer"),
    pytest.param(
        "inputs:\n  x: 1\n  t: {shape: [2], init: randint, high: 2.5}\noutput: x\n",
        3, "inputs.t", "randint bounds must be integers", id="randint-bound-not-integer"),
    pytest.param(
        "inputs:\n  x: {value: 1, requires_grad: false}\noutput: x\n",
        1, "inputs", "no input requires a gradient", id="nothing-to-differentiate"),
    pytest.param(
        "inputs:\n  x: 1\nlet:\n  p: x * 2\noutput: p\nexpect:\n  grad: {p: 2}\n",
        7, "expect.grad.p", "'p' is not an input", id="expect-grad-for-let"),
    pytest.param(
        "inputs:\n  x: 1\n  y: 2\noutput: x\nexpect:\n  grad:\n    z: 2\n",
        7, "expect.grad.z", "'z' is not an input", id="expect-grad-for-unknown"),
    pytest.param(
        "inputs:\n  x: 1\n  c: {value: 2, requires_grad: false}\noutput: x * c\n"
        "expect:\n  grad: {c: 1}\n",
        6, "expect.grad.c", "not differentiated", id="expect-grad-for-constant-input"),
    pytest.param(
        "inputs:\n  x: [1, 2]\noutput: x * 2\nexpect:\n  grad: {x: [2, 2]}\n",
        5, "expect.grad", "needs a scalar output; the output has shape [2]",
        id="expect-grad-with-tensor-output"),
    pytest.param(
        "inputs:\n  x: [1, 2]\noutput: sum(x)\nexpect:\n  grad: {x: [1, 2, 3]}\n",
        5, "expect.grad.x", "expected shape [2], got [3]", id="expect-grad-wrong-shape"),
])
def test_errors_are_reported_at_their_key(write_case, text, line, key, fragment) -> None:
    error = error_of(write_case, text)
    assert (error.line, error.key) == (line, key), str(error)
    assert fragment in error.message


@pytest.mark.parametrize("text, line, key", [
    pytest.param("inputs:\n  x:\n    value: 1\n    requires_grad: yes\noutput: x\n",
                 4, "inputs.x.requires_grad", id="requires_grad-not-bool"),
    pytest.param("inputs:\n  x: 1\n  t:\n    value: [1, 2]\n    dtype: int32\noutput: x\n",
                 5, "inputs.t.dtype", id="unknown-literal-dtype"),
])
def test_errors_in_a_value_input_are_reported_at_their_own_key(write_case, text, line,
                                                               key) -> None:
    error = error_of(write_case, text)
    assert (error.line, error.key) == (line, key), str(error)


@pytest.mark.parametrize("key, values", [("dtypes", "[float64, float64]"),
                                         ("devices", "[cpu, cpu]")])
def test_repeated_dtypes_or_devices_are_reported_at_their_key(write_case, key, values) -> None:
    # Once reported at the case itself: "c.yaml:1: document: dtypes lists [...] with repeats".
    error = error_of(write_case, SCALAR_X + f"output: x\n{key}: {values}\n")
    assert "with repeats" in error.message
    assert (error.line, error.key) == (4, key), str(error)


@pytest.mark.parametrize("text, key, better", [
    pytest.param(SCALAR_X + "output: x\ndtype: float32\n", "dtype", "dtypes",
                 id="top-level-dtype"),
    pytest.param("inputs:\n  x: {value: 1, seed: 3}\noutput: x\n", "seed", None,
                 id="seed-in-a-value-input"),
])
def test_unknown_key_is_never_suggested_as_itself(write_case, text, key, better) -> None:
    # Suggestions come from the keys valid where the unknown one is, not from every level.
    error = error_of(write_case, text)
    assert f"unknown key {key!r}" in error.message
    assert f"did you mean {key!r}" not in error.message, str(error)
    if better is not None:
        assert f"did you mean {better!r}?" in error.message, str(error)


@pytest.mark.parametrize("bounds", ["high: 100000000000000000000",
                                    "low: -100000000000000000000, high: 2"])
def test_randint_bounds_outside_int64_are_rejected(write_case, bounds) -> None:
    # Not only at run time, as torch.randint's "Overflow when unpacking long long".
    text = f"inputs:\n  x: 1\n  t: {{shape: [3], init: randint, {bounds}}}\noutput: x\n"
    error = error_of(write_case, text)
    assert (error.line, error.key) == (3, "inputs.t"), str(error)


def test_constant_beyond_float64_in_a_power_does_not_escape_load_file(write_case) -> None:
    # load_file never raises for bad content: float(2**1100) once escaped as OverflowError.
    result = load_one(write_case, SCALAR_X + "output: x * (2**1100) ** 0.5\n")
    assert isinstance(result, (Case, CaseError))


@pytest.mark.slow
@pytest.mark.parametrize("number", ["1e-99999999", "1e99999999"])
def test_number_with_a_huge_exponent_is_answered_quickly(number) -> None:
    # Exactly, 1e-99999999 has a denominator of 10**99999999: it must be refused, not built.
    text = f"inputs:\n  x: {number}\noutput: x\n"
    assert finishes_within(SUBPROCESS_SECONDS, loads_without_raising(text))


@pytest.mark.parametrize("number", ["1e-99999", "1e400", "-1e309"])
def test_number_outside_float64_is_rejected_at_its_input(write_case, number) -> None:
    error = error_of(write_case, f"inputs:\n  x: 1\n  y: {number}\noutput: x\n")
    assert (error.line, error.key) == (3, "inputs.y")
    assert "float64 range" in error.message


@pytest.mark.slow
def test_the_subprocess_probe_answers_for_an_ordinary_file() -> None:
    # The probes above are only meaningful if an ordinary file fits their bound, start-up
    # included.
    ordinary = loads_without_raising("inputs:\n  x: 1e-7\noutput: x\n")
    assert finishes_within(SUBPROCESS_SECONDS, ordinary)


def test_error_renders_file_line_column_key_message(write_case) -> None:
    path = write_case("inputs:\n  x: 1\n  y: 2\nlet:\n  p: x + yy\noutput: p\n")
    (error,) = load_file(path)
    assert str(error) == f"{path}:5:10: let.p: undefined name 'yy' (did you mean 'y'?)"


@pytest.mark.parametrize("text, line, key, fragment, message", [
    pytest.param(
        "inputs:\n  x: 1\n  y: 2\nlet:\n  p: x + yy\noutput: p\n",
        5, "let.p", "yy", "undefined name 'yy' (did you mean 'y'?)", id="undefined-in-let"),
    pytest.param(
        "inputs:\n  value1: 1\noutput: valeu1 * 2\n",
        3, "output", "valeu1", "undefined name 'valeu1' (did you mean 'value1'?)",
        id="undefined-in-output"),
    pytest.param(
        "inputs:\n  x: 1\nlet:\n  p: x * 2\n  q: p + r\noutput: q\n",
        5, "let.q", "r", "undefined name 'r'", id="later-let-not-yet-defined"),
    pytest.param(
        "inputs:\n  x: 1\noutput: 'x + yy'\n",
        3, "output", "yy", "undefined name 'yy'", id="single-quoted"),
    pytest.param(
        'inputs:\n  x: 1\noutput: "exp(x) + expp(x)"\n',
        3, "output", "expp(x)", "did you mean 'exp'?", id="double-quoted"),
    pytest.param(
        "inputs:\n  a: [1, 2]\n  b: [1, 2, 3]\nlet:\n  c: a + b\noutput: sum(c)\n",
        5, "let.c", "a + b", "shapes [2] and [3] cannot be broadcast", id="shape-mismatch"),
    pytest.param(
        "inputs:\n  x: [1.0, 2.0]\n  t: {value: [1, 0], dtype: int64}\n"
        "output: sum(x) * sum(t)\n",
        4, "output", "sum(t)", "t is an integer tensor", id="integer-tensor-in-a-reduction"),
    pytest.param(
        "inputs:\n  x: 1\noutput: x\nexpect:\n  value: x + zz\n",
        5, "expect.value", "zz", "undefined name 'zz'", id="undefined-in-expect"),
    pytest.param(
        "inputs:\n  x: 1\noutput: x[x]\n",
        3, "output", "x]", "subscripts take constant integers", id="forbidden-syntax"),
    pytest.param(
        "inputs:\n  x: [1, 2]\noutput: sum(x, axis=0)\n",
        3, "output", "", "no keyword 'axis'", id="unknown-keyword"),
    pytest.param(
        "inputs:\n  x: 1\n  t: {shape: [2], init: randint, high: 3}\n"
        "output: sum(softmax(t))\n",
        4, "output", "softmax(t)", "integer tensor", id="integer-tensor-in-function"),
])
def test_expression_errors_have_line_and_column(write_case, text, line, key, fragment,
                                                message) -> None:
    error = error_of(write_case, text)
    assert error.key == key
    assert message in error.message
    assert error.column is not None, str(error)
    assert_points_at(error, line, fragment)


def test_error_in_a_block_expression_has_a_line_and_no_column(write_case) -> None:
    error = error_of(write_case, "inputs:\n  x: 1\noutput: |\n  x +\n    yy\n")
    assert (error.line, error.key, error.column) == (3, "output", None)
    assert "undefined name 'yy'" in error.message
    assert str(error).endswith(":3: output: undefined name 'yy'")


@pytest.mark.parametrize("text, line_of_fragment", [
    pytest.param("inputs:\n  x: 1\noutput: x +\n  yy\n", 4, id="plain-folded"),
    pytest.param('inputs:\n  x: 1\noutput: "x +\n  yy"\n', 4, id="double-quoted-folded"),
    pytest.param('inputs:\n  x: 1\noutput: "x\\t+ yy"\n', 3, id="double-quoted-escape"),
])
def test_column_is_right_or_absent_for_folded_scalars(write_case, text,
                                                      line_of_fragment) -> None:
    error = error_of(write_case, text)
    assert "undefined name 'yy'" in error.message
    if error.column is not None:
        assert_points_at(error, line_of_fragment, "yy")


def test_build_case_without_a_document_has_no_line(tmp_path) -> None:
    with pytest.raises(CaseError) as caught:
        build_case({"inputs": {"x": 1}, "output": "x + q"}, label="<api>", base_dir=None,
                   default_name="t")
    error = caught.value
    assert (error.file, error.line, error.column, error.key) == ("<api>", None, None, "output")
    assert str(error) == "<api>: output: undefined name 'q'"


# -- whole files ---------------------------------------------------------------------------


def test_yaml_problems_become_case_errors_at_their_line(write_case) -> None:
    error = error_of(write_case, "inputs:\n  x: 1\n  x: 2\noutput: x\n")
    assert (error.line, error.key) == (3, "inputs.x")
    assert "duplicate key" in error.message


def test_non_utf8_file_names_the_line_of_the_bad_byte(tmp_path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_bytes(b"inputs:\n  x: 1\noutput: x \xe9\n")
    (error,) = load_file(path)
    assert isinstance(error, CaseError)
    assert (error.line, error.key) == (3, "document")
    assert "not UTF-8" in error.message


def test_load_bytes_labels_errors_with_the_given_name(tmp_path) -> None:
    (error,) = load_bytes(b"", "given.yaml", tmp_path)
    assert isinstance(error, CaseError)
    assert str(error) == "given.yaml:1: document: the file holds no YAML document (empty file)"


def test_load_bytes_builds_a_case(tmp_path) -> None:
    (case,) = load_bytes(b"inputs:\n  x: 2\noutput: x**3\n", "from_bytes.yaml", tmp_path)
    assert isinstance(case, Case)
    assert case.name == "from_bytes"
    assert case.file == "from_bytes.yaml"


def test_a_top_level_list_is_rejected(write_case) -> None:
    error = error_of(write_case, "- 1\n- 2\n")
    assert (error.line, error.key) == (1, "document")
    assert "got a list" in error.message


def test_default_name_is_the_file_stem(write_case) -> None:
    case = case_of(write_case, SCALAR_X + "output: x**2\n")
    assert case.name == "case"
    named = load_file(write_case(SCALAR_X + "output: x**2\n", name="my_check.yml"))
    assert [c.name for c in named] == ["my_check"]


def test_explicit_name_wins_and_lines_are_recorded(write_case) -> None:
    case = case_of(write_case, "# r\nname: r2\ninputs:\n  x: 1\nlet:\n  p: x*2\noutput: p\n")
    assert case.name == "r2"
    assert case.line == 2
    assert case.line_of("inputs.x") == 4
    assert case.line_of("let.p") == 6
    assert case.line_of("output") == 7


MULTI = """\
cases:
  - name: first
    inputs: {x: 1}
    output: x**2
  - name: broken
    inputs: {x: 1}
    output: x + nope
  - inputs: {y: 2}
    output: y * 3
  - inputs: {z: 2}
    outptu: z
"""


def test_one_invalid_case_does_not_hide_the_others(write_case) -> None:
    results = load_file(write_case(MULTI, name="multi.yaml"))
    assert [type(r).__name__ for r in results] == ["Case", "CaseError", "Case", "CaseError"]
    first, broken, third, unnamed_broken = results
    assert first.name == "first"
    assert third.name == "multi_2"  # unnamed cases in a list: stem + index
    assert broken.case == "broken"
    assert (broken.line, broken.key) == (7, "cases[1].output")
    assert_points_at(broken, 7, "nope")
    assert unnamed_broken.case == "multi_3"
    assert (unnamed_broken.line, unnamed_broken.key) == (11, "cases[3].outptu")


def test_duplicate_case_names_are_rejected_at_the_second(write_case) -> None:
    text = ("cases:\n  - name: same\n    inputs: {x: 1}\n    output: x\n"
            "  - name: same\n    inputs: {x: 2}\n    output: x\n")
    first, second = load_file(write_case(text))
    assert isinstance(first, Case) and first.name == "same"
    assert isinstance(second, CaseError)
    assert (second.line, second.key) == (5, "cases[1].name")
    assert "duplicate case name 'same'" in second.message


@pytest.mark.parametrize("text, line, key, fragment", [
    ("cases: []\n", 1, "cases", "non-empty list"),
    ("cases:\n  - inputs: {x: 1}\n    output: x\nname: extra\n", 4, "name", "nothing else"),
    ("cases:\n  - inputs: {x: 1}\n    output: x\n  - just text\n", 4, "cases[1]", "got text"),
])
def test_malformed_case_lists(write_case, text, line, key, fragment) -> None:
    errors = [r for r in load_file(write_case(text)) if isinstance(r, CaseError)]
    assert len(errors) == 1
    assert (errors[0].line, errors[0].key) == (line, key)
    assert fragment in errors[0].message


# -- impl paths ----------------------------------------------------------------------------


@pytest.mark.parametrize("spelled, fragment", [
    ("/etc/evil.py:f", "relative to the case file's directory"),
    ("C:\\evil.py:f", "relative to the case file's directory"),
    ("../up.py:f", "no '..'"),
    ("sub/../../up.py:f", "no '..'"),
    ("impl.txt:f", "names a Python file"),
    ("pkg.module:f", "names a Python file"),
    ("impl.py:a.b", "'a.b' is not a public top-level name"),
    ("impl.py:_private", "not a public top-level name"),
    ("impl.py", "expected FILE.py:NAME"),
    ("missing.py:f", "'missing.py' not found"),
])
def test_bad_impl_paths_are_rejected_at_the_impl_key(write_case, tmp_path, spelled,
                                                     fragment) -> None:
    (tmp_path / "impl.py").write_text("def f(x):\n    return x\n")
    (tmp_path / "impl.txt").write_text("")
    error = error_of(write_case, SCALAR_X + f"output: x\nimpl: '{spelled}'\n")
    assert (error.line, error.key) == (4, "impl")
    assert fragment in error.message


def test_impl_link_leading_outside_is_rejected(write_case, tmp_path) -> None:
    outside = tmp_path.parent / f"{tmp_path.name}_outside.py"
    outside.write_text("def f(x):\n    return x\n")
    os.symlink(outside, tmp_path / "link.py")
    error = error_of(write_case, SCALAR_X + "output: x\nimpl: link.py:f\n")
    assert "outside the case file's directory" in error.message


def test_impl_next_to_the_case_is_resolved_without_running_it(write_case, tmp_path) -> None:
    marker = tmp_path / "imported"
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "impl.py").write_text(
        f"open({str(marker)!r}, 'w').close()\ndef f(x):\n    return x\n")
    case = case_of(write_case, SCALAR_X + "output: x\nimpl: sub/impl.py:f\n")
    assert case.impl == ImplRef((tmp_path / "sub" / "impl.py").resolve(), "sub/impl.py:f", "f")
    assert not marker.exists()


# -- inputs: seeds and limits --------------------------------------------------------------

RANDOM_INPUTS = """\
inputs:
  alpha: {shape: [3], init: randn}
  beta: {shape: [3], init: randn}
  gamma: {shape: [3], init: randn, seed: 7}
output: sum(alpha * beta * gamma)
"""


def seeds_of(case: Case) -> dict[str, int]:
    return {spec.name: spec.seed for spec in case.inputs}


def test_derived_seeds_are_stable_and_differ_between_names(write_case) -> None:
    seeds = seeds_of(case_of(write_case, RANDOM_INPUTS))
    assert seeds == seeds_of(case_of(write_case, RANDOM_INPUTS))
    assert seeds["alpha"] == derived_seed("alpha")
    assert seeds["alpha"] != seeds["beta"]
    assert seeds["gamma"] == 7
    assert len({derived_seed(name) for name in ["x", "y", "W1", "W2", "b1", "b2", "xy", "yx"]}) == 8


@pytest.mark.slow
def test_derived_seeds_do_not_depend_on_the_process() -> None:
    script = ("from gradcheck_lab.casefile.loader import derived_seed; "
              "print([derived_seed(n) for n in ['alpha', 'beta', 'W1']])")
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    shown = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                           cwd=REPO, env=env, check=True).stdout.strip()
    assert shown == str([derived_seed(n) for n in ["alpha", "beta", "W1"]])


def test_input_elements_over_the_limit_are_rejected_at_the_input(write_case) -> None:
    text = ("inputs:\n  a: {shape: [10], init: randn}\n  b: {shape: [2, 5], init: randn}\n"
            "output: sum(a) + sum(b)\n")
    assert isinstance(load_one(write_case, text, LoadLimits(max_input_elements=20)), Case)
    error = error_of(write_case, text, LoadLimits(max_input_elements=19))
    assert (error.line, error.key) == (3, "inputs.b")
    assert "20 elements" in error.message and "limit of 19" in error.message


def test_huge_shapes_are_rejected_before_anything_is_allocated(write_case) -> None:
    # 10**15 float64 elements would need 8 PB: only a check on the shape can answer this fast.
    text = "inputs:\n  x: {shape: [100000, 100000, 100000], init: randn}\noutput: sum(x)\n"
    start = time.process_time()  # CPU time: other work on the machine does not stretch it
    error = error_of(write_case, text)
    assert time.process_time() - start < 1.0
    assert (error.line, error.key) == (2, "inputs.x")
    assert "1000000000000000 elements" in error.message


def test_intermediate_results_over_the_node_limit_are_rejected(write_case) -> None:
    text = ("inputs:\n  x: {shape: [1000], init: randn}\n  y: {shape: [1000, 1], init: randn}\n"
            "output: sum(x * y)\n")
    assert isinstance(load_one(write_case, text), Case)
    error = error_of(write_case, text, LoadLimits(max_node_elements=999_999))
    assert (error.line, error.key) == (4, "output")
    assert "1000000 elements" in error.message
    assert_points_at(error, 4, "x * y")


def test_int64_literal_keeps_integer_values(write_case) -> None:
    case = case_of(write_case, "inputs:\n  x: [1.0, 2.0]\n  t: {value: [3, 1], dtype: int64}\n"
                               "output: sum(x)\n")
    target = next(spec for spec in case.inputs if spec.name == "t")
    assert target.is_integer and not target.requires_grad
    assert target.literal.tolist() == [3, 1]


def test_int64_literal_out_of_range_says_so(write_case) -> None:
    error = error_of(write_case, "inputs:\n  x: 1\n  t: {value: [1, 99999999999999999999], "
                                 "dtype: int64}\noutput: x\n")
    assert (error.line, error.key) == (3, "inputs.t")
    assert "99999999999999999999, outside the int64 range" in error.message
    assert "Fraction" not in error.message


# -- the bundled cases ---------------------------------------------------------------------


def test_bundled_cases_load() -> None:
    loaded = {path.name: load_file(path) for path in sorted(CASES.glob("*.yaml"))}
    assert loaded, "no bundled cases found"
    for name, results in loaded.items():
        errors = [str(r) for r in results if isinstance(r, CaseError)]
        assert errors == [], name
    names = [case.name for results in loaded.values() for case in results]
    assert {"r144", "mean_square", "mse_half", "mnist_mlp_ce", "custom_linear_layer",
            "custom_linear_loss"} <= set(names)


def test_bundled_r144_is_parsed_as_written() -> None:
    (case,) = load_file(CASES / "r144.yaml")
    assert [spec.name for spec in case.inputs] == ["x", "y", "z"]
    assert list(case.program.lets) == ["p", "q"]
    assert case.program.output_node.op == "pow"
    assert [e.key for e in case.expectations] == [
        "expect.value", "expect.grad.x", "expect.grad.y", "expect.grad.z"]
    lines = (CASES / "r144.yaml").read_text(encoding="utf-8").splitlines()
    assert case.line_of("let.q") == lines.index("  q: p * z") + 1
    assert case.line_of("output") == lines.index("output: q**2") + 1


def test_every_simple_key_reaches_the_case_as_validated() -> None:
    # The loader copies each key of the format that Case has a field for (and does not build
    # into something else): the values arrive as validated, lists as tuples.
    import dataclasses

    from gradcheck_lab.casefile.loader import BUILT_KEYS
    from gradcheck_lab.casefile.schema import CaseModel

    data = {"inputs": {"x": {"shape": [2], "init": "randn"}}, "output": "sum(exp(x))",
            "description": "d", "dtypes": ["float32"], "devices": ["cpu", "cuda"], "seed": 7,
            "nondet_tol": 0.5, "points": 3, "avoid_kinks": True, "order": 2,
            "modes": ["reverse", "forward"]}
    case = build_case(data, label="<t>", base_dir=None, default_name="t")
    assert (case.description, case.dtypes, case.devices, case.seed, case.nondet_tol,
            case.points, case.avoid_kinks, case.order, case.modes) == (
        "d", ("float32",), ("cpu", "cuda"), 7, 0.5, 3, True, 2, ("reverse", "forward"))
    fields = {f.name for f in dataclasses.fields(Case)}
    copied = set(CaseModel.model_fields) & fields - BUILT_KEYS
    assert copied >= {"description", "dtypes", "devices", "seed", "nondet_tol", "points",
                      "avoid_kinks", "order", "modes"}
    assert set(CaseModel.model_fields) >= BUILT_KEYS


def test_expectations_take_non_finite_numbers_and_keep_the_digits_written() -> None:
    # Outside a function's domain the answer is inf, -inf or nan; a decimal is checked to
    # the digits it was written with, an integer exactly.
    text = ("inputs:\n  x: [0.0, 1.0]\noutput: sum(log(x))\nexpect:\n  value: -.inf\n"
            "  grad: {x: [.inf, 1.000]}\n")
    (case,) = load_bytes(text.encode(), "<t>", Path("."))
    value, grad = case.expectations
    assert float(value.literal) == float("-inf")
    assert [float(v) for v in grad.literal] == [float("inf"), 1.0]
    assert list(grad.halfunits) == [0.0, 0.0005]


def test_load_file_takes_a_path_as_text_too(write_case, monkeypatch) -> None:
    path = write_case(SCALAR_X + "output: x**2\n", name="texted.yaml")
    monkeypatch.chdir(path.parent)
    (case,) = load_file("texted.yaml")
    assert case.name == "texted" and case.file == "texted.yaml"


BAD_FOUR = """name: bad
inputs:
  x: {shape: [3], init: randn, sed: 1}
  w: {shape: [3], init: randn, requires_grad: maybe}
output: sum(x * w)
tolerence: {rtol: 1e-3}
dtypes: [float65]
"""
BAD_FOUR_LINES = [":3: inputs.x.sed: unknown key 'sed' (did you mean 'seed'?)",
                  ":4: inputs.w.requires_grad:",
                  ":6: tolerence: unknown key 'tolerence' (did you mean 'tolerance'?)",
                  ":7: dtypes[0]: expected 'float64', 'float32', 'float16' or 'bfloat16'"]


def test_every_schema_problem_of_a_case_is_said_at_once_a_line_each(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from gradcheck_lab.doors.cli import main

    bad = tmp_path / "bad.yaml"
    bad.write_text(BAD_FOUR)
    (error,) = load_file(bad)
    lines = error.lines()
    assert len(lines) == 4
    for line, expected in zip(lines, BAD_FOUR_LINES, strict=True):
        assert line.startswith(str(bad)) and expected in line, line
    report = tmp_path / "out.json"
    main(["run", str(bad), "--json", str(report)])
    shown = [line.strip() for line in capsys.readouterr().out.splitlines()]
    assert sum(any(e in line for e in BAD_FOUR_LINES) for line in shown) == 4
    (result,) = json.loads(report.read_text())["results"]
    assert [result["message"], *result["problems"]] == lines


def test_every_let_problem_is_said_at_once_and_not_what_follows_from_one(
        tmp_path: Path) -> None:
    bad = tmp_path / "lets.yaml"
    bad.write_text("name: lets\n"
                   "inputs:\n"
                   "  x: {shape: [3], init: randn, seed: 1}\n"
                   "let:\n"
                   "  x: x + 1\n"          # shadows an input
                   "  a: frob(x)\n"        # unknown function
                   "  b: 2 * a\n"          # names the failed let: a consequence, not said
                   "  c: x * qq\n"         # undefined name
                   "output: sum(b) + sum(c) + sum(zz)\n")  # names failed lets first
    (error,) = load_file(bad)
    assert isinstance(error, CaseError)
    said = [line.removeprefix(str(bad)) for line in error.lines()]
    assert said == [":5: let.x: 'x' is already an input",
                    ":6:6: let.a: unknown function 'frob'",
                    ":8:10: let.c: undefined name 'qq'"]


def test_every_named_output_problem_is_said_at_once_with_the_lets(tmp_path: Path) -> None:
    bad = tmp_path / "outputs.yaml"
    bad.write_text("name: outputs\n"
                   "inputs:\n"
                   "  x: {shape: [3], init: randn, seed: 1}\n"
                   "let:\n"
                   "  a: frob(x)\n"        # unknown function
                   "output:\n"
                   "  x: x * 2\n"          # shadows an input
                   "  p: sum(x) * qq\n"    # undefined name
                   "  q: 2 * a\n"          # names the failed let: a consequence, not said
                   "  r: p + 1\n"          # names the failed output p: not said either
                   "  t: sum(x) > 0\n"     # a condition: an integer tensor
                   "  u: sum(x)\n")        # fine
    (error,) = load_file(bad)
    assert isinstance(error, CaseError)
    said = [line.removeprefix(str(bad)) for line in error.lines()]
    assert said == [":5:6: let.a: unknown function 'frob'",
                    ":7: output.x: 'x' is already an input or a let",
                    ":8:15: output.p: undefined name 'qq'",
                    ":11: output.t: output 't' is an integer tensor"]


def test_a_case_says_at_most_max_problems_and_counts_the_rest(tmp_path: Path) -> None:
    """Past MAX_PROBLEMS a case's lets are not built (a machine-made file of 1,800 bad lets
    took 35 s and 2.8 GB to say them all): the first ones, and one line counting the rest."""
    from gradcheck_lab.casefile.locating import MAX_PROBLEMS

    count = MAX_PROBLEMS + 7
    bad = tmp_path / "many.yaml"
    bad.write_text("name: many\ninputs:\n  x: {shape: [2], init: randn, seed: 1}\nlet:\n"
                   + "".join(f"  a{k}: frob{k}(x)\n" for k in range(count))
                   + "output: sum(x)\n")
    (error,) = load_file(bad)
    assert isinstance(error, CaseError)
    lines = error.lines()
    assert len(lines) == MAX_PROBLEMS + 1
    assert all("unknown function 'frob" in line for line in lines[:MAX_PROBLEMS])
    # The 7 lets past the cap, and the output: not built, so not checked.
    assert lines[-1].endswith(f"8 more lets and outputs not checked: a case's problems are "
                              f"said {MAX_PROBLEMS} at a time; fix these and run again")
    schema = tmp_path / "keys.yaml"
    schema.write_text("name: keys\ninputs:\n  x: {shape: [2], init: randn, seed: 1}\n"
                      "output: sum(x)\n" + "".join(f"oops{k}: 1\n" for k in range(count)))
    (error,) = load_file(schema)
    assert isinstance(error, CaseError) and len(error.lines()) == MAX_PROBLEMS + 1
    assert "7 more problems not said" in error.lines()[-1]


SCHEMA_ONLY = """
import sys
sys.modules["torch"] = None  # any import of torch now raises ImportError
sys.modules["sympy"] = None
from gradcheck_lab.doors.entry import main
sys.exit(main())
"""


def test_a_file_that_fails_validation_is_reported_without_loading_torch(
        tmp_path: Path) -> None:
    """Validation needs neither torch nor sympy: a broken file is said in a fraction of a
    second, before the seconds that loading torch takes (here it could not load at all)."""
    bad = tmp_path / "bad.yaml"
    bad.write_text(BAD_FOUR)
    done = subprocess.run([sys.executable, "-c", SCHEMA_ONLY, "run", str(bad)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    assert all(expected in done.stdout for expected in BAD_FOUR_LINES), done.stdout
    assert "torch 2." in done.stdout  # the header's versions, read without importing


def test_every_schema_problem_is_in_the_pytest_failure(pytester: pytest.Pytester) -> None:
    (pytester.path / "cases").mkdir()
    (pytester.path / "cases" / "bad.yaml").write_text(BAD_FOUR)
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    text = result.stdout.str()
    assert all(expected in text for expected in BAD_FOUR_LINES)
