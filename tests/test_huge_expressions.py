"""Loading is budgeted: files of long expressions within every per-expression limit (5,000
parts, 10,000 characters, depth 200) are refused at a key once a case's expression text, or a
file's expression text or program nodes, pass their budget (``casefile.budget``), instead of
loading for minutes into GBs (1,500 cases of a 4,000-part expression: 78 s and 1 GB; 1,500 lets
naming a failed let: 24 s). The bounds here are counts of what the loader parsed and built,
never seconds; the files are generated here, and aliases make a small file hold much text."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import gradcheck_lab
from gradcheck_lab.casefile import Case, LoadLimits, load_file, locating
from gradcheck_lab.casefile.budget import BudgetLimits
from gradcheck_lab.errors import CaseError
from gradcheck_lab.program.graph import ProgramBuilder

# Small budgets, so that a file past them loads in a fraction of a second: 20,000 characters
# per case, 100,000 per file, 20,000 program nodes per file.
SMALL = LoadLimits(max_program_nodes=2_000)


def balanced(leaves: list[str], op: str) -> str:
    """``leaves`` joined by ``op`` as a balanced tree: depth log2(n), within the depth limit."""
    while len(leaves) > 1:
        paired = [f"({a}{op}{b})" for a, b in zip(leaves[::2], leaves[1::2], strict=False)]
        leaves = paired + leaves[len(paired) * 2:]
    return leaves[0]


# 2,047 parts, 4,091 characters, 1,023 program nodes: each within every existing limit.
PRODUCT = balanced(["x"] * 1024, "*")
OK_CASE = "  - {name: ok_%d, inputs: {x: 0.5}, output: 'x * x'}\n"


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """What loading did, counted: characters of expression text parsed and program nodes
    built."""
    counts = {"characters": 0, "nodes": 0}
    parse, append = locating.parse_expression, ProgramBuilder._append

    def parse_counted(text, *args, **kwargs):
        counts["characters"] += len(text)
        return parse(text, *args, **kwargs)

    def append_counted(self, node):
        counts["nodes"] += 1
        return append(self, node)

    monkeypatch.setattr(locating, "parse_expression", parse_counted)
    monkeypatch.setattr(ProgramBuilder, "_append", append_counted)
    return counts


def lets_after_a_failed_one(count: int) -> str:
    """A case of ``count`` lets, each a copy of one long expression (an alias) that names a
    let that failed: none is a problem of its own, so none counts towards the 20 problems a
    case says, and each was parsed whole."""
    body = balanced(["bad"] + ["x"] * 1023, "*")
    return ("    inputs: {x: 0.5}\n    let:\n      bad: x +* 1\n"
            f"      a0: &e '{body}'\n" + "".join(f"      a{i}: *e\n" for i in range(1, count))
            + "    output: x\n")


def test_a_case_past_its_text_budget_is_an_error_at_the_let_and_the_cases_beside_it_load(
        write_case, counted: dict[str, int]) -> None:
    path = write_case("cases:\n" + OK_CASE % 0 + "  - name: hostile\n"
                      + lets_after_a_failed_one(1_500) + OK_CASE % 2)
    first, hostile, last = load_file(path)
    assert isinstance(first, Case) and isinstance(last, Case)
    assert isinstance(hostile, CaseError)
    # The 49th let of 4,096 characters passes 200,000: a48, on the file's line 7 + 48.
    assert (hostile.line, hostile.key, hostile.case) == (55, "cases[1].let.a48", "hostile")
    assert "the case's expressions would hold 2006" in hostile.message
    assert "over the budget of 200000 for one case" in hostile.message
    assert len(hostile.lines()) == 1 and "\n" not in hostile.render()
    # 1,500 lets of 4,000 characters, 6 million in all, were parsed before the budget.
    assert counted["characters"] <= 200_000 + 2 * len("x * x")


def test_a_file_past_its_node_budget_loads_the_cases_before_and_refuses_the_rest_at_once(
        write_case, counted: dict[str, int]) -> None:
    # 1,500 cases of 1,023 nodes each, from a 15 KB file.
    path = write_case(f"cases:\n  - &c {{inputs: {{x: 0.5}}, output: '{PRODUCT}'}}\n"
                      + "  - *c\n" * 1_499)
    results = load_file(path, SMALL)
    *loaded, over, rest = results
    assert all(isinstance(case, Case) for case in loaded)
    assert len(loaded) == 19  # 20,000 nodes: 19 cases of 1,024 nodes (the input's one too)
    assert isinstance(over, CaseError) and isinstance(rest, CaseError)
    assert over.key == "cases[19].output"
    assert "the file's programs would have 20480 nodes in all, over the budget of 20000 for " \
           "one file (by default 10 times --max-program-nodes)" in over.message
    assert (rest.line, rest.key) == (2, "cases[20]")  # an alias is where its anchor is
    assert rest.message.startswith("case not loaded, nor the 1479 after it: the cases before "
                                   "spent the file's load budget (100000 characters of "
                                   "expressions, 20000 program nodes")
    # Built: the budget and the one expression that passed it, of 1.5 million nodes.
    assert counted["nodes"] <= 20_000 + 1_023 + 20
    assert counted["characters"] <= 20 * len(PRODUCT)


def test_inputs_are_charged_to_the_files_node_budget(write_case,
                                                     counted: dict[str, int]) -> None:
    # 40 cases of 1,000 scalar inputs each, one output reading two of them: 40,000 input
    # nodes, twice the file's budget of 20,000, where each case is within its own 2,000.
    inputs = ", ".join(f"x{i}: 0.5" for i in range(1_000))
    path = write_case("cases:\n" + f"  - &c {{inputs: {{{inputs}}}, output: 'x0 * x999'}}\n"
                      + "  - *c\n" * 39)
    *loaded, over, rest = load_file(path, SMALL)
    assert len(loaded) == 19 and all(isinstance(case, Case) for case in loaded)
    assert isinstance(over, CaseError) and over.key == "cases[19].inputs"
    # 19 cases of 1,001 nodes (1,000 inputs and the product), then 1,000 inputs more.
    assert "the file's programs would have 20019 nodes in all" in over.message
    assert isinstance(rest, CaseError) and rest.key == "cases[20]"
    assert counted["nodes"] <= 20_000 + 1_000 + 20


@pytest.mark.parametrize("expression", [
    balanced(["1"] * 1024, "+") + " * x",  # 2,047 parts folded into one constant
    balanced(["x"] * 1024, "+"),  # a sum
    balanced(["sin(x)"] * 512, "*"),  # calls
], ids=["folded", "sum", "calls"])
def test_a_file_past_its_text_budget_refuses_the_rest_whatever_the_expressions_build(
        write_case, counted: dict[str, int], expression: str) -> None:
    path = write_case(f"cases:\n  - &c {{inputs: {{x: 0.5}}, output: '{expression}'}}\n"
                      + "  - *c\n" * 999)
    results = load_file(path, LoadLimits(max_case_expression_characters=20_000,
                                         max_file_expression_characters=100_000,
                                         max_file_program_nodes=10**9))
    *loaded, over, rest = results
    assert all(isinstance(case, Case) for case in loaded)
    assert isinstance(over, CaseError) and isinstance(rest, CaseError)
    assert "the file's expressions would hold" in over.message
    assert "over the budget of 100000 for one file" in over.message
    assert rest.key == f"cases[{len(loaded) + 1}]"
    assert f"nor the {999 - len(loaded) - 1} after it" in rest.message
    assert counted["characters"] <= 100_000


def test_expect_and_surrogate_expressions_are_charged_too(write_case) -> None:
    long_sum = balanced(["x"] * 1024, "+")
    limits = LoadLimits(max_case_expression_characters=3 * len(long_sum))
    fits = (f"inputs: {{x: 0.5}}\nlet: {{a: '{long_sum}'}}\noutput: 'a * x'\n"
            f"expect: {{grad: {{x: '{long_sum}'}}}}\n")
    assert isinstance(load_file(write_case(fits), limits)[0], Case)
    (error,) = load_file(write_case(fits + f"surrogate: {{x: '{long_sum}'}}\n"), limits)
    assert isinstance(error, CaseError)
    assert (error.line, error.key) == (5, "surrogate.x")
    assert "for one case" in error.message


def test_the_budgets_follow_max_program_nodes(write_case) -> None:
    """Raised, the program-node limit raises the budgets: the same file loads whole."""
    path = write_case(f"cases:\n  - &c {{inputs: {{x: 0.5}}, output: '{PRODUCT}'}}\n"
                      + "  - *c\n" * 29)
    assert isinstance(load_file(path, SMALL)[-1], CaseError)
    assert all(isinstance(r, Case) for r in load_file(path, LoadLimits(max_program_nodes=4_000)))
    assert BudgetLimits.following(20_000) == BudgetLimits(200_000, 1_000_000, 200_000)
    assert LoadLimits().load_budget().limits == BudgetLimits(200_000, 1_000_000, 200_000)


def test_the_api_charges_each_check_on_its_own() -> None:
    # Each let folds into one constant: the node limit never comes near.
    lets = {f"a{i}": balanced(["1"] * 1024, "+") for i in range(60)}
    with pytest.raises(gradcheck_lab.CaseError, match=r"let\.a48: the case's expressions "
                                                      r"would hold 20\d+ characters"):
        gradcheck_lab.check("x", {"x": 0.5}, let=lets)
    # A check after it has a budget of its own.
    (result,) = gradcheck_lab.check("sin(x)", {"x": 0.5}, dtypes=["float64"])
    assert result.status == "pass", result.message


@pytest.mark.slow
def test_the_cli_says_each_budget_in_one_line_and_runs_the_cases_before(
        tmp_path: Path) -> None:
    """At the default budgets: 1,500 lets naming a failed let (24 s to load before), and a
    file of 1,500 cases of a 4,000-part expression (78 s and 1 GB to load, then 15 minutes to
    check), each a 20 KB file through aliases."""
    lets = tmp_path / "lets.yaml"
    lets.write_text("cases:\n" + OK_CASE % 0 + "  - name: hostile\n"
                    + lets_after_a_failed_one(1_500) + OK_CASE % 2)
    cases = tmp_path / "cases.yaml"
    product = balanced(["x"] * 2048, "*")
    cases.write_text("cases:\n" + OK_CASE % 0 + f"  - &c {{inputs: {{x: 0.5}}, output: "
                     f"'{product} * nowhere'}}\n" + "  - *c\n" * 1_499)
    done = subprocess.run([sys.executable, "-m", "gradcheck_lab", "run", "lets.yaml",
                           "cases.yaml", "--json", "out.json"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 2, done.stdout[-3000:] + done.stderr[-3000:]
    assert "Traceback" not in done.stdout + done.stderr
    results = json.loads((tmp_path / "out.json").read_text())["results"]
    by_file: dict[str, list[dict]] = {}
    for result in results:
        by_file.setdefault(result["file"], []).append(result)
    assert [r["status"] for r in by_file["lets.yaml"]] == ["pass", "error", "pass"]
    assert by_file["lets.yaml"][1]["message"].startswith(
        "lets.yaml:55: cases[1].let.a48: the case's expressions would hold")
    # The cases of cases.yaml each fail at their last name, after building 2,047 nodes: the
    # first ~100 are loaded (200,000 nodes), the rest one error.
    loaded = by_file["cases.yaml"]
    assert loaded[0]["status"] == "pass"
    assert 2 + 90 < len(loaded) < 2 + 110, len(loaded)
    assert all(r["status"] == "error" for r in loaded[1:])
    assert "the file's load budget" in loaded[-1]["message"]
    assert all("\n" not in r["message"] for r in results)
