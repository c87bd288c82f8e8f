"""The function under test's own contract, beyond its numbers: the same gradients on a second
run (no state, no races), and its inputs left as they were."""

from __future__ import annotations

import pytest
import torch

from gradcheck_lab import check

SPEC = "sum(x * x)"
INPUTS = {"x": [0.5, -1.5, 2.0]}


class CountingSquare(torch.autograd.Function):
    """x*x whose backward drifts: it scales by 1 + calls * 1e-12 (a stateful backward)."""

    calls = 0

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x * x

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        CountingSquare.calls += 1
        return grad * 2 * x * (1 + CountingSquare.calls * 1e-12)


def stateful(x):
    return CountingSquare.apply(x).sum()


def test_a_stateful_backward_fails_as_nondeterministic() -> None:
    # Its drift (1e-12 relative) is far below the float64 tolerance: only the second run on a
    # fresh graph can tell, and it must be exactly the same on cpu.
    (result,) = check(SPEC, INPUTS, impl=stateful)
    assert result.status == "fail", result.message
    assert "nondeterministic backward" in result.message
    checks = {m.check for m in result.mismatches}
    assert checks == {"nondeterministic"}
    assert result.tolerance["nondeterminism"] == "second run identical (cpu)"
    assert {m.oracles for m in result.mismatches} == {("autograd", "again, same graph")}


def test_nondet_tol_allows_a_declared_amount_of_nondeterminism() -> None:
    (result,) = check(SPEC, INPUTS, impl=stateful, nondet_tol=1e-9)
    assert result.status == "pass", result.message
    assert "1e-09" in result.tolerance["nondeterminism"]


def test_a_deterministic_backward_passes_the_second_run() -> None:
    (result,) = check(SPEC, INPUTS, impl=lambda x: (x * x).sum())
    assert result.status == "pass", result.message


def scales_its_input_in_place(x):
    with torch.no_grad():
        x.mul_(2)  # the caller's tensor is now doubled
    return (x * x).sum() / 4


def test_an_impl_that_modifies_its_input_in_place_fails() -> None:
    (result,) = check(SPEC, INPUTS, impl=scales_its_input_in_place)
    assert result.status == "fail"
    assert "modifies this input in place" in result.message
    in_place = [m for m in result.mismatches if m.check == "in_place"]
    assert in_place and in_place[0].input == "x" and in_place[0].elements == 3
    worst = in_place[0]
    assert (worst.values["before"], worst.values["after"]) == (2.0, 4.0)


def test_an_integer_input_modified_in_place_is_caught_too() -> None:
    def shifts_targets(z, t):
        t.add_(1)
        return torch.nn.functional.cross_entropy(z, t - 1)

    (result,) = check("cross_entropy(z, t)",
                      {"z": [[0.5, 1.0, -1.0]], "t": {"value": [0], "dtype": "int64"}},
                      impl=shifts_targets)
    assert result.status == "fail"
    assert [m.input for m in result.mismatches if m.check == "in_place"] == ["t"]


@pytest.mark.parametrize("tolerance", [-1, "1e-3x"])
def test_nondet_tol_must_be_a_non_negative_number(tolerance) -> None:
    from gradcheck_lab.errors import CaseError

    with pytest.raises(CaseError, match="nondet_tol"):
        check(SPEC, INPUTS, nondet_tol=tolerance)


class FreesItsState(torch.autograd.Function):
    """A correct backward that frees what it kept (one backward per graph, as in training)."""

    @staticmethod
    def forward(ctx, x):
        ctx.x = x.detach()
        return (x * x).sum()

    @staticmethod
    def backward(ctx, grad):
        x = ctx.x
        del ctx.x
        return 2 * x * grad


def test_a_backward_that_cannot_run_twice_through_one_graph_still_passes() -> None:
    (result,) = check(SPEC, INPUTS, impl=FreesItsState.apply)
    assert result.status == "pass", result.message
    assert any("second backward through the same graph is not possible" in note
               for note in result.notes)


def test_an_input_the_output_does_not_use_has_a_zero_gradient() -> None:
    (result,) = check(SPEC, {**INPUTS, "unused": [3.0, 4.0]})
    assert result.status == "pass", result.message
    assert result.counts["gradient_elements"] == 5


def test_finite_differences_off_on_their_own_do_not_fail_a_spec() -> None:
    # h = 1e-6·|x| = 1000 spans many periods of sin: the differences alias to about 0.
    (result,) = check("sum(sin(x))", {"x": [1e9]})
    assert result.status == "pass", result.message
    assert any("differences' own error" in note for note in result.notes)


class MissingFactorTwo(torch.autograd.Function):
    @staticmethod
    def forward(ctx, p, t):
        ctx.save_for_backward(p, t)
        return ((p - t) ** 2).mean()

    @staticmethod
    def backward(ctx, grad):
        p, t = ctx.saved_tensors
        d = grad * (p - t) / p.numel()  # the factor 2 is missing
        return d, -d


def test_float16_bounds_have_no_floor_that_hides_a_missing_factor() -> None:
    # float16 subnormals are 6e-8 apart; a floor a thousand times that once passed this.
    inputs = {"p": {"shape": [10000], "init": "randn", "seed": 1},
              "t": {"shape": [10000], "init": "randn", "seed": 2}}
    (result,) = check("mse_loss(p, t)", inputs, impl=MissingFactorTwo.apply, dtypes=["float16"])
    assert result.status == "fail", result.message
