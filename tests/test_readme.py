"""The README's promises: two Quick start commands, one example of each front door that loads
and runs, and links to the documentation pages that hold the rest (whose examples
tests/test_docs.py runs)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from gradcheck_lab.casefile import Case
from gradcheck_lab.casefile.loader import load_bytes
from gradcheck_lab.doors.cli import main
from tests.conftest import REPO

README = (REPO / "README.md").read_text(encoding="utf-8")


def fenced_blocks(language: str, text: str = README) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", text, flags=re.DOTALL)


def section(title: str) -> str:
    match = re.search(rf"^## {title}\n(.*?)(?=^## )", README, flags=re.DOTALL | re.MULTILINE)
    assert match, f"README has no section {title!r}"
    return match.group(1)


def test_quick_start_holds_exactly_two_one_line_commands() -> None:
    commands = [line for block in fenced_blocks(r"\w*", section("Quick start"))
                for line in block.splitlines() if line.strip() and not line.startswith("#")]
    assert len(commands) == 2
    assert "gradcheck-lab run cases" in commands[0]
    assert "pytest" in commands[1]
    assert all("constraints.txt" in command for command in commands)


def test_ci_runs_the_readme_test_command() -> None:
    test_command = next(line for block in fenced_blocks(r"\w*", section("Quick start"))
                    for line in block.splitlines() if "pytest" in line)
    assert test_command in (REPO / ".ci" / "run").read_text(encoding="utf-8")


def test_every_complete_yaml_example_is_a_valid_case(tmp_path: Path) -> None:
    complete = [block for block in fenced_blocks("yaml") if re.search(r"^output:", block, re.M)]
    assert complete, "the README should show a whole case"
    for block in complete:
        if "impl:" in block:
            continue  # refers to a file next to a real case
        (loaded,) = load_bytes(block.encode(), "README.md", tmp_path)
        assert isinstance(loaded, Case), loaded


def test_the_front_door_case_passes_as_the_readme_runs_it(tmp_path: Path) -> None:
    (block,) = [b for b in fenced_blocks("yaml", section("Four front doors")) if "output:" in b]
    assert "gradcheck-lab run r144.yaml" in section("Four front doors")
    (tmp_path / "r144.yaml").write_text(block, encoding="utf-8")
    assert main(["run", str(tmp_path / "r144.yaml"), "-q"]) == 0


def test_the_readme_links_every_documentation_page() -> None:
    links = re.findall(r"\]\((docs/[^)#]+\.md)(?:#[^)]*)?\)", README)
    pages = {f"docs/{page.name}" for page in (REPO / "docs").glob("*.md")}
    assert set(links) <= pages, set(links) - pages
    # The reference moved to the docs: the README links to every page.
    assert pages <= set(links), pages - set(links)


def test_the_readme_stays_a_summary() -> None:
    assert len(README.encode("utf-8")) < 20_000, "the reference belongs in docs/"
    for door in ("gradcheck-lab run", "pytest", "def test_", "from gradcheck_lab import gradcheck"):
        assert door in section("Four front doors"), door


@pytest.mark.slow
def test_the_drop_in_example_runs(tmp_path: Path) -> None:
    (example,) = [b for b in fenced_blocks("python") if "from gradcheck_lab import gradcheck" in b]
    done = subprocess.run([sys.executable, "-c", example], cwd=tmp_path, capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.slow
def test_python_api_example_runs_as_a_test_file(tmp_path: Path) -> None:
    (example,) = [b for b in fenced_blocks("python") if "def test_" in b]
    test_file = tmp_path / "test_readme_example.py"
    test_file.write_text(example, encoding="utf-8")
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           str(test_file)], cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr  # from any directory
    assert "2 passed" in done.stdout
