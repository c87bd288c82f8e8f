"""The pytest front door: every YAML case becomes test items, one per case × dtype × device.

Registered through the ``pytest11`` entry point (``gradcheck_lab.pytest_plugin``, which
re-exports these hooks). Importing it imports neither torch nor sympy;
they load when the first case runs. YAML files are collected under the configured case paths
(ini option ``gradcheck_case_paths``, default ``cases``) and under paths named on the command
line; other YAML in the tree (fixtures, mkdocs.yml, CI files) is left alone. In a project
that sets no ``gradcheck_*`` ini key, a YAML file under ``cases`` is collected only when it is
a case file by content, and benchmark suites run as pytest-benchmark runs them.

``pytest --benchmark`` runs timings instead of checks: two items per case × dtype × device
(forward and backward, ``r144[float64-cpu-backward]``), timed by pytest-benchmark's fixture,
plus the tests under the benchmark paths (ini ``gradcheck_benchmark_paths``, default
``benchmarks``), which plain ``pytest`` leaves out.
"""

from __future__ import annotations

import array
import functools
import json
import re
import zlib
from collections.abc import Generator, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from gradcheck_lab.doors.pytest_reports import case_failure, parse_own_id
from gradcheck_lab.visible import visible

if TYPE_CHECKING:
    from _pytest._code.code import TracebackStyle  # repr_failure's style= (pytest 8+)
    from pluggy import Result  # a hook wrapper's outcome (pluggy 1.1+)

CASE_SUFFIXES = (".yaml", ".yml")
# Under a directory named on the command line, only YAML that looks like a case file is
# collected (a top-level `output:` or `cases:` key), or any YAML beside such files, so
# `pytest .` leaves mkdocs.yml alone.
_LOOKS_LIKE_CASE = re.compile(rb"^(inputs|output|impl|cases)\s*:", re.MULTILINE)
_SNIFF_BYTES = 1 << 20
_MAX_SNIFFED_SIBLINGS = 64  # a directory of thousands of YAML files is judged by its first
DEFAULT_CASE_PATHS = ["cases"]  # where an unset gradcheck_case_paths looks
DEFAULT_BENCHMARK_PATHS = ["benchmarks"]
_SCHEMA_COMMENT = re.compile(rb"^#\s*yaml-language-server:\s*\$schema=\S*case\.schema\.json",
                             re.MULTILINE)


TIMING_DEVICES = ("cpu", "cuda")
# pytest-benchmark's default on CPython is no warm-up; a fresh graph per round still pays
# first-call costs (allocator, lazy initialisation) that belong outside the statistics.
DEFAULT_WARMUP_ROUNDS = 3
XDIST_MESSAGE = ("gradcheck-lab: timings are disabled under pytest-xdist (-n): workers share "
                 "the CPU; run `pytest --benchmark` without -n")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini(
        "gradcheck_case_paths", type="linelist", default=None,
        help="gradcheck-lab: files or directories whose YAML case files are collected "
             "(relative to the rootdir; default: cases)")
    parser.addini(
        "gradcheck_benchmark_paths", type="linelist", default=None,
        help="gradcheck-lab: benchmark suites, collected only with --benchmark or when named")
    group = parser.getgroup("gradcheck-lab")
    group.addoption(
        "--benchmark", action="store_true", dest="gradcheck_benchmark", default=False,
        help="gradcheck-lab: run timings only (forward and backward of every case, through "
             "pytest-benchmark, plus the benchmark suites) instead of the checks")
    group.addoption(
        "--gradcheck-shard", default=None, metavar="K/N", dest="gradcheck_shard",
        help="gradcheck-lab: run the K-th of N shards of the collected items (K from 1), "
             "chosen by a hash of each node id, the same on every machine; merge the shards' "
             "--json reports with `gradcheck-lab merge`")
    parser.addini(
        "gradcheck_dropin", type="string", default=None,
        help="gradcheck-lab: true (or compare) routes every torch.autograd.gradcheck call "
             "through gradcheck-lab, as --gradcheck-dropin")
    group.addoption(
        "--gradcheck-dropin", action="store_const", const="check", default=None,
        dest="gradcheck_dropin",
        help="gradcheck-lab: route every torch.autograd.gradcheck and gradgradcheck call the "
             "suite makes through gradcheck-lab's drop-in, with no test edited; a summary at "
             "the end (bounded by --gradcheck-case-memory and --gradcheck-case-timeout)")
    group.addoption(
        "--gradcheck-dropin=compare", action="store_const", const="compare",
        dest="gradcheck_dropin",
        help="gradcheck-lab: as --gradcheck-dropin, and also run torch's own on every call: "
             "the summary gives both times and every disagreement")
    parser.addini(
        "gradcheck_functions", type="string", default=None,
        help="gradcheck-lab: true records every custom torch.autograd.Function the suite "
             "calls and checks each at its recorded inputs after the suite, as "
             "--gradcheck-functions")
    parser.addini(
        "gradcheck_functions_exclude", type="linelist", default=None,
        help="gradcheck-lab: 'module.Class: reason' lines: Functions whose backward is not "
             "meant to be their forward's derivative (surrogate gradients), not checked")
    parser.addini(
        "gradcheck_functions_include", type="linelist", default=None,
        help="gradcheck-lab: dotted names of functions or nn.Module subclasses whose calls "
             "--gradcheck-functions records and checks as well (module.function, "
             "module.Class)")
    group.addoption(
        "--gradcheck-functions", action="store_true", default=None,
        dest="gradcheck_functions",
        help="gradcheck-lab: record every custom torch.autograd.Function the suite calls "
             "(a few small calls per class, inputs copied) and check each three ways at its "
             "recorded inputs after the suite, as items gradcheck::module.Class.apply[...]")
    _add_run_options(parser, group)


