"""``gradcheck`` and ``gradgradcheck`` with torch.autograd's signatures and contract, checked
three ways: the spec traced from ``func``'s own forward (``gradcheck_lab.trace``), autograd
and finite differences run on ``func``. Where the forward cannot be traced the check goes on
with autograd against finite differences and says which op stopped the trace: torch's own
gradcheck never decides a gradient's verdict.

The contract kept (``KEYWORDS`` says what each of torch's keywords does here):
- ``func`` gets its arguments as the caller passed them (a Parameter stays a Parameter, a
  tensor subclass itself, strides as given, non-tensors untouched), and is first called on
  them as torch calls it: its own exceptions propagate unchanged;
- torch's refusals are torch's (an input of stride 0, no input requiring grad, sparse ones);
  a 0-element input or output has nothing to check and passes, as in torch;
- complex inputs and outputs are checked through their real and imaginary parts, as torch's;
- every failure raises ``GradcheckError``, a subclass of torch's own (or returns False with
  ``raise_exception=False``);
- the check is bounded: ``memory`` (bytes, default the case budget, 4 GiB) refuses outputs too
  large to check before anything is built, ``seconds`` (default 300) stops a check past its
  time; both raise ``BudgetError``, never a verdict.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Any

from gradcheck_lab.doors.dropin.arguments import (
    Arguments,
    arguments,
    as_given,
    as_tuple,
    check_inputs,
    check_outputs,
    differentiable_positions,
    function_name,
    requires_grad,
)
from gradcheck_lab.doors.dropin.calls import CALLS, DropinCall, current_test
from gradcheck_lab.doors.dropin.error import gradcheck_error
from gradcheck_lab.errors import BudgetError
from gradcheck_lab.results import Result
from gradcheck_lab.settings import DEFAULT_CASE_MEMORY, DEFAULT_CASE_TIMEOUT

_UNSET: Any = object()

# What each of torch's keywords does in the drop-in: torch's behaviour, or a stronger one.
KEYWORDS = {
    "eps": "the finite-difference step; left out, derived from the dtype (h = 1e-6 max(1, |x|) "
           "in float64), with the error estimated from h against 2h",
    "atol, rtol": "given, replace the derived tolerance; left out, the derived one holds "
                  "(sqrt(eps) of the dtype, tighter than torch's defaults in float64)",
    "raise_exception": "as torch: False returns False instead of raising GradcheckError",
    "nondet_tol": "as torch: the tolerance for a backward that differs run to run",
    "check_undefined_grad": "as torch: torch's own check that the backward handles undefined "
                            "output gradients runs after the gradient check",
    "check_grad_dtypes": "stronger: the gradients' dtypes and shapes are checked always",
    "check_batched_grad": "as torch: torch's own vmap check of the backward runs after the "
                          "gradient check",
    "check_batched_forward_grad": "as torch: torch's own vmap check of forward mode",
    "check_forward_ad": "as torch: forward mode (JVPs) is checked three ways too",
    "check_backward_ad": "as torch: False leaves the backward out (check_forward_ad then "
                         "needed)",
    "fast_mode": "stronger: every element is compared between the symbolic oracle and "
                 "autograd, finite differences along projections, at about the cost of "
                 "torch's fast mode for either setting",
    "masked": "dense inputs only: sparse inputs are refused (NotImplementedError)",
    "grad_outputs, gen_non_contig_grad_outputs": "gradgradcheck: the cotangents are seeded "
                                                 "random probes, several per check",
    "check_fwd_over_rev, check_rev_over_rev": "gradgradcheck: second order is checked as "
                                              "Hessian-vector products, three ways",
}


def gradcheck(func: Callable[..., Any], inputs: Any, *, eps: float = _UNSET,
              atol: float = _UNSET, rtol: float = _UNSET, raise_exception: bool = True,
              nondet_tol: float = 0.0, check_undefined_grad: bool = True,
              check_grad_dtypes: bool = False, check_batched_grad: bool = False,
              check_batched_forward_grad: bool = False, check_forward_ad: bool = False,
              check_backward_ad: bool = True, fast_mode: bool = False,
              masked: bool | None = None, memory: int | None = _UNSET,
              seconds: float | None = _UNSET) -> bool:
    """True when ``func``'s derivatives agree with its forward, three ways; otherwise raises
    GradcheckError (or returns False with ``raise_exception=False``)."""
    __tracebackhide__ = True
    given = _given(locals())
    if not (check_forward_ad or check_backward_ad):
        raise AssertionError("Expected at least one of check_forward_ad or check_backward_ad "
                             "to be True")
    modes = ["reverse"] * check_backward_ad + ["forward"] * check_forward_ad
    keys: dict[str, Any] = {} if modes == ["reverse"] else {"modes": modes}
    after = _torch_contract(check_undefined_grad and check_backward_ad,
                            check_batched_grad and check_backward_ad,
                            check_batched_forward_grad and check_forward_ad, check_backward_ad,
                            bool(masked))
    return _checked("gradcheck", func, inputs, keys, _Settings(
        eps, atol, rtol, nondet_tol, raise_exception, memory, seconds, given), after)


def gradgradcheck(func: Callable[..., Any], inputs: Any, grad_outputs: Any = None, *,
                  eps: float = _UNSET, atol: float = _UNSET, rtol: float = _UNSET,
                  gen_non_contig_grad_outputs: bool = False, raise_exception: bool = True,
                  nondet_tol: float = 0.0, check_undefined_grad: bool = True,
                  check_grad_dtypes: bool = False, check_batched_grad: bool = False,
                  check_fwd_over_rev: bool = False, check_rev_over_rev: bool = True,
                  fast_mode: bool = False, masked: bool = False, memory: int | None = _UNSET,
                  seconds: float | None = _UNSET) -> bool:
    """``gradcheck`` at second order: Hessian-vector products, three ways."""
    __tracebackhide__ = True
    given = _given(locals())
    return _checked("gradgradcheck", func, inputs, {"order": 2}, _Settings(
        eps, atol, rtol, nondet_tol, raise_exception, memory, seconds, given), None)


def _given(arguments: dict[str, Any]) -> dict[str, Any]:
    """The keywords a call gave torch's signature (what compare mode hands torch)."""
    return {key: value for key, value in arguments.items() if not key.startswith("_")
            and key not in ("func", "inputs", "memory", "seconds") and value is not _UNSET}


