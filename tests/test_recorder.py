"""The recorder behind a traced spec (gradcheck_lab/trace/): what real forwards do, reduced to
functional steps the case language can write.

Each forward below is traced, and the case is checked three ways: a pass means the traced
program's value and its symbolic gradient agreed with torch's own forward and autograd (and
with finite differences), so a step dropped, misread or applied to the wrong tensor fails.
"""

from __future__ import annotations

import contextlib
import math
from typing import Any

import numpy as np
import pytest
import torch

from gradcheck_lab import check
from gradcheck_lab.casefile import build_case
from gradcheck_lab.errors import SpecError
from gradcheck_lab.trace import UntraceableError, trace

_TABLE = torch.tensor([[0.25, 0.5, 0.25], [1.0, -1.0, 0.0], [0.1, 0.2, 0.7]],
                      dtype=torch.float64)  # a library's module-level constant


def _write_column(x: torch.Tensor) -> torch.Tensor:
    out = torch.empty_like(x)
    out[:, 0] = x[:, 1] * 2
    out[:, 1] = x[:, 0].exp()
    out[:, 2] = 1.0
    return out * x


def _write_through_transpose(x: torch.Tensor) -> torch.Tensor:
    y = x.clone()
    y.t()[1].mul_(3.0)  # row 1 of the transpose: column 1 of y
    return y.sin()


def _write_then_read_old_view(x: torch.Tensor) -> torch.Tensor:
    y = x.clone()
    first = y[0]  # a view read before the write below: it must see the write
    y.mul_(2.0)
    return first * y[1]


def _split_and_write(x: torch.Tensor) -> torch.Tensor:
    y = x.clone()
    left, right = y[:, :1], y.narrow(1, 1, 2)
    right.add_(left)  # broadcast into a view
    top, _ = y.split([1, 2])
    return y.tanh() + top


def _index_put(x: torch.Tensor) -> torch.Tensor:
    y = torch.zeros(3, 3, dtype=x.dtype)
    y[torch.tensor([0, 2]), torch.tensor([1, 0])] = x[0, :2] ** 2
    return y + x


def _masked(x: torch.Tensor) -> torch.Tensor:
    return x.masked_fill(x > 0.5, 0.0).sum(dim=1) + (x > 0).sum()


def _mask_as_data(x: torch.Tensor) -> torch.Tensor:
    mask = x > 0.2
    return (x * mask.to(x.dtype)).sum() / mask.to(x.dtype).sum().clamp(min=1)


def _constants(x: torch.Tensor) -> torch.Tensor:
    eye = torch.eye(3, dtype=x.dtype)
    grid = torch.linspace(0, 1, 3, dtype=x.dtype)
    return (x @ _TABLE + eye) * grid


def _infinite_bounds(x: torch.Tensor) -> torch.Tensor:
    return x.clamp(min=-math.inf, max=float("inf")) * torch.where(
        x > 10, torch.tensor(float("-inf"), dtype=x.dtype), x)


def _decomposed(x: torch.Tensor) -> torch.Tensor:
    # lerp, addcmul and normalize have no translation of their own: core ATen's parts do.
    y = torch.lerp(x, x.flip(0), 0.3)
    return torch.nn.functional.normalize(torch.addcmul(y, x, y, value=0.5), dim=1)


def _argmax_as_index(x: torch.Tensor) -> torch.Tensor:
    best = x.argmax(dim=1)
    return x.gather(1, best.unsqueeze(1)).squeeze(1) * x[torch.arange(3), best]


def _dead_untranslatable(x: torch.Tensor) -> torch.Tensor:
    torch.erfinv(x * 0.1)  # computed, never used: needs no translation
    return x.sum(dim=0)


def _written_in_place(x: torch.Tensor) -> torch.Tensor:
    y = x * 1.0
    alias = y.view(9)
    y.mul_(2.0).add_(alias[:3].sum())  # the write must reach the alias, and back
    return alias.cos()


