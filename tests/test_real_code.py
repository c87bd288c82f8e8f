"""Verdicts that hold on real code: the faults found on custom Functions taken from public
repositories and on gradient tests ported from other autodiff projects' suites (issue 13).

Each test names the fault it pins; each failed before the fix it describes.
"""

from __future__ import annotations

from typing import Any

import numpy as np
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


# -- the precision of the function under test, measured -------------------------------------------

class TanhInFloat32(torch.autograd.Function):
    """tanh computed in float32 inside float64 code, as mixed-precision references do;
    ``factor`` plants a relative error into the backward."""

    factor = 1.0

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        y = torch.tanh(x.float())
        ctx.save_for_backward(y)
        return y.to(x.dtype)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        (y,) = ctx.saved_tensors
        return (grad.float() * (1 - y * y) * TanhInFloat32.factor).to(grad.dtype)


def tanh_in_float32(x: torch.Tensor) -> torch.Tensor:
    return (TanhInFloat32.apply(x) * 3).sum()


MIXED = {"output": "sum(tanh(x) * 3)", "inputs": {"x": {"shape": [64], "init": "randn",
                                                         "seed": 3}}}


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_a_function_computing_in_float32_inside_passes_at_that_precision(dtype: str) -> None:
    result = only(gradcheck_lab.check(**MIXED, impl=tanh_in_float32, dtypes=[dtype]))
    assert result.status == "pass", result.message
    assert result.tolerance["precision"].startswith("about float32")
    said = [note for note in result.notes if "computes at about float32" in note]
    assert len(said) == (1 if dtype == "float64" else 0)  # said where it is news


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_the_same_function_with_a_1e_minus_3_bug_fails_naming_autograd(
        dtype: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(TanhInFloat32, "factor", 1 + 1e-3)
    result = only(gradcheck_lab.check(**MIXED, impl=tanh_in_float32, dtypes=[dtype]))
    assert result.status == "fail"
    gradient = [m for m in result.mismatches if m.check == "gradient"]
    assert gradient and {m.odd_oracle for m in gradient} == {"autograd"}, result.message


def test_an_impl_returning_float32_for_float64_inputs_is_checked_not_refused() -> None:
    result = only(gradcheck_lab.check("sum(tanh(x))", MIXED["inputs"],
                                      impl=lambda x: torch.tanh(x.float()).sum()))
    assert result.status == "pass", result.message
    assert result.tolerance["precision"].startswith("about float32")


def test_an_impl_that_refuses_float64_is_differenced_in_the_case_dtype() -> None:
    def float32_only(x: torch.Tensor) -> torch.Tensor:
        if x.dtype != torch.float32:
            raise TypeError(f"expected float32, got {x.dtype}")
        return torch.tanh(x).sum()

    result = only(gradcheck_lab.check("sum(tanh(x))", MIXED["inputs"], impl=float32_only,
                                      dtypes=["float32"]))
    assert result.status == "pass", result.message
    assert any("call the impl in float32" in note for note in result.notes)


def test_a_float64_impl_keeps_float64_precision_and_its_tolerance() -> None:
    def float64_tanh(x: torch.Tensor) -> torch.Tensor:
        return (torch.tanh(x) * 3).sum()

    result = only(gradcheck_lab.check(**MIXED, impl=float64_tanh))
    assert result.status == "pass", result.message
    assert result.tolerance["precision"].startswith("about float64")
    assert result.tolerance["rtol"] == pytest.approx(2.0 ** -26)


def test_the_noise_measure_tells_float32_from_float64() -> None:
    from gradcheck_lab.oracles.base import Point
    from gradcheck_lab.oracles.precision import classify, measure

    x = np.random.default_rng(0).standard_normal(32)
    point = Point("float64", {"x": x}, {})

    def evaluate(cast: Any) -> Any:
        return lambda values: np.asarray([np.sum(np.tanh(cast(values["x"])))], np.float64)

    fine = measure(evaluate(lambda v: v), point, ["x"], 0.0, 0)
    coarse = measure(evaluate(lambda v: v.astype(np.float32)), point, ["x"], 0.0, 0)
    assert (fine.dtype, coarse.dtype) == ("float64", "float32")
    assert fine.noise < 1e-13 and 1e-9 < coarse.noise < 1e-5
    assert [classify(n) for n in (1e-16, 1e-12, 1e-7, 1e-4, 1e-1)] == [
        "float64", "float64", "float32", "float16", "bfloat16"]
