"""One rendering of a failure, shared by every front door: the terminal report, pytest's
failure text and the Python API's. Where and what failed, the mismatch table, the notes, and
the settings the verdict was reached with."""

from __future__ import annotations

import io
import math
from collections.abc import Iterable, Mapping
from typing import Any

from rich.console import Console, JustifyMethod, RenderableType
from rich.table import Table
from rich.text import Text

from gradcheck_lab.program.naming import index_text
from gradcheck_lab.results import Mismatch, Result

STATUS_STYLE = {"pass": "green", "fail": "bold red", "error": "bold magenta", "skip": "yellow"}
# pytest and the API: wide enough for the table's columns, narrow enough for a CI log.
PLAIN_WIDTH = 140
# What a failure's report is laid out to fit: its heading wraps before the verdict past it.
REPORT_WIDTH = 100


def failure_report(result: Result, header: str | None = None,
                   verbose: bool = True) -> list[RenderableType]:
    """The parts of a failure's report, in order; ``header`` replaces the file and label
    that open it (the drop-in names the call instead). First what a reader acts on: the
    verdict, the worst elements under each input once, what their "@..." means, the likely
    cause and the next step; the notes and the settings line follow with ``verbose`` (the
    command line's and pytest's -v; always in --json)."""
    where = header or f"{result.location}: {result.label}"
    # One line where it fits a report's width; else where, and the verdict under it.
    heading = (f"{where}: {result.message}"
               if len(where) + len(result.message) + 2 <= REPORT_WIDTH
               else f"{where}:\n{result.message}")
    parts: list[RenderableType] = [
        Text(heading, style="bold red"),
        mismatch_table(result.mismatches),
        *(Text(line, style="dim") for line in where_legend(result.mismatches)),
        *(Text(f"diagnosis: {diagnosis}", style="bold") for diagnosis in result.diagnoses),
    ]
    if verbose:
        parts += [*(Text(f"note: {note}", style="dim") for note in result.notes),
                  Text(settings_line(result), style="dim")]
    else:
        parts += [Text(next_step(result), style="dim"),
                  Text("-v adds the notes and the settings", style="dim")]
    return parts


def where_legend(mismatches: Iterable[Mismatch]) -> list[str]:
    """What the table's "@..." say, for the kinds it shows: a first reader meets them here."""
    probes = [m.probe for m in mismatches if m.probe]
    lines = []
    if any(probe.startswith("output[") for probe in probes):
        lines.append("@output[i]: the gradient of output element i alone (one row of the "
                     "Jacobian)")
    if any(probe.startswith("cotangent") for probe in probes):
        lines.append("@cotangent k: the gradient of the output weighted by the k-th seeded "
                     "random cotangent (a vector-Jacobian product)")
    return lines


def next_step(result: Result) -> str:
    """Where to look next, and how to see more."""
    backward = next((d.split(": ", 1)[1] for d in result.diagnoses
                     if d.startswith("the backward under test: ")), None)
    odd = {m.odd_oracle for m in result.mismatches}
    look = (f"look at {backward}" if backward and "autograd" in odd else
            "`gradcheck-lab explain` shows the spec's formulas and each oracle's values")
    return f"next: {look}"


def print_failure(console: Console, result: Result, header: str | None = None,
                  verbose: bool = True) -> None:
    for part in failure_report(result, header, verbose):
        console.print(part, soft_wrap=isinstance(part, Text))


def failure_text(result: Result, header: str | None = None, verbose: bool = True) -> str:
    """The report of a failure as plain text (no colour); an error result's one line."""
    if result.status == "error":
        return result.message
    buffer = io.StringIO()
    console = Console(file=buffer, width=PLAIN_WIDTH, color_system=None, highlight=False,
                      markup=False)
    print_failure(console, result, header, verbose)
    return buffer.getvalue().rstrip()


def margin_text(tolerance: Mapping[str, Any]) -> str:
    """How close a pass came to its tolerance (a result's ``tolerance``): "worst error /
    allowed = 0.031, at W1[3, 2]"; "" where every element was equal."""
    margin = tolerance.get("margin")
    if not isinstance(margin, (int, float)) or not tolerance.get("margin_at"):
        return ""
    return f"worst error / allowed = {margin:.2g}, at {tolerance['margin_at']}"


# Where every number of a column lies in this range, the column is written plainly (0.0425,
# 1.52277); otherwise every number of it in e-notation, so that a column never mixes the two
# and its digits line up.
_PLAIN_RANGE = (1e-3, 1e5)


def format_column(values: Iterable[float | None], digits: int = 6) -> list[str]:
    """One column's numbers in one format: ``digits`` significant digits (zeros kept), plain
    where every nonzero finite value of the column is within ``_PLAIN_RANGE``, else each in
    e-notation; None as an empty cell."""
    values = list(values)
    sizes = [abs(v) for v in values if v is not None and math.isfinite(v) and v != 0]
    plain = all(_PLAIN_RANGE[0] <= size < _PLAIN_RANGE[1] for size in sizes)
    # "#": trailing zeros kept (0.08500 beside 0.08184), so every cell shows its digits.
    return ["" if v is None else f"{v:#.{digits}g}" if plain or not math.isfinite(v) or v == 0
            else f"{v:.{digits - 1}e}" for v in values]


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
    # One space between columns (collapsed padding): the worst elements of a small case fit
    # REPORT_WIDTH.
    table = Table(show_edge=False, pad_edge=False, box=None, header_style="bold",
                  collapse_padding=True)
    columns: list[tuple[str, JustifyMethod]] = [
        ("what", "left"), ("where", "left"), ("odd one out", "left"),
        *((header, "right") for _, header in value_columns),
        ("abs err", "right"), ("rel err", "right"), ("allowed", "right")]
    for column, justify in columns:
        table.add_column(column, justify=justify, no_wrap=True)
    shown: set[str] = set()
    labels, numbers = [], []
    for m in mismatches:
        what = m.input or "output"
        if m.check != "gradient":
            what = f"{m.check} {m.input}" if m.input else m.check
        if m.output is not None:
            what += f" {m.output}"
        where = (f"dir {m.direction}" if m.direction is not None
                 else index_text(m.index) if m.index else "")
        if m.probe:
            where += f" @{m.probe}"
        if m.point is not None:
            where += f" point {m.point}"
        if m.elements > 1:
            what += f" ({m.elements})"
        what, shown = ("" if what in shown else what), shown | {what}  # each group once
        labels.append((what, where, m.odd_oracle or "?"))
        numbers.append([*(m.values.get(key) for key, _ in value_columns),
                        m.abs_err, m.rel_err, m.allowed])
    # The oracles' values to 6 digits (a reader compares them digit by digit); the errors
    # and the bound to 4.
    columns_text = [format_column(column, 6 if j < len(value_columns) else 4)
                    for j, column in enumerate(zip(*numbers, strict=True))]
    for i, label in enumerate(labels):
        table.add_row(*label, *(column[i] for column in columns_text))
    return table


def settings_line(result: Result) -> str:
    """What a verdict was reached with: dtype, device, seed, tolerance, oracles."""
    tolerance = result.tolerance.get("rule", "")
    fd = result.oracles.get("finite_difference", "")
    return (f"dtype {result.dtype}, device {result.device}, seed {result.seed}; tolerance "
            f"{tolerance}; finite differences {fd}; symbolic {result.oracles.get('symbolic')}")
