"""Cost of a check at network scale, in units of one forward+backward of the same function
taken in this process: gradcheck-lab with a written spec and through the drop-in, beside
torch's ``gradcheck`` in fast mode (slow mode with ``--torch-slow``, minutes).

    .venv/bin/python benchmarks/network_cost.py [--rounds 3] [--only NAME ...] [--torch-slow]

At one thread. Rows (issue #29's table): the MNIST MLP (cases/mnist_mlp_ce.yaml), an MLP
2048-1024-1024-512-10 at batch 64 (3.7 M parameters), the MNIST CNN (cases/mnist_cnn.yaml),
a custom Linear Function (x 64×128, W 256×128: 41,216 elements), and the MNIST MLP at
``order: 2``. Each figure is the median CPU time of ROUNDS warm calls over the unit (the
median of 20 forward+backward passes of the spec lowered to torch, or of the Function), on
the clock ``cost_units`` uses: at one thread it is the wall time of an idle machine, without
the time a shared machine takes away. Beside
the written spec's figure: the ``cost_units`` its result reports, and their ratio (target:
within 10%). Targets: written spec at most 15 units, drop-in at most 20, order 2 at most 60.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from small_functions import LinearFunction

import gradcheck_lab
from gradcheck_lab.casefile import Case, build_case, load_file
from gradcheck_lab.oracles.autograd import make_leaves
from gradcheck_lab.pipeline import run_case
from gradcheck_lab.subject.function import lower
from gradcheck_lab.subject.points import make_point

CASES = Path(__file__).resolve().parent.parent / "cases"

WIDE_MLP = {
    "name": "mlp_2048_1024",
    "inputs": {
        "x": {"shape": [64, 2048], "init": "uniform", "low": 0, "high": 1, "seed": 1,
              "requires_grad": False},
        "target": {"shape": [64], "init": "randint", "low": 0, "high": 10, "seed": 2},
        **{f"W{k}": {"shape": [n_out, n_in], "init": "uniform", "low": -n_in ** -0.5,
                     "high": n_in ** -0.5, "seed": 10 + k}
           for k, (n_in, n_out) in enumerate([(2048, 1024), (1024, 1024), (1024, 512),
                                             (512, 10)], start=1)},
    },
    "let": {"h1": "relu(linear(x, W1))", "h2": "relu(linear(h1, W2))",
            "h3": "relu(linear(h2, W3))"},
    "output": "cross_entropy(linear(h3, W4), target)",
}


@dataclass
class Row:
    name: str
    case: Case
    function: Callable[..., torch.Tensor]  # what the drop-in and torch are given
    tensors: tuple[torch.Tensor, ...]
    order: int = 1


def median_seconds(call: Callable[[], Any], rounds: int) -> float:
    times = []
    for _ in range(rounds):
        started = time.process_time()
        call()
        times.append(time.process_time() - started)
    return statistics.median(times)


def spec_row(name: str, case: Case, order: int = 1) -> Row:
    """The spec lowered to torch is the function the drop-in and torch check."""
    point = make_point(case, "float64")
    leaves = make_leaves(case, point, "float64", "cpu")
    names = [spec.name for spec in case.differentiable_inputs]

    def function(*differentiable: torch.Tensor) -> torch.Tensor:
        given = {**leaves, **dict(zip(names, differentiable, strict=True))}
        return lower(case.program, given, "float64", "cpu")

    tensors = tuple(leaves[n].detach().clone().requires_grad_() for n in names)
    return Row(name, case, function, tensors, order)


def custom_linear_row() -> Row:
    generator = torch.Generator().manual_seed(0)
    shapes = {"x": [64, 128], "W": [256, 128], "b": [256]}
    tensors = tuple(torch.randn(*shape, dtype=torch.float64, generator=generator)
                    .requires_grad_() for shape in shapes.values())
    inputs = {name: {"value": t.detach().numpy().tolist()} for name, t in
              zip(shapes, tensors, strict=True)}
    case = build_case({"name": "custom_linear", "inputs": inputs,
                       "output": "linear(x, W, b)"}, label="<benchmark>", base_dir=None,
                      default_name="custom_linear",
                      impl=lambda x, W, b: LinearFunction.apply(x, W, b))  # noqa: N803
    return Row("custom Linear Function", case, LinearFunction.apply, tensors)


def rows(only: list[str] | None) -> list[Row]:
    (mlp,) = load_file(CASES / "mnist_mlp_ce.yaml")
    (cnn,) = load_file(CASES / "mnist_cnn.yaml")
    wide = build_case(WIDE_MLP, label="<benchmark>", base_dir=None, default_name="wide")
    made = [spec_row("MNIST MLP", mlp), spec_row("MLP 2048-1024", wide),
            spec_row("MNIST CNN", cnn), custom_linear_row(),
            spec_row("MNIST MLP, order 2", mlp, order=2)]
    return [row for row in made if only is None or row.name in only]


def unit_seconds(row: Row) -> float:
    """The median of 20 forward+backward passes on fresh leaves (made outside the clock)."""
    times = []
    for repeat in range(23):
        leaves = tuple(t.detach().clone().requires_grad_() for t in row.tensors)
        started = time.process_time()
        out = row.function(*leaves)
        torch.autograd.grad(out, leaves, torch.ones_like(out))
        if repeat >= 3:  # the first passes warm up
            times.append(time.process_time() - started)
    return statistics.median(times)


def measure(row: Row, rounds: int, torch_slow: bool) -> None:
    unit = unit_seconds(row)
    elements = sum(t.numel() for t in row.tensors)
    reported: list[int] = []

    def written() -> None:
        import dataclasses

        case = dataclasses.replace(row.case, order=row.order) if row.order != 1 else row.case
        (result,) = run_case(case)
        assert result.status == "pass", result.message
        reported.append(result.counts["cost_units"])

    check = gradcheck_lab.gradgradcheck if row.order == 2 else gradcheck_lab.gradcheck
    reference = (torch.autograd.gradgradcheck if row.order == 2
                 else torch.autograd.gradcheck)
    figures: dict[str, float] = {}
    calls = {"written spec": written,
             "drop-in": lambda: check(row.function, row.tensors, fast_mode=True),
             "torch fast": lambda: reference(row.function, row.tensors, fast_mode=True)}
    if torch_slow:
        calls["torch slow"] = lambda: reference(row.function, row.tensors, fast_mode=False)
    for label, call in calls.items():
        call()  # warm: imports, rule derivation, first allocations
        figures[label] = median_seconds(call, 1 if label == "torch slow" else rounds) / unit
    own = statistics.median(reported[1:] or reported)
    print(f"{row.name:<22} {elements:>10,} {unit * 1e3:8.2f} ms " + " ".join(
        f"{figures.get(label, float('nan')):>12,.1f}"
        for label in ("written spec", "drop-in", "torch fast", "torch slow"))
        + f" {own:>10,.0f} {own / figures['written spec']:>7.2f}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", nargs="*", default=None)
    parser.add_argument("--torch-slow", action="store_true")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    print(f"torch {torch.__version__}, gradcheck-lab {gradcheck_lab.__version__}, 1 thread; "
          f"medians of {args.rounds} warm calls, in forward+backward units")
    print(f"{'function':<22} {'elements':>10} {'unit':>11} {'written spec':>12} "
          f"{'drop-in':>12} {'torch fast':>12} {'torch slow':>12} {'cost_units':>10} "
          f"{'ratio':>7}")
    for row in rows(args.only):
        measure(row, args.rounds, args.torch_slow)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
