"""The command line: exit codes, the JSON contract, and a broken case never stopping the run.

Most tests call ``gradcheck_lab.doors.cli.main`` in-process (fast); two run the real entry points
(the ``gradcheck-lab`` console script and ``python -m gradcheck_lab``) in a subprocess.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from gradcheck_lab.doors.cli import EXIT_ERROR, EXIT_FAIL, EXIT_PASS, exit_status, main
from gradcheck_lab.results import Result
from tests.conftest import CASES, DATA, REPO

STATUSES = ("pass", "fail", "error", "skip")
PLANTED_SIGN = DATA / "planted" / "linear_sign.yaml"
NUMBER = (int, float)


# --- helpers -------------------------------------------------------------------------------


def refuse_non_standard_json(constant: str) -> float:
    """``parse_constant`` hook: NaN, Infinity and -Infinity are not JSON."""
    raise AssertionError(f"{constant} written into the JSON report: not standard JSON")


def load_strict_json(text: str) -> Any:
    return json.loads(text, parse_constant=refuse_non_standard_json)


@dataclass
class CliRun:
    code: int
    report: dict[str, Any]
    stdout: str

    @property
    def results(self) -> list[dict[str, Any]]:
        return self.report["results"]

    def by_case(self) -> dict[str, dict[str, Any]]:
        return {result["case"]: result for result in self.results}


def run_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str], *args: str) -> CliRun:
    """``gradcheck-lab run ARGS --json FILE`` in-process; the report is parsed strictly."""
    report_path = tmp_path / "report.json"
    code = main(["run", *args, "--json", str(report_path)])
    stdout = capsys.readouterr().out
    return CliRun(code, load_strict_json(report_path.read_text(encoding="utf-8")), stdout)


def exit_code_of(argv: list[str]) -> int:
    """The exit status ``main`` gives, whether it returns it or argparse raises SystemExit."""
    try:
        return main(argv)
    except SystemExit as exited:
        return exited.code if isinstance(exited.code, int) else EXIT_ERROR


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def copy_case(source: Path, directory: Path, name: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    return Path(shutil.copy(source, directory / name))


def line_of(path: Path, startswith: str) -> int:
    """The 1-based number of the first line of ``path`` that starts with ``startswith``."""
    lines = path.read_text(encoding="utf-8").splitlines()
    return next(number for number, line in enumerate(lines, 1) if line.startswith(startswith))


def first_key_line(path: Path) -> int:
    """The line of a case file's first key: the first line that is not blank or a comment."""
    lines = path.read_text(encoding="utf-8").splitlines()
    return next(number for number, line in enumerate(lines, 1)
                if line.strip() and not line.lstrip().startswith("#"))


def is_json_number(value: Any) -> bool:
    """A finite number, or a non-finite one as the contract writes it ("nan", "inf")."""
    if isinstance(value, bool):
        return False
    return isinstance(value, NUMBER) or value in ("nan", "inf", "-inf")


RESULT_KEYS = {"case", "file", "line", "dtype", "device", "status", "message", "mismatches",
               "counts", "oracles", "tolerance", "notes", "diagnoses", "seed", "duration_s"}
MISMATCH_KEYS = {"input", "oracles", "odd_oracle", "index", "values", "abs_err", "rel_err",
                 "allowed", "check", "elements"}
OPTIONAL_MISMATCH_KEYS = {"direction", "probe"}
ENVIRONMENT_KEYS = {"torch", "sympy", "numpy", "python", "threads", "cuda", "platform"}


def assert_mismatch_follows_contract(mismatch: dict[str, Any]) -> None:
    assert MISMATCH_KEYS <= set(mismatch) <= MISMATCH_KEYS | OPTIONAL_MISMATCH_KEYS
    assert mismatch["input"] is None or isinstance(mismatch["input"], str)
    assert isinstance(mismatch["oracles"], list) and len(mismatch["oracles"]) == 2
    assert all(isinstance(oracle, str) for oracle in mismatch["oracles"])
    assert mismatch["odd_oracle"] is None or isinstance(mismatch["odd_oracle"], str)
    index = mismatch["index"]
    assert index is None or all(isinstance(i, int) for i in index)
    assert isinstance(mismatch["values"], dict) and mismatch["values"]
    assert all(is_json_number(value) for value in mismatch["values"].values())
    assert is_json_number(mismatch["abs_err"]) and is_json_number(mismatch["rel_err"])
    assert is_json_number(mismatch["allowed"])
    assert mismatch["check"] in ("gradient", "value", "expect", "device")
    assert isinstance(mismatch["elements"], int) and mismatch["elements"] >= 1