@dataclasses.dataclass(frozen=True)
class _Settings:
    eps: Any
    atol: Any
    rtol: Any
    nondet_tol: float
    raise_exception: bool
    memory: Any
    seconds: Any
    given: dict[str, Any]


# What ``install`` (and the pytest flag) set for calls that leave memory= and seconds= out.
DEFAULTS: dict[str, Any] = {"memory": DEFAULT_CASE_MEMORY, "seconds": DEFAULT_CASE_TIMEOUT}

# Set by the switch in compare mode: runs torch's own gradcheck on the same call and returns
# (its verdict, its seconds); None otherwise.
COMPARE: list[Callable[[str, Callable[..., Any], Any, dict[str, Any]], tuple[str, float]]] = []


def _checked(kind: str, func: Callable[..., Any], inputs: Any, keys: dict[str, Any],
             settings: _Settings, after: Callable[..., None] | None) -> bool:
    __tracebackhide__ = True
    started = time.perf_counter()
    values = as_tuple(inputs)
    check_inputs(values)
    output = func(*values)  # as torch's first call: func's own exceptions propagate as they are
    check_outputs(output)
    positions = differentiable_positions(output)
    memory = DEFAULTS["memory"] if settings.memory is _UNSET else settings.memory
    call = arguments(func, values, output, positions, memory)
    name = function_name(func)
    if call.empty:
        CALLS.append(DropinCall(kind, name, "skip", 3, None, time.perf_counter() - started,
                                current_test(), "nothing to check: no element"))
        return True
    if not requires_grad(output, positions):
        text = _unconnected(kind, func, values, positions, name)
        record = DropinCall(kind, name, "fail" if text else "pass", 2, NO_GRAPH,
                            time.perf_counter() - started, current_test(),
                            text.splitlines()[0] if text else "")
    else:
        text, record = _gradients(kind, func, call, (values, output, positions), keys,
                                  settings, after, started)
    return _verdict(kind, func, inputs, settings, text, record)


