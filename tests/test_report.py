"""The terminal report: colour only on a terminal and never under NO_COLOR, and a summary
table of every result at the end."""

from __future__ import annotations

import io
import re
import subprocess
import sys
import time

import pytest
from rich.console import Console

from gradcheck_lab.doors.report import TerminalReport
from gradcheck_lab.results import Mismatch, Result
from tests.conftest import CASES, DATA

COLOUR = re.compile(r"\x1b\[[0-9;]*3[0-9]m|\x1b\[[0-9;]*;3[0-9];")  # a foreground colour


def results() -> list[Result]:
    wrong = Mismatch(input="x", oracles=("symbolic", "autograd"), odd_oracle="autograd",
                     values={"symbolic": 2.0, "autograd": 1.0}, abs_err=1.0, rel_err=0.5,
                     allowed=1e-8, index=(0,))
    return [
        Result("r144", "cases/r144.yaml", 5, "float64", "cpu", "pass", "3 elements agree",
               counts={"cost_units": 120}),
        Result("lin", "lin.yaml", 4, "float32", "cpu", "fail", "x: autograd is the odd one",
               mismatches=[wrong], counts={"cost_units": 80}),
    ]


def rendered(console: Console) -> str:
    report = TerminalReport(console)
    for result in results():
        report.add(result)
    report.finish(1.0)
    return console.file.getvalue()


def test_a_terminal_gets_colour() -> None:
    text = rendered(Console(file=io.StringIO(), force_terminal=True, color_system="standard",
                            highlight=False, markup=False))
    assert COLOUR.search(text)


def test_no_colour_under_no_color(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NO_COLOR", "1")
    text = rendered(Console(file=io.StringIO(), force_terminal=True, color_system="standard",
                            highlight=False, markup=False))
    assert not COLOUR.search(text)
    assert "FAIL" in text


def test_the_summary_table_lists_every_result_with_its_file_worst_error_and_cost() -> None:
    text = rendered(Console(file=io.StringIO(), width=140, highlight=False, markup=False))
    summary = text[text.index("\nsummary\n"):].splitlines()
    assert summary[2].split()[:2] == ["case", "file"] and "cost (× fwd+bwd)" in summary[2]
    assert summary[1] == "summary"  # a title line, not padded to the table's width
    rows = {line.split()[0]: line.split() for line in summary[3:] if line.strip()}
    assert rows["r144"][1:3] == ["cases/r144.yaml:5", "float64"]
    assert "pass" in rows["r144"] and rows["r144"][-1] == "120"
    assert rows["lin"][1] == "lin.yaml:4" and "fail" in rows["lin"] and "0.5000" in rows["lin"]


def test_a_column_of_numbers_has_one_format() -> None:
    """Plain where every number of the column is of a plain size, else all in e-notation:
    never 4.538e-08 under 0.00105152, and the digits of each cell shown (0.08500)."""
    from gradcheck_lab.doors.render import format_column, mismatch_table

    assert format_column([0.085, 0.0818381, 2.0, None], 4) == ["0.08500", "0.08184", "2.000",
                                                               ""]
    assert format_column([4.538e-08, 0.00105152, 0.0], 4) == ["4.538e-08", "1.052e-03",
                                                            "0.000"]
    assert format_column([1e6, -3.0], 6) == ["1.00000e+06", "-3.00000e+00"]
    rows = [Mismatch(input="x", oracles=("symbolic", "autograd"), odd_oracle="autograd",
                     values={"symbolic": s, "autograd": -s}, abs_err=2 * s, rel_err=2.0,
                     allowed=allowed, index=(i,))
            for i, (s, allowed) in enumerate([(1.52277, 4.5e-8), (0.0425, 1.05e-3)])]
    console = Console(file=io.StringIO(), width=140, highlight=False, markup=False)
    console.print(mismatch_table(rows))
    cells = [line.split() for line in console.file.getvalue().splitlines()[1:]]
    allowed_column = [row[-1] for row in cells]
    assert allowed_column == ["4.500e-08", "1.050e-03"]
    assert [row[-2] for row in cells] == ["2.000", "2.000"]


def test_the_summary_table_is_left_out_when_every_result_passed() -> None:
    passing = [Result("r144", "cases/r144.yaml", 5, "float64", "cpu", "pass", "ok"),
               Result("r144", "cases/r144.yaml", 5, "float32", "cpu", "pass", "ok")]
    for verbose, shown in ((False, False), (True, True)):
        console = Console(file=io.StringIO(), width=140, highlight=False, markup=False)
        report = TerminalReport(console, verbose=verbose)
        for result in passing:
            report.add(result)
        report.finish(1.0)
        text = console.file.getvalue()
        assert ("\nsummary\n" in text) == shown
        if shown:  # results of one file: no file column (each failure's heading names it)
            assert text[text.index("\nsummary\n"):].splitlines()[2].split()[:2] == [
                "case", "dtype"]


@pytest.mark.slow
def test_the_cli_writes_no_escape_codes_into_a_pipe() -> None:
    out = subprocess.run([sys.executable, "-m", "gradcheck_lab", "run", str(CASES / "r144.yaml"),
                          str(DATA / "planted" / "linear_sign.yaml")],
                         capture_output=True, text=True, check=False)
    assert out.returncode == 1
    assert "\x1b[" not in out.stdout
    assert "summary" in out.stdout


@pytest.mark.slow
def test_a_terminal_shows_progress_and_a_pipe_does_not() -> None:
    terminal = TerminalReport(Console(file=io.StringIO(), force_terminal=True))
    with terminal.progress() as advance:
        for result in results():
            terminal.add(result)
            advance(result)
            time.sleep(0.3)  # the spinner redraws a few times a second
    assert "result(s) so far; last: lin[float32-cpu]" in terminal.console.file.getvalue()
    piped = TerminalReport(Console(file=io.StringIO()))
    with piped.progress() as advance:
        for result in results():
            piped.add(result)
            advance(result)
            time.sleep(0.3)
    assert "so far" not in piped.console.file.getvalue()
