"""``pytest --gradcheck-functions`` (ini ``gradcheck_functions = true``): every custom
``torch.autograd.Function`` the suite calls is recorded while the suite runs unchanged, and
after its last test each recorded call is checked as a test item of its own,
``gradcheck::mylib.ops.Sparsemax.apply[call 1, float64]``, so that ``-k``, ``-x``, ``--lf``
and JUnit treat it as any other item. A summary at the end counts what was found, checked and
excluded, and what the checks cost.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from gradcheck_lab.doors.functions.intent import excluded
from gradcheck_lab.doors.functions.recorder import (
    FunctionRecord,
    RecordedCall,
    Recorder,
    entry_name,
    source_location,
)
from gradcheck_lab.doors.functions.replay import Replay, checkable, plan, replay
from gradcheck_lab.doors.pytest_reports import case_failure, parse_own_id

if TYPE_CHECKING:  # repr_failure's style= (pytest 8+ names it; before, _TracebackStyle)
    from _pytest._code.code import TracebackStyle

COLLECTOR = "gradcheck"  # the node id the items hang under
_WORKER_KEY = "gradcheck_functions_calls"


class FunctionsSession:
    """The plugin object ``--gradcheck-functions`` registers (one per session)."""

    def __init__(self, exclusions: dict[str, str], memory: int | None,
                 seconds: float | None, include: list[str] | None = None) -> None:
        self.exclusions = exclusions
        self.memory, self.seconds = memory, seconds
        self.recorder = Recorder()
        self.recorder.install()
        self.include = list(include or [])  # watched once the test modules are imported
        self.replays: list[tuple[str, Replay]] = []
        self.ran = False
        self.workers = False  # calls came from xdist workers
        self.suite_seconds = 0.0  # the suite's own tests, recording on
        self.lost: list[str] = []  # workers' Functions the controller could not read

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        from gradcheck_lab.doors.functions.watched import WatchError

        try:
            self.recorder.watch(self.include)
        except WatchError as exc:
            raise pytest.UsageError(f"gradcheck-lab: gradcheck_functions_include: {exc}") \
                from None

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtestloop(self, session: pytest.Session) -> Any:
        started = time.perf_counter()
        outcome = yield
        self.suite_seconds = time.perf_counter() - started
        self.recorder.uninstall()
        if hasattr(session.config, "workerinput"):  # an xdist worker: its controller checks
            return
        if (outcome.excinfo is not None or session.config.option.collectonly
                or session.shouldfail or session.shouldstop):
            return
        items = self.items(session)
        select_like_collected(session, items)
        session.testscollected += len(items)
        self.ran = True
        for index, item in enumerate(items):
            following = items[index + 1] if index + 1 < len(items) else None
            item.config.hook.pytest_runtest_protocol(item=item, nextitem=following)
            if session.shouldfail or session.shouldstop:
                break

    def items(self, session: pytest.Session) -> list[pytest.Item]:
        parent = RecordedFunctions.from_parent(session, name=COLLECTOR, nodeid=COLLECTOR)
        items: list[pytest.Item] = []
        for planned in plan(self.recorder.records.values(), self.exclusions):
            name = entry_name(planned.record.cls)
            if planned.excluded is not None:
                items.append(ExcludedItem.from_parent(
                    parent, name=f"{name}[excluded]", record=planned.record,
                    reason=f"excluded: {planned.excluded}"))
            for number, call, dtype in planned.checks:
                items.append(FunctionCheckItem.from_parent(
                    parent, name=f"{name}[call {number}, {dtype}]", call=call, dtype=dtype,
                    plugin=self))
        for number, problem in enumerate(self.lost, start=1):
            items.append(ExcludedItem.from_parent(
                parent, name=f"not-checked[{number}]", record=None,
                reason=f"not checked under xdist: {problem}"))
        return items

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        workeroutput = getattr(session.config, "workeroutput", None)
        if workeroutput is not None:
            from gradcheck_lab.doors.functions.recording_file import to_bytes

            workeroutput[_WORKER_KEY] = to_bytes(self.recorder.records.values(),
                                                 self.recorder.seconds)

    @pytest.hookimpl(optionalhook=True)  # pytest-xdist's hook, absent without it
    def pytest_testnodedown(self, node: Any, error: Any) -> None:
        data = getattr(node, "workeroutput", {}).get(_WORKER_KEY)
        if data:
            from gradcheck_lab.doors.functions.recording_file import RecordingError, from_bytes

            worker = getattr(getattr(node, "gateway", None), "id", "?")
            try:
                recording = from_bytes(data, f"xdist worker {worker}")
            except RecordingError as exc:  # never the session's end: said as a skipped item
                self.lost.append(str(exc))
                return
            self.recorder.add(recording.records)
            self.recorder.seconds += recording.seconds
            self.lost += recording.problems  # a class the controller cannot import by name
            self.workers = True

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if not self.ran:
            return
        terminalreporter.section("gradcheck-lab functions")
        records = list(self.recorder.records.values())
        for line in summary_lines(records, self.replays, self.exclusions):
            terminalreporter.write_line(line)
        for problem in self.lost:
            terminalreporter.write_line(f"  not checked under xdist (run without -n to check "
                                        f"it): {problem}")
        if records:
            seen = sum(r.seen for r in records)
            terminalreporter.write_line(
                f"  recording: {seen:,} call(s) seen; the suite's own tests took "
                f"{self.suite_seconds:.1f} s, {self.recorder.seconds:.2f} s of it recording"
                + (" (summed over the workers)" if self.workers else ""))

    def pytest_unconfigure(self, config: pytest.Config) -> None:
        self.recorder.uninstall()


# The plugins whose collection_modifyitems choose among the check items as among tests: -k
# and -m (pytest's "mark"), --lf and --ff ("lfplugin"), gradcheck-lab's --gradcheck-shard.
# Other hooks (a project's conftest reading item.function, stepwise's count) expect the
# items of collection, which these are not.
SELECTING_PLUGINS = ("mark", "lfplugin")


def select_like_collected(session: pytest.Session, items: list[pytest.Item]) -> None:
    """Deselect among ``items`` as pytest's own selection options do for collected tests."""
    import sys

    manager = session.config.pluginmanager
    ours = {sys.modules.get("gradcheck_lab.pytest_plugin"),
            sys.modules.get("gradcheck_lab.doors.pytest_plugin")}
    others = [plugin for name, plugin in manager.list_name_plugin()
              if plugin is not None and name not in SELECTING_PLUGINS and plugin not in ours]
    manager.subset_hook_caller("pytest_collection_modifyitems", remove_plugins=others)(
        session=session, config=session.config, items=items)


