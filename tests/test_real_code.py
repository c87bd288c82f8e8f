"""Verdicts that hold on real code: the faults found on custom Functions taken from public
repositories and on gradient tests ported from other autodiff projects' suites (issue 13).

Each test names the fault it pins; each failed before the fix it describes.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch

import gradcheck_lab
from gradcheck_lab import Result
from gradcheck_lab.oracles.base import make_probes


def only(results: list[Result]) -> Result:
    assert len(results) == 1, [r.label for r in results]
    return results[0]


# -- a stored gradient never changes after the fact ----------------------------------------------

_BUFFER = torch.zeros(3, dtype=torch.float64)


class SquareIntoOneBuffer(torch.autograd.Function):
    """Correct every time, but returns the same tensor from every backward (a preallocated
    output buffer, as fused kernels keep): a stored view would be rewritten by the next call."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x)
        return x * x

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        _BUFFER.copy_(2 * x * grad)
        return _BUFFER


class ScalesItsSavedGradient(torch.autograd.Function):
    """``grad *= grad_output`` on a tensor kept on ctx: right the first time, wrong when the
    same graph is differentiated again (the state is kept)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        ctx.grad = 2 * x
        return (x * x).sum()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        ctx.grad.mul_(grad)
        return ctx.grad


def test_a_backward_that_reuses_its_output_buffer_is_not_misjudged() -> None:
    result = only(gradcheck_lab.check("x * x", {"x": [0.5, -1.0, 2.0]},
                                      impl=SquareIntoOneBuffer.apply))
    assert result.status == "pass", result.message


def test_state_kept_on_ctx_is_reported_at_the_call_that_differs() -> None:
    x = [0.5, -1.0, 2.0]
    result = only(gradcheck_lab.check("sum(x * x)", {"x": x}, impl=ScalesItsSavedGradient.apply))
    assert result.status == "fail"
    # Each backward's numbers are what it returned then (2x·c through cotangent c), not what
    # the tensor held at the end: the gradients are right, the rerun through the same graph
    # is not (it multiplies by c again).
    c = float(make_probes((), 0)[1].cotangent)
    assert [m for m in result.mismatches if m.check == "gradient"] == []
    rerun = [m for m in result.mismatches if m.check == "nondeterministic"]
    assert rerun and all(m.values["autograd"] == pytest.approx(2 * x[m.index[0]] * c)
                         for m in rerun)
    assert all(m.values["again, same graph"] == pytest.approx(m.values["autograd"] * c)
               for m in rerun)
    assert "same graph" in result.message


# -- grad_output is always exercised --------------------------------------------------------------

class IgnoresGradOutput(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x)
        return (x ** 2).sum()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        return 2 * x  # grad_output dropped: right only when it is 1


def test_a_scalar_loss_whose_backward_ignores_grad_output_fails() -> None:
    result = only(gradcheck_lab.check("sum(x ** 2)", {"x": [0.5, -1.0, 2.0]},
                                      impl=IgnoresGradOutput.apply))
    assert result.status == "fail"
    gradient = [m for m in result.mismatches if m.check == "gradient"]
    assert gradient and {m.odd_oracle for m in gradient} == {"autograd"}
    (probe,) = {m.probe for m in gradient}
    assert probe.startswith("cotangent ")  # the cotangent it was seen through is named
    assert "grad_output" in result.tolerance["probes"]


def test_the_scalar_cotangent_is_seeded_and_stated() -> None:
    spec = {"output": "sum(sin(x))", "inputs": {"x": [0.5, 1.0]}}
    first, again = (only(gradcheck_lab.check(**spec, seed=4)) for _ in range(2))
    assert first.tolerance["probes"] == again.tolerance["probes"]
    assert first.tolerance["probes"] != only(gradcheck_lab.check(**spec, seed=5)).tolerance[
        "probes"]
    assert first.counts["probes"] == 2
    assert first.counts["symbolic_vs_autograd"] == 2  # the distinct comparisons


def test_mis_scaled_grad_output_is_caught_whatever_the_sign() -> None:
    class LosesTheSign(torch.autograd.Function):
        @staticmethod
        def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
            ctx.save_for_backward(x)
            return torch.sin(x).sum()

        @staticmethod
        def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
            (x,) = ctx.saved_tensors
            return torch.cos(x) * grad.abs()  # the sign of grad_output lost

    signs = set()
    for seed in range(8):
        result = only(gradcheck_lab.check("sum(sin(x))", {"x": [0.5, 1.0]},
                                          impl=LosesTheSign.apply, seed=seed))
        c = float(make_probes((), seed)[1].cotangent)
        signs.add(c < 0)
        assert result.status == ("fail" if c < 0 else "pass"), (seed, result.message)
    assert signs == {True, False}  # the seeds drew both signs