def assert_result_follows_contract(result: dict[str, Any]) -> None:
    assert set(result) == RESULT_KEYS  # "timings" only with --timings
    assert isinstance(result["case"], str) and result["case"]
    assert isinstance(result["file"], str) and result["file"]
    assert result["line"] is None or isinstance(result["line"], int)
    assert result["status"] in STATUSES
    assert isinstance(result["message"], str)
    assert "\n" not in result["message"]
    assert isinstance(result["mismatches"], list)
    for mismatch in result["mismatches"]:
        assert_mismatch_follows_contract(mismatch)
    assert isinstance(result["counts"], dict)
    assert all(isinstance(n, int) for n in result["counts"].values())
    assert isinstance(result["oracles"], dict)
    assert isinstance(result["tolerance"], dict)
    assert isinstance(result["notes"], list)
    assert all(isinstance(note, str) for note in result["notes"])
    assert isinstance(result["diagnoses"], list)
    assert all(isinstance(diagnosis, str) for diagnosis in result["diagnoses"])
    assert result["seed"] is None or isinstance(result["seed"], int)
    assert isinstance(result["duration_s"], NUMBER) and result["duration_s"] >= 0
    if result["dtype"] is None:  # a file or case that could not be loaded
        assert result["device"] is None and result["status"] == "error"
        return
    assert isinstance(result["dtype"], str) and isinstance(result["device"], str)
    if result["status"] in ("pass", "fail"):
        assert {"gradient_elements", "symbolic_vs_autograd", "finite_difference"} <= set(
            result["counts"])
        assert set(result["oracles"]) == {"symbolic", "autograd", "finite_difference"}
        assert all(isinstance(method, str) for method in result["oracles"].values())
        assert is_json_number(result["tolerance"]["rtol"])
        assert is_json_number(result["tolerance"]["atol"])


def assert_report_follows_contract(report: dict[str, Any]) -> None:
    assert set(report) == {"results", "summary", "environment"}
    for result in report["results"]:
        assert_result_follows_contract(result)
    statuses = [result["status"] for result in report["results"]]
    assert report["summary"] == {status: statuses.count(status) for status in STATUSES}
    environment = report["environment"]
    assert set(environment) == ENVIRONMENT_KEYS
    assert environment["cuda"] is None or isinstance(environment["cuda"], str)
    assert isinstance(environment["platform"], str)
    for package in ("torch", "sympy", "numpy", "python"):
        assert isinstance(environment[package], str) and environment[package]
    assert isinstance(environment["threads"], int) and environment["threads"] >= 1


WRONG_EXPECT_CASE = "name: wrong_expect\ninputs:\n  x: 3\noutput: x * x\nexpect:\n  grad: {x: 5}\n"
BROKEN_OUTPUT_CASE = "inputs:\n  x: [1.0]\noutput: sum(x) +\n"


# --- the bundled cases and the JSON contract -------------------------------------------------


@pytest.fixture(scope="module")
def bundled_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[int, dict[str, Any]]:
    """``gradcheck-lab run cases --json FILE`` from the repository root, once per module
    (the MNIST case takes seconds)."""
    report_path = tmp_path_factory.mktemp("bundled") / "report.json"
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(REPO)
        code = main(["run", "cases", "--json", str(report_path)])
    return code, load_strict_json(report_path.read_text(encoding="utf-8"))


@pytest.mark.slow
def test_bundled_cases_exit_0_and_the_report_follows_the_contract(
        bundled_run: tuple[int, dict[str, Any]]) -> None:
    code, report = bundled_run
    assert code == EXIT_PASS
    assert_report_follows_contract(report)
    assert report["summary"]["pass"] == len(report["results"]) > 0
    cases = {result["case"] for result in report["results"]}
    assert {"r144", "mean_square", "mse_half", "mnist_mlp_ce", "custom_linear_layer",
            "custom_linear_loss"} <= cases
    for result in report["results"]:
        assert result["mismatches"] == []
        assert result["device"] == "cpu"


