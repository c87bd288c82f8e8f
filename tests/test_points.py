"""`points: N`: one point can hide a bug; the case is checked at N seeded points."""

from __future__ import annotations

import pytest
import torch

from gradcheck_lab import check
from gradcheck_lab.casefile import build_case
from gradcheck_lab.errors import CaseError
from gradcheck_lab.subject.points import make_point, point_seed

INPUTS = {"x": {"shape": [4], "init": "randn", "seed": 3}, "c": [1.0, 2.0, 3.0, 4.0]}


class WrongAboveTwo(torch.autograd.Function):
    """x**2 with a backward that is wrong only where x > 2, a rare value of randn."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x * x

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad * torch.where(x > 2, 3 * x, 2 * x)


def wrong_above_two(x, c):
    return (WrongAboveTwo.apply(x) * c).sum()


def test_the_first_point_is_the_case_as_written_and_later_points_are_redrawn() -> None:
    case = build_case({"inputs": INPUTS, "output": "sum(x * c)"}, label="<t>", base_dir=None,
                      default_name="t")
    first, second = make_point(case, "float64", 0), make_point(case, "float64", 1)
    expected = torch.randn(4, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    assert first.values["x"].tolist() == expected.tolist()
    redrawn = torch.randn(4, generator=torch.Generator().manual_seed(point_seed(3, 1)),
                          dtype=torch.float64)
    assert second.values["x"].tolist() == redrawn.tolist()
    assert second.values["c"].tolist() == first.values["c"].tolist()  # a literal stays


def test_a_bug_hidden_at_the_first_point_is_found_at_another() -> None:
    case = build_case({"inputs": INPUTS, "output": "sum(x * c)"}, label="<t>", base_dir=None,
                      default_name="t")
    assert make_point(case, "float64", 0).values["x"].max() <= 2  # the first point hides it
    (one,) = check("sum(x ** 2 * c)", INPUTS, impl=wrong_above_two)
    assert one.status == "pass", one.message
    (many,) = check("sum(x ** 2 * c)", INPUTS, impl=wrong_above_two, points=16)
    assert many.status == "fail"
    assert many.counts["points"] == 16
    found_at = {m.point for m in many.mismatches}
    assert found_at and 0 not in found_at
    assert all(f"point {p}" in many.message for p in found_at)
    assert all(m.odd_oracle == "autograd" for m in many.mismatches)
    assert "point" in many.mismatches[0].to_json()


def test_a_correct_function_passes_at_every_point() -> None:
    (result,) = check("sum(x ** 2 * c)", INPUTS, impl=lambda x, c: (x * x * c).sum(), points=4)
    assert result.status == "pass", result.message
    assert result.counts["points"] == 4
    assert result.counts["symbolic_vs_autograd"] == 4 * 8  # x and c, 4 elements each


def test_points_need_a_random_input_to_redraw() -> None:
    with pytest.raises(CaseError, match="points") as raised:
        check("sum(c * c)", {"c": [1.0, 2.0]}, points=3)
    assert "fixed" in str(raised.value)


@pytest.mark.parametrize("points", [0, 65, 2.5, True])
def test_points_must_be_a_whole_number_from_1_to_64(points) -> None:
    with pytest.raises(CaseError, match="points"):
        check("sum(x)", INPUTS, points=points)