def _add_run_options(parser: pytest.Parser, group: pytest.OptionGroup) -> None:
    """The run settings of the one option table (``gradcheck_lab.options``), each as a flag
    (``--gradcheck-case-timeout``) and an ini key (``gradcheck_case_timeout``): one Settings
    object, as the command line builds it."""
    from gradcheck_lab.options import PYTEST, options_of

    for option in options_of(PYTEST):
        help_text = f"gradcheck-lab: {option.described()}"
        parser.addini(option.ini_key, type="string", default=None,
                      help=help_text + ("; true or false" if option.switch else ""))
        if option.switch:
            group.addoption(option.pytest_flag, action="store_true", default=None,
                            dest=option.ini_key, help=help_text)
        else:
            group.addoption(option.pytest_flag, default=None, dest=option.ini_key,
                            metavar=option.metavar, help=help_text)


_SETTINGS = pytest.StashKey[Any]()
_OPTION_VALUES = pytest.StashKey[dict[str, Any]]()
_ISOLATION = pytest.StashKey[Any]()
_QUOTA = pytest.StashKey[Any]()  # the session's RunQuota: cases counted across files


def run_settings(config: pytest.Config) -> Any:
    """The Settings every case item of this session runs with: flags over ini keys over the
    command line's defaults; a wrong value is a usage error naming the flag."""
    if _SETTINGS in config.stash:
        return config.stash[_SETTINGS]
    from gradcheck_lab.options import PYTEST, settings_from

    try:
        settings = settings_from(option_values(config), PYTEST)
    except ValueError as exc:
        raise pytest.UsageError(f"gradcheck-lab: {exc}") from None
    config.stash[_SETTINGS] = settings
    return settings


def option_values(config: pytest.Config) -> dict[str, Any]:
    """The table's options as given, flags over ini keys, parsed once a session (None: not
    given; the defaults are ``settings_from``'s); a wrong value is a ValueError naming flag
    and key."""
    if _OPTION_VALUES in config.stash:
        return config.stash[_OPTION_VALUES]
    from gradcheck_lab.options import PYTEST, options_of

    values = {}
    for option in options_of(PYTEST):
        given = config.getoption(option.ini_key, None)
        # An unset ini key reads as None on pytest 8 and 9 and as [] on 7: unset either way.
        text = given if given is not None else config.getini(option.ini_key) or None
        try:
            values[option.name] = (text if text is None or isinstance(text, bool)
                                   else option.parse(str(text)))
        except ValueError as exc:
            raise ValueError(f"{option.pytest_flag} ({option.ini_key}): {exc}") from None
    config.stash[_OPTION_VALUES] = values
    return values


def _isolation(config: pytest.Config) -> Any:
    """The session's worker process for cases with an impl file (started on first use)."""
    if _ISOLATION not in config.stash:
        from gradcheck_lab.run.files import Isolation

        config.stash[_ISOLATION] = Isolation(run_settings(config))
    return config.stash[_ISOLATION]


def pytest_unconfigure(config: pytest.Config) -> None:
    if _ISOLATION in config.stash:
        config.stash[_ISOLATION].close()


