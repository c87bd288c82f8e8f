"""What a small check spends, and that spending less changes no verdict: the symbolic oracle
screens with the float64 sweep and runs exact sympy only where the sweep does not pass;
finite differences beside it screen along directions instead of taking every partial; the
cost a result reports counts from the door's entry. Bounded by counts, never by timings."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
import torch

import gradcheck_lab
from gradcheck_lab.oracles import autograd, finite_difference, symbolic
from gradcheck_lab.pipeline.cost import counted_from_here

SMALL_CASES = {
    "tanh_dot": ("sum(tanh(x) * w)", {"x": [0.5, -1.25, 2.0], "w": [1.5, -0.5, 3.0]}),
    "r144": ("((x + y) * z) ** 2", {"x": 1.0, "y": 3.0, "z": 3.0}),
    "mean_square": ("mean(x ** 2)", {"x": [1.0, 2.0, 3.0, 4.0]}),
    "softmax_ce": ("cross_entropy(x, t)", {
        "x": {"shape": [3, 4], "init": "randn", "seed": 2},
        "t": {"value": [0, 3, 1], "dtype": "int64"}}),
}


@pytest.mark.parametrize("name", sorted(SMALL_CASES))
def test_a_passing_small_case_is_screened_and_as_sensitive_as_the_exact_oracle(
        name: str) -> None:
    output, inputs = SMALL_CASES[name]
    (screened,) = gradcheck_lab.check(output, inputs, sensitivity=True)
    (exact,) = gradcheck_lab.check(output, inputs, sensitivity=True, symbolic="exact")
    assert screened.status == exact.status == "pass", (screened.message, exact.message)
    assert screened.oracles["symbolic"] == symbolic.METHOD_SCREEN
    assert exact.oracles["symbolic"] == symbolic.METHOD_EXACT
    # The screen is held to its round-off, not to sqrt(eps): the smallest planted error a
    # pass would catch is the exact oracle's, within the bisection's step (10**(1/64)).
    for which in ("one_element", "all_elements"):
        assert screened.sensitivity[which] <= exact.sensitivity[which] * 10 ** (1 / 64), which


def test_where_the_screen_does_not_pass_the_exact_oracle_decides() -> None:
    class Wrong(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return x.sin()

        @staticmethod
        def backward(ctx, grad):
            (x,) = ctx.saved_tensors
            return grad * x.cos() * (1 + 1e-5)  # off by 1e-5 relative: a planted bug

    (result,) = gradcheck_lab.check("sum(sin(x))", {"x": [0.3, 1.1, -0.7]},
                                    impl=lambda x: Wrong.apply(x).sum())
    assert result.status == "fail"
    assert result.oracles["symbolic"] == symbolic.METHOD_EXACT
    assert {m.odd_oracle for m in result.mismatches} == {"autograd"}


def test_beside_the_symbolic_oracle_finite_differences_screen_instead_of_every_partial(
        ) -> None:
    elements = 60
    (result,) = gradcheck_lab.check(
        impl=lambda x: (torch.tanh(x) * x).sum(),
        inputs={"x": {"shape": [elements], "init": "randn"}})
    assert result.status == "pass", result.message
    # Every partial would be 4 evaluations an element (240); symbolic and autograd agree on
    # every element, so the screen is the joint direction (one input: still fewer than its
    # per-input screening directions), whatever the size, plus the precision measurement's
    # handful.
    assert result.counts["finite_difference"] == finite_difference.JOINT_DIRECTIONS
    assert finite_difference.JOINT_DIRECTIONS < finite_difference.SCREENING_DIRECTIONS
    assert "random directions over all inputs at once" in result.oracles["finite_difference"]
    assert result.counts["finite_difference_evaluations"] < elements


@pytest.mark.parametrize(("scale", "shift"), [(1.0, 0.0), (1.0 + 1e-4, 0.0), (-1.0, 0.0),
                                              (1.0, 1e-3)],
                         ids=["correct", "off_1e-4", "sign", "forward_term"])
def test_the_joint_screen_of_one_input_changes_no_verdict(
        monkeypatch: pytest.MonkeyPatch, scale: float, shift: float) -> None:
    class Scaled(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return torch.tanh(x) + shift * x.sum()  # shift: a term the backward leaves out

        @staticmethod
        def backward(ctx, grad):
            (x,) = ctx.saved_tensors
            return scale * grad * (1 - torch.tanh(x) ** 2)

    def verdict() -> tuple[str, set[tuple[str | None, str | None]]]:
        (result,) = gradcheck_lab.check("sum(tanh(x) ** 2)",
                                        {"x": {"shape": [12], "init": "randn", "seed": 5}},
                                        impl=lambda x: (Scaled.apply(x) ** 2).sum())
        return result.status, {(m.input, m.odd_oracle) for m in result.mismatches}

    screened = verdict()
    from gradcheck_lab.oracles.finite_difference import oracle

    monkeypatch.setattr(oracle, "joint_screens", lambda *arguments: False)
    assert screened == verdict()
    assert screened[0] == ("pass" if (scale, shift) == (1.0, 0.0) else "fail")


def test_an_input_no_larger_than_its_directions_gets_its_partials() -> None:
    (result,) = gradcheck_lab.check(impl=lambda x: (x ** 3).sum(), inputs={"x": [0.5]})
    assert result.status == "pass", result.message
    # Its one partial, at the step as given, where two directions would cost as much.
    assert result.counts["finite_difference"] == 1


def _spin(cpu_seconds: float) -> None:
    until = time.process_time() + cpu_seconds
    while time.process_time() < until:
        pass


def test_the_reported_cost_counts_from_the_doors_entry() -> None:
    spec = ("sum(x * x)", {"x": [1.0, 2.0]})
    (plain,) = gradcheck_lab.check(*spec)
    with counted_from_here():
        _spin(0.2)  # CPU time the door spent before the pipeline (a first call, say)
        (spun,) = gradcheck_lab.check(*spec)
    # One forward+backward of this function takes well under 1 ms of CPU time, so 0.2 s of
    # CPU time before the check is hundreds of units more (CPU time: a busy machine does
    # not stretch it).
    assert spun.counts["cost_units"] - plain.counts["cost_units"] >= 100


MLP_INPUTS = {"x": {"shape": [6, 5], "init": "randn", "seed": 1, "requires_grad": False},
              "w1": {"shape": [4, 5], "init": "randn", "seed": 2},
              "b1": {"shape": [4], "init": "randn", "seed": 3},
              "w2": {"shape": [3, 4], "init": "randn", "seed": 4}}
MLP_SPEC = "sum(linear(tanh(linear(x, w1, b1)), w2) ** 2)"


def _mlp(x: torch.Tensor, w1: torch.Tensor, b1: torch.Tensor, w2: torch.Tensor,
         scale: float = 1.0, shift: float = 0.0) -> torch.Tensor:
    class Second(torch.autograd.Function):
        @staticmethod
        def forward(ctx, h, w):
            ctx.save_for_backward(h, w)
            return h @ w.t() + shift * torch.sin(h).sum()  # shift: a forward term the
                                                            # backward leaves out

        @staticmethod
        def backward(ctx, grad):
            h, w = ctx.saved_tensors
            return grad @ w, scale * grad.t() @ h

    return (Second.apply(torch.tanh(torch.nn.functional.linear(x, w1, b1)), w2) ** 2).sum()


def test_joint_directions_screen_a_passing_multi_input_check() -> None:
    (result,) = gradcheck_lab.check(MLP_SPEC, MLP_INPUTS, impl=_mlp)
    assert result.status == "pass", result.message
    assert "random directions over all inputs at once" in result.oracles["finite_difference"]
    # One centre and four evaluations a direction, whatever the number of inputs (three
    # here, which per-input screening would take 2 directions each of), and the precision
    # measurement's few.
    assert result.counts["finite_difference"] == finite_difference.JOINT_DIRECTIONS
    assert result.counts["finite_difference_evaluations"] < 3 * 4 * 2


@pytest.mark.parametrize(("scale", "shift"), [(1.0, 0.0), (1.0 + 1e-4, 0.0), (-1.0, 0.0),
                                              (1.0, 1e-3)],
                         ids=["correct", "w2_off_1e-4", "w2_sign", "forward_term"])
def test_the_joint_screen_changes_no_verdict(monkeypatch: pytest.MonkeyPatch, scale: float,
                                             shift: float) -> None:
    def impl(x, w1, b1, w2):
        return _mlp(x, w1, b1, w2, scale, shift)

    def verdict() -> tuple[str, set[tuple[str | None, str | None]]]:
        (result,) = gradcheck_lab.check(MLP_SPEC, MLP_INPUTS, impl=impl)
        return result.status, {(m.input, m.odd_oracle) for m in result.mismatches}

    screened = verdict()
    from gradcheck_lab.oracles.finite_difference import oracle

    monkeypatch.setattr(oracle, "joint_screens", lambda *arguments: False)
    assert screened == verdict()


def _batched_calls(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Each call of the autograd oracle's batched backward from here on: whether it batched."""
    calls: list[bool] = []
    batched_backward = autograd._batched_backward

    def counted(*arguments: Any) -> Any:
        found = batched_backward(*arguments)
        calls.append(found is not None)
        return found

    monkeypatch.setattr(autograd, "_batched_backward", counted)
    return calls


