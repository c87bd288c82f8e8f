"""Run cases with an ``impl`` or a training step file in a worker process, under a per-case
time budget and a memory budget for the worker.

An impl is the user's own code: it may loop forever, sleep in C++, swallow the signals an
in-process alarm would send, allocate the machine's memory or fork processes that outlive it.
So a case with user code is checked in a worker process (started once, torch imported once,
reused case after case):

- a case that runs past its time budget has its worker killed and becomes an ``error``
  result, and the next case gets a fresh worker;
- the worker's data segment is limited (``RLIMIT_DATA``: unlike ``RLIMIT_AS`` it leaves the
  address space that torch and CUDA reserve but never touch alone), so an allocation beyond
  the budget fails at once; the case becomes an ``error`` and the worker is replaced, as its
  heap may be left fragmented;
- the worker leads its own process group: what an impl forked is killed when the case ends
  (Linux) and with the worker when it is stopped (POSIX);
- the worker dies with its parent: ``PR_SET_PDEATHSIG`` on Linux, and a watchdog thread that
  notices the parent is gone on any POSIX system; and a guardian process (``guardian.py``)
  kills what the worker's impls started when the parent dies without stopping the worker,
  ``kill -9`` included.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import re
import secrets
import signal
import sys
import threading
import time
import traceback
import types
from collections.abc import Callable, Iterator
from multiprocessing.connection import Connection
from typing import Any

from gradcheck_lab.casefile import Case, ImplRef
from gradcheck_lab.results import Result
from gradcheck_lab.run.budget import error_results
from gradcheck_lab.run.guardian import WORKER_TOKEN, kill_marked
from gradcheck_lab.settings import Settings, format_size

_KILL_GRACE_S = 2.0
# Starting a worker (importing torch) is not charged to the first case's budget.
_STARTUP_TIMEOUT_S = 300.0
_WATCHDOG_INTERVAL_S = 0.5
_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>
_POLL_S = 0.25  # how often a waiting parent looks whether the worker is still alive
_PR_SET_CHILD_SUBREAPER = 36
# What an allocation beyond the budget raises: MemoryError (numpy's _ArrayMemoryError is one),
# or torch's RuntimeError from its CPU allocator.
OUT_OF_MEMORY = re.compile(r"\w*MemoryError\b|can't allocate memory|DefaultCPUAllocator")
_USER_CODE_KEYS = ("impl", "training.step")


class WorkerStartError(RuntimeError):
    """The worker process did not get as far as importing torch."""


class CaseWorker:
    """A reusable worker process that checks one case at a time, its data segment limited to
    ``memory`` bytes (None: no limit)."""

    def __init__(self, memory: int | None = None) -> None:
        self._context = multiprocessing.get_context("spawn")
        self._memory = memory
        self._process: Any = None
        self._connection: Connection | None = None
        self._ready = False  # the started worker has said it is ready

    def run(self, case: Case, settings: Settings, timeout: float) -> list[Result]:
        """All results of ``case`` (every dtype × device), or error results on a timeout, a
        death of the worker or an allocation beyond the memory budget."""
        key, label = user_code(case)
        try:
            self._ensure_started()
        except WorkerStartError as exc:
            return error_results(case, key, str(exc))
        assert self._connection is not None
        try:
            # The budget starts now. The caller's working directory goes too: a worker may
            # outlive a chdir (run_file's is shared by every call).
            self._connection.send((case, settings, _working_directory()))
            if self._answered(timeout):
                kind, payload = self._connection.recv()
                if kind == "results":
                    return self._over_budget(case, payload)
                if self._memory is not None and OUT_OF_MEMORY.search(payload):
                    self.stop()
                    return error_results(case, key, self._memory_message(label, payload))
                return error_results(case, key, f"internal error in the worker: {payload}")
        except (EOFError, BrokenPipeError, ConnectionResetError, OSError):
            how = self._exit_text()
            self.stop()
            return error_results(case, key, f"the worker process died while checking this "
                                            f"case ({how}): {label} may have ended or crashed "
                                            "the interpreter")
        self.stop()
        return error_results(case, key, f"{label} ran past the case time budget of "
                                        f"{timeout:g} s (--case-timeout); the worker was "
                                        "stopped")

    def _answered(self, timeout: float) -> bool:
        """Whether the worker replied within ``timeout``; an EOFError where it died first,
        even while a process it started (after setsid()) holds its end of the pipe open."""
        assert self._connection is not None
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if self._connection.poll(max(0.0, min(_POLL_S, left))):
                return True
            if self._process is not None and not self._process.is_alive():
                raise EOFError("the worker died")
            if left <= 0:
                return False

    def stop(self) -> None:
        """Kill the worker and whatever its impls started, then let its guardian go. SIGINT
        and SIGTERM are held meanwhile (``SignalsHeld``): a second Ctrl-C cannot skip the
        kills, and a daemon left behind would outlive the run."""
        SignalsHeld.around(self._kill)

    def _kill(self) -> None:
        # The kills first: the guardian is told to stand down only once they are done, so
        # that a teardown cut short by anything still leaves it to kill them at exit.
        process, self._process = self._process, None
        if process is not None:
            if process.pid is not None:
                kill_group(process.pid)  # the worker and whatever its impls forked
            kill_marked(getattr(self, "_token", ""))  # and what left both tree and group
            process.terminate()  # where there are no process groups
            process.join(_KILL_GRACE_S)
            if process.is_alive():
                process.kill()
                process.join()
        guardian, self._guardian = getattr(self, "_guardian", None), None
        _stop_guardian(guardian)
        if self._connection is not None:
            self._connection.close()
        self._connection = None
        self._ready = False

    def _over_budget(self, case: Case, results: list[Result]) -> list[Result]:
        """The results, those of an allocation beyond the memory budget said so; after one,
        the worker is stopped (a fresh one for the next case)."""
        if self._memory is None:
            return results
        hit = False
        for result in results:
            if result.status == "error" and OUT_OF_MEMORY.search(result.message):
                key, label = user_code(case)
                found = re.match(rf"{re.escape(case.file)}:\d+(?::\d+)?: ([\w.]+): (.*)",
                                 result.message)
                if found and found[1] in _USER_CODE_KEYS:
                    key = found[1]
                    if key == "training.step" and case.training is not None:
                        label = case.training.step_label
                    elif case.impl_label is not None:
                        label = case.impl_label
                    detail = found[2]
                else:  # the package's own work ran out (an internal error's message)
                    label = f"the check of {label}"
                    detail = result.message.split(": ", 1)[-1]
                result.message = (f"{case.file}:{case.line_of(key)}: {key}: "
                                  f"{self._memory_message(label, detail)}")
                hit = True
        if hit:
            self.stop()
        return results

    def _memory_message(self, label: str, detail: str) -> str:
        assert self._memory is not None
        # "X raised MemoryError: ..." -> "MemoryError: ...": the label is said already.
        detail = detail.strip().splitlines()[-1] if detail.strip() else ""
        detail = detail.split(" raised ", 1)[-1]
        return (f"{label} allocated beyond the case memory budget of "
                f"{format_size(self._memory)} (--case-memory): {detail}")

    def _exit_text(self) -> str:
        """How the worker ended: ``exit status 3``, ``killed by SIGSEGV``."""
        if self._process is None:
            return "no process"
        self._process.join(_KILL_GRACE_S)
        code = self._process.exitcode
        if code is None:
            return "its connection closed"
        if code >= 0:
            return f"exit status {code}"
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        if -code == getattr(signal, "SIGKILL", None):
            name += ", perhaps by the system for want of memory"
        return f"killed by {name}"

    def start(self) -> None:
        """Start the worker process without waiting for it: its imports then overlap the
        caller's own work (collecting tests, checking the cases before the first with user
        code). ``run`` waits for it to be ready."""
        if self._process is not None and self._process.is_alive():
            return
        self.stop()
        SignalsHeld.around(self._start)  # a Ctrl-C now would leave a worker started, unknown

    def _start(self) -> None:
        parent, child = self._context.Pipe()
        self._token = f"{os.getpid()}-{secrets.token_hex(8)}"
        self._process = self._context.Process(target=_serve,
                                              args=(child, os.getpid(), self._memory,
                                                    self._token),
                                              daemon=True, name="gradcheck-lab-worker")
        _resource_tracker_running()  # started without the token, which marks what to kill
        with _caller_script_hidden(), _in_environment(WORKER_TOKEN, self._token):
            self._process.start()
        child.close()
        self._connection = parent
        self._ready = False
        self._guardian = _start_guardian(self._token, self._process.pid)

    def _ensure_started(self) -> None:
        self.start()
        if self._ready:
            return
        parent = self._connection
        assert parent is not None
        try:
            reply = parent.recv() if parent.poll(_STARTUP_TIMEOUT_S) else ("failed", "no reply")
        except (EOFError, OSError):
            reply = ("failed", self._exit_text())
        if reply != ("ready", None):
            self.stop()
            detail = str(reply[1]) if isinstance(reply, tuple) and len(reply) == 2 else "?"
            budget = ""
            if self._memory is not None:
                budget = (f" (its memory budget, {format_size(self._memory)}, may be too "
                          "small: --case-memory)")
            raise WorkerStartError(f"the worker process could not start{budget}: {detail}")
        self._ready = True


class SignalsHeld:
    """SIGINT and SIGTERM held while the worker starts or stops (main thread; elsewhere no
    signal interrupts Python code): each one that comes meanwhile is noted, and given to the
    handler that was there once the work is done (one that raises, KeyboardInterrupt, raises
    then; a default action is taken then). ``hold`` may itself raise, for a signal that was
    pending when it began: callers run their work in its ``finally``."""

    def __init__(self) -> None:
        self.held: list[int] = []
        self.previous: dict[int, Any] = {}

    @classmethod
    def around(cls, work: Callable[[], None]) -> None:
        """``work()`` with the signals held, run even where holding raises a signal that was
        pending; the held ones given to their handlers after."""
        held = cls()
        try:
            held.hold()
        finally:
            try:
                work()
            finally:
                held.release()

    def hold(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for number in (signal.SIGINT, signal.SIGTERM):
            if signal.getsignal(number) is not None:  # None: not Python's, cannot be put back
                self.previous[number] = signal.signal(number, self._note)

    def _note(self, number: int, frame: object) -> None:
        self.held.append(number)

    def release(self) -> None:
        previous, self.previous = self.previous, {}
        raised: BaseException | None = None
        for number, handler in previous.items():
            for _ in range(2):  # signal.signal first runs a pending signal's handler
                try:
                    signal.signal(number, handler)
                    break
                except BaseException as exc:  # that handler's KeyboardInterrupt: put the
                    raised = raised or exc    # rest back all the same
        if raised is not None:
            raise raised
        held, self.held = self.held, []
        handlers = {number: signal.getsignal(number) for number in set(held)}
        for number in held:
            handler = handlers[number]
            if callable(handler):
                handler(number, None)
            elif handler == signal.SIG_DFL:
                os.kill(os.getpid(), number)


def _start_guardian(token: str, worker: int | None) -> Any:
    """The worker's guardian (``run/guardian.py``): it kills what the worker leaves behind
    when this process dies without stopping the worker, ``kill -9`` included. None where it
    cannot start (the worker then still dies with this process, by PR_SET_PDEATHSIG)."""
    import subprocess

    if worker is None or not hasattr(os, "killpg"):
        return None
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "guardian.py")
    try:
        # A session of its own: the terminal's Ctrl-C for this run does not reach it.
        return subprocess.Popen([sys.executable, "-S", "-E", script, token, str(worker)],
                                stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, start_new_session=True)
    except OSError:
        return None


def _stop_guardian(guardian: Any) -> None:
    """Tell the guardian this process stops the worker itself, and let it go."""
    if guardian is None:
        return
    with contextlib.suppress(OSError, ValueError):
        guardian.stdin.write(b"stop\n")
        guardian.stdin.close()
    import subprocess

    try:
        guardian.wait(_KILL_GRACE_S)
    except subprocess.TimeoutExpired:
        guardian.kill()


def _resource_tracker_running() -> None:
    """multiprocessing's resource tracker, a process of this one's that the first worker's
    start would launch with the worker's token in its environment (and the token's sweep
    would then kill it): started here first, where the platform has one."""
    with contextlib.suppress(ImportError, OSError, AttributeError):
        from multiprocessing import resource_tracker

        resource_tracker.ensure_running()


@contextlib.contextmanager
def _in_environment(name: str, value: str) -> Iterator[None]:
    """``name=value`` in this process's environment while the worker starts, so that it is in
    the environment the worker is executed with: /proc/PID/environ shows that block (not what a
    process sets later), and so does it for a process an impl forks without exec."""
    previous = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = previous


@contextlib.contextmanager
def _caller_script_hidden() -> Iterator[None]:
    """While the worker starts, ``__main__`` is an empty module: spawn would import the
    caller's script into the worker, running again whatever it does outside an ``if __name__
    == "__main__":`` guard (a script calling ``run_file``), and the worker needs nothing of
    it (impls come from files, cases and settings are the package's own classes)."""
    main = sys.modules.get("__main__")
    sys.modules["__main__"] = types.ModuleType("__main__")
    try:
        yield
    finally:
        if main is not None:
            sys.modules["__main__"] = main
        else:
            del sys.modules["__main__"]


def _working_directory() -> str | None:
    try:
        return os.getcwd()
    except OSError:  # removed meanwhile
        return None


def user_code(case: Case) -> tuple[str, str]:
    """The key and label of the user code a worker runs for ``case``: its impl file, or its
    training step file."""
    step = case.training.step if case.training is not None else None
    if isinstance(step, ImplRef) and case.training is not None:
        if isinstance(case.impl, ImplRef):  # both: which one was running is not known here
            return "impl", f"{case.impl_label} or training step {case.training.step_label}"
        return "training.step", case.training.step_label
    return "impl", case.impl_label or case.name


def kill_group(pgid: int) -> None:
    """SIGKILL to process group ``pgid`` (the worker, which leads its group) and, on Linux,
    to every descendant of it, also those that left the group with setsid()."""
    for _ in range(10):  # a descendant that forked again meanwhile is caught on the next pass
        descendants = [pid for pid, zombie in _descendants(pgid) if not zombie]
        for pid in descendants:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        if not descendants:
            break
    if hasattr(os, "killpg"):
        with contextlib.suppress(OSError):
            os.killpg(pgid, signal.SIGKILL)


def _serve(connection: Connection, parent: int, memory: int | None, token: str = "") -> None:
    """The worker's loop: receive a case, send back its results. ``token`` marks the
    environment of the worker and of every process its impls start (``kill_marked``)."""
    os.environ[WORKER_TOKEN] = token
    try:
        _guard(parent)
        _limit_memory(memory)
        import sympy  # noqa: F401 - every check derives with it
        import torch  # noqa: F401 - imported once, before the first case is timed

        from gradcheck_lab.pipeline import run_case
    except BaseException as exc:
        with contextlib.suppress(Exception):
            connection.send(("failed", f"{type(exc).__name__}: {exc}"))
        return
    connection.send(("ready", None))
    while True:
        try:
            case, settings, directory = connection.recv()
        except (EOFError, KeyboardInterrupt):
            return
        if directory is not None and directory != _working_directory():
            with contextlib.suppress(OSError):
                os.chdir(directory)
        reply: tuple[str, Any]
        try:
            reply = ("results", list(run_case(case, settings)))
        except KeyboardInterrupt:
            # Here an interrupt is the impl's own: the worker has its own process group, so a
            # Ctrl-C at the terminal reaches the parent only.
            reply = ("results", error_results(case, user_code(case)[0],
                                              f"{user_code(case)[1]} raised KeyboardInterrupt"))
        except Exception:  # the parent reports it as an internal error
            reply = ("error", traceback.format_exc(limit=5))
        kill_strays()  # before replying: a stray may hold the parent's stdout open
        try:
            connection.send(reply)
        except Exception:
            connection.send(("error", traceback.format_exc(limit=5)))


def _guard(parent: int) -> None:
    """Lead a process group of its own, and die with the parent process."""
    if hasattr(os, "setpgrp"):
        os.setpgrp()
    if sys.platform.startswith("linux"):
        import ctypes

        with contextlib.suppress(OSError, AttributeError):
            # Sent when the thread that started this worker ends: the CLI's and pytest's main
            # thread, or the caller of run_file, which stops the worker before it returns.
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL),
                                                     0, 0, 0)
        with contextlib.suppress(OSError, AttributeError):
            # Orphans of what an impl forks (a daemon's double fork after setsid()) become
            # this worker's children, not init's: kill_strays and kill_group still find them.
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    if os.getppid() != parent:  # the parent died before the signal was armed
        os._exit(1)
    threading.Thread(target=_watchdog, args=(parent,), daemon=True,
                     name="gradcheck-lab-watchdog").start()


