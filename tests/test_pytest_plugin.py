"""The pytest front door: which YAML is collected, item ids, failures at the YAML file and line,
a broken file as one failing item, and torch and sympy left unimported by collection.

The plugin is active in ``pytester`` runs through its ``pytest11`` entry point (the package is
installed), so no ``-p gradcheck_lab.pytest_plugin`` is needed. ``runpytest`` runs in this
process and afterwards drops the modules that run imported; numpy's C extension cannot be
imported twice in one process, so torch, numpy and sympy are imported here, up front.
"""

from __future__ import annotations

import ast
import multiprocessing
import shutil
import subprocess
import sys
import time
from importlib.metadata import entry_points
from pathlib import Path

import numpy  # noqa: F401
import pytest
import sympy  # noqa: F401
import torch

from tests.conftest import CASES, DATA

R144_TEXT = (CASES / "r144.yaml").read_text(encoding="utf-8")
WRONG_EXPECT_CASE = "name: wrong_expect\ninputs:\n  x: 3\noutput: x * x\nexpect:\n  grad: {x: 5}\n"
MKDOCS_TEXT = "site_name: docs\nnav:\n  - index.md\n"
CI_TEXT = "on: push\njobs:\n  test:\n    runs-on: ubuntu-latest\n"
# Case-like, and broken: collecting it by mistake would add a failing item.
FIXTURE_CASE_TEXT = "inputs: {x: 1}\noutput: x +\n"


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def copy_into(directory: Path, *sources: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for source in sources:
        shutil.copy(source, directory / source.name)


def collected_ids(result: pytest.RunResult) -> list[str]:
    """The node ids printed by ``--collect-only -q``, sorted."""
    return sorted(line.strip() for line in result.outlines if "::" in line)


def collect(pytester: pytest.Pytester, *args: str) -> list[str]:
    return collected_ids(pytester.runpytest("--collect-only", "-q", *args))


def line_of(path: Path, startswith: str) -> int:
    lines = path.read_text(encoding="utf-8").splitlines()
    return next(number for number, line in enumerate(lines, 1) if line.startswith(startswith))


def test_the_plugin_is_active_in_pytester_runs_through_its_entry_point(
        pytester: pytest.Pytester) -> None:
    plugins = {entry.value for entry in entry_points(group="pytest11")}
    assert "gradcheck_lab.pytest_plugin" in plugins
    (pytester.path / "cases").mkdir()
    result = pytester.runpytest("--collect-only")  # no -p gradcheck_lab.pytest_plugin
    result.stdout.fnmatch_lines(["gradcheck-lab *: case paths */cases"])


def test_case_files_under_cases_are_items_named_case_dtype_device(
        pytester: pytest.Pytester) -> None:
    write(pytester.path, "cases/r144.yaml", R144_TEXT)
    copy_into(pytester.path / "cases" / "nested", CASES / "mean_square.yaml")
    assert collect(pytester) == [
        "cases/nested/mean_square.yaml::mean_square[float32-cpu]",
        "cases/nested/mean_square.yaml::mean_square[float64-cpu]",
        "cases/r144.yaml::r144[float64-cpu]",
    ]


def test_the_items_run_and_pass(pytester: pytest.Pytester) -> None:
    write(pytester.path, "cases/r144.yaml", R144_TEXT)
    copy_into(pytester.path / "cases", CASES / "mean_square.yaml")
    pytester.runpytest("-q").assert_outcomes(passed=3)


def test_a_yaml_file_named_on_the_command_line_runs_outside_the_case_paths(
        pytester: pytest.Pytester) -> None:
    write(pytester.path, "elsewhere/mine.yaml", R144_TEXT)
    write(pytester.path, "elsewhere/other.yaml", WRONG_EXPECT_CASE)
    assert collect(pytester) == []  # not under the case paths: left alone by default
    result = pytester.runpytest("elsewhere/mine.yaml", "-v")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*elsewhere/mine.yaml::r144?float64-cpu? PASSED*"])


@pytest.mark.slow
def test_a_failure_reports_the_yaml_file_line_and_the_mismatch_table(
        pytester: pytest.Pytester) -> None:
    planted = pytester.path / "planted"
    copy_into(planted, DATA / "planted" / "linear_sign.yaml", DATA / "planted" / "linear_sign.py")
    line = line_of(planted / "linear_sign.yaml", "  - name: custom_linear_layer")
    result = pytester.runpytest("planted/linear_sign.yaml", "-k", "layer and float64")
    result.assert_outcomes(failed=1, deselected=2)
    result.stdout.fnmatch_lines([
        # The heading spells the item as its node id does: no space before the brackets.
        "_*_ custom_linear_layer[[]float64-cpu[]] _*_",
        # Past 100 columns, the verdict goes under where and what.
        f"planted/linear_sign.yaml:{line}: custom_linear_layer[[]float64-cpu[]]:",
        "autograd is the odd one out: x (20 elements); W, b agree",
        "what*where*odd one out*symbolic*autograd*fin. diff.*abs err*rel err*allowed",
        "x (*)*autograd*",
        "*autograd*",  # the next worst element of x: the input is named once
        "@output[[]i[]]: the gradient of output element i alone*",
        "diagnosis: autograd = -1 × symbolic on every element of x: a sign error",
        "next: look at Linear.backward (*linear_sign.py:*)",
        "-v adds the notes and the settings",
    ])
    assert "dtype float64, device cpu, seed" not in result.stdout.str()
    verbose = pytester.runpytest("planted/linear_sign.yaml", "-k", "layer and float64", "-v")
    verbose.stdout.fnmatch_lines(["note: *", "dtype float64, device cpu, seed *"])


def test_a_wrong_expectation_fails_its_item(pytester: pytest.Pytester) -> None:
    write(pytester.path, "cases/wrong.yaml", WRONG_EXPECT_CASE)
    result = pytester.runpytest("-q")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["cases/wrong.yaml:1: wrong_expect[[]float64-cpu[]]:*",
                                 "expect x*expect*6*6*5*"])


