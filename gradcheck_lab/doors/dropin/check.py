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
    as_tuple,
    check_inputs,
    check_outputs,
    differentiable_positions,
    function_name,
    requires_grad,
)
from gradcheck_lab.doors.dropin.calls import CALLS, DropinCall, current_test
from gradcheck_lab.doors.dropin.connections import (
    has_real_output,
    refuse_reads_by_identity,
    unconnected,
)
from gradcheck_lab.doors.dropin.error import gradcheck_error
from gradcheck_lab.doors.dropin.torch_checks import contract_checks, second_order_checks
from gradcheck_lab.errors import BudgetError, CaseTimeout
from gradcheck_lab.results import Result
from gradcheck_lab.settings import DEFAULT_CASE_MEMORY, DEFAULT_CASE_TIMEOUT

_UNSET: Any = object()
TINY = 5e-324  # the smallest positive float64

# What each of torch's keywords does in the drop-in: torch's behaviour, or a stronger one.
KEYWORDS = {
    "eps": "the finite-difference step (at least the smallest a case in the inputs' dtype may "
           "take: 1.2e-5 for float32); left out, derived from the dtype (h = 1e-6 max(1, |x|) "
           "in float64), with the error estimated from h against 2h",
    "atol, rtol": "given, replace the derived tolerance; left out, the derived one holds "
                  "(sqrt(eps) of the dtype, tighter than torch's defaults in float64)",
    "raise_exception": "as torch: False returns False instead of raising GradcheckError",
    "nondet_tol": "as torch: a backward may differ run to run by this much, and every "
                  "comparison allows at least this much (absolute)",
    "check_undefined_grad": "as torch: torch's own check that the backward handles undefined "
                            "output gradients runs after the gradient check",
    "check_grad_dtypes": "stronger: the gradients' dtypes and shapes are checked always",
    "check_batched_grad": "as torch: torch's own vmap check of the backward (of the double "
                          "backward for gradgradcheck) runs after the gradient check",
    "check_batched_forward_grad": "as torch: torch's own vmap check of forward mode",
    "check_forward_ad": "as torch: forward mode (JVPs) is checked three ways too",
    "check_backward_ad": "True only: False (forward mode alone) is refused with "
                         "NotImplementedError, saying so",
    "fast_mode": "stronger: every element is compared between the symbolic oracle and "
                 "autograd, finite differences along projections, at about the cost of "
                 "torch's fast mode for either setting",
    "masked": "dense inputs only: sparse inputs are refused (NotImplementedError)",
    "grad_outputs, gen_non_contig_grad_outputs": "gradgradcheck: the cotangents are seeded "
                                                 "random probes, several per check; given "
                                                 "grad_outputs must match the outputs' shapes "
                                                 "(a RuntimeError, as torch) and feed the "
                                                 "vmap check",
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
    if not check_backward_ad:
        raise NotImplementedError("check_backward_ad=False: gradcheck-lab checks forward mode "
                                  "beside the backward, not alone (torch.autograd.gradcheck "
                                  "checks forward mode alone)")
    if check_batched_forward_grad and not check_forward_ad:
        raise AssertionError("Setting check_batched_forward_grad=True requires "
                             "check_forward_ad to be True")
    after = contract_checks(undefined=check_undefined_grad, batched=check_batched_grad,
                            batched_forward=check_batched_forward_grad,
                            forward=check_forward_ad, masked=bool(masked))
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
    if not (check_fwd_over_rev or check_rev_over_rev):
        raise AssertionError("Expected at least one of check_fwd_over_rev or check_rev_over_rev "
                             "to be True")
    after = second_order_checks(grad_outputs, batched=check_batched_grad)
    return _checked("gradgradcheck", func, inputs, {"order": 2}, _Settings(
        eps, atol, rtol, nondet_tol, raise_exception, memory, seconds, given), after)


def results_of(func: Callable[..., Any], inputs: Any, *, memory: int | None = None,
               seconds: float | None = None) -> tuple[list[Result], DropinCall]:
    """``gradcheck(func, inputs)``'s Results, for a caller that reports Results itself (a
    recorded Function call under ``gradcheck-lab run``), and the call's record (its status
    where the check ended before the oracles ran, as for a NaN input or nothing to check).
    torch's contract checks after the gradient check are not run; func's own exceptions and
    budgets raise, as from ``gradcheck``."""
    started = time.perf_counter()
    name = function_name(func)
    sink: list[Result] = []
    settings = _Settings(_UNSET, _UNSET, _UNSET, 0.0, True, memory, seconds, {})
    try:
        _, record = _outcome("gradcheck", func, inputs, {}, settings, None, started, name,
                             sink)
    except _Failed as failed:
        text = str(failed)
        record = DropinCall("gradcheck", name, "fail", 2, None, time.perf_counter() - started,
                            current_test(), text.splitlines()[0][:200])
    return sink, record


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
             settings: _Settings, after: Callable[..., str] | None) -> bool:
    __tracebackhide__ = True
    started = time.perf_counter()
    name = function_name(func)
    try:
        text, record = _outcome(kind, func, inputs, keys, settings, after, started, name)
    except _Failed as failed:  # a failure found before the oracles ran (a NaN input)
        text = str(failed)
        record = DropinCall(kind, name, "fail", 2, None, time.perf_counter() - started,
                            current_test(), text.splitlines()[0][:200])
    except Exception as exc:  # func's own exception or a refusal: recorded, raised as it is
        record = DropinCall(kind, name, "error", 2, None, time.perf_counter() - started,
                            current_test(), f"{type(exc).__name__}: {exc}"[:200])
        CALLS.append(_compared(kind, func, inputs, settings, record))
        raise
    return _verdict(kind, func, inputs, settings, text, record)


