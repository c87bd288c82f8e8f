"""pytest --gradcheck-functions: every custom Function a suite calls, recorded at its calls
and checked there, with no test written (tests/data/functions_suite: five Functions, one
planted bug in a backward no test gradchecks, one declared surrogate)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from gradcheck_lab.doors.functions.intent import exclude, excluded, parse_exclusions
from gradcheck_lab.doors.functions.recorder import Recorder
from gradcheck_lab.doors.functions.replay import dtypes_to_check, replay
from tests.conftest import DATA

SUITE = DATA / "functions_suite"


class Square(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, scale):
        ctx.save_for_backward(x)
        ctx.scale = scale
        return scale * x * x

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return 2 * ctx.scale * x * grad, None


class WrongSquare(Square):
    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return ctx.scale * x * grad, None  # the factor 2 left out


class Float32Only(Square):
    @staticmethod
    def forward(ctx, x, scale):
        if x.dtype != torch.float32:
            raise TypeError("this kernel takes float32 only")
        return Square.forward(ctx, x, scale)


def recorded(*calls: tuple[type, tuple], **budgets: int) -> Recorder:
    recorder = Recorder(**budgets)
    recorder.install()
    try:
        for cls, args in calls:
            cls.apply(*args)
    finally:
        recorder.uninstall()
    return recorder


def vector(*values: float, grad: bool = True, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    return torch.tensor(values, dtype=dtype, requires_grad=grad)


def test_the_recording_copies_inputs_at_the_call_and_puts_apply_back() -> None:
    original = torch.autograd.Function.__dict__["apply"]
    x = vector(1.0, 2.0)
    recorder = Recorder()
    recorder.install()
    try:
        y = Square.apply(x, 3.0)
        with torch.no_grad():
            x.mul_(10)  # what the test does after the call changes nothing recorded
    finally:
        recorder.uninstall()
    assert torch.autograd.Function.__dict__["apply"] is original
    (call,) = recorder.records[Square].calls
    assert call.args[0].tolist() == [1.0, 2.0] and call.args[1] == 3.0
    assert call.args[0] is not x and call.wanted == (0,)
    assert y.tolist() == [3.0, 12.0]  # the caller's result is the Function's own


def test_a_few_distinct_calls_are_kept_per_class_the_smallest_first() -> None:
    recorder = recorded(*[(Square, (vector(*range(n)), 1.0)) for n in (9, 5, 5, 7, 2)],
                        calls_per_class=2)
    record = recorder.records[Square]
    assert record.seen == 5
    assert [call.elements for call in record.calls] == [2, 5]  # 5 twice: one kept


def test_calls_that_cannot_be_replayed_are_counted_with_the_reason() -> None:
    recorder = recorded((Square, (vector(1.0, float("-inf")), 1.0)),
                        (Square, (vector(*range(50)), 1.0)), max_call_elements=10)
    record = recorder.records[Square]
    assert record.calls == []
    assert record.refused == {"a tensor holds inf or NaN": 1, "over 10 elements": 1}


def test_torchs_own_functions_are_not_recorded() -> None:
    from torch.utils.checkpoint import checkpoint

    x = vector(1.0, 2.0)
    recorder = Recorder()
    recorder.install()
    try:
        checkpoint(torch.sin, x, use_reentrant=True).sum().backward()
    finally:
        recorder.uninstall()
    assert recorder.records == {}


def test_a_correct_backward_passes_and_a_planted_one_fails_naming_autograd() -> None:
    good = recorded((Square, (vector(0.5, -1.5), 2.0))).records[Square].calls[0]
    assert replay(good, "float64", None, None).status == "pass"
    bad = recorded((WrongSquare, (vector(0.5, -1.5), 2.0))).records[WrongSquare].calls[0]
    result = replay(bad, "float64", None, None)
    assert result.status == "fail" and result.oracles == 3
    assert "autograd is the odd one out: x" in result.text  # the forward's own name


def test_float32_calls_are_checked_in_float64_too_where_the_function_accepts_it() -> None:
    call = recorded((Square, (vector(0.5, dtype=torch.float32), 2.0))).records[Square].calls[0]
    assert dtypes_to_check(call) == ["float64", "float32"]
    assert [replay(call, d, None, None).status for d in ("float64", "float32")] == ["pass"] * 2
    only = recorded((Float32Only, (vector(0.5, dtype=torch.float32), 2.0)))
    refused = replay(only.records[Float32Only].calls[0], "float64", None, None)
    assert refused.status == "skip" and "does not run in float64" in refused.text


def test_an_exclusion_is_declared_by_decorator_or_by_name() -> None:
    marked = exclude("straight-through estimator")(type("Rounding", (), {}))
    assert excluded(marked, {}) == "straight-through estimator"
    table = parse_exclusions(["mylib.Spike: surrogate"], "gradcheck_functions_exclude")
    spike = type("Spike", (), {"__module__": "mylib"})
    assert excluded(spike, table) == "surrogate" and excluded(Square, table) is None
    with pytest.raises(ValueError, match=r"gradcheck_functions_exclude: 'mylib\.Spike'"):
        parse_exclusions(["mylib.Spike"], "gradcheck_functions_exclude")
    with pytest.raises(ValueError, match="needs a reason"):
        exclude(" ")


def copy_suite(pytester: pytest.Pytester) -> None:
    for path in SUITE.rglob("*.py"):
        target = pytester.path / path.relative_to(SUITE)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, target)
    pytester.syspathinsert()


def outcomes(result: pytest.RunResult) -> dict[str, str]:
    """Node id -> outcome of an in-process run."""
    found = {}
    for report in result.reprec.getreports("pytest_runtest_logreport"):  # type: ignore[attr-defined]
        if report.when == "call" or report.outcome != "passed":
            found[report.nodeid] = report.outcome.upper()
    return found


def test_the_flag_finds_all_five_checks_four_and_fails_the_planted_bug(
        pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    copy_suite(pytester)
    monkeypatch.setenv("GRADCHECK_LAB_PLANTED", "1")
    plain = pytester.runpytest("-p", "no:cacheprovider", "-rA")
    plain.assert_outcomes(passed=6)  # the suite's own tests never see the bug
    flagged = pytester.runpytest("-p", "no:cacheprovider", "-rA", "--gradcheck-functions")
    seen = outcomes(flagged)
    own = {k: v for k, v in seen.items() if k.startswith("test_sparklib.py")}
    assert own == outcomes(plain)  # the suite's own results unchanged
    checks = {k: v for k, v in seen.items() if k.startswith("gradcheck::")}
    by_class = {}
    for node, outcome in checks.items():
        name = node.removeprefix("gradcheck::sparklib.ops.").split(".apply")[0]
        by_class.setdefault(name, set()).add(outcome)
    assert by_class == {"Cube": {"FAILED"}, "LogSumExp": {"PASSED"},
                        "ScaledProductAndSum": {"PASSED"}, "Softsign": {"PASSED"},
                        "Spike": {"SKIPPED"}}
    # Cube was recorded in float32: checked in float64 and float32, both fail on autograd.
    assert checks["gradcheck::sparklib.ops.Cube.apply[call 1, float64]"] == "FAILED"
    assert checks["gradcheck::sparklib.ops.Cube.apply[call 1, float32]"] == "FAILED"
    text = flagged.stdout.str()
    assert "autograd is the odd one out: x" in text
    assert "the call made by test_sparklib.py::test_cube_value" in text
    assert "5 custom Function(s) found, 4 checked" in text
    assert "excluded: sparklib.ops.Spike: surrogate gradient" in text
    assert "SKIPPED [1] sparklib/ops.py:" in text  # at the Function's class, not the plugin


@pytest.mark.slow
def test_the_mended_suite_passes_every_check(pytester: pytest.Pytester,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    copy_suite(pytester)
    monkeypatch.setenv("GRADCHECK_LAB_PLANTED", "0")
    pytester.runpytest("-p", "no:cacheprovider", "--gradcheck-functions").assert_outcomes(
        passed=6 + 7, skipped=1)


def test_an_ini_exclusion_and_k_select_among_the_checks(pytester: pytest.Pytester,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    copy_suite(pytester)
    monkeypatch.setenv("GRADCHECK_LAB_PLANTED", "1")
    pytester.makeini("[pytest]\ngradcheck_functions = true\n"
                     "gradcheck_functions_exclude =\n    sparklib.ops.Cube: a test's reason\n")
    result = pytester.runpytest("-p", "no:cacheprovider", "-rA", "-k", "cube")
    checks = {k: v for k, v in outcomes(result).items() if k.startswith("gradcheck::")}
    assert checks == {"gradcheck::sparklib.ops.Cube.apply[excluded]": "SKIPPED"}
    assert "excluded: a test's reason" in result.stdout.str()


@pytest.mark.slow
def test_last_failed_reruns_the_failed_checks(pytester: pytest.Pytester,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    copy_suite(pytester)
    monkeypatch.setenv("GRADCHECK_LAB_PLANTED", "1")
    pytester.runpytest("--gradcheck-functions")
    again = pytester.runpytest("--gradcheck-functions", "--lf", "-rA")
    checks = {k for k in outcomes(again) if k.startswith("gradcheck::")}
    assert checks == {"gradcheck::sparklib.ops.Cube.apply[call 1, float64]",
                      "gradcheck::sparklib.ops.Cube.apply[call 1, float32]"}


@pytest.mark.slow
def test_under_xdist_the_workers_recordings_are_checked_once(
        pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    copy_suite(pytester)
    monkeypatch.setenv("GRADCHECK_LAB_PLANTED", "1")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-n", "2",
                                           "--gradcheck-functions")
    result.assert_outcomes(passed=6 + 5, failed=2, skipped=1)
    assert "5 custom Function(s) found, 4 checked" in result.stdout.str()


def test_a_function_module_path_is_the_items_location() -> None:
    from gradcheck_lab.doors.functions.recorder import source_location

    file, line = source_location(Square)
    assert Path(file).name == "test_functions.py" and line > 0


# gradcheck-lab record -- COMMAND, and gradcheck-lab run FILE.gradcheck-calls

def test_a_recording_file_round_trips_and_run_checks_it(tmp_path: Path) -> None:
    from gradcheck_lab.doors.functions.recording_file import read, write
    from gradcheck_lab.doors.functions.replay import recording_results

    recorder = recorded((Square, (vector(0.5, -1.5), 2.0)),
                        (WrongSquare, (vector(0.25, dtype=torch.float32), 3.0)))
    path = tmp_path / "calls.gradcheck-calls"
    write(recorder.records.values(), path)
    recording = read(path)
    assert recording.problems == []
    calls = {r.function.rsplit(".", 1)[-1]: r.calls[0] for r in recording.records}
    assert calls["Square"].args[0].tolist() == [0.5, -1.5] and calls["Square"].args[1] == 2.0
    assert calls["Square"].wanted == (0,)
    statuses = {(r.case, r.dtype): r.status for r in recording_results(path, None, None)}
    module = Square.__module__
    assert statuses == {
        (f"{module}.Square.apply[call 1]", "float64"): "pass",
        (f"{module}.WrongSquare.apply[call 1]", "float64"): "fail",
        (f"{module}.WrongSquare.apply[call 1]", "float32"): "fail"}


class _Payload:
    def __reduce__(self) -> tuple:
        return (Path.touch, (Path("/tmp/gradcheck-lab-pwned"),))


@pytest.mark.parametrize("content, key", [
    (b"not a recording", "document"),
    ("pickle", "document"),
    ({"format": "something else"}, "format"),
    ({"format": "gradcheck-lab recorded calls", "version": 99, "functions": []}, "version"),
    ({"format": "gradcheck-lab recorded calls", "version": 1, "functions": [
        {"module": "os;rm -rf", "qualname": "x", "calls": []}]}, "functions[0].module"),
    ({"format": "gradcheck-lab recorded calls", "version": 1, "functions": [
        {"module": "torch", "qualname": "save", "calls": []}]}, "functions[0]"),
    ({"format": "gradcheck-lab recorded calls", "version": 1, "functions": [
        {"module": Square.__module__, "qualname": "Square", "calls": [
            {"args": [1.0], "kwargs": {}, "wanted": [0], "test": ""}]}]},
     "functions[0].calls[0].wanted"),
    ({"format": "gradcheck-lab recorded calls", "version": 1, "functions": [
        {"module": Square.__module__, "qualname": "Square", "calls": [
            {"args": [torch.ones(2), 2.0], "kwargs": {}, "wanted": [0, 0], "test": ""}]}]},
     "functions[0].calls[0].wanted"),
    ({"format": "gradcheck-lab recorded calls", "version": 1, "functions": [
        {"module": Square.__module__, "qualname": "Square", "calls": [
            {"args": [torch.ones(2, dtype=torch.int64), 2.0], "kwargs": {}, "wanted": [0],
             "test": ""}]}]},
     "functions[0].calls[0].wanted"),
    ({"format": "gradcheck-lab recorded calls", "version": 1, "functions": [
        {"module": Square.__module__, "qualname": "Square", "calls": [
            {"args": [torch.zeros(1).expand(2**40), 2.0], "kwargs": {}, "wanted": [0],
             "test": ""}]}]},
     "functions[0].calls[0].args"),
    ({"format": "gradcheck-lab recorded calls", "version": 1, "functions": [
        {"module": "unittest.__main__", "qualname": "main", "calls": []}]}, "functions[0]"),
])
def test_a_hostile_recording_is_one_error_naming_the_file_and_key(
        tmp_path: Path, content: object, key: str) -> None:
    import pickle

    from gradcheck_lab.doors.functions.replay import recording_results

    path = tmp_path / "bad.gradcheck-calls"
    marker = Path("/tmp/gradcheck-lab-pwned")
    marker.unlink(missing_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content == "pickle":
        path.write_bytes(pickle.dumps(_Payload(), protocol=2))
    else:
        torch.save(content, path)
    results = list(recording_results(path, None, None))
    assert [r.status for r in results] == ["error"], [r.message for r in results]
    assert results[0].message.startswith(f"{path}: {key}"), results[0].message
    assert not marker.exists()  # the file's pickle ran no code


def test_a_recording_that_unpacks_past_the_size_limit_is_refused_before_loading(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import zipfile

    from gradcheck_lab.doors.functions import recording_file
    from gradcheck_lab.doors.functions.replay import recording_results

    monkeypatch.setattr(recording_file, "MAX_FILE_BYTES", 10_000)
    path = tmp_path / "bomb.gradcheck-calls"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as bomb:
        bomb.writestr("archive/data/0", b"\0" * 1_000_000)  # 1 MB in about 1 KB
    assert path.stat().st_size < 10_000
    (result,) = list(recording_results(path, None, None))
    assert result.status == "error" and "unpacks to 1000000 bytes" in result.message


def test_an_empty_recording_is_an_error_not_a_pass(tmp_path: Path) -> None:
    from gradcheck_lab.doors.functions.recording_file import write
    from gradcheck_lab.doors.functions.replay import recording_results

    path = tmp_path / "empty.gradcheck-calls"
    write([], path)
    (result,) = list(recording_results(path, None, None))
    assert result.status == "error" and "no custom Function call was recorded" in result.message


@pytest.mark.slow
def test_record_runs_a_command_recording_every_process_and_run_checks_the_file(
        tmp_path: Path) -> None:
    import json
    import os
    import subprocess
    import sys

    for path in SUITE.rglob("*.py"):
        target = tmp_path / path.relative_to(SUITE)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, target)
    # A sitecustomize the user already had still runs under the recording.
    theirs = tmp_path / "their_site"
    theirs.mkdir()
    (theirs / "sitecustomize.py").write_text(
        "import pathlib; pathlib.Path('their_site_ran').touch()\n")
    env = {**os.environ, "PYTHONPATH": str(theirs), "GRADCHECK_LAB_PLANTED": "1"}
    recorded_run = subprocess.run(
        [sys.executable, "-m", "gradcheck_lab", "record", "-o", "calls.gradcheck-calls", "--",
         sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_sparklib.py"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert recorded_run.returncode == 0, recorded_run.stdout + recorded_run.stderr
    assert "6 passed" in recorded_run.stdout
    assert "5 call(s) of 5 custom Function(s) recorded to calls.gradcheck-calls" in \
        recorded_run.stderr
    assert (tmp_path / "their_site_ran").exists()
    checked = subprocess.run(
        [sys.executable, "-m", "gradcheck_lab", "run", "calls.gradcheck-calls", "--json",
         "out.json"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert checked.returncode == 1, checked.stdout + checked.stderr
    results = json.loads((tmp_path / "out.json").read_text())["results"]
    by_case = {}
    for result in results:
        by_case.setdefault(result["case"].split(".apply")[0].rsplit(".", 1)[-1], set()).add(
            result["status"])
    assert by_case == {"Cube": {"fail"}, "LogSumExp": {"pass"}, "ScaledProductAndSum": {"pass"},
                       "Softsign": {"pass"}, "Spike": {"skip"}}


def test_functions_and_modules_named_in_the_ini_key_are_recorded_and_checked(
        pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    copy_suite(pytester)
    monkeypatch.setenv("GRADCHECK_LAB_PLANTED", "0")
    pytester.makeini("[pytest]\ngradcheck_functions = true\ngradcheck_functions_include =\n"
                     "    sparklib.ops.smooth_abs\n    sparklib.ops.Gate\n")
    result = pytester.runpytest("-p", "no:cacheprovider", "-k", "smooth or gate")
    checks = {k: v for k, v in outcomes(result).items() if k.startswith("gradcheck::")}
    assert checks == {"gradcheck::sparklib.ops.smooth_abs[call 1, float64]": "PASSED",
                      "gradcheck::sparklib.ops.Gate.forward[call 1, float64]": "PASSED"}


def test_a_name_that_is_not_a_function_or_module_is_a_usage_error(
        pytester: pytest.Pytester) -> None:
    copy_suite(pytester)
    pytester.makeini("[pytest]\ngradcheck_functions = true\ngradcheck_functions_include =\n"
                     "    sparklib.ops.no_such_thing\n")
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.stderr.fnmatch_lines(["*gradcheck_functions_include: sparklib.ops.no_such_thing: "
                                 "no_such_thing not found*"])


# What the review of the flag found: the suite's tests unchanged, no false failure.

class WithConfig(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, config):
        return x * config.scale

    @staticmethod
    def backward(ctx, grad):
        return grad * 2.0, None


class Config:
    scale = 2.0


def test_an_object_argument_is_not_kept_alive_by_the_recording() -> None:
    import gc
    import weakref

    config = Config()
    alive = weakref.ref(config)
    recorder = recorded((WithConfig, (vector(1.0, 2.0), config)))
    call = recorder.records[WithConfig].calls[0]
    assert replay(call, "float64", None, None).status == "pass"  # while the object lives
    del config
    gc.collect()
    assert alive() is None
    gone = replay(call, "float64", None, None)
    assert gone.status == "skip" and "freed before the check" in gone.text


def test_a_tests_torch_function_mode_sees_only_the_functions_own_ops() -> None:
    from torch.overrides import TorchFunctionMode

    class Counting(TorchFunctionMode):
        def __init__(self) -> None:
            super().__init__()
            self.names: list[str] = []

        def __torch_function__(self, func, types, args=(), kwargs=None):
            self.names.append(getattr(func, "__name__", str(func)))
            return func(*args, **(kwargs or {}))

    def ops_seen(recording: bool) -> list[str]:
        recorder = Recorder()
        if recording:
            recorder.install()
        try:
            with Counting() as mode:
                Square.apply(vector(1.0, 2.0), 3.0)
        finally:
            recorder.uninstall()
        return mode.names

    assert ops_seen(recording=True) == ops_seen(recording=False)


class SquaredError(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, target):
        ctx.save_for_backward(x, target)
        return ((x - target) ** 2).sum()

    @staticmethod
    def backward(ctx, grad):
        x, target = ctx.saved_tensors
        return 2 * grad * (x - target), None  # no gradient for the target, by design


def test_a_call_without_grad_checks_only_the_inputs_the_backward_differentiates() -> None:
    call = recorded((SquaredError, (vector(0.5, 1.5, grad=False),
                                    vector(1.0, -1.0, grad=False)))).records[SquaredError]
    result = replay(call.calls[0], "float64", None, None)
    assert result.status == "pass", result.text


FLOAT32_WEIGHT = torch.tensor([[1.0, 2.0], [3.0, 4.0]])


class Float32Weight(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x @ FLOAT32_WEIGHT

    @staticmethod
    def backward(ctx, grad):
        return grad @ FLOAT32_WEIGHT.T


def test_a_function_that_runs_in_float32_only_is_a_skip_saying_so_not_a_failure() -> None:
    call = recorded((Float32Weight, (vector(1.0, 2.0, dtype=torch.float32),))).records[
        Float32Weight].calls[0]
    results = {dtype: replay(call, dtype, None, None) for dtype in dtypes_to_check(call)}
    assert {d: r.status for d, r in results.items()} == {"float64": "skip", "float32": "skip"}
    assert "does not run in float64, which finite differences" in results["float32"].text


def test_a_projects_own_modifyitems_hook_never_sees_the_check_items(
        pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    copy_suite(pytester)
    monkeypatch.setenv("GRADCHECK_LAB_PLANTED", "0")
    pytester.makeconftest("def pytest_collection_modifyitems(items):\n"
                          "    for item in items:\n"
                          "        item.function  # a test function's attribute\n")
    result = pytester.runpytest("-p", "no:cacheprovider", "--gradcheck-functions")
    result.assert_outcomes(passed=6 + 7, skipped=1)


SCRIPT = """import torch
from sparklib.ops import Cube