def test_an_invalid_file_is_one_failing_item_with_its_one_line_message(
        pytester: pytest.Pytester) -> None:
    write(pytester.path, "cases/a_r144.yaml", R144_TEXT)
    write(pytester.path, "cases/b_broken.yaml", "inputs:\n  x: [1.0]\noutptu: sum(x)\n")
    write(pytester.path, "cases/c_wrong.yaml", WRONG_EXPECT_CASE)
    assert collect(pytester) == ["cases/a_r144.yaml::r144[float64-cpu]",
                                 "cases/b_broken.yaml::b_broken",
                                 "cases/c_wrong.yaml::wrong_expect[float64-cpu]"]
    result = pytester.runpytest("-q", "-k", "not wrong")
    result.assert_outcomes(passed=1, failed=1, deselected=1)
    # (output may be left out when an impl traces the spec, so the typo is the one problem)
    message = "cases/b_broken.yaml:3: outptu: unknown key 'outptu' (did you mean 'output'?)"
    failure = result.stdout.str().split("= FAILURES =")[1].split("short test summary")[0]
    body = [line for line in failure.splitlines()[1:] if line.strip() and "___" not in line]
    assert body[0] == message
    assert len([line for line in body if not line.startswith("=")]) == 1


def test_yaml_that_is_not_a_case_is_never_collected(pytester: pytest.Pytester) -> None:
    write(pytester.path, "cases/r144.yaml", R144_TEXT)
    write(pytester.path, "mkdocs.yml", MKDOCS_TEXT)
    write(pytester.path, ".github/workflows/ci.yml", CI_TEXT)
    write(pytester.path, "tests/data/fixture.yaml", FIXTURE_CASE_TEXT)
    write(pytester.path, "tests/conftest.py", 'collect_ignore = ["data"]\n')
    write(pytester.path, "tests/test_ok.py", "def test_ok():\n    assert True\n")
    everything = ["cases/r144.yaml::r144[float64-cpu]", "tests/test_ok.py::test_ok"]
    assert collect(pytester) == everything
    assert collect(pytester, ".") == everything
    assert collect(pytester, "tests") == ["tests/test_ok.py::test_ok"]
    pytester.runpytest("-q", ".").assert_outcomes(passed=2)


def test_the_ini_option_moves_the_case_paths(pytester: pytest.Pytester) -> None:
    write(pytester.path, "checks/r144.yaml", R144_TEXT)
    write(pytester.path, "cases/other.yaml", WRONG_EXPECT_CASE)
    assert collect(pytester) == ["cases/other.yaml::wrong_expect[float64-cpu]"]
    pytester.makeini("[pytest]\ngradcheck_case_paths =\n    checks\n")
    assert collect(pytester) == ["checks/r144.yaml::r144[float64-cpu]"]
    result = pytester.runpytest()  # not -q: the report header names the case paths
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["gradcheck-lab *: case paths */checks"])


def test_a_cuda_case_is_skipped_with_a_reason_without_a_gpu(pytester: pytest.Pytester) -> None:
    if torch.cuda.is_available():
        pytest.skip("a GPU is present: the cuda item runs")
    write(pytester.path, "cases/gpu.yaml", R144_TEXT + "devices: [cpu, cuda]\n")
    write(pytester.path, "cases/gpu_only.yaml",
          "name: gpu_only\ninputs: {x: 2.0}\noutput: x * x\ndevices: [cuda]\n")
    result = pytester.runpytest("-rs")
    result.assert_outcomes(passed=1, skipped=2)
    # Each skip at its case's file and line, not at the plugin's own.
    result.stdout.fnmatch_lines(["SKIPPED [[]1[]] cases/gpu.yaml:*: cuda is not available on "
                                 "this machine",
                                 "SKIPPED [[]1[]] cases/gpu_only.yaml:1: cuda is not available "
                                 "on this machine"], consecutive=False)
    assert "pytest_plugin.py" not in result.stdout.str()


