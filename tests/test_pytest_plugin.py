"""The pytest front door: which YAML is collected, item ids, failures at the YAML line, broken
files as one failing item, and torch and sympy left unimported until a case runs."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import CASES, DATA, REPO

R144 = (CASES / "r144.yaml").read_text()
NOT_A_CASE = "site_name: docs\nnav:\n  - index.md\n"


def collected(result: pytest.RunResult) -> list[str]:
    return sorted(line.strip() for line in result.outlines if "::" in line)


def test_case_paths_are_collected_with_case_dtype_device_ids(pytester: pytest.Pytester) -> None:
    pytester.mkdir("cases")
    (pytester.path / "cases" / "r144.yaml").write_text(R144)
    shutil.copy(CASES / "mean_square.yaml", pytester.path / "cases" / "mean_square.yaml")
    result = pytester.runpytest("--collect-only", "-q")
    assert collected(result) == ["cases/mean_square.yaml::mean_square[float32-cpu]",
                                 "cases/mean_square.yaml::mean_square[float64-cpu]",
                                 "cases/r144.yaml::r144[float64-cpu]"]


def test_yaml_that_is_not_a_case_is_never_collected(pytester: pytest.Pytester) -> None:
    pytester.mkdir("cases")
    (pytester.path / "cases" / "r144.yaml").write_text(R144)
    (pytester.path / "mkdocs.yml").write_text(NOT_A_CASE)
    (pytester.path / ".github" / "workflows").mkdir(parents=True)
    (pytester.path / ".github" / "workflows" / "ci.yml").write_text("on: push\njobs: {}\n")
    tests = pytester.mkdir("tests")
    (tests / "data").mkdir()
    (tests / "data" / "fixture.yaml").write_text("inputs: {x: 1}\noutput: x +\n")
    (tests / "conftest.py").write_text('collect_ignore = ["data"]\n')
    (tests / "test_ok.py").write_text("def test_ok():\n    assert True\n")
    expected_cases = ["cases/r144.yaml::r144[float64-cpu]"]
    assert collected(pytester.runpytest("--collect-only", "-q")) == sorted(
        [*expected_cases, "tests/test_ok.py::test_ok"])
    assert collected(pytester.runpytest("--collect-only", "-q", ".")) == sorted(
        [*expected_cases, "tests/test_ok.py::test_ok"])
    assert collected(pytester.runpytest("--collect-only", "-q", "tests")) == [
        "tests/test_ok.py::test_ok"]


def test_a_yaml_file_named_on_the_command_line_runs(pytester: pytest.Pytester) -> None:
    elsewhere = pytester.mkdir("elsewhere")
    (elsewhere / "mine.yaml").write_text(R144)
    result = pytester.runpytest("elsewhere/mine.yaml", "-q")
    result.assert_outcomes(passed=1)
    under_a_named_dir = pytester.runpytest("elsewhere", "-q")
    under_a_named_dir.assert_outcomes(passed=1)


def test_the_ini_option_sets_the_case_paths(pytester: pytest.Pytester) -> None:
    (pytester.mkdir("checks") / "r144.yaml").write_text(R144)
    (pytester.mkdir("cases") / "other.yaml").write_text(R144)
    pytester.makeini("[pytest]\ngradcheck_case_paths = checks\n")
    assert collected(pytester.runpytest("--collect-only", "-q")) == [
        "checks/r144.yaml::r144[float64-cpu]"]


def test_a_failure_points_at_the_yaml_file_and_line(pytester: pytest.Pytester) -> None:
    planted = pytester.mkdir("planted")
    shutil.copy(DATA / "planted" / "linear_sign.yaml", planted / "linear_sign.yaml")
    shutil.copy(DATA / "planted" / "linear_sign.py", planted / "linear_sign.py")
    result = pytester.runpytest("planted/linear_sign.yaml", "-k", "layer and float64")
    result.assert_outcomes(failed=1, deselected=2)
    text = result.stdout.str()
    assert "planted/linear_sign.yaml:4: custom_linear_layer[float64-cpu]: x: autograd is the " \
           "odd one out" in text
    assert "odd one out" in text and "fin. diff." in text  # the mismatch table


def test_an_invalid_file_is_one_failing_item_and_others_run(pytester: pytest.Pytester) -> None:
    cases = pytester.mkdir("cases")
    (cases / "a.yaml").write_text(R144)
    (cases / "b_broken.yaml").write_text("inputs:\n  x: [1.0]\noutptu: sum(x)\n")
    result = pytester.runpytest("-q")
    result.assert_outcomes(passed=1, failed=1)
    assert any(line.strip().endswith("cases/b_broken.yaml:3: outptu: unknown key 'outptu' "
                                     "(did you mean 'output'?) (and 1 more problem(s) in this "
                                     "case)") for line in result.outlines)


def test_a_cuda_case_is_skipped_without_a_gpu(pytester: pytest.Pytester) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    (pytester.mkdir("cases") / "gpu.yaml").write_text(R144 + "devices: [cpu, cuda]\n")
    result = pytester.runpytest("-q", "-rs")
    result.assert_outcomes(passed=1, skipped=1)
    assert any("cuda is not available" in line for line in result.outlines)


def test_collection_imports_neither_torch_nor_sympy(tmp_path: Path) -> None:
    script = (
        "import sys, pytest\n"
        f"pytest.main(['--collect-only', '-q', '-p', 'no:cacheprovider', {str(CASES)!r}])\n"
        "print('torch' in sys.modules, 'sympy' in sys.modules)\n")
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True,
                          text=True, check=True)
    assert done.stdout.strip().splitlines()[-1] == "False False"
    assert "r144[float64-cpu]" in done.stdout


def test_repository_root_runs_the_bundled_cases_as_items() -> None:
    done = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q",
                           "-p", "no:cacheprovider", "cases"], cwd=REPO, capture_output=True,
                          text=True)
    assert "cases/mnist_mlp_ce.yaml::mnist_mlp_ce[float64-cpu]" in done.stdout
    assert "cases/custom_linear.yaml::custom_linear_layer[float32-cpu]" in done.stdout
