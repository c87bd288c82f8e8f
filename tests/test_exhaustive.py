"""`--fd exhaustive`: every partial of every input by finite differences, batched, at about
2N forwards for N elements."""

from __future__ import annotations

from typing import Any

import pytest
import torch

import gradcheck_lab
from gradcheck_lab import check
from gradcheck_lab.oracles.finite_difference.exhaustive import SAMPLE

INPUTS = {"x": {"shape": [40, 60], "init": "randn", "seed": 5}}  # 2,400 > every-partial size
SPEC = "sum(tanh(x) ** 2)"


def test_every_partial_is_estimated_at_about_two_forwards_each() -> None:
    (auto,) = check(SPEC, INPUTS)
    (result,) = check(SPEC, INPUTS, fd="exhaustive")
    assert result.status == "pass", result.message
    assert auto.counts["finite_difference"] < 2400  # projections and focus elements only
    assert result.counts["finite_difference"] == 2400
    evaluations = result.counts["finite_difference_evaluations"]
    # 2N central differences, the centre, 4 more per sampled full error bar, and the two plain
    # calls that the first batch's first and last batched values are checked against.
    assert 2 * 2400 < evaluations <= 2 * 2400 + 1 + 4 * SAMPLE + 2
    # The lowered spec is batched: vmap traces tanh, pow and sum.
    assert "batched with vmap (batch size from memory)" in result.oracles["finite_difference"]


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


def test_the_batch_size_comes_from_memory_not_from_timing() -> None:
    from gradcheck_lab.casefile import build_case
    from gradcheck_lab.oracles.finite_difference.exhaustive import (
        BATCH_BYTES,
        MAX_BATCH,
        batch_size,
    )

    case = build_case({"inputs": {"x": {"shape": [64, 784], "init": "randn",
                                        "requires_grad": False},
                                  "W": {"shape": [128, 784], "init": "randn"},
                                  "v": {"shape": [128], "init": "randn"}},
                       "output": "sum(tanh(linear(x, W)) @ v)"},
                      label="t", base_dir=None, default_name="t")
    program = case.program
    size = batch_size(program, "W")
    # A perturbed copy holds W and what depends on it: linear, tanh, the product, the sum.
    per_copy = 8 * (128 * 784 + 2 * 64 * 128 + 64 + 1)
    assert size == BATCH_BYTES // per_copy
    assert size * per_copy <= BATCH_BYTES < (size + 1) * per_copy
    assert batch_size(program, "v") == MAX_BATCH  # v's copies are small: the cap holds
    assert batch_size(program, "W") == size  # the same on every call: nothing was timed


def batch_aware(x):
    # Computes another function when batched: vmap traces it, but its values are not a plain
    # call's, so exhaustive differences must not use them.
    if torch._C._functorch.is_batchedtensor(x):
        return (torch.tanh(x) ** 2).sum() * 2
    return (torch.tanh(x) ** 2).sum()


def test_batched_values_unlike_a_plain_calls_fall_back_to_plain_calls() -> None:
    small = {"x": {"shape": [3, 4], "init": "randn", "seed": 5}}
    (result,) = check(SPEC, small, fd="exhaustive", impl=batch_aware)
    assert result.status == "pass", result.message
    assert ("vmap's values differ from a plain call's by more than round-off"
            in result.oracles["finite_difference"])


MLP = {"x": {"shape": [6, 5], "init": "randn", "seed": 1, "requires_grad": False},
       "W": {"shape": [4, 5], "init": "randn", "seed": 2},
       "b": {"shape": [4], "init": "randn", "seed": 3}}


def test_the_readers_of_a_moved_input_are_evaluated_only_where_it_reaches() -> None:
    (result,) = check("sum(tanh(linear(x, W, b)) ** 2)", MLP, fd="exhaustive")
    assert result.status == "pass", result.message
    assert ("the ops reading W, b evaluated only where a moved element reaches"
            in result.oracles["finite_difference"])


def test_a_wrong_reach_rule_is_caught_by_the_plain_call_it_is_checked_against(
        monkeypatch) -> None:
    import dataclasses

    from gradcheck_lab.ops import OPS

    linear = OPS["linear"]

    def shifted(args, position, indices, values, out, evaluate):
        # Plants a fault: the batch's last copy comes out 0.1 % off.
        rows = linear.moves(args, position, indices, values, out, evaluate)
        rows[-1] *= 1.001
        return rows

    monkeypatch.setitem(OPS, "linear", dataclasses.replace(linear, moves=shifted))
    (result,) = check("sum(tanh(linear(x, W, b)) ** 2)", MLP, fd="exhaustive")
    assert result.status == "pass", result.message
    method = result.oracles["finite_difference"]
    assert "vmap's values differ from a plain call's by more than round-off" in method
    assert "evaluated only where" not in method