def test_timing_items_are_made_for_the_cases_devices_and_this_machines(
        pytester: pytest.Pytester) -> None:
    write(pytester.path, "cases/cpu.yaml", R144_TEXT)
    write(pytester.path, "cases/gpu.yaml",
          "name: gpu\ninputs: {x: 2.0}\noutput: x * x\ndevices: [cpu, cuda]\n")
    ids = collect(pytester, "--benchmark", "cases")
    here = ["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"]
    assert ids == sorted(
        [f"cases/cpu.yaml::r144[float64-{device}-{which}]" for device in here
         for which in ("forward", "backward")]
        + [f"cases/gpu.yaml::gpu[float64-{device}-{which}]" for device in ("cpu", "cuda")
           for which in ("forward", "backward")])


COLLECT_ONLY_SCRIPT = """\
import sys

import pytest

import gradcheck_lab.pytest_plugin  # noqa: F401

code = pytest.main(["--collect-only", "-q", "-p", "no:cacheprovider", sys.argv[1]])
print("exit", int(code))
print("torch", "torch" in sys.modules)
print("sympy", "sympy" in sys.modules)
"""


@pytest.mark.slow
def test_collect_only_imports_neither_torch_nor_sympy(tmp_path: Path) -> None:
    cases = tmp_path / "cases"
    copy_into(cases, CASES / "r144.yaml", CASES / "mnist_mlp_ce.yaml",
              CASES / "custom_linear.yaml", CASES / "custom_linear.py")
    write(cases, "broken.yaml", "inputs:\n  x: [1.0]\noutput: sum(x) +\n")
    script = write(tmp_path, "collect.py", COLLECT_ONLY_SCRIPT)
    done = subprocess.run([sys.executable, str(script), "cases"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    lines = done.stdout.splitlines()
    assert lines[-3:] == ["exit 0", "torch False", "sympy False"], done.stdout + done.stderr
    for node in ("cases/r144.yaml::r144[float64-cpu]",
                 "cases/mnist_mlp_ce.yaml::mnist_mlp_ce[float64-cpu]",
                 "cases/custom_linear.yaml::custom_linear_layer[float32-cpu]",
                 "cases/broken.yaml::broken"):
        assert node in lines


def outcomes_by_id(result: pytest.RunResult) -> dict[str, str]:
    """{node id: PASSED/FAILED/SKIPPED/ERROR} from the ``-rA`` short summary."""
    found = {}
    for line in result.outlines:
        word, _, rest = line.partition(" ")
        if word in ("PASSED", "FAILED", "SKIPPED", "ERROR") and "::" in rest:
            found[rest.split(" - ")[0].strip()] = word
    return found


@pytest.mark.slow
def test_xdist_gives_the_same_items_and_outcomes_as_a_serial_run(
        pytester: pytest.Pytester) -> None:
    write(pytester.path, "cases/r144.yaml", R144_TEXT)
    copy_into(pytester.path / "cases", CASES / "mean_square.yaml")
    write(pytester.path, "cases/wrong.yaml", WRONG_EXPECT_CASE)
    write(pytester.path, "cases/broken.yaml", FIXTURE_CASE_TEXT)
    serial = outcomes_by_id(pytester.runpytest_subprocess("-rA", "-p", "no:cacheprovider"))
    parallel = outcomes_by_id(pytester.runpytest_subprocess("-rA", "-n", "2",
                                                            "-p", "no:cacheprovider"))
    assert len(serial) == 5  # r144, mean_square ×2 dtypes, wrong_expect, the broken file
    assert parallel == serial
    assert sorted(serial.values()) == ["FAILED", "FAILED", "PASSED", "PASSED", "PASSED"]


@pytest.mark.slow
def test_the_pytest_script_collects_the_suite_from_the_repository_root() -> None:
    """`pytest` (the script, which puts no directory on sys.path) as well as `python -m
    pytest`: the suite's modules import each other as `tests`."""
    script = Path(sys.executable).with_name("pytest")
    if not script.exists():
        pytest.skip("no pytest script beside this interpreter")
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run([str(script), "--collect-only", "-q", "-p", "no:cacheprovider",
                           "tests/test_readme.py", "tests/test_zoo.py"], cwd=root,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "error" not in done.stdout.lower()


@pytest.mark.slow
def test_a_foreign_project_keeps_its_yaml_and_its_benchmarks(
        pytester: pytest.Pytester) -> None:
    """A project that never configured gradcheck-lab: its cases/ holds HTTP fixtures, its
    benchmarks/ pytest-benchmark tests. Neither is touched; a real case file there still runs."""
    write(pytester.path, "cases/login.yaml",
          "request:\n  url: /login\n  method: POST\nexpect:\n  status: 200\n")
    write(pytester.path, "cases/suite.yaml",
          "cases:\n  - request: {url: /}\n    expect: {status: 200}\n")
    write(pytester.path, "cases/r144.yaml", R144_TEXT)
    write(pytester.path, "benchmarks/test_speed.py",
          "def test_speed(benchmark):\n    assert benchmark(sum, [1, 2]) == 3\n")
    write(pytester.path, "tests/test_ok.py", "def test_ok():\n    assert True\n")
    assert collect(pytester) == ["benchmarks/test_speed.py::test_speed",
                                 "cases/r144.yaml::r144[float64-cpu]",
                                 "tests/test_ok.py::test_ok"]
    pytester.runpytest("-q", "-p", "no:xdist").assert_outcomes(passed=3)


def test_a_configured_project_collects_every_yaml_under_its_case_paths(
        pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\ngradcheck_case_paths =\n    cases\n")
    write(pytester.path, "cases/login.yaml", "request:\n  url: /login\n")
    result = pytester.runpytest("-q")
    result.assert_outcomes(failed=1)  # in a gradcheck-lab project, a non-case there is an error
    assert "unknown key 'request'" in result.stdout.str()


def test_junit_xml_holds_each_result_as_json(pytester: pytest.Pytester) -> None:
    import json
    import xml.etree.ElementTree as ElementTree

    write(pytester.path, "cases/r144.yaml", R144_TEXT)
    pytester.runpytest("-q", "-p", "no:xdist", "--junitxml=report.xml").assert_outcomes(
        passed=1)
    tree = ElementTree.parse(pytester.path / "report.xml")
    (value,) = [p.get("value") for p in tree.iter("property")
                if p.get("name") == "gradcheck_result"]
    result = json.loads(value)
    assert result["case"] == "r144" and result["status"] == "pass"
    assert result["dtype"] == "float64" and result["device"] == "cpu"


@pytest.mark.slow
def test_a_traced_case_is_a_pytest_item_that_passes_or_fails_as_in_the_cli(
        pytester: pytest.Pytester) -> None:
    """The traced spec through the third front door: the same verdicts as run and check()."""
    (pytester.path / "cases").mkdir()
    shutil.copy(Path(__file__).parent / "data" / "traced" / "functions.py",
                pytester.path / "cases" / "functions.py")
    write(pytester.path, "cases/traced.yaml",
          "cases:\n  - name: right\n    inputs: {x: {shape: [3, 4], init: randn}}\n"
          "    impl: functions.py:square_rows\n  - name: wrong\n"
          "    inputs: {x: {shape: [3, 4], init: randn}}\n"
          "    impl: functions.py:square_rows_wrong\n")
    # In a subprocess: tracing imports torch modules that register operators, which an
    # in-process run would import a second time when pytester restores sys.modules.
    result = pytester.runpytest_subprocess("-q", "-p", "no:xdist")
    result.assert_outcomes(passed=1, failed=1)
    assert "autograd is the odd one out: x" in result.stdout.str()


def _planted_sign(pytester: pytest.Pytester) -> None:
    copy_into(pytester.path / "cases", DATA / "planted" / "linear_sign.yaml",
              DATA / "planted" / "linear_sign.py", CASES / "r144.yaml")


@pytest.mark.slow
def test_tb_line_gives_one_line_per_failure_and_tb_no_none(pytester: pytest.Pytester) -> None:
    _planted_sign(pytester)
    line = line_of(pytester.path / "cases" / "linear_sign.yaml", "  - name: custom_linear_layer")
    result = pytester.runpytest("-p", "no:cacheprovider", "--tb=line", "-k", "float64")
    result.assert_outcomes(failed=2, passed=1, deselected=1)
    failures = result.outlines[result.outlines.index(
        next(o for o in result.outlines if "FAILURES" in o)) + 1:]
    failures = failures[:next(i for i, o in enumerate(failures) if "short test summary" in o)]
    # Relative to where pytest started, as the rest of the report names files.
    assert failures == [
        f"cases/linear_sign.yaml:{at}: autograd is the odd one out: x (20 elements); W, b agree"
        for at in (line, line + 10)
    ], failures
    quiet = pytester.runpytest("-p", "no:cacheprovider", "--tb=no", "-k", "float64")
    assert not any("what" in o and "odd one out" in o for o in quiet.outlines)


@pytest.mark.slow
def test_the_short_summary_gives_the_message(pytester: pytest.Pytester) -> None:
    _planted_sign(pytester)
    result = pytester.runpytest("-p", "no:cacheprovider", "-ra", "-k", "layer and float64")
    result.stdout.fnmatch_lines(["FAILED cases/linear_sign.yaml::custom_linear_layer[[]"
                                 "float64-cpu[]] - autograd is*"])  # cut to the width


@pytest.mark.slow
def test_a_failure_shows_its_diagnosis_under_the_table(pytester: pytest.Pytester) -> None:
    _planted_sign(pytester)
    result = pytester.runpytest("-p", "no:cacheprovider", "-k", "layer and float64")
    result.stdout.fnmatch_lines([
        "x (20)*autograd*",
        "diagnosis: autograd = -1 × symbolic on every element of x: a sign error",
        "diagnosis: the backward under test: Linear.backward (*linear_sign.py:17)"])


def test_verbose_passes_say_how_close_they_came(pytester: pytest.Pytester) -> None:
    write(pytester.path / "cases", "tanh.yaml",
          "name: tanh\ninputs:\n  x: {shape: [3, 4], init: randn}\noutput: sum(tanh(x) ** 2)\n")
    result = pytester.runpytest("-p", "no:cacheprovider", "-v")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*tanh[[]float64-cpu[]] PASSED (worst error / allowed = *, "
                                 "at x[[]*[]])*"])


def test_markers_select_cases_by_what_they_check(pytester: pytest.Pytester) -> None:
    _planted_sign(pytester)
    write(pytester.path / "cases", "second.yaml",
          "name: second\ninputs:\n  x: [0.5, 1.0]\noutput: sum(exp(x))\norder: 2\n")
    everything = collect(pytester, "-m", "gradcheck")
    assert len(everything) == 5
    assert collect(pytester, "-m", "impl") == sorted(i for i in everything if "linear" in i)
    assert collect(pytester, "-m", "order2") == ["cases/second.yaml::second[float64-cpu]"]
    assert collect(pytester, "-m", "gradcheck and not impl and not order2") == [
        "cases/r144.yaml::r144[float64-cpu]"]
    strict = pytester.runpytest("--strict-markers", "-m", "order2", "-q")
    strict.assert_outcomes(passed=1, deselected=4)


@pytest.mark.slow
def test_last_failed_and_failed_first_rerun_exactly_the_failed_items(
        pytester: pytest.Pytester) -> None:
    """pytest 9 reads the node ids of its cache back as name + params ("case" and
    "float64-cpu"): the items' own ids must be parsed the same way, or --lf reruns nothing."""
    _planted_sign(pytester)
    pytester.runpytest("-q").assert_outcomes(failed=3, passed=1)
    again = pytester.runpytest("--lf")
    again.assert_outcomes(failed=3)
    again.stdout.fnmatch_lines(["*rerun previous 3 failures*"])
    first = pytester.runpytest("--ff", "-v")
    first.assert_outcomes(failed=3, passed=1)
    ran = [line.split()[0] for line in first.outlines if " PASSED" in line or " FAILED" in line]
    assert ran[-1] == "cases/r144.yaml::r144[float64-cpu]", ran  # the failures first
    by_id = pytester.runpytest("-q", "cases/r144.yaml::r144[float64-cpu]",
                               "--deselect", "cases/linear_sign.yaml")
    by_id.assert_outcomes(passed=1)


@pytest.mark.slow
def test_pytest_benchmark_flags_behave_as_pytest_benchmark_documents(
        pytester: pytest.Pytester) -> None:
    """--benchmark-only times the cases (it would otherwise skip every check and time
    nothing); --benchmark-skip skips the timings, with --benchmark too, and never crashes;
    --benchmark-disable runs each timing once."""
    write(pytester.path, "cases/r144.yaml", R144_TEXT)
    write(pytester.path, "tests/test_ok.py", "def test_ok():\n    assert True\n")
    only = pytester.runpytest("-p", "no:xdist", "-p", "no:cacheprovider", "--benchmark-only")
    # Forward and backward timed on cpu (and on cuda where this machine has one; a cpu case
    # gets no cuda items without); test_ok is skipped by pytest-benchmark, as it is without
    # gradcheck-lab.
    timed = 4 if torch.cuda.is_available() else 2
    only.assert_outcomes(passed=timed, skipped=1)
    assert only.ret == 0
    skipped = pytester.runpytest("-p", "no:xdist", "-p", "no:cacheprovider", "--benchmark",
                                 "--benchmark-skip")
    assert skipped.ret == 0, skipped.outlines[-20:]
    assert "INTERNALERROR" not in skipped.stdout.str()
    skipped.assert_outcomes(skipped=timed)
    plain = pytester.runpytest("-p", "no:xdist", "-p", "no:cacheprovider", "--benchmark-skip")
    plain.assert_outcomes(passed=2)  # the check and test_ok; no timing asked for
    disabled = pytester.runpytest("-p", "no:xdist", "-p", "no:cacheprovider", "--benchmark",
                                  "--benchmark-disable")
    disabled.assert_outcomes(passed=timed)


@pytest.mark.slow
def test_a_timing_that_hangs_is_stopped_by_the_case_budget(pytester: pytest.Pytester) -> None:
    write(pytester.path, "cases/sleepy.py",
          "import time\n\ndef sleepy(x):\n    time.sleep(600)\n    return x * x\n")
    write(pytester.path, "cases/sleepy.yaml",
          "inputs:\n  x: [1.0, 2.0]\noutput: x * x\nimpl: sleepy.py:sleepy\n"
          "devices: [cpu]\n")
    started = time.monotonic()
    result = pytester.runpytest("-p", "no:xdist", "-p", "no:cacheprovider", "--benchmark",
                                "--gradcheck-case-timeout", "2", "cases")
    assert time.monotonic() - started < 120  # ten minutes of sleep before
    assert result.parseoutcomes()["failed"] == 2  # forward and backward on cpu
    result.stdout.fnmatch_lines(["*impl: sleepy.py:sleepy ran past the case time budget of "
                                 "2 s*"])


HOSTILE_TIMING_IMPL = """\
import os
import signal
import time
from pathlib import Path

with Path(__file__).with_name("imported.log").open("a") as log:
    log.write(f"{os.getpid()}\\n")
signal.signal(signal.SIGALRM, signal.SIG_IGN)


def quit_now(x):
    os._exit(0)


def ignores_alarm(x):
    signal.signal(signal.SIGALRM, signal.SIG_IGN)
    time.sleep(600)
    return (x * x).sum()


def swallows(x):
    end = time.monotonic() + 600
    while time.monotonic() < end:
        try:
            time.sleep(0.2)
        except BaseException:
            pass
    return (x * x).sum()


def square_sum(x):
    return (x * x).sum()
"""
HOSTILE_TIMING_CASES = "".join(
    f"  - name: {name}\n    inputs: {{x: [1.0, 2.0]}}\n    output: sum(x * x)\n"
    f"    impl: timed.py:{function}\n    devices: [cpu]\n"
    for name, function in (("exits", "quit_now"), ("ignores_alarm", "ignores_alarm"),
                           ("swallows", "swallows"), ("fine", "square_sum")))


@pytest.mark.slow
def test_timings_of_an_impl_run_in_the_worker_under_the_budget(
        pytester: pytest.Pytester) -> None:
    """`pytest --benchmark` times a case with an impl file where its check runs, in the worker
    under the case budget: an impl that ends its interpreter, ignores SIGALRM or swallows
    every exception fails its own two items within about the budget, never runs in pytest's
    process, and the other items run, are reported and keep pytest-benchmark's table."""
    write(pytester.path, "cases/timed.py", HOSTILE_TIMING_IMPL)
    write(pytester.path, "cases/timed.yaml", "cases:\n" + HOSTILE_TIMING_CASES)
    write(pytester.path, "cases/r144.yaml", R144_TEXT)
    write(pytester.path, "conftest.py",
          "import os\nfrom pathlib import Path\n\n\ndef pytest_configure(config):\n"
          "    Path(__file__).with_name('pytest.pid').write_text(str(os.getpid()))\n")
    started = time.monotonic()
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "-p", "no:xdist", "--benchmark", "--tb=line",
        "--gradcheck-case-timeout", "2", "--benchmark-max-time", "0.01", "cases")
    assert time.monotonic() - started < 300  # hang guard: each impl sleeps ten minutes
    gpu = 2 if torch.cuda.is_available() else 1  # r144 is timed on cuda too where there is one
    result.assert_outcomes(failed=6, passed=2 + 2 * gpu)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    out = result.stdout.str()
    assert "impl: the worker process died while checking this case (exit status 0)" in out
    for label in ("timed.py:ignores_alarm", "timed.py:swallows"):
        assert f"impl: {label} ran past the case time budget of 2 s" in out
    result.stdout.fnmatch_lines(["*fine[[]float64-cpu-backward[]]*",
                                 "*r144[[]float64-cpu-backward[]]*"])
    assert "Benchmark fixture was not used" not in out
    pytest_pid = (pytester.path / "pytest.pid").read_text()
    importers = (pytester.path / "cases" / "imported.log").read_text().split()
    assert importers and pytest_pid not in importers


HOSTILE_IMPL = """\
import os
import time


def forever(x):
    time.sleep(1000)


def quit_now(x):
    os._exit(0)
"""
HOSTILE_CASES = """\
cases:
  - name: hangs
    inputs: {x: [1.0]}
    output: sum(x)
    impl: hostile.py:forever
  - name: exits
    inputs: {x: [1.0]}
    output: sum(x)
    impl: hostile.py:quit_now
"""


@pytest.mark.slow
def test_items_run_under_the_command_lines_budget_and_worker(pytester: pytest.Pytester) -> None:
    """An impl that hangs or ends its process fails its own item; pytest goes on, the valid
    case passes, and the exit status says a test failed (as `gradcheck-lab run` does)."""
    write(pytester.path, "cases/hostile.py", HOSTILE_IMPL)
    write(pytester.path, "cases/hostile.yaml", HOSTILE_CASES)
    write(pytester.path, "cases/r144.yaml", R144_TEXT)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:xdist",
                                           "--gradcheck-case-timeout", "3", "--tb=line")
    result.assert_outcomes(failed=2, passed=1)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines([
        "*impl: hostile.py:forever ran past the case time budget of 3 s*",
        "*impl: the worker process died while checking this case*"])


def test_a_wrong_run_setting_is_a_usage_error(pytester: pytest.Pytester) -> None:
    write(pytester.path, "cases/r144.yaml", R144_TEXT)
    result = pytester.runpytest("-p", "no:cacheprovider", "--gradcheck-symbolic", "exactly")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*gradcheck-lab: --gradcheck-symbolic (gradcheck_symbolic): "
                                 "expected one of auto, exact, sweep, got 'exactly'"])
    forced = pytester.runpytest("-p", "no:cacheprovider", "-p", "no:xdist",
                                "--gradcheck-symbolic", "sweep", "--junitxml", "out.xml")
    forced.assert_outcomes(passed=1)
    assert "rule sweep" in (pytester.path / "out.xml").read_text(encoding="utf-8")


