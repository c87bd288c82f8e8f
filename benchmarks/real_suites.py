"""gradcheck-lab's drop-in on a real library's own gradcheck tests, side by side with torch.

    .venv/bin/python benchmarks/real_suites.py kornia /path/to/kornia-checkout
    .venv/bin/python benchmarks/real_suites.py entmax /path/to/entmax-checkout
    .venv/bin/python benchmarks/real_suites.py generic /path/to/checkout -- tests -k grad
    .venv/bin/python benchmarks/real_suites.py kornia /path/to/kornia-checkout --flag

With ``--flag`` the suite runs twice instead, as a user would run it: plainly, and with
``pytest --gradcheck-dropin=compare`` (no plugin of this folder); the table lists every test
whose outcome differs between the two runs, and the drop-in's own session summary follows.

The library itself must be installed in the same environment (``pip install -c
constraints.txt kornia==0.9.0``); the checkout gives its tests, which run unedited. Every
gradcheck call runs through torch's function and through gradcheck-lab's
(``real_suite_plugin``); the table says how many calls gradcheck-lab checked with three
oracles, with two (and why), and with an internal error; where the verdicts differ; and the
per-call time ratio (gradcheck-lab / torch, CPU time, one thread). Nothing third-party is
copied into the project.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import statistics
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ElementTree
from pathlib import Path

HERE = Path(__file__).resolve().parent
# Each suite's gradcheck tests, as its own test layout holds them.
SUITES = {
    "kornia": ["tests", "-k", "gradcheck", "--ignore=tests/io"],
    "entmax": ["entmax"],
    "generic": [],
}


def run(suite: str, checkout: Path, extra: list[str], out: Path) -> int:
    env = {**os.environ, "GRADCHECK_LAB_SUITE_OUT": str(out),
           "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p",
               "real_suite_plugin", *SUITES[suite], *extra]
    return subprocess.run(command, cwd=checkout, env=env, check=False).returncode


def run_flagged(suite: str, checkout: Path, extra: list[str], out: Path) -> str:
    """The suite plainly and under ``--gradcheck-dropin=compare``: the tests whose outcome
    differs, and the drop-in's summary."""
    outcomes = []
    summary = ""
    for flags in ([], ["--gradcheck-dropin=compare"]):
        xml = out.with_suffix(f".{len(outcomes)}.xml")
        command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                   f"--junitxml={xml}", *flags, *SUITES[suite], *extra]
        done = subprocess.run(command, cwd=checkout, env={**os.environ, "OMP_NUM_THREADS": "1"},
                              capture_output=True, text=True, check=False)
        outcomes.append(_outcomes(xml))
        if flags:
            summary = done.stdout[done.stdout.find("gradcheck-lab drop-in:"):]
    plain, flagged = outcomes
    differ = sorted(t for t in plain.keys() | flagged.keys() if plain.get(t) != flagged.get(t))
    lines = [f"{len(plain)} tests plainly, {len(flagged)} with --gradcheck-dropin; "
             f"{len(differ)} differ in outcome"]
    lines.extend(f"  {test}: plain {plain.get(test)}, drop-in {flagged.get(test)}"
                 for test in differ)
    return "\n".join(lines) + "\n\n" + summary


def _outcomes(xml: Path) -> dict[str, str]:
    """Each test's outcome in a JUnit XML file: passed, failed, error or skipped."""
    found = {}
    for case in ElementTree.parse(xml).getroot().iter("testcase"):
        kinds = {child.tag for child in case} & {"failure", "error", "skipped"}
        test = f"{case.get('classname')}::{case.get('name')}"
        found[test] = {"failure": "failed"}.get(next(iter(kinds), ""), next(iter(kinds), "passed"))
    return found


def report(calls: list[dict]) -> str:
    lines = [f"{len(calls)} gradcheck calls"]
    how = collections.Counter(call["how"] for call in calls)
    lines.append("| checked | calls | share |")
    lines.append("|---|---|---|")
    for key, count in how.most_common():
        lines.append(f"| {key} | {count} | {100 * count / max(len(calls), 1):.1f}% |")
    why = collections.Counter(_short(call["missing"]) for call in calls if call["missing"])
    if why:
        lines.append("\ntwo oracles, why:")
        lines.extend(f"  {count:4d}  {reason}" for reason, count in why.most_common())
    verdicts = collections.Counter((call["torch"], call["lab"]) for call in calls)
    lines.append("\nverdicts (torch, gradcheck-lab): "
                 + ", ".join(f"{t}/{g}: {n}" for (t, g), n in sorted(verdicts.items())))
    for call in calls:
        if call["torch"] != call["lab"]:
            error = call["lab_error"] or call["torch_error"] or ""
            lines.append(f"  differs: {call['test']} torch={call['torch']} "
                         f"lab={call['lab']}: {error[:300]}")
    ratios = [call["lab_cpu"] / call["torch_cpu"] for call in calls if call["torch_cpu"] > 0]
    if ratios:
        ratios.sort()
        p90 = ratios[min(len(ratios) - 1, int(0.9 * len(ratios)))]
        lines.append(f"\nper-call CPU time, gradcheck-lab / torch: median "
                     f"{statistics.median(ratios):.2f}x, 90th percentile {p90:.2f}x; totals "
                     f"{sum(c['lab_cpu'] for c in calls):.1f} s vs "
                     f"{sum(c['torch_cpu'] for c in calls):.1f} s")
    return "\n".join(lines)


def _short(reason: str) -> str:
    """A two-oracle reason without its place in the user's code, so that they group."""
    head, _, tail = reason.partition(" (at ")
    return head + (tail.partition(")")[2] if tail else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("suite", choices=sorted(SUITES))
    parser.add_argument("checkout", type=Path)
    parser.add_argument("--out", type=Path, help="keep the calls' JSON lines here")
    parser.add_argument("--flag", action="store_true",
                        help="compare a plain run with pytest --gradcheck-dropin=compare")
    args, extra = parser.parse_known_args()  # the rest, after --, goes to pytest
    args.extra = [arg for arg in extra if arg != "--"]
    out = args.out or Path(tempfile.mkstemp(suffix=".jsonl")[1])
    out.write_text("")
    if args.flag:
        print(run_flagged(args.suite, args.checkout.resolve(), args.extra, out))
        return
    code = run(args.suite, args.checkout.resolve(), args.extra, out)
    calls = [json.loads(line) for line in out.read_text().splitlines() if line]
    print(report(calls))
    print(f"\n(pytest exit code {code}; calls in {out})")


if __name__ == "__main__":
    main()
