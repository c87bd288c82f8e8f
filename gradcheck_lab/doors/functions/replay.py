"""A recorded Function call checked through the drop-in: the spec traced from the Function's
forward, autograd through its backward, finite differences, at the recorded inputs.

The tensors differentiated are those that required grad at the call (every floating tensor
argument when none did: the suite called the Function without asking for its gradient). A
call recorded in a lower precision is also checked in float64, its floating tensors promoted,
where the Function accepts float64 (a forward that raises on it is a skip that says so).
"""

from __future__ import annotations

import dataclasses
import inspect
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gradcheck_lab.doors.dropin.arguments import parameter_names
from gradcheck_lab.doors.functions.intent import excluded
from gradcheck_lab.doors.functions.recorder import (
    FunctionRecord,
    RecordedCall,
    Weak,
    entry_name,
    entry_point,
)
from gradcheck_lab.results import Result

REPLAY_DTYPES = ("float64",)  # checked beside the recorded precision


@dataclass(frozen=True)
class Replay:
    """One check of one recorded call: its verdict and what it cost."""

    status: str  # "pass", "fail", "skip" or "error"
    text: str  # the failure's report, the skip's reason or the error ('' on a pass)
    oracles: int  # 3, or 2 where the forward could not be traced
    missing: str | None  # why not
    seconds: float


@dataclass(frozen=True)
class Planned:
    """One Function's place in the plan: excluded (with the reason), or its checks, each a
    call's number among the checkable calls, the call and a dtype (none: nothing to check)."""

    record: FunctionRecord
    excluded: str | None
    checks: list[tuple[int, RecordedCall, str]]


def plan(records: Iterable[FunctionRecord], exclusions: dict[str, str]) -> list[Planned]:
    """What the pytest items and ``gradcheck-lab run`` check of recorded Functions, in the
    order of their names: the same calls, numbered the same way, at the same dtypes."""
    planned = []
    for record in sorted(records, key=lambda r: r.function):
        reason = excluded(record.cls, exclusions)
        checks = [] if reason is not None else [
            (number, call, dtype)
            for number, call in enumerate(filter(checkable, record.calls), start=1)
            for dtype in dtypes_to_check(call)]
        planned.append(Planned(record, reason, checks))
    return planned


def dtypes_to_check(call: RecordedCall) -> list[str]:
    """The recorded precision of the differentiated tensors, and float64 where it is lower."""
    tensor = _differentiated(call)[1][0]
    recorded = str(tensor.dtype).removeprefix("torch.")
    if not tensor.is_floating_point():  # complex: checked as recorded
        return [recorded]
    return list(dict.fromkeys([*REPLAY_DTYPES, recorded]))


def replay(call: RecordedCall, dtype: str, memory: int | None,
           seconds: float | None) -> Replay:
    """Check ``call`` at ``dtype`` three ways (two where its forward cannot be traced)."""
    from gradcheck_lab.doors.dropin.calls import CALLS
    from gradcheck_lab.doors.dropin.check import gradcheck
    from gradcheck_lab.doors.dropin.error import gradcheck_error

    started = time.perf_counter()
    prepared = prepared_call(call, dtype)
    if isinstance(prepared, str):
        return Replay("skip", prepared, 0, None, time.perf_counter() - started)
    func, inputs = prepared
    first = len(CALLS)
    try:
        gradcheck(func, inputs, memory=memory, seconds=seconds)
        status, text = "pass", ""
    except gradcheck_error() as failure:
        status, text = "fail", str(failure)
    except Exception as exc:  # a budget, a refusal: not a verdict on the gradient
        status, text = "error", f"{type(exc).__name__}: {exc}"
    finally:
        made = CALLS[first:]
        del CALLS[first:]  # a drop-in summary of the same session counts the suite's calls
    record = made[-1] if made else None
    if record is not None and record.status == "skip" and status == "pass":
        status, text = "skip", record.caught
    return Replay(status, text, record.oracles if record else 0,
                  record.missing if record else None, time.perf_counter() - started)