@pytest.mark.slow
def test_shards_split_a_suite_deterministically_and_their_reports_merge(
        pytester: pytest.Pytester) -> None:
    """Every item in exactly one of N shards, the same split on each run; the --json reports
    of runs on parts of a suite merge into one (`gradcheck-lab merge`)."""
    import json

    for name in ("a", "b", "c", "d", "e"):
        write(pytester.path, f"cases/{name}.yaml",
              f"name: {name}\ninputs:\n  x: [0.5, 1.5]\noutput: sum(exp(x) * x)\n")
    everything = collect(pytester)
    shards = [collect(pytester, "--gradcheck-shard", f"{k}/3") for k in (1, 2, 3)]
    assert sorted(item for shard in shards for item in shard) == everything
    assert shards == [collect(pytester, "--gradcheck-shard", f"{k}/3") for k in (1, 2, 3)]
    bad = pytester.runpytest("--gradcheck-shard", "4/3")
    assert bad.ret == pytest.ExitCode.USAGE_ERROR
    from gradcheck_lab.doors.cli import main

    reports = []
    for k, cases in enumerate(([f"cases/{n}.yaml" for n in "ab"], ["cases/c.yaml"]), 1):
        report = pytester.path / f"shard{k}.json"
        assert main(["run", *(str(pytester.path / c) for c in cases), "--json",
                     str(report)]) == 0
        reports.append(str(report))
    merged = pytester.path / "merged.json"
    assert main(["merge", *reports, "-o", str(merged)]) == 0
    document = json.loads(merged.read_text(encoding="utf-8"))
    assert [r["case"] for r in document["results"]] == ["a", "b", "c"]
    assert document["summary"] == {"pass": 3, "fail": 0, "error": 0, "skip": 0}


