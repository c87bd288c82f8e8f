"""The one timing path, shared by `gradcheck-lab run --timings` and `pytest --benchmark` items.

A timed pass is a ``setup`` (fresh leaves; for the backward also the forward, so every round
differentiates a fresh graph) and a ``target`` (the timed region: the forward, or
``torch.autograd.grad`` alone, no accumulation). On CUDA the target synchronizes before it
returns, the CLI path times it with CUDA events, and TF32 is off so float32 means float32.
CPU threads are fixed while timing (1 by default: shared machines are noisy) and reported.

``pytest --benchmark`` times a case with an impl file in the worker process that checks it
(``run.isolation``), under the case budget, with ``SampledTimings``: its rounds are those
pytest-benchmark's pedantic mode would run, and every round's seconds come back, for
pytest-benchmark to compute its statistics from.
"""

from __future__ import annotations

import contextlib
import functools
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from gradcheck_lab.casefile import Case
from gradcheck_lab.settings import TimingSettings

__all__ = ["PASSES", "SampledTimings", "TimedPass", "TimingSettings", "TimingStats",
           "interquartile_range", "measure", "seconds_per_round", "time_case",
           "timing_environment"]

PASSES = ("forward", "backward")


@dataclass(frozen=True)
class TimingStats:
    median_s: float
    iqr_s: float
    rounds: int
    threads: int
    timer: str
    samples: tuple[float, ...] = field(default=(), repr=False)  # SampledTimings only

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"median_s": self.median_s, "iqr_s": self.iqr_s,
                                "rounds": self.rounds, "threads": self.threads,
                                "timer": self.timer}
        if self.samples:
            data["samples_s"] = list(self.samples)
        return data


@dataclass(frozen=True)
class SampledTimings(TimingSettings):
    """Timings as ``pytest --benchmark`` runs them, in the worker: the pilot rounds first, then
    the warm-up rounds (at most the timed rounds where ``warmup_capped``, as pytest-benchmark
    caps ``--benchmark-warmup-iterations``), and every timed round's seconds kept
    (``TimingStats.samples``)."""

    warmup_capped: bool = False


class TimedPass:
    """The forward or the backward of one case at one dtype and device, ready to time."""

    def __init__(self, case: Case, dtype: str, device: str, which: str) -> None:
        from gradcheck_lab.subject.function import FunctionUnderTest
        from gradcheck_lab.subject.points import make_point
        from gradcheck_lab.subject.probes import make_probes

        if which not in PASSES:
            raise ValueError(f"which must be one of {PASSES}, got {which!r}")
        self.case = case
        self.dtype = dtype
        self.device = device
        self.which = which
        self.point = make_point(case, dtype)
        self.function = FunctionUnderTest(case, dtype, device)
        self.cotangent = make_probes(case.program.output_node.shape, case.seed,
                                     case.outputs)[0].cotangent
        self.names = [spec.name for spec in case.differentiable_inputs]
        # The timed region, bound once so that it adds no dispatch of its own: the forward,
        # or torch.autograd.grad alone.
        self.target: Callable[..., None] = self._timed_region()

    @property
    def on_cuda(self) -> bool:
        return self.device.startswith("cuda")

    def synchronize(self) -> None:
        if self.on_cuda:
            import torch

            torch.cuda.synchronize(self.device)

    def setup(self) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """Fresh leaves, and for the backward a fresh graph: all outside the timed region."""
        import torch

        from gradcheck_lab.oracles.autograd import make_leaves

        leaves = make_leaves(self.case, self.point, self.dtype, self.device)
        if self.which == "forward":
            self.synchronize()
            return (leaves,), {}
        with torch.enable_grad():
            out = self.function(leaves)
        cotangent = torch.tensor(self.cotangent, dtype=out.dtype, device=out.device)
        differentiable = [leaves[name] for name in self.names]
        self.synchronize()
        return (out, differentiable, cotangent), {}

    def _forward(self, leaves: dict[str, Any]) -> None:
        import torch

        with torch.enable_grad():
            self.function(leaves)

    def _backward(self, out: Any, differentiable: list[Any], cotangent: Any) -> None:
        import torch

        torch.autograd.grad(out, differentiable, grad_outputs=cotangent, allow_unused=True)

    def _timed_region(self) -> Callable[..., None]:
        timed = self._forward if self.which == "forward" else self._backward
        if not self.on_cuda:
            return timed

        def synchronized(*args: Any) -> None:
            timed(*args)
            self.synchronize()

        return synchronized