def benchmark_mode(config: pytest.Config) -> bool:
    """Timings instead of checks: ``--benchmark``, or pytest-benchmark's ``--benchmark-only``
    (which would otherwise skip every check and time nothing)."""
    return bool(config.getoption("gradcheck_benchmark", False)
                or config.getoption("benchmark_only", False))


def _own_benchmark_flag(config: pytest.Config) -> bool:
    return bool(config.getoption("gradcheck_benchmark", False))


def xdist_active(config: pytest.Config) -> bool:
    # A worker's config carries `workerinput`; the PYTEST_XDIST_WORKER variable is not used
    # because a pytest started in a subprocess of a worker inherits it without being one.
    workers = config.getoption("numprocesses", None) or config.getoption("dist", "no") != "no"
    return bool(workers) or hasattr(config, "workerinput")


# The marks every case item carries, for -m: "gradcheck" on all, the others by what the case
# checks (``case_marks``).
MARKERS = {
    "gradcheck": "a YAML case checked by gradcheck-lab",
    "impl": "a gradcheck-lab case that checks an impl (a custom Function, a module, a kernel)",
    "traced": "a gradcheck-lab case whose spec is traced from its impl's forward",
    "order2": "a gradcheck-lab case checked to second order (order: 2)",
    "forward_mode": "a gradcheck-lab case that checks forward mode (modes: [reverse, forward])",
    "training": "a gradcheck-lab case with a training step",
}


def case_marks(case: Any) -> list[str]:
    """The marks of a case's items, from MARKERS."""
    marks = ["gradcheck"]
    if case.impl is not None:
        marks.append("impl")
    if case.traced:
        marks.append("traced")
    if case.order == 2:
        marks.append("order2")
    if "forward" in case.modes:
        marks.append("forward_mode")
    if case.training is not None:
        marks.append("training")
    return marks


def pytest_configure(config: pytest.Config) -> None:
    for name, meaning in MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {meaning}")
    settings = run_settings(config)  # a wrong --gradcheck-* value stops the run here
    _histogram_needs_its_extra(config)
    _install_dropin(config, settings)
    _install_functions(config, settings)
    if not benchmark_mode(config):
        return
    if _own_benchmark_flag(config) and config.args_source != pytest.Config.ArgsSource.ARGS:
        # Without paths on the command line, timings cover the benchmark suites too.
        root = _root(config)
        for entry in _benchmark_entries(config):
            if (root / entry).exists() and str(root / entry) not in config.args:
                config.args.append(str(root / entry))
    if xdist_active(config):
        config.issue_config_time_warning(pytest.PytestWarning(XDIST_MESSAGE), stacklevel=2)


def _histogram_needs_its_extra(config: pytest.Config) -> None:
    """``--benchmark-histogram`` draws with pygal, pytest-benchmark's optional extra: without
    it, one line before anything runs, not an INTERNALERROR after every timing."""
    import importlib.util

    if config.getoption("benchmark_histogram", None) and importlib.util.find_spec(
            "pygal") is None:
        raise pytest.UsageError(
            "--benchmark-histogram needs pytest-benchmark's histogram extra (pygal): pip "
            "install -c constraints.txt 'pytest-benchmark[histogram]'")


def _install_dropin(config: pytest.Config, settings: Any) -> None:
    """``--gradcheck-dropin`` (or the ini key): the drop-in's session plugin, registered
    before collection so that test modules import the drop-in already in place."""
    mode = config.getoption("gradcheck_dropin", None)
    if mode is None:
        spelled = (config.getini("gradcheck_dropin") or "").strip().lower()
        if spelled not in ("", "false", "true", "compare"):
            raise pytest.UsageError(f"gradcheck-lab: gradcheck_dropin must be true, false or "
                                    f"compare, not {spelled!r}")
        mode = {"true": "check", "compare": "compare"}.get(spelled)
    if mode is None or config.pluginmanager.has_plugin("gradcheck-dropin"):
        return
    from gradcheck_lab.doors.dropin.pytest_hooks import DropinSession

    config.pluginmanager.register(DropinSession(mode, settings.case_memory or 0,
                                                settings.case_timeout or 0), "gradcheck-dropin")