class _Failed(Exception):  # noqa: N818 (a verdict, carried out of the check)
    """A failing verdict reached before the oracles ran; its message is the report."""


def _outcome(kind: str, func: Callable[..., Any], inputs: Any, keys: dict[str, Any],
             settings: _Settings, after: Callable[..., str] | None, started: float,
             name: str, sink: list[Result] | None = None) -> tuple[str, DropinCall]:
    """The failure text ("" when the check holds) and the call's record; the check's Results
    are added to ``sink`` where given."""
    __tracebackhide__ = True
    from gradcheck_lab.pipeline.cost import counted_from_here

    with counted_from_here():  # the first call and the analysis are part of the check's cost
        return _counted_outcome(kind, func, inputs, keys, settings, after, started, name, sink)


def _counted_outcome(kind: str, func: Callable[..., Any], inputs: Any, keys: dict[str, Any],
                     settings: _Settings, after: Callable[..., str] | None, started: float,
                     name: str, sink: list[Result] | None) -> tuple[str, DropinCall]:
    __tracebackhide__ = True
    values = as_tuple(inputs)
    check_inputs(values)
    output = func(*values)  # as torch's first call: func's own exceptions propagate as they are
    check_outputs(output)
    # The budget holds from here: every later call of func (the probes and the check's).
    from gradcheck_lab.run.budget import time_budget

    limit = DEFAULTS["seconds"] if settings.seconds is _UNSET else settings.seconds
    if _outer_timer():  # the caller's own watchdog (pytest-timeout) keeps the clock
        limit = None
    try:
        with time_budget(limit):
            return _after_first_call(kind, func, values, output, keys, settings, after,
                                     started, name, sink)
    except CaseTimeout:
        raise BudgetError(f"{kind}({name}): the check ran past its time budget of {limit:g} s "
                          "(raise it with seconds=, or --gradcheck-case-timeout under pytest)"
                          ) from None


def _after_first_call(kind: str, func: Callable[..., Any], values: tuple[Any, ...],
                      output: Any, keys: dict[str, Any], settings: _Settings,
                      after: Callable[..., str] | None, started: float, name: str,
                      sink: list[Result] | None) -> tuple[str, DropinCall]:
    __tracebackhide__ = True
    positions = differentiable_positions(output)
    memory = DEFAULTS["memory"] if settings.memory is _UNSET else settings.memory
    call = arguments(func, values, output, positions, memory or None)
    if call.empty:
        return "", DropinCall(kind, name, "skip", 3, None, time.perf_counter() - started,
                              current_test(), "nothing to check: no element")
    if not requires_grad(output, positions):
        # torch's rule first: central differences exactly zero (else the forward cut the
        # graph, which the oracles below would excuse as the forward's own stop); then the
        # three oracles all the same, which agree on zero gradients where it holds.
        text = unconnected(kind, func, values, positions, name)
        if text:
            return text, DropinCall(kind, name, "fail", 2, NO_GRAPH,
                                    time.perf_counter() - started, current_test(),
                                    text.splitlines()[0])
        if not has_real_output(output, positions):  # integer outputs only, as torch: no check
            return "", DropinCall(kind, name, "skip", 3, None, time.perf_counter() - started,
                                  current_test(), "no real output: nothing to differentiate")
    return _gradients(kind, func, call, (values, output, positions), keys, settings, after,
                      started, sink)


NO_GRAPH = "no output requires grad, yet an output changes with the inputs"


def _gradients(kind: str, func: Callable[..., Any], call: Arguments,
               first: tuple[Any, Any, Any], keys: dict[str, Any], settings: _Settings,
               after: Callable[..., str] | None, started: float,
               sink: list[Result] | None = None) -> tuple[str, DropinCall]:
    """The check proper: the failure text ("" when it holds) and the call's record."""
    __tracebackhide__ = True
    name = function_name(func)
    results = _run(kind, call, keys, settings, name)
    if not call.reach.every_input:
        # Some input got no gradient at the oracles' copies: refused where func reads the
        # caller's tensors by identity (asked only then: where every copy is reached, the
        # caller's tensors cannot be what func reads instead).
        refuse_reads_by_identity(func, *first, name)
    if sink is not None:
        sink.extend(results)
    failed = [r for r in results if r.status not in ("pass", "skip")]
    text = "\n\n".join(_report(kind, name, call, r) for r in failed)
    if not failed and after is not None:
        text = after(func, *first)
    return text, _record(kind, name, results, time.perf_counter() - started, text)


