"""Files and directories -> cases -> results, streamed one at a time.

Case files are found (directories searched recursively, in sorted order), loaded, and each
case checked: in this process, or, with a case time budget, a case with an impl or a training
step file in a worker process (``run.isolation``, under the memory budget too). A path that
holds no case and a case that cannot be read become ``error`` results; nothing here stops the
other cases.
"""

from __future__ import annotations

import atexit
import contextlib
import itertools
import os
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from gradcheck_lab.casefile import Case, ImplRef, RunQuota, is_case_file
from gradcheck_lab.casefile.selection import SEPARATOR, SelectionError, selected_items
from gradcheck_lab.errors import CaseError
from gradcheck_lab.pipeline import run_case
from gradcheck_lab.results import Result
from gradcheck_lab.run.budget import CaseTimeout, error_results, time_budget
from gradcheck_lab.run.isolation import CaseWorker
from gradcheck_lab.settings import Settings


def discover(paths: Iterable[Path]) -> tuple[list[Path], list[Result]]:
    """Case files under ``paths`` (directories searched recursively, sorted); and an error
    result for every path that does not exist or holds no case file."""
    found: list[Path] = []
    problems: list[Result] = []
    for path in paths:
        if path.is_dir():
            try:
                files = sorted(p for p in path.rglob("*") if p.is_file() and is_case_file(p))
            except RecursionError:  # pathlib walks a tree recursively
                problems.append(_path_error(path, "the directory tree is nested deeper than "
                                                  "Python's recursion limit; not searched"))
                continue
            if not files:
                problems.append(_path_error(path, "no *.yaml or *.yml case files here"))
            # A link out of the directory given is not read (as an impl's link may not leave
            # its case file's directory): what a pull request adds under cases/ stays there.
            root = path.resolve()
            for file in files:
                if file.resolve().is_relative_to(root):
                    found.append(file)
                else:
                    problems.append(_path_error(file, f"a link that leads outside {path}; not "
                                                      "read"))
        elif path.is_file():
            found.append(path)
        else:
            problems.append(_path_error(path, "no such file or directory"))
    return found, problems


def run_paths(paths: Iterable[Path], settings: Settings = Settings(),
              keep: Callable[[Case], bool] | None = None) -> Iterator[Result]:
    """Every case under ``paths``; a ``FILE::NAME`` path checks that one case; ``keep``
    (``run -k``) chooses among the cases (a case that could not be read is always said). The
    run's case limit counts both: the files and selections past it are errors, not read."""
    paths = list(paths)
    plain = [path for path in paths if not _is_selection(path)]
    chosen = [path for path in paths if _is_selection(path)]
    files, missing = discover(plain)
    yield from missing
    with Isolation(settings) as isolation:
        quota = RunQuota(settings.limits)
        # File by file, each read just before its cases run: results stream from the first
        # file on (a slow file to read delays only its own), and a signal keeps them.
        loaded = (quota.load(path, settings.limits) for path in files)
        selected = (_selected(path, quota, settings) for path in chosen)
        for items in itertools.chain(loaded, selected):
            if isinstance(items, Result):  # a FILE::NAME that names no case
                yield items
                continue
            if keep is not None:
                items = [c for c in items if isinstance(c, CaseError) or keep(c)]
            yield from run_file_cases(items, settings, isolation)


def _is_selection(path: Path) -> bool:
    """``FILE::NAME``, as ``selected_items`` reads it: a file whose own name holds "::" is a
    file."""
    return SEPARATOR in str(path) and not path.exists()


def _selected(path: Path, quota: RunQuota, settings: Settings
              ) -> list[Case | CaseError] | Result:
    """The case ``FILE::NAME`` names, counted against the run's case limit as a file's cases
    are (past it, the quota's error and the file not read); a name that is not there is an
    error result."""
    file = Path(str(path).rpartition(SEPARATOR)[0])
    if quota.used >= quota.limit:
        return quota.load(file, settings.limits)  # the limit's error; nothing is read
    try:
        selected = selected_items(str(path), settings.limits)
    except SelectionError as exc:
        return _path_error(path, str(exc))
    items = selected[1] if selected is not None else []
    if quota.used + len(items) > quota.limit:  # two cases of one name past the limit
        quota.used = quota.limit
        return quota.load(file, settings.limits)
    quota.used += len(items)
    return items


