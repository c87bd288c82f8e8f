"""A pytest plugin for benchmarks/functions_overhead.py: prints the wall and CPU time of the
suite's own test loop (collection apart, and the checks --gradcheck-functions runs after it)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest


@pytest.hookimpl(hookwrapper=True, trylast=True)
def pytest_runtestloop(session: pytest.Session) -> Iterator[None]:
    # trylast: the innermost wrapper, inside --gradcheck-functions's (whose checks follow the
    # loop), so that both runs time the same thing: the suite's own tests.
    wall, cpu = time.perf_counter(), time.process_time()
    yield
    print(f"\nsuite-loop-seconds: {time.perf_counter() - wall:.3f} "
          f"cpu {time.process_time() - cpu:.3f}")
