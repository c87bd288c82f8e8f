"""The zoo (tests/data/zoo/) through two tools: gradcheck-lab, and torch.autograd.gradcheck
with its defaults (eps 1e-6, atol 1e-5, rtol 1e-3) on float64 copies of the inputs.

    .venv/bin/python benchmarks/zoo_vs_gradcheck.py [--write docs/zoo.md]

Prints a Markdown table, one row per case file, and each tool's totals: bugs caught and false
alarms. torch.autograd.gradcheck calls the case's impl; a spec-only case has its spec lowered
to torch ops by gradcheck-lab's FunctionUnderTest (the same callable gradcheck-lab checks).

Each tool runs in its own Python process: a stateful impl (tests/data/zoo/bugs/stateful.py)
keeps state in its module, and a tool must not see state the other tool left behind.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
ZOO = REPO / "tests" / "data" / "zoo"
KINDS = {"bugs": "bug", "correct": "correct"}
COMMAND = ".venv/bin/python benchmarks/zoo_vs_gradcheck.py --write docs/zoo.md"


def zoo_files() -> list[tuple[str, Path]]:
    """(kind, path) for every case file, bugs first, each folder sorted."""
    return [(kind, path) for folder, kind in KINDS.items()
            for path in sorted((ZOO / folder).glob("*.yaml"))]


def lab_verdict(path: Path) -> str:
    """One verdict per file: error beats fail beats pass (skip counts as pass)."""
    import gradcheck_lab

    statuses = {result.status for result in gradcheck_lab.run_file(path)}
    for status in ("error", "fail"):
        if status in statuses:
            return status
    return "pass" if statuses else "error"


def torch_verdict(path: Path) -> str:
    """torch.autograd.gradcheck with its defaults on the case's first (only) case."""
    import torch
    from torch.autograd.gradcheck import GradcheckError

    from gradcheck_lab.casefile import load_file
    from gradcheck_lab.subject.function import FunctionUnderTest
    from gradcheck_lab.subject.points import make_point

    (case,) = load_file(path)  # the zoo has one case per file
    # The case's own input values (float32 cases: already rounded to float32), in float64.
    point = make_point(case, case.dtypes[0])
    names = [spec.name for spec in case.inputs]
    tensors = []
    for spec in case.inputs:
        if spec.is_integer:
            tensors.append(torch.tensor(point.values[spec.name], dtype=torch.int64))
        else:
            tensors.append(torch.tensor(point.values[spec.name], dtype=torch.float64)
                           .requires_grad_(spec.requires_grad))
    function = FunctionUnderTest(case, "float64", "cpu")

    def call(*args):
        return function(dict(zip(names, args, strict=True)))

    try:
        torch.autograd.gradcheck(call, tuple(tensors))
    except GradcheckError:
        return "fail"
    except Exception:  # gradcheck's own checks raise other errors too (e.g. a detached output)
        return "error"
    return "pass"


def run_tool(tool: str) -> dict[str, str]:
    verdict = lab_verdict if tool == "lab" else torch_verdict
    return {f"{path.parent.name}/{path.stem}": verdict(path) for _, path in zoo_files()}


def in_fresh_process(tool: str) -> dict[str, str]:
    done = subprocess.run([sys.executable, __file__, "--tool", tool], capture_output=True,
                          text=True, check=True, cwd=REPO)
    return json.loads(done.stdout.strip().splitlines()[-1])


def totals(verdicts: dict[str, str]) -> dict[str, int]:
    counts = {"bugs": 0, "caught": 0, "correct": 0, "false_alarms": 0, "errors": 0}
    for key, verdict in verdicts.items():
        kind = key.split("/")[0]
        counts[kind] += 1
        counts["errors"] += verdict == "error"
        if kind == "bugs":
            counts["caught"] += verdict == "fail"
        else:
            counts["false_alarms"] += verdict == "fail"
    return counts


def markdown(lab: dict[str, str], torch_: dict[str, str], seconds: dict[str, float]) -> str:
    lines = ["| case | kind | gradcheck-lab | torch gradcheck |", "| --- | --- | --- | --- |"]
    for key in lab:
        folder, stem = key.split("/")
        lines.append(f"| {stem} | {KINDS[folder]} | {lab[key]} | {torch_[key]} |")
    lines += ["", "| tool | bugs caught | false alarms | errors | seconds, imports included |",
              "| --- | --- | --- | --- | --- |"]
    for name, verdicts in (("gradcheck-lab", lab), ("torch.autograd.gradcheck", torch_)):
        t = totals(verdicts)
        lines.append(f"| {name} | {t['caught']} / {t['bugs']} | "
                     f"{t['false_alarms']} / {t['correct']} | {t['errors']} | "
                     f"{seconds[name]:.1f} |")
    return "\n".join(lines) + "\n"


DOC_HEAD = """# The zoo: gradcheck-lab vs torch.autograd.gradcheck

Every case file in `tests/data/zoo/`: `bugs/` holds custom `torch.autograd.Function`s with
planted backward bugs (the YAML's `output:` is the correct math), `correct/` holds correct but
numerically awkward functions. gradcheck-lab runs each file through `gradcheck_lab.run_file`;
`torch.autograd.gradcheck` runs with its defaults (eps 1e-6, atol 1e-5, rtol 1e-3) on float64
copies of the inputs, calling the impl, or for a spec-only case the spec lowered to torch ops.
"fail" on a bug is a catch; "fail" on a correct function is a false alarm.
`tests/test_zoo.py` holds the cases gradcheck-lab cannot catch yet or wrongly flags, with why.

Produced by:

```bash
{command}
```

"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tool", choices=["lab", "torch"], help=argparse.SUPPRESS)
    parser.add_argument("--write", type=Path, metavar="FILE",
                        help="also write the table, with the command, to this Markdown file")
    args = parser.parse_args(argv)
    if args.tool:  # a worker: one tool, a JSON line on stdout
        print(json.dumps(run_tool(args.tool)))
        return 0
    seconds = {}
    started = time.perf_counter()
    lab = in_fresh_process("lab")
    seconds["gradcheck-lab"] = time.perf_counter() - started
    started = time.perf_counter()
    torch_ = in_fresh_process("torch")
    seconds["torch.autograd.gradcheck"] = time.perf_counter() - started
    table = markdown(lab, torch_, seconds)
    print(table, end="")
    if args.write:
        args.write.parent.mkdir(parents=True, exist_ok=True)
        args.write.write_text(DOC_HEAD.format(command=COMMAND) + table, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
