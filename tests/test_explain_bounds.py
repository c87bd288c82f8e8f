"""``gradcheck-lab explain`` bounds its whole-expression work ahead, in counts (issue #31):
lets that each use the previous let twice double sympy's tree at every let, so the size of
the derivative's tree is counted on the program before sympy builds it, and past the bound
the exact oracle and the whole-expression formulas are skipped with one line, the numbers
still printed."""

from __future__ import annotations

import itertools
from functools import cached_property
from typing import Any

import pytest

from gradcheck_lab.casefile import Case
from gradcheck_lab.casefile.loader import build_case, load_file
from gradcheck_lab.doors.cli import EXIT_PASS, main
from gradcheck_lab.inspect import explain as explain_module
from gradcheck_lab.inspect.explain import (
    MAX_DERIVATIVE_NODES,
    MAX_DERIVATIVES_NODES,
    _whole_too_large,
    explain,
)
from gradcheck_lab.oracles import symbolic
from gradcheck_lab.pipeline.tracing import with_spec
from tests.conftest import CASES


def _derivative_size(program: Any) -> int:
    """What explain counts: the derivative's tree (``symbolic.tree_sizes``)."""
    return symbolic.tree_sizes(program)[1]


SKIPPED = "(not derived: sympy's derivative of the whole expression would be a tree of"


def doubling(lets: int, rule: str = "sin({p}) * cos({p})", x: object = 0.5) -> Case:
    """x, then a1 = rule(a0), a2 = rule(a1), ...: each let uses the one before twice."""
    steps = {"a0": "x", **{f"a{i}": rule.format(p=f"a{i - 1}") for i in range(1, lets + 1)}}
    output = f"a{lets}" if not isinstance(x, list) else f"sum(a{lets})"
    return build_case({"inputs": {"x": x}, "let": steps, "output": output},
                      label="<test>", base_dir=None, default_name="doubling")


