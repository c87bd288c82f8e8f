"""Property-based fuzzing of the parser and the loader: whatever the text, they return a result
or raise the project's own error type, never anything else, and always within a time bound.

Derandomized so that CI runs are reproducible; the examples cover random text, random bytes,
and case-shaped YAML built from the format's own keys.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gradcheck_lab.casefile import Case
from gradcheck_lab.casefile.expr import parse_expression
from gradcheck_lab.casefile.loader import load_bytes
from gradcheck_lab.errors import CaseError, SpecError
from gradcheck_lab.ops import OPS
from gradcheck_lab.program.graph import ProgramBuilder

FUZZ = settings(max_examples=150, deadline=2000, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow])

NAMES = st.sampled_from(["x", "y", "W", "t", "q", "__import__", "os", "self", "exp"])
NUMBERS = st.one_of(st.integers(-10**6, 10**6).map(str),
                    st.floats(allow_nan=False, allow_infinity=False).map(repr),
                    st.sampled_from(["9 ** 9 ** 9", "10 ** 400", "1e308 * 10", "0.1"]))
FUNCTIONS = st.sampled_from([*sorted(OPS), "eval", "open", "getattr", "print"])
OPERATORS = st.sampled_from(["+", "-", "*", "/", "**", "@", "//", "%", "<", "and", ".", ","])


def expressions() -> st.SearchStrategy[str]:
    """Expression-like text: mostly grammatical, sometimes not."""
    leaf = st.one_of(NAMES, NUMBERS)
    return st.recursive(leaf, lambda inner: st.one_of(
        st.tuples(inner, OPERATORS, inner).map(" ".join),
        st.tuples(FUNCTIONS, st.lists(inner, max_size=3)).map(
            lambda call: f"{call[0]}({', '.join(call[1])})"),
        inner.map(lambda text: f"-({text})"),
        st.tuples(inner, st.sampled_from(["dim=1", "dim=(0, 1)", "keepdim=True", "axis=0"]))
          .map(lambda pair: f"sum({pair[0]}, {pair[1]})"),
    ), max_leaves=12)


@pytest.mark.slow
@FUZZ
@given(st.one_of(st.text(max_size=300), expressions()))
def test_parser_raises_only_its_own_error(text: str) -> None:
    try:
        expr = parse_expression(text)
    except SpecError:
        return
    builder = ProgramBuilder()
    builder.add_input("x", (3,), False, True)
    builder.add_input("y", (3,), False, True)
    builder.add_input("W", (3, 3), False, True)
    builder.add_input("t", (3,), True, False)
    with contextlib.suppress(SpecError):
        builder.add_expression(expr, "output")


INPUT_VALUES = st.one_of(
    st.integers(-5, 5), st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=10),
    st.lists(st.floats(-3, 3), min_size=1, max_size=4),
    st.fixed_dictionaries({"shape": st.lists(st.integers(-1, 4), max_size=3),
                           "init": st.sampled_from(["randn", "uniform", "randint", "zeros",
                                                    "bogus"])},
                          optional={"low": st.integers(-2, 2), "high": st.integers(-2, 2),
                                    "seed": st.integers(-1, 5), "requires_grad": st.booleans()}),
    st.fixed_dictionaries({"value": st.lists(st.integers(0, 3), min_size=1, max_size=3)},
                          optional={"dtype": st.sampled_from(["int64", "float32"])}),
)
CASE_DATA = st.fixed_dictionaries(
    {"inputs": st.dictionaries(st.sampled_from(["x", "y", "t", "class", "__x", "exp", "W"]),
                               INPUT_VALUES, max_size=3)},
    optional={
        "name": st.one_of(st.text(max_size=8), st.integers()),
        "output": st.one_of(expressions(), st.integers()),
        "let": st.dictionaries(st.sampled_from(["h", "x", "z"]), expressions(), max_size=2),
        "expect": st.fixed_dictionaries({}, optional={"value": st.integers(),
                                                      "grad": st.dictionaries(NAMES, NUMBERS)}),
        "dtypes": st.lists(st.sampled_from(["float64", "float32", "float8"]), max_size=2),
        "devices": st.lists(st.sampled_from(["cpu", "cuda", "tpu"]), max_size=2),
        "tolerance": st.dictionaries(st.sampled_from(["rtol", "atol", "float32"]),
                                     st.one_of(st.floats(), st.text(max_size=3))),
        "impl": st.sampled_from(["x.py:f", "../a.py:f", "/abs.py:f", "os:system"]),
        "outptu": st.just("sum(x)"),
    },
)


def assert_loads_cleanly(raw: bytes, tmp: Path) -> None:
    results = load_bytes(raw, "fuzz.yaml", tmp)
    assert results
    for result in results:
        assert isinstance(result, (Case, CaseError))
        if isinstance(result, CaseError):
            assert "\n" not in result.render()


@pytest.mark.slow
@FUZZ
@given(st.binary(max_size=400))
def test_loader_survives_arbitrary_bytes(tmp_path_factory, raw: bytes) -> None:
    assert_loads_cleanly(raw, tmp_path_factory.getbasetemp())


@pytest.mark.slow
@FUZZ
@given(st.one_of(CASE_DATA, st.fixed_dictionaries({"cases": st.lists(CASE_DATA, max_size=3)})))
def test_loader_survives_case_shaped_yaml(tmp_path_factory, data: dict) -> None:
    raw = yaml.safe_dump(data, allow_unicode=True).encode()
    assert_loads_cleanly(raw, tmp_path_factory.getbasetemp())
