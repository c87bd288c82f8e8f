"""The Python API: ``check(...)`` for a case written in Python, ``run_file(path)`` for a file."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import gradcheck_lab
from gradcheck_lab import CaseError, Result
from gradcheck_lab.settings import CHECK_THREADS
from tests.conftest import DATA, REPO

DOCSTRING_INPUTS: dict[str, Any] = {
    "x": [0.5, 1.0], "c": {"value": [2, 3], "requires_grad": False}}
SPEC: dict[str, Any] = {"output": "sum(sin(x) * c)", "inputs": DOCSTRING_INPUTS}


class SinWithWrongBackward(torch.autograd.Function):
    """sin, whose backward uses sin where cos belongs."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x)
        return torch.sin(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        return grad * torch.sin(x)


def correct_impl(x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    return (torch.sin(x) * c).sum()


def impl_with_wrong_backward(x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    return (SinWithWrongBackward.apply(x) * c).sum()


def only_result(results: list[Result]) -> Result:
    assert len(results) == 1, [r.label for r in results]
    return results[0]


def test_the_docstring_example_passes() -> None:
    result = only_result(gradcheck_lab.check(**SPEC))
    assert result.status == "pass" and result.ok, result.message
    assert (result.case, result.dtype, result.device) == ("check", "float64", "cpu")
    assert result.mismatches == []
    assert result.counts["gradient_elements"] == 2  # c is not differentiable
    assert set(result.oracles) == {"symbolic", "autograd", "finite_difference"}


def test_a_correct_python_impl_passes() -> None:
    result = only_result(gradcheck_lab.check(**SPEC, impl=correct_impl))
    assert result.status == "pass", result.message
    assert "impl" in result.oracles["autograd"]


def test_a_custom_function_with_a_wrong_backward_fails_naming_autograd() -> None:
    result = only_result(gradcheck_lab.check(**SPEC, impl=impl_with_wrong_backward))
    assert result.status == "fail" and not result.ok
    assert result.mismatches
    assert {m.odd_oracle for m in result.mismatches} == {"autograd"}
    assert {m.input for m in result.mismatches} == {"x"}
    worst = result.mismatches[0]
    index = worst.index[0]
    x, c = DOCSTRING_INPUTS["x"][index], DOCSTRING_INPUTS["c"]["value"][index]
    assert worst.values["symbolic"] == pytest.approx(np.cos(x) * c)
    assert worst.values["autograd"] == pytest.approx(np.sin(x) * c)


def test_an_impl_that_raises_is_an_error_result_not_an_exception() -> None:
    def broken(x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        raise ZeroDivisionError("no")

    result = only_result(gradcheck_lab.check(**SPEC, impl=broken))
    assert result.status == "error"
    assert "raised ZeroDivisionError: no" in result.message


@pytest.mark.parametrize(("overrides", "words"), [
    pytest.param({"output": "sum(y)"}, "undefined name 'y'", id="undefined name"),
    pytest.param({"output": "sum(x) +"}, "not a valid expression", id="syntax"),
    pytest.param({"inputs": {"x": [1.0, float("nan")]}}, "values must be finite",
                 id="nan input"),
    pytest.param({"inputs": {"x": np.array([])}}, "non-empty", id="empty array"),
    pytest.param({"tolerance": {"rtl": 1e-3}}, "unknown key", id="tolerance typo"),
    pytest.param({"dtypes": ["float128"]}, "dtypes", id="unknown dtype"),
    pytest.param({"name": "two words"}, "not a valid case name", id="bad name"),
])
def test_invalid_input_raises_case_error(overrides: dict[str, Any], words: str) -> None:
    arguments = {"output": "sum(x * x)", "inputs": {"x": [1.0, 2.0]}, **overrides}
    with pytest.raises(CaseError, match=words) as raised:
        gradcheck_lab.check(**arguments)
    assert "\n" not in str(raised.value)


@pytest.mark.parametrize("make_input", [
    pytest.param(lambda v: np.asarray(v), id="numpy float64"),
    pytest.param(lambda v: np.asarray(v, dtype=np.float32), id="numpy float32"),
    pytest.param(lambda v: torch.tensor(v), id="torch"),
    pytest.param(lambda v: torch.tensor(v, requires_grad=True), id="torch requires_grad"),
])
def test_numpy_arrays_and_torch_tensors_are_accepted_as_inputs(
        make_input: Callable[[Any], Any]) -> None:
    values = [[0.5, -1.0], [2.0, 0.25]]
    weights = make_input([[1.0, 2.0], [3.0, 4.0]])
    result = only_result(gradcheck_lab.check(
        output="sum(tanh(W @ W) * K)",
        inputs={"W": make_input(values), "K": {"value": weights, "requires_grad": False}},
        expect={"value": float(np.sum(np.tanh(np.asarray(values) @ np.asarray(values))
                                      * np.asarray([[1.0, 2.0], [3.0, 4.0]])))}))
    assert result.status == "pass", result.message
    assert result.counts["gradient_elements"] == 4


def test_a_wrong_expectation_fails_with_expect_odd() -> None:
    result = only_result(gradcheck_lab.check(output="sum(x**2)", inputs={"x": [1.0, -3.0]},
                                             expect={"grad": {"x": [2.0, 6.0]}}))
    assert result.status == "fail"
    (mismatch,) = result.mismatches
    assert (mismatch.check, mismatch.odd_oracle, mismatch.index) == ("expect", "expect", (1,))


def test_dtypes_and_devices_give_one_result_each() -> None:
    results = gradcheck_lab.check(output="mean(x**2)", inputs={"x": [1.0, -3.0]},
                                  expect={"grad": {"x": "x"}}, dtypes=["float64", "float32"])
    assert [(r.dtype, r.status) for r in results] == [("float64", "pass"), ("float32", "pass")]
    if not torch.cuda.is_available():
        cuda = only_result(gradcheck_lab.check(**SPEC, devices=["cuda"]))
        assert (cuda.status, cuda.ok) == ("skip", True)


def test_run_file_returns_one_passing_result_for_r144(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)
    result = only_result(gradcheck_lab.run_file("cases/r144.yaml"))
    assert result.file == "cases/r144.yaml"
    assert (result.case, result.status) == ("r144", "pass"), result.message
    assert result.counts["gradient_elements"] == 3
    assert result.to_json()["counts"]["gradient_elements"] == 3


def test_run_file_raises_on_a_missing_path_saying_where_it_looked(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # the README's example run outside the repository
    with pytest.raises(FileNotFoundError, match=r"no such case file: cases/r144\.yaml \("
                                                 r"relative paths are read from "):
        gradcheck_lab.run_file("cases/r144.yaml")


def test_run_file_keeps_going_past_a_broken_case(tmp_path: Path) -> None:
    path = tmp_path / "two.yaml"
    path.write_text("cases:\n  - name: good\n    inputs: {x: 2.0}\n    output: x * x\n"
                    "  - name: bad\n    inputs: {x: 2.0}\n    output: x *\n", encoding="utf-8")
    results = gradcheck_lab.run_file(path)
    assert [(r.case, r.status) for r in results] == [("good", "pass"), ("bad", "error")]
    assert results[1].message.endswith(":7: cases[1].output: not a valid expression: "
                                       "invalid syntax")


@pytest.mark.slow
def test_run_file_reports_a_planted_bug() -> None:
    results = gradcheck_lab.run_file(DATA / "planted" / "linear_sign.yaml")
    assert results and all(r.status == "fail" for r in results)
    assert all({m.odd_oracle for m in r.mismatches} == {"autograd"} for r in results)


def test_assert_gradients_raises_with_the_command_lines_report() -> None:
    with pytest.raises(AssertionError) as caught:
        gradcheck_lab.assert_gradients(**SPEC, impl=lambda x, c: (
            SinWithWrongBackward.apply(x) * c).sum())
    text = str(caught.value)
    lines = text.splitlines()
    assert lines[0].startswith("<check>: check[float64-cpu]: autograd is the odd one out: x")
    assert lines[1].split()[:3] == ["what", "where", "odd"]  # the mismatch table, with values
    assert any(line.startswith("x (2)") and "autograd" in line for line in lines)
    assert "SinWithWrongBackward.backward (" in text
    assert lines[-1].startswith("dtype float64, device cpu, seed 0")


def test_assert_gradients_returns_the_results_of_a_pass() -> None:
    results = gradcheck_lab.assert_gradients(**SPEC)
    assert [r.status for r in results] == ["pass"]


def counts_threads(x):
    """tanh summed, recording torch's thread count while the check calls it."""
    seen_threads.append(torch.get_num_threads())
    return torch.tanh(x).sum()


seen_threads: list[int] = []


def test_threads_hold_during_the_check_and_are_put_back_after_it() -> None:
    before = torch.get_num_threads()
    wanted = 2 if before != 2 else 3
    seen_threads.clear()
    (result,) = gradcheck_lab.check("sum(tanh(x))", {"x": [0.5, -1.0]}, impl=counts_threads,
                                    threads=wanted)
    assert result.status == "pass", result.message
    assert seen_threads and set(seen_threads) == {wanted}
    assert torch.get_num_threads() == before
    seen_threads.clear()
    torch.set_num_threads(wanted)
    try:
        gradcheck_lab.check("sum(tanh(x))", {"x": [0.5, -1.0]}, impl=counts_threads)
        # Not given: the default every door has (the option table's), and put back after.
        assert set(seen_threads) == {CHECK_THREADS} and torch.get_num_threads() == wanted
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("threads", [0, -1, 1.5, True, "2"])
def test_a_thread_count_that_is_not_a_positive_int_is_refused(threads: Any) -> None:
    with pytest.raises(CaseError, match="threads: expected a positive number of threads"):
        gradcheck_lab.check("sum(x)", {"x": [1.0]}, threads=threads)