@pytest.mark.slow
def test_bundled_results_name_their_file_and_the_line_of_the_first_key(
        bundled_run: tuple[int, dict[str, Any]]) -> None:
    results = {result["case"]: result for result in bundled_run[1]["results"]}
    r144 = results["r144"]
    assert r144["file"] == "cases/r144.yaml"
    assert r144["line"] == first_key_line(CASES / "r144.yaml")
    assert (r144["dtype"], r144["device"]) == ("float64", "cpu")
    assert r144["counts"]["gradient_elements"] == 3


@pytest.mark.slow
def test_the_mnist_case_compares_every_parameter_gradient(
        bundled_run: tuple[int, dict[str, Any]]) -> None:
    mnist = next(r for r in bundled_run[1]["results"] if r["case"] == "mnist_mlp_ce")
    assert mnist["status"] == "pass"
    assert mnist["counts"]["symbolic_vs_autograd"] == 109_386


# --- exit codes ------------------------------------------------------------------------------


@pytest.mark.parametrize(("statuses", "expected"), [
    ([], EXIT_ERROR),
    (["pass"], EXIT_PASS),
    (["pass", "skip"], EXIT_PASS),
    (["skip"], EXIT_PASS),
    (["pass", "fail"], EXIT_FAIL),
    (["fail", "error"], EXIT_ERROR),
    (["pass", "error"], EXIT_ERROR),
])
def test_exit_status_of_statuses(statuses: list[str], expected: int) -> None:
    results = [Result(case="c", file="c.yaml", line=1, dtype="float64", device="cpu",
                      status=status, message="") for status in statuses]
    assert exit_status(results) == expected


