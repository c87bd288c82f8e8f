"""The expression parser: what the whitelist accepts and the IR it builds, exact constant
folding, and the refusal (with a column offset) of everything else, without running any of it.

Every test runs in an empty working directory: each rejection checks that it is still empty,
so a payload that ran (``touch X``, ``open('X', 'w')``) would fail the test that fed it in.
"""

from __future__ import annotations

import math
import time
from fractions import Fraction
from pathlib import Path

import pytest

from gradcheck_lab.casefile.expr import ExprLimits, parse_expression
from gradcheck_lab.errors import SpecError
from gradcheck_lab.program.ir import Call, Const, Expr, Name, names_in
from tests.conftest import finishes_within, time_limit

DEFAULT_EXPR_LIMITS = ExprLimits()
REJECTION_SECONDS = 1.0
# Start-up and import take ~0.6 s (more on a loaded machine); the code these probes once caught
# ran for minutes.
SUBPROCESS_SECONDS = 5.0


@pytest.fixture(autouse=True)
def empty_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run each test in an empty directory, where relative payloads would leave their mark."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def files_in_cwd() -> list[str]:
    return sorted(path.name for path in Path.cwd().iterdir())


def rejection(text: str, limits: ExprLimits = DEFAULT_EXPR_LIMITS) -> SpecError:
    """The SpecError that parsing ``text`` raises: quickly (in CPU time, which other work on
    the machine does not stretch; the wall-clock alarm only stops a hang), and without
    anything appearing in the working directory."""
    start = time.process_time()
    with pytest.raises(SpecError) as caught, time_limit(10 * REJECTION_SECONDS + 5.0):
        parse_expression(text, limits)
    elapsed = time.process_time() - start
    assert elapsed < REJECTION_SECONDS, f"rejected only after {elapsed:.2f} s"
    assert files_in_cwd() == [], "the rejected expression created files"
    return caught.value


def parses_or_is_rejected(text: str) -> str:
    """A script that parses ``text`` and accepts a SpecError as an answer."""
    return ("from gradcheck_lab.casefile.expr import parse_expression\n"
            "from gradcheck_lab.errors import SpecError\n"
            "try:\n"
            f"    parse_expression({text!r})\n"
            "except SpecError:\n"
            "    pass\n")


def call(op: str, *args: Expr, params: tuple = (), offset: int | None = 0) -> Call:
    return Call(op, tuple(args), tuple(params), offset)


# -- accepted ------------------------------------------------------------------------------


