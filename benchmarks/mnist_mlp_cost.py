"""Cost of checking the MNIST MLP case, against one forward+backward of the same MLP.

Run: .venv/bin/python benchmarks/mnist_mlp_cost.py [--repeats N]

Prints, from one run on one machine: the wall time of `gradcheck-lab run
cases/mnist_mlp_ce.yaml` as a user sees it (a fresh process: imports included), the in-process
check time (median), one forward+backward of the MLP in torch (median), and their ratio.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from gradcheck_lab import run_file
from gradcheck_lab.casefile import load_file
from gradcheck_lab.oracles.autograd import make_leaves
from gradcheck_lab.oracles.torch_function import lower
from gradcheck_lab.points import make_point

CASE = Path(__file__).resolve().parent.parent / "cases" / "mnist_mlp_ce.yaml"


def median_seconds(function, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def forward_backward(case, point) -> None:
    leaves = make_leaves(case, point, "float64", "cpu")
    out = lower(case.program, leaves, "float64", "cpu")
    differentiable = [leaves[s.name] for s in case.differentiable_inputs]
    torch.autograd.grad(out, differentiable)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    (case,) = load_file(CASE)
    point = make_point(case, "float64")
    for _ in range(5):
        forward_backward(case, point)  # warm-up
    unit = median_seconds(lambda: forward_backward(case, point), 50)
    run_file(CASE)  # warm-up: imports, sympy rule derivation
    check = median_seconds(lambda: run_file(CASE), args.repeats)
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "gradcheck_lab", "run", str(CASE)], check=True,
                   capture_output=True)
    cli = time.perf_counter() - started
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"one forward+backward (median of 50):       {unit * 1e3:8.2f} ms")
    print(f"full check in process (median of {args.repeats}):      {check * 1e3:8.1f} ms"
          f"  = {check / unit:6.0f} forward+backward units")
    print(f"`gradcheck-lab run cases/mnist_mlp_ce.yaml`: {cli:8.2f} s (fresh process)")


if __name__ == "__main__":
    main()
