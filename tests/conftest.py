"""Shared fixtures. tests/data/ holds fixtures (planted bugs, broken files) that must not be
collected as cases when someone runs `pytest tests/`."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]
collect_ignore = ["data"]

DATA = Path(__file__).parent / "data"
REPO = Path(__file__).parent.parent
CASES = REPO / "cases"


@pytest.fixture(autouse=True)
def _not_an_xdist_worker_in_subprocesses(monkeypatch: pytest.MonkeyPatch) -> None:
    """Under `pytest -n`, pytest-benchmark reads PYTEST_XDIST_WORKER to decide it runs in a
    worker; a pytest that a test starts in a subprocess would inherit it and disable timing."""
    monkeypatch.delenv("PYTEST_XDIST_WORKER", raising=False)


@pytest.fixture
def write_case(tmp_path: Path):
    """Write YAML text to a case file in a temporary directory and return its path."""

    def write(text: str, name: str = "case.yaml") -> Path:
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
        return path

    return write


class TimeBoundError(AssertionError):
    """Raised from inside the code under test when it runs past its time bound."""


@contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Interrupt the block with TimeBoundError after ``seconds`` (so a hang fails, not hangs):
    the package's own case budget (SIGALRM: Unix only, main thread only)."""
    from gradcheck_lab.run.budget import CaseTimeout, time_budget

    try:
        with time_budget(seconds):
            yield
    except CaseTimeout:
        raise TimeBoundError(f"took longer than {seconds} s") from None


def finishes_within(seconds: float, script: str) -> bool:
    """Whether ``script``, run by a fresh interpreter, ends (successfully) within ``seconds``.

    For code that may spend minutes inside a single C call (big-integer arithmetic), which no
    signal can interrupt: the child is killed at the bound. A script that fails fast raises
    CalledProcessError, so a broken probe cannot pass for a slow parser or loader.
    """
    try:
        subprocess.run([sys.executable, "-c", script], cwd=REPO, timeout=seconds, check=True,
                       capture_output=True)
    except subprocess.TimeoutExpired:
        return False
    return True
