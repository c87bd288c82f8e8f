"""Terminal and JSON reports of results. Rich does the layout; it honours NO_COLOR and
drops colour when the output is not a terminal."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from rich.console import Console, JustifyMethod
from rich.table import Table
from rich.text import Text

from gradcheck_lab.doors.render import STATUS_STYLE, format_column, margin_text, print_failure
from gradcheck_lab.results import STATUSES, Result, summarize


class TerminalReport:
    """Streams one row per result, then the details of failures and a summary line."""

    def __init__(self, console: Console | None = None, *, verbose: bool = False,
                 quiet: bool = False) -> None:
        # Off a terminal (CI logs, pipes) rich assumes 80 columns; tables need more.
        self.console = console or Console(highlight=False, markup=False)
        if not self.console.is_terminal and self.console.width < 120:
            self.console.width = 120
        self.verbose = verbose
        self.quiet = quiet  # -q: what did not pass, and the counts
        self.results: list[Result] = []

    def header(self, environment: dict[str, Any]) -> None:
        parts = [f"{k} {v}" for k, v in environment.items()
                 if k in ("torch", "sympy", "numpy", "python", "threads") and v is not None]
        self.console.print(Text("gradcheck-lab · " + " · ".join(parts), style="dim"),
                           soft_wrap=True)

    def add(self, result: Result) -> None:
        """One line per result; long messages are left to the terminal to wrap, so each
        error stays one line for grep and CI logs."""
        self.results.append(result)
        if self.quiet and result.status in ("pass", "skip"):
            return
        where = result.location
        # A pass keeps its file:line (what to open), -v adds the message after it.
        shown = (result.message if result.status != "pass" else
                 f"{where}  {result.message}" if self.verbose else where)
        margin = margin_text(result.tolerance) if result.status == "pass" and self.verbose else ""
        if margin:
            shown += f" ({margin})"
        line = Text()
        line.append(f"{result.status.upper():<6}", style=STATUS_STYLE[result.status])
        line.append(f"{result.label:<36} ")
        timing = f"{result.duration_s:.2f}s" if result.duration_s else ""
        line.append(f"{timing:>7}  ", style="dim")
        if result.timings:
            line.append(timings_text(result.timings, self.cpu_timings(result)) + "  ",
                        style="cyan")
        line.append(shown, style="dim" if result.status == "pass" else "")
        self.console.print(line, soft_wrap=True)
        for problem in result.problems:  # every problem found at once, each its own line
            self.console.print(Text(f"      {problem}"), soft_wrap=True)
        if result.sensitivity is not None:
            from gradcheck_lab.diagnose.sensitivity import describe

            self.console.print(Text(f"      {describe(result.sensitivity)}", style="cyan"),
                               soft_wrap=True)

    @contextlib.contextmanager
    def progress(self) -> Iterator[Callable[[Result], None]]:
        """On a terminal, a spinner under the streamed lines saying how far the run is and
        what was last checked; elsewhere (CI logs, pipes) nothing."""
        if not self.console.is_terminal:
            yield lambda result: None
            return
        with self.console.status("checking the first case...") as status:
            def advance(result: Result) -> None:
                # Text, not a string: a label's [dtype-device] is not rich markup.
                status.update(Text(f"{len(self.results)} result(s) so far; last: "
                                   f"{result.label}; checking the next..."))

            yield advance

    def cpu_timings(self, result: Result) -> dict[str, dict[str, Any]] | None:
        """The same case's cpu timings, for a cuda row's speed-up."""
        if not (result.device or "").startswith("cuda"):
            return None
        for earlier in self.results:
            if (earlier.file, earlier.case, earlier.dtype, earlier.device) == (
                    result.file, result.case, result.dtype, "cpu") and earlier.timings:
                return earlier.timings
        return None

    def finish(self, elapsed: float) -> None:
        for result in self.results:
            if result.status == "fail":
                self.failure(result)
            elif result.status == "error" and self.verbose and result.details:
                self.console.print(Text(result.details, style="dim"))
        if len(self.results) > 1 and not self.quiet and (
                self.verbose or any(r.timings for r in self.results)
                or any(r.status not in ("pass", "skip") for r in self.results)):
            # When every result passed, their lines above said so: the table is for a run
            # with something to look at (or asked for with -v, or holding timings).
            self.console.print()
            self.console.print(Text("summary", style="bold"))
            self.console.print(summary_table(self.results))
        summary = summarize(self.results)
        parts = [f"{summary[s]} {label}" for s, label in
                 (("pass", "passed"), ("fail", "failed"), ("error", "errors"),
                  ("skip", "skipped"))]
        style = "red" if summary["fail"] or summary["error"] else "green"
        self.console.print(Text(f"{', '.join(parts)} in {elapsed:.1f}s", style=style))

    def failure(self, result: Result) -> None:
        self.console.print()
        print_failure(self.console, result, verbose=self.verbose)


# The cost column says its unit: the check's time over one forward+backward of the case.
COST_HEADER = "cost (× fwd+bwd)"


def summary_table(results: list[Result]) -> Table:
    """One row per result: status, the worst disagreement and who is odd, the cost, and the
    timings when they were asked for."""
    table = Table(show_edge=False, pad_edge=False, box=None, header_style="bold")
    timed = any(result.timings for result in results)
    # The file column where the results come from more than one file (two cases of one name
    # in two files are told apart); from one, each failure's heading names it.
    files = len({result.file for result in results}) > 1
    columns: list[tuple[str, JustifyMethod]] = [
        ("case", "left"), ("dtype", "left"), ("device", "left"), ("status", "left"),
        ("worst rel err", "right"), ("odd one out", "left"), (COST_HEADER, "right")]
    if files:
        columns.insert(1, ("file", "left"))
    if timed:
        columns.append(("timings", "left"))
    for column, justify in columns:
        table.add_column(column, justify=justify, no_wrap=True)
    worst_errors = format_column(
        [max((m.rel_err for m in result.mismatches), default=None) for result in results], 4)
    for result, worst in zip(results, worst_errors, strict=True):
        odd = sorted({m.odd_oracle for m in result.mismatches if m.odd_oracle})
        units = result.counts.get("cost_units")
        row: list[str | Text] = [
            result.case, *([result.location] if files else []), result.dtype or "",
            result.device or "",
            Text(result.status, style=STATUS_STYLE[result.status]), worst, ", ".join(odd),
            f"{units:,}" if units else ""]
        if timed:
            row.append(timings_text(result.timings) if result.timings else "")
        table.add_row(*row)
    return table


def timings_text(timings: dict[str, dict[str, Any]],
                 cpu: dict[str, dict[str, Any]] | None = None) -> str:
    """``fwd 0.41 ms ±0.02 ms · bwd 0.93 ms ±0.05 ms`` (median ± IQR), and on a cuda row the
    speed-up over the same case on cpu: ``bwd 40 µs ±2 µs (23.1× cpu)``."""
    parts = []
    for which, short in (("forward", "fwd"), ("backward", "bwd")):
        stats = timings.get(which)
        if stats:
            text = f"{short} {_duration(stats['median_s'])} ±{_duration(stats['iqr_s'])}"
            if cpu and cpu.get(which) and stats["median_s"] > 0:
                text += f" ({cpu[which]['median_s'] / stats['median_s']:.1f}× cpu)"
            parts.append(text)
    return " · ".join(parts)


def _duration(seconds: float) -> str:
    if seconds >= 1:
        return f"{seconds:.2f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds * 1e6:.0f} µs"


def results_document(results: list[Result], environment: dict[str, Any]) -> dict[str, Any]:
    return {
        "results": [r.to_json() for r in results],
        "summary": summarize(results),
        "environment": environment,
    }


def write_json(path: Path, results: list[Result], environment: dict[str, Any]) -> None:
    """Write the whole report at once, through a temporary file, so it is never half-written."""
    write_text_atomically(path, json.dumps(results_document(results, environment), indent=2)
                          + "\n")


STDOUT = "-"  # a report path that means standard output


def write_text_atomically(path: Path, text: str) -> None:
    """``text`` into ``path`` through a temporary file of its own beside it and a rename: a
    reader never sees half a file, and two writers of one path never share a temporary. The
    file gets the mode a plain open() gives (0666 less the umask). ``-`` is stdout; a target
    that is a link or not a regular file (``/dev/stdout``, a device, a FIFO) is written in
    place, never replaced. A failed write (a full disk, a closed pipe) raises OSError."""
    import sys

    if str(path) == STDOUT:
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    with output_file(path) as file:
        file.write(text)


@contextlib.contextmanager
def output_file(path: Path, mode: str = "w") -> Iterator[Any]:
    """``path`` open for writing a whole report or drawing (``mode`` "w" or "wb"), the one way
    every output file of the command line is opened: a regular file (or a new one) is written
    to a temporary beside it that replaces it once complete (removed if the writing fails); a
    link or a target that is not a regular file (a device, a FIFO) is written in place, never
    replaced, and a FIFO that no process reads is an OSError at once (``open_in_place``), not a
    wait. A failed write (a full disk, a closed pipe) raises OSError."""
    import os
    import tempfile

    encoding = None if "b" in mode else "utf-8"
    if path.is_symlink() or (path.exists() and not path.is_file()):
        with os.fdopen(open_in_place(path, os.O_WRONLY | os.O_TRUNC), mode,
                       encoding=encoding) as file:
            yield file
        return
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp",
                                         dir=path.parent if str(path.parent) else ".")
    try:
        with os.fdopen(handle, mode, encoding=encoding) as file:
            yield file
        os.chmod(temporary, 0o666 & ~_umask())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def open_in_place(path: Path, flags: int) -> int:
    """A descriptor for writing ``path`` as it is; a FIFO that no process reads is an OSError
    at once (ENXIO), not a wait for a reader that may never come."""
    import fcntl
    import os

    descriptor = os.open(path, flags | os.O_NONBLOCK, 0o666)
    fcntl.fcntl(descriptor, fcntl.F_SETFL, fcntl.fcntl(descriptor, fcntl.F_GETFL)
                & ~os.O_NONBLOCK)  # the writes themselves block, as a plain open's do
    return descriptor


def _umask() -> int:
    import os

    current = os.umask(0o022)  # reading the umask means setting it; put straight back
    os.umask(current)
    return current


class GuardedStream:
    """stdout (or stderr) for what a command prints: a write that fails, a reader that went
    away (``| head``) or a full disk (``> /dev/full``), ends that output, not the command. The
    first error is kept in ``error`` (the command line says it in one line at the end), later
    writes are dropped, and the stream's descriptor is pointed at /dev/null so that the
    interpreter's last flush does not fail again. Everything else is the stream's own."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream
        self.error: OSError | None = None

    @property
    def broken(self) -> bool:
        return self.error is not None

    def write(self, text: str) -> int:
        if self.error is None:
            try:
                self.stream.write(text)
            except OSError as error:  # EPIPE, ENOSPC, EIO, ...
                self._close(error)
        return len(text)

    def flush(self) -> None:
        if self.error is None:
            try:
                self.stream.flush()
            except OSError as error:
                self._close(error)

    @property
    def encoding(self) -> str:
        return getattr(self.stream, "encoding", None) or "utf-8"

    def isatty(self) -> bool:
        return self.error is None and self.stream.isatty()

    def fileno(self) -> int:
        return self.stream.fileno()

    def __getattr__(self, name: str) -> Any:  # errors, buffer, ...: the stream's
        if name == "stream":  # not set yet (a copy being made)
            raise AttributeError(name)
        return getattr(self.stream, name)

    def _close(self, error: OSError) -> None:
        import os

        self.error = error
        with contextlib.suppress(OSError, ValueError):
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, self.stream.fileno())
            os.close(null)


