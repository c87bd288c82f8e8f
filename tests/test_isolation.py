"""The worker process that runs impls and training steps (gradcheck_lab.run.isolation): its
memory budget, its death with its parent, its process group, and the messages that name the
user code (impl or training step) at its key."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from gradcheck_lab.doors.cli import main
from gradcheck_lab.errors import CaseError
from gradcheck_lab.settings import DEFAULT_CASE_MEMORY, Settings, format_size, parse_size

LINUX = sys.platform.startswith("linux")
POSIX = hasattr(os, "fork") and hasattr(os, "killpg")

# Impls that tell the test which process ran them: each writes its pid to NAME.pid beside it.
IMPLS = '''
import os
import resource
import time
from pathlib import Path

import numpy
import torch

HERE = Path(__file__).parent


def note(name, text=None):
    (HERE / f"{name}.pid").write_text(str(os.getpid()) if text is None else text)


def first(x):
    note("first")
    return x.sum()


def allocates(x):
    note("allocates")
    numpy.ones(2**28)  # 2 GiB, beyond a 1 GiB budget: refused at once, never touched
    return x.sum()


def torch_allocates(x):
    note("torch_allocates")
    torch.ones(2**28, dtype=torch.float64)
    return x.sum()


def after(x):
    note("after")
    return x.sum()


def again(x):
    note("again")
    return x.sum()


def data_limit(x):
    note("data_limit", str(resource.getrlimit(resource.RLIMIT_DATA)[0]))
    return x.sum()


def sleeps(x):
    note("sleeps")
    while True:
        time.sleep(1)


def forks(x):
    if os.fork() == 0:
        note("child")
        time.sleep(300)
        os._exit(0)
    while not (HERE / "child.pid").exists():
        time.sleep(0.01)
    return x.sum()


def child_is_gone(x):
    try:
        os.kill(int((HERE / "child.pid").read_text()), 0)
    except ProcessLookupError:
        return x.sum()
    raise RuntimeError("the child the previous case forked is still running")


def forks_then_sleeps(x):
    forks(x)
    while True:
        time.sleep(1)


def daemonizes(x):
    """A daemon's double fork: the grandchild leaves the process group with setsid()."""
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            note("daemon")
            time.sleep(300)
        os._exit(0)
    while not (HERE / "daemon.pid").exists():
        time.sleep(0.01)
    return x.sum()


def daemon_is_gone(x):
    try:
        os.kill(int((HERE / "daemon.pid").read_text()), 0)
    except ProcessLookupError:
        return x.sum()
    raise RuntimeError("the daemon the previous case started is still running")


def daemonizes_then_sleeps(x):
    daemonizes(x)
    while True:
        time.sleep(1)
'''

STEPS = '''
import os
import time

import numpy


def sleeps(params, batch, lr):
    while True:
        time.sleep(1)


def exits(params, batch, lr):
    os._exit(0)


def allocates(params, batch, lr):
    numpy.ones(2**28)  # 2 GiB