@pytest.mark.parametrize("text, expected", [
    ("x + y", call("add", Name("x", 0), Name("y", 4))),
    ("q**2", call("pow", Name("q", 0), Const(Fraction(2), 3))),
    ("W @ x", call("matmul", Name("W", 0), Name("x", 4))),
    ("x - y / z", call("sub", Name("x", 0), call("div", Name("y", 4), Name("z", 8), offset=4))),
    ("-x", call("neg", Name("x", 1))),
    ("+x", Name("x", 1)),
    ("exp(x)", call("exp", Name("x", 4))),
    ("sum(x)", call("sum", Name("x", 4), params=(("dim", None), ("keepdim", False)))),
    ("sum(x, dim=1)", call("sum", Name("x", 4), params=(("dim", 1), ("keepdim", False)))),
    ("sum(x, 1)", call("sum", Name("x", 4), params=(("dim", 1), ("keepdim", False)))),
    ("mean(x, dim=(0, 1), keepdim=True)",
     call("mean", Name("x", 5), params=(("dim", (0, 1)), ("keepdim", True)))),
    ("mean(x, dim=[0, -1])",
     call("mean", Name("x", 5), params=(("dim", (0, -1)), ("keepdim", False)))),
    ("softmax(x, dim=-1)", call("softmax", Name("x", 8), params=(("dim", -1),))),
    ("softmax(x)", call("softmax", Name("x", 8), params=(("dim", -1),))),
    ("linear(x, W)", call("linear", Name("x", 7), Name("W", 10))),
    ("linear(x, W, b)", call("linear", Name("x", 7), Name("W", 10), Name("b", 13))),
    ("  x", Name("x", 2)),  # offsets count from the text as written
    ("x > 0", call("gt", Name("x", 0), Const(Fraction(0), 4))),
    ("x != y", call("ne", Name("x", 0), Name("y", 5))),
    ("(x < 1) & ~(y >= 2)",
     call("logical_and", call("lt", Name("x", 1), Const(Fraction(1), 5), offset=1),
          call("logical_not", call("ge", Name("y", 12), Const(Fraction(2), 17), offset=12),
               offset=10), offset=0)),
    ("x % y", call("remainder", Name("x", 0), Name("y", 4))),
    # Tensor arguments by keyword, an optional one skipped: the call records which it got.
    ("clamp(x, max=1)", call("clamp", Name("x", 6), Const(Fraction(1), 13),
                             params=(("given", (0, 2)),))),
    ("clamp(x, min=None, max=y)", call("clamp", Name("x", 6), Name("y", 23),
                                       params=(("given", (0, 2)),))),
    ("linear(x, W, bias=b)", call("linear", Name("x", 7), Name("W", 10), Name("b", 18))),
    # torch's order: layer_norm(input, normalized_shape, weight, bias, eps)
    ("layer_norm(x, (4,), W, b, 1e-3)",
     call("layer_norm", Name("x", 11), Name("W", 20), Name("b", 23),
          params=(("normalized_shape", (4,)), ("eps", 1e-3)))),
    # ... and the case language's own order, tensors first, as files written before it.
    ("layer_norm(x, W, b)",
     call("layer_norm", Name("x", 11), Name("W", 14), Name("b", 17),
          params=(("normalized_shape", None), ("eps", 1e-5)))),
    ("sum(x, dim=None)", call("sum", Name("x", 4), params=(("dim", None), ("keepdim", False)))),
])
def test_accepted_expressions_build_the_expected_ir(text, expected) -> None:
    assert parse_expression(text) == expected


@pytest.mark.parametrize("text, message", [
    ("clamp(x, given=(0, 1))", "no keyword 'given'"),
    ("linear(x, bias=b)", "needs the argument weight"),
    ("layer_norm(x, (4,), bias=b)", "bias needs weight given too"),
    ("sum(x, 1, True, 2)", "at most 3 positional arguments"),
    ("clamp(x, 0, min=1)", "got 'min' twice"),
])
def test_tensor_keywords_are_checked(text: str, message: str) -> None:
    with pytest.raises(SpecError, match=message):
        parse_expression(text)


def test_positional_and_keyword_dim_mean_the_same() -> None:
    assert parse_expression("sum(x, 1)") == parse_expression("sum(x, dim=1)")


def test_expression_split_over_lines() -> None:
    text = "x +\n  y *\n      z\n"
    expected = Call("add", (Name("x", None),
                            Call("mul", (Name("y", None), Name("z", None)), (), None)), (), None)
    assert parse_expression(text) == expected


def test_names_in_reading_order() -> None:
    expr = parse_expression("linear(x, W, b) * exp(x)")
    assert [name.id for name in names_in(expr)] == ["x", "W", "b", "x"]


# -- exact constants -----------------------------------------------------------------------


@pytest.mark.parametrize("text, exact", [
    ("0.1", Fraction(1, 10)),
    ("1e-7", Fraction(1, 10**7)),
    ("1.5e3", Fraction(1500)),
    ("1_000.5", Fraction(2001, 2)),
    ("0.1 + 0.2", Fraction(3, 10)),        # not 0.30000000000000004
    ("2 * 3 - 1", Fraction(5)),
    ("1 / 3", Fraction(1, 3)),
    ("-2", Fraction(-2)),
    ("2 ** -2", Fraction(1, 4)),
    ("(0.5) ** 3", Fraction(1, 8)),
    ("10 ** 300", Fraction(10**300)),
])
def test_constants_fold_exactly(text, exact) -> None:
    folded = parse_expression(text)
    assert isinstance(folded, Const)
    assert folded.value == exact
    assert type(folded.value) is Fraction


