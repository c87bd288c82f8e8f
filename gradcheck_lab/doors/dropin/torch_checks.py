"""torch's own checks of a backward's contract beyond its values, run as torch runs them
after its gradient check: undefined output gradients (and tangents), vmap over the backward
(and forward mode), linearity in the output gradient; for gradgradcheck, vmap over the double
backward and the shapes of ``grad_outputs``. They decide nothing about gradient values (the
three oracles do); a torch version that lacks one leaves it out."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from gradcheck_lab.doors.dropin.arguments import function_name

Contract = Callable[[Callable[..., Any], tuple[Any, ...], Any, "tuple[int, ...] | None"], str]


def contract_checks(*, undefined: bool, batched: bool, batched_forward: bool, forward: bool,
                    masked: bool) -> Contract:
    """gradcheck's: "" when they hold, else the first failure's message."""

    def run(func: Callable[..., Any], values: tuple[Any, ...], output: Any,
            positions: tuple[int, ...] | None) -> str:
        checks = importlib.import_module("torch.autograd.gradcheck")
        outputs = _requiring_grad(output, positions)
        steps: list[tuple[str, str, Callable[[], Any]]] = []
        if batched_forward:
            steps.append(("check_batched_forward_grad", "_test_batched_grad_forward_ad",
                          lambda: checks._test_batched_grad_forward_ad(func, values)))
        if forward and undefined:
            steps.append(("check_undefined_grad (forward mode)", "_test_undefined_forward_mode",
                          lambda: checks._test_undefined_forward_mode(func, outputs, values)))
        if outputs:
            if batched:
                for i, o in enumerate(outputs):
                    steps.append(("check_batched_grad", "_test_batched_grad",
                                  _deferred(checks, "_test_batched_grad", values, o, i)))
            steps.append(("the backward's linearity in the output gradient",
                          "_test_backward_mul_by_grad_output",
                          lambda: checks._test_backward_mul_by_grad_output(outputs, values,
                                                                           masked)))
            if undefined:
                steps.append(("check_undefined_grad", "_test_undefined_backward_mode",
                              lambda: checks._test_undefined_backward_mode(func, outputs,
                                                                           values)))
        return _first_failure(checks, func, steps)

    return run


def second_order_checks(grad_outputs: Any, *, batched: bool) -> Contract:
    """gradgradcheck's: ``grad_outputs`` of the outputs' shapes (a RuntimeError otherwise, as
    torch's autograd raises one) and, with ``batched``, vmap over the double backward of the
    function torch's gradgradcheck builds."""

    def run(func: Callable[..., Any], values: tuple[Any, ...], output: Any,
            positions: tuple[int, ...] | None) -> str:
        import torch

        checks = importlib.import_module("torch.autograd.gradcheck")
        outputs = _requiring_grad(output, positions)
        given = None if grad_outputs is None else checks._as_tuple(grad_outputs)
        if given is not None:
            for i, (go, o) in enumerate(zip(given, outputs, strict=False)):
                if isinstance(go, torch.Tensor) and go.shape != o.shape:
                    raise RuntimeError(f"Mismatch in shape: grad_output[{i}] has a shape of "
                                       f"{go.shape} and output[{i}] has a shape of {o.shape}.")
        if not batched or not outputs:
            return ""
        generator = torch.Generator().manual_seed(0)
        cotangents = given or tuple(
            torch.randn(o.shape, dtype=o.dtype, generator=generator).requires_grad_()
            for o in outputs)
        differentiated = [i for i, v in enumerate(values)
                          if isinstance(v, torch.Tensor) and v.requires_grad]

        def first_order(*args: Any) -> tuple[Any, ...]:
            inputs, gos = args[:len(values)], args[len(values):]
            outs = _requiring_grad(func(*inputs), positions)
            grads = torch.autograd.grad(outs, [inputs[i] for i in differentiated], gos,
                                        create_graph=True, allow_unused=True)
            return tuple(g for g in grads if g is not None)

        tupled = (*values, *cotangents)
        steps: list[tuple[str, str, Callable[[], Any]]] = [
            ("check_batched_grad (second order)", "_test_batched_grad",
             _deferred(checks, "_test_batched_grad", tupled, o, i))
            for i, o in enumerate(first_order(*tupled))]
        return _first_failure(checks, func, steps)

    return run


def _requiring_grad(output: Any, positions: tuple[int, ...] | None) -> tuple[Any, ...]:
    outputs = (output,) if positions is None else tuple(output[i] for i in positions)
    return tuple(o for o in outputs if getattr(o, "requires_grad", False))


def _deferred(checks: Any, name: str, *args: Any) -> Callable[[], Any]:
    """``checks.<name>(*args)``, looked up when called: ``_first_failure`` skips a check this
    torch does not have."""
    return lambda: getattr(checks, name)(*args)


def _first_failure(checks: Any, func: Callable[..., Any],
                   steps: list[tuple[str, str, Callable[[], Any]]]) -> str:
    for label, needed, step in steps:
        if not hasattr(checks, needed):
            continue
        try:
            step()
        except checks.GradcheckError as exc:
            return f"{function_name(func)}: torch's {label} check failed: {exc}"
    return ""
