"""Cost of checking the MNIST MLP case, against one forward+backward of the same MLP.

Run: .venv/bin/python benchmarks/mnist_mlp_cost.py [--repeats N] [--threads T] [--runs R]
     [--mnist-exhaustive] [--plain-forwards M] [--torch-slow]

Prints, from one run on one machine, at T torch threads (default 1): one forward+backward of
the MLP in torch (median), the in-process check time of the MLP and of the MNIST CNN (medians,
each in forward+backward units of its own net), the check's own `cost_units` over repeated
runs (their spread), the MLP check at 1 thread and at every core beside a busy process, the
wall time of `gradcheck-lab run cases/mnist_mlp_ce.yaml` as a user sees it (a fresh process:
imports included), start-up (`gradcheck-lab run cases/r144.yaml` against `python -c "import
torch, sympy"`, medians of three fresh processes), and `--fd exhaustive` (every partial) on
the 25,450-parameter MLP 784-32-10 of cases/mnist_training.yaml against 2N plain forwards of
the same function, R runs (default 1) and their spread after a first run (also printed); with
--mnist-exhaustive also on the MNIST MLP (about 25 s a run, 2N plain forwards about 90 s).
2N plain forwards are M forwards (default 2,000) timed in this run and scaled, or all 2N with
--plain-forwards 0.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from gradcheck_lab import run_file
from gradcheck_lab.casefile import load_file
from gradcheck_lab.oracles.autograd import make_leaves
from gradcheck_lab.pipeline.case_check import run_case
from gradcheck_lab.settings import Settings
from gradcheck_lab.subject.function import lower
from gradcheck_lab.subject.points import make_point

CASES = Path(__file__).resolve().parent.parent / "cases"
CASE = CASES / "mnist_mlp_ce.yaml"
CNN = CASES / "mnist_cnn.yaml"
SMALL_MLP = CASES / "mnist_training.yaml"  # its spec: 784-32-10, 25,450 parameters


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
    parser.add_argument("--runs", type=int, default=1, help="exhaustive runs per net")
    parser.add_argument("--mnist-exhaustive", action="store_true")
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
    run_file(CASE, case_timeout=None)  # warm-up: imports, sympy rule derivation
    units = []
    check = median_seconds(lambda: units.append(
        run_file(CASE, case_timeout=None)[0].counts["cost_units"]), args.repeats)
    (cnn,) = load_file(CNN)
    cnn_point = make_point(cnn, "float64")
    cnn_unit = median_seconds(lambda: forward_backward(cnn, cnn_point), 50)
    run_file(CNN, case_timeout=None)
    cnn_check = median_seconds(lambda: run_file(CNN, case_timeout=None), args.repeats)
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
    print(f"the check's own cost_units over {len(units)} runs: {units}, largest / smallest "
          f"{max(units) / max(min(units), 1):.2f} (target: at most 1.5)")
    contention(args.repeats)
    print(f"`gradcheck-lab run cases/mnist_mlp_ce.yaml`: {cli:8.2f} s (fresh process)")
    print(f"start-up: `gradcheck-lab run cases/r144.yaml` {startup:.2f} s, `python -c \"import "
          f"torch, sympy\"` {imports:.2f} s (medians of 3): ratio {startup / imports:.2f} "
          "(target: at most 1.5)")
    (small,) = load_file(SMALL_MLP)
    exhaustive_figures(dataclasses.replace(small, training=None), args.plain_forwards,
                       args.runs)
    if args.mnist_exhaustive:
        exhaustive_figures(case, args.plain_forwards, args.runs)
    if args.torch_slow:
        torch_slow_mode(case, point, unit)


def contention(repeats: int) -> None:
    """The MLP check at 1 thread and at every core, beside a process that keeps one core
    busy (as on a shared CI runner)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    previous = torch.get_num_threads()
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        seconds = {}
        for count in (1, cores or 1):
            torch.set_num_threads(count)
            run_file(CASE, case_timeout=None)
            seconds[count] = median_seconds(lambda: run_file(CASE, case_timeout=None), repeats)
    finally:
        busy.kill()
        torch.set_num_threads(previous)
    print(f"MLP check beside a busy process: 1 thread {seconds[1] * 1e3:.1f} ms, {cores} threads "
          f"{seconds[cores or 1] * 1e3:.1f} ms (ratio {seconds[cores or 1] / seconds[1]:.2f}; "
          "the CLI's default is 1 thread)")


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


def exhaustive_figures(case, sample: int, runs: int) -> None:
    """``--fd exhaustive`` on ``case`` against 2N plain forwards timed in this run."""
    point = make_point(case, "float64")
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
    # A first run in a fresh process also pays for the memory the batches touch for the first
    # time (page faults, slow in a VM); the runs compared are the ones after it.
    started = time.perf_counter()
    list(run_case(case, Settings(fd="exhaustive")))
    first = time.perf_counter() - started
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        (result,) = run_case(case, Settings(fd="exhaustive"))
        times.append(time.perf_counter() - started)
        assert result.status == "pass", result.message
    median = statistics.median(times)
    print(f"{case.name}: exhaustive check (--fd exhaustive), N = {elements:,}: median of {runs}"
          f" {median:.1f} s; counts.finite_difference = "
          f"{result.counts['finite_difference']:,}, evaluations = "
          f"{result.counts['finite_difference_evaluations']:,}")
    print(f"  2N plain forwards ({plain:,} timed, {per_forward * 1e3:.3f} ms each): "
          f"{two_n:.1f} s; exhaustive / 2N plain forwards = {median / two_n:.3f} (target: at "
          f"most 1.0); runs {[round(t, 1) for t in times]}, largest / median "
          f"{max(times) / median:.2f} (target: at most 1.5), after a first run of "
          f"{first:.1f} s ({first / two_n:.3f} of 2N)")


if __name__ == "__main__":
    main()
