"""What keeps finite differences cheap without changing what they measure: moved evaluations
reuse the centre's nodes that do not depend on the moved input (bit for bit the same values),
and a check screens with two directions per input, taking all eight where symbolic and
autograd disagree."""

from __future__ import annotations

import numpy as np
import torch

from gradcheck_lab import check
from gradcheck_lab.casefile import build_case
from gradcheck_lab.oracles import finite_difference
from gradcheck_lab.oracles.finite_difference import CENTER, evaluate_at
from gradcheck_lab.subject import function
from gradcheck_lab.subject.function import FunctionUnderTest, lower
from gradcheck_lab.subject.points import make_point
from gradcheck_lab.subject.probes import make_probes

MLP = {
    "inputs": {
        "x": {"shape": [8, 6], "init": "randn", "seed": 1, "requires_grad": False},
        "w1": {"shape": [5, 6], "init": "randn", "seed": 2},
        "b1": {"shape": [5], "init": "randn", "seed": 3},
        "w2": {"shape": [3, 5], "init": "randn", "seed": 4},
    },
    "let": {"h": "tanh(linear(x, w1, b1))"},
    "output": "sum(linear(h, w2) ** 2)",
}


def mlp():
    case = build_case(MLP, label="t", base_dir=None, default_name="mlp")
    return case, make_point(case, "float64")


def test_the_nodes_that_depend_on_an_input_are_it_and_what_is_downstream() -> None:
    case, _ = mlp()
    program = case.program
    late = program.depending_on({"w2"})
    assert program.inputs["w2"] in late and program.output in late
    assert program.lets["h"] not in late  # computed before w2 enters
    assert program.lets["h"] in program.depending_on({"w1"})
    assert program.depending_on(set()) == frozenset()


def counted_ops(monkeypatch) -> list[str]:
    """The op names the lowered spec applies from now on."""
    applied: list[str] = []
    original = function.torch_form

    def counting(dtype: str, device: str):
        form = original(dtype, device)

        def apply(op, args, params):
            applied.append(op.name)
            return form.apply(op, args, params)

        return form.__class__(**{**form.__dict__, "apply": apply})

    monkeypatch.setattr(function, "torch_form", counting)
    return applied


def test_a_moved_evaluation_is_the_full_one_bit_for_bit_and_skips_what_did_not_move(
        monkeypatch) -> None:
    case, point = mlp()
    reference = FunctionUnderTest(case, "float64", "cpu")
    evaluate_at(reference, point.values, CENTER)
    applied = counted_ops(monkeypatch)
    moved = {**point.values, "w2": point.values["w2"] + 1e-3}
    incremental = evaluate_at(reference, moved, frozenset({"w2"}))
    # Only the last linear, the power and the sum: the first layer is the centre's.
    assert applied.count("linear") == 1 and "tanh" not in applied
    tensors = {name: torch.tensor(value) for name, value in moved.items()}
    with torch.no_grad():
        whole = lower(case.program, tensors, "float64", "cpu").numpy().reshape(-1)
    assert np.array_equal(incremental, whole)


def test_an_unmoved_input_that_is_not_the_centres_is_evaluated_whole(monkeypatch) -> None:
    case, point = mlp()
    reference = FunctionUnderTest(case, "float64", "cpu")
    evaluate_at(reference, point.values, CENTER)
    applied = counted_ops(monkeypatch)
    # w1 is said unmoved but is another array: nothing of the centre may be reused.
    other = {**point.values, "w1": point.values["w1"] * 2, "w2": point.values["w2"] + 1e-3}
    value = evaluate_at(reference, other, frozenset({"w2"}))
    assert "tanh" in applied
    tensors = {name: torch.tensor(v) for name, v in other.items()}
    with torch.no_grad():
        whole = lower(case.program, tensors, "float64", "cpu").numpy().reshape(-1)
    assert np.array_equal(value, whole)


def test_fewer_directions_are_the_first_of_a_full_draw() -> None:
    case, point = mlp()
    probes = make_probes((), case.seed)
    reference = FunctionUnderTest(case, "float64", "cpu")
    full = finite_difference.estimate(reference, point, probes, mode="projections")
    screened = finite_difference.estimate(reference, point, probes, mode="projections",
                                          directions=finite_difference.SCREENING_DIRECTIONS)
    widened = finite_difference.more_directions(reference, point, probes, screened, {"w1"})
    for name in ("w1", "b1", "w2"):
        few, many = screened.per_input[name], full.per_input[name]
        assert len(few.directions) == finite_difference.SCREENING_DIRECTIONS
        assert np.array_equal(few.directions, many.directions[:len(few.directions)])
        assert np.array_equal(few.directional, many.directional[:, :len(few.directions)])
    # Widened: w1 has every direction of the full draw, the others keep their screening ones.
    assert np.array_equal(widened.per_input["w1"].directions, full.per_input["w1"].directions)
    assert np.array_equal(widened.per_input["w1"].directional,
                          full.per_input["w1"].directional)
    assert len(widened.per_input["b1"].directions) == finite_difference.SCREENING_DIRECTIONS
    assert widened.evaluations > screened.evaluations


class WrongSecondWeight(torch.autograd.Function):
    """linear(h, w2) whose backward doubles w2's gradient."""

    @staticmethod
    def forward(ctx, h, w2):
        ctx.save_for_backward(h, w2)
        return h @ w2.T

    @staticmethod
    def backward(ctx, grad):
        h, w2 = ctx.saved_tensors
        return grad @ w2, 2 * grad.T @ h


def wrong_mlp(x, w1, b1, w2):
    h = torch.tanh(torch.nn.functional.linear(x, w1, b1))
    return (WrongSecondWeight.apply(h, w2) ** 2).sum()


def test_a_passing_check_screens_and_a_failing_one_takes_every_direction_where_it_fails(
        ) -> None:
    spec = MLP["output"]
    inputs, lets = MLP["inputs"], MLP["let"]
    (passing,) = check(spec, inputs, let=lets, fd="projections")
    assert passing.status == "pass", passing.message
    method = passing.oracles["finite_difference"]
    # Symbolic and autograd agree everywhere: joint directions over all inputs screen.
    assert f"{finite_difference.JOINT_DIRECTIONS} random directions over all inputs" in method
    (failing,) = check(spec, inputs, let=lets, impl=wrong_mlp, fd="projections")
    assert failing.status == "fail"
    assert {m.odd_oracle for m in failing.mismatches if m.input == "w2"} == {"autograd"}
    assert any("took 8 random directions for w2, where symbolic and autograd disagree" in note
               for note in failing.notes), failing.notes
