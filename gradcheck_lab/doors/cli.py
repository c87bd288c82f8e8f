"""The command line: argument parsing and exit codes only; the work is in ``run`` and
``inspect``.

Exit status: 0 when every result passes or is skipped, 1 when any fails, 2 when any result is
an error, no case file is found, or the command line is wrong (2 takes precedence).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from collections.abc import Callable, Generator, Iterator, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, cast

from gradcheck_lab.errors import CaseTimeout, Terminated
from gradcheck_lab.options import CLI, Option, options_of
from gradcheck_lab.settings import DEFAULT_CASE_TIMEOUT
from gradcheck_lab.version import __version__

if TYPE_CHECKING:
    from gradcheck_lab.results import Result

EXIT_PASS, EXIT_FAIL, EXIT_ERROR = 0, 1, 2
EXIT_INTERRUPTED, EXIT_TERMINATED = 130, 143  # 128 + SIGINT, 128 + SIGTERM, as shells report


def _typed(option: Option) -> Callable[[str], Any]:
    """The option's parser as an argparse type: its ValueError a usage error naming the flag."""
    def parsed(text: str) -> Any:
        try:
            return option.parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return parsed


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gradcheck-lab",
        description="Check gradients three ways: symbolic (sympy), autograd (torch) and "
                    "finite differences, from YAML case files.")
    parser.add_argument("--version", action="version", version=f"gradcheck-lab {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_run(commands)
    _add_single_case_commands(commands)
    _add_record(commands)
    parser.set_defaults(commands=commands.choices)  # for a subcommand's own usage errors
    return parser


def _add_record(commands: argparse._SubParsersAction) -> None:
    record = commands.add_parser(
        "record", help="record the custom autograd Functions a command calls",
        description="Run COMMAND (after --) as it would run, recording in each of its Python "
                    "processes the custom torch.autograd.Function calls it makes (a few small "
                    "distinct calls per class, inputs copied), and write them to one file "
                    "that `gradcheck-lab run FILE` checks three ways. Exits with the "
                    "command's status.")
    record.add_argument("-o", "--out", type=Path, default=Path("recorded.gradcheck-calls"),
                        metavar="FILE", help="the recording to write (default "
                                             "recorded.gradcheck-calls)")
    record.add_argument("recorded_command", nargs=argparse.REMAINDER, metavar="-- COMMAND",
                        help="the command to run, e.g. -- python -m pytest tests")


def _add_run(commands: argparse._SubParsersAction) -> None:
    run = commands.add_parser(
        "run", help="check case files and directories",
        description="Check every case in the given files and directories (searched "
                    "recursively for *.yaml and *.yml, in sorted order).")
    run.add_argument("paths", nargs="+", type=Path, metavar="PATH",
                     help="a case file, a directory of case files, or FILE::NAME for one case")
    run.add_argument("--json", type=Path, metavar="FILE",
                     help="write all results as JSON (- for stdout; the terminal report then "
                          "goes to stderr)")
    run.add_argument("--jsonl", type=Path, metavar="FILE",
                     help="append one JSON line per result as soon as it is ready (- for "
                          "stdout; the terminal report then goes to stderr)")
    for option in options_of(CLI):  # the run settings, from the one option table
        if option.switch:
            run.add_argument(option.cli_flag, action="store_true", help=option.described())
        else:
            # A choice keeps argparse's own message ("invalid choice: ... (choose from ...)").
            run.add_argument(option.cli_flag, type=None if option.choices else _typed(option),
                             default=option.default, metavar=option.metavar,
                             choices=option.choices, help=option.described())
    _add_run_output_options(run)


def _add_run_output_options(run: argparse.ArgumentParser) -> None:
    """What ``run`` shows and how far it goes: -v, -q, -x, -k, --debug."""
    run.add_argument("-v", "--verbose", action="store_true",
                     help="show messages of passing results too")
    run.add_argument("-q", "--quiet", action="store_true",
                     help="show only what did not pass, and the counts")
    run.add_argument("-x", "--exitfirst", action="store_true",
                     help="stop at the first result that fails or is an error")
    run.add_argument("-k", dest="keyword", metavar="EXPRESSION",
                     help="only cases whose FILE::NAME matches, as pytest's -k: substrings, "
                          "case-insensitive, with and, or, not and parentheses "
                          "(e.g. -k 'mlp and not order2')")
    run.add_argument("--debug", action="store_true",
                     help="show tracebacks of errors (internal errors above all)")


def _add_single_case_commands(commands: argparse._SubParsersAction) -> None:
    """new, schema, and the commands that look into one case: explain, graph, steps."""
    new = commands.add_parser(
        "new", help="write NAME.yaml, a small case that passes, with every key shown",
        description="Write NAME.yaml in the current directory: a case that passes as it is, "
                    "with comments on every key (and NAME_impl.py with --impl).")
    new.add_argument("name", metavar="NAME", help="the case's name (letters, digits, _)")
    new.add_argument("--impl", action="store_true",
                     help="also write NAME_impl.py, a custom torch.autograd.Function under test")
    merge = commands.add_parser(
        "merge", help="merge --json reports (of shards of one suite) into one",
        description="Merge the --json reports of several runs (the shards of a suite, run on "
                    "several machines) into one report: their results in the order given, the "
                    "summary counted again, the first report's environment. Exit status as "
                    "for run: 0 when every result passes or is skipped, 1 when any fails, 2 "
                    "when any is an error or a report cannot be read.")
    merge.add_argument("reports", nargs="+", type=Path, metavar="REPORT",
                       help="a --json report")
    merge.add_argument("-o", "--output", type=Path, metavar="FILE",
                       help="write the merged report here (default: standard output)")
    commands.add_parser(
        "schema", help="print the JSON Schema of the case format",
        description="Print the JSON Schema of case files (for editors: save it and point a "
                    "`# yaml-language-server: $schema=FILE` comment at it).")
    explain = commands.add_parser(
        "explain", help="print the derivatives sympy derives for a case, step by step",
        description="Print, at the case's point, the values of inputs, lets and output, each "
                    "let step's local derivatives, the chain rule that multiplies them, and "
                    "the gradient formulas (a tensor case: its op chain, and the formula of "
                    "one representative element when the case is small).")
    _case_argument(explain)
    explain.add_argument("--latex", action="store_true", help="formulas as LaTeX")
    graph = commands.add_parser(
        "graph", help="draw a case's computational graph with values and gradients",
        description="Draw the computational graph of a case: inputs, let steps, intermediate "
                    "ops and the output, each with its value and (in red) the output's "
                    "gradient with respect to it; for a scalar graph, each edge labelled with "
                    "its local derivative. A deep graph wraps into bands of at most five columns.")
    _case_argument(graph)
    _drawing_argument(graph)
    steps = commands.add_parser(
        "steps", help="plot finite-difference error against step size",
        description="Plot |central difference - symbolic gradient| against the step h (1e-14 "
                    "to 1e-1, log-log) for the case's worst element, marking the step the "
                    "check uses.")
    _case_argument(steps)
    _drawing_argument(steps)


def _dtype(text: str) -> str:
    # Checked when given, not when the parser is built: the schema module imports pydantic.
    from gradcheck_lab.casefile.schema import DTYPES

    if text not in DTYPES:
        raise argparse.ArgumentTypeError(f"expected one of {', '.join(DTYPES)}, got {text!r}")
    return text


def _case_argument(command: argparse.ArgumentParser) -> None:
    command.add_argument("case", metavar="CASE",
                         help="a case file, or FILE::NAME for one case of a file with several")
    command.add_argument("--dtype", type=_dtype, metavar="DTYPE",
                         help="round the inputs to this dtype, e.g. float32 (default: the "
                              "case's first)")


def _drawing_argument(command: argparse.ArgumentParser) -> None:
    command.add_argument("-o", "--output", type=Path, required=True, metavar="FILE",
                         help="the image to write: .svg, .png or .pdf, by its suffix")


def main(argv: Sequence[str] | None = None) -> int:
    """The command line; its exit status. SIGINT and SIGTERM end any command in one line
    (130, 143): a run first stops its workers and reports what finished, and a burst of them
    cannot cut that short (``Signals``). A write to stdout that fails (a full disk, a reader
    that went away) ends what the command prints, not the command: one line, exit 2."""
    with Signals() as signals:
        status = EXIT_ERROR
        try:
            status = _guarded_stdout(argv, signals)
        except (KeyboardInterrupt, Terminated) as stop:  # outside a run's loop (imports,
            signals.stopped_by(stop)                    # explain, merge)
        finally:
            signals.raising = False
    if signals.status is not None:
        if not signals.told:
            print(f"gradcheck-lab: {signals.word}", file=sys.stderr)
        return signals.status
    return status


def _guarded_stdout(argv: Sequence[str] | None, signals: Signals) -> int:
    """The command, run with stdout guarded (``GuardedStream``): its first failed write is
    said once, at the end, as a problem with stdout."""
    from gradcheck_lab.doors.report import GuardedStream

    stdout = GuardedStream(sys.stdout)
    sys.stdout = cast(Any, stdout)
    args = None
    try:
        try:
            args = parse_arguments(argv)
            status = _command(args, signals)
        except SystemExit:  # argparse: --help, --version, a usage error
            stdout.flush()
            if stdout.error is None:
                raise
            status = EXIT_ERROR
        stdout.flush()
    finally:
        sys.stdout = stdout.stream
    if stdout.error is None or signals.status is not None:
        return status
    return _stdout_failed(args, stdout.error)


def _stdout_failed(args: argparse.Namespace | None, error: OSError) -> int:
    """One line for a write to stdout that failed; exit status 2."""
    from gradcheck_lab.doors.report import STDOUT

    what = ("its reader closed it early (broken pipe)" if isinstance(error, BrokenPipeError)
            else error.strerror or str(error))
    kept = [f"{flag} {path}" for flag, path in (("--json", getattr(args, "json", None)),
                                                ("--jsonl", getattr(args, "jsonl", None)))
            if path is not None and str(path) != STDOUT]
    also = f"; the results are in {' and '.join(kept)}" if kept else ""
    command = getattr(args, "command", None)
    print(f"gradcheck-lab{f' {command}' if command else ''}: stdout: {what}{also}",
          file=sys.stderr)
    return EXIT_ERROR


def parse_arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line; an argument no command knows is answered with that command's own
    usage (``run -q`` mistyped as ``run -Q``), not the top-level one."""
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        args.commands[args.command].error(f"unrecognized arguments: {' '.join(unknown)}")
    return args


def _command(args: argparse.Namespace, signals: Signals) -> int:
    if args.command == "new":
        return new_command(args)
    if args.command == "schema":
        return schema_command()
    if args.command == "merge":
        return merge_command(args)
    if args.command == "explain":
        return explain_command(args)
    if args.command in ("graph", "steps"):
        return drawing_command(args)
    if args.command == "record":
        from gradcheck_lab.doors.functions.record_command import record

        given = list(args.recorded_command)
        return record(given[1:] if given[:1] == ["--"] else given, args.out)
    return run_command(args, signals)


def new_command(args: argparse.Namespace) -> int:
    from gradcheck_lab.doors.scaffold import NAME, case_text, impl_text

    if not NAME.match(args.name):
        print(f"gradcheck-lab new: {args.name!r} is not a valid name (letters, digits, _)",
              file=sys.stderr)
        return EXIT_ERROR
    written = {Path(f"{args.name}.yaml"): case_text(args.name, args.impl)}
    if args.impl:
        written[Path(f"{args.name}_impl.py")] = impl_text(args.name)
    existing = [str(path) for path in written if path.exists()]
    if existing:
        print(f"gradcheck-lab new: {', '.join(existing)} already exists; nothing written",
              file=sys.stderr)
        return EXIT_ERROR
    for path, text in written.items():
        path.write_text(text, encoding="utf-8")
        print(f"wrote {path}")
    return EXIT_PASS


def merge_command(args: argparse.Namespace) -> int:
    import json

    from gradcheck_lab.doors.report import merge_reports, write_text_atomically

    documents = []
    for path in args.reports:
        try:
            documents.append(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError) as error:
            return command_error("merge", f"{path}: {getattr(error, 'strerror', None) or error}")
    try:
        merged = merge_reports(documents, [str(path) for path in args.reports])
    except ValueError as error:
        return command_error("merge", str(error))
    text = json.dumps(merged, indent=2) + "\n"
    if args.output is None:
        sys.stdout.write(text)
    else:
        try:
            write_text_atomically(args.output, text)
        except OSError as error:
            return command_error("merge", f"-o {args.output}: {error.strerror or error}")
    summary = merged["summary"]
    return EXIT_ERROR if summary["error"] else EXIT_FAIL if summary["fail"] else EXIT_PASS


def schema_command() -> int:
    import json

    from gradcheck_lab.casefile.schema import case_file_json_schema

    print(json.dumps(case_file_json_schema(), indent=2))
    return EXIT_PASS


def explain_command(args: argparse.Namespace) -> int:
    from gradcheck_lab.casefile.selection import select_case
    from gradcheck_lab.errors import GradcheckLabError
    from gradcheck_lab.inspect.explain import explain
    from gradcheck_lab.pipeline.tracing import with_spec

    try:
        with inspection_budget():
            case = with_spec(select_case(args.case))
            text = explain(case, args.dtype or case.dtypes[0], latex=args.latex)
    except GradcheckLabError as error:
        return command_error(args.command, str(error))
    except CaseTimeout:
        return command_error(args.command, _past_budget(args.case))
    sys.stdout.write(text)
    return EXIT_PASS


@contextlib.contextmanager
def inspection_budget() -> Iterator[None]:
    """explain, graph and steps run a case's sweeps (and its impl) in this process: under the
    interval timer of run's default case budget, as run's in-process checks are."""
    from gradcheck_lab.run.budget import time_budget

    with time_budget(DEFAULT_CASE_TIMEOUT):
        yield


def _past_budget(case: str) -> str:
    return (f"{case}: ran past the time budget of {DEFAULT_CASE_TIMEOUT:g} s (run's default "
            "--case-timeout): `gradcheck-lab run` checks it under a budget you set")


def drawing_command(args: argparse.Namespace) -> int:
    """``graph`` and ``steps``: pick the case, compute, draw to the file named by -o."""
    from gradcheck_lab.casefile.selection import select_case
    from gradcheck_lab.doors.report import output_file
    from gradcheck_lab.errors import GradcheckLabError
    from gradcheck_lab.inspect.graph import FORMATS
    from gradcheck_lab.pipeline.tracing import with_spec

    if args.output.suffix.lower() not in FORMATS:
        return command_error(args.command, f"-o {args.output}: the suffix chooses the format: "
                                           f"{', '.join(FORMATS)}")
    unwritable = report_path_problem(args.output, [args.case])
    if unwritable:
        return command_error(args.command, f"-o {args.output}: {unwritable}")
    try:
        with inspection_budget():
            case = with_spec(select_case(args.case))
            dtype = args.dtype or case.dtypes[0]
            if args.command == "graph":
                from gradcheck_lab.inspect import graph, graph_drawing

                drawn = graph.build_graph(case, dtype)
                # Opened as --json is: a FIFO or a device written in place, never waited on.
                with output_file(args.output, "wb") as file:
                    graph_drawing.draw(drawn, args.output, file)
            else:
                from gradcheck_lab.inspect import steps

                curve = steps.step_curve(case, dtype)
                with output_file(args.output, "wb") as file:
                    steps.draw(curve, args.output, file)
                print(steps.summary(curve))
    except GradcheckLabError as error:
        return command_error(args.command, str(error))
    except CaseTimeout:
        return command_error(args.command, _past_budget(args.case))
    except OSError as error:
        return command_error(args.command, f"-o {args.output}: {error.strerror or error}")
    print(f"wrote {args.output}")
    return EXIT_PASS


def command_error(command: str, message: str) -> int:
    """One line on stderr, exit status 2."""
    print(f"gradcheck-lab {command}: {' '.join(message.split())}", file=sys.stderr)
    return EXIT_ERROR


def run_command(args: argparse.Namespace, signals: Signals | None = None) -> int:
    if signals is None:  # called on its own, not by main
        with Signals() as own:
            return run_command(args, own)
    from rich.console import Console

    from gradcheck_lab.doors.report import (
        STDOUT,
        GuardedStream,
        JsonLines,
        TerminalReport,
        write_json,
    )
    from gradcheck_lab.options import settings_from
    from gradcheck_lab.results import environment

    started = time.perf_counter()
    settings = settings_from({option.name: getattr(args, option.name)
                              for option in options_of(CLI)}, CLI)
    try:
        keep = case_filter(args.keyword) if args.keyword else None
    except ValueError as error:
        return command_line_error(f"-k {args.keyword!r}: {error}")
    for flag, path in (("--json", args.json), ("--jsonl", args.jsonl)):
        unwritable = report_path_problem(path, args.paths) if path else None
        if unwritable:
            return command_line_error(f"{flag} {path}: {unwritable}")
    try:
        lines = JsonLines(args.jsonl) if args.jsonl else None
    except OSError as error:
        return command_line_error(f"--jsonl {args.jsonl}: {error.strerror or error}")
    # torch is not loaded yet: a run whose files all fail validation never loads it.
    env = environment(settings.threads)
    # A report on stdout (`--json -`) keeps stdout to itself: the terminal report moves to
    # stderr. A reader of stdout that goes away ends the terminal report, not the run (main
    # says so at the end).
    to_stdout = STDOUT in (str(args.json), str(args.jsonl))
    stream = GuardedStream(sys.stderr if to_stdout else sys.stdout)
    # rich types file= as IO[str]; it only writes, flushes and asks what the stream has.
    report = TerminalReport(Console(file=cast(IO[str], stream), highlight=False, markup=False),
                            verbose=args.verbose or args.debug,
                            quiet=args.quiet and not (args.verbose or args.debug))
    report.header(env)
    results: list[Any] = []
    _checked(args, settings, keep, report, lines, results, signals)
    report.finish(time.perf_counter() - started)
    if not results and keep is not None:
        command_line_error(f"no case matches -k {args.keyword!r}")
    if args.json:
        try:
            write_json(args.json, results, _ran_environment(results, settings.threads))
        except OSError as error:
            return command_line_error(f"--json {args.json}: {error.strerror or error}")
    if signals.status is not None:
        signals.told = True
        command_line_error(f"stopped by {signals.name} after {len(results)} result(s); those "
                           "are in --json/--jsonl where given")
        return signals.status
    if lines is not None and lines.error is not None:
        return command_line_error(f"--jsonl {args.jsonl}: "
                                  f"{lines.error.strerror or lines.error}")
    return exit_status(results)


def _checked(args: argparse.Namespace, settings: Any, keep: Any, report: Any, lines: Any,
             results: list[Any], signals: Signals) -> None:
    """The run's loop: each result reported and streamed as it comes, into ``results``,
    until the end, -x, or the first SIGINT or SIGTERM (noted in ``signals``)."""
    outcomes = _results(args.paths, settings, keep)
    try:
        with report.progress() as advance:
            for result in outcomes:
                results.append(result)
                report.add(result)
                advance(result)
                if lines is not None:
                    lines.add(result)
                if args.exitfirst and not result.ok:
                    break
    except (KeyboardInterrupt, Terminated) as stop:
        signals.stopped_by(stop)  # what finished is reported
    finally:
        # From here on a signal is noted, never raised: a second Ctrl-C, or a burst of
        # SIGTERM, cannot skip the worker's teardown or the reports.
        signals.raising = False
        outcomes.close()  # the worker processes ended (and what their impls started)
        if lines is not None:
            lines.close()


def _ran_environment(results: list[Any], threads: int | None) -> dict[str, Any]:
    """The report's environment, with whether cuda is here read from torch where a case ran
    (in worker processes, this one may not have loaded torch)."""
    from gradcheck_lab.results import environment

    if any(result.status != "error" for result in results):
        import torch  # noqa: F401
    return environment(threads)


def case_filter(expression: str) -> Any:
    """``-k``: pytest's own keyword expressions, matched against a case's FILE::NAME."""
    try:
        from _pytest.mark import expression as keywords
    except ImportError as exc:  # a pytest that moved its private parser
        raise ValueError(f"this pytest has no keyword expressions ({exc})") from None
    # pytest 7 raises its ParseError, pytest 8 and 9 SyntaxError.
    invalid = (SyntaxError, getattr(keywords, "ParseError", SyntaxError))
    try:
        compiled = keywords.Expression.compile(expression)
    except invalid as exc:
        raise ValueError(str(exc)) from None

    def keep(case: Any) -> bool:
        ident = f"{case.file}::{case.name}".lower()
        # pytest 8.3+ hands keyword arguments too (name(key=value)): never a match here.
        def matches(word: str, /, **kwargs: str | int | bool | None) -> bool:
            return not kwargs and word.lower() in ident

        return compiled.evaluate(matches)

    return keep


def _results(paths: Sequence[Path], settings: Any, keep: Any = None
             ) -> Generator[Any, None, None]:
    """The case files' results, and those of recordings (``gradcheck-lab record``'s files)."""
    from gradcheck_lab.doors.functions.recording_file import SUFFIX
    from gradcheck_lab.run.files import run_paths

    recordings = [path for path in paths if path.name.endswith(SUFFIX)]
    if recordings:
        from gradcheck_lab.doors.functions.replay import recording_results

        for path in recordings:
            yield from recording_results(path, settings.case_memory, settings.case_timeout)
    rest = [path for path in paths if not path.name.endswith(SUFFIX)]
    if rest:
        yield from run_paths(rest, settings, keep)


class Signals:
    """SIGINT and SIGTERM while a command runs. The first raises KeyboardInterrupt or
    Terminated where it lands, while ``raising``; every other one is only noted in
    ``caught``, so that a burst of them (a double Ctrl-C, SIGTERM sent again and again)
    cannot cut short what the first began: the workers stopped, the reports written, one line
    said. The handlers the caller had are back afterwards, unless a signal came: the process
    is then on its way out, and ignores them until it exits. A SIGINT the caller ignores (a
    background job) stays ignored; off the main thread no handler is set."""

    def __init__(self) -> None:
        self.caught: list[int] = []
        self.raising = True
        self.told = False  # the command said itself that a signal stopped it
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> Signals:
        import signal

        for number in (signal.SIGINT, signal.SIGTERM):
            handler = signal.getsignal(number)
            if handler is None or (number == signal.SIGINT and handler == signal.SIG_IGN):
                continue  # None: a handler not set from Python, which cannot be put back
            try:
                self._previous[number] = signal.signal(number, self._handle)
            except ValueError:  # not the main thread
                break
        return self

    def __exit__(self, *exc_info: object) -> None:
        import signal

        self.raising = False
        for number, handler in self._previous.items():
            # After a signal: ignored, not handled. The interpreter puts the default action
            # back for a signal it handles as it finalizes, and a SIGTERM then would kill
            # the process (status -15) after everything was said; an ignored one it leaves.
            signal.signal(number, signal.SIG_IGN if self.caught else handler)

    def _handle(self, number: int, frame: object) -> None:
        import signal

        self.caught.append(number)
        if self.raising and len(self.caught) == 1:
            self.raising = False
            raise Terminated if number == signal.SIGTERM else KeyboardInterrupt

    def stopped_by(self, stop: BaseException) -> None:
        """``stop`` (KeyboardInterrupt or Terminated) noted, where no handler of ours raised
        it (a Ctrl-C before the handlers were set)."""
        import signal

        if not self.caught:
            self.caught.append(signal.SIGTERM if isinstance(stop, Terminated)
                               else signal.SIGINT)

    @property
    def name(self) -> str:
        import signal

        return signal.Signals(self.caught[0]).name if self.caught else ""

    @property
    def word(self) -> str:
        return "terminated" if self.name == "SIGTERM" else "interrupted"

    @property
    def status(self) -> int | None:
        """128 + the first signal's number, as shells report it; None before any."""
        if not self.caught:
            return None
        return EXIT_TERMINATED if self.name == "SIGTERM" else EXIT_INTERRUPTED