class RecordedFunctions(pytest.Collector):
    """The parent of the check items (built after the suite ran, never collected)."""

    def collect(self) -> list[pytest.Item]:  # pragma: no cover (the items are made directly)
        return []


class FunctionCheckItem(pytest.Item):
    """One recorded call of a Function, checked at one dtype."""

    def __init__(self, *, call: RecordedCall, dtype: str, plugin: FunctionsSession,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        parse_own_id(self)
        self.call, self.dtype, self.plugin = call, dtype, plugin
        self.add_marker("gradcheck")

    def runtest(self) -> None:
        result = replay(self.call, self.dtype, self.plugin.memory, self.plugin.seconds)
        self.plugin.replays.append((self.call.function, result))
        if result.status == "skip":
            raise _skip_here(result.text)
        if result.status != "pass":
            raise FunctionCheckFailed(f"{self.origin()}\n{result.text}")

    def origin(self) -> str:
        """Where the inputs come from, and the precision they are checked at."""
        recorded = str(self.call.args[self.call.wanted[0]].dtype if self.call.wanted else
                       "").removeprefix("torch.")
        promoted = (f" (float tensors promoted from {recorded} to {self.dtype})"
                    if recorded and recorded != self.dtype else "")
        made = f" by {self.call.test}" if self.call.test else ""
        return f"recorded: the call made{made}, replayed with its inputs{promoted}"

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException],
                     style: TracebackStyle | None = None) -> Any:
        if isinstance(excinfo.value, FunctionCheckFailed):
            path, line = self.location_of()
            text = str(excinfo.value)
            return case_failure(text, path, line + 1, text.splitlines()[0],
                                self.config)
        return super().repr_failure(excinfo, style)

    def location_of(self) -> tuple[Path, int]:
        file, line = source_location(self.call.cls)
        return (Path(file) if file else self.path), line

    def reportinfo(self) -> tuple[Path, int | None, str]:
        path, line = self.location_of()
        return path, line, self.name


class ExcludedItem(pytest.Item):
    """A Function declared not to have its forward's derivative as its backward, or one an
    xdist worker recorded that the controller cannot check: a skip that says why, so that
    ``-rs`` lists each."""

    def __init__(self, *, record: FunctionRecord | None, reason: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        parse_own_id(self)
        self.record, self.reason = record, reason

    def runtest(self) -> None:
        raise _skip_here(self.reason)

    def reportinfo(self) -> tuple[Path, int | None, str]:
        file, line = source_location(self.record.cls) if self.record else ("", None)
        return (Path(file) if file else self.path), line, self.name


def _skip_here(reason: str) -> BaseException:
    """A skip reported at the item's location (the Function's class), as a skip mark's is,
    not at this file's line."""
    try:
        return pytest.skip.Exception(reason, _use_item_location=True)
    except TypeError:  # a pytest without the keyword: reported here
        return pytest.skip.Exception(reason)


class FunctionCheckFailed(Exception):  # noqa: N818 (a verdict, as CaseFailedError)
    """A recorded call whose check failed; the message is the report."""


def summary_lines(records: list[FunctionRecord], replays: list[tuple[str, Replay]],
                  exclusions: dict[str, str]) -> list[str]:
    """What was found, checked and excluded, and what the checks cost."""
    if not records:
        return ["no custom torch.autograd.Function was called by the suite"]
    reasons = {r.function: excluded(r.cls, exclusions) for r in records}
    out = [r for r in records if reasons[r.function] is not None]
    unkept = [r for r in records if reasons[r.function] is None
              and not any(checkable(c) for c in r.calls)]
    checked = {name for name, _ in replays}
    lines = [f"{len(records)} custom Function(s) found, {len(checked)} checked "
             f"({sum(len(r.calls) for r in records)} call(s) recorded, {len(replays)} "
             f"check(s)), {len(out)} excluded"]
    for record in out:
        lines.append(f"  excluded: {record.function}: {reasons[record.function]}")
    for record in unkept:
        why = ", ".join(f"{n} x {reason}" for reason, n in record.refused.items()) or \
            "no floating-point tensor argument to differentiate"
        lines.append(f"  not checked: {record.function} ({record.seen} call(s)): {why}")
    statuses: dict[str, int] = {}
    for _, result in replays:
        statuses[result.status] = statuses.get(result.status, 0) + 1
    if replays:
        spent = sorted(result.seconds for _, result in replays)
        two = sum(result.oracles == 2 for _, result in replays)
        lines.append("  verdicts: " + ", ".join(f"{n} {s}" for s, n in sorted(statuses.items()))
                     + (f"; {two} two-way (forward not traced)" if two else ""))
        lines.append(f"  cost: {sum(spent):.2f} s in all, median {spent[len(spent) // 2]:.3f} s"
                     f" a check, longest {spent[-1]:.2f} s")
    return lines
