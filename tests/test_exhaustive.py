"""`--fd exhaustive`: every partial of every input by finite differences, batched, at about
2N forwards for N elements."""

from __future__ import annotations

import torch

from gradcheck_lab import check
from gradcheck_lab.oracles.exhaustive import SAMPLE

INPUTS = {"x": {"shape": [40, 60], "init": "randn", "seed": 5}}  # 2,400 > every-partial size
SPEC = "sum(tanh(x) ** 2)"


def test_every_partial_is_estimated_at_about_two_forwards_each() -> None:
    (auto,) = check(SPEC, INPUTS)
    (result,) = check(SPEC, INPUTS, fd="exhaustive")
    assert result.status == "pass", result.message
    assert auto.counts["finite_difference"] < 2400  # projections and focus elements only
    assert result.counts["finite_difference"] == 2400
    evaluations = result.counts["finite_difference_evaluations"]
    # 2N central differences, the centre, and 4 more per sampled full error bar.
    assert 2 * 2400 < evaluations <= 2 * 2400 + 1 + 4 * SAMPLE
    # vmap or plain calls, whichever was faster on the first chunk here.
    assert "exhaustive: every partial" in result.oracles["finite_difference"]


class OneElementOff(torch.autograd.Function):
    """tanh(x)**2 summed, whose backward is off by 1e-4 relative at one element only."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return (torch.tanh(x) ** 2).sum()

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        t = torch.tanh(x)
        result = grad * 2 * t * (1 - t * t)
        result[17, 3] *= 1 + 1e-4
        return result


def test_finite_differences_name_the_odd_element_themselves() -> None:
    (result,) = check(SPEC, INPUTS, fd="exhaustive", impl=OneElementOff.apply)
    assert result.status == "fail"
    (mismatch,) = result.mismatches
    assert (mismatch.index, mismatch.odd_oracle) == ((17, 3), "autograd")
    assert abs(mismatch.values["finite_difference"] - mismatch.values["symbolic"]) < 1e-7


def branching(x):
    # Python control flow on a tensor's value: torch.func.vmap cannot trace it.
    if float(x.detach().sum()) > 1e9:
        return x.sum()
    return (torch.tanh(x) ** 2).sum()


def test_a_function_vmap_cannot_trace_falls_back_to_plain_calls() -> None:
    small = {"x": {"shape": [3, 4], "init": "randn", "seed": 5}}
    (result,) = check(SPEC, small, fd="exhaustive", impl=branching)
    assert result.status == "pass", result.message
    assert "plain calls" in result.oracles["finite_difference"]  # vmap raised on it
    assert result.counts["finite_difference"] == 12


def test_the_result_states_its_cost_in_forward_backward_units() -> None:
    (result,) = check(SPEC, {"x": {"shape": [3, 4], "init": "randn", "seed": 5}})
    # At the least the check runs a forward and backward per oracle it asks autograd for.
    assert isinstance(result.counts["cost_units"], int) and result.counts["cost_units"] >= 2