'''


def case(name: str, impl: str) -> str:
    return f"  - name: {name}\n    inputs:\n      x: [1.0, 2.0]\n    output: sum(x)\n" \
           f"    impl: impls.py:{impl}\n"


def write_cases(directory: Path, *names: str, file: str = "cases.yaml") -> Path:
    """A case file with one case per impl name (each case named after its impl)."""
    (directory / "impls.py").write_text(IMPLS, encoding="utf-8")
    path = directory / file
    path.write_text("cases:\n" + "".join(case(name, name) for name in names), encoding="utf-8")
    return path


def run(directory: Path, path: Path, *options: str,
        timeout: float = 60) -> tuple[subprocess.CompletedProcess[str], dict[str, dict]]:
    """``gradcheck-lab run PATH --json`` in a fresh interpreter, output captured (so that a
    process left holding the pipes would make it time out); results by case name. Messages
    name ``path`` relative to ``directory``, the working directory."""
    report = directory / "report.json"
    done = subprocess.run([sys.executable, "-m", "gradcheck_lab", "run",
                           str(path.relative_to(directory)), "--json",
                           str(report), *options], cwd=directory, capture_output=True,
                          text=True, timeout=timeout)
    results = {r["case"]: r for r in json.loads(report.read_text())["results"]}
    return done, results


def pid_of(directory: Path, name: str) -> int:
    return int((directory / f"{name}.pid").read_text())


def gone(pid: int) -> bool:
    """Whether process ``pid`` has ended (a zombie nobody reaped yet counts as ended)."""
    if LINUX:
        try:
            stat = Path(f"/proc/{pid}/stat").read_bytes()
        except OSError:
            return True
        return stat[stat.rfind(b")") + 2:].split()[0] == b"Z"
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def wait_until(condition, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def line_of(path: Path, text: str, after: str = "") -> int:
    lines = path.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if after in line)
    return next(i for i, line in enumerate(lines) if i >= start and text in line) + 1


def kill_quietly(pid: int) -> None:
    with contextlib.suppress(OSError):
        os.kill(pid, signal.SIGKILL)


# --- the memory budget ----------------------------------------------------------------------

@pytest.mark.parametrize(("text", "size"), [
    ("4G", 4 * 2**30), ("512M", 512 * 2**20), ("512MiB", 512 * 2**20), ("1.5g", 3 * 2**29),
    ("64k", 2**16), ("4Gi", 4 * 2**30), ("123", 123), ("0", 0)])
def test_sizes_read_with_binary_units(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "lots", "-1", "4X", "4GG", "1e9", "inf", "nan"])
def test_a_wrong_size_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="expected a size such as 4G, 512M"):
        parse_size(text)


def test_sizes_are_shown_in_the_largest_unit() -> None:
    assert [format_size(n) for n in (4 * 2**30, 512 * 2**20, 3 * 2**29, 1000)] == [
        "4 GiB", "512 MiB", "1.5 GiB", "1000 bytes"]
    assert DEFAULT_CASE_MEMORY == 4 * 2**30


@pytest.mark.parametrize("value", [0, -1, 1.5, True, "4G"])
def test_settings_refuse_a_case_memory_that_is_not_a_positive_number_of_bytes(
        value: object) -> None:
    with pytest.raises(ValueError, match="case_memory: expected a positive number of bytes"):
        Settings(case_memory=value)  # type: ignore[arg-type]


@pytest.mark.parametrize("value", ["4X", "-1G", "lots"])
def test_a_wrong_case_memory_is_a_usage_error(value: str,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["run", "cases", f"--case-memory={value}"])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "argument --case-memory: expected a size such as 4G, 512M" in err, err


@pytest.mark.skipif(not LINUX, reason="RLIMIT_DATA is enforced on Linux")
@pytest.mark.parametrize(("option", "expected"), [
    ((), 4 * 2**30),
    (("--case-memory", "512M"), 512 * 2**20),
    (("--case-memory", "0"), None),  # no limit: the worker keeps this process's own
])
@pytest.mark.slow
def test_the_worker_runs_under_the_memory_budget_given(
        tmp_path: Path, option: tuple[str, ...], expected: int | None) -> None:
    import resource

    path = write_cases(tmp_path, "data_limit")
    done, _ = run(tmp_path, path, *option)
    assert done.returncode == 0, done.stdout + done.stderr
    own = resource.getrlimit(resource.RLIMIT_DATA)[0]
    assert int((tmp_path / "data_limit.pid").read_text()) == (own if expected is None
                                                              else expected)


@pytest.mark.slow
@pytest.mark.skipif(not LINUX, reason="RLIMIT_DATA is enforced on Linux")
def test_an_allocation_beyond_the_budget_is_an_error_and_the_worker_is_replaced(
        tmp_path: Path) -> None:
    """numpy's MemoryError and torch's allocator error are both the case's error, at its impl
    key; the worker is replaced after each (and only then: it is reused otherwise)."""
    path = write_cases(tmp_path, "first", "allocates", "torch_allocates", "after", "again")
    done, results = run(tmp_path, path, "--case-memory", "1G")
    assert done.returncode == 2
    assert {name: r["status"] for name, r in results.items()} == {
        "first": "pass", "allocates": "error", "torch_allocates": "error", "after": "pass",
        "again": "pass"}
    for name, error in (("allocates", "MemoryError: Unable to allocate 2.00 GiB"),
                        ("torch_allocates", "DefaultCPUAllocator: can't allocate memory")):
        line = line_of(path, "impl:", after=f"name: {name}")
        prefix = (f"{path.name}:{line}: impl: impls.py:{name} allocated beyond the case memory "
                  "budget of 1 GiB (--case-memory): ")
        assert results[name]["message"].startswith(prefix), results[name]["message"]
        assert error in results[name]["message"]
        assert "\n" not in results[name]["message"]
    pids = {name: pid_of(tmp_path, name) for name in results}
    assert pids["first"] == pids["allocates"]  # one worker, until the allocation failed
    assert pids["allocates"] != pids["torch_allocates"] != pids["after"]
    assert pids["after"] == pids["again"]


@pytest.mark.slow
@pytest.mark.skipif(not LINUX, reason="RLIMIT_DATA is enforced on Linux")
def test_a_worker_that_cannot_start_under_its_budget_is_an_error_not_a_crash(
        tmp_path: Path) -> None:
    path = write_cases(tmp_path, "first")
    done, results = run(tmp_path, path, "--case-memory", "64M")
    assert done.returncode == 2
    assert "Traceback" not in done.stdout + done.stderr
    message = results["first"]["message"]
    assert message.startswith(f"{path.name}:{line_of(path, 'impl:')}: impl: the worker process "
                              "could not start (its memory budget, 64 MiB, may be too small: "
                              "--case-memory): "), message


@pytest.mark.slow
def test_pytest_takes_the_memory_budget_as_a_flag_and_an_ini_key(
        pytester: pytest.Pytester) -> None:
    bad = pytester.runpytest("-p", "no:cacheprovider", "--gradcheck-case-memory", "lots")
    assert bad.ret == pytest.ExitCode.USAGE_ERROR
    bad.stderr.fnmatch_lines(["*gradcheck-lab: --gradcheck-case-memory*expected a size*'lots'*"])
    if not LINUX:
        return
    cases = pytester.path / "cases"
    cases.mkdir()
    write_cases(cases, "data_limit")
    pytester.makeini("[pytest]\ngradcheck_case_memory = 768M\n")
    ran = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:xdist")
    ran.assert_outcomes(passed=1)
    assert (pytester.path / "cases" / "data_limit.pid").read_text() == str(768 * 2**20)


# --- the worker dies with its parent ---------------------------------------------------------

@pytest.mark.slow
@pytest.mark.skipif(not LINUX, reason="PR_SET_PDEATHSIG is Linux's")
def test_the_worker_dies_with_its_parent(tmp_path: Path) -> None:
    path = write_cases(tmp_path, "sleeps")
    parent = subprocess.Popen([sys.executable, "-m", "gradcheck_lab", "run", str(path),
                               "--case-timeout", "600"], cwd=tmp_path,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    worker = None
    try:
        assert wait_until(lambda: (tmp_path / "sleeps.pid").exists(), 60)
        worker = pid_of(tmp_path, "sleeps")
        assert worker != parent.pid and not gone(worker)
        parent.kill()  # the parent only, not its process group
        parent.wait()
        assert wait_until(lambda: gone(worker), 5), "the worker outlived its parent"
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
        if worker is not None:
            kill_quietly(worker)


@pytest.mark.slow
@pytest.mark.skipif(not POSIX, reason="needs fork")
def test_the_watchdog_ends_a_process_whose_parent_died(tmp_path: Path) -> None:
    """Where no PR_SET_PDEATHSIG comes: the watchdog thread alone, in a process whose parent
    is SIGKILLed."""
    child = textwrap.dedent("""
        import sys, threading, time
        from gradcheck_lab.run.isolation import _watchdog
        threading.Thread(target=_watchdog, args=(int(sys.argv[1]),), daemon=True).start()
        time.sleep(60)
    """)
    parent_code = textwrap.dedent(f"""
        import os, subprocess, sys, time
        child = subprocess.Popen([sys.executable, "-c", {child!r}, str(os.getpid())])
        print(child.pid, flush=True)
        time.sleep(60)
    """)
    parent = subprocess.Popen([sys.executable, "-c", parent_code], stdout=subprocess.PIPE,
                              text=True, start_new_session=True)
    pid = None
    try:
        assert parent.stdout is not None
        pid = int(parent.stdout.readline())
        time.sleep(2.0)  # the child has imported the package and started its watchdog
        assert not gone(pid)
        parent.kill()
        parent.wait()
        assert wait_until(lambda: gone(pid), 5), "the watchdog did not end the process"
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
        if pid is not None:
            kill_quietly(pid)


# --- process groups --------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.skipif(not LINUX, reason="strays are found in /proc")
def test_a_child_an_impl_forked_is_killed_when_its_case_ends(tmp_path: Path) -> None:
    """The next case, in the same worker, already finds the child gone; and the run does not
    wait on the output pipes the child held."""
    path = write_cases(tmp_path, "forks", "child_is_gone")
    done, results = run(tmp_path, path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert [r["status"] for r in results.values()] == ["pass", "pass"], results
    assert gone(pid_of(tmp_path, "child"))


@pytest.mark.slow
@pytest.mark.skipif(not LINUX, reason="the worker adopts orphans as a Linux subreaper")
def test_a_daemon_that_left_the_group_with_setsid_is_killed_when_its_case_ends(
        tmp_path: Path) -> None:
    path = write_cases(tmp_path, "daemonizes", "daemon_is_gone")
    try:
        _, results = run(tmp_path, path)
        assert [r["status"] for r in results.values()] == ["pass", "pass"], results
        assert gone(pid_of(tmp_path, "daemon"))
    finally:
        if (tmp_path / "daemon.pid").exists():
            kill_quietly(pid_of(tmp_path, "daemon"))


@pytest.mark.slow
@pytest.mark.skipif(not LINUX, reason="descendants are found in /proc")
def test_stopping_the_worker_kills_a_daemon_that_left_its_group(tmp_path: Path) -> None:
    path = write_cases(tmp_path, "daemonizes_then_sleeps")
    try:
        done, _ = run(tmp_path, path, "--case-timeout", "3")
        assert done.returncode == 2, done.stdout + done.stderr
        assert wait_until(lambda: gone(pid_of(tmp_path, "daemon")), 5)
    finally:
        if (tmp_path / "daemon.pid").exists():
            kill_quietly(pid_of(tmp_path, "daemon"))


@pytest.mark.slow
@pytest.mark.skipif(not LINUX, reason="the guardian finds orphans by their environment in /proc")
def test_a_run_killed_with_sigkill_leaves_no_daemon_behind(tmp_path: Path) -> None:
    """No handler of the run sees SIGKILL: the worker dies with it (PR_SET_PDEATHSIG), and the
    worker's guardian kills the daemon its impl left behind after setsid()."""
    path = write_cases(tmp_path, "daemonizes_then_sleeps")
    run = subprocess.Popen([sys.executable, "-m", "gradcheck_lab", "run",
                            str(path.relative_to(tmp_path))], cwd=tmp_path,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert wait_until(lambda: (tmp_path / "daemon.pid").exists(), 120)
        daemon = pid_of(tmp_path, "daemon")
        assert not gone(daemon)
        run.kill()
        run.wait()
        assert wait_until(lambda: gone(daemon), 10)
    finally:
        run.kill()
        if (tmp_path / "daemon.pid").exists():
            kill_quietly(pid_of(tmp_path, "daemon"))


@pytest.mark.slow
@pytest.mark.skipif(not POSIX, reason="needs fork and process groups")
def test_stopping_the_worker_kills_its_process_group(tmp_path: Path) -> None:
    path = write_cases(tmp_path, "forks_then_sleeps")
    try:
        done, results = run(tmp_path, path, "--case-timeout", "3")
        assert done.returncode == 2
        assert "ran past the case time budget of 3 s" in results["forks_then_sleeps"]["message"]
        assert wait_until(lambda: gone(pid_of(tmp_path, "child")), 5)
    finally:
        if (tmp_path / "child.pid").exists():
            kill_quietly(pid_of(tmp_path, "child"))


@pytest.mark.skipif(not POSIX, reason="needs signals and process groups")
def test_a_second_signal_while_the_worker_stops_cannot_skip_the_kills(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A double Ctrl-C: the first stops the run, the second lands in the teardown (here in
    the kill of the group and in the wait on the guardian). Every kill is still made, and
    the interrupt comes once the worker is stopped, to the handler that was there."""
    import io

    from gradcheck_lab.run import isolation

    done: list[str] = []

    def interrupted(what: str) -> None:
        done.append(what)
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.05)  # where an interrupt would be raised

    class Process:
        pid = 123456789

        def terminate(self) -> None:
            done.append("terminate")

        def join(self, timeout: float | None = None) -> None:
            pass

        def is_alive(self) -> bool:
            return False

    class Guardian:
        stdin = io.BytesIO()

        def wait(self, timeout: float | None = None) -> int:
            interrupted("guardian told")
            return 0

    monkeypatch.setattr(isolation, "kill_group", lambda pid: interrupted("group"))
    monkeypatch.setattr(isolation, "kill_marked", lambda token: done.append("marked"))
    worker = isolation.CaseWorker()
    worker._process, worker._guardian, worker._token = Process(), Guardian(), "token"
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            worker.stop()
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        signal.signal(signal.SIGINT, before)
    # The kills before the guardian is let go: were the teardown cut short, it kills them.
    assert done == ["group", "marked", "terminate", "guardian told"]
    assert worker._process is None and worker._guardian is None


def _descendants(pid: int) -> set[int]:
    found, frontier = set(), [pid]
    while frontier:
        parent = frontier.pop()
        for task in Path(f"/proc/{parent}/task").glob("*"):
            with contextlib.suppress(OSError):
                children = {int(c) for c in (task / "children").read_text().split()}
                frontier += children - found
                found |= children
    return found


@pytest.mark.slow
@pytest.mark.skipif(not LINUX, reason="processes are found in /proc")
@pytest.mark.parametrize(("signal_name", "count", "gap"), [
    ("SIGINT", 2, 0.01),    # a double Ctrl-C
    ("SIGINT", 2, 0.002),
    ("SIGINT", 6, 0.005),
    ("SIGTERM", 6, 0.005),
])
def test_a_burst_of_signals_ends_the_run_in_one_line_and_leaves_no_process_behind(
        tmp_path: Path, signal_name: str, count: int, gap: float) -> None:
    path = write_cases(tmp_path, "first", "daemonizes_then_sleeps")
    number = getattr(signal, signal_name)
    run = subprocess.Popen([sys.executable, "-m", "gradcheck_lab", "run", path.name, "--json",
                            "out.json", "--jsonl", "out.jsonl"], cwd=tmp_path,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           # Ctrl-C's default, even where the test's parent ignores it.
                           preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        assert wait_until(lambda: (tmp_path / "daemon.pid").exists(), 120)
        started = _descendants(run.pid)
        daemon = pid_of(tmp_path, "daemon")
        for _ in range(count):
            run.send_signal(number)
            time.sleep(gap)
        _, err = run.communicate(timeout=120)
        assert run.returncode == 128 + number, err
        assert err.splitlines() == [f"gradcheck-lab: stopped by {signal_name} after 1 "
                                    "result(s); those are in --json/--jsonl where given"]
        assert json.loads((tmp_path / "out.json").read_text())["summary"]["pass"] == 1
        assert len((tmp_path / "out.jsonl").read_text().splitlines()) == 1
        left = started | {daemon}
        assert wait_until(lambda: all(gone(pid) for pid in left), 10), \
            [pid for pid in left if not gone(pid)]
    finally:
        run.kill()
        run.wait()
        if (tmp_path / "daemon.pid").exists():
            kill_quietly(pid_of(tmp_path, "daemon"))


# --- training steps: the key and the label ---------------------------------------------------

@pytest.mark.slow
@pytest.mark.skipif(not LINUX, reason="RLIMIT_DATA is enforced on Linux")
def test_a_training_step_that_hangs_dies_or_allocates_is_an_error_at_training_step(
        tmp_path: Path) -> None:
    (tmp_path / "steps.py").write_text(STEPS, encoding="utf-8")
    path = tmp_path / "steps.yaml"
    path.write_text("cases:\n" + "".join(
        f"  - name: {name}\n    inputs:\n      w: [0.5, -0.25]\n"
        f"      x: {{value: [1.0, 2.0], requires_grad: false}}\n"
        f"    output: (sum(w * x) - 1)**2\n"
        f"    training:\n      step: steps.py:{name}\n      params: [w]\n      lr: 0.05\n"
        for name in ("sleeps", "exits", "allocates")), encoding="utf-8")
    done, results = run(tmp_path, path, "--case-timeout", "2", "--case-memory", "1G")
    assert done.returncode == 2
    expected = {
        "sleeps": "steps.py:sleeps ran past the case time budget of 2 s (--case-timeout)",
        "exits": "the worker process died while checking this case (exit status 0): "
                 "steps.py:exits may have ended or crashed the interpreter",
        "allocates": "steps.py:allocates allocated beyond the case memory budget of 1 GiB "
                     "(--case-memory): MemoryError",
    }
    for name, words in expected.items():
        line = line_of(path, "step:", after=f"name: {name}")
        message = results[name]["message"]
        assert results[name]["status"] == "error"
        assert message.startswith(f"{path.name}:{line}: training.step: {words}"), message


# --- the Python API --------------------------------------------------------------------------

@pytest.mark.slow
def test_run_file_runs_user_code_in_a_worker_under_the_budget_unless_told_not_to(
        tmp_path: Path) -> None:
    from gradcheck_lab import run_file

    both = write_cases(tmp_path, "first", "sleeps", file="both.yaml")
    results = {r.case: r for r in run_file(both, case_timeout=2)}
    assert results["first"].status == "pass"
    assert pid_of(tmp_path, "first") != os.getpid()
    assert results["sleeps"].status == "error"
    assert "impl: impls.py:sleeps ran past the case time budget of 2 s" in \
        results["sleeps"].message
    one = write_cases(tmp_path, "first", file="one.yaml")
    (result,) = run_file(one)  # the default budget: in a worker too
    assert result.status == "pass" and pid_of(tmp_path, "first") != os.getpid()
    (result,) = run_file(one, case_timeout=None)  # in this process, for a debugger
    assert result.status == "pass" and pid_of(tmp_path, "first") == os.getpid()
    with pytest.raises(CaseError, match="case_memory: expected a positive number of bytes"):
        run_file(one, case_memory="4G")


@pytest.mark.slow
def test_run_file_from_a_script_without_a_main_guard_shares_one_worker(tmp_path: Path) -> None:
    """The worker does not run the caller's script again (spawn would import it), one worker
    serves every call, and it ends with the script."""
    write_cases(tmp_path, "first", file="one.yaml")
    write_cases(tmp_path, "after", file="two.yaml")
    script = tmp_path / "script.py"
    script.write_text("import os\nimport gradcheck_lab\n\nprint('top level', os.getpid())\n"
                      "for name in ('one.yaml', 'two.yaml'):\n"
                      "    print([r.status for r in gradcheck_lab.run_file(name)])\n",
                      encoding="utf-8")
    done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert [line.split()[0] for line in lines] == ["top", "['pass']", "['pass']"], lines
    worker = pid_of(tmp_path, "first")
    assert worker == pid_of(tmp_path, "after") != int(lines[0].split()[-1])
    assert wait_until(lambda: gone(worker), 5)


@pytest.mark.slow
def test_the_worker_starts_ahead_only_when_a_case_will_need_it(tmp_path: Path) -> None:
    from gradcheck_lab.casefile import load_file
    from gradcheck_lab.run.files import Isolation

    path = write_cases(tmp_path, "after")
    spec = tmp_path / "spec.yaml"
    spec.write_text("inputs:\n  x: [1.0, 2.0]\noutput: sum(x)\n", encoding="utf-8")
    with Isolation(Settings(case_timeout=60)) as isolation:
        isolation.prepare(load_file(spec))
        assert isolation.worker is None  # a spec runs in this process: nothing to start
        (with_impl,) = load_file(path)
        isolation.prepare([with_impl])
        assert isolation.worker is not None
        started = isolation.worker._process
        assert started.is_alive()  # started, not waited for
        (result,) = isolation.run(with_impl)
        assert result.status == "pass", result.message
        assert isolation.worker._process is started  # the worker started ahead ran the case
        assert pid_of(tmp_path, "after") == started.pid


@pytest.mark.slow
@pytest.mark.skipif(not LINUX, reason="/proc and setsid")
def test_a_worker_killed_by_its_impl_while_a_setsid_child_holds_its_pipe_is_said_at_once(
        tmp_path: Path) -> None:
    # The impl forks a child that leaves the worker's group and tree (setsid, then the
    # worker exits): its copy of the worker's pipe kept EOF from coming, so the case waited
    # out its whole budget, and the child outlived the run holding the caller's stdout.
    (tmp_path / "impls.py").write_text(textwrap.dedent("""
        import os, time

        def setsid_then_exit(x):
            if os.fork() == 0:
                os.setsid()
                os.execvp("sleep", ["sleep", "10002"])
            time.sleep(0.3)
            os._exit(3)
        """))
    (tmp_path / "f.yaml").write_text("inputs: {x: [1.0, 2.0]}\noutput: sum(x * 2)\n"
                                     "impl: impls.py:setsid_then_exit\n")
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "gradcheck_lab", "run", "f.yaml",
                           "--case-timeout", "30"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120)  # a pipe: returns only once all close it
    assert time.monotonic() - started < 25, done.stdout
    assert "the worker process died while checking this case (exit status 3)" in done.stdout
    survivors = subprocess.run(["pgrep", "-f", "sleep 10002"], capture_output=True,
                               text=True).stdout.split()
    for pid in survivors:
        with contextlib.suppress(OSError):
            os.kill(int(pid), signal.SIGKILL)
    assert not survivors