def report_path_problem(path: Path, inputs: Sequence[Path | str] = ()) -> str | None:
    """Why a report could not be written to path, checked before any case runs, or None;
    ``inputs``: the files the command reads (``FILE::NAME`` as FILE), which a report must
    not replace."""
    if str(path) == "-":
        return None
    for given in inputs:
        read = Path(str(given).split("::", 1)[0])
        with contextlib.suppress(OSError):  # missing either side: nothing to replace
            if read.is_file() and path.exists() and os.path.samefile(read, path):
                return f"is the input file {given}: the report would replace it"
    directory = path.parent
    if not directory.is_dir():
        return f"no such directory: {directory}"
    if path.is_dir():
        return "is a directory"
    if not os.access(directory, os.W_OK):
        return f"directory is not writable: {directory}"
    if not path.exists() or path.is_file():  # written beside, then renamed: try it now
        import tempfile

        try:  # root passes os.access on /proc and /sys, where no file can be made
            with tempfile.TemporaryFile(dir=directory):
                pass
        except OSError as error:
            return f"cannot write in {directory}: {error.strerror or error}"
    return None


def command_line_error(message: str) -> int:
    print(f"gradcheck-lab: {message}", file=sys.stderr)
    return EXIT_ERROR


def exit_status(results: Sequence[Result]) -> int:
    statuses = {r.status for r in results}
    if not results or "error" in statuses:
        return EXIT_ERROR
    if "fail" in statuses:
        return EXIT_FAIL
    return EXIT_PASS


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