def test_items_are_loaded_under_the_command_lines_limits(pytester: pytest.Pytester) -> None:
    write(pytester.path, "cases/r144.yaml", R144_TEXT)
    pytester.runpytest("-p", "no:cacheprovider", "--gradcheck-max-input-elements",
                       "3").assert_outcomes(passed=1)
    tight = pytester.runpytest("-p", "no:cacheprovider", "--gradcheck-max-input-elements", "2")
    tight.assert_outcomes(failed=1)
    tight.stdout.fnmatch_lines(["*cases/r144.yaml:*inputs*3 elements*2*"])
    wrong = pytester.runpytest("-p", "no:cacheprovider", "--gradcheck-max-expression-depth",
                               "deep")
    assert wrong.ret == pytest.ExitCode.USAGE_ERROR


def test_ini_keys_set_the_run_settings_and_a_flag_wins(pytester: pytest.Pytester) -> None:
    write(pytester.path, "cases/r144.yaml", R144_TEXT)
    pytester.makeini("[pytest]\ngradcheck_case_paths = cases\ngradcheck_symbolic = sweep\n")
    by_ini = pytester.runpytest("-p", "no:cacheprovider", "--junitxml", "ini.xml")
    by_ini.assert_outcomes(passed=1)
    assert "rule sweep" in (pytester.path / "ini.xml").read_text(encoding="utf-8")
    by_flag = pytester.runpytest("-p", "no:cacheprovider", "--gradcheck-symbolic", "exact",
                                 "--junitxml", "flag.xml")
    by_flag.assert_outcomes(passed=1)
    assert "rule sweep" not in (pytester.path / "flag.xml").read_text(encoding="utf-8")


