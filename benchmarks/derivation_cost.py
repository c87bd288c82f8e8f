"""Symbolic rule derivation costs the same for a 784x128 layer as for a 4x3 one.

Run: .venv/bin/python benchmarks/derivation_cost.py [--repeats N]

Each elementwise op's derivative is derived by sympy once per op (then cached), never per
element, so the derivation cost does not grow with the tensors. For each size, in a fresh
process (an empty cache), this times the first symbolic sweep of `sum(tanh(linear(x, W, b)) **
2) + mean(sigmoid(W))` (derivation included) and a second one (cached rules): derivation =
first - second. Prints the medians over N processes and the ratio of the two sizes.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys

CHILD = r"""
import json, sys, time
from gradcheck_lab.casefile import build_case
from gradcheck_lab.oracles import symbolic
from gradcheck_lab.subject.probes import make_probes
from gradcheck_lab.subject.points import make_point

rows, cols = int(sys.argv[1]), int(sys.argv[2])
case = build_case({"inputs": {"x": {"shape": [8, cols], "init": "randn", "seed": 1},
                              "W": {"shape": [rows, cols], "init": "randn", "seed": 2},
                              "b": {"shape": [rows], "init": "randn", "seed": 3}},
                   "output": "sum(tanh(linear(x, W, b)) ** 2) + mean(sigmoid(W))"},
                  label="<bench>", base_dir=None, default_name="bench")
point = make_point(case, "float64")
probes = make_probes((), 0)
times = []
for _ in range(2):
    started = time.perf_counter()
    symbolic.gradients(case.program, point, probes, mode="sweep")
    times.append(time.perf_counter() - started)
print(json.dumps({"first": times[0], "second": times[1]}))
"""


def derivation_seconds(rows: int, cols: int) -> float:
    output = subprocess.run([sys.executable, "-c", CHILD, str(rows), str(cols)], check=True,
                            capture_output=True, text=True).stdout
    times = json.loads(output.strip().splitlines()[-1])
    return times["first"] - times["second"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    medians = {}
    for rows, cols in ((4, 3), (128, 784)):
        runs = [derivation_seconds(rows, cols) for _ in range(args.repeats)]
        medians[(rows, cols)] = statistics.median(runs)
        print(f"W {rows}x{cols}: derivation {medians[(rows, cols)] * 1e3:7.1f} ms "
              f"(median of {args.repeats} fresh processes)")
    ratio = medians[(128, 784)] / medians[(4, 3)]
    print(f"784x128 / 4x3 = {ratio:.2f} (target: within 0.8-1.2)")


if __name__ == "__main__":
    main()
