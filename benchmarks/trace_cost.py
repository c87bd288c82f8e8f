"""Cost of tracing a spec from a plain torch forward, and of checking with a traced spec.

Run: .venv/bin/python benchmarks/trace_cost.py [--repeats N] [--threads T]

The MNIST MLP (784-128-64-10, batch 64, float64) of cases/mnist_mlp_ce.yaml, once with its
written output: and once with the same math as a plain torch function (mlp_forward.py) and no
output, so that the spec is traced. Prints, from one run: one forward+backward of the MLP
(median), the trace alone (median) in those units (the issue's target: under 50), and the full
check with the written and with the traced spec (medians) and their ratio.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import torch
from mnist_mlp_cost import median_seconds  # this folder is on sys.path when run

from gradcheck_lab.casefile import load_file
from gradcheck_lab.casefile.case import ImplRef
from gradcheck_lab.oracles.autograd import make_leaves
from gradcheck_lab.pipeline import run_case
from gradcheck_lab.subject.function import FunctionUnderTest, lower
from gradcheck_lab.subject.points import make_point
from gradcheck_lab.trace import trace

HERE = Path(__file__).resolve().parent
CASE = HERE.parent / "cases" / "mnist_mlp_ce.yaml"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    (written,) = load_file(CASE)
    traced = dataclasses.replace(written, impl=ImplRef(HERE / "mlp_forward.py",
                                                       "mlp_forward.py:mlp", "mlp"),
                                 traced=True)
    point = make_point(written, "float64")

    def forward_backward() -> None:
        leaves = make_leaves(written, point, "float64", "cpu")
        out = lower(written.program, leaves, "float64", "cpu")
        torch.autograd.grad(out, [leaves[s.name] for s in written.differentiable_inputs])

    for _ in range(5):
        forward_backward()
    unit = median_seconds(forward_backward, 50)
    forward = FunctionUnderTest(traced, "float64", "cpu").called
    trace(traced, point.values, forward)  # warm-up: the impl's import
    tracing = median_seconds(lambda: trace(traced, point.values, forward), args.repeats)
    list(run_case(written))
    list(run_case(traced))
    check_written = median_seconds(lambda: list(run_case(written)), args.repeats)
    check_traced = median_seconds(lambda: list(run_case(traced)), args.repeats)
    (result,) = run_case(traced)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s); traced check: "
          f"{result.status}, {result.oracles['symbolic']}")
    print(f"one forward+backward (median of 50):  {unit * 1e3:8.2f} ms")
    print(f"trace (median of {args.repeats}):               {tracing * 1e3:8.2f} ms = "
          f"{tracing / unit:6.1f} units")
    print(f"check, written spec (median):         {check_written * 1e3:8.1f} ms = "
          f"{check_written / unit:6.0f} units")
    print(f"check, traced spec (median):          {check_traced * 1e3:8.1f} ms = "
          f"{check_traced / unit:6.0f} units ({check_traced / check_written:.2f}x written)")


if __name__ == "__main__":
    main()
