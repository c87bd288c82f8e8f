"""A time budget for a case checked in this process: a spec with no user code (no impl, no
training step file), where sympy may still take far longer than the case is worth.

User code may hang in C, where no signal reaches it: cases with an impl or a training step
file run in a worker process (``run.isolation``). The spec's own work is Python (sympy, numpy
calls of bounded size), which an interval timer interrupts: on Unix, in the main thread,
SIGALRM raises CaseTimeout (a BaseException, so that no ``except Exception`` on the way
catches it); a timer the caller had set runs on afterwards, less the time spent here.
Elsewhere there is no budget for in-process cases.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Iterator

from gradcheck_lab.casefile import Case
from gradcheck_lab.errors import CaseTimeout
from gradcheck_lab.results import Result


@contextlib.contextmanager
def time_budget(seconds: float | None) -> Iterator[None]:
    usable = hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()
    if seconds is None or not usable:
        yield
        return

    def expire(signum: int, frame: object) -> None:
        raise CaseTimeout

    outer, _ = signal.getitimer(signal.ITIMER_REAL)
    started = time.monotonic()
    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        if outer:  # the caller's own timer, with what is left of it (at least a tick)
            signal.setitimer(signal.ITIMER_REAL, max(outer - (time.monotonic() - started),
                                                     1e-3))


def error_results(case: Case, key: str, message: str) -> list[Result]:
    """One error result per dtype × device, the message at the case's ``key``."""
    line = case.line_of(key)
    return [Result(case=case.name, file=case.file, line=case.line, dtype=dtype, device=device,
                   status="error", message=f"{case.file}:{line}: {key}: {message}",
                   seed=case.seed)
            for dtype in case.dtypes for device in case.devices]