def _watchdog(parent: int) -> None:
    """Where no signal comes with the parent's death: a new parent (init, a subreaper) means
    the old one is gone."""
    while os.getppid() == parent:
        time.sleep(_WATCHDOG_INTERVAL_S)
    if hasattr(os, "getpgrp") and os.getpgrp() == os.getpid():
        kill_group(os.getpid())  # this worker, and what its impls forked
    os._exit(1)


def _limit_memory(memory: int | None) -> None:
    """The data segment (heap and private writable mappings, where numpy's and torch's large
    buffers live) limited to ``memory`` bytes; a limit the system set lower is kept."""
    if memory is None:
        return
    try:
        import resource
    except ImportError:  # Windows: no budget
        return
    _, hard = resource.getrlimit(resource.RLIMIT_DATA)
    if hard != resource.RLIM_INFINITY:
        memory = min(memory, hard)
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_DATA, (memory, hard))


def kill_strays() -> None:
    """Kill the other processes of this worker's group (what an impl forked and left running)
    and reap those that are its children. Linux only: elsewhere they die with the worker."""
    if not (sys.platform.startswith("linux") and os.getpgrp() == os.getpid()):
        return
    for _ in range(10):  # a stray that forked again meanwhile is caught on the next pass
        found = dict(_group_members(os.getpid()))
        found.update(_descendants(os.getpid()))  # those that left the group with setsid()
        members = list(found.items())
        for pid, zombie in members:
            if not zombie:
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
        for pid, _zombie in members:
            with contextlib.suppress(OSError):  # ChildProcessError: not this worker's child
                os.waitpid(pid, 0)
        if all(zombie for _, zombie in members):
            break
        time.sleep(0.01)  # a grandchild SIGKILLed is reaped by init, not at once
    kill_marked(os.environ.get(WORKER_TOKEN, ""))  # init's now: a setsid() child orphaned


