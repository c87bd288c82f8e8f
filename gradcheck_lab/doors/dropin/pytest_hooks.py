"""``pytest --gradcheck-dropin`` (ini ``gradcheck_dropin = true``): the drop-in installed for
the whole session before any test module is imported, names bound to torch's functions
swept again after collection and before each test, and the session summary at the end.
Under pytest-xdist each worker sends its calls to the controller, which prints one summary.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from gradcheck_lab.doors.dropin.calls import CALLS, DropinCall, summary_lines

_WORKER_KEY = "gradcheck_dropin_calls"


class DropinSession:
    """The plugin object ``--gradcheck-dropin`` registers (one per session)."""

    def __init__(self, mode: str, memory: int | None, seconds: float | None) -> None:
        from gradcheck_lab.doors.dropin.switch import install

        install(mode, memory=memory, seconds=seconds)
        self.first = len(CALLS)
        self.from_workers: list[DropinCall] = []

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        from gradcheck_lab.doors.dropin.switch import rebind

        rebind()

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_setup(self, item: pytest.Item) -> None:
        from gradcheck_lab.doors.dropin.switch import rebind

        module = getattr(item, "module", None)
        if module is not None:
            rebind([module])

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        workeroutput = getattr(session.config, "workeroutput", None)
        if workeroutput is not None:
            workeroutput[_WORKER_KEY] = [dataclasses.asdict(c) for c in CALLS[self.first:]]

    @pytest.hookimpl(optionalhook=True)  # pytest-xdist's hook, absent without it
    def pytest_testnodedown(self, node: Any, error: Any) -> None:
        for record in getattr(node, "workeroutput", {}).get(_WORKER_KEY, []):
            self.from_workers.append(DropinCall(**record))

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if hasattr(terminalreporter.config, "workerinput"):
            return
        calls = CALLS[self.first:] + self.from_workers
        terminalreporter.section("gradcheck-lab drop-in")
        for line in summary_lines(calls):
            terminalreporter.write_line(line)

    def pytest_unconfigure(self, config: pytest.Config) -> None:
        from gradcheck_lab.doors.dropin.switch import uninstall

        uninstall()