def _verdict(kind: str, func: Callable[..., Any], inputs: Any, settings: _Settings, text: str,
             record: DropinCall) -> bool:
    __tracebackhide__ = True
    CALLS.append(_compared(kind, func, inputs, settings, record))
    if not text:
        return True
    if settings.raise_exception:
        raise gradcheck_error()(text)
    return False


def _step_for(eps: float, dtype: str) -> float:
    """The finite-difference step for torch's ``eps``: as given, but at least the smallest
    step a case in ``dtype`` may take (``casefile.schema.fd_step_range``). The drop-in's
    finite differences call ``func`` in float64 where it accepts it, and torch's gradcheck takes
    its default eps=1e-6 for float32 inputs too: a suite that passes it explicitly is not
    refused for it. A step outside float64's own range is still refused, as the case file's."""
    from gradcheck_lab.casefile.schema import FD_STEP_RANGE, fd_step_range
    from gradcheck_lab.dtypes import EPSILON

    low = fd_step_range(dtype)[0] if dtype in EPSILON else FD_STEP_RANGE[0]
    return max(eps, low) if FD_STEP_RANGE[0] <= eps < low else eps


def _compared(kind: str, func: Callable[..., Any], inputs: Any, settings: _Settings,
              record: DropinCall) -> DropinCall:
    """The record with torch's verdict and time on the same call, in compare mode."""
    if not COMPARE:
        return record
    verdict, torch_seconds = COMPARE[0](kind, func, inputs, settings.given)
    return dataclasses.replace(record, torch_status=verdict, torch_seconds=torch_seconds)


def _run(kind: str, call: Arguments, keys: dict[str, Any], settings: _Settings,
         name: str) -> list[Result]:
    __tracebackhide__ = True
    from gradcheck_lab.doors.api import check
    from gradcheck_lab.errors import CaseError

    if settings.eps is not _UNSET:
        keys["fd_step"] = _step_for(float(settings.eps), call.dtype)
    for keyword, given in (("atol", settings.atol), ("rtol", settings.rtol)):
        if given is not _UNSET and float(given) < 0:  # torch's would compare nothing true
            raise ValueError(f"{kind}: {keyword}: must not be negative, got {given}")
    if settings.atol is not _UNSET or settings.rtol is not _UNSET:
        # torch's 0 ("no slack of this kind") as the smallest positive float: a tolerance of
        # the case language is positive.
        keys["tolerance"] = {
            key: max(float(default if given is _UNSET else given), TINY)
            for key, given, default in (("rtol", settings.rtol, 1e-3),
                                        ("atol", settings.atol, 1e-5))}
    if settings.nondet_tol:
        keys["nondet_tol"] = float(settings.nondet_tol)
    try:
        return check(impl=call.impl, inputs=call.inputs, dtypes=[call.dtype],
                     devices=[call.device], name=_case_name(name, kind), **keys)
    except CaseError as exc:
        if not exc.key.startswith("inputs."):  # a keyword's value (eps, atol, rtol)
            keyword = {"fd_step": "eps", "tolerance.rtol": "rtol",
                       "tolerance.atol": "atol"}.get(exc.key, exc.key)
            raise ValueError(f"{kind}: {keyword}: {exc.message}") from None
        # A value no derivative is defined at (NaN, inf): a failure, as torch's.
        where = exc.key.removeprefix("inputs.").removesuffix(".value")
        raise _Failed(f"{kind}({name}): {where}: {exc.message}") from None


def _report(kind: str, name: str, call: Arguments, result: Result) -> str:
    """A failure in the test's terms: the call, the inputs by ``func``'s parameter names,
    nothing about a case file the test author never wrote."""
    from gradcheck_lab.doors.render import failure_text

    notes = dropin_notes(result.notes, name)
    header = f"{kind}({name})"
    if result.status == "error":
        message = result.message.split(": ", 2)[-1] if result.message.startswith("<") else \
            result.message
        return f"{header}: {message}"
    return failure_text(dataclasses.replace(result, notes=notes), header=header)


def dropin_notes(notes: list[str], name: str) -> list[str]:
    """A check's notes in the terms of a caller who wrote no case file."""
    return [note.replace("(write output: to check the forward too)",
                         "(the forward itself is not checked, as in torch's gradcheck)")
            .replace("the impl's forward", f"{name}'s forward") for note in notes]


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


def _outer_timer() -> bool:
    """Whether the caller has an interval timer running (the case budget would suspend it)."""
    import signal

    return hasattr(signal, "getitimer") and signal.getitimer(signal.ITIMER_REAL)[0] > 0