def prepared_call(call: RecordedCall,
                  dtype: str) -> tuple[Callable[..., Any], tuple[Any, ...]] | str:
    """``replayable(call, dtype)`` where the Function runs at ``dtype`` and in float64 (what
    finite differences and the traced spec evaluate it in); else why not, a skip's reason."""
    try:
        func, inputs = replayable(call, dtype)
        func(*inputs)
    except ArgumentGone as gone:
        return str(gone)
    except Exception as exc:  # the Function's forward refuses this dtype
        return f"{call.function} does not run in {dtype}: {type(exc).__name__}: {exc}"[:300]
    if dtype != "float64":
        try:
            wide, wide_inputs = replayable(call, "float64")
            wide(*wide_inputs)
        except Exception as exc:
            return (f"{call.function} does not run in float64, which finite differences and "
                    f"the traced spec evaluate it in ({type(exc).__name__}: {exc}"[:280] + ")")
    return func, inputs


def replayable(call: RecordedCall, dtype: str) -> tuple[Callable[..., Any], tuple[Any, ...]]:
    """A function of the differentiated tensors that calls the Function with the rest of the
    recorded arguments, and those tensors, fresh copies at ``dtype`` that require grad."""
    import torch

    precision = getattr(torch, dtype)
    args = [_at(value, precision) for value in call.args]
    kwargs = {key: _at(value, precision) for key, value in call.kwargs.items()}
    target = entry_point(call.cls)
    positions = _differentiated(call)[0] if call.wanted else _connected(target, args, kwargs)
    inputs = tuple(args[p].detach().clone().requires_grad_(True) for p in positions)

    def func(*tensors: Any) -> Any:
        given = list(args)
        for position, tensor in zip(positions, tensors, strict=True):
            # A copy, not the leaf: a Function that works in place (mark_dirty) may.
            given[position] = tensor.clone()
        output = target(*given, **kwargs)
        if isinstance(output, (tuple, list)):  # a None output (a support size not computed)
            return tuple(o for o in output if isinstance(o, torch.Tensor))
        return output

    func.__name__ = func.__qualname__ = ".".join(entry_name(call.cls).split(".")[-2:])
    # The forward's own parameter names, so that the report names x and y, not tensors0.
    names = parameter_names(target, len(args))
    # inspect.signature reads __signature__, which the checker's function type does not have.
    func.__signature__ = inspect.Signature(  # type: ignore[attr-defined]  # read by inspect
        [inspect.Parameter(names[p], inspect.Parameter.POSITIONAL_ONLY) for p in positions])
    return func, inputs


def _differentiated(call: RecordedCall) -> tuple[tuple[int, ...], list[Any]]:
    """The positions checked and their recorded tensors."""
    import torch

    positions = call.wanted or tuple(
        i for i, a in enumerate(call.args)
        if isinstance(a, torch.Tensor) and (a.is_floating_point() or a.is_complex()))
    return positions, [call.args[p] for p in positions]


class ArgumentGone(Exception):  # noqa: N818 (a reason to skip, not a failure)
    """An argument the recording held weakly was freed before the check."""


def _at(value: Any, dtype: Any) -> Any:
    """Floating tensors at ``dtype`` (complex ones kept), a module copy's parameters too,
    containers rebuilt, an argument held weakly resolved, the rest as is."""
    import copy

    import torch

    if isinstance(value, torch.Tensor):
        return value.detach().to(dtype) if value.is_floating_point() else value
    if isinstance(value, tuple):
        return tuple(_at(v, dtype) for v in value)
    if isinstance(value, list):
        return [_at(v, dtype) for v in value]
    if isinstance(value, torch.nn.Module):
        return copy.deepcopy(value).to(dtype)
    if isinstance(value, Weak):
        held = value.ref()
        if held is None:
            raise ArgumentGone(f"the {value.kind} argument of this call was freed before the "
                               "check (the recording holds such arguments weakly)")
        return held
    return value


