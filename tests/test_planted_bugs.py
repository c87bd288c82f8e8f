"""Planted backward bugs in custom torch.autograd.Functions (linear, conv2d) are caught, with
autograd named as the odd oracle and the right input flagged; the correct Functions pass."""

from __future__ import annotations

import pytest
import torch

import gradcheck_lab
from tests.conftest import CASES, DATA

PLANTED = DATA / "planted"

# bug -> the input whose gradient is wrong
BUGS = {
    "sign": "x",  # grad_x negated
    "missing_factor": "W",  # grad_W halved
    "ignored_grad_output": "x",  # grad_x computed from ones instead of grad_output
    "bias_averaged": "b",  # grad_b averaged over the batch instead of summed
}


def test_the_correct_function_passes() -> None:
    results = gradcheck_lab.run_file(CASES / "custom_linear.yaml")
    assert [r.status for r in results] == ["pass", "pass", "pass"]


@pytest.mark.parametrize("bug, flagged", sorted(BUGS.items()))
def test_planted_bug_is_caught_with_autograd_as_the_odd_oracle(bug: str, flagged: str) -> None:
    results = gradcheck_lab.run_file(PLANTED / f"linear_{bug}.yaml")
    assert len(results) == 3  # the layer at float64 and float32, and the loss
    for result in results:
        assert result.status == "fail", result.message
        gradient_mismatches = [m for m in result.mismatches if m.check == "gradient"]
        assert {m.input for m in gradient_mismatches} == {flagged}
        assert {m.odd_oracle for m in gradient_mismatches} == {"autograd"}
        said = f"autograd is the odd one out: {flagged} ("
        assert result.message.startswith(said), result.message


# conv2d: bug -> the input whose gradient is wrong
CONV_BUGS = {
    "wrong_padding": "x",  # grad_x cropped from the padded gradient's corner, not its centre
    "flipped_kernel": "x",  # grad_x spreads the kernel rotated by 180 degrees
}


@pytest.mark.slow
def test_the_correct_conv_function_passes() -> None:
    results = gradcheck_lab.run_file(CASES / "custom_conv.yaml")
    assert [r.status for r in results] == ["pass", "pass", "pass"], [r.message for r in results]


@pytest.mark.slow
@pytest.mark.parametrize("bug, flagged", sorted(CONV_BUGS.items()))
def test_planted_conv_bug_is_caught_with_autograd_as_the_odd_oracle(bug: str,
                                                                    flagged: str) -> None:
    results = gradcheck_lab.run_file(PLANTED / f"conv_{bug}.yaml")
    assert len(results) == 3  # the layer at float64 and float32, and the loss
    for result in results:
        assert result.status == "fail", result.message
        gradient_mismatches = [m for m in result.mismatches if m.check == "gradient"]
        assert {m.input for m in gradient_mismatches} == {flagged}
        assert {m.odd_oracle for m in gradient_mismatches} == {"autograd"}
        said = f"autograd is the odd one out: {flagged} ("
        assert result.message.startswith(said), result.message


class ScaledSquare(torch.autograd.Function):
    """x² with a backward scaled by ``factor`` everywhere, or at one element only."""

    factor = 1.0
    element: int | None = None

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x * x

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        scale = torch.ones_like(x)
        if ScaledSquare.element is None:
            scale *= ScaledSquare.factor
        else:
            scale[ScaledSquare.element] = ScaledSquare.factor
        return grad * 2 * x * scale


def check_scaled(factor: float, element: int | None) -> list:
    ScaledSquare.factor, ScaledSquare.element = factor, element
    try:
        return gradcheck_lab.check(
            output="sum(x * x)", inputs={"x": {"shape": [8], "init": "randn", "seed": 3}},
            impl=lambda x: ScaledSquare.apply(x).sum())
    finally:
        ScaledSquare.factor, ScaledSquare.element = 1.0, None


@pytest.mark.parametrize("factor, element", [(1 + 1e-5, None), (1 + 1e-3, 5)])
def test_small_backward_errors_are_caught_in_float64(factor: float, element: int | None) -> None:
    # torch.autograd.gradcheck's defaults (rtol 1e-3) pass a backward off by 0.1% everywhere.
    (result,) = check_scaled(factor, element)
    assert result.status == "fail"
    expected = set(range(8)) if element is None else {element}
    assert {m.index[0] for m in result.mismatches} <= expected
    assert result.mismatches[0].odd_oracle == "autograd"


def test_the_unscaled_function_passes() -> None:
    (result,) = check_scaled(1.0, None)
    assert result.status == "pass", result.message
