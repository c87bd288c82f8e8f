"""What a full verification costs: gradcheck-lab (every element symbolic vs autograd, plus finite
differences) against torch.autograd.gradcheck in fast mode (one random projection) and slow
mode (every element), on the same functions. Slow mode only where it finishes in seconds."""

from __future__ import annotations

import pytest
import torch

import gradcheck_lab
from gradcheck_lab.casefile import build_case
from gradcheck_lab.subject.function import lower
from gradcheck_lab.subject.points import make_point

FUNCTIONS = {
    "tanh_sum_20": ({"x": {"shape": [20], "init": "randn"}}, "sum(tanh(x) * x)"),
    "mlp_64_32_10": ({
        "x": {"shape": [8, 64], "init": "uniform", "requires_grad": False},
        "t": {"shape": [8], "init": "randint", "high": 10},
        "W1": {"shape": [32, 64], "init": "uniform", "low": -0.125, "high": 0.125},
        "b1": {"shape": [32], "init": "zeros"},
        "W2": {"shape": [10, 32], "init": "uniform", "low": -0.18, "high": 0.18},
        "b2": {"shape": [10], "init": "zeros"},
    }, "cross_entropy(linear(tanh(linear(x, W1, b1)), W2, b2), t)"),
}
SLOW_MODE = {"tanh_sum_20", "mlp_64_32_10"}  # 2,410 parameters: about a second here


def torch_function(name: str):
    inputs, output = FUNCTIONS[name]
    case = build_case({"inputs": inputs, "output": output}, label=name, base_dir=None,
                      default_name=name)
    point = make_point(case, "float64")
    names = [spec.name for spec in case.inputs]
    tensors = []
    for spec in case.inputs:
        dtype = torch.int64 if spec.is_integer else torch.float64
        tensors.append(torch.tensor(point.values[spec.name], dtype=dtype)
                       .requires_grad_(spec.requires_grad))

    def function(*args):
        return lower(case.program, dict(zip(names, args, strict=True)), "float64", "cpu")

    return function, tuple(tensors)


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_gradcheck_lab_full_check(benchmark, name: str) -> None:
    inputs, output = FUNCTIONS[name]
    benchmark.group = f"verify {name}"
    results = benchmark.pedantic(
        lambda: gradcheck_lab.check(output=output, inputs=inputs), rounds=3, warmup_rounds=1)
    assert [r.status for r in results] == ["pass"]


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
@pytest.mark.parametrize("mode", ["fast", "slow"])
def test_torch_gradcheck(benchmark, name: str, mode: str) -> None:
    if mode == "slow" and name not in SLOW_MODE:
        pytest.skip("slow mode takes minutes at this size")
    function, tensors = torch_function(name)
    benchmark.group = f"verify {name}"
    passed = benchmark.pedantic(
        lambda: torch.autograd.gradcheck(function, tensors, fast_mode=mode == "fast"),
        rounds=3, warmup_rounds=1)
    assert passed
