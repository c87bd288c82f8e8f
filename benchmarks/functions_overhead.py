"""What ``pytest --gradcheck-functions`` adds to a suite's own run: its tests' wall time with
the recording on against a plain run, interleaved, medians over runs (the checks that follow
the suite are timed apart, by the flag's own summary).

    .venv/bin/python benchmarks/functions_overhead.py /path/to/entmax-checkout -- entmax
    .venv/bin/python benchmarks/functions_overhead.py tests/data/functions_suite --runs 5

The library must be installed in the environment running this (the checkout gives its tests,
which run unedited). One torch thread (OMP_NUM_THREADS=1), as the project's timings.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def suite_seconds(checkout: Path, pytest_args: list[str], flagged: bool) -> tuple[float, float]:
    """The wall and CPU seconds of one run's test loop, the checks that follow it apart."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(HERE)}
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
               "-p", "suite_loop_timer", *pytest_args]
    if flagged:
        command.append("--gradcheck-functions")
    done = subprocess.run(command, cwd=checkout, capture_output=True, text=True, env=env)
    found = re.search(r"suite-loop-seconds: ([0-9.]+) cpu ([0-9.]+)", done.stdout)
    if found is None:
        raise SystemExit(f"no timing in the run's output:\n{done.stdout[-3000:]}"
                         f"\n{done.stderr[-2000:]}")
    return float(found.group(1)), float(found.group(2))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkout", type=Path)
    parser.add_argument("--runs", type=int, default=3)
    argv = sys.argv[1:]
    split = argv.index("--") if "--" in argv else len(argv)
    args = parser.parse_args(argv[:split])
    args.pytest_args = argv[split + 1:]  # the suite's own pytest arguments
    plain, flagged = [], []
    for run in range(args.runs):
        plain.append(suite_seconds(args.checkout, args.pytest_args, flagged=False))
        flagged.append(suite_seconds(args.checkout, args.pytest_args, flagged=True))
        print(f"run {run + 1}: plain {plain[-1][0]:.2f} s (cpu {plain[-1][1]:.2f} s), with "
              f"--gradcheck-functions {flagged[-1][0]:.2f} s (cpu {flagged[-1][1]:.2f} s)",
              flush=True)
    for index, what in enumerate(("wall", "cpu")):
        before = statistics.median(run[index] for run in plain)
        after = statistics.median(run[index] for run in flagged)
        print(f"median {what}: plain {before:.2f} s, recording {after:.2f} s: "
              f"{100 * (after / before - 1):+.1f}% (target at most +20%)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
