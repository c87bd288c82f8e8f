"""Cost of checking the MNIST MLP to second order, in forward+backward units of the same net.

Run: .venv/bin/python benchmarks/second_order_cost.py [--repeats N] [--threads T]

The MLP of cases/mnist_order2.yaml (784-128-64-10, tanh, batch 64, cross-entropy, float64),
order: 2. Prints, from one run: one forward+backward of the MLP in torch (median of 50), the
full check at order 1 and at order 2 (medians), and each in those units (the issue's target
for order 2: at most 5,000), then the second-order sweep alone (the symbolic Hessian-vector
product) in units.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import torch
from mnist_mlp_cost import forward_backward, median_seconds  # this folder is on sys.path

from gradcheck_lab.casefile import load_file
from gradcheck_lab.oracles import symbolic
from gradcheck_lab.pipeline import run_case
from gradcheck_lab.subject.points import make_point
from gradcheck_lab.subject.probes import make_probes, make_tangents

CASE = Path(__file__).resolve().parent.parent / "cases" / "mnist_order2.yaml"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    second = next(case for case in load_file(CASE) if case.name == "mnist_mlp_order2")
    first = dataclasses.replace(second, order=1)
    point = make_point(second, "float64")
    for _ in range(5):
        forward_backward(second, point)
    unit = median_seconds(lambda: forward_backward(second, point), 50)
    (result,) = run_case(second)  # warm-up: sympy's derivations, once per process
    list(run_case(first))
    check_first = median_seconds(lambda: list(run_case(first)), args.repeats)
    check_second = median_seconds(lambda: list(run_case(second)), args.repeats)
    probes = make_probes(second.program.output_node.shape, second.seed, second.outputs)[:1]
    tangents = make_tangents({s.name: s.shape for s in second.differentiable_inputs},
                             second.seed)
    sweep = median_seconds(lambda: symbolic.hessian_vector_products(
        second.program, point, probes, tangents, "sweep"), args.repeats)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s); order 2: "
          f"{result.status}, {result.counts['second_order']:,} HVP elements compared")
    print(f"one forward+backward (median of 50): {unit * 1e3:8.2f} ms")
    print(f"check, order 1 (median of {args.repeats}):       {check_first * 1e3:8.1f} ms = "
          f"{check_first / unit:6.0f} units")
    print(f"check, order 2 (median of {args.repeats}):       {check_second * 1e3:8.1f} ms = "
          f"{check_second / unit:6.0f} units (target: at most 5,000)")
    print(f"second-order sweep alone (median):   {sweep * 1e3:8.1f} ms = "
          f"{sweep / unit:6.0f} units")


if __name__ == "__main__":
    main()