THREADS_IMPL = """import torch
from pathlib import Path


def square(x):
    (Path(__file__).parent / "threads.txt").write_text(str(torch.get_num_threads()))
    return (x * x).sum()
"""
THREADS_CASE = ("name: threads\ninputs:\n  x: [1.0, 2.0]\noutput: sum(x * x)\n"
                "impl: impls.py:square\ndtypes: [float64]\n")


@pytest.mark.parametrize(("options", "threads"), [
    ((), 1), (("--gradcheck-threads", "2"), 2), (("-o", "gradcheck_threads=3"), 3)])
def test_the_checks_run_at_the_thread_count_given(pytester: pytest.Pytester,
                                                   options: tuple[str, ...],
                                                   threads: int) -> None:
    write(pytester.path, "cases/impls.py", THREADS_IMPL)
    write(pytester.path, "cases/threads.yaml", THREADS_CASE)
    before = torch.get_num_threads()
    # No time budget: the impl runs in this process, where the count can be read back.
    result = pytester.runpytest("--gradcheck-case-timeout", "0", *options)
    result.assert_outcomes(passed=1)
    assert int((pytester.path / "cases" / "threads.txt").read_text()) == threads
    assert torch.get_num_threads() == before  # put back after the check


def test_a_thread_count_that_is_not_a_positive_integer_stops_the_run(
        pytester: pytest.Pytester) -> None:
    write(pytester.path, "cases/r144.yaml", R144_TEXT)
    result = pytester.runpytest("--gradcheck-threads", "0")
    assert result.ret != 0
    assert ("--gradcheck-threads (gradcheck_threads): expected a positive number, got 0"
            in "\n".join(result.outlines + result.errlines))