def merge_reports(documents: list[Any], names: list[str]) -> dict[str, Any]:
    """One report from several --json reports: results in order, the summary counted again
    from their statuses, the first report's environment. A document that is not a report is
    a ValueError naming it."""
    results: list[Any] = []
    for document, name in zip(documents, names, strict=True):
        if not (isinstance(document, dict) and isinstance(document.get("results"), list)
                and all(isinstance(r, dict) and r.get("status") in STATUSES
                        for r in document["results"])):
            raise ValueError(f"{name}: not a gradcheck-lab --json report (no results list "
                             "with a status in each)")
        results.extend(document["results"])
    summary = dict.fromkeys(STATUSES, 0)
    for result in results:
        summary[result["status"]] += 1
    environment = documents[0].get("environment", {}) if documents else {}
    return {"results": results, "summary": summary, "environment": environment,
            "merged_from": names}


class JsonLines:
    """Appends one line per result as it is finished, so a killed run keeps what it
    finished. Each line is a single write() on a file opened for appending: runs that share
    the path (or a reader tailing it) see whole lines, interleaved, never a torn one."""

    def __init__(self, path: Path) -> None:
        import os
        import sys

        if str(path) == STDOUT:
            sys.stdout.flush()
            self.descriptor = os.dup(sys.stdout.fileno())
        else:
            self.descriptor = open_in_place(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        self.error: OSError | None = None  # the first failed write; later lines are dropped

    def add(self, result: Result) -> None:
        import os

        if self.error is not None:
            return
        data = (json.dumps(result.to_json()) + "\n").encode("utf-8")
        try:
            while data:  # a regular file takes it whole; the loop is for a short write
                data = data[os.write(self.descriptor, data):]
        except OSError as error:  # a full disk, a closed pipe: said once, at the end
            self.error = error

    def close(self) -> None:
        import os

        try:
            os.close(self.descriptor)
        except OSError as error:
            self.error = self.error or error
