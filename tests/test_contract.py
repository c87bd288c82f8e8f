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