@pytest.mark.slow
def test_a_planted_bug_exits_1_and_names_autograd_as_odd(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = run_cli(tmp_path, capsys, str(PLANTED_SIGN), "--case-timeout", "0")
    assert run.code == EXIT_FAIL
    assert_report_follows_contract(run.report)
    layer = next(r for r in run.results
                 if (r["case"], r["dtype"]) == ("custom_linear_layer", "float64"))
    assert layer["status"] == "fail"
    assert layer["line"] == line_of(PLANTED_SIGN, "  - name: custom_linear_layer")
    assert layer["mismatches"], "a failing result must carry its mismatches"
    assert {m["odd_oracle"] for m in layer["mismatches"]} == {"autograd"}
    assert {m["input"] for m in layer["mismatches"]} == {"x"}  # only grad_x is negated
    assert "FAIL" in run.stdout and "odd one out" in run.stdout  # the mismatch table
    # The diagnosis and the backward to open, under the table and in the JSON alike.
    sign = "autograd = -1 × symbolic on every element of x: a sign error"
    assert f"diagnosis: {sign}" in run.stdout.splitlines()
    assert layer["diagnoses"][0] == sign
    assert layer["diagnoses"][1].startswith("the backward under test: Linear.backward (")


def test_verbose_passes_say_how_close_they_came(tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    write(tmp_path, "tanh.yaml",
          "name: tanh\ninputs:\n  x: {shape: [3, 4], init: randn}\noutput: sum(tanh(x) ** 2)\n")
    run = run_cli(tmp_path, capsys, str(tmp_path / "tanh.yaml"), "-v")
    assert run.code == EXIT_PASS
    (result,) = run.results
    margin = result["tolerance"]["margin"]
    assert 0 <= margin < 1 and result["tolerance"]["margin_at"]
    assert f"worst error / allowed = {margin:.2g}, at {result['tolerance']['margin_at']}" \
        in run.stdout


def test_an_invalid_file_exits_2_with_a_one_line_error_and_the_others_still_run(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # files are reported relative to the working directory
    cases = tmp_path / "cases"
    copy_case(CASES / "r144.yaml", cases, "a_r144.yaml")
    write(cases, "b_broken.yaml", BROKEN_OUTPUT_CASE)
    copy_case(CASES / "mean_square.yaml", cases, "c_mean_square.yaml")
    run = run_cli(tmp_path, capsys, "cases")
    assert run.code == EXIT_ERROR
    assert_report_follows_contract(run.report)
    assert [(r["case"], r["status"]) for r in run.results] == [
        ("r144", "pass"), ("b_broken", "error"), ("mean_square", "pass"),
        ("mean_square", "pass")]
    broken = run.by_case()["b_broken"]
    assert (broken["file"], broken["line"], broken["dtype"], broken["device"]) == (
        "cases/b_broken.yaml", 3, None, None)
    expected = "cases/b_broken.yaml:3: output: not a valid expression: invalid syntax"
    assert broken["message"] == expected
    error_lines = [line for line in run.stdout.splitlines() if line.startswith("ERROR")]
    assert len(error_lines) == 1 and error_lines[0].endswith(expected)  # one terminal line


@pytest.mark.parametrize("kind", ["missing path", "directory without case files"])
def test_nothing_to_check_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                  kind: str) -> None:
    if kind == "missing path":
        target = tmp_path / "missing.yaml"
    else:
        target = tmp_path / "empty"
        write(target, "notes.txt", "no cases here\n")
    run = run_cli(tmp_path, capsys, str(target))
    assert run.code == EXIT_ERROR
    (result,) = run.results
    assert (result["status"], result["dtype"], result["device"]) == ("error", None, None)
    assert result["message"].startswith(f"{target}: path: ")


def test_a_missing_path_beside_a_valid_file_still_exits_2(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = run_cli(tmp_path, capsys, str(tmp_path / "typo.yaml"), str(CASES / "r144.yaml"))
    assert run.code == EXIT_ERROR
    assert [r["status"] for r in run.results] == ["error", "pass"]


@pytest.mark.parametrize("argv", [
    pytest.param(["run"], id="no paths"),
    pytest.param(["run", "cases", "--no-such-option"], id="unknown option"),
    pytest.param(["run", "cases", "--threads", "0"], id="threads 0"),
    pytest.param(["run", "cases", "--threads", "two"], id="threads not a number"),
    pytest.param(["run", "cases", "--case-timeout", "-1"], id="negative timeout"),
    pytest.param(["frobnicate"], id="unknown command"),
    pytest.param([], id="no command"),
])
def test_a_wrong_command_line_exits_2(argv: list[str],
                                      capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == EXIT_ERROR
    assert "usage: gradcheck-lab" in capsys.readouterr().err


@pytest.mark.parametrize("option", ["--json", "--jsonl"])
def test_a_report_file_in_a_missing_directory_exits_2(
        tmp_path: Path, option: str, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "no_such_directory" / "report.out"
    assert exit_code_of(["run", str(CASES / "r144.yaml"), option, str(target)]) == EXIT_ERROR
    error_lines = capsys.readouterr().err.strip().splitlines()
    assert len(error_lines) == 1
    assert option in error_lines[0] and "no such" in error_lines[0].lower()


def test_a_failure_and_an_error_together_exit_2(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write(tmp_path, "cases/a_wrong_expect.yaml", WRONG_EXPECT_CASE)
    write(tmp_path, "cases/b_broken.yaml", BROKEN_OUTPUT_CASE)
    run = run_cli(tmp_path, capsys, str(tmp_path / "cases"))
    assert run.code == EXIT_ERROR
    assert run.report["summary"] == {"pass": 0, "fail": 1, "error": 1, "skip": 0}


def test_a_cuda_device_without_a_gpu_is_skipped_and_exits_0(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present: cuda is checked, not skipped")
    case = write(tmp_path, "gpu.yaml", "inputs: {x: 1.5}\noutput: x * x\ndevices: [cpu, cuda]\n")
    run = run_cli(tmp_path, capsys, str(case))
    assert run.code == EXIT_PASS
    assert [(r["device"], r["status"]) for r in run.results] == [("cpu", "pass"),
                                                                 ("cuda", "skip")]
    assert "cuda is not available" in run.results[1]["message"]


# --- JSON lines and non-finite numbers --------------------------------------------------------


def test_a_report_in_a_directory_where_no_file_can_be_made_is_refused_before_anything_runs(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    # /proc as root: os.access says writable, yet no file can be made there; the run would
    # check every case and only then fail to write its report.
    import tempfile

    from gradcheck_lab.doors import cli

    def refused(*args: Any, **kwargs: Any) -> Any:
        raise FileNotFoundError(2, "No such file or directory")

    ran: list[Any] = []
    monkeypatch.setattr(tempfile, "TemporaryFile", refused)
    monkeypatch.setattr(cli, "_checked", lambda *args: ran.append(args))
    target = CASES.parent / "nowhere.json"
    assert main(["run", str(CASES / "r144.yaml"), "--json", str(target)]) == EXIT_ERROR
    assert capsys.readouterr().err.strip() == (
        f"gradcheck-lab: --json {target}: cannot write in {CASES.parent}: No such file or "
        "directory")
    assert not ran and not target.exists()


@pytest.mark.parametrize("flag", ["--json", "--jsonl"])
@pytest.mark.parametrize("selected", ["", "::mean_square"])
def test_a_report_pointed_at_an_input_file_is_refused_before_anything_runs(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], flag: str, selected: str) -> None:
    case = copy_case(CASES / "mean_square.yaml", tmp_path, "in.yaml")
    before = case.read_bytes()
    assert main(["run", f"{case}{selected}", flag, str(case)]) == EXIT_ERROR
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"gradcheck-lab: {flag} {case}: is the input file {case}{selected}: the "
                   "report would replace it"]
    assert case.read_bytes() == before


def test_jsonl_writes_one_parseable_line_per_result(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cases = tmp_path / "cases"
    copy_case(CASES / "mean_square.yaml", cases, "a_mean_square.yaml")
    write(cases, "b_broken.yaml", BROKEN_OUTPUT_CASE)
    write(cases, "c_wrong_expect.yaml", WRONG_EXPECT_CASE)
    lines_path = tmp_path / "results.jsonl"
    run = run_cli(tmp_path, capsys, str(cases), "--jsonl", str(lines_path))
    lines = lines_path.read_text(encoding="utf-8").splitlines()
    records = [load_strict_json(line) for line in lines]
    assert len(records) == len(run.results) == 4
    assert [(r["case"], r["dtype"], r["status"]) for r in records] == [
        ("mean_square", "float64", "pass"), ("mean_square", "float32", "pass"),
        ("b_broken", None, "error"), ("wrong_expect", "float64", "fail")]
    for record, result in zip(records, run.results, strict=True):
        assert_result_follows_contract(record)
        assert record["message"] == result["message"]


def test_nan_in_an_expectation_is_reported_and_the_json_stays_standard(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cases = tmp_path / "cases"
    write(cases, "a_nan_literal.yaml", "inputs:\n  x: 1.0\noutput: x * x\nexpect:\n"
                                       "  grad: {x: .nan}\n")
    write(cases, "b_nan_expression.yaml", "inputs:\n  x: 1.0\noutput: x * x\nexpect:\n"
                                          "  grad: {x: \"log(x - 2)\"}\n")
    lines_path = tmp_path / "results.jsonl"
    run = run_cli(tmp_path, capsys, str(cases), "--jsonl", str(lines_path))
    for line in lines_path.read_text(encoding="utf-8").splitlines():
        load_strict_json(line)
    assert run.code == EXIT_FAIL
    assert_report_follows_contract(run.report)
    literal, expression = run.results
    # nan is an answer an expectation may give (outside a domain); here it is wrong.
    assert literal["status"] == "fail"
    assert literal["mismatches"][0]["values"]["expect"] == "nan"
    assert expression["status"] == "fail"
    (mismatch,) = expression["mismatches"]
    assert (mismatch["odd_oracle"], mismatch["check"]) == ("expect", "expect")
    assert mismatch["values"] == {"expect": "nan", "symbolic": 2.0, "autograd": 2.0}
    assert mismatch["abs_err"] == "nan"


@pytest.mark.slow
def test_infinite_gradients_are_written_as_strings(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # At the pole of 1/x the exact gradient is -inf; a backward that clamps it to a finite
    # number disagrees in kind, and the JSON holds the infinity as a string.
    write(tmp_path, "clamped.py", "import torch\n\n\nclass Reciprocal(torch.autograd.Function):\n"
          "    @staticmethod\n    def forward(ctx, x):\n        ctx.save_for_backward(x)\n"
          "        return 1 / x\n\n    @staticmethod\n    def backward(ctx, g):\n"
          "        (x,) = ctx.saved_tensors\n"
          "        return g * torch.clamp(-1 / x ** 2, min=-1e6)\n\n\n"
          "def f(x):\n    return Reciprocal.apply(x).sum()\n")
    case = write(tmp_path, "pole.yaml", "inputs:\n  x: [0.0, 1.0]\noutput: sum(1 / x)\n"
                                        "impl: clamped.py:f\n")
    run = run_cli(tmp_path, capsys, str(case))
    assert run.code == EXIT_FAIL
    values = run.results[0]["mismatches"][0]["values"]
    assert values["symbolic"] == "-inf" and values["autograd"] == -1e6


# --- impls: errors, wrong answers, missing gradients -------------------------------------------


def write_impl_case(directory: Path, impl_body: str, output: str = "sum(x * x)") -> Path:
    """``case.yaml`` (impl on line 5) checking ``impl.py:f`` against ``output``."""
    write(directory, "impl.py", "import torch\n\n\n" + impl_body)
    return write(directory, "case.yaml",
                 f"name: c\ninputs:\n  x: [1.0, -2.0]\noutput: {output}\nimpl: impl.py:f\n")


@pytest.mark.slow
def test_an_impl_that_raises_is_an_error_naming_the_exception_and_the_run_goes_on(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cases = tmp_path / "cases"
    write(cases, "impl.py", "import torch\n\n\ndef f(x):\n    y = x * 2\n"
                            "    raise KeyError('boom')\n")
    write(cases, "a_raises.yaml", "name: raises\ninputs:\n  x: [1.0, 2.0]\n"
                                  "output: sum(x)\nimpl: impl.py:f\n")
    copy_case(CASES / "r144.yaml", cases, "b_r144.yaml")
    run = run_cli(tmp_path, capsys, str(cases))  # the default: impls run in a worker process
    assert run.code == EXIT_ERROR
    assert [(r["case"], r["status"]) for r in run.results] == [("raises", "error"),
                                                               ("r144", "pass")]
    assert run.results[0]["message"] == (
        f"{cases / 'a_raises.yaml'}:5: impl: impl impl.py:f raised KeyError: 'boom' (impl.py:6)")


@pytest.mark.parametrize(("impl_body", "reason"), [
    pytest.param("def f(x):\n    return None\n",
                 "impl impl.py:f returned NoneType, expected a tensor of shape []", id="None"),
    pytest.param("def f(x):\n    return x * x\n",
                 "impl impl.py:f returned shape [2]; the spec's output has shape []",
                 id="wrong shape"),
    pytest.param("def f(x):\n    return (x * x).sum().long()\n",
                 "impl impl.py:f returned int64 for float64 inputs", id="wrong dtype"),
    pytest.param("def f(x):\n    return [1.0]\n",
                 "impl impl.py:f returned list, expected a tensor of shape []", id="a list"),
])
def test_an_unusable_impl_result_is_an_error_with_the_reason(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], impl_body: str,
        reason: str) -> None:
    case = write_impl_case(tmp_path, impl_body)
    run = run_cli(tmp_path, capsys, str(case), "--case-timeout", "0")
    assert run.code == EXIT_ERROR
    (result,) = run.results
    assert (result["status"], result["dtype"]) == ("error", "float64")
    assert result["message"] == f"{case}:5: impl: {reason}"


def test_a_wrong_hand_worked_expectation_fails_with_expect_odd(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = run_cli(tmp_path, capsys, str(write(tmp_path, "case.yaml", WRONG_EXPECT_CASE)))
    assert run.code == EXIT_FAIL
    (result,) = run.results
    assert result["status"] == "fail"
    (mismatch,) = result["mismatches"]
    assert (mismatch["check"], mismatch["input"], mismatch["odd_oracle"]) == (
        "expect", "x", "expect")
    assert mismatch["index"] == [0]  # a scalar input is indexed as one element
    assert mismatch["values"]["expect"] == 5.0
    assert mismatch["values"]["symbolic"] == mismatch["values"]["autograd"] == 6.0


OFF_BY_ONE_IN_Z_IMPL = """\
import torch


class OffByOneInZ(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, y, z):
        ctx.save_for_backward(x, y, z)
        return ((x + y) * z) ** 2

    @staticmethod
    def backward(ctx, grad):
        x, y, z = ctx.saved_tensors
        dq = 2 * (x + y) * z
        return grad * dq * z, grad * dq * z, grad * (dq * (x + y) - 1)


def r(x, y, z):
    return OffByOneInZ.apply(x, y, z)
"""


def test_a_scalar_gradient_mismatch_has_index_0_as_in_the_readme(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The README's JSON example: r144 with an impl whose backward is off by one in z."""
    write(tmp_path, "r144_impl.py", OFF_BY_ONE_IN_Z_IMPL)
    case = write(tmp_path, "r144.yaml",
                 (CASES / "r144.yaml").read_text(encoding="utf-8") + "impl: r144_impl.py:r\n")
    run = run_cli(tmp_path, capsys, str(case), "--case-timeout", "0")
    assert run.code == EXIT_FAIL
    assert_report_follows_contract(run.report)
    (result,) = run.results
    assert result["message"].startswith("autograd is the odd one out: z (1 element); x, y agree")
    gradient = next(m for m in result["mismatches"] if m["check"] == "gradient")
    assert (gradient["input"], gradient["odd_oracle"], gradient["index"]) == ("z", "autograd",
                                                                              [0])
    assert gradient["oracles"] == ["symbolic", "autograd"]
    assert (gradient["values"]["symbolic"], gradient["values"]["autograd"]) == (96.0, 95.0)
    assert gradient["values"]["finite_difference"] == pytest.approx(96.0, abs=1e-6)
    assert (gradient["abs_err"], gradient["elements"]) == (1.0, 1)
    assert result["counts"]["gradient_elements"] == 3
    assert result["oracles"]["autograd"] == "impl r144_impl.py:r, torch.autograd.grad"


def test_a_backward_returning_none_counts_as_zeros_and_the_note_says_so(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    detached = ("class Detached(torch.autograd.Function):\n"
                "    @staticmethod\n"
                "    def forward(ctx, x):\n"
                "        return (x * x).sum()\n\n"
                "    @staticmethod\n"
                "    def backward(ctx, grad):\n"
                "        return None\n\n\n"
                "def f(x):\n"
                "    return Detached.apply(x)\n")
    run = run_cli(tmp_path, capsys, str(write_impl_case(tmp_path, detached)),
                  "--case-timeout", "0")
    assert run.code == EXIT_FAIL
    (result,) = run.results
    assert result["notes"][0] == ("autograd: no gradient for x (backward returned None); "
                                  "counted as zeros")
    assert {m["odd_oracle"] for m in result["mismatches"]} == {"autograd"}
    assert {m["values"]["autograd"] for m in result["mismatches"]} == {0.0}


# --- the real entry points ------------------------------------------------------------------


@pytest.mark.slow
def test_the_console_script_runs_and_reports_its_thread_setting(tmp_path: Path) -> None:
    script = Path(sysconfig.get_path("scripts")) / "gradcheck-lab"
    assert script.exists(), "the package is not installed: no gradcheck-lab console script"
    report_path = tmp_path / "report.json"
    done = subprocess.run([str(script), "run", "cases/r144.yaml", "--threads", "1",
                           "--json", str(report_path)],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == EXIT_PASS, done.stdout + done.stderr
    assert "PASS" in done.stdout and "r144[float64-cpu]" in done.stdout
    report = load_strict_json(report_path.read_text(encoding="utf-8"))
    assert report["environment"]["threads"] == 1
    assert report["summary"] == {"pass": 1, "fail": 0, "error": 0, "skip": 0}


@pytest.mark.slow
def test_python_dash_m_passes_the_exit_status_through(tmp_path: Path) -> None:
    case = write(tmp_path, "wrong.yaml", WRONG_EXPECT_CASE)
    done = subprocess.run([sys.executable, "-m", "gradcheck_lab", "run", str(case)],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == EXIT_FAIL, done.stdout + done.stderr
    assert "FAIL  wrong_expect[float64-cpu]" in done.stdout


def test_run_file_name_checks_that_one_case(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    two = write(tmp_path, "two.yaml", "cases:\n  - name: first\n    inputs: {x: 2}\n"
                                      "    output: x * x\n  - name: second\n"
                                      "    inputs: {x: 3}\n    output: sin(x)\n")
    chosen = run_cli(tmp_path, capsys, f"{two}::second")
    assert chosen.code == EXIT_PASS
    assert [r["case"] for r in chosen.results] == ["second"]
    missing = run_cli(tmp_path, capsys, f"{two}::third")
    assert missing.code == EXIT_ERROR
    (error,) = missing.results
    assert "no case named 'third'" in error["message"] and "(cases: first, second)" in \
        error["message"]


def _three_cases(folder: Path) -> Path:
    folder.mkdir(exist_ok=True)
    (folder / "alpha.yaml").write_text("inputs: {x: 1.5}\noutput: x * x\n")
    (folder / "beta.yaml").write_text("inputs: {x: 0.5}\noutput: sin(x)\n")
    (folder / "broken.yaml").write_text("inputs: {x: 0.5}\noutput: x *\n")
    return folder


def test_run_k_selects_cases_by_pytest_keyword_expressions(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = _three_cases(tmp_path / "cases")
    report = tmp_path / "out.json"
    assert main(["run", str(folder), "-k", "alpha or (beta and not gamma)", "--json",
                 str(report)]) == EXIT_ERROR  # broken.yaml is always said
    cases = sorted(r["case"] for r in json.loads(report.read_text())["results"])
    assert cases == ["alpha", "beta", "broken"]
    assert main(["run", str(folder / "alpha.yaml"), "-k", "beta"]) == EXIT_ERROR
    assert "no case matches -k 'beta'" in capsys.readouterr().err
    assert main(["run", str(folder), "-k", "and or"]) == EXIT_ERROR
    assert "-k 'and or':" in capsys.readouterr().err


def test_run_q_shows_only_what_did_not_pass_and_x_stops_at_the_first(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = _three_cases(tmp_path / "cases")
    main(["run", str(folder), "-q"])
    out = capsys.readouterr().out
    assert "PASS" not in out and "ERROR" in out and "summary" not in out
    assert "2 passed, 0 failed, 1 errors" in out
    report = tmp_path / "first.json"
    main(["run", str(folder / "broken.yaml"), str(folder / "alpha.yaml"), "-x", "--json",
          str(report)])
    assert [r["case"] for r in json.loads(report.read_text())["results"]] == ["broken"]


def test_an_unknown_argument_is_answered_with_the_subcommands_usage(
        capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stop:
        main(["run", "cases", "-Q"])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: gradcheck-lab run ") and "unrecognized arguments: -Q" in err


def test_a_planted_failure_fits_twenty_lines_of_a_hundred_columns(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The first screen of a failure, without -v: the odd oracle and its inputs, the inputs
    that agree, the worst elements, where to look next; 20 lines of 100 columns at most."""
    run = run_cli(tmp_path, capsys, f"{PLANTED_SIGN}::custom_linear_layer")
    assert run.code == EXIT_FAIL
    lines = run.stdout.splitlines()
    start = next(i for i, line in enumerate(lines)
                 if line.endswith(": custom_linear_layer[float64-cpu]:"))
    report = lines[start:lines.index("", start)]
    assert len(report) <= 20 and max(map(len, report)) <= 100, "\n".join(report)
    text = "\n".join(report)
    assert "autograd is the odd one out: x (20 elements); W, b agree" in text
    assert report[2].split()[:3] == ["what", "where", "odd"]
    assert report[3].split()[:2] == ["x", "(20)"]  # the input named once, its worst elements
    assert "next: look at Linear.backward (" in text and "dtype float64, device" not in text


@pytest.mark.parametrize("command", ["explain", "graph"])
def test_explain_and_graph_run_under_the_default_case_budget(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
        command: str) -> None:
    # A sweep that never ends (a case whose ops run for minutes, as a 100,000-element cumprod's
    # VJP did) is stopped by run's default budget, here shortened, in one line.
    from gradcheck_lab.doors import cli
    from gradcheck_lab.inspect import explain, graph

    def forever(*args: Any, **kwargs: Any) -> str:
        while True:
            pass

    monkeypatch.setattr(cli, "DEFAULT_CASE_TIMEOUT", 0.2)
    monkeypatch.setattr(explain, "explain", forever)
    monkeypatch.setattr(graph, "build_graph", forever)
    case = str(CASES / "r144.yaml")
    extra = ["-o", str(tmp_path / "g.svg")] if command == "graph" else []
    assert main([command, case, *extra]) == EXIT_ERROR
    assert capsys.readouterr().err.strip().splitlines() == [
        f"gradcheck-lab {command}: {case}: ran past the time budget of 0.2 s (run's default "
        "--case-timeout): `gradcheck-lab run` checks it under a budget you set"]