@pytest.fixture
def no_sympy_whole_output(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Fail at once where the exact oracle or the whole output's sympy form would be built;
    count the local derivatives sympy takes."""
    diffs: list[str] = []
    real_diff = explain_module._diff

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the whole expression was built")

    def counted(expression: object, name: str) -> object:
        diffs.append(name)
        return real_diff(expression, name)

    monkeypatch.setattr(symbolic, "_exact", refuse)
    monkeypatch.setattr(explain_module._Derivation, "whole_output", refuse)
    monkeypatch.setattr(explain_module, "_diff", counted)
    return diffs


def test_derivative_size_counts_each_use_of_a_let() -> None:
    # sin(x) * cos(x): 5 nodes; its derivative 1 + (1 + 1 + 2) * 2 + 5 = 14 by the count.
    assert _derivative_size(doubling(1).program) == 14
    # A let used twice is counted twice: the count more than doubles at every let.
    sizes = [_derivative_size(doubling(n).program) for n in range(1, 8)]
    assert all(b > 2 * a for a, b in itertools.pairwise(sizes))
    # Linear ops hold no copy of their arguments: the sum of a chain of adds stays linear.
    chain = build_case({"inputs": {"x": 1.0, "y": 2.0},
                        "output": " + ".join(["x", "y"] * 50)},
                       label="<test>", base_dir=None, default_name="sum")
    assert _derivative_size(chain.program) == 199


def test_forty_doubling_lets_are_counted_not_built() -> None:
    size = _derivative_size(doubling(40).program)
    assert size > 10**14  # some 3.5e14 nodes as a tree: counted in integers, in microseconds
    assert "more than 4,000" in (_whole_too_large(doubling(40).program) or "")


@pytest.mark.slow
@pytest.mark.parametrize("rule", ["sin({p}) * cos({p})", "{p} * {p} + {p}"])
def test_doubling_lets_skip_the_whole_formula_and_keep_the_numbers(
        no_sympy_whole_output: list[str], rule: str) -> None:
    out = explain(doubling(40, rule, x=0.01), "float64")
    lines = out.splitlines()
    assert "rule sweep" in lines[1]  # the exact oracle was not asked (it would raise)
    assert "  a40 = " in out and "chain rule" in out
    gradients = out.split("gradients (sympy's derivative of the whole expression)\n")[1]
    assert gradients.startswith(f"  {SKIPPED}")
    assert gradients.count("\n") == 1  # one line
    assert "gradcheck-lab steps" in gradients
    # Only each step's own derivatives: one per name a step uses (a40 by a39, ...).
    assert len(no_sympy_whole_output) == 41


def test_a_tensor_case_of_doubling_lets_skips_its_representative_formula(
        no_sympy_whole_output: list[str]) -> None:
    out = explain(doubling(40, x=[0.5, 0.25]), "float64")
    assert "rule sweep" in out.splitlines()[1]
    representative = out.split("representative element\n")[1]
    assert representative.startswith("  (no per-element formula")  # past the oracle's own limits
    # Within the exact oracle's limits but past explain's: explain's reason.
    out = explain(doubling(9, x=[0.5, 0.25]), "float64")
    assert symbolic.exact_is_affordable(doubling(9, x=[0.5, 0.25]).program)
    assert "rule sweep" in out.splitlines()[1]
    assert out.split("representative element\n")[1].startswith(f"  {SKIPPED}")


def test_a_case_under_the_bound_is_explained_exactly() -> None:
    out = explain(doubling(3), "float64")
    assert "exact, elementwise sympy" in out.splitlines()[1]
    assert "not derived" not in out
    assert "  ∂output/∂x =\n" in out.split("gradients (sympy's")[1]  # wrapped below


def test_many_differentiated_inputs_are_bounded_all_together() -> None:
    # Each derivative is small; one per input, 300 of them add up past the total.
    names = [f"x{i}" for i in range(300)]
    lets = {f"s{k}": " + ".join(f"{n} ** 2" for n in names[75 * k:75 * (k + 1)])
            for k in range(4)}
    case = build_case({"inputs": dict.fromkeys(names, 0.5), "let": lets,
                       "output": "s0 + s1 + s2 + s3"},
                      label="<test>", base_dir=None, default_name="wide")
    size = _derivative_size(case.program)
    assert size <= MAX_DERIVATIVE_NODES
    assert size * 300 > MAX_DERIVATIVES_NODES
    assert "its 300 differentiated elements" in (_whole_too_large(case.program) or "")


def test_a_value_past_float64s_range_is_not_evaluated_exactly(
        monkeypatch: pytest.MonkeyPatch, write_case, capsys: pytest.CaptureFixture[str]) -> None:
    # erf and cosh of e³⁰⁰⁰⁰ took minutes to evaluate exactly; the gradient is inf or nan in
    # float64 either way.
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("evaluated exactly")

    monkeypatch.setattr(symbolic, "_exact", refuse)
    lets = "".join(f"  a{i}: erf(a{i - 1}) + cosh(a{i - 1})\n" for i in range(1, 7))
    path = write_case(f"inputs:\n  x: 0.3\nlet:\n  a0: x\n{lets}output: a6\n")
    assert main(["explain", str(path)]) == EXIT_PASS
    out = capsys.readouterr().out
    assert ("note: cosh(a4) = inf in let.a5 is past float64's range: the gradients are the "
            "rule sweep's, not evaluated exactly") in out
    assert "Traceback" not in out


@pytest.mark.slow
def test_every_bundled_case_the_exact_oracle_takes_is_explained_whole() -> None:
    # The bound leaves the bundled cases' explanations as they were, with room to grow.
    checked = []
    for path in sorted(CASES.glob("*.yaml")):
        for item in load_file(path):
            assert isinstance(item, Case), item
            program = with_spec(item).program
            if symbolic.exact_is_affordable(program):
                assert _whole_too_large(program) is None, item.name
                assert _derivative_size(program) <= MAX_DERIVATIVE_NODES * 3 // 4, item.name
                checked.append(item.name)
    assert "r144" in checked and "custom_linear_loss" in checked


def test_many_lets_cost_linear_work(monkeypatch: pytest.MonkeyPatch) -> None:
    # The values at the point were built again for each local derivative, and each step was
    # given a symbol for every name: 2,047 lets took two minutes.
    built: list[int] = []
    values = explain_module._Derivation.__dict__["_values"]

    def counted(self: object) -> object:
        built.append(1)
        return values.func(self)

    once = cached_property(counted)
    once.__set_name__(explain_module._Derivation, "_values")
    monkeypatch.setattr(explain_module._Derivation, "_values", once)
    given: list[int] = []
    real = explain_module._sympy_values

    def sizes(program: Any, root: int, named: dict) -> Any:
        given.append(len(named))
        return real(program, root, named)

    monkeypatch.setattr(explain_module, "_sympy_values", sizes)
    lets = {f"b{i}": f"sin(x * {i + 1})" for i in range(32)}
    lets |= {f"c{i}": f"b{2 * i} + b{2 * i + 1}" for i in range(16)}
    out = explain(build_case({"inputs": {"x": 0.5}, "let": lets,
                              "output": " + ".join(f"c{i}" for i in range(16))},
                             label="<test>", base_dir=None, default_name="wide"), "float64")
    assert "∂c15/∂b31 = 1" in out
    assert built == [1]
    assert max(given) == 16  # the output's sixteen names, not all 49
