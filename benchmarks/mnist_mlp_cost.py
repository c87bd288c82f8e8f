"""Cost of checking the MNIST MLP case, against one forward+backward of the same MLP.

Run: .venv/bin/python benchmarks/mnist_mlp_cost.py [--repeats N] [--threads T] [--exhaustive]
     [--plain-forwards M] [--torch-slow]

Prints, from one run on one machine, at T torch threads (default 1): one forward+backward of
the MLP in torch (median), the in-process check time of the MLP and of the MNIST CNN (medians,
each in forward+backward units of its own net), the wall time of `gradcheck-lab run
cases/mnist_mlp_ce.yaml` as a user sees it (a fresh process: imports included), and start-up:
`gradcheck-lab run cases/r144.yaml` against `python -c "import torch, sympy"` (medians of
three fresh processes) and their ratio. With --exhaustive also the check with `--fd
exhaustive` (every partial, 2N forwards for N parameters) against 2N plain forwards of the
same function: their time is M plain forwards measured in this run (default 2,000), scaled to
2N, and all 2N with --plain-forwards 0.
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
from gradcheck_lab.oracles.function import lower
from gradcheck_lab.oracles.points import make_point

CASES = Path(__file__).resolve().parent.parent / "cases"
CASE = CASES / "mnist_mlp_ce.yaml"
CNN = CASES / "mnist_cnn.yaml"


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
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--exhaustive", action="store_true")
    parser.add_argument("--plain-forwards", type=int, default=2000)
    parser.add_argument("--torch-slow", action="store_true",
                        help="also torch.autograd.gradcheck in slow mode on the same MLP "
                             "(one forward pair per parameter: minutes)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    threads = ["--threads", str(args.threads)]
    (case,) = load_file(CASE)
    point = make_point(case, "float64")
    for _ in range(5):
        forward_backward(case, point)  # warm-up
    unit = median_seconds(lambda: forward_backward(case, point), 50)
    run_file(CASE)  # warm-up: imports, sympy rule derivation
    check = median_seconds(lambda: run_file(CASE), args.repeats)
    (cnn,) = load_file(CNN)
    cnn_point = make_point(cnn, "float64")
    cnn_unit = median_seconds(lambda: forward_backward(cnn, cnn_point), 50)
    run_file(CNN)
    cnn_check = median_seconds(lambda: run_file(CNN), args.repeats)
    cli = fresh_process_seconds(["-m", "gradcheck_lab", "run", str(CASE), *threads], 1)
    startup = fresh_process_seconds(["-m", "gradcheck_lab", "run", str(CASES / "r144.yaml"),
                                     *threads], 3)
    imports = fresh_process_seconds(["-c", "import torch, sympy"], 3)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s)")
    print(f"one forward+backward (median of 50):       {unit * 1e3:8.2f} ms")
    print(f"full check in process (median of {args.repeats}):      {check * 1e3:8.1f} ms"
          f"  = {check / unit:6.0f} forward+backward units (target: at most 100)")
    print(f"MNIST CNN: one forward+backward {cnn_unit * 1e3:.2f} ms; full check "
          f"{cnn_check * 1e3:.1f} ms = {cnn_check / cnn_unit:6.0f} units (target: at most 100)")
    print(f"`gradcheck-lab run cases/mnist_mlp_ce.yaml`: {cli:8.2f} s (fresh process)")
    print(f"start-up: `gradcheck-lab run cases/r144.yaml` {startup:.2f} s, `python -c \"import "
          f"torch, sympy\"` {imports:.2f} s (medians of 3): ratio {startup / imports:.2f} "
          "(target: at most 1.5)")
    if args.exhaustive:
        exhaustive_figures(case, point, unit, args.plain_forwards)
    if args.torch_slow:
        torch_slow_mode(case, point, unit)


def fresh_process_seconds(arguments: list[str], repeats: int) -> float:
    """The median wall time of ``python ARGUMENTS`` in fresh processes."""
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        subprocess.run([sys.executable, *arguments], check=False, capture_output=True)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def torch_slow_mode(case, point, unit: float) -> None:
    """The reference the fast path is measured against: gradcheck's exhaustive mode."""
    leaves = make_leaves(case, point, "float64", "cpu")
    names = [spec.name for spec in case.differentiable_inputs]

    def function(*differentiable):
        return lower(case.program, {**leaves, **dict(zip(names, differentiable, strict=True))},
                     "float64", "cpu")

    started = time.perf_counter()
    passed = torch.autograd.gradcheck(function, tuple(leaves[n] for n in names),
                                      fast_mode=False)
    seconds = time.perf_counter() - started
    print(f"torch.autograd.gradcheck slow mode (passed: {passed}): {seconds:8.1f} s"
          f"  = {seconds / unit:8.0f} forward+backward units")


def exhaustive_figures(case, point, unit: float, sample: int) -> None:
    elements = sum(spec.size for spec in case.differentiable_inputs)
    plain = 2 * elements if sample <= 0 else min(sample, 2 * elements)
    tensors = make_leaves(case, point, "float64", "cpu")
    with torch.no_grad():
        lower(case.program, tensors, "float64", "cpu")  # warm-up
        started = time.perf_counter()
        for _ in range(plain):
            lower(case.program, tensors, "float64", "cpu")
        per_forward = (time.perf_counter() - started) / plain
    two_n = 2 * elements * per_forward
    started = time.perf_counter()
    (result,) = run_file(CASE, fd="exhaustive")
    exhaustive = time.perf_counter() - started
    assert result.status == "pass", result.message
    print(f"exhaustive check (--fd exhaustive), N = {elements:,}: {exhaustive:8.1f} s"
          f"  = {exhaustive / unit:8.0f} forward+backward units;"
          f" counts.finite_difference = {result.counts['finite_difference']:,},"
          f" evaluations = {result.counts['finite_difference_evaluations']:,}")
    print(f"2N plain forwards ({plain:,} timed, {per_forward * 1e3:.3f} ms each):"
          f" {two_n:8.1f} s; exhaustive / 2N plain forwards = {exhaustive / two_n:.3f}")


if __name__ == "__main__":
    main()
