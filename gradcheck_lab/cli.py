"""The command line: argument parsing and exit codes only; the work is in the runner.

Exit status: 0 when every result passes or is skipped, 1 when any fails, 2 when any result is
an error, no case file is found, or the command line is wrong (2 takes precedence).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from gradcheck_lab import __version__

EXIT_PASS, EXIT_FAIL, EXIT_ERROR = 0, 1, 2


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {value}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gradcheck-lab",
        description="Check gradients three ways: symbolic (sympy), autograd (torch) and "
                    "finite differences, from YAML case files.")
    parser.add_argument("--version", action="version", version=f"gradcheck-lab {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run = commands.add_parser(
        "run", help="check case files and directories",
        description="Check every case in the given files and directories (searched "
                    "recursively for *.yaml and *.yml, in sorted order).")
    run.add_argument("paths", nargs="+", type=Path, metavar="PATH",
                     help="a case file or a directory of case files")
    run.add_argument("--json", type=Path, metavar="FILE", help="write all results as JSON")
    run.add_argument("--jsonl", type=Path, metavar="FILE",
                     help="append one JSON line per result as soon as it is ready")
    run.add_argument("--symbolic", choices=("auto", "exact", "sweep"), default="auto",
                     help="exact elementwise sympy, the numpy rule sweep, or auto by size")
    run.add_argument("--fd", choices=("auto", "all", "projections"), default="auto",
                     help="finite differences on every partial, along random directions, or "
                          "auto by size")
    run.add_argument("--threads", type=_positive_int, metavar="N",
                     help="torch CPU threads for the checks (default: torch's own choice, "
                          "reported)")
    run.add_argument("--timings", action="store_true",
                     help="also time the forward and the backward of each case (median and "
                          "IQR over rounds, each round on a fresh graph)")
    run.add_argument("--timing-threads", type=_positive_int, metavar="N", default=1,
                     help="torch CPU threads while timing (default 1: shared machines are "
                          "noisy)")
    run.add_argument("--timing-rounds", type=_positive_int, metavar="N", default=5,
                     help="at least this many timed rounds per pass (default 5)")
    run.add_argument("--max-input-elements", type=_positive_int, metavar="N",
                     default=50_000_000, help="refuse cases whose inputs hold more elements")
    run.add_argument("--max-file-bytes", type=_positive_int, metavar="N",
                     default=16 * 2**20, help="refuse larger case files")
    run.add_argument("--max-expression-length", type=_positive_int, metavar="N",
                     default=10_000, help="refuse longer expressions (characters)")
    run.add_argument("--max-expression-depth", type=_positive_int, metavar="N",
                     default=200, help="refuse expressions nested deeper")
    run.add_argument("--case-timeout", type=_positive_float, metavar="SECONDS", default=300.0,
                     help="time budget of a case with an impl, which then runs in a worker "
                          "process that is stopped when the budget runs out (default 300; "
                          "0 runs impls in this process, without a budget)")
    run.add_argument("-v", "--verbose", action="store_true",
                     help="show messages of passing results too")
    run.add_argument("--debug", action="store_true",
                     help="show tracebacks of errors (internal errors above all)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_command(args)


def run_command(args: argparse.Namespace) -> int:
    from gradcheck_lab.casefile import LoadLimits
    from gradcheck_lab.casefile.expr import ExprLimits
    from gradcheck_lab.report import JsonLines, TerminalReport, write_json
    from gradcheck_lab.results import environment
    from gradcheck_lab.runner import RunOptions, run_paths
    from gradcheck_lab.timing import TimingSettings

    started = time.perf_counter()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    options = RunOptions(
        symbolic_mode=args.symbolic, fd_mode=args.fd,
        limits=LoadLimits(max_file_bytes=args.max_file_bytes,
                          max_input_elements=args.max_input_elements,
                          expr=ExprLimits(max_length=args.max_expression_length,
                                          max_depth=args.max_expression_depth)),
        timings=TimingSettings(min_rounds=args.timing_rounds, threads=args.timing_threads)
        if args.timings else None,
        case_timeout=args.case_timeout or None,
    )
    env = environment()
    report = TerminalReport(verbose=args.verbose or args.debug)
    report.header(env)
    lines = JsonLines(args.jsonl) if args.jsonl else None
    results = []
    try:
        for result in run_paths(args.paths, options):
            results.append(result)
            report.add(result)
            if lines is not None:
                lines.add(result)
    finally:
        if lines is not None:
            lines.close()
    report.finish(time.perf_counter() - started)
    if args.json:
        write_json(args.json, results, env)
    return exit_status(results)


def exit_status(results: Sequence[object]) -> int:
    statuses = {r.status for r in results}
    if not results or "error" in statuses:
        return EXIT_ERROR
    if "fail" in statuses:
        return EXIT_FAIL
    return EXIT_PASS


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
