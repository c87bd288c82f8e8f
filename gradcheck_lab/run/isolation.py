"""Run cases with an ``impl`` in a worker process, under a per-case time budget.

An impl is the user's own code: it may loop forever, sleep in C++, or swallow the signals an
in-process alarm would send. So a case with an impl is checked in a worker process (started
once, torch imported once, reused case after case); a case that runs past its budget has its
worker killed and becomes an ``error`` result, and the next case gets a fresh worker.
"""

from __future__ import annotations

import multiprocessing
import traceback
from multiprocessing.connection import Connection
from typing import Any

from gradcheck_lab.casefile import Case
from gradcheck_lab.results import Result
from gradcheck_lab.run.budget import error_results
from gradcheck_lab.settings import Settings

_KILL_GRACE_S = 2.0
# Starting a worker (importing torch) is not charged to the first case's budget.
_STARTUP_TIMEOUT_S = 300.0


class CaseWorker:
    """A reusable worker process that checks one case at a time."""

    def __init__(self) -> None:
        self._context = multiprocessing.get_context("spawn")
        self._process: Any = None
        self._connection: Connection | None = None

    def run(self, case: Case, settings: Settings, timeout: float) -> list[Result]:
        """All results of ``case`` (every dtype × device), or error results on a timeout."""
        self._ensure_started()
        assert self._connection is not None
        try:
            self._connection.send((case, settings))  # the budget starts now
            if self._connection.poll(timeout):
                kind, payload = self._connection.recv()
                if kind == "results":
                    return payload
                return _errors(case, f"internal error in the worker: {payload}")
        except (EOFError, BrokenPipeError, ConnectionResetError, OSError):
            self.stop()
            return _errors(case, "the worker process died while checking this case "
                                 "(the impl may have crashed the interpreter)")
        self.stop()
        return _errors(case, f"{case.impl_label} ran past the case time budget of "
                             f"{timeout:g} s (--case-timeout); the worker was stopped")

    def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            self._process.join(_KILL_GRACE_S)
            if self._process.is_alive():
                self._process.kill()
                self._process.join()
        if self._connection is not None:
            self._connection.close()
        self._process = None
        self._connection = None

    def _ensure_started(self) -> None:
        if self._process is not None and self._process.is_alive():
            return
        self.stop()
        parent, child = self._context.Pipe()
        self._process = self._context.Process(target=_serve, args=(child,), daemon=True,
                                              name="gradcheck-lab-worker")
        self._process.start()
        child.close()
        self._connection = parent
        if not parent.poll(_STARTUP_TIMEOUT_S) or parent.recv() != ("ready", None):
            self.stop()
            raise RuntimeError("the gradcheck-lab worker process did not start")


def _serve(connection: Connection) -> None:
    """The worker's loop: receive a case, send back its results."""
    import torch  # noqa: F401 - imported once, before the first case is timed

    from gradcheck_lab.pipeline import run_case

    connection.send(("ready", None))
    while True:
        try:
            case, settings = connection.recv()
        except (EOFError, KeyboardInterrupt):
            return
        try:
            connection.send(("results", list(run_case(case, settings))))
        except KeyboardInterrupt:
            # Here an interrupt is the impl's own: a Ctrl-C at the terminal stops the parent.
            connection.send(("results", _errors(case, f"{case.impl_label} raised "
                                                      "KeyboardInterrupt")))
        except Exception:  # the parent reports it as an internal error
            connection.send(("error", traceback.format_exc(limit=5)))


def _errors(case: Case, message: str) -> list[Result]:
    return error_results(case, "impl", message)