class Local(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x * 2

    @staticmethod
    def backward(ctx, grad):
        return grad * 2


x = torch.tensor([1.5, -0.5], dtype=torch.float64, requires_grad=True)
(Cube.apply(x) + Local.apply(x)).sum().backward()
"""


@pytest.mark.slow
def test_record_of_a_script_merges_without_importing_and_says_what_run_cannot_check(
        tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    shutil.copytree(SUITE / "sparklib", tmp_path / "sparklib")
    (tmp_path / "script.py").write_text(SCRIPT)
    env = {**os.environ, "GRADCHECK_LAB_PLANTED": "1"}
    command = [sys.executable, "-m", "gradcheck_lab", "record", "-o", "r.gradcheck-calls",
               "--", sys.executable]
    # A process that never imports torch loads nothing of gradcheck-lab.
    untouched = subprocess.run(
        [*command, "-c", "import sys; print('gradcheck_lab' in sys.modules, "
                         "'numpy' in sys.modules)"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert untouched.stdout.strip() == "False False", untouched.stderr
    recorded_run = subprocess.run([*command, "script.py"], cwd=tmp_path, env=env,
                                  capture_output=True, text=True, timeout=300)
    assert recorded_run.returncode == 0, recorded_run.stderr
    assert "2 call(s) of 2 custom Function(s)" in recorded_run.stderr
    assert "__main__.Local: defined in a script run as __main__" in recorded_run.stderr
    checked = subprocess.run([sys.executable, "-m", "gradcheck_lab", "run",
                              "r.gradcheck-calls"], cwd=tmp_path, env=env,
                             capture_output=True, text=True, timeout=300)
    assert checked.returncode == 2, checked.stdout  # an error: the script's Function
    assert "sparklib.ops.Cube.apply[call 1]" in checked.stdout
    assert "autograd is the odd one out: x" in checked.stdout
    assert "__main__.Local: defined in a script run as __main__" in checked.stdout


@pytest.mark.slow
def test_a_damaged_part_costs_only_that_process_and_the_commands_status_is_kept(
        tmp_path: Path) -> None:
    import subprocess
    import sys

    shutil.copytree(SUITE / "sparklib", tmp_path / "sparklib")
    (tmp_path / "script.py").write_text(
        SCRIPT + "import os, pathlib\n"
                 "pathlib.Path(os.environ['GRADCHECK_LAB_RECORD_DIR'], "
                 "'calls-0.gradcheck-calls').write_bytes(b'junk')\nraise SystemExit(3)\n")
    done = subprocess.run([sys.executable, "-m", "gradcheck_lab", "record", "-o",
                           "r.gradcheck-calls", "--", sys.executable, "script.py"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 3, done.stderr
    assert "calls-0.gradcheck-calls: document: not a recording" in done.stderr
    assert "2 call(s) of 2 custom Function(s)" in done.stderr
    assert (tmp_path / "r.gradcheck-calls").exists()


class DoubleInPlace(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.mark_dirty(x)
        return x.mul_(2)

    @staticmethod
    def backward(ctx, grad):
        return grad * 2


def test_a_call_that_raises_is_not_kept_and_an_in_place_function_is_checked() -> None:
    recorder = Recorder()
    recorder.install()
    try:
        with pytest.raises(TypeError):
            Square.apply(vector(1.0, 2.0), "not a number")  # the test expects it to raise
        Square.apply(vector(1.0, 2.0), 3.0)
        DoubleInPlace.apply(vector(1.0, -2.0, grad=False).clone())
    finally:
        recorder.uninstall()
    assert [c.args[1] for c in recorder.records[Square].calls] == [3.0]
    (call,) = recorder.records[DoubleInPlace].calls
    assert replay(call, "float64", None, None).status == "pass"


def test_a_subclass_of_an_excluded_function_is_excluded_too() -> None:
    surrogate = exclude("straight-through")(type("Rounding", (), {}))
    assert excluded(type("Finer", (surrogate,), {}), {}) == "straight-through"
