"""The oracle contract (gradcheck_lab.oracles.contract): a fourth oracle plugs in by a file of
its own and one entry in ORACLES, is handed what the others found, and shows up in a result's
oracles, counts and mismatch columns."""

from __future__ import annotations

import pytest

from gradcheck_lab.casefile import load_file
from gradcheck_lab.doors.render import failure_text
from gradcheck_lab.oracles import contract
from gradcheck_lab.pipeline import run_case
from tests import fourth_oracle
from tests.conftest import CASES

FOURTH = "tests.fourth_oracle"


@pytest.fixture
def with_fourth(monkeypatch: pytest.MonkeyPatch) -> fourth_oracle.Float64Autograd:
    monkeypatch.setattr(contract, "ORACLES", (*contract.ORACLES, FOURTH))
    return fourth_oracle.ORACLE


def test_the_oracles_are_loaded_in_order_and_each_is_of_the_contract() -> None:
    oracles = contract.load_oracles()
    assert [oracle.name for oracle in oracles] == ["symbolic", "autograd", "finite_difference"]
    assert all(isinstance(oracle, contract.Oracle) for oracle in oracles)
    assert [oracle.stage for oracle in oracles] == [contract.AT_POINT, contract.ON_DEVICE,
                                                    contract.ON_DEVICE]


def test_a_fourth_oracle_plugs_in_and_shows_in_the_result(with_fourth: object) -> None:
    (case,) = load_file(CASES / "r144.yaml")
    (result,) = run_case(case)
    assert result.status == "pass", result.message
    assert result.oracles["float64_autograd"] == "torch.autograd on the float64 reference"
    assert list(result.oracles)[:3] == ["symbolic", "autograd", "finite_difference"]
    assert result.counts["float64_autograd_vs_autograd"] == 3 * 2  # x, y, z × two cotangents


def test_a_wrong_fourth_oracle_is_named_odd_by_the_symbolic_oracle(
        with_fourth: fourth_oracle.Float64Autograd, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(with_fourth, "skew", 1.01)
    (case,) = load_file(CASES / "r144.yaml")
    (result,) = run_case(case)
    assert result.status == "fail"
    assert "float64_autograd and autograd disagree: x (1 element)" in result.message
    (wrong,) = {m.odd_oracle for m in result.mismatches}
    assert wrong == "float64_autograd"
    assert {m.input for m in result.mismatches} == {"x"}
    assert result.mismatches[0].values["float64_autograd"] == pytest.approx(72 * 1.01)
    header = next(line for line in failure_text(result).splitlines() if line.startswith("what"))
    assert "float64_autograd" in header  # a column of its own in the mismatch table