@contextlib.contextmanager
def timing_environment(device: str, threads: int | None) -> Iterator[int]:
    """Fix the CPU thread count and turn TF32 off; restore both afterwards."""
    import torch

    from gradcheck_lab.subject.function import held_threads

    cuda = torch.backends.cuda.matmul
    previous_tf32 = (cuda.allow_tf32, torch.backends.cudnn.allow_tf32)
    cuda.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    try:
        with held_threads(threads) as count:
            yield count
    finally:
        cuda.allow_tf32, torch.backends.cudnn.allow_tf32 = previous_tf32


def seconds_per_round(timed: TimedPass, pilots: int = 3) -> float:
    """Untimed pilot rounds, after one warm-up call, to size the number of rounds."""
    times = []
    for _ in range(pilots + 1):
        args, kwargs = timed.setup()
        started = time.perf_counter()
        timed.target(*args, **kwargs)
        times.append(time.perf_counter() - started)
    return statistics.median(times[1:])


def measure(timed: TimedPass, settings: TimingSettings = TimingSettings()) -> TimingStats:
    """Time ``timed`` round by round (setup untimed) and summarize as median and IQR."""
    sampled = isinstance(settings, SampledTimings)
    with timing_environment(timed.device, settings.threads) as threads:
        if not sampled:
            _warm_up(timed, settings.warmup_rounds)
        rounds = settings.rounds_for(seconds_per_round(timed))
        if isinstance(settings, SampledTimings):  # pytest-benchmark's order: after the pilots
            _warm_up(timed, min(settings.warmup_rounds, rounds) if settings.warmup_capped
                     else settings.warmup_rounds)
        # pytest-benchmark's own clock is the wall clock (the target synchronizes on CUDA): its
        # rows from the worker are measured alike.
        events = timed.on_cuda and not sampled
        clock = _cuda_clock(timed.device) if events else _wall_clock
        samples = []
        for _ in range(rounds):
            args, kwargs = timed.setup()
            samples.append(clock(functools.partial(timed.target, *args, **kwargs)))
    return TimingStats(statistics.median(samples), interquartile_range(samples), rounds,
                       threads, "cuda events" if events else "time.perf_counter",
                       tuple(samples) if sampled else ())


def _warm_up(timed: TimedPass, rounds: int) -> None:
    for _ in range(rounds):
        args, kwargs = timed.setup()
        timed.target(*args, **kwargs)


def time_case(case: Case, dtype: str, device: str,
              settings: TimingSettings = TimingSettings()) -> dict[str, TimingStats]:
    return {which: measure(TimedPass(case, dtype, device, which), settings)
            for which in PASSES}


def interquartile_range(samples: list[float]) -> float:
    if len(samples) < 2:
        return 0.0
    quartiles = statistics.quantiles(samples, n=4, method="inclusive")
    return quartiles[2] - quartiles[0]


def _wall_clock(run: Callable[[], None]) -> float:
    started = time.perf_counter()
    run()
    return time.perf_counter() - started


def _cuda_clock(device: str) -> Callable[[Callable[[], None]], float]:
    import torch

    def clock(run: Callable[[], None]) -> float:
        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)
        start.record()
        run()
        end.record()
        torch.cuda.synchronize(device)
        return start.elapsed_time(end) / 1000.0

    return clock
