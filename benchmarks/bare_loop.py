"""The reference for harness overhead: perf_counter around torch.autograd.grad and nothing else,
the graph rebuilt outside the timed region, the same thread count as the timing path."""

from __future__ import annotations

import statistics
import time

import torch

from gradcheck_lab.casefile import Case
from gradcheck_lab.oracles.autograd import make_leaves
from gradcheck_lab.subject.function import lower
from gradcheck_lab.subject.points import make_point
from gradcheck_lab.subject.probes import make_probes


def bare_backward_seconds(case: Case, rounds: int, threads: int = 1, warmup: int = 3) -> float:
    """Median seconds of one backward of the case's spec, float64 on CPU."""
    point = make_point(case, "float64")
    names = [spec.name for spec in case.differentiable_inputs]
    cotangent = make_probes(case.program.output_node.shape, case.seed)[0].cotangent
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        samples = []
        for round_number in range(warmup + rounds):
            leaves = make_leaves(case, point, "float64", "cpu")
            out = lower(case.program, leaves, "float64", "cpu")
            inputs = [leaves[name] for name in names]
            seed = torch.tensor(cotangent, dtype=out.dtype)
            started = time.perf_counter()
            torch.autograd.grad(out, inputs, grad_outputs=seed, allow_unused=True)
            elapsed = time.perf_counter() - started
            if round_number >= warmup:
                samples.append(elapsed)
        return statistics.median(samples)
    finally:
        torch.set_num_threads(previous)