def test_constant_folding_inside_an_expression() -> None:
    assert parse_expression("x * (0.1 + 0.2)") == call(
        "mul", Name("x", 0), Const(Fraction(3, 10), 5))


def test_fractional_power_of_a_constant_is_folded() -> None:
    folded = parse_expression("2 ** 0.5")
    assert isinstance(folded, Const)
    assert abs(float(folded.value) - 2**0.5) < 1e-15


@pytest.mark.parametrize("text, fragment", [
    ("9 ** 9 ** 9", "too large"),
    ("10 ** 100000", "too large"),
    ("2 ** 4097", "too large"),
    ("(10 ** 1000) ** 1000", "too large"),
    ("(3 / 2) ** 100000", "too large"),
    ("1e400", "float64 range"),
    ("10 ** 2000.5", "float64 range"),
    ("1 / 0", "division by zero"),
    ("0 ** -1", "division by zero"),
    ("(-1) ** 0.5", "not real"),
])
def test_constants_that_cannot_be_held_are_rejected_quickly(text, fragment) -> None:
    assert fragment in rejection(text).message


@pytest.mark.parametrize("text", ["1e-5000", "1e5000", "0.5e-99999999"])
def test_float_literal_is_held_to_the_constant_size_limit(text) -> None:
    # Held exactly, 1e-5000 needs a 16,610-bit denominator (limit 4,096): refuse or round it.
    limit = DEFAULT_EXPR_LIMITS.max_constant_bits
    try:
        folded = parse_expression(text)
    except SpecError:
        return
    assert isinstance(folded, Const)
    bits = max(folded.value.numerator.bit_length(), folded.value.denominator.bit_length())
    assert bits <= limit, f"{text} is held exactly, with {bits} bits (limit {limit})"


@pytest.mark.slow
@pytest.mark.parametrize("text", [
    "1e-99999999",               # 12 characters; exactly, a denominator of 10**99999999
    "(1 + 1e-20) ** 1000000",    # near 1 as a float, but a 66-million-bit numerator exactly
])
def test_constants_whose_exact_value_is_huge_are_answered_quickly(text) -> None:
    assert finishes_within(SUBPROCESS_SECONDS, parses_or_is_rejected(text))


@pytest.mark.parametrize("text, expected", [
    ("(2 ** 1100) ** 0.5", 2.0**550),    # the base is beyond float64, the result is not
    ("(2 ** -1100) ** 0.5", 2.0**-550),  # the base underflows float64, the result does not
    ("(10 ** 400) ** 0.25", 1e100),
])
def test_fractional_power_of_a_base_outside_float64(text, expected) -> None:
    try:
        folded = parse_expression(text)
    except SpecError:
        return  # refusing is an answer too; a wrong value or another exception is not
    assert isinstance(folded, Const)
    assert math.isclose(float(folded.value), expected, rel_tol=1e-12)


@pytest.mark.parametrize("text, expected", [
    ("100 ** 0.5", 10.0),
    ("(10 ** 300) ** 0.5", 1e150),
])
def test_fractional_power_of_a_float64_base_is_as_exact_as_float_pow(text, expected) -> None:
    # float(base) ** float(exponent) gives these exactly; folding must not do worse.
    folded = parse_expression(text)
    assert isinstance(folded, Const)
    assert float(folded.value) == expected


# -- rejected, with nothing run ------------------------------------------------------------


