"""A pytest plugin for benchmarks/functions_overhead.py: prints how long the session's test
loop took (the suite's own tests, collection and the checks after them apart)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

_started: list[float] = []


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtestloop(session: pytest.Session) -> Iterator[None]:
    # Read for plain runs only: with --gradcheck-functions the loop also holds the checks,
    # and the flag's summary gives the suite's part.
    started = time.perf_counter()
    yield
    print(f"\nsuite-loop-seconds: {time.perf_counter() - started:.3f}")