NO_GRAPH = "no output requires grad: checked that no output changes with the inputs, as torch"


def _gradients(kind: str, func: Callable[..., Any], call: Arguments,
               first: tuple[Any, Any, Any], keys: dict[str, Any], settings: _Settings,
               after: Callable[..., str] | None, started: float) -> tuple[str, DropinCall]:
    """The check proper: the failure text ("" when it holds) and the call's record."""
    name = function_name(func)
    results = _run(kind, call, keys, settings, name)
    failed = [r for r in results if r.status not in ("pass", "skip")]
    text = "\n\n".join(_report(kind, name, call, r) for r in failed)
    if not failed and after is not None:
        text = after(func, *first)
    return text, _record(kind, name, results, time.perf_counter() - started, text)


def _verdict(kind: str, func: Callable[..., Any], inputs: Any, settings: _Settings, text: str,
             record: DropinCall) -> bool:
    __tracebackhide__ = True
    if COMPARE:
        verdict, torch_seconds = COMPARE[0](kind, func, inputs, settings.given)
        record = dataclasses.replace(record, torch_status=verdict, torch_seconds=torch_seconds)
    CALLS.append(record)
    if not text:
        return True
    if settings.raise_exception:
        raise gradcheck_error()(text)
    return False


def _unconnected(kind: str, func: Callable[..., Any], values: tuple[Any, ...],
                 positions: tuple[int, ...] | None, name: str, directions: int = 3) -> str:
    """torch's rule for a function none of whose outputs requires grad: its outputs must not
    change with the inputs (else the forward cut the graph). Checked along seeded random
    directions, for exact equality as torch's check is; "" when they hold."""
    import torch

    from gradcheck_lab.doors.dropin.arguments import selected

    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        base = selected(func(*values), positions)
        for _ in range(directions):
            moved = []
            for value in values:
                wants = isinstance(value, torch.Tensor) and value.requires_grad
                if not wants or value.is_complex() or not value.numel():
                    moved.append(value)
                    continue
                direction = torch.randn(value.shape, generator=generator, dtype=torch.float64)
                step = 1e-6 * value.detach().abs().clamp(min=1)
                moved.append(as_given(value, [value.detach() + (step * direction).to(
                    value.dtype)]))
            out = selected(func(*moved), positions)
            pairs = zip(out if isinstance(out, tuple) else (out,),
                        base if isinstance(base, tuple) else (base,), strict=True)
            change = max(float((a.double() - b.double()).abs().max()) if a.numel() else 0.0
                         for a, b in pairs)
            if change != 0:
                return (f"{kind}({name}): no output requires grad, yet the outputs change with "
                        f"the inputs (by {change:.3g} along a random step of 1e-6): the forward "
                        "cuts the graph (.detach(), .data, .item() or numpy on the way), so "
                        "autograd gives no gradient where there is one")
    return ""


def _run(kind: str, call: Arguments, keys: dict[str, Any], settings: _Settings,
         name: str) -> list[Result]:
    from gradcheck_lab.doors.api import check
    from gradcheck_lab.errors import CaseError, CaseTimeout
    from gradcheck_lab.run.budget import time_budget

    if settings.eps is not _UNSET:
        keys["fd_step"] = float(settings.eps)
    if settings.atol is not _UNSET or settings.rtol is not _UNSET:
        keys["tolerance"] = {"rtol": 1e-3 if settings.rtol is _UNSET else float(settings.rtol),
                             "atol": 1e-5 if settings.atol is _UNSET else float(settings.atol)}
    if settings.nondet_tol:
        keys["nondet_tol"] = float(settings.nondet_tol)
    limit = DEFAULTS["seconds"] if settings.seconds is _UNSET else settings.seconds
    try:
        with time_budget(limit):
            return check(impl=call.impl, inputs=call.inputs, dtypes=[call.dtype],
                         devices=[call.device], name=_case_name(name, kind), **keys)
    except CaseError as exc:
        if not exc.key.startswith("inputs."):  # a keyword's value (eps, atol, rtol)
            keyword = {"fd_step": "eps", "tolerance.rtol": "rtol",
                       "tolerance.atol": "atol"}.get(exc.key, exc.key)
            raise ValueError(f"{kind}: {keyword}: {exc.message}") from None
        # A value no derivative is defined at (NaN, inf): a failure, as torch's.
        where = exc.key.removeprefix("inputs.").removesuffix(".value")
        raise gradcheck_error()(f"{kind}({name}): {where}: {exc.message}") from None
    except CaseTimeout:
        raise BudgetError(f"{kind}({name}): the check ran past its time budget of {limit:g} s "
                          "(raise it with seconds=, or --gradcheck-case-timeout under pytest)"
                          ) from None