@pytest.mark.parametrize("text, fragment, offset", [
    ("__import__('os').system('touch X')", "plain function names", 0),
    ("x.__class__", "attribute access", 0),
    ("x[y]", "subscripts take constant integers", 2),
    ("x[1.5:2]", "slice bounds must be constant integers", 2),
    ("x[0:2:0.5]", "slice bounds must be constant integers", 6),
    ("x[0:y]", "slice bounds must be constant integers", 4),
    ("x[...:2]", "slice bounds must be constant integers", 2),
    ("lambda: 1", "lambdas", 0),
    ("[i for i in x]", "comprehensions", 0),
    ("{i for i in x}", "comprehensions", 0),
    ("{i: i for i in x}", "comprehensions", 0),
    ("(i for i in x)", "comprehensions", 0),
    ('f"{x}"', "f-strings", 0),
    ("x if y else z", "conditional expressions", 0),
    ("(y := 2)", "assignment expressions", 1),
    ("0 < x < 1", "chained comparisons", 0),
    ("x is y", "comparison Is", 0),
    ("x in y", "comparison In", 0),
    ("x and y", "use & and |", 0),
    ("x or y", "use & and |", 0),
    ("not x", "use ~ for not", 0),
    ("x // y", "'//'", 0),
    ("x << y", "'<<'", 0),
    ("x >> y", "'>>'", 0),
    ("exec('1')", "unknown function 'exec'", 0),
    ("eval('1')", "unknown function 'eval'", 0),
    ("open('f')", "unknown function 'open'", 0),
    ("getattr(x, 'a')", "unknown function 'getattr'", 0),
    ("__builtins__", "dunder name", 0),
    ("exp", "is a function", 0),
    ("x + 'a'", "not a real number", 4),
    ("x + b'a'", "not a real number", 4),
    ("x * 1j", "not a real number", 4),
    ("True * x", "not a real number", 0),
    ("None", "not a real number", 0),
    ("...", "not a real number", 0),
    ("{'a': 1}", "dict displays", 0),
    ("{x}", "set displays", 0),
    ("(x, y)", "tuples and lists", 0),
    ("[x]", "tuples and lists", 0),
    ("sum(*x)", "starred", 4),
    ("sum(**x)", "**kwargs", 0),
    ("(lambda: x)()", "lambdas", 1),
    ("await x", "await", 0),
])
def test_forbidden_syntax_is_rejected_with_its_offset(text, fragment, offset) -> None:
    error = rejection(text)
    assert fragment in error.message
    assert error.offset == offset


@pytest.mark.parametrize("text, fragment", [
    ("import os", "not a valid expression"),
    ("import os; os.system('touch X')", "not a valid expression"),
    ("x = 1", "not a valid expression"),
    ("x; y", "not a valid expression"),
    ("x +", "not a valid expression"),
    ("def f(): pass", "not a valid expression"),
    ("yield x", "not a valid expression"),
    ("x\0", "null bytes"),
    ("", "empty"),
    ("   \n ", "empty"),
])
def test_statements_and_broken_text_are_rejected(text, fragment) -> None:
    assert fragment in rejection(text).message


def test_syntax_error_has_a_column_offset() -> None:
    error = rejection("x + * y")
    assert "not a valid expression" in error.message
    assert error.offset == 4


@pytest.mark.parametrize("text, offending", [
    ("y + x[z]", "z"),
    ("1 + x.__class__", "x.__class__"),
    ("   sin(x) * q.real", "q.real"),
    ("exp(x) * expp(x)", "expp(x)"),
    ("x + __y", "__y"),
    ("sum(x) + (0 < x < y)", "0 < x < y"),
    ("x * (y // 2)", "y // 2"),
    ("x + (y if y else z)", "y if y else z"),
    ("sum(x, dim=y)", "y"),
    ("sum(x, keepdim=1)", "1"),
])
def test_offset_points_at_the_offending_part(text, offending) -> None:
    error = rejection(text)
    assert error.offset == text.rindex(offending)