class _Buffered(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("scale", torch.tensor([1.0, 2.0, 0.5], dtype=torch.float64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x * self.scale).softmax(dim=1)


_MODULE = _Buffered()


def _buffer(x: torch.Tensor) -> torch.Tensor:
    return _MODULE(x)


FORWARDS = [_write_column, _write_through_transpose, _write_then_read_old_view,
            _split_and_write, _index_put, _masked, _mask_as_data, _constants, _infinite_bounds,
            _decomposed, _argmax_as_index, _dead_untranslatable, _written_in_place,
            _buffer]
POINT = np.array([[0.3, -0.2, 0.9], [0.7, 0.1, -0.4], [0.05, 0.6, 0.35]])


@pytest.mark.parametrize("forward", FORWARDS, ids=lambda f: f.__name__.strip("_"))
def test_a_real_forward_is_traced_and_checked_three_ways(forward: Any) -> None:
    (result,) = check(impl=forward, inputs={"x": POINT.tolist()})
    assert result.status == "pass", result.message
    assert "spec: traced from the impl's forward" in result.oracles["symbolic"]


def _traced(forward: Any, **bounds: Any) -> Any:
    case = build_case({"name": "t", "inputs": {"x": POINT.tolist()}}, label="t",
                      base_dir=None, default_name="t", impl=forward)
    return trace(case, {"x": POINT}, lambda tensors: forward(**tensors), **bounds)


def test_the_traced_program_computes_the_forwards_value() -> None:
    from gradcheck_lab.program.interpret import NUMPY, input_values, interpret

    for forward in FORWARDS:
        program = _traced(forward).program
        value = interpret(program, input_values(program, {"x": POINT}), [program.output],
                          NUMPY)[program.output]
        expected = forward(torch.tensor(POINT)).numpy()
        np.testing.assert_allclose(value, expected, rtol=1e-12, atol=1e-12,
                                   err_msg=forward.__name__)


def test_a_tensor_made_without_the_inputs_is_a_constant_of_the_program() -> None:
    program = _traced(_constants).program
    constants = [node.value for node in program.nodes if node.value is not None]
    assert any(np.array_equal(value, _TABLE.numpy()) for value in constants)
    assert any(np.array_equal(value, np.eye(3)) for value in constants)


def test_an_untranslatable_op_the_output_needs_names_itself_and_its_line() -> None:
    def forward(x: torch.Tensor) -> torch.Tensor:
        return torch.erfinv(x * 0.1)

    with pytest.raises(UntraceableError) as caught:
        _traced(forward)
    assert caught.value.op == "aten.erfinv.default"
    assert "test_recorder.py" in caught.value.where
    assert caught.value.outputs == ((3, 3),)


def test_a_forward_past_the_step_bound_is_stopped_at_once() -> None:
    def forward(x: torch.Tensor) -> torch.Tensor:
        for _ in range(10_000):
            x = x * 1.0001
        return x

    with pytest.raises(SpecError, match="more than 50 traced ops"):
        _traced(forward, max_steps=50)


def test_a_forward_that_catches_the_stop_is_still_stopped() -> None:
    def forward(x: torch.Tensor) -> torch.Tensor:
        for _ in range(100):  # hostile code that swallows everything, our Stop included
            with contextlib.suppress(BaseException):
                x = x * 1.0001
        return x

    with pytest.raises(SpecError, match="more than 10 traced ops"):
        _traced(forward, max_steps=10)


def test_a_forward_past_its_time_budget_is_stopped() -> None:
    def forward(x: torch.Tensor) -> torch.Tensor:
        while True:
            x = x * 1.0
        return x  # pragma: no cover

    with pytest.raises(SpecError, match="time budget"):
        _traced(forward, seconds=0.2)


def test_a_planted_bug_behind_an_untranslatable_op_is_caught_by_two_oracles() -> None:
    class WrongErfinv(torch.autograd.Function):
        @staticmethod
        def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
            ctx.save_for_backward(x)
            return torch.erfinv(x * 0.5)

        @staticmethod
        def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
            (x,) = ctx.saved_tensors
            slope = 0.5 * math.sqrt(math.pi) / 2 * torch.exp(torch.erfinv(x * 0.5) ** 2)
            return grad * slope * 1.001  # 0.1 % off everywhere

    (result,) = check(impl=WrongErfinv.apply, inputs={"x": POINT.tolist()})
    assert result.status == "fail"
    assert "autograd is the odd one out against finite differences" in result.message
    assert result.oracles["symbolic"].startswith("not run: the traced forward ran "
                                                 "aten.erfinv.default")


def _standardized_with_detached_statistics(x: torch.Tensor) -> torch.Tensor:
    mean, std = x.mean().detach(), x.std().detach()
    return ((x - mean) / std).tanh()


class _DetachInsideForward(torch.autograd.Function):
    """A detach inside a custom forward is only an alias: autograd does not run there, and
    the backward below differentiates through the mean."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x)
        return x - x.detach().mean()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        return grad - grad.mean()


def test_a_detach_in_autograd_code_stops_the_spec_gradient_as_autograds() -> None:
    (result,) = check(impl=_standardized_with_detached_statistics, inputs={"x": POINT.tolist()})
    assert result.status == "pass", result.message
    assert any("the forward stops the gradient at a detach() (at test_recorder.py:" in note
               for note in result.notes)


def test_a_detach_inside_a_custom_forward_is_an_alias() -> None:
    (result,) = check(impl=_DetachInsideForward.apply, inputs={"x": POINT.tolist()})
    assert result.status == "pass", result.message
    assert not _traced(_DetachInsideForward.apply).program.stops


# --- what an independent review found: each once a wrong verdict ------------------------------


def _mask_changed_in_place(x: torch.Tensor) -> torch.Tensor:
    m = x > 0
    m.logical_not_()  # a traced mask changed in place: the spec must see the new mask
    k = (x > 0.5).long()
    k += 1
    return torch.where(m, x, 0 * x) * k


def _write_through_data(x: torch.Tensor) -> torch.Tensor:
    y = x * 1
    y.data.clamp_(min=0)  # the write reaches y; no gradient flows through it
    return y * 3


def _transposed_in_place(x: torch.Tensor) -> torch.Tensor:
    y = x * 1
    y.t_()  # a change of strides in place: untranslatable, checked two ways
    return y.sin()


class _NumpyTanh(torch.autograd.Function):
    """The classic subject of a gradcheck: a forward computed outside torch."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        y = torch.from_numpy(np.tanh(x.detach().numpy()))
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        (y,) = ctx.saved_tensors
        return grad * (1 - y * y)


def test_a_mask_changed_in_place_is_traced_three_ways() -> None:
    (result,) = check(impl=_mask_changed_in_place, inputs={"x": POINT.tolist()})
    assert result.status == "pass", result.message
    assert "spec: traced from the impl's forward" in result.oracles["symbolic"]


def test_a_write_through_data_fails_where_torchs_gradcheck_does() -> None:
    # The clamp reaches y's values but not autograd's graph: the backward is not the
    # forward's derivative at the negative elements, and torch's gradcheck says so too.
    x = torch.tensor(POINT, requires_grad=True)
    assert not torch.autograd.gradcheck(_write_through_data, (x,), raise_exception=False)
    (result,) = check(impl=_write_through_data, inputs={"x": POINT.tolist()})
    assert result.status == "fail"
    assert "autograd is the odd one out" in result.message


@pytest.mark.parametrize("forward, why", [
    (_transposed_in_place, "aten.t_.default"),
    (_NumpyTanh.apply, "autograd connects its output to the differentiated inputs, but no "
                       "torch op the trace saw does"),
])
def test_what_the_spec_cannot_follow_is_checked_two_ways(forward: Any, why: str) -> None:
    (result,) = check(impl=forward, inputs={"x": POINT.tolist()})
    assert result.status == "pass", result.message
    assert result.oracles["symbolic"].startswith("not run: ")
    assert why in result.oracles["symbolic"]


def test_a_gradient_lost_through_item_is_caught_by_finite_differences() -> None:
    # .item() reads the sum out of the graph: autograd and the traced spec both miss its
    # dependence on x, finite differences do not (and torch's gradcheck fails it too).
    (result,) = check(impl=lambda x: x * x.sum().item(), inputs={"x": POINT.tolist()})
    assert result.status == "fail"
    assert "finite_difference is the odd one out" in result.message


def test_a_coarse_forward_checked_two_ways_is_measured_as_coarse() -> None:
    class FloatLgamma(torch.autograd.Function):
        @staticmethod
        def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
            ctx.save_for_backward(x)
            return torch.lgamma(x).float().double()  # lgamma: no translation; float32 inside

        @staticmethod
        def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
            (x,) = ctx.saved_tensors
            return grad * torch.digamma(x)

    (result,) = check(impl=FloatLgamma.apply, inputs={"x": (np.abs(POINT) + 0.5).tolist()})
    assert result.status == "pass", result.message
    assert result.oracles["symbolic"].startswith("not run: ")
    assert any("computes at about float32" in note for note in result.notes), result.notes


def test_second_order_without_the_spec_is_checked_against_finite_differences() -> None:
    class Lgamma(torch.autograd.Function):
        @staticmethod
        def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
            ctx.save_for_backward(x)
            return torch.lgamma(x)

        @staticmethod
        def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
            (x,) = ctx.saved_tensors
            return grad * torch.digamma(x.detach())  # right, but not differentiable again

    inputs = {"x": (np.abs(POINT) + 0.5).tolist()}
    (result,) = check(impl=Lgamma.apply, inputs=inputs, order=2)
    assert result.status == "fail"
    assert "second order: autograd's Hessian-vector products disagree" in result.message


def test_a_power_with_a_tensor_constant_exponent_is_traced() -> None:
    exponents = torch.tensor([[1.0, 2.0, 3.0]], dtype=torch.float64)
    (result,) = check(impl=lambda x: (x.abs() + 1) ** exponents, inputs={"x": POINT.tolist()})
    assert result.status == "pass", result.message
    assert "spec: traced" in result.oracles["symbolic"]


def test_a_foreach_op_does_not_crash_the_recorder() -> None:
    def forward(x: torch.Tensor) -> torch.Tensor:
        a, b = x * 1, x * 2
        torch._foreach_mul_([a, b], 3.0)
        return a + b

    (result,) = check(impl=forward, inputs={"x": POINT.tolist()})
    assert result.status == "pass", result.message