def test_the_full_error_bars_are_the_per_element_ones() -> None:
    """The sampled full bars (h vs 2h, fourth difference) are the bars ``partial_difference``
    takes one element at a time, bit for bit: the same moved values by plain calls, the same
    formula, each column summed as one; f(x ± h) taken from the partials' plain calls or
    evaluated again alike. An impl vmap batches included: its batched values may differ from
    a plain call's by round-off, which is what a bar measures."""
    import numpy as np

    from gradcheck_lab.casefile import build_case
    from gradcheck_lab.oracles.finite_difference import CENTER, evaluate_at, partial_difference
    from gradcheck_lab.oracles.finite_difference.exhaustive import _Batched, _FullBars
    from gradcheck_lab.subject.function import Subject
    from gradcheck_lab.subject.points import make_point
    from gradcheck_lab.subject.precision import FLOAT64

    case = build_case({"inputs": {"x": {"shape": [3, 5], "init": "randn", "seed": 2}},
                       "output": "sum(x * x, dim=1)"},  # the shape the impl returns
                      label="<t>", base_dir=None, default_name="bars",
                      impl=lambda x: torch.lgamma(x @ x.T + 3.0).sum(dim=0))
    point = make_point(case, "float64")
    function = Subject.on(case, "float64", "cpu").reference
    center = evaluate_at(function, point.values, CENTER)
    magnitudes = np.abs(np.random.default_rng(0).standard_normal((2, center.size)))
    base = function.input_tensors(point.values, center=True)
    steps = FLOAT64.relative_step * torch.clamp(base["x"].reshape(-1).abs(), min=1.0)
    batched = _Batched(function, base, [0], 1e-9)
    batched("x", torch.arange(15), steps)  # the partials' first batch: vmap, as checked
    assert batched.vmapped["x"]
    flats = np.array([0, 7, 3, 14, 9])
    x = point.values["x"]

    def at(moved: np.ndarray) -> np.ndarray:
        return evaluate_at(function, {"x": moved}, frozenset({"x"}))

    def moved_by(flat: int, step: float) -> np.ndarray:
        moved = x.copy().reshape(-1)
        moved[flat] += step
        return at(moved.reshape(x.shape))

    one_at_a_time = np.stack([magnitudes @ partial_difference(at, x, int(flat), center, 0.0)[1]
                              for flat in flats], axis=1)
    known = {int(flat): (moved_by(flat, float(steps[flat])), moved_by(flat, -float(steps[flat])))
             for flat in flats}
    for at_h in ({}, known):
        bars = _FullBars(batched, "x", steps, center, magnitudes, 0.0, FLOAT64, 4, at_h)
        np.testing.assert_array_equal(bars.of(flats), one_at_a_time)


def test_a_sampled_error_bar_takes_two_calls_where_its_partial_took_f_at_x_plus_minus_h(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the symbolic oracle every partial is taken; where they are plain calls (vmap
    cannot trace the function), a sampled element's full bar reads f(x ± h) from its
    partial's and calls the function twice more (f(x ± 2h)), not four times."""
    import numpy as np

    from gradcheck_lab.oracles.finite_difference import exhaustive

    calls: list[int] = []
    during: list[int] = []
    error_bars = exhaustive._error_bars

    def counted(*args: Any, **keywords: Any) -> Any:
        before = len(calls)
        try:
            return error_bars(*args, **keywords)
        finally:
            during.append(len(calls) - before)

    monkeypatch.setattr(exhaustive, "_error_bars", counted)

    class NumpySine(torch.autograd.Function):  # numpy inside: no trace, no vmap
        @staticmethod
        def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
            calls.append(1)
            ctx.save_for_backward(x)
            return torch.from_numpy(np.sin(x.detach().numpy()))

        @staticmethod
        def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
            (x,) = ctx.saved_tensors
            return grad * torch.cos(x)

    x = torch.rand(6, 7, dtype=torch.float64, requires_grad=True)
    assert gradcheck_lab.gradcheck(NumpySine.apply, (x,))
    assert during == [2 * SAMPLE]
