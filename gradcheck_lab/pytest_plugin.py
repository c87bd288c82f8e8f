"""The pytest front door: every YAML case becomes test items, one per case × dtype × device.

Registered through the ``pytest11`` entry point. Importing it imports neither torch nor sympy;
they load when the first case runs. YAML files are collected under the configured case paths
(ini option ``gradcheck_case_paths``, default ``cases``) and under paths named on the command
line; other YAML in the tree (fixtures, mkdocs.yml, CI files) is left alone.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

CASE_SUFFIXES = (".yaml", ".yml")
# Under a directory named on the command line, only YAML that looks like a case file is
# collected (a top-level `output:` or `cases:` key), so `pytest .` leaves mkdocs.yml alone.
_LOOKS_LIKE_CASE = re.compile(rb"^(output|cases)\s*:", re.MULTILINE)
_SNIFF_BYTES = 1 << 20


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini(
        "gradcheck_case_paths", type="linelist", default=["cases"],
        help="gradcheck-lab: files or directories whose YAML case files are collected "
             "(relative to the rootdir; default: cases)")


def pytest_report_header(config: pytest.Config) -> str:
    from gradcheck_lab import __version__

    paths = ", ".join(str(p) for p in _case_paths(config))
    return f"gradcheck-lab {__version__}: case paths {paths}"


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    if file_path.suffix.lower() not in CASE_SUFFIXES:
        return None
    if not _wanted(file_path, parent.config):
        return None
    return CaseFile.from_parent(parent, path=file_path)


def _case_paths(config: pytest.Config) -> list[Path]:
    root = config.inipath.parent if config.inipath else config.rootpath
    return [(root / entry).resolve() for entry in config.getini("gradcheck_case_paths")]


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
            return True
    for named in _named_paths(config):
        if path == named:
            return True
        if path.is_relative_to(named):
            return _looks_like_case(path)
    return False


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
        from gradcheck_lab.casefile import load_file
        from gradcheck_lab.errors import CaseError

        used: set[str] = set()
        for loaded in load_file(self.path):
            if isinstance(loaded, CaseError):
                name = _unique(loaded.case or self.path.stem, used)
                yield InvalidCaseItem.from_parent(self, name=name, error=loaded)
                continue
            for dtype in loaded.dtypes:
                for device in loaded.devices:
                    name = _unique(f"{loaded.name}[{dtype}-{device}]", used)
                    yield CaseItem.from_parent(self, name=name, case=loaded, dtype=dtype,
                                               device=device)


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
        self.case = case
        self.dtype = dtype
        self.device = device

    def runtest(self) -> None:
        from gradcheck_lab.runner import run_case

        (result,) = run_case(self.case, only=(self.dtype, self.device))
        self.user_properties.append(("gradcheck_result", result.to_json()))
        if result.status == "skip":
            pytest.skip(result.message)
        if result.status != "pass":
            raise CaseFailedError(result)

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException],
                     style: str | None = None) -> str:
        if isinstance(excinfo.value, CaseFailedError):
            return render_failure(excinfo.value.result)
        return super().repr_failure(excinfo, style)

    def reportinfo(self) -> tuple[Path, int | None, str]:
        line = self.case.line
        return self.path, (line - 1 if line else None), f"{self.case.name} [{self.dtype}-" \
                                                        f"{self.device}]"


class InvalidCaseItem(pytest.Item):
    """A file or case that could not be loaded: fails with its one-line message."""

    def __init__(self, *, error: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.error = error

    def runtest(self) -> None:
        raise CaseFailedError(self.error)

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException],
                     style: str | None = None) -> str:
        if isinstance(excinfo.value, CaseFailedError):
            return self.error.render()
        return super().repr_failure(excinfo, style)

    def reportinfo(self) -> tuple[Path, int | None, str]:
        line = self.error.line
        return self.path, (line - 1 if line else None), f"invalid case file {self.name}"


def render_failure(result: Any) -> str:
    """The failure text for pytest: where, what, the mismatch table, the settings used."""
    from rich.console import Console

    from gradcheck_lab.report import mismatch_table, settings_line

    if result.status == "error":
        return result.message
    buffer = io.StringIO()
    console = Console(file=buffer, width=140, color_system=None, highlight=False)
    console.print(f"{result.file}:{result.line}: {result.label}: {result.message}",
                  soft_wrap=True)
    console.print(mismatch_table(result.mismatches))
    for note in result.notes:
        console.print(f"note: {note}", soft_wrap=True)
    console.print(settings_line(result), soft_wrap=True)
    return buffer.getvalue().rstrip()
