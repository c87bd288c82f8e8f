"""The Python API: the same checks as a case file, from a test written in Python."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import gradcheck_lab
from gradcheck_lab import CaseError
from tests.conftest import CASES

SPEC = {"output": "sum(sin(x) * c)",
        "inputs": {"x": [0.5, 1.0, -2.0], "c": {"value": [2, 3, 4], "requires_grad": False}}}


class WrongSin(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return torch.sin(x)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad * torch.sin(x)  # should be cos


def test_a_spec_alone_passes() -> None:
    (result,) = gradcheck_lab.check(**SPEC)
    assert result.ok and result.status == "pass"
    assert result.counts["gradient_elements"] == 3


def test_a_correct_impl_passes_and_a_wrong_backward_fails() -> None:
    (good,) = gradcheck_lab.check(**SPEC, impl=lambda x, c: (torch.sin(x) * c).sum())
    assert good.status == "pass", good.message
    (bad,) = gradcheck_lab.check(**SPEC, impl=lambda x, c: (WrongSin.apply(x) * c).sum())
    assert bad.status == "fail"
    assert {m.odd_oracle for m in bad.mismatches} == {"autograd"}
    assert not bad.ok


def test_arrays_and_tensors_are_accepted_as_inputs() -> None:
    values = np.array([[0.5, -1.0], [2.0, 0.25]])
    for given in (values, torch.tensor(values)):
        (result,) = gradcheck_lab.check(output="sum(tanh(W @ W))", inputs={"W": given})
        assert result.status == "pass", result.message


def test_dtypes_and_expectations_carry_through() -> None:
    results = gradcheck_lab.check(output="mean(x**2)", inputs={"x": [1.0, -3.0]},
                                  expect={"grad": {"x": "x"}}, dtypes=["float64", "float32"])
    assert [(r.dtype, r.status) for r in results] == [("float64", "pass"), ("float32", "pass")]


def test_invalid_input_raises_case_error() -> None:
    with pytest.raises(CaseError, match="undefined name 'y'"):
        gradcheck_lab.check(output="sum(y)", inputs={"x": [1.0]})
    with pytest.raises(CaseError, match="unknown key"):
        gradcheck_lab.check(output="sum(x)", inputs={"x": [1.0]}, tolerance={"rtl": 1e-3})


def test_run_file_returns_the_cli_results() -> None:
    (result,) = gradcheck_lab.run_file(CASES / "r144.yaml")
    assert (result.case, result.status, result.counts["gradient_elements"]) == ("r144", "pass",
                                                                                3)
    assert result.to_json()["line"] == result.line
