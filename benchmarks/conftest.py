"""Benchmark suites: collected with `pytest --benchmark` (or when named), never by plain pytest."""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CASES = REPO / "cases"
sys.path.insert(0, str(Path(__file__).resolve().parent))