def test_the_entry_point_exports_every_hook_of_the_plugin() -> None:
    import gradcheck_lab.doors.pytest_plugin as hooks
    import gradcheck_lab.pytest_plugin as entry_point

    defined = {name for name in vars(hooks) if name.startswith("pytest_")
               and callable(getattr(hooks, name))}
    assert defined and defined == set(entry_point.__all__)
    assert all(getattr(entry_point, name) is getattr(hooks, name) for name in defined)


CHILDREN_CONFTEST = """import multiprocessing

SEEN = []


def pytest_runtest_setup(item):
    SEEN.append(sorted((p.name, p.pid) for p in multiprocessing.active_children()))


def pytest_sessionfinish(session):
    (session.config.rootpath / "children.txt").write_text(repr(SEEN[:1]))
"""


@pytest.mark.slow
@pytest.mark.parametrize(("options", "started"), [((), True), (("--collect-only",), False),
                                                   (("-k", "r144"), False)])
def test_the_worker_starts_after_collection_when_an_impl_case_is_to_run(
        pytester: pytest.Pytester, options: tuple[str, ...], started: bool) -> None:
    write(pytester.path, "conftest.py", CHILDREN_CONFTEST)
    write(pytester.path, "cases/a_r144.yaml", R144_TEXT)  # a spec: it runs first
    write(pytester.path, "cases/impls.py", THREADS_IMPL)
    write(pytester.path, "cases/threads.yaml", THREADS_CASE)
    # This process may have children of its own already (run_file's shared worker).
    before = {child.pid for child in multiprocessing.active_children()}
    pytester.runpytest("-q", *options)
    seen = ast.literal_eval((pytester.path / "children.txt").read_text())
    if options == ("--collect-only",):
        assert seen == []  # no item was set up
    else:
        # Before the first item (the spec) ran, the worker was started only when an impl
        # case was among the items to run.
        workers = [pid for name, pid in seen[0]
                   if name == "gradcheck-lab-worker" and pid not in before]
        assert bool(workers) == started


def test_no_header_line_names_case_paths_that_do_not_exist(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_plain="def test_one():\n    assert True\n")
    result = pytester.runpytest()  # not -q: the header is printed
    result.assert_outcomes(passed=1)
    assert "case paths" not in result.stdout.str()


def test_the_histogram_option_without_its_extra_is_one_line(pytester: pytest.Pytester) -> None:
    import importlib.util

    if importlib.util.find_spec("pygal") is not None:
        pytest.skip("pytest-benchmark's histogram extra is installed: the histogram is drawn")
    write(pytester.path, "cases/r144.yaml", R144_TEXT)
    result = pytester.runpytest("--benchmark", "--benchmark-histogram")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: --benchmark-histogram needs pytest-benchmark's "
                                 "histogram extra (pygal)*"])
    assert "INTERNALERROR" not in result.stdout.str() + result.stderr.str()