def _report(kind: str, name: str, call: Arguments, result: Result) -> str:
    """A failure in the test's terms: the call, the inputs by ``func``'s parameter names,
    nothing about a case file the test author never wrote."""
    from gradcheck_lab.doors.render import failure_text

    notes = [note.replace("(write output: to check the forward too)",
                          "(the forward itself is not checked, as in torch's gradcheck)")
                 .replace("the impl's forward", f"{name}'s forward") for note in result.notes]
    header = f"{kind}({name})"
    if result.status == "error":
        message = result.message.split(": ", 2)[-1] if result.message.startswith("<") else \
            result.message
        return f"{header}: {message}"
    return failure_text(dataclasses.replace(result, notes=notes), header=header)


def _record(kind: str, name: str, results: list[Result], seconds: float,
            text: str) -> DropinCall:
    statuses = {r.status for r in results}
    status = next((s for s in ("error", "fail", "pass") if s in statuses), "skip")
    if text and status == "pass":  # torch's contract checks after the gradient check
        status = "fail"
    missing = next((r.oracles["symbolic"].removeprefix("not run: ") for r in results
                    if r.oracles.get("symbolic", "").startswith("not run: ")), None)
    skipped = next((r.message for r in results if r.status == "skip"), "")
    caught = (text.splitlines()[0] if text else skipped)[:200]
    return DropinCall(kind, name, status, 2 if missing else 3, missing, seconds,
                      current_test(), caught)


def _case_name(name: str, default: str) -> str:
    """A function's name as a case name (letters, digits and _ . + -, at most 100)."""
    import re

    spelled = re.sub(r"[^A-Za-z0-9_.+-]+", "_", name).strip("_.")
    return spelled[:100] or default


def _torch_contract(undefined: bool, batched: bool, batched_forward: bool, backward: bool,
                    masked: bool) -> Callable[..., str]:
    """torch's own checks of the backward's contract beyond its values (undefined output
    gradients, vmap, linearity in the output gradient), run as torch runs them after its
    gradient check; "" when they hold, else their message. Checks a torch version lacks are
    left out."""

    def run(func: Callable[..., Any], values: tuple[Any, ...], output: Any,
            positions: tuple[int, ...] | None) -> str:
        import importlib

        torch_checks = importlib.import_module("torch.autograd.gradcheck")
        outputs = (output,) if positions is None else tuple(output[i] for i in positions)
        outputs = tuple(o for o in outputs if getattr(o, "requires_grad", False))
        steps: list[tuple[str, Callable[[], Any]]] = []
        if batched_forward and hasattr(torch_checks, "_test_batched_grad_forward_ad"):
            steps.append(("check_batched_forward_grad",
                          lambda: torch_checks._test_batched_grad_forward_ad(func, values)))
        if backward and outputs:
            if batched and hasattr(torch_checks, "_test_batched_grad"):
                for i, o in enumerate(outputs):
                    steps.append(("check_batched_grad",
                                  lambda o=o, i=i: torch_checks._test_batched_grad(values, o, i)))
            if hasattr(torch_checks, "_test_backward_mul_by_grad_output"):
                steps.append(("the backward's linearity in the output gradient",
                              lambda: torch_checks._test_backward_mul_by_grad_output(
                                  outputs, values, masked)))
            if undefined and hasattr(torch_checks, "_test_undefined_backward_mode"):
                steps.append(("check_undefined_grad",
                              lambda: torch_checks._test_undefined_backward_mode(
                                  func, outputs, values)))
        for label, step in steps:
            try:
                step()
            except torch_checks.GradcheckError as exc:
                return f"{function_name(func)}: torch's {label} check failed: {exc}"
        return ""

    return run