@pytest.mark.parametrize("text, offending", [
    ("x[1] + é", "é"),
    ("  x * ŷ", "ŷ"),
    ("ｓｉｎ(ｘ)", "ｓ"),  # Python's parser would NFKC-normalise it to sin(x)
    ("x\u202e + y", "\u202e"),
])
def test_a_character_outside_ascii_is_refused_at_its_column(text, offending) -> None:
    error = rejection(text)
    assert "is not ASCII" in error.message
    assert error.offset == text.index(offending)  # in characters, not UTF-8 bytes


def test_no_column_offset_for_an_expression_over_several_lines() -> None:
    error = rejection("x +\n  y.real\n")
    assert "attribute access" in error.message
    assert error.offset is None


PAYLOADS = [
    "__import__('os').system('touch MARKER')",
    "exec(\"open('MARKER', 'w')\")",
    "eval(\"open('MARKER', 'w')\")",
    "open('MARKER', 'w')",
    "getattr(__import__('os'), 'system')('touch MARKER')",
    "(lambda: open('MARKER', 'w'))()",
    "[open('MARKER', 'w') for i in [1]]",
    "f\"{open('MARKER', 'w')}\"",
    "open('MARKER', 'w') if 1 else 0",
    "(y := open('MARKER', 'w'))",
    "open('MARKER', 'w') and 1",
    "open('MARKER', 'w') < 1",
    "open('MARKER', 'w')[0]",
    "open('MARKER', 'w').close()",
    "x + sum(open('MARKER', 'w'), dim=1)",
    "sum(x, dim=open('MARKER', 'w'))",
    "sum(x, keepdim=open('MARKER', 'w'))",
    "exp(x, open('MARKER', 'w'))",
    "().__class__.__base__.__subclasses__()",
    "x.__globals__['os'].system('touch MARKER')",
    "import os; os.system('touch MARKER')",
]


@pytest.mark.parametrize("template", PAYLOADS)
def test_payloads_with_an_absolute_path_are_rejected_and_nothing_runs(template,
                                                                     tmp_path) -> None:
    marker = tmp_path.parent / f"{tmp_path.name}-pwned"
    rejection(template.replace("MARKER", str(marker)))
    assert not marker.exists()


@pytest.mark.parametrize("template", PAYLOADS)
def test_payloads_with_a_relative_path_are_rejected_and_nothing_runs(template,
                                                                    empty_cwd) -> None:
    rejection(template.replace("MARKER", "X"))
    assert not (empty_cwd / "X").exists()


# -- functions and keywords ----------------------------------------------------------------


def test_unknown_function_suggests_a_close_name() -> None:
    error = rejection("expp(x)")
    assert "unknown function 'expp'" in error.message
    assert "did you mean 'exp'?" in error.message
    assert error.offset == 0


def test_unknown_function_without_a_close_name_has_no_suggestion() -> None:
    assert "did you mean" not in rejection("frobnicate(x)").message


def test_operator_names_are_not_functions() -> None:
    assert "unknown function 'add'" in rejection("add(x, y)").message


def test_unknown_keyword_is_rejected_with_the_accepted_ones() -> None:
    text = "sum(x, axis=1)"
    error = rejection(text)
    assert "no keyword 'axis'" in error.message
    assert "dim, keepdim" in error.message
    assert text.index("axis") <= error.offset <= text.index("1")


@pytest.mark.parametrize("text, fragment", [
    ("sum(x, dim=y)", "dim= needs an integer"),
    ("sum(x, dim=1.5)", "dim= needs an integer"),
    ("sum(x, dim=2**40)", "dim= needs an integer"),
    ("sum(x, dim=(0, y))", "dim= needs an integer"),
    ("sum(x, dim=True)", "dim= needs an integer"),
    ("sum(x, keepdim=1)", "keepdim= needs True or False"),
    ("sum(x, keepdim=y)", "keepdim= needs True or False"),
    ("softmax(x, dim=(0, 1))", "dim= needs an integer"),
    ("sum(x, dim=1, dim=2)", "'dim' twice"),
    ("sum(x, 1, dim=2)", "'dim' twice"),
])
def test_bad_keyword_values_are_rejected(text, fragment) -> None:
    error = rejection(text)
    assert fragment in error.message
    assert error.offset is not None and error.offset > 0


