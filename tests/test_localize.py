"""Localization of spec-only failures: when torch's own ops and our rules disagree, the note
names the let step whose backward (or forward) parts from the rules."""

from __future__ import annotations

import dataclasses

import pytest
import torch

import gradcheck_lab
from gradcheck_lab.compare import Verdict
from gradcheck_lab.compare.tolerances import rule_for
from gradcheck_lab.diagnose.localize import localize
from gradcheck_lab.ops import OPS

LETS = {"a": "linear(x, W)", "b": "tanh(a) * 2", "c": "sigmoid(b) + b"}
SMALL = {"x": [0.5, -1.0, 2.0], "W": {"shape": [3, 3], "init": "randn"}}  # exact oracle
LARGE = {"x": {"shape": [4, 10], "init": "randn"},  # over 64 elements: the rule sweep
         "W": {"shape": [7, 10], "init": "randn"}}


class TanhWrongBackward(torch.autograd.Function):
    """tanh with the right forward and a backward 1% too large."""

    @staticmethod
    def forward(ctx, a):
        y = torch.tanh(a)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, g):
        (y,) = ctx.saved_tensors
        return g * (1 - y * y) * 1.01


@pytest.fixture
def wrong_tanh_backward(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(OPS, "tanh", dataclasses.replace(
        OPS["tanh"], torch=lambda args, params: TanhWrongBackward.apply(args[0])))


def only_note(result) -> str:
    notes = [n for n in result.notes if "diverges" in n or "localize" in n]
    assert len(notes) == 1, result.notes
    return notes[0]


@pytest.mark.parametrize("inputs", [SMALL, LARGE], ids=["exact", "sweep"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_a_wrong_torch_backward_is_localized_to_its_let_step(wrong_tanh_backward, inputs,
                                                              dtype) -> None:
    (result,) = gradcheck_lab.check(output="sum(c ** 2)", inputs=inputs, let=LETS,
                                    dtypes=[dtype])
    assert result.status == "fail"
    note = only_note(result)
    assert note.startswith("the first step whose gradient diverges: let.b (tanh(a) * 2)")
    assert "tanh()" in note and "let.a" not in note and "let.c" not in note
    assert "0.01 relative" in note  # the planted 1%


def test_a_wrong_backward_in_the_output_expression_names_the_output(
        wrong_tanh_backward) -> None:
    (result,) = gradcheck_lab.check(output="sum(tanh(b))", inputs=SMALL,
                                    let={"a": "linear(x, W)", "b": "sigmoid(a) * 3"})
    assert result.status == "fail"
    assert only_note(result).startswith(
        "the first step whose gradient diverges: output (sum(tanh(b)))")


def test_a_wrong_forward_names_the_first_step_whose_value_diverges(monkeypatch) -> None:
    tanh = OPS["tanh"]
    monkeypatch.setitem(OPS, "tanh", dataclasses.replace(
        tanh, torch=lambda args, params: torch.tanh(args[0]) * 1.01))
    (result,) = gradcheck_lab.check(output="sum(c ** 2)", inputs=SMALL, let=LETS)
    assert result.status == "fail"
    note = only_note(result)
    assert note.startswith("the first step whose value diverges: let.b (tanh(a) * 2)")


def test_passing_cases_and_impl_cases_get_no_localization(wrong_tanh_backward) -> None:
    (passing,) = gradcheck_lab.check(output="sum(c ** 2)", inputs=SMALL,
                                     let={"a": "linear(x, W)", "c": "sigmoid(a) + a"})
    assert passing.status == "pass"
    assert not any("diverges" in n for n in passing.notes)
    # With an impl, autograd runs the impl, not torch's lowering of the spec: a failure is
    # the impl's, and there is nothing to localize between torch's ops and our rules.
    (with_impl,) = gradcheck_lab.check(output="sum(x ** 2)", inputs={"x": [1.0, 2.0]},
                                       impl=lambda x: 1.5 * (x ** 2).sum())
    assert with_impl.status == "fail"
    assert not any("diverges" in n for n in with_impl.notes)


def test_localize_never_raises() -> None:
    (result,) = gradcheck_lab.check(output="sum(x ** 2)", inputs={"x": [1.0, 2.0]})
    note = localize(None, None, (), Verdict("fail", ""), rule_for("float64"), "cpu")
    assert note.startswith("could not localize the gradient disagreement")
    assert result.status == "pass"


@pytest.mark.parametrize("inputs", [SMALL, LARGE], ids=["jacobian", "cotangents"])
def test_a_tensor_output_is_localized_through_the_worst_probe(wrong_tanh_backward,
                                                               inputs) -> None:
    (result,) = gradcheck_lab.check(output="c * 3", inputs=inputs, let=LETS)
    assert result.status == "fail"
    note = only_note(result)
    assert note.startswith("the first step whose gradient diverges: let.b (tanh(a) * 2)")
    assert "output[" in note or "cotangent" in note  # which probe it was seen through
