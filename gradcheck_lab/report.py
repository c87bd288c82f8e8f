"""Terminal and JSON reports of results. Rich does the layout; it honours NO_COLOR and
drops colour when the output is not a terminal."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from gradcheck_lab.results import Mismatch, Result, summarize

STATUS_STYLE = {"pass": "green", "fail": "bold red", "error": "bold magenta", "skip": "yellow"}
_ORACLE_SHORT = {"symbolic": "sym", "autograd": "autograd", "finite_difference": "fd",
                 "expect": "expect"}


def _fmt(value: float | None) -> str:
    if value is None:
        return ""
    return f"{value:.6g}" if abs(value) >= 1e-4 or value == 0 else f"{value:.3e}"


class TerminalReport:
    """Streams one row per result, then the details of failures and a summary line."""

    def __init__(self, console: Console | None = None, *, verbose: bool = False) -> None:
        # Off a terminal (CI logs, pipes) rich assumes 80 columns; tables need more.
        self.console = console or Console(highlight=False, markup=False)
        if not self.console.is_terminal and self.console.width < 120:
            self.console.width = 120
        self.verbose = verbose
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
        where = f"{result.file}:{result.line}" if result.line else result.file
        shown = result.message if result.status != "pass" or self.verbose else where
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
        if result.sensitivity is not None:
            from gradcheck_lab.sensitivity import describe

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
        if len(self.results) > 1:
            self.console.print()
            self.console.print(summary_table(self.results))
        summary = summarize(self.results)
        parts = [f"{summary[s]} {label}" for s, label in
                 (("pass", "passed"), ("fail", "failed"), ("error", "errors"),
                  ("skip", "skipped"))]
        style = "red" if summary["fail"] or summary["error"] else "green"
        self.console.print(Text(f"{', '.join(parts)} in {elapsed:.1f}s", style=style))

    def failure(self, result: Result) -> None:
        self.console.print()
        self.console.print(Text(f"{result.label} at {result.file}:{result.line}: "
                                f"{result.message}", style="bold red"), soft_wrap=True)
        self.console.print(mismatch_table(result.mismatches))
        for note in result.notes:
            self.console.print(Text(f"note: {note}", style="dim"))
        self.console.print(Text(settings_line(result), style="dim"), soft_wrap=True)


def summary_table(results: list[Result]) -> Table:
    """One row per result: status, the worst disagreement and who is odd, the cost, and the
    timings when they were asked for."""
    table = Table(show_edge=False, pad_edge=False, box=None, header_style="bold",
                  title="summary", title_justify="left", title_style="bold")
    timed = any(result.timings for result in results)
    columns = [("case", "left"), ("dtype", "left"), ("device", "left"), ("status", "left"),
               ("worst rel err", "right"), ("odd one out", "left"), ("cost", "right")]
    if timed:
        columns.append(("timings", "left"))
    for column, justify in columns:
        table.add_column(column, justify=justify, no_wrap=True)
    for result in results:
        worst = max(result.mismatches, key=lambda m: m.rel_err, default=None)
        odd = sorted({m.odd_oracle for m in result.mismatches if m.odd_oracle})
        units = result.counts.get("cost_units")
        row = [result.case, result.dtype or "", result.device or "",
               Text(result.status, style=STATUS_STYLE[result.status]),
               _fmt(worst.rel_err) if worst else "", ", ".join(odd),
               f"{units:,} fwd+bwd" if units else ""]
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


_ORACLE_COLUMNS = (("symbolic", "symbolic"), ("autograd", "autograd"),
                   ("finite_difference", "fin. diff."), ("expect", "expect"))


def mismatch_table(mismatches: Iterable[Mismatch]) -> Table:
    """The worst disagreements: where, which oracle is odd, each oracle's value, errors.
    Checks that compare other things (a second run, inputs before and after the call, two
    devices) get a column for each of their values."""
    mismatches = list(mismatches)
    present = list(dict.fromkeys(key for m in mismatches for key in m.values))
    # Only columns some row fills: the table must fit a terminal.
    value_columns = [(key, header) for key, header in _ORACLE_COLUMNS if key in present]
    value_columns += [(key, key) for key in present
                      if key not in {k for k, _ in _ORACLE_COLUMNS}]
    table = Table(show_edge=False, pad_edge=False, box=None, header_style="bold")
    columns = [("what", "left"), ("where", "left"), ("odd one out", "left"),
               *((header, "right") for _, header in value_columns),
               ("abs err", "right"), ("rel err", "right"), ("allowed", "right")]
    for column, justify in columns:
        table.add_column(column, justify=justify, no_wrap=True)
    for m in mismatches:
        what = m.input or "output"
        if m.check != "gradient":
            what = f"{m.check} {m.input}" if m.input else m.check
        where = (f"dir {m.direction}" if m.direction is not None
                 else "[" + ",".join(map(str, m.index)) + "]" if m.index else "")
        if m.probe:
            where += f" @{m.probe}"
        if m.point is not None:
            where += f" point {m.point}"
        if m.elements > 1:
            what += f" ({m.elements})"
        table.add_row(
            what, where, m.odd_oracle or "?",
            *(_fmt(m.values.get(key)) for key, _ in value_columns),
            _fmt(m.abs_err), _fmt(m.rel_err), _fmt(m.allowed),
        )
    return table


def settings_line(result: Result) -> str:
    """What a verdict was reached with: dtype, device, seed, tolerance, oracles."""
    tolerance = result.tolerance.get("rule", "")
    fd = result.oracles.get("finite_difference", "")
    return (f"dtype {result.dtype}, device {result.device}, seed {result.seed}; tolerance "
            f"{tolerance}; finite differences {fd}; symbolic {result.oracles.get('symbolic')}")


def results_document(results: list[Result], environment: dict[str, Any]) -> dict[str, Any]:
    return {
        "results": [r.to_json() for r in results],
        "summary": summarize(results),
        "environment": environment,
    }


def write_json(path: Path, results: list[Result], environment: dict[str, Any]) -> None:
    """Write the whole report at once, through a temporary file, so it is never half-written."""
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(results_document(results, environment), indent=2) + "\n",
                         encoding="utf-8")
    temporary.replace(path)


class JsonLines:
    """Appends one flushed line per result, so a killed run keeps what it finished."""

    def __init__(self, path: Path) -> None:
        self.handle = path.open("a", encoding="utf-8")

    def add(self, result: Result) -> None:
        self.handle.write(json.dumps(result.to_json()) + "\n")
        self.handle.flush()

    def close(self) -> None:
        self.handle.close()
