"""A transient progress bar for long oracle runs (``--fd exhaustive``): on stderr when it is a
terminal, nothing otherwise (CI logs and pipes get the result lines only)."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator


@contextlib.contextmanager
def progress_bar(label: str) -> Iterator[Callable[[int, int], None] | None]:
    """Yields ``advance(done, total)``, or None off a terminal."""
    if not sys.stderr.isatty():
        yield None
        return
    from rich.console import Console
    from rich.markup import escape
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    with Progress("{task.description}", BarColumn(), MofNCompleteColumn(),
                  TimeRemainingColumn(), console=Console(stderr=True),
                  transient=True) as progress:
        task = progress.add_task(escape(label), total=None)  # [dtype-device] is not markup
        yield lambda done, total: progress.update(task, completed=done, total=total)