def _install_functions(config: pytest.Config, settings: Any) -> None:
    """``--gradcheck-functions`` (or the ini key): the recorder, installed before collection
    so that a Function called at import is recorded too."""
    wanted = config.getoption("gradcheck_functions", None)
    if wanted is None:
        spelled = (config.getini("gradcheck_functions") or "").strip().lower()
        if spelled not in ("", "false", "true"):
            raise pytest.UsageError(f"gradcheck-lab: gradcheck_functions must be true or "
                                    f"false, not {spelled!r}")
        wanted = spelled == "true"
    if not wanted or config.pluginmanager.has_plugin("gradcheck-functions"):
        return
    from gradcheck_lab.doors.functions.intent import parse_exclusions
    from gradcheck_lab.doors.functions.pytest_hooks import FunctionsSession

    try:
        exclusions = parse_exclusions(config.getini("gradcheck_functions_exclude") or [],
                                      "gradcheck_functions_exclude")
    except ValueError as exc:
        raise pytest.UsageError(f"gradcheck-lab: {exc}") from None
    include = [name.strip() for name in config.getini("gradcheck_functions_include") or []
               if name.strip()]
    config.pluginmanager.register(FunctionsSession(exclusions, settings.case_memory,
                                                   settings.case_timeout, include),
                                  "gradcheck-functions")


def _opted_in(config: pytest.Config) -> bool:
    """The project configures gradcheck-lab (a ``gradcheck_*`` ini key): only then are its
    case paths collected whatever their YAML holds, and its benchmark suites held back from
    plain ``pytest``. Any other project keeps its YAML and benchmarks as they were."""
    # The options have no default, so that an unset one reads as empty (pytest 9 deprecates
    # reading inicfg to tell).
    return bool(config.getini("gradcheck_case_paths")
                or config.getini("gradcheck_benchmark_paths"))


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """Plain ``pytest`` leaves the benchmark suites out unless they are named (in a project
    that configures gradcheck-lab)."""
    if benchmark_mode(config) or not _opted_in(config):
        return None
    path = collection_path.resolve()
    for entry in _benchmark_entries(config):
        suite = (_root(config) / entry).resolve()
        if path == suite or path.is_relative_to(suite):
            named = any(path.is_relative_to(n) or n.is_relative_to(suite)
                        for n in _named_paths(config))
            return None if named else True
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """With --benchmark, only timings run: checks and ordinary tests are deselected. (With
    pytest-benchmark's --benchmark-only, pytest-benchmark skips what is not a timing, as it
    does without gradcheck-lab.)"""
    _keep_shard(config, items)
    if not _own_benchmark_flag(config):
        return
    keep: list[pytest.Item] = []
    drop: list[pytest.Item] = []
    for item in items:
        timing = isinstance(item, (TimingItem, InvalidCaseItem)) or (
            "benchmark" in getattr(item, "fixturenames", ()))
        (keep if timing else drop).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


def pytest_collection_finish(session: pytest.Session) -> None:
    """The worker for the cases with an impl file starts now, without waiting for it: torch's
    import in it overlaps the items that run before the first such case (under xdist each
    worker may get none of them, so it is started on first use there)."""
    config = session.config
    runs_nothing = any(getattr(config.option, flag, False)
                       for flag in ("collectonly", "showfixtures", "setupplan"))
    if runs_nothing or xdist_active(config) or benchmark_mode(config):
        return
    cases = [item.case for item in session.items if isinstance(item, CaseItem)]
    if cases:
        _isolation(config).prepare(cases)


def shard_of(nodeid: str, shards: int) -> int:
    """The shard (1 to ``shards``) an item belongs to: a hash of its node id, so that every
    machine splits a suite alike, whatever it collected first."""
    return zlib.crc32(nodeid.encode("utf-8")) % shards + 1


def _keep_shard(config: pytest.Config, items: list[pytest.Item]) -> None:
    given = config.getoption("gradcheck_shard", None)
    if given is None:
        return
    shard, _, shards = str(given).partition("/")
    try:
        k, n = int(shard), int(shards)
        if not 1 <= k <= n:
            raise ValueError
    except ValueError:
        raise pytest.UsageError(f"gradcheck-lab: --gradcheck-shard {given}: expected K/N with "
                                "1 <= K <= N (3/4: the third of four shards)") from None
    keep: list[pytest.Item] = []
    dropped: list[pytest.Item] = []
    for item in items:
        (keep if shard_of(item.nodeid, n) == k else dropped).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = keep


