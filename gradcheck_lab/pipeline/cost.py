"""Where a check's cost starts counting: ``counts.cost_units`` is what a user's stopwatch sees
for the whole check, so a door that does work before the pipeline (the drop-in's first call of
the function, its argument analysis; the API's case building) starts the count at its own entry
with ``counted_from_here``; without one, the count starts where ``run_case`` starts, tracing
included. The first result of a case carries what came before its own check."""

from __future__ import annotations

import contextlib
import contextvars
import time
from collections.abc import Iterator
from dataclasses import dataclass

from gradcheck_lab.oracles.autograd import cost_clock


@dataclass(frozen=True)
class CostStart:
    """Both clocks at a start: wall time (cuda's clock) and CPU time (cpu's)."""

    wall: float
    cpu: float

    def on(self, device: str) -> float:
        """The start on the clock of ``device``'s cost (``cost_clock``)."""
        return self.wall if cost_clock(device) is time.perf_counter else self.cpu


def cost_start() -> CostStart:
    return CostStart(time.perf_counter(), time.process_time())


_STARTED: contextvars.ContextVar[CostStart | None] = contextvars.ContextVar(
    "gradcheck_lab_cost_started", default=None)


@contextlib.contextmanager
def counted_from_here() -> Iterator[None]:
    """Checks run in the block count their cost from here (the outermost block wins)."""
    token = _STARTED.set(_STARTED.get() or cost_start())
    try:
        yield
    finally:
        _STARTED.reset(token)


def started_or_now() -> CostStart:
    """The door's start, or now where no door set one."""
    return _STARTED.get() or cost_start()
