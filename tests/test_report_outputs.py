"""Where the command line's reports go (doors/report.py, doors/cli.py): ``-`` is stdout, a
target that is a link or not a regular file is written in place and never replaced, a write
that fails is one error line and exit 2, and reports get the usual file mode."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import IO

import pytest

from gradcheck_lab.doors.cli import EXIT_ERROR, EXIT_PASS, main
from tests.conftest import CASES, REPO

CASE = str(CASES / "r144.yaml")


def test_json_dash_is_stdout_and_the_terminal_report_goes_to_stderr(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", CASE, "--json", "-"]) == EXIT_PASS
    out, err = capsys.readouterr()
    assert json.loads(out)["summary"]["pass"] == 1
    assert "1 passed" in err
    assert not Path("-").exists()


def test_a_full_device_is_one_error_line_and_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full on this platform")
    assert main(["run", CASE, "--json", "/dev/full"]) == EXIT_ERROR
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["gradcheck-lab: --json /dev/full: No space left on device"]
    assert Path("/dev/full").is_char_device()  # written to, never replaced



@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_a_jsonl_write_that_fails_is_one_error_line_and_exit_2(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", CASE, "--jsonl", "/dev/full"]) == EXIT_ERROR
    err = capsys.readouterr().err
    assert err.strip() == "gradcheck-lab: --jsonl /dev/full: No space left on device"


@pytest.mark.parametrize("option", ["--json", "--jsonl"])
def test_a_fifo_nobody_reads_is_an_error_at_once_not_a_wait(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], option: str) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    assert main(["run", CASE, option, str(fifo)]) == EXIT_ERROR
    assert f"{option} {fifo}: No such device or address" in capsys.readouterr().err


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform")
@pytest.mark.parametrize("command", ["graph", "steps"])
def test_a_drawing_to_a_fifo_nobody_reads_is_an_error_at_once_not_a_wait(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str) -> None:
    import stat
    import threading

    fifo = tmp_path / "fifo.svg"
    os.mkfifo(fifo)
    # A hang guard: a drawing that waited for a reader gets one after 60 s (which goes at
    # once), and the test fails instead of hanging.
    reader = threading.Timer(60, lambda: os.close(os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)))
    reader.start()
    try:
        assert main([command, CASE, "-o", str(fifo)]) == EXIT_ERROR
    finally:
        reader.cancel()
    err = capsys.readouterr().err
    assert err.strip() == f"gradcheck-lab {command}: -o {fifo}: No such device or address"
    assert stat.S_ISFIFO(fifo.stat().st_mode)  # written in place, never replaced


def _stdout_that_fails(how: str) -> IO[str]:
    if how == "ENOSPC":
        return open("/dev/full", "w")  # the test closes it
    read, write = os.pipe()
    os.close(read)  # the reader went away: EPIPE (Python ignores SIGPIPE)
    return os.fdopen(write, "w")


_EVERY_COMMAND = {
    "run": ["run", CASE],
    "explain": ["explain", CASE],
    "schema": ["schema"],
    "merge": ["merge", "{report}", "{report}"],
    "graph": ["graph", CASE, "-o", "{tmp}/g.svg"],
    "steps": ["steps", CASE, "-o", "{tmp}/s.svg"],
    "new": ["new", "made"],
    "help": ["--help"],
}


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
@pytest.mark.parametrize("how", ["ENOSPC", "EPIPE"])
@pytest.mark.parametrize("command", list(_EVERY_COMMAND))
def test_a_write_to_stdout_that_fails_is_one_line_and_exit_2_for_every_command(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
        command: str, how: str) -> None:
    report = tmp_path / "r.json"
    report.write_text(json.dumps({"results": [{"status": "pass"}]}))
    argv = [word.format(report=report, tmp=tmp_path) for word in _EVERY_COMMAND[command]]
    monkeypatch.chdir(tmp_path)
    stdout = _stdout_that_fails(how)
    monkeypatch.setattr(sys, "stdout", stdout)
    try:
        assert main(argv) == EXIT_ERROR
    finally:
        stdout.close()
    what = ("No space left on device" if how == "ENOSPC"
            else "its reader closed it early (broken pipe)")
    name = "" if command == "help" else f" {command}"
    assert capsys.readouterr().err.splitlines() == [f"gradcheck-lab{name}: stdout: {what}"]


@pytest.mark.slow
@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_a_full_stdout_or_a_closed_pipe_ends_the_command_in_one_line_without_a_traceback(
        ) -> None:
    command = [sys.executable, "-m", "gradcheck_lab", "schema"]
    with open("/dev/full", "w") as full:
        done = subprocess.run(command, stdout=full, stderr=subprocess.PIPE, text=True,
                              timeout=120)
    assert (done.returncode, done.stderr) == (
        EXIT_ERROR, "gradcheck-lab schema: stdout: No space left on device\n")
    closed = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True)
    assert closed.stdout is not None
    closed.stdout.close()  # as `| head -c 0` would
    _, err = closed.communicate(timeout=120)
    assert (closed.returncode, err) == (
        EXIT_ERROR, "gradcheck-lab schema: stdout: its reader closed it early (broken pipe)\n")


def test_a_link_is_written_through_and_stays_a_link(tmp_path: Path) -> None:
    target = tmp_path / "real.json"
    target.write_text("old")
    link = tmp_path / "report.json"
    link.symlink_to(target)
    assert main(["run", CASE, "--json", str(link)]) == EXIT_PASS
    assert link.is_symlink()
    assert json.loads(target.read_text())["summary"]["pass"] == 1


def test_a_report_gets_the_mode_a_plain_open_gives(tmp_path: Path) -> None:
    previous = os.umask(0o027)
    try:
        assert main(["run", CASE, "--json", str(tmp_path / "r.json"),
                     "--jsonl", str(tmp_path / "r.jsonl")]) == EXIT_PASS
    finally:
        os.umask(previous)
    assert (tmp_path / "r.json").stat().st_mode & 0o777 == 0o640
    assert (tmp_path / "r.jsonl").stat().st_mode & 0o777 == 0o640


@pytest.mark.slow
def test_a_reader_that_goes_away_ends_the_report_not_the_run(tmp_path: Path) -> None:
    report = tmp_path / "r.json"
    run = subprocess.Popen([sys.executable, "-m", "gradcheck_lab", "run", CASE,
                            "--json", str(report)], cwd=REPO, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
    assert run.stdout is not None
    run.stdout.close()  # as `| head -c 0` would
    _, err = run.communicate(timeout=300)
    assert run.returncode == EXIT_ERROR
    assert json.loads(report.read_text())["summary"]["pass"] == 1
    assert "broken pipe" in err and "Traceback" not in err


def _children(pid: int) -> set[int]:
    found = set()
    for task in Path(f"/proc/{pid}/task").glob("*"):
        text = (task / "children").read_text() if (task / "children").exists() else ""
        found.update(int(child) for child in text.split())
    return found


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="needs /proc")
@pytest.mark.parametrize(("signal_name", "status"), [("SIGINT", 130), ("SIGTERM", 143)])
def test_a_signal_ends_the_run_with_its_status_the_results_so_far_and_no_worker_left(
        tmp_path: Path, signal_name: str, status: int) -> None:
    import signal
    import time

    (tmp_path / "a.yaml").write_text((CASES / "r144.yaml").read_text())
    (tmp_path / "slow.py").write_text("import time\n\ndef slow(x):\n    time.sleep(60)\n"
                                      "    return x * x\n")
    (tmp_path / "b.yaml").write_text("inputs:\n  x: [1.0]\noutput: x * x\nimpl: slow.py:slow\n")
    run = subprocess.Popen([sys.executable, "-m", "gradcheck_lab", "run", ".", "--json",
                            "out.json", "--jsonl", "out.jsonl"], cwd=tmp_path,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines = tmp_path / "out.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (lines.exists() and lines.read_text()):
        time.sleep(0.2)  # until a.yaml's result is written; b.yaml's impl then sleeps
    time.sleep(1.0)
    workers = _children(run.pid)
    assert workers, "the impl's worker process should be running"
    run.send_signal(getattr(signal, signal_name))
    _, err = run.communicate(timeout=60)
    assert run.returncode == status, err
    assert "Traceback" not in err and f"stopped by {signal_name} after 1 result" in err
    assert json.loads((tmp_path / "out.json").read_text())["summary"]["pass"] == 1
    time.sleep(0.5)
    assert not [pid for pid in workers if Path(f"/proc/{pid}").exists()
                and "zombie" not in Path(f"/proc/{pid}/status").read_text()]


@pytest.mark.slow
def test_sigterm_during_a_spec_only_check_ends_the_run_not_the_case(tmp_path: Path) -> None:
    # No impl: the check runs in this process, where the pipeline turns a case's own
    # exceptions into error results; SIGTERM must pass through that, as SIGINT does.
    import signal
    import time

    (tmp_path / "a.yaml").write_text((CASES / "r144.yaml").read_text())
    (tmp_path / "b.yaml").write_text(
        "cases:\n" + "".join(
            f"  - name: slow{i}\n    inputs: {{x: {{shape: [400, 400], init: randn, "
            f"seed: {i}}}}}\n    points: 50\n    output: sum(tanh(x @ x) @ x)\n"
            for i in range(3)))
    run = subprocess.Popen([sys.executable, "-m", "gradcheck_lab", "run", ".", "--jsonl",
                            "out.jsonl"], cwd=tmp_path, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
    lines = tmp_path / "out.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (lines.exists() and lines.read_text()):
        time.sleep(0.2)
    time.sleep(1.5)  # inside slow0's check
    run.send_signal(signal.SIGTERM)
    out, err = run.communicate(timeout=60)
    assert run.returncode == 143, out + err
    assert "internal error" not in out and "slow1" not in out
    assert "stopped by SIGTERM after 1 result" in err


def test_the_first_signal_raises_and_a_burst_after_it_is_only_noted() -> None:
    """A second Ctrl-C, or SIGTERM sent again and again, cannot cut short what the first
    began (the workers' teardown, the reports): it is noted, never raised; afterwards the
    process, on its way out, ignores them."""
    import signal
    import time

    from gradcheck_lab.doors.cli import Signals, Terminated

    before = {number: signal.getsignal(number) for number in (signal.SIGINT, signal.SIGTERM)}
    signals = Signals()
    try:
        with signals:
            with pytest.raises(Terminated):
                os.kill(os.getpid(), signal.SIGTERM)
                for _ in range(1000):
                    time.sleep(0.001)
            for number in (signal.SIGINT, signal.SIGTERM, signal.SIGINT):
                os.kill(os.getpid(), number)  # noted only: nothing is raised here
                time.sleep(0.01)
        assert signals.caught[0] == signal.SIGTERM and signal.SIGINT in signals.caught
        assert (signals.status, signals.name) == (143, "SIGTERM")
        assert signal.getsignal(signal.SIGTERM) == signal.SIG_IGN
    finally:
        for number, handler in before.items():
            signal.signal(number, handler)


def test_without_a_signal_the_callers_handlers_are_back() -> None:
    import signal

    from gradcheck_lab.doors.cli import Signals

    before = {number: signal.getsignal(number) for number in (signal.SIGINT, signal.SIGTERM)}
    with Signals() as signals:
        assert signal.getsignal(signal.SIGTERM) != before[signal.SIGTERM]
    assert signals.status is None
    assert {n: signal.getsignal(n) for n in (signal.SIGINT, signal.SIGTERM)} == before


# A signal while the command line's modules load: sent by an import hook at the moment
# gradcheck_lab.doors.cli is imported, so the test does not depend on timing.
_SIGNAL_WHILE_LOADING = """\
import importlib.abc, os, signal, sys
signal.signal(signal.SIGINT, signal.default_int_handler)  # even where the parent ignores it
class Hook(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name == "gradcheck_lab.doors.cli":
            os.kill(os.getpid(), getattr(signal, sys.argv[1]))
        return None
sys.meta_path.insert(0, Hook())
from gradcheck_lab.doors.entry import main
status = main(["run", sys.argv[2]])
for more in sys.argv[3:]:  # the rest of a burst, once the first has decided the exit
    os.kill(os.getpid(), getattr(signal, more))
sys.exit(status)
"""


@pytest.mark.parametrize("burst", [(), ("SIGTERM", "SIGINT", "SIGTERM")],
                         ids=["one", "burst"])
@pytest.mark.parametrize(("signal_name", "status"), [("SIGINT", 130), ("SIGTERM", 143)])
def test_a_signal_while_the_command_line_loads_ends_it_in_one_line(
        signal_name: str, status: int, burst: tuple[str, ...]) -> None:
    done = subprocess.run([sys.executable, "-c", _SIGNAL_WHILE_LOADING, signal_name, CASE,
                           *burst], capture_output=True, text=True, timeout=120)
    assert done.returncode == status, done.stderr
    word = "interrupted" if signal_name == "SIGINT" else "terminated"
    assert done.stderr.strip().splitlines() == [f"gradcheck-lab: {word}"]


def test_importing_the_package_loads_none_of_its_modules_until_a_name_is_used() -> None:
    code = ("import sys, gradcheck_lab\n"
            "print(sorted(m for m in sys.modules if m.startswith('gradcheck_lab')))\n"
            "gradcheck_lab.check\n"
            "print('gradcheck_lab.doors.api' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, cwd=REPO)
    first, second = done.stdout.strip().splitlines()
    assert first == "['gradcheck_lab', 'gradcheck_lab.version']", done.stderr
    assert second == "True"


def test_sigterm_inside_user_code_stops_the_check_and_is_never_the_cases_error() -> None:
    # The command line's SIGTERM lands wherever the main thread is: inside a backward it is
    # not the backward's failure (an error result, the run going on) but the run's end.
    import torch

    import gradcheck_lab
    from gradcheck_lab.errors import Terminated, raised_by_user_code

    class Stopped(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return x * 2

        @staticmethod
        def backward(ctx, grad):
            raise Terminated  # as the handler raises it, mid-backward

    assert not raised_by_user_code(Terminated())
    with pytest.raises(Terminated):
        gradcheck_lab.check("sum(2 * x)", {"x": [1.0, 2.0]},
                            impl=lambda x: Stopped.apply(x).sum())
