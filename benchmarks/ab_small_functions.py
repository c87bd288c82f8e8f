"""Two versions of gradcheck-lab side by side on the small-function suite: this checkout
against another (``git worktree add /tmp/base <commit>``), call by call.

    .venv/bin/python benchmarks/ab_small_functions.py /tmp/base [--rounds 40] [--only NAME ...]

A shared machine's speed drifts by tens of percent within a minute, which a benchmark run
once per version cannot tell from a change. Here each version runs in a process of its own,
and the two are asked in turn for one drop-in call at a time (which goes first alternates),
torch's ``gradcheck(fast_mode=True)`` beside them, so that a slow spell falls on both.
Printed per function: the median CPU time of each (one thread), their ratio, and each
version's ratio to torch's; then the geometric mean of the ratios and each version's median
ratio to torch (issue #29's figure). Run once, this is the worker each version's process is.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SEED = 0


def worker(root: str) -> None:
    """Answer "NAME TOOL" lines with one call's CPU seconds (TOOL: lab or torch)."""
    sys.path.insert(0, str(Path(root) / "benchmarks"))
    import torch
    from small_functions import FUNCTIONS

    import gradcheck_lab

    torch.set_num_threads(1)
    warm: dict[str, tuple] = {}
    for line in sys.stdin:
        name, tool = line.split()
        if name not in warm:
            function, build = FUNCTIONS[name]
            warm[name] = (function, build(torch.Generator().manual_seed(SEED)))
            gradcheck_lab.gradcheck(*warm[name], fast_mode=True)
            torch.autograd.gradcheck(*warm[name], fast_mode=True)
        function, inputs = warm[name]
        check = gradcheck_lab.gradcheck if tool == "lab" else torch.autograd.gradcheck
        started = time.process_time()
        check(function, inputs, fast_mode=True)
        print(time.process_time() - started, flush=True)


class Version:
    """One version's worker process, asked for one call at a time."""

    def __init__(self, root: Path) -> None:
        environment = dict(os.environ, PYTHONPATH=str(root), OMP_NUM_THREADS="1")
        self.process = subprocess.Popen(
            [sys.executable, __file__, "--worker", str(root)], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, text=True, env=environment)

    def seconds(self, name: str, tool: str) -> float:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(f"{name} {tool}\n")
        self.process.stdin.flush()
        answer = self.process.stdout.readline()
        if not answer:
            raise SystemExit(f"the worker stopped at {name} ({tool})")
        return float(answer)

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        self.process.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("base", help="the other version's checkout (a git worktree)")
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--only", nargs="*", help="function names (default: all)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.worker:
        worker(options.base)
        return
    sys.path.insert(0, str(HERE))
    from small_functions import FUNCTIONS

    names = options.only or list(FUNCTIONS)
    versions = {"this": Version(HERE.parent), "base": Version(Path(options.base).resolve())}
    ratios, to_torch = [], {"this": [], "base": []}
    print(f"{'function':26s} {'this':>8s} {'base':>8s} {'torch':>7s}  this/base  "
          "this/torch base/torch")
    try:
        for name in names:
            times: dict[str, list[float]] = {"this": [], "base": [], "torch": []}
            for round_ in range(options.rounds):
                for which in ("this", "base") if round_ % 2 == 0 else ("base", "this"):
                    times[which].append(versions[which].seconds(name, "lab"))
                times["torch"].append(versions["this"].seconds(name, "torch"))
            this, base, torch_time = (statistics.median(times[k])
                                      for k in ("this", "base", "torch"))
            ratios.append(this / base)
            to_torch["this"].append(this / torch_time)
            to_torch["base"].append(base / torch_time)
            print(f"{name:26s} {this * 1e3:6.2f}ms {base * 1e3:6.2f}ms {torch_time * 1e3:5.2f}ms"
                  f"  {this / base:9.3f}  {this / torch_time:10.2f} {base / torch_time:10.2f}",
                  flush=True)
    finally:
        for version in versions.values():
            version.close()
    print(f"{len(names)} functions, {options.rounds} rounds: this / base geometric mean "
          f"{statistics.geometric_mean(ratios):.3f}; drop-in / torch fast median: this "
          f"{statistics.median(to_torch['this']):.2f}, base "
          f"{statistics.median(to_torch['base']):.2f}")


if __name__ == "__main__":
    main()
