"""Every op's shape rule decides the result's shape in integers, before anything is
allocated: called with huge parameters (a tile of 10^5 x 10^5, a repeat of 10^9, a pad of
10^9), it returns a shape or refuses, within a second of CPU and 200 MiB (numpy's
allocations are traced by tracemalloc). The element limit then refuses the huge shape at
its key (tests/data/hostile/expr_huge_*)."""

from __future__ import annotations

import time
import tracemalloc
from typing import Any

import pytest

from gradcheck_lab.errors import SpecError
from gradcheck_lab.ops import OPS
from gradcheck_lab.ops.base import ArgInfo, Param

HUGE = 10**9
HUGE_DIMS = (10**5, 10**5)
MEMORY_LIMIT = 200 * 2**20


def huge(param: Param) -> Any:
    """The largest value each kind of parameter could ask for; others as their default."""
    if param.kind == "int":
        return HUGE
    if param.kind == "dims":
        return HUGE_DIMS
    if param.kind in ("float", "floats"):
        return float(HUGE)
    if param.kind == "str":
        return param.default if param.default is not None else param.choices[0]
    return param.default


SIZED = sorted(name for name, op in OPS.items()
               if any(p.kind in ("int", "dims", "float", "floats") for p in op.params))


@pytest.mark.parametrize("name", SIZED)
def test_a_shape_rule_with_huge_parameters_allocates_nothing(name: str) -> None:
    op = OPS[name]
    args = [ArgInfo((2, 3, 4, 5)[: max(1, 4 - i)], is_integer=i in op.integer_args,
                    is_bool=i in op.bool_args) for i in range(max(op.min_args, 1))]
    assert_cheap(name, args, {p.name: huge(p) for p in op.params})


def assert_cheap(name: str, args: list[ArgInfo], params: dict[str, Any]) -> None:
    """The op's shape rule decides (or refuses) under the memory and CPU bounds."""
    tracemalloc.start()
    started = time.process_time()
    try:
        OPS[name].shape(args, params)
    except (SpecError, ValueError, TypeError, IndexError, OverflowError, ZeroDivisionError):
        pass  # a refusal is fine; an allocation is not
    finally:
        spent = time.process_time() - started
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert peak < MEMORY_LIMIT, f"{name}: {peak / 2**20:.0f} MiB to decide a shape"
    assert spent < 1.0, f"{name}: {spent:.1f} s of CPU to decide a shape"


def huge_then_zero(params: Any) -> dict[str, Any]:
    """The first sized parameter huge and every later one 0: a view's huge size over zero
    strides (as_strided((10^5, 10^5), (0, 0))) stays inside its input and passes every
    range check, so only a rule that never allocates refuses it cheaply."""
    values, first = {}, True
    for param in params:
        if param.kind in ("int", "dims"):
            values[param.name] = huge(param) if first else (
                0 if param.kind == "int" else (0,) * len(HUGE_DIMS))
            first = False
        else:
            values[param.name] = huge(param)
    return values


@pytest.mark.parametrize("name", SIZED)
def test_a_huge_size_over_zero_strides_allocates_nothing(name: str) -> None:
    op = OPS[name]
    args = [ArgInfo((2, 3, 4, 5)[: max(1, 4 - i)], is_integer=i in op.integer_args,
                    is_bool=i in op.bool_args) for i in range(max(op.min_args, 1))]
    assert_cheap(name, args, huge_then_zero(op.params))


# Matrices at the input limit (5·10^7 elements) for every op of one or two matrices: the
# shape rule counts the operations of its one LAPACK or BLAS call from the shapes and refuses
# it (tests/test_kernel_cost.py), cheaply, before anything is allocated.
MATRIX_ARGS = {"dot": ((10**7,), (10**7,)), "outer": ((7071,), (7071,)),
               "bmm": ((1, 7071, 7071), (1, 7071, 7071)), "einsum": ((7071, 7071),) * 2}
LINALG = sorted(name for name, op in OPS.items() if op.group == "linalg")


@pytest.mark.parametrize("name", LINALG)
def test_a_linear_algebra_shape_rule_on_huge_matrices_allocates_nothing(name: str) -> None:
    op = OPS[name]
    shapes = MATRIX_ARGS.get(name, ((7071, 7071),) * max(op.min_args, 1))
    args = [ArgInfo(shape, is_integer=False) for shape in shapes]
    params = {p.name: p.default for p in op.params}
    params.update({"part": 0} if "part" in params else {})
    if name == "einsum":
        params["equation"] = "ij,jk->ik"
    assert_cheap(name, args, params)
    if name not in ("dot", "outer", "trace"):  # linear in their elements: no limit to pass
        with pytest.raises(SpecError, match="operations in one call"):
            op.shape(args, params)