def test_float_and_string_keywords(monkeypatch: pytest.MonkeyPatch) -> None:
    # Keyword kinds as torch's functions take them: numbers (ints accepted, decimals as
    # written) and strings from a fixed set, with a suggestion for a near miss.
    import dataclasses

    from gradcheck_lab.ops import OPS, Param

    op = dataclasses.replace(OPS["exp"], name="act", params=(
        Param("beta", "float", default=1.0), Param("mode", "str", default="none",
                                                     choices=("none", "tanh"))))
    monkeypatch.setitem(OPS, "act", op)
    call = parse_expression("act(x, beta=-0.5, mode='tanh')")
    assert isinstance(call, Call) and dict(call.params) == {"beta": -0.5, "mode": "tanh"}
    assert dict(parse_expression("act(x, 2)").params) == {"beta": 2.0, "mode": "none"}
    assert rejection("act(x, beta='a')").message == "act(): beta= needs a number"
    assert rejection("act(x, beta=y)").message == "act(): beta= needs a number"
    assert rejection("act(x, mode='tanhh')").message == (
        "act(): mode='tanhh' is not one of 'none', 'tanh' (did you mean 'tanh'?)")
    assert "needs a string" in rejection("act(x, mode=1)").message
    assert dict(parse_expression("layer_norm(x, eps=1e-3)").params)["eps"] == 1e-3


@pytest.mark.parametrize("text, fragment", [
    ("exp(x, y)", "at most 1"),
    ("sum()", "at least 1"),
    ("linear(x)", "at least 2"),
])
def test_wrong_number_of_arguments_is_rejected(text, fragment) -> None:
    assert fragment in rejection(text).message


# -- limits --------------------------------------------------------------------------------


def test_expression_longer_than_the_limit_is_rejected() -> None:
    limit = DEFAULT_EXPR_LIMITS.max_length
    assert isinstance(parse_expression("x" * limit), Name)
    assert f"limit {limit}" in rejection("x" * (limit + 1)).message


def test_expression_deeper_than_the_limit_is_rejected() -> None:
    depth = DEFAULT_EXPR_LIMITS.max_depth
    assert parse_expression("-" * depth + "x") is not None
    assert f"deeper than {depth}" in rejection("-" * (depth + 1) + "x").message


def test_custom_limits_are_enforced() -> None:
    assert "deeper than 2" in rejection("exp(exp(exp(x)))", ExprLimits(max_depth=2)).message
    assert "more than 3 parts" in rejection("x + x + x", ExprLimits(max_nodes=3)).message
    assert "limit 4" in rejection("x + y", ExprLimits(max_length=4)).message
    assert "too large" in rejection("2 ** 9", ExprLimits(max_constant_bits=8)).message
    assert parse_expression("2 ** 3", ExprLimits(max_constant_bits=8)) == Const(Fraction(8), 0)


def test_integer_literal_over_the_bit_limit_is_rejected() -> None:
    error = rejection("0x" + "f" * 1100)  # 4400 bits, written in hex to pass Python's parser
    assert "integer constant is too large" in error.message


@pytest.mark.parametrize("text", [
    "(" * 300 + "x" + ")" * 300,
    "+".join(["x"] * 4000),
    "exp(" * 1600 + "x" + ")" * 1600,
    "-" * 9000 + "x",
    "x" + "**x" * 3000,
])
def test_pathological_nesting_is_rejected_quickly(text) -> None:
    assert len(text) <= DEFAULT_EXPR_LIMITS.max_length
    rejection(text)