@pytest.mark.parametrize("factor", ["1", "1.0001", "-1"], ids=["correct", "off_1e-4", "sign"])
def test_batched_vjps_change_no_verdict(monkeypatch: pytest.MonkeyPatch, factor: str) -> None:
    """torch's own formulas are right: the planted error is in the spec written beside the
    impl (symbolic is then the odd one out), judged the same with autograd's VJPs batched."""
    x = torch.randn(3, 4, generator=torch.Generator().manual_seed(3), dtype=torch.float64)

    def verdict() -> tuple[str, set[tuple[str | None, str | None]], list[str]]:
        (result,) = gradcheck_lab.check(f"tanh(x) * sum(x * x) * {factor}", {"x": x},
                                        impl=lambda x: torch.tanh(x) * (x * x).sum())
        return (result.status, {(m.input, m.odd_oracle) for m in result.mismatches},
                sorted(m.check for m in result.mismatches))

    calls = _batched_calls(monkeypatch)
    batched = verdict()
    assert calls == [True]
    monkeypatch.setattr(autograd, "_batched_backward", lambda *arguments: None)
    assert batched == verdict()
    assert batched[0] == ("pass" if factor == "1" else "fail")


def test_batched_vjps_are_the_vjps_one_by_one(monkeypatch: pytest.MonkeyPatch) -> None:
    """The same numbers: each row of the batched call is the VJP of its cotangent, to the
    rounding of a reduction over 4 elements reordered (a few ulps of the largest term)."""
    def function(x: torch.Tensor) -> torch.Tensor:  # 12 outputs: the full Jacobian, 12 probes
        return torch.nn.functional.layer_norm(x, (4,)) * torch.tanh(x)

    calls = _batched_calls(monkeypatch)
    x = torch.randn(3, 4, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    (batched,) = gradcheck_lab.check(impl=function, inputs={"x": x})
    assert calls == [True]
    monkeypatch.setattr(autograd, "_batched_backward", lambda *arguments: None)
    (one_by_one,) = gradcheck_lab.check(impl=function, inputs={"x": x})
    assert batched.status == one_by_one.status == "pass"
    # The margins (worst error over its allowance, reported to 3 digits) measure the same
    # gradients: a row given to the wrong probe would fail, or move the margin by far more.
    assert batched.tolerance["margin"] == pytest.approx(one_by_one.tolerance["margin"], rel=1e-2)
    assert batched.tolerance["margin_at"] == one_by_one.tolerance["margin_at"]


def test_a_custom_functions_backward_is_never_batched(monkeypatch: pytest.MonkeyPatch) -> None:
    class Doubled(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return 2 * x

        @staticmethod
        def backward(ctx, grad):
            seen.append(tuple(grad.shape))  # one cotangent at a time, as training asks
            return 2 * grad

    seen: list[tuple[int, ...]] = []
    asked: list[object] = []
    monkeypatch.setattr(autograd, "_batched_backward", lambda *arguments: asked.append(1))
    (result,) = gradcheck_lab.check(impl=lambda x: torch.tanh(Doubled.apply(x)),
                                    inputs={"x": torch.randn(3, 4, dtype=torch.float64)})
    assert result.status == "pass", result.message
    assert asked == []
    assert seen and set(seen) == {(3, 4)}


def _hooked(hook: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[torch.Tensor], Any]:
    def function(x: torch.Tensor) -> torch.Tensor:
        y = x * 1
        if y.requires_grad:
            y.register_hook(hook)
        return torch.tanh(y)

    return function


def test_a_backward_that_runs_python_is_never_batched(monkeypatch: pytest.MonkeyPatch) -> None:
    """A hook is someone's code in the backward (as a custom Function's backward hidden in a
    CopySlices, or a checkpoint's recomputation): asked once per cotangent, as training asks
    it, never under vmap; the same function without it is batched."""
    calls = _batched_calls(monkeypatch)
    x = torch.randn(3, 4, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    (result,) = gradcheck_lab.check(impl=_hooked(lambda grad: grad * 1.0), inputs={"x": x})
    assert result.status == "pass", result.message
    assert calls == []
    (result,) = gradcheck_lab.check(impl=lambda x: torch.tanh(x * 1), inputs={"x": x})
    assert result.status == "pass", result.message
    assert calls == [True]


def test_a_stateful_hook_is_caught_as_it_is_one_probe_at_a_time() -> None:
    calls = [0]

    def drifting(grad: torch.Tensor) -> torch.Tensor:
        calls[0] += 1
        return grad * (1.0 + 1e-3 * calls[0])

    x = torch.randn(3, 4, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    (result,) = gradcheck_lab.check(impl=_hooked(drifting), inputs={"x": x})
    assert result.status == "fail"
    assert "nondeterministic" in {m.check for m in result.mismatches}
