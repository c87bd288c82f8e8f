"""Shared fixtures. tests/data/ holds fixtures (planted bugs, broken files) that must not be
collected as cases when someone runs `pytest tests/`."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest_plugins = ["pytester"]
collect_ignore = ["data"]

DATA = Path(__file__).parent / "data"
REPO = Path(__file__).parent.parent
CASES = REPO / "cases"


@pytest.fixture
def write_case(tmp_path: Path):
    """Write YAML text to a case file in a temporary directory and return its path."""

    def write(text: str, name: str = "case.yaml") -> Path:
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
        return path

    return write
