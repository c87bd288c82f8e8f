"""How gradcheck-lab's own pytest items look to pytest: their ids as pytest 9 parses them,
and a failure in pytest's own report form (shared by the case items and the Function checks)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from _pytest._code.code import ReprExceptionInfo, ReprFileLocation, ReprTracebackNative


def parse_own_id(item: pytest.Item) -> None:
    """pytest 9 keeps a node id as parts, and an item's "[...]" as its params: ours are built
    from a name that holds the brackets ("r144[float64-cpu]"), which pytest would keep as a
    name, while the id it reads back from its cache (--lf, --ff, --sw) is parsed into name and
    params; the two never compare equal. Parsed here as the cache parses it. (Before pytest 9
    an id is its string.)"""
    own = getattr(item, "_id", None)
    if own is not None and not isinstance(own, str) and hasattr(type(own), "parse"):
        item._id = type(own).parse(str(own))


def case_failure(text: str, path: Path, line: int | None, message: str,
                 config: pytest.Config) -> Any:
    """A failing case's report, in pytest's own form for a failure (so that pytest-xdist
    carries it whole from a worker): the whole text (mismatch table, diagnoses, settings) for
    the failures section, and one crash line, "file:line: message", for ``--tb=line`` and the
    short summary (``-ra``), as pytest gives a Python failure."""
    # --tb=line: pytest writes the crash line itself (pytest 9 writes the report's text too).
    lines = [] if tbstyle(config) == "line" else [f"{row}\n" for row in text.splitlines()]
    return ReprExceptionInfo(ReprTracebackNative(lines),
                             ReprFileLocation(shown_path(path, config), line or 0, message))


def shown_path(path: Path, config: pytest.Config) -> str:
    """``path`` as the rest of pytest's report names files: relative to where pytest was
    started when it lies below, else as it is."""
    start = Path(config.invocation_params.dir)
    try:
        return Path(path).resolve().relative_to(start.resolve()).as_posix()
    except ValueError:
        return str(path)


def tbstyle(config: pytest.Config) -> str:
    return str(config.getoption("tbstyle", "auto"))
