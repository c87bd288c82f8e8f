"""The ``gradcheck-lab`` command's entry point: imports nothing but the standard library until
it is running, so that Ctrl-C (or SIGTERM) while the command line's modules load ends the
command as it would end a run (exit 130 or 143, one line, no traceback)."""

from __future__ import annotations

import signal
import sys
from collections.abc import Sequence

EXIT_INTERRUPTED, EXIT_TERMINATED = 130, 143  # as doors.cli's, which is not loaded yet


def main(argv: Sequence[str] | None = None) -> int:
    previous = signal.getsignal(signal.SIGTERM)
    signal.signal(signal.SIGTERM, _terminated)  # until the command line takes over
    try:
        from gradcheck_lab.doors.cli import main as command_line
    except KeyboardInterrupt:
        _ignore_more()  # a burst: the rest of it must not cut the one line short
        return _said("interrupted", EXIT_INTERRUPTED)
    except _Terminated:
        _ignore_more()
        return _said("terminated", EXIT_TERMINATED)
    signal.signal(signal.SIGTERM, previous)
    return command_line(argv)


def _ignore_more() -> None:
    """Both signals ignored from here to the exit: the first one decided it, and a default
    action or Python's KeyboardInterrupt at shutdown would replace the exit status and the
    line with a kill or a traceback."""
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.SIG_IGN)


class _Terminated(BaseException):
    pass


def _terminated(signum: int, frame: object) -> None:
    raise _Terminated


def _said(what: str, code: int) -> int:
    print(f"gradcheck-lab: {what}", file=sys.stderr)
    return code
