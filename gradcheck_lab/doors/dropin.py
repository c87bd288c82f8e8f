"""``gradcheck`` and ``gradgradcheck`` with the signatures of ``torch.autograd``'s, so that
changing ``from torch.autograd import gradcheck`` to ``from gradcheck_lab import gradcheck``
keeps a test suite's calls as they are, and checks them three ways: the spec is traced from
``func``'s own forward (``gradcheck_lab.trace``), autograd and finite differences run on
``func``.

Keywords of torch's that govern a comparison (``atol``, ``rtol``, and ``eps``, the
finite-difference step) replace the derived tolerance and step when given; left out, the
derived ones hold (they are tighter than torch's defaults
in float64 and sized to the dtype). The others are accepted for the signature's sake, each
with its reason in ``IGNORED``. Where the forward cannot be traced (an op the case language
cannot write), the check goes on with autograd against finite differences, and says which
op stopped the trace: torch's own gradcheck never decides a verdict.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from gradcheck_lab.results import Result

_UNSET: Any = object()

# What the accepted-but-ignored keywords would do, and why they need not.
IGNORED = {
    "check_undefined_grad": "a backward that returns None for an input is reported as such "
                            "by the autograd oracle",
    "check_grad_dtypes": "the gradients' dtypes are checked against the inputs' always",
    "check_batched_grad": "vmap over the backward is not part of the check",
    "check_batched_forward_grad": "vmap over forward mode is not part of the check",
    "check_backward_ad": "the backward is always checked",
    "fast_mode": "the check is fast already: every element symbolic vs autograd, finite "
                 "differences along projections",
    "masked": "sparse masked semantics are not supported; dense tensors are checked",
    "gen_non_contig_grad_outputs": "the cotangents are seeded probes",
    "grad_outputs": "the cotangents are seeded probes, several per check",
    "check_fwd_over_rev": "second order is checked as reverse over reverse",
    "check_rev_over_rev": "second order is checked as reverse over reverse",
}


@dataclass(frozen=True)
class DropinCall:
    """One call of the drop-in, as a session summary (or a benchmark) counts it."""

    kind: str  # "gradcheck" or "gradgradcheck"
    function: str  # the function's qualname
    status: str  # "pass", "fail", "skip" or "error"
    oracles: int  # 3, or 2 where the symbolic oracle did not run
    missing: str | None  # why it did not
    seconds: float


# Every call in this process, in order (small records: a suite makes hundreds).
CALLS: list[DropinCall] = []


class GradcheckError(RuntimeError):
    """A failed check, as torch's GradcheckError is: the message holds the mismatch table."""


def gradcheck(func: Callable[..., Any], inputs: Any, *, eps: float = _UNSET,
              atol: float = _UNSET, rtol: float = _UNSET, raise_exception: bool = True,
              nondet_tol: float = 0.0, check_undefined_grad: bool = True,
              check_grad_dtypes: bool = False, check_batched_grad: bool = False,
              check_batched_forward_grad: bool = False, check_forward_ad: bool = False,
              check_backward_ad: bool = True, fast_mode: bool = False,
              masked: bool | None = None) -> bool:
    """True when ``func``'s backward agrees with its forward, three ways; otherwise raises
    GradcheckError (or returns False with ``raise_exception=False``)."""
    keys = {"modes": ["reverse", "forward"]} if check_forward_ad else {}
    return _checked("gradcheck", func, inputs, eps, atol, rtol, nondet_tol, raise_exception, keys)


def gradgradcheck(func: Callable[..., Any], inputs: Any, grad_outputs: Any = None, *,
                  eps: float = _UNSET, atol: float = _UNSET, rtol: float = _UNSET,
                  gen_non_contig_grad_outputs: bool = False, raise_exception: bool = True,
                  nondet_tol: float = 0.0, check_undefined_grad: bool = True,
                  check_grad_dtypes: bool = False, check_batched_grad: bool = False,
                  check_fwd_over_rev: bool = False, check_rev_over_rev: bool = True,
                  fast_mode: bool = False, masked: bool = False) -> bool:
    """``gradcheck`` at second order: Hessian-vector products, three ways."""
    return _checked("gradgradcheck", func, inputs, eps, atol, rtol, nondet_tol, raise_exception,
                    {"order": 2})


