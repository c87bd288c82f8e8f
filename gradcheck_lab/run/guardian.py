"""The guardian of a worker process: run as a script (standard library only, no package
import), it waits on a pipe from the run's process. A line "stop" before the pipe closes is a
run that stopped its worker itself; the pipe closing without it is a run that died, however
(``kill -9`` included, which no handler in the run sees). The guardian then kills what the
worker leaves behind: its process group, and on Linux every process whose environment carries
the worker's token (what its impls started after ``setsid()``, orphaned to init when the
worker died with the run).

    python guardian.py TOKEN WORKER_PID
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys

# The environment variable that marks a worker and what its impls start (``kill_marked``).
WORKER_TOKEN = "GRADCHECK_LAB_WORKER"


def main(token: str, worker: int) -> int:
    told = sys.stdin.buffer.read()
    if told.strip() == b"stop":
        return 0
    kill_left_behind(token, worker)
    return 0


def kill_left_behind(token: str, worker: int) -> None:
    if hasattr(os, "killpg"):
        with contextlib.suppress(OSError):
            os.killpg(worker, signal.SIGKILL)
    for _ in range(3):  # a process that forked meanwhile is caught on the next pass
        if not kill_marked(token):
            break


def kill_marked(token: str) -> int:
    """SIGKILL every process whose environment holds this worker's token: what its impls
    started and that neither its process group nor its tree holds any more (a setsid()
    child whose parent, the worker, died: it is init's now). Linux, same user; else none.
    Returns how many were signalled."""
    if not token or not os.path.isdir("/proc"):
        return 0
    mark = f"{WORKER_TOKEN}={token}".encode()
    killed = 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry.name}/environ", "rb") as file:
                marked = mark in file.read().split(b"\0")
        except OSError:
            continue
        if marked:
            with contextlib.suppress(OSError):
                os.kill(int(entry.name), signal.SIGKILL)
                killed += 1
    return killed


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the run's Ctrl-C is the run's to answer
    raise SystemExit(main(sys.argv[1], int(sys.argv[2])))