def pytest_report_teststatus(report: pytest.TestReport,
                             config: pytest.Config) -> tuple[str, str, str] | None:
    """With -v, a passing case says how close it came to its tolerance."""
    if report.when != "call" or not report.passed or not config.option.verbose:
        return None
    data = dict(report.user_properties).get("gradcheck_result")
    if not isinstance(data, str):
        return None
    from gradcheck_lab.doors.render import margin_text

    text = margin_text(json.loads(data).get("tolerance", {}))
    return ("passed", ".", f"PASSED ({text})") if text else None


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]
                              ) -> Generator[None, Result[pytest.TestReport], None]:
    """A skip of a case's item is reported at the case's YAML file and line (``-rs``), not at
    the line of this plugin that skipped it."""
    outcome = yield
    report = outcome.get_result()
    if not (report.skipped and isinstance(report.longrepr, tuple)
            and isinstance(item, (CaseItem, TimingItem))):
        return
    path, line, _name = item.reportinfo()
    # pytest's summary names the file relative to where it started, as for its own skips.
    report.longrepr = (str(path), (line or 0) + 1, report.longrepr[2])


def pytest_report_header(config: pytest.Config) -> str | None:
    """The case paths that exist, or nothing: a project that installs gradcheck-lab for its
    drop-in or its API has no cases/ folder to be told about."""
    from gradcheck_lab.version import __version__

    existing = [p for p in _case_paths(config) if p.exists()]
    if not existing:
        return None
    paths = ", ".join(str(p) for p in existing)
    return f"gradcheck-lab {__version__}: case paths {paths}"


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    if file_path.suffix.lower() not in CASE_SUFFIXES:
        return None
    if not _wanted(file_path, parent.config):
        return None
    return CaseFile.from_parent(parent, path=file_path)


def _root(config: pytest.Config) -> Path:
    return config.inipath.parent if config.inipath else config.rootpath


def _case_paths(config: pytest.Config) -> list[Path]:
    entries = config.getini("gradcheck_case_paths") or DEFAULT_CASE_PATHS
    return [(_root(config) / entry).resolve() for entry in entries]


def _benchmark_entries(config: pytest.Config) -> list[str]:
    return config.getini("gradcheck_benchmark_paths") or DEFAULT_BENCHMARK_PATHS


def _named_paths(config: pytest.Config) -> list[Path]:
    """Paths the user named on the command line (not testpaths, not the invocation dir)."""
    if config.args_source != pytest.Config.ArgsSource.ARGS:
        return []
    base = config.invocation_params.dir
    return [(base / arg.split("::")[0]).resolve() for arg in config.args]


def _wanted(file_path: Path, config: pytest.Config) -> bool:
    path = file_path.resolve()
    for root in _case_paths(config):
        if path == root or path.is_relative_to(root):
            return _opted_in(config) or _is_case_by_content(path)
    for named in _named_paths(config):
        if path == named:
            return True
        if path.is_relative_to(named):
            return _looks_like_case(path) or _among_case_files(path.parent)
    return False


@functools.lru_cache(maxsize=256)
def _among_case_files(directory: Path) -> bool:
    """A directory, under one named on the command line, that holds case files: every YAML
    file in it is taken for one, so that an empty file, a top-level list or a file of
    comments beside the cases is a failing item (as the command line reports it), not
    silently left out. A YAML file elsewhere (a CI workflow, mkdocs.yml) is collected only if
    it looks like a case itself; an unconfigured project's own cases/ is judged file by file
    (its HTTP fixtures stay its own)."""
    try:
        siblings = sorted(p for p in directory.iterdir()
                          if p.suffix.lower() in CASE_SUFFIXES and p.is_file())
    except OSError:
        return False
    return any(_looks_like_case(p) for p in siblings[:_MAX_SNIFFED_SIBLINGS])


def _is_case_by_content(path: Path) -> bool:
    """A YAML file that is a case file by what it holds: the case schema's comment, or a
    top-level mapping with inputs, output or impl, or cases: a list of such mappings. A file
    that does not parse counts when its top-level keys look like a case's (so that a broken
    case file is reported, not skipped); anything else is left alone."""
    from gradcheck_lab.casefile.yaml_reader import read_yaml

    try:
        with path.open("rb") as handle:
            raw = handle.read(_SNIFF_BYTES)
        if _SCHEMA_COMMENT.search(raw):
            return True
        data = read_yaml(raw.decode("utf-8")).data
    except OSError:
        return False
    except Exception:  # not YAML we can read: decide by its top-level keys
        return bool(_LOOKS_LIKE_CASE.search(raw))
    if isinstance(data, dict) and "cases" in data:
        items = data["cases"]
        return isinstance(items, list) and bool(items) and all(map(_case_like, items))
    return _case_like(data)