def _checked(name: str, func: Callable[..., Any], inputs: Any, eps: Any, atol: Any, rtol: Any,
             nondet_tol: float, raise_exception: bool, keys: dict[str, Any]) -> bool:
    from gradcheck_lab.doors.api import check
    from gradcheck_lab.doors.render import failure_text

    started = time.perf_counter()
    values = tuple(inputs) if isinstance(inputs, (tuple, list)) else (inputs,)
    case_inputs, impl, dtype, device = _as_case(name, func, values)
    if eps is not _UNSET:
        keys["fd_step"] = float(eps)
    if atol is not _UNSET or rtol is not _UNSET:
        keys["tolerance"] = {"rtol": 1e-3 if rtol is _UNSET else float(rtol),
                             "atol": 1e-5 if atol is _UNSET else float(atol)}
    if nondet_tol:
        keys["nondet_tol"] = float(nondet_tol)
    results = check(impl=impl, inputs=case_inputs, dtypes=[dtype], devices=[device],
                    name=_case_name(func, name), **keys)
    CALLS.append(_call_record(name, func, results, time.perf_counter() - started))
    failed = [r for r in results if r.status not in ("pass", "skip")]
    if not failed:
        return True
    if raise_exception:
        raise GradcheckError("\n\n".join(failure_text(r) for r in failed))
    return False


def _call_record(kind: str, func: Callable[..., Any], results: list[Result],
                 seconds: float) -> DropinCall:
    statuses = {r.status for r in results}
    status = next((s for s in ("error", "fail", "pass") if s in statuses), "skip")
    missing = next((r.oracles["symbolic"].removeprefix("not run: ") for r in results
                    if r.oracles.get("symbolic", "").startswith("not run: ")), None)
    return DropinCall(kind, getattr(func, "__qualname__", repr(func)), status,
                      2 if missing else 3, missing, seconds)


def _differentiable(out: Any) -> Any:
    """The outputs a gradient can flow through, as torch's gradcheck keeps them: of a tuple,
    its real tensors (one alone as itself); integer outputs (indices) play no part."""
    import torch

    if not isinstance(out, (tuple, list)):
        return out
    kept = [o for o in out if isinstance(o, torch.Tensor) and o.is_floating_point()]
    return kept[0] if len(kept) == 1 else tuple(kept)


def _case_name(func: Callable[..., Any], default: str) -> str:
    """func's name as a case name (a lambda's "<lambda>" has characters a name may not)."""
    spelled = re.sub(r"[^A-Za-z0-9_.+-]+", "_", getattr(func, "__qualname__", "") or "")
    return spelled.strip("_.")[:100] or default


def _as_case(name: str, func: Callable[..., Any], values: Sequence[Any]
             ) -> tuple[dict[str, Any], Callable[..., Any], str, str]:
    """The tensors as case inputs (input0, input1, ...), and an impl that calls ``func``
    positionally with them and the non-tensors in their places."""
    import torch

    slots: list[str | None] = []
    case_inputs: dict[str, Any] = {}
    differentiated = []
    for position, value in enumerate(values):
        if not isinstance(value, torch.Tensor):
            slots.append(None)
            continue
        slot = f"input{position}"
        slots.append(slot)
        wants = bool(value.requires_grad) and value.is_floating_point()
        spec: dict[str, Any] = {"value": value, "requires_grad": wants}
        if not value.is_floating_point():
            spec["dtype"] = "int64"
        case_inputs[slot] = spec
        if wants:
            differentiated.append(value)
    if not differentiated:
        raise ValueError(f"{name} expects at least one input tensor to require gradient, "
                         "but none of them do")
    dtypes = {str(t.dtype).removeprefix("torch.") for t in differentiated}
    devices = {t.device.type for t in differentiated}
    if len(dtypes) > 1 or len(devices) > 1:
        raise ValueError(f"{name}: the inputs that require gradient must share one dtype and "
                         f"one device, got {sorted(dtypes)} on {sorted(devices)}")

    def impl(**tensors: Any) -> Any:
        args = [values[i] if slot is None else tensors[slot] for i, slot in enumerate(slots)]
        return _differentiable(func(*args))

    return case_inputs, impl, dtypes.pop(), devices.pop()
