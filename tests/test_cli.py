"""The command line: exit codes, the JSON contract, and a broken file never stopping the run."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from gradcheck_lab.cli import main
from tests.conftest import CASES, DATA, REPO

RESULT_KEYS = {"case", "file", "line", "dtype", "device", "status", "message", "mismatches",
               "counts", "oracles", "tolerance", "notes", "seed", "duration_s"}
MISMATCH_KEYS = {"input", "oracles", "odd_oracle", "index", "values", "abs_err", "rel_err"}


def run(args: list[str], tmp_path: Path) -> tuple[int, dict]:
    out = tmp_path / "out.json"
    code = main(["run", *args, "--json", str(out)])
    return code, json.loads(out.read_text(), parse_constant=_refuse)


def _refuse(constant: str) -> float:
    raise AssertionError(f"{constant} is not JSON")


@pytest.fixture(scope="module")
def bundled(tmp_path_factory: pytest.TempPathFactory) -> tuple[int, dict]:
    return run([str(CASES)], tmp_path_factory.mktemp("bundled"))


def test_bundled_cases_pass_and_follow_the_contract(bundled: tuple[int, dict]) -> None:
    code, report = bundled
    assert code == 0
    assert set(report) == {"results", "summary", "environment"}
    statuses = [r["status"] for r in report["results"]]
    assert report["summary"] == {s: statuses.count(s) for s in ("pass", "fail", "error", "skip")}
    assert {"torch", "sympy", "numpy", "python", "threads"} <= set(report["environment"])
    for result in report["results"]:
        assert set(result) >= RESULT_KEYS
        assert result["status"] == "pass"
        assert isinstance(result["line"], int) and result["dtype"] and result["device"] == "cpu"
        assert {"gradient_elements", "symbolic_vs_autograd", "finite_difference"} <= set(
            result["counts"])
        assert {"symbolic", "autograd", "finite_difference"} == set(result["oracles"])
        assert {"rtol", "atol"} <= set(result["tolerance"])


def test_results_name_their_case_file_and_first_key_line(bundled: tuple[int, dict]) -> None:
    results = {r["case"]: r for r in bundled[1]["results"]}
    r144 = results["r144"]
    assert r144["file"] == "cases/r144.yaml"
    first_key = next(n for n, line in enumerate((CASES / "r144.yaml").read_text().splitlines(), 1)
                     if line and not line.startswith("#"))
    assert r144["line"] == first_key
    assert results["mnist_mlp_ce"]["counts"]["symbolic_vs_autograd"] == 109_386
    assert results["r144"]["counts"] == {"gradient_elements": 3, "symbolic_vs_autograd": 3,
                                         "finite_difference": 3, "probes": 1,
                                         "finite_difference_evaluations": 13}


def test_a_planted_bug_exits_1_naming_autograd(tmp_path: Path) -> None:
    code, report = run([str(DATA / "planted" / "linear_sign.yaml")], tmp_path)
    assert code == 1
    mismatch = report["results"][0]["mismatches"][0]
    assert set(mismatch) >= MISMATCH_KEYS
    assert mismatch["odd_oracle"] == "autograd"
    assert mismatch["oracles"] == ["symbolic", "autograd"]


def test_an_invalid_file_exits_2_and_the_others_still_run(tmp_path: Path) -> None:
    cases = tmp_path / "cases"
    cases.mkdir()
    shutil.copy(CASES / "r144.yaml", cases / "a.yaml")
    (cases / "b_broken.yaml").write_text("inputs:\n  x: [1.0]\noutput: sum(x) +\n")
    shutil.copy(CASES / "mean_square.yaml", cases / "c.yaml")
    code, report = run([str(cases)], tmp_path)
    assert code == 2
    by_case = {r["case"]: r for r in report["results"]}
    assert by_case["r144"]["status"] == "pass"
    assert [r["status"] for r in report["results"] if r["case"] == "mean_square"] == [
        "pass", "pass"]
    broken = by_case["b_broken"]
    assert (broken["status"], broken["line"], broken["dtype"], broken["device"]) == (
        "error", 3, None, None)
    assert broken["message"].startswith(f"{cases / 'b_broken.yaml'}:3")
    assert ": output: not a valid expression" in broken["message"]
    assert "\n" not in broken["message"]


def test_fail_and_error_together_exit_2(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("inputs: {x: 1}\n")
    code, _ = run([str(DATA / "planted" / "linear_sign.yaml"), str(broken)], tmp_path)
    assert code == 2


@pytest.mark.parametrize("make_path", [
    lambda tmp: tmp / "missing.yaml",
    lambda tmp: (tmp / "empty_dir").mkdir() or tmp / "empty_dir",
])
def test_nothing_to_check_exits_2(tmp_path: Path, make_path) -> None:
    code, report = run([str(make_path(tmp_path))], tmp_path)
    assert code == 2
    assert report["results"][0]["status"] == "error"


@pytest.mark.parametrize("argv", [
    ["run"], ["run", "cases", "--no-such-option"], ["run", "cases", "--threads", "0"],
    ["run", "cases", "--case-timeout", "-1"], ["frobnicate"], [],
])
def test_a_wrong_command_line_exits_2(argv: list[str], capsys) -> None:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    assert "usage:" in capsys.readouterr().err


def test_jsonl_writes_one_line_per_result(tmp_path: Path) -> None:
    lines = tmp_path / "out.jsonl"
    assert main(["run", str(CASES / "mean_square.yaml"), "--jsonl", str(lines)]) == 0
    records = [json.loads(line) for line in lines.read_text().splitlines()]
    assert [(r["case"], r["dtype"]) for r in records] == [("mean_square", "float64"),
                                                          ("mean_square", "float32")]


def write_impl_case(tmp_path: Path, body: str, output: str = "sum(x * x)") -> Path:
    (tmp_path / "impl.py").write_text("import torch\n\n\n" + body)
    case = tmp_path / "case.yaml"
    case.write_text(f"name: c\ninputs:\n  x: [1.0, -2.0]\noutput: {output}\nimpl: impl.py:f\n")
    return case


@pytest.mark.parametrize("body, words", [
    ("def f(x):\n    raise KeyError('boom')\n", "raised KeyError: 'boom' (impl.py:5)"),
    ("def f(x):\n    return None\n", "returned NoneType, expected a tensor of shape []"),
    ("def f(x):\n    return x * x\n", "returned shape [2]; the spec's output has shape []"),
    ("def f(x):\n    return (x * x).sum().float()\n", "returned float32 for float64 inputs"),
    ("def f(x):\n    return [1.0]\n", "returned list"),
])
def test_an_unusable_impl_is_an_error_with_the_reason(tmp_path: Path, body: str,
                                                      words: str) -> None:
    code, report = run([str(write_impl_case(tmp_path, body)), "--case-timeout", "0"], tmp_path)
    assert code == 2
    (result,) = report["results"]
    assert result["status"] == "error"
    assert result["message"].startswith(f"{tmp_path / 'case.yaml'}:5: impl: ")
    assert words in result["message"]


def test_a_backward_returning_none_counts_as_zeros_and_says_so(tmp_path: Path) -> None:
    body = ("class Detached(torch.autograd.Function):\n"
            "    @staticmethod\n    def forward(ctx, x):\n        return (x * x).sum()\n"
            "    @staticmethod\n    def backward(ctx, grad):\n        return None\n\n\n"
            "def f(x):\n    return Detached.apply(x)\n")
    code, report = run([str(write_impl_case(tmp_path, body))], tmp_path)
    assert code == 1
    (result,) = report["results"]
    assert any("no gradient for x" in note for note in result["notes"])
    assert {m["odd_oracle"] for m in result["mismatches"]} == {"autograd"}
    assert {m["values"]["autograd"] for m in result["mismatches"]} == {0.0}


def test_a_wrong_hand_worked_answer_fails_with_expect_odd(tmp_path: Path) -> None:
    case = tmp_path / "case.yaml"
    case.write_text("inputs:\n  x: 3\noutput: x * x\nexpect:\n  grad: {x: 5}\n")
    code, report = run([str(case)], tmp_path)
    assert code == 1
    (mismatch,) = report["results"][0]["mismatches"]
    assert (mismatch["check"], mismatch["odd_oracle"], mismatch["index"]) == ("expect",
                                                                               "expect", [0])


def test_non_finite_values_are_written_as_valid_json(tmp_path: Path) -> None:
    case = tmp_path / "case.yaml"
    case.write_text("inputs:\n  x: [0.0, 1.0]\noutput: sum(1 / x)\n")
    code, report = run([str(case)], tmp_path)  # run() refuses NaN/Infinity constants
    assert code == 1
    values = report["results"][0]["mismatches"][0]["values"]
    assert values["symbolic"] == "-inf" and values["autograd"] == "-inf"
    assert not any(isinstance(v, float) and not math.isfinite(v) for v in values.values())


@pytest.mark.parametrize("entry", [["gradcheck-lab"], [sys.executable, "-m", "gradcheck_lab"]])
def test_console_script_and_module_entry_points(entry: list[str], tmp_path: Path) -> None:
    if entry[0] == "gradcheck-lab":
        entry = [str(Path(sys.executable).parent / "gradcheck-lab")]
    done = subprocess.run([*entry, "run", str(CASES / "r144.yaml")], cwd=REPO,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "PASS" in done.stdout and "r144[float64-cpu]" in done.stdout