def _case_like(value: Any) -> bool:
    return isinstance(value, dict) and bool({"inputs", "output", "impl"} & set(value))


def _looks_like_case(path: Path) -> bool:
    try:
        with path.open("rb") as handle:
            return bool(_LOOKS_LIKE_CASE.search(handle.read(_SNIFF_BYTES)))
    except OSError:
        return False


class CaseFailedError(Exception):
    """Raised by an item whose result is ``fail`` or ``error``; carries the result."""

    def __init__(self, result: Any) -> None:
        super().__init__(result.message)
        self.result = result


class CaseFile(pytest.File):
    """One YAML file: one item per case × dtype × device, or one failing item per error."""

    def collect(self) -> Iterator[pytest.Item]:
        from gradcheck_lab.casefile import RunQuota
        from gradcheck_lab.errors import CaseError

        used: set[str] = set()
        timings = benchmark_mode(self.config)
        if not self.path.resolve().is_relative_to(self.config.rootpath.resolve()):
            # As `gradcheck-lab run`: a link out of the project is not read.
            error = CaseError(str(self.path), None, "path",
                              "a link that leads outside the rootdir; not read")
            yield InvalidCaseItem.from_parent(self, name=visible(self.path.stem), error=error)
            return
        limits = run_settings(self.config).limits
        if _QUOTA not in self.config.stash:
            self.config.stash[_QUOTA] = RunQuota(limits)
        for loaded in self.config.stash[_QUOTA].load(self.path, limits):
            if isinstance(loaded, CaseError):
                # The name as written may be what made the case invalid ('ok\u200bcase').
                name = _unique(visible(loaded.case or self.path.stem), used)
                yield InvalidCaseItem.from_parent(self, name=name, error=loaded)
                continue
            if timings:
                yield from self.timing_items(loaded, used)
                continue
            for dtype in loaded.dtypes:
                for device in loaded.devices:
                    name = _unique(f"{loaded.name}[{dtype}-{device}]", used)
                    yield CaseItem.from_parent(self, name=name, case=loaded, dtype=dtype,
                                               device=device)


    def timing_items(self, case: Any, used: set[str]) -> Iterator[pytest.Item]:
        # The case's own devices, and those of this machine (a GPU present times every case
        # there too); no skipped cuda item for a cpu case on a machine without one.
        from gradcheck_lab.subject.function import device_available

        here = [device for device in TIMING_DEVICES if device_available(device)]
        devices = list(dict.fromkeys([*here, *case.devices]))
        for dtype in case.dtypes:
            for device in devices:
                timed_in_worker: dict[str, Any] = {}  # by pass: what the worker timed
                for which in ("forward", "backward"):
                    name = _unique(f"{case.name}[{dtype}-{device}-{which}]", used)
                    item = TimingItem.from_parent(
                        self, name=name,
                        callobj=_timing_test(case, dtype, device, which, timed_in_worker))
                    item.case_line = case.line
                    yield item


def _timing_test(case: Any, dtype: str, device: str, which: str,
                 timed_in_worker: dict[str, Any]) -> Any:
    """The test function of one timing item; pytest injects pytest-benchmark's fixture.

    A case with an impl (or training step) file is timed where its check runs: in the
    session's worker process, under the case time and memory budgets (``run.isolation``), so
    that an impl that hangs, swallows signals or ends its interpreter fails this item, not
    pytest; every round's seconds come back and are pytest-benchmark's rounds. A spec without
    user code is timed here, under the interval timer of ``run.budget``."""

    def time_pass(benchmark: Any, request: pytest.FixtureRequest) -> None:
        from gradcheck_lab.diagnose.timing import TimedPass, seconds_per_round, timing_environment
        from gradcheck_lab.subject.function import device_available

        config = request.config
        if xdist_active(config):
            pytest.skip(XDIST_MESSAGE)
        if not device_available(device):
            pytest.skip(f"{device} is not available on this machine")
        from gradcheck_lab.errors import CaseTimeout
        from gradcheck_lab.run.budget import time_budget

        benchmark.group = case.name
        settings = run_settings(config)
        if _isolation(config).applies_to(case):
            _time_in_worker(config, benchmark, case, dtype, device, which, timed_in_worker)
            return
        budget = settings.case_timeout
        # No user code: the spec's passes are timed here, where the case budget's interval
        # timer interrupts them.
        try:
            with time_budget(budget), timing_environment(device, _timing_threads(
                    config)) as used_threads:
                timed = TimedPass(case, dtype, device, which)
                per_round = seconds_per_round(timed)
                rounds = pedantic_rounds(config, per_round)
                benchmark.extra_info.update({
                    "case": case.name, "dtype": dtype, "device": device, "pass": which,
                    "threads": used_threads, "tf32": False, "fresh_graph_per_round": True})
                benchmark.pedantic(timed.target, setup=timed.setup, rounds=rounds,
                                   warmup_rounds=warmup_rounds(config, rounds), iterations=1)
        except CaseTimeout:
            pytest.fail(f"the timing ran past the case time budget of {budget:g} s "
                        "(--gradcheck-case-timeout)", pytrace=False)

    return time_pass