def _descendants(root: int) -> list[tuple[int, bool]]:
    """Every process below ``root`` in the process tree, from /proc/*/stat, each with whether
    it is a zombie already (Linux; elsewhere none)."""
    parents: dict[int, list[tuple[int, bool]]] = {}
    for pid, fields in _proc_stats():
        parents.setdefault(int(fields[1]), []).append((pid, fields[0] == b"Z"))
    found, frontier = [], [root]
    while frontier:
        for child in parents.get(frontier.pop(), []):
            found.append(child)
            frontier.append(child[0])
    return found


def _proc_stats() -> list[tuple[int, list[bytes]]]:
    """(pid, the fields of /proc/pid/stat after the command name) for every process but this
    one; [] where there is no /proc."""
    stats: list[tuple[int, list[bytes]]] = []
    if not os.path.isdir("/proc"):
        return stats
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as file:
                stat = file.read()
        except OSError:
            continue
        # The command name may hold spaces and parentheses: the fields follow its last ")".
        stats.append((int(entry.name), stat[stat.rfind(b")") + 2:].split()))
    return stats


def _group_members(pgrp: int) -> list[tuple[int, bool]]:
    """Processes in process group ``pgrp`` other than this one, each with whether it is a
    zombie already."""
    return [(pid, fields[0] == b"Z") for pid, fields in _proc_stats()
            if len(fields) > 2 and fields[2] == str(pgrp).encode()]