def run_file_cases(loaded: list[Case | CaseError], settings: Settings,
                   isolation: Isolation | None = None) -> Iterator[Result]:
    if isolation is not None:
        isolation.prepare(loaded)
    for item in loaded:
        if isinstance(item, CaseError):
            yield error_result(item)
        elif isolation is not None and isolation.applies_to(item):
            yield from isolation.run(item)
        elif settings.case_timeout is not None:
            yield from budgeted(item, settings)
        else:
            yield from run_case(item, settings)


def budgeted(case: Case, settings: Settings) -> list[Result]:
    """A case checked in this process under the case time budget (``run.budget``): the
    results finished in time, and an error for each dtype × device that was not."""
    # What every check needs, imported once per process before the clock starts: the first
    # case must not pay for it (3 s of CPU on a busy machine), as a worker's start is not.
    import sympy  # noqa: F401
    import torch  # noqa: F401

    results: list[Result] = []
    try:
        with time_budget(settings.case_timeout):
            for result in run_case(case, settings):
                results.append(result)
    except CaseTimeout:
        done = {(r.dtype, r.device) for r in results}
        results += [r for r in error_results(
            case, "output", f"the check ran past the case time budget of "
                            f"{settings.case_timeout:g} s (--case-timeout) and was stopped "
                            "(for a spec this large, --symbolic sweep)")
                    if (r.dtype, r.device) not in done]
    return results


class Isolation:
    """Cases with an impl or a training step file run in one reused worker process, under
    the time budget and the memory budget (one per ``gradcheck-lab run``, one per pytest
    session; ``run_file`` borrows a shared one, ``shared_isolation``)."""

    def __init__(self, settings: Settings, worker: CaseWorker | None = None) -> None:
        self.settings = settings
        self.worker = worker
        self._owns_worker = worker is None

    def __enter__(self) -> Isolation:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop the worker process, if one was started (and is not a shared one)."""
        if self.worker is not None and self._owns_worker:
            self.worker.stop()

    def applies_to(self, case: Case) -> bool:
        """A case that runs the user's code from a file: its impl, or its training step."""
        step = case.training.step if case.training is not None else None
        return self.settings.case_timeout is not None and (
            isinstance(case.impl, ImplRef) or isinstance(step, ImplRef))

    def prepare(self, cases: Iterable[Case | CaseError]) -> None:
        """Start the worker now, without waiting for it, when any of ``cases`` will need it:
        its start (torch's import) overlaps the work before the first such case."""
        if any(isinstance(case, Case) and self.applies_to(case) for case in cases):
            self._worker().start()

    def run(self, case: Case) -> list[Result]:
        assert self.settings.case_timeout is not None
        return self._worker().run(case, self.settings, self.settings.case_timeout)

    def _worker(self) -> CaseWorker:
        if self.worker is None:
            self.worker = CaseWorker(self.settings.case_memory)
        return self.worker


_SHARED: dict[int | None, CaseWorker] = {}  # by memory budget
_SHARED_LOCK = threading.Lock()


@contextlib.contextmanager
def shared_isolation(settings: Settings) -> Iterator[Isolation]:
    """The Isolation of one Python API call: this process's shared worker for the memory
    budget (started by the first call that needs it, stopped at exit), so that a test suite
    calling ``run_file`` again and again imports torch in a worker once. A call from another
    thread than the main one (whose end would end a worker it started: PR_SET_PDEATHSIG), or
    while another call holds the shared worker, gets a worker of its own."""
    main = threading.current_thread() is threading.main_thread()
    if not (main and _SHARED_LOCK.acquire(blocking=False)):
        with Isolation(settings) as isolation:
            yield isolation
        return
    try:
        worker = _SHARED.get(settings.case_memory)
        if worker is None:
            if not _SHARED:
                atexit.register(_stop_shared)
            worker = _SHARED[settings.case_memory] = CaseWorker(settings.case_memory)
        yield Isolation(settings, worker)
    finally:
        _SHARED_LOCK.release()


def _stop_shared() -> None:
    for worker in _SHARED.values():
        worker.stop()
    _SHARED.clear()


if hasattr(os, "register_at_fork"):  # a forked child has no worker of its own yet
    os.register_at_fork(after_in_child=_SHARED.clear)


def error_result(error: CaseError) -> Result:
    """A case (or file) that could not be parsed: dtype and device are null."""
    return Result(case=error.case or Path(error.file).stem, file=error.file, line=error.line,
                  dtype=None, device=None, status="error", message=error.render(),
                  problems=[other.render() for other in error.also])


def _path_error(path: Path, message: str) -> Result:
    return Result(case=path.stem or str(path), file=str(path), line=None, dtype=None,
                  device=None, status="error", message=f"{path}: path: {message}")