def _timing_threads(config: pytest.Config) -> int:
    from gradcheck_lab.options import BY_NAME

    return int(option_values(config)["timing_threads"]  # checked by run_settings
               or BY_NAME["timing_threads"].default)


def _time_in_worker(config: pytest.Config, benchmark: Any, case: Any, dtype: str, device: str,
                    which: str, timed_in_worker: dict[str, Any]) -> None:
    """Time one pass of a case with user code in the session's worker, as its check item
    checks it there (``CaseItem.runtest``): the check, then the forward's and the backward's
    rounds, all under the case budget; the first of the two items runs it, the other reads
    its rounds (an item run again runs it again). An error there (the impl ran past the
    budget, ended the worker, raised) fails the item with its message, and the impl never
    runs in pytest's process."""
    import dataclasses

    from gradcheck_lab.diagnose.timing import PASSES, SampledTimings
    from gradcheck_lab.run.files import Isolation, run_file_cases

    if which not in timed_in_worker:
        session = _isolation(config)
        session.prepare([case])  # the session's worker, started once, shared with the checks
        if benchmark.disabled:  # --benchmark-disable: each pass once, untimed
            timings = SampledTimings(min_rounds=1, max_time=0.0, warmup_rounds=0,
                                     threads=_timing_threads(config))
        else:
            timings = SampledTimings(
                min_rounds=int(config.getoption("benchmark_min_rounds", 5)),
                max_time=float(config.getoption("benchmark_max_time", 1.0)),
                warmup_rounds=warmup_rounds(config, SampledTimings.max_rounds),
                warmup_capped=bool(config.getoption("benchmark_warmup", False)),
                threads=_timing_threads(config))
        settings = dataclasses.replace(run_settings(config), timings=timings)
        one = dataclasses.replace(case, dtypes=(dtype,), devices=(device,))
        with Isolation(settings, session.worker) as isolation:
            (result,) = run_file_cases([one], settings, isolation)
        for each in PASSES:  # each kept until its item reads it (the rounds compactly)
            stats = (result.timings or {}).get(each)
            timed_in_worker[each] = (result.status, result.message, None if stats is None else (
                stats["threads"], array.array("d", stats.get("samples_s") or [stats["median_s"]])))
    status, message, timed = timed_in_worker.pop(which)
    if timed is None:
        if status == "skip":
            pytest.skip(message)
        # Not a benchmark: no row, and no warning that the fixture went unused.
        benchmark.has_error = True
        benchmark._mode = "gradcheck-lab: not timed"
        pytest.fail(f"{message}\n(the {which} pass was not timed: a case with an impl file is "
                    "checked and timed in the worker process)", pytrace=False)
    threads, samples = timed
    benchmark.extra_info.update({
        "case": case.name, "dtype": dtype, "device": device, "pass": which,
        "threads": threads, "tf32": False, "fresh_graph_per_round": True,
        "timed_in": "worker process"})
    if benchmark.disabled:
        benchmark.pedantic(_untimed)
        return
    # The worker's rounds entered as pytest-benchmark's: each round reads the clock twice,
    # and the round's seconds are the second reading less the first.
    benchmark._timer = _Replay(samples)
    benchmark.pedantic(_untimed, rounds=len(samples), warmup_rounds=0, iterations=1)


def _untimed() -> None:
    """The body of a round timed in the worker."""


