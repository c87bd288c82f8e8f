"""The keys that call real code: constants:, surrogate:, several outputs and params: (an
nn.Module). The Functions are in tests/data/calling/functions.py, the cases in cases.yaml."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from gradcheck_lab import check, run_file
from gradcheck_lab.errors import CaseError
from gradcheck_lab.oracles import finite_difference

DATA = Path(__file__).parent / "data" / "calling"


@pytest.fixture(scope="module")
def verdicts() -> dict[tuple[str, str], Any]:
    # In this process (no worker to start): what is tested is how the keys call the code;
    # the worker is tests/test_isolation.py's.
    return {(r.case, r.dtype): r for r in run_file(DATA / "cases.yaml", case_timeout=None)}


@pytest.mark.slow
def test_mul_constant_takes_its_constant_from_constants(verdicts) -> None:
    for dtype in ("float64", "float32"):
        result = verdicts["mul_constant", dtype]
        assert result.status == "pass", result.message


def test_a_gradient_reversal_passes_with_its_surrogate_and_fails_without(verdicts) -> None:
    for dtype in ("float64", "float32"):
        declared = verdicts["reversal", dtype]
        assert declared.status == "pass", declared.message
        assert any("declared surrogate gradient" in note for note in declared.notes)
        # Finite differences saw only w (x's true derivative differs from the surrogate):
        # w's screening directions, where x's would double the count.
        assert declared.counts["finite_difference"] == finite_difference.SCREENING_DIRECTIONS
        assert declared.counts["symbolic_vs_autograd"] == 8
    undeclared = verdicts["reversal_undeclared", "float64"]
    assert undeclared.status == "fail"
    assert {m.odd_oracle for m in undeclared.mismatches} == {"autograd"}


def test_a_backward_that_misses_its_declared_surrogate_fails_naming_autograd(verdicts) -> None:
    result = verdicts["reversal_wrong_scale", "float64"]
    assert result.status == "fail"
    assert "not the declared surrogate gradient" in result.message
    assert {(m.input, m.odd_oracle) for m in result.mismatches} == {("x", "autograd")}


def test_a_straight_through_estimator_passes_with_its_surrogate(verdicts) -> None:
    assert verdicts["straight_through", "float64"].status == "pass"


def test_a_two_output_attention_is_checked_on_both_outputs(verdicts) -> None:
    for key in [("attention", "float64"), ("attention", "float32"),
                ("attention_dict", "float64")]:
        result = verdicts[key]
        assert result.status == "pass", (key, result.message)
        assert "on each of the 2 outputs alone" in result.tolerance["probes"]


def test_a_backward_that_drops_one_outputs_gradient_is_named_by_that_output(verdicts) -> None:
    result = verdicts["attention_dropping_attn_grad", "float64"]
    assert result.status == "fail"
    assert "through output 'attn'" in result.message
    # Cotangents on both outputs at once disagree too (output None): only attn's own do.
    assert {m.output for m in result.mismatches} == {"attn", None}
    assert {m.odd_oracle for m in result.mismatches} == {"autograd"}
    assert all(m.to_json().get("output") in ("attn", None) for m in result.mismatches)
    assert not any(m.probe == "cotangent on o alone" for m in result.mismatches)


ATTENTION_INPUTS = {
    "q": {"shape": [2, 3, 4], "init": "randn", "seed": 5},
    "k": {"shape": [2, 5, 4], "init": "randn", "seed": 6},
    "v": {"shape": [2, 5, 4], "init": "randn", "seed": 7},
}
ATTENTION = {"o": "softmax(q @ transpose(k, -2, -1) / 2, dim=-1) @ v",
             "attn": "softmax(q @ transpose(k, -2, -1) / 2, dim=-1)"}


def impl(name: str) -> Any:
    import importlib.util

    spec = importlib.util.spec_from_file_location("calling_functions", DATA / "functions.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return getattr(module, name)


def test_a_value_mismatch_names_its_output_and_the_index_within_it() -> None:
    (result,) = check(ATTENTION, ATTENTION_INPUTS, impl=impl("attention_off_weights"))
    assert result.status == "fail"
    values = [m for m in result.mismatches if m.check == "value"]
    assert values and {m.output for m in values} == {"attn"}
    assert all(len(m.index) == 3 for m in values)  # attn's own [2, 3, 5] index
    assert "in output 'attn'" in result.message


def test_an_impl_returning_one_of_two_outputs_is_an_error_saying_what_was_expected() -> None:
    (result,) = check(ATTENTION, ATTENTION_INPUTS, impl=impl("attention_one_output"))
    assert result.status == "error"
    assert "expected a tuple (or dict) of the 2 outputs ['o', 'attn']" in result.message


def test_a_sequential_mlp_is_checked_through_params(verdicts) -> None:
    for dtype in ("float64", "float32"):
        result = verdicts["sequential_mlp", dtype]
        assert result.status == "pass", result.message


def test_a_module_factory_gets_the_constants() -> None:
    (result,) = check("x * w * factor", {"x": [1.0, 2.0, 3.0], "w": [0.5, -1.0, 2.0]},
                      constants={"factor": 3.0}, impl=impl("scale_module"),
                      params={"weight": "w"})
    assert result.status == "pass", result.message


def test_an_unknown_module_parameter_is_named_with_those_it_has() -> None:
    (result,) = check("x * w * factor", {"x": [1.0, 2.0, 3.0], "w": [0.5, -1.0, 2.0]},
                      constants={"factor": 3.0}, impl=impl("scale_module"),
                      params={"weights": "w"})
    assert result.status == "error"
    assert "no parameter 'weights' (did you mean 'weight'?)" in result.message


@pytest.mark.parametrize("keys, message", [
    ({"constants": {"x": 1.0}}, "'x' is already an input"),
    ({"constants": {"k": {"a": 1}}}, "a constant is a number, a bool, a string"),
    ({"surrogate": {"y": "grad_output"}}, "'y' is not an input"),
    ({"surrogate": {"x": "sum(grad_output)"}}, "has shape []; input 'x' has shape [2]"),
    ({"surrogate": {"x": "grad_output"}, "order": 2}, "reverse mode, first order"),
    ({"params": {"weight": "x"}}, "needs impl: FILE.py:NAME"),
])
def test_bad_calling_keys_are_one_line_errors_at_their_key(keys: dict, message: str) -> None:
    with pytest.raises(CaseError) as caught:
        check("x * 2", {"x": [1.0, 2.0]}, **keys)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_expect_value_with_named_outputs_is_refused_at_its_key() -> None:
    with pytest.raises(CaseError, match=r"expect\.value is for a single output"):
        check({"a": "x * 2", "b": "x + 1"}, {"x": [1.0, 2.0]}, expect={"value": "x"})


def test_a_module_factory_that_fails_is_an_error_naming_the_users_file() -> None:
    (result,) = check("x * w", {"x": [1.0, 2.0, 3.0], "w": [0.5, -1.0, 2.0]},
                      constants={"f": 3.0}, impl=impl("scale_module"), params={"weight": "w"})
    assert result.status == "error"
    assert ("building the module with the constants f raised TypeError: scale_module() got "
            "an unexpected keyword argument 'f'") in result.message


def test_constants_are_names_in_expressions_at_their_binary_value() -> None:
    # 0.1 as the impl gets it (the float), so the exact gradient is that float: x * k has
    # gradient k exactly, whichever way it is computed.
    (result,) = check("sum(x * k)", {"x": [1.0, 2.0]}, constants={"k": 0.1},
                      expect={"grad": {"x": [0.1, 0.1]}})
    assert result.status == "pass", result.message


def test_constants_are_usable_as_keyword_values() -> None:
    # layer_norm(x, eps=eps) with eps a constant: the keyword takes the constant's value, as
    # an impl with that eps agrees with the spec and one with torch's default does not.
    from torch.nn.functional import layer_norm, softmax

    def with_eps(eps: float) -> Any:
        return lambda x, **constants: (softmax(layer_norm(x, (3,), eps=eps), dim=1)
                                       * x).sum()

    inputs = {"x": [[0.5, -1.0, 2.0], [1.5, 0.25, -0.75]]}
    spec = "sum(softmax(layer_norm(x, eps=eps), dim=d) * x)"
    statuses = [check(spec, inputs, impl=with_eps(eps), constants={"eps": 0.5, "d": 1},
                      dtypes=["float64"])[0].status for eps in (0.5, 1e-5)]
    assert statuses == ["pass", "fail"]
    with pytest.raises(CaseError, match=r"softmax\(\): dim= needs an integer"):
        check("sum(softmax(x, dim=d))", inputs, constants={"d": 1.5})