def _connected(target: Callable[..., Any], args: list[Any],
               kwargs: dict[str, Any]) -> tuple[int, ...]:
    """Where no tensor required grad at the call: the floating tensor arguments the backward
    gives a gradient to (a loss's target, a mask, for which it returns None, left out)."""
    import torch

    floating = [i for i, a in enumerate(args)
                if isinstance(a, torch.Tensor) and (a.is_floating_point() or a.is_complex())]
    given = list(args)
    for i in floating:
        given[i] = args[i].detach().clone().requires_grad_(True)
    try:
        outputs = target(*given, **kwargs)
        outputs = [o for o in (outputs if isinstance(outputs, (tuple, list)) else [outputs])
                   if isinstance(o, torch.Tensor) and o.requires_grad]
        if not outputs:
            return tuple(floating)
        total = sum(o.real.sum() if o.is_complex() else o.sum() for o in outputs)
        grads = torch.autograd.grad(total, [given[i] for i in floating], allow_unused=True)
    except Exception:  # the check proper says what is wrong with the call
        return tuple(floating)
    return tuple(i for i, g in zip(floating, grads, strict=True) if g is not None) or \
        tuple(floating)


def checkable(call: RecordedCall) -> bool:
    """Whether the call has a floating or complex tensor to differentiate."""
    return bool(_differentiated(call)[0])


def recording_results(path: Path, memory: int | None,
                      seconds: float | None) -> Iterator[Result]:
    """Every call of a recording (``gradcheck-lab record``'s file) checked at each of its
    dtypes, as Results named ``module.Class.apply[call N]``; a file or Function entry that
    cannot be read is one error Result."""
    from gradcheck_lab.doors.functions.recording_file import RecordingError, read

    label = str(path)
    try:
        recording = read(path)
    except RecordingError as exc:
        yield _single(path.name, label, None, None, "error", str(exc))
        return
    for problem in recording.problems:
        yield _single(path.name, label, None, None, "error", problem)
    if not recording.records and not recording.problems:
        yield _single(path.name, label, None, None, "error", f"{label}: functions: no "
                      "custom Function call was recorded (nothing to check)")
    for planned in plan(recording.records, {}):
        record, name = planned.record, entry_name(planned.record.cls)
        if planned.excluded is not None:
            yield _single(name, label, None, None, "skip", f"excluded: {planned.excluded}")
        elif not planned.checks:
            why = ", ".join(f"{n} x {reason}" for reason, n in record.refused.items())
            yield _single(name, label, None, None, "skip", f"no call to check ({record.seen} "
                                                           "seen" + (f": {why})" if why
                                                                     else ")"))
        for number, call, dtype in planned.checks:
            yield from call_results(call, f"{name}[call {number}]", label, dtype, memory,
                                    seconds)


def call_results(call: RecordedCall, case: str, file: str, dtype: str, memory: int | None,
                 seconds: float | None) -> list[Result]:
    """One recorded call checked at ``dtype``: the check's Results, renamed ``case``."""
    from gradcheck_lab.doors.dropin.check import dropin_notes, results_of

    prepared = prepared_call(call, dtype)
    if isinstance(prepared, str):
        return [_single(case, file, dtype, None, "skip", prepared)]
    func, inputs = prepared
    device = inputs[0].device.type
    try:
        found, record = results_of(func, inputs, memory=memory, seconds=seconds)
    except Exception as exc:  # a budget, a refusal: not a verdict on the gradient
        return [_single(case, file, dtype, device, "error", f"{type(exc).__name__}: {exc}")]
    if not found:  # ended before the oracles ran: a NaN input, nothing to check
        return [_single(case, file, dtype, device, record.status, record.caught)]
    return [dataclasses.replace(result, case=case, file=file, line=None,
                                notes=dropin_notes(result.notes, func.__name__))
            for result in found]


def _single(case: str, file: str, dtype: str | None, device: str | None, status: str,
            message: str) -> Result:
    return Result(case=case, file=file, line=None, dtype=dtype, device=device, status=status,
                  message=message)