class _Replay:
    """A clock for pytest-benchmark that replays rounds timed elsewhere: 0, then the first
    round's seconds, 0, then the second's, and so on."""

    __name__ = "perf_counter"  # the worker's clock, as pytest-benchmark's JSON names its own

    def __init__(self, samples: Iterable[float]) -> None:
        self._readings = (reading for seconds in samples for reading in (0.0, seconds))

    def __call__(self) -> float:
        return next(self._readings, 0.0)


def pedantic_rounds(config: pytest.Config, seconds_per_round: float) -> int:
    """``--benchmark-min-rounds`` and ``--benchmark-max-time``, which pedantic mode ignores,
    applied as pytest-benchmark applies them to its own rounds."""
    from gradcheck_lab.settings import TimingSettings

    # pytest leaves string defaults unparsed: --benchmark-max-time's default is '1.0'.
    max_time = float(config.getoption("benchmark_max_time", 1.0))
    settings = TimingSettings(min_rounds=int(config.getoption("benchmark_min_rounds", 5)),
                              max_time=max_time)
    return settings.rounds_for(seconds_per_round)


def warmup_rounds(config: pytest.Config, rounds: int) -> int:
    """``--benchmark-warmup`` on: up to ``--benchmark-warmup-iterations`` rounds (at most the
    timed rounds, as pytest-benchmark caps them); otherwise gradcheck-lab's default."""
    if config.getoption("benchmark_warmup", False):
        return max(1, min(rounds, config.getoption("benchmark_warmup_iterations", rounds)))
    return DEFAULT_WARMUP_ROUNDS



def _unique(name: str, used: set[str]) -> str:
    candidate, number = name, 2
    while candidate in used:
        candidate, number = f"{name}#{number}", number + 1
    used.add(candidate)
    return candidate


class CaseItem(pytest.Item):
    """Checks one case at one dtype and device."""

    def __init__(self, *, case: Any, dtype: str, device: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        parse_own_id(self)
        self.case = case
        self.dtype = dtype
        self.device = device
        for mark in case_marks(case):
            self.add_marker(mark)

    def runtest(self) -> None:
        import dataclasses

        from gradcheck_lab.run.files import run_file_cases

        # This dtype and device only, run as `gradcheck-lab run` runs a case: an impl file in
        # the worker process under the case time budget, a spec under an interval timer.
        one = dataclasses.replace(self.case, dtypes=(self.dtype,), devices=(self.device,))
        (result,) = run_file_cases([one], run_settings(self.config), _isolation(self.config))
        # As JSON text, the --json report's form: JUnit XML writes a property's value as str(),
        # which for a dict is a Python repr that no other tool can read.
        self.user_properties.append(("gradcheck_result", json.dumps(result.to_json())))
        if result.status == "skip":
            pytest.skip(result.message)
        if result.status != "pass":
            raise CaseFailedError(result)

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException],
                     style: TracebackStyle | None = None) -> Any:
        if isinstance(excinfo.value, CaseFailedError):
            from gradcheck_lab.doors.render import failure_text

            result = excinfo.value.result
            return case_failure(failure_text(result, verbose=self.config.option.verbose > 0),
                                self.path, self.case.line,
                               result.message, self.config)
        return super().repr_failure(excinfo, style)

    def reportinfo(self) -> tuple[Path, int | None, str]:
        line = self.case.line
        return self.path, (line - 1 if line else None), f"{self.case.name}[{self.dtype}-" \
                                                        f"{self.device}]"


class TimingItem(pytest.Function):
    """A forward or backward timing, reported at the case's YAML file and line."""

    case_line: int | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        parse_own_id(self)

    def reportinfo(self) -> tuple[Path, int | None, str]:
        # A line, always: pytest's report of a skip in setup (--benchmark-skip) asserts one.
        return self.path, (self.case_line - 1 if self.case_line else 0), self.name


class InvalidCaseItem(pytest.Item):
    """A file or case that could not be loaded: fails with its one-line message."""

    def __init__(self, *, error: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        parse_own_id(self)
        self.error = error

    def runtest(self) -> None:
        raise CaseFailedError(self.error)

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException],
                     style: TracebackStyle | None = None) -> Any:
        if isinstance(excinfo.value, CaseFailedError):
            text = "\n".join(self.error.lines())  # every problem at once, a line each
            return case_failure(text, self.path, self.error.line, self.error.render(),
                                self.config)
        return super().repr_failure(excinfo, style)

    def reportinfo(self) -> tuple[Path, int | None, str]:
        line = self.error.line
        return self.path, (line - 1 if line else None), f"invalid case file {self.name}"
