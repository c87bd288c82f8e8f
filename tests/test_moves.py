"""Exhaustive finite differences evaluate the ops that read a moved input only where one moved
element reaches (each op's ``moves`` rule in the op table), and the nodes downstream through
vmap. What they give must be what evaluating the function whole gives, for every element of
every input: these tests move each element and compare with whole evaluations.

Values are small integers where a matrix product is involved, so that every sum is exact and a
product evaluated on a slice (a matrix-vector product) must equal the whole one bit for bit,
whatever order the kernels add in."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gradcheck_lab.casefile import build_case
from gradcheck_lab.ops import OPS
from gradcheck_lab.oracles.finite_difference import CENTER
from gradcheck_lab.subject.function import FunctionUnderTest, lower
from gradcheck_lab.subject.points import make_point


def integers(shape: list[int], seed: int) -> dict:
    """A real input whose values ``prepared`` rounds to integers in [-3, 3]."""
    return {"shape": shape, "init": "uniform", "low": -3, "high": 3, "seed": seed}


def prepared(inputs: dict, output: str, let: dict | None = None, *, exact: bool = True):
    data = {"inputs": inputs, "output": output, **({"let": let} if let else {})}
    case = build_case(data, label="t", base_dir=None, default_name="moves")
    point = make_point(case, "float64")
    if exact:
        for name in point.values:
            point.values[name] = np.round(point.values[name])
    function = FunctionUnderTest(case, "float64", "cpu")
    with torch.no_grad():
        function(function.input_tensors(point.values, center=True), CENTER)
    return case, point, function


def moved_and_whole(case, point, function, name: str, values: np.ndarray):
    """The rows ``moved_elements`` gives for every element of ``name`` set to ``values``,
    and the same rows from whole evaluations, one per element (None: no rule applied)."""
    indices = torch.arange(values.size)
    with torch.no_grad():
        moved = function.moved_elements(name, indices, torch.tensor(values.reshape(-1)))
        if moved is None:
            return None, None
        whole = []
        for index, value in enumerate(values.reshape(-1)):
            tensors = {n: torch.tensor(v) for n, v in point.values.items()}
            tensors[name].view(-1)[index] = float(value)
            whole.append(lower(case.program, tensors, "float64", "cpu").reshape(-1))
    return moved.reshape(values.size, -1), torch.stack(whole)


PRODUCTS = [
    # (inputs, let, output): every differentiable input is read by ops with a rule only.
    ({"x": integers([5, 4], 1), "W": integers([3, 4], 2), "b": integers([3], 3)}, None,
     "linear(x, W, b)"),
    ({"x": integers([2, 5, 4], 1), "W": integers([3, 4], 2)}, None, "linear(x, W) * 2"),
    ({"x": integers([4], 1), "W": integers([3, 4], 2), "b": integers([3], 3)}, None,
     "linear(x, W, b)"),
    ({"a": integers([3, 4], 1), "b": integers([4, 2], 2)}, None, "relu(a @ b) - 1"),
    ({"x": integers([6, 4], 1), "W1": integers([5, 4], 2), "b1": integers([5], 3),
      "W2": integers([2, 5], 4)}, {"h": "relu(linear(x, W1, b1))"},
     "sum(linear(h, W2) ** 2)"),
    ({"x": integers([3, 4], 1), "y": integers([3, 4], 2), "s": integers([4], 3)}, None,
     "where(x > 0, x * s, y ** 2.0) + abs(y)"),
]


@pytest.mark.parametrize(("inputs", "let", "output"), [
    *PRODUCTS,
    ({"x": integers([3, 2], 1)}, None, "x"),  # the output is the input: nothing reads it
    ({"x": integers([], 1), "s": integers([], 2)}, None, "x * s + s"),  # 0-d
    ({"x": integers([4], 1), "y": integers([4], 2)}, None,
     "clamp(x, min=y, max=2.5) + clamp(y, -1.5)"),
])
def test_every_moved_element_gives_the_whole_evaluation_bit_for_bit(inputs, let,
                                                                      output) -> None:
    case, point, function = prepared(inputs, output, let)
    rng = np.random.default_rng(0)
    for spec in case.differentiable_inputs:
        values = rng.integers(-3, 4, size=spec.shape).astype(np.float64)
        moved, whole = moved_and_whole(case, point, function, spec.name, values)
        if spec.name == "s" and spec.shape:  # broadcast into x * s: it reaches a column
            assert moved is None
            continue
        assert moved is not None, spec.name
        assert torch.equal(moved, whole), spec.name


def elementwise_expression(name: str) -> str | None:
    """``f(x)``, ``x + y``, ``-x``, ``f(x, y)``: the op applied to real inputs x and y."""
    op = OPS[name]
    if op.bool_args or name == "clamp":
        return None
    if op.infix is not None:
        applied = f"{op.infix}x" if op.max_args == 1 else f"x {op.infix} y"
    else:
        applied = f"{name}(x)" if op.max_args == 1 else f"{name}(x, y)"
    # A comparison's value is not real: it chooses between the inputs instead.
    return f"where({applied}, x, 2 * y)" if op.returns == "bool" else applied


ELEMENTWISE = [name for name, op in OPS.items()
               if op.is_elementwise and elementwise_expression(name) is not None]


@pytest.mark.parametrize("name", ELEMENTWISE)
def test_an_elementwise_op_evaluated_on_the_moved_elements_is_the_whole_op(name) -> None:
    low, high = OPS[name].smooth_range
    inputs = {n: {"shape": [3, 4], "init": "uniform", "low": low, "high": high, "seed": seed}
              for seed, n in enumerate(("x", "y"), start=1)}
    case, point, function = prepared(inputs, elementwise_expression(name), exact=False)
    rng = np.random.default_rng(1)
    for spec in case.differentiable_inputs:
        values = rng.uniform(low, high, size=spec.shape)
        moved, whole = moved_and_whole(case, point, function, spec.name, values)
        assert moved is not None, spec.name
        # The same kernel on the same numbers: only its vectorized and scalar loops may round
        # apart, by an ulp.
        assert torch.allclose(moved, whole, rtol=2 * torch.finfo(torch.float64).eps, atol=0,
                              equal_nan=True), spec.name


def test_elementwise_ops_are_covered() -> None:
    assert len(ELEMENTWISE) >= 60


@pytest.mark.parametrize(("output", "reached"), [
    ("linear(x, W) * linear(x, W)", True),  # two readers, each with a rule
    # sum has no rule: it reads B copies of W, downstream; linear still has its rule
    ("sum(W) + linear(x, W)", True),
    ("W @ W", False),  # one reader, reading W twice: W is moved whole by the caller
    ("sum(W)", False),
])
def test_readers_without_a_rule_read_copies_of_the_input(output, reached) -> None:
    inputs = {"x": integers([4, 4], 1), "W": integers([4, 4], 2)}
    case, point, function = prepared(inputs, output)
    values = np.random.default_rng(2).integers(-3, 4, size=(4, 4)).astype(np.float64)
    moved, whole = moved_and_whole(case, point, function, "W", values)
    assert (moved is not None) == reached
    if reached:
        assert torch.equal(moved, whole)


def test_an_impl_is_opaque() -> None:
    inputs = {"x": integers([4], 1)}
    data = {"inputs": inputs, "output": "x * 2"}
    case = build_case(data, label="t", base_dir=None, default_name="opaque",
                      impl=lambda x: x * 2)
    function = FunctionUnderTest(case, "float64", "cpu")
    point = make_point(case, "float64")
    with torch.no_grad():
        function(function.input_tensors(point.values, center=True), CENTER)
        assert function.moved_elements("x", torch.arange(4), torch.zeros(4)) is None
