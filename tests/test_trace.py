"""Specs traced from the impl's own forward (gradcheck_lab/trace/): a case with an impl and no
output gets its program from the aten ops the forward ran, and the three oracles then run as
for a written spec."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from gradcheck_lab import check
from gradcheck_lab.casefile import build_case
from gradcheck_lab.casefile.yaml_reader import read_yaml
from gradcheck_lab.errors import CaseError
from gradcheck_lab.pipeline import run_case

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "tests" / "data" / "traced"
FUNCTIONS = DATA / "functions.py"


def traced(name: str, inputs: dict[str, Any], **keys: Any) -> list[Any]:
    case = build_case({"name": name, "inputs": inputs, "impl": f"functions.py:{name}", **keys},
                      label=str(DATA / "cases.yaml"), base_dir=DATA, default_name=name)
    return list(run_case(case))


def randn(*shape: int, seed: int = 0) -> dict[str, Any]:
    return {"shape": list(shape), "init": "randn", "seed": seed}


def test_a_custom_function_passes_on_its_traced_forward() -> None:
    (result,) = traced("square_rows", {"x": randn(3, 4)})
    assert result.status == "pass", result.message
    assert result.oracles["symbolic"].endswith("spec: traced from the impl's forward (2 ops)")
    assert any("a traced spec is as right as the forward" in note for note in result.notes)


def test_a_wrong_backward_fails_with_autograd_named() -> None:
    (result,) = traced("square_rows_wrong", {"x": randn(3, 4)})
    assert result.status == "fail"
    assert "autograd is the odd one out: x" in result.message


def test_a_plain_torch_mlp_at_mnist_size_passes_under_the_sweep() -> None:
    inputs = {"x": {"shape": [64, 784], "init": "uniform", "low": 0, "high": 1,
                    "requires_grad": False},
              "W1": {"shape": [128, 784], "init": "uniform", "low": -0.0357, "high": 0.0357},
              "b1": {"shape": [128], "init": "uniform", "low": -0.0357, "high": 0.0357},
              "W2": {"shape": [10, 128], "init": "uniform", "low": -0.0884, "high": 0.0884},
              "b2": {"shape": [10], "init": "uniform", "low": -0.0884, "high": 0.0884},
              "target": {"shape": [64], "init": "randint", "low": 0, "high": 10}}
    (result,) = traced("mlp", inputs)
    assert result.status == "pass", result.message
    assert result.oracles["symbolic"].startswith("rule sweep")
    assert result.counts["symbolic_vs_autograd"] == 128 * 784 + 128 + 10 * 128 + 10


def test_in_place_ops_rebind_the_tensor_they_change() -> None:
    # relu(2x + 1) clamped at 2.5, times x: wrong if add_ or mul_ were dropped or applied to x.
    (result,) = traced("in_place", {"x": [0.3, -0.2, 0.9, -0.7]})
    assert result.status == "pass", result.message


def test_a_cast_inside_the_forward_is_the_identity_and_reported() -> None:
    results = traced("half_precision_inside", {"x": randn(5), "w": randn(5, seed=1)},
                     dtypes=["float64", "float32"])
    for result in results:
        assert result.status == "pass", (result.dtype, result.message)
        assert any("casts to float32" in note for note in result.notes)


def test_a_tuple_output_is_checked_on_every_part() -> None:
    results = traced("softmax_attention", {"q": randn(2, 3, 4), "k": randn(2, 5, 4, seed=1)})
    (result,) = results
    assert result.status == "pass", result.message
    assert result.counts["gradient_elements"] == 2 * 3 * 4 + 2 * 5 * 4


def test_control_flow_is_resolved_at_the_traced_point() -> None:
    (positive,) = traced("depends_on_value", {"x": [0.5, 1.0]})
    (negative,) = traced("depends_on_value", {"x": [-0.5, -1.0]})
    assert positive.status == negative.status == "pass"


def line_of(text: str) -> int:
    """The line of functions.py that holds ``text``: what an error must point at."""
    lines = FUNCTIONS.read_text().splitlines()
    return next(number for number, line in enumerate(lines, 1) if text in line)


@pytest.mark.parametrize("name", ["constant_weights", "view_mutated"])
def test_constants_and_writes_into_views_are_traced(name: str) -> None:
    (result,) = traced(name, {"x": [0.1, 0.2, 0.3]})
    assert result.status == "pass", result.message
    assert "spec: traced from the impl's forward" in result.oracles["symbolic"]


def test_what_cannot_be_translated_is_checked_two_ways_and_says_why() -> None:
    (result,) = traced("unsupported", {"x": [0.1, 0.2, 0.3]})
    assert result.status == "pass", result.message
    assert result.oracles["symbolic"] == (
        f"not run: the traced forward ran aten.erfinv.default (at functions.py:"
        f"{line_of('torch.erfinv')}), which the symbolic oracle cannot follow: it has no "
        "translation into the case language yet")
    assert result.counts["symbolic_vs_autograd"] == 0
    # Every element, at every cotangent: finite differences are the only reference.
    assert result.counts["finite_difference"] == 3 * result.counts["probes"]
    assert "(two oracles: no symbolic spec)" in result.message


def test_the_python_api_traces_without_output() -> None:
    import torch

    def double_sin(x: torch.Tensor) -> torch.Tensor:
        return torch.sin(x) * 2

    (result,) = check(impl=double_sin, inputs={"x": [0.2, 0.4]})
    assert result.status == "pass", result.message


def test_a_case_without_output_needs_an_impl_and_no_written_spec_keys() -> None:
    with pytest.raises(CaseError, match=re.escape("missing required key 'output' (or give impl:")):
        check(inputs={"x": [0.2]})
    with pytest.raises(CaseError, match="let: needs a written output:"):
        build_case({"inputs": {"x": [0.2]}, "impl": "functions.py:in_place",
                    "let": {"y": "x"}}, label="t", base_dir=DATA, default_name="t")


def _without_output(path: Path) -> list[dict[str, Any]]:
    """The file's cases that have an impl, with their written spec removed, read as the tool
    reads them."""
    data = read_yaml(path.read_text()).data
    cases = data.get("cases", [data])
    return [{k: v for k, v in case.items() if k not in ("output", "let", "expect")}
            for case in cases if "impl" in case]


BUNDLED = sorted(p for p in (REPO / "cases").glob("*.yaml") if "impl:" in p.read_text())
PLANTED = sorted((REPO / "tests" / "data" / "planted").glob("*.yaml"))
ZOO_BUGS = sorted((REPO / "tests" / "data" / "zoo" / "bugs").glob("*.yaml"))
# Not a wrong VJP but state kept on ctx: found by the rerun, with that diagnosis, traced or not.
NOT_A_VJP_BUG = {"stateful_square_accumulates_on_ctx.yaml"}


@pytest.mark.parametrize("path", BUNDLED, ids=lambda p: p.name)
def test_every_bundled_case_with_an_impl_passes_with_its_output_removed(path: Path) -> None:
    assert BUNDLED, "no bundled case has an impl"
    for data in _without_output(path):
        for result in run_case(build_case(data, label=str(path), base_dir=path.parent,
                                          default_name="c")):
            assert result.status == "pass", (result.case, result.dtype, result.message)
            assert "spec: traced" in result.oracles["symbolic"]


@pytest.mark.slow
@pytest.mark.parametrize("path", PLANTED + [p for p in ZOO_BUGS if p.name not in NOT_A_VJP_BUG],
                         ids=lambda p: p.name)
def test_every_planted_bug_fails_with_autograd_named_on_a_traced_spec(path: Path) -> None:
    for data in _without_output(path):
        for result in run_case(build_case(data, label=str(path), base_dir=path.parent,
                                          default_name="c")):
            assert result.status == "fail", (result.case, result.dtype, result.message)
            assert "autograd is the odd one out" in result.message


@pytest.mark.slow
def test_explain_shows_the_traced_op_chain(tmp_path: Path) -> None:
    import shutil
    import subprocess
    import sys

    shutil.copy(FUNCTIONS, tmp_path / "functions.py")
    (tmp_path / "case.yaml").write_text(
        "name: rows\ninputs:\n  x: {shape: [3, 4], init: randn}\nimpl: functions.py:square_rows\n")
    done = subprocess.run([sys.executable, "-m", "gradcheck_lab", "explain",
                           str(tmp_path / "case.yaml")], capture_output=True, text=True,
                          check=True)
    assert "output = sum(x * x, dim=(1,))" in done.stdout
    assert "spec traced from the impl's forward" in done.stdout


def test_each_point_is_traced_on_its_own_path() -> None:
    # exp(x) where sum(x) > 0, -x elsewhere: a spec traced once at the first point would be
    # wrong at a point on the other path. Seeded draws of 3 normals give both signs of the sum.
    results = traced("depends_on_value", {"x": randn(3, seed=4)}, points=6)
    (result,) = results
    assert result.status == "pass", result.message
    assert any("traced at each point" in note for note in result.notes)


def test_the_symbolic_oracle_reads_the_traces_own_evaluation_at_the_traced_point(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from gradcheck_lab.oracles import symbolic

    evaluated: list[int] = []
    interpret = symbolic.interpret

    def counted(*arguments: Any) -> Any:
        evaluated.append(1)
        return interpret(*arguments)

    monkeypatch.setattr(symbolic, "interpret", counted)
    (result,) = traced("square_rows", {"x": randn(3, 4)})
    assert result.status == "pass", result.message
    assert evaluated == []  # the nodes the trace checked against the forward, read again
    # A second point is traced there and read there too; a point moved off a kink is not
    # the traced one and is evaluated anew (what holds_at tells apart, below).
    (result,) = traced("square_rows", {"x": randn(3, 4)}, points=2)
    assert result.status == "pass", result.message
    assert evaluated == []


def test_a_traced_evaluation_holds_at_its_own_inputs_bit_for_bit() -> None:
    from gradcheck_lab.program.graph import EvaluatedAt

    at = EvaluatedAt({"x": np.array([0.0, 1.5])}, {})
    assert at.holds_at({"x": np.array([0.0, 1.5])})
    assert not at.holds_at({"x": np.array([-0.0, 1.5])})  # 1/x is -inf there, not inf
    assert not at.holds_at({"x": np.array([0.0, 1.5], dtype=np.float32)})
    assert not at.holds_at({"x": np.array([[0.0, 1.5]])})
    assert not at.holds_at({})


def test_where_a_step_was_made_is_told_by_file_not_by_code_alone() -> None:
    """Two helpers of the same source in two files have equal code objects: the one inside
    torch is skipped, the user's is where the step was made."""
    import os

    import torch

    from gradcheck_lab.trace import tape

    source = "def helper(probe):\n    return probe()\n"
    inside: dict[str, Any] = {}
    outside: dict[str, Any] = {}
    exec(compile(source, os.path.join(os.path.dirname(torch.__file__), "helper.py"), "exec"),
         inside)
    exec(compile(source, os.path.join("somewhere", "model.py"), "exec"), outside)
    assert inside["helper"].__code__ == outside["helper"].__code__

    def probe() -> str:
        return tape.user_frame()  # the frame two up: the helper's

    assert "model.py" not in inside["helper"](probe)
    assert outside["helper"](probe) == " (at model.py:2)"
