"""The documentation (docs/, built by mkdocs) keeps its promises: the examples marked as runnable
run and print what the pages show, `mkdocs build --strict` succeeds, and the generated reference
pages (case format, command line) are what their generators write today.

Marking examples, with an HTML comment on the line just before a fenced block (a reader of the
rendered page does not see it):

- `<!-- file: NAME -->` before any block: its text is written to NAME in the page's work
  directory (a later block with the same NAME rewrites it, as a tutorial's fix does);
- a ```bash block whose commands start with `gradcheck-lab` or `python -m` is run there
  (`gradcheck-lab` as `sys.executable -m gradcheck_lab`, `python` as `sys.executable`);
- `<!-- run -->` before a ```python block runs it there as a script;
- `<!-- exit: N -->` before a run block: the exit status each command must have (default 0);
- a ```text block right after a run block (only blank lines between) is its shown output:
  each of its lines must appear in the real output, in order (whitespace collapsed, durations
  such as `0.16s` masked, `...` lines standing for what was trimmed).

Each page runs in its own temporary directory, its blocks in page order.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from types import ModuleType

import pytest

from tests.conftest import REPO

DOCS = REPO / "docs"
PAGES = sorted(DOCS.glob("*.md"))
NOTE = re.compile(r"^<!--\s*(?P<key>file|exit|run)\s*(?::\s*(?P<value>\S+))?\s*-->$")
FENCE = re.compile(r"^```(?P<lang>[\w-]*)\s*$")
DURATION = re.compile(r"\b\d+(?:\.\d+)?s\b")
# What a shown command line may not hold: the test runs it without a shell.
SHELL_SYNTAX = {"|", "||", "&&", ";", ">", ">>", "<", "&"}
RUN_TIMEOUT_S = 300
# A page's `python` is this Python, in its commands and in the commands those run
# (`gradcheck-lab record -- python -m pytest`): its folder first on PATH.
PAGE_ENV = {**os.environ,
            "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]])}


@dataclass
class Block:
    page: str
    line: int  # of the opening fence, 1-based
    lang: str
    text: str
    notes: dict[str, str] = field(default_factory=dict)
    after_block: bool = False  # only blank lines since the previous block's closing fence

    @property
    def where(self) -> str:
        return f"{self.page}:{self.line}"

    @property
    def commands(self) -> list[str]:
        return [line for line in self.text.splitlines()
                if line.strip() and not line.lstrip().startswith("#")]

    @property
    def runs(self) -> bool:
        if self.lang == "python":
            return "run" in self.notes
        return self.lang == "bash" and bool(self.commands) and all(
            command.startswith(("gradcheck-lab ", "python -m ")) for command in self.commands)


def parse(path: Path) -> list[Block]:
    """The fenced blocks of a page, each with the annotations on the line before it."""
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks: list[Block] = []
    index, blank_run = 0, False
    while index < len(lines):
        opening = FENCE.match(lines[index])
        if not opening:
            blank_run = blank_run and not lines[index].strip()
            index += 1
            continue
        notes: dict[str, str] = {}
        previous = lines[index - 1].strip() if index else ""
        if previous.startswith("<!--"):
            note = NOTE.match(previous)
            # A misspelt annotation would silently turn a checked example into prose.
            assert note, f"{path.name}:{index}: unknown annotation {previous!r}"
            notes[note["key"]] = note["value"] or ""
        end = next((i for i in range(index + 1, len(lines)) if lines[i].strip() == "```"), None)
        assert end is not None, f"{path.name}:{index + 1}: unclosed code block"
        blocks.append(Block(path.name, index + 1, opening["lang"],
                            "\n".join(lines[index + 1:end]) + "\n", notes,
                            after_block=blank_run and not notes))
        index, blank_run = end + 1, True
    return blocks


def argv(command: str) -> list[str]:
    words = shlex.split(command)
    assert not SHELL_SYNTAX & set(words), f"{command!r}: shell syntax cannot be checked"
    if words[0] == "gradcheck-lab":
        return [sys.executable, "-m", "gradcheck_lab", *words[1:]]
    return [sys.executable, *words[1:]]


def normalized(line: str) -> str:
    return " ".join(DURATION.sub("<duration>", line).split())


def missing_lines(shown: str, real: str) -> list[str]:
    """The lines of `shown` that are not, in order, lines of `real`."""
    real_lines = [normalized(line) for line in real.splitlines()]
    missing, position = [], 0
    for line in shown.splitlines():
        wanted = normalized(line)
        if not wanted or wanted == "...":
            continue
        try:
            position = real_lines.index(wanted, position) + 1
        except ValueError:
            missing.append(line)
    return missing


def run_block(block: Block, work: Path) -> str:
    """Runs a block's commands in `work`; returns their stdout and stderr."""
    expected = int(block.notes.get("exit", "0"))
    if block.lang == "python":
        script = work / f"_block_{block.line}.py"
        script.write_text(block.text, encoding="utf-8")
        commands = [[sys.executable, script.name]]
    else:
        commands = [argv(command) for command in block.commands]
    output = []
    for command in commands:
        done = subprocess.run(command, cwd=work, capture_output=True, text=True,
                              timeout=RUN_TIMEOUT_S, env=PAGE_ENV)
        output.append(done.stdout + done.stderr)
        assert done.returncode == expected, (
            f"{block.where}: {shlex.join(command)} exited {done.returncode}, the page says "
            f"{expected}\n{output[-1]}")
    return "".join(output)


@pytest.mark.slow
@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_runnable_examples_run_and_print_what_the_page_shows(page: Path, tmp_path: Path) -> None:
    last_output: str | None = None
    for block in parse(page):
        if "file" in block.notes:
            target = tmp_path / block.notes["file"]
            assert target.resolve().is_relative_to(tmp_path), block.where
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(block.text, encoding="utf-8")
        if block.runs:
            last_output = run_block(block, tmp_path)
            continue
        stray = {"exit", "run"} & set(block.notes)
        assert not stray, f"{block.where}: {stray} on a block that does not run"
        if block.lang == "text" and block.after_block and last_output is not None:
            missing = missing_lines(block.text, last_output)
            assert not missing, (f"{block.where}: shown output not in the real output: "
                                 f"{missing}\n--- real output ---\n{last_output}")
        last_output = None


def test_the_tutorial_runs_a_pass_a_failure_a_fix_and_explain() -> None:
    runs = [block for block in parse(DOCS / "tutorial.md") if block.runs]
    commands = [(command, block.notes.get("exit", "0"))
                for block in runs for command in block.commands]
    assert ("gradcheck-lab run r144.yaml", "0") in commands
    assert [exit_ for command, exit_ in commands if "my_linear.yaml" in command][:2] == \
        ["1", "0"], "the custom Function's case should fail, then pass once fixed"
    assert ("gradcheck-lab explain r144.yaml", "0") in commands
    written = [block.notes["file"] for block in parse(DOCS / "tutorial.md")
               if "file" in block.notes]
    assert written.count("my_linear.py") == 2, "the buggy Function, then the fixed one"


def test_the_home_page_quick_start_is_the_readme_one() -> None:
    def commands(text: str) -> list[str]:
        quick_start = re.search(r"^## Quick start\n(.*?)(?=^## )", text, re.M | re.S)
        assert quick_start, "no Quick start section"
        return re.findall(r"```bash\n(python3 -m venv .*?)\n```", quick_start.group(1))

    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert commands((DOCS / "index.md").read_text(encoding="utf-8")) == commands(readme)
    assert len(commands(readme)) == 2


def test_the_inputs_example_differentiates_every_real_input_left_free(tmp_path: Path) -> None:
    from gradcheck_lab.casefile import Case
    from gradcheck_lab.casefile.loader import load_bytes

    (block,) = [b for b in parse(DOCS / "writing-cases.md") if b.notes.get("file") == "inputs.yaml"]
    (loaded,) = load_bytes(block.text.encode(), "inputs.yaml", tmp_path)
    assert isinstance(loaded, Case), loaded
    assert [spec.name for spec in loaded.inputs if spec.requires_grad] == ["x", "v", "W", "h"]


def test_the_json_report_example_is_run_and_shows_a_real_report() -> None:
    blocks = parse(DOCS / "running.md")
    (run,) = [i for i, b in enumerate(blocks) if b.runs and "--json -" in b.text]
    shown = blocks[run + 1]
    assert shown.lang == "text" and shown.after_block, "the report the page shows is checked"
    for key in ('"results"', '"mismatches"', '"counts"', '"tolerance"', '"summary"',
                '"environment"'):
        assert key in shown.text, key


def test_shown_output_lines_must_be_real() -> None:
    real = "PASS  r144[float64-cpu]     0.16s  r144.yaml:1\n1 passed in 2.8s\n"
    assert missing_lines("PASS r144[float64-cpu] 9.99s r144.yaml:1\n...\n", real) == []
    assert missing_lines("FAIL r144[float64-cpu] 0.16s r144.yaml:1\n", real) != []
    # In order: a line shown before another must come before it.
    assert missing_lines("1 passed in 1s\nPASS r144[float64-cpu] 1s r144.yaml:1\n", real) != []


def load(script: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(script, DOCS / f"{script}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_case_format_page_is_generated_from_the_schema() -> None:
    generator = load("gen_case_format")
    assert (DOCS / "case-format.md").read_text(encoding="utf-8") == generator.render(), (
        "docs/case-format.md is stale: run `.venv/bin/python docs/gen_case_format.py`")


def test_the_function_table_is_generated_from_the_op_table() -> None:
    generator = load("gen_functions")
    assert [page.name for page in generator.PAGES] == ["expressions.md"]
    for page in generator.PAGES:
        text = page.read_text(encoding="utf-8")
        assert text == generator.with_table(text), (
            f"{page.name}'s function table is stale: run `.venv/bin/python "
            "docs/gen_functions.py`")


def test_the_function_table_lists_every_function_and_refuses_an_unlisted_group() -> None:
    import dataclasses

    from gradcheck_lab.ops import OPS
    from gradcheck_lab.ops.listing import function_table

    table = function_table(OPS)
    for name, op in OPS.items():
        if op.callable:
            assert f"`{name}`" in table, name
    stray = dataclasses.replace(OPS["exp"], name="exp_new", group="no such group")
    with pytest.raises(ValueError, match="exp_new"):
        function_table({**OPS, "exp_new": stray})


def test_the_command_line_page_is_generated_from_the_parser() -> None:
    generator = load("gen_cli")
    if sys.version_info[:2] != generator.PYTHON:
        pytest.skip(f"docs/cli.md is generated with Python {generator.PYTHON}, whose argparse "
                    "layout differs from this one's")
    assert (DOCS / "cli.md").read_text(encoding="utf-8") == generator.render(), (
        "docs/cli.md is stale: run `.venv/bin/python docs/gen_cli.py`")


def test_the_pytest_run_settings_table_is_what_the_option_table_gives() -> None:
    generator = load("gen_options")
    text = (DOCS / "pytest.md").read_text(encoding="utf-8")
    assert text == generator.with_table(text), (
        "docs/pytest.md's run-settings table is stale: run `.venv/bin/python "
        "docs/gen_options.py`")


def test_the_command_line_page_documents_every_command() -> None:
    generator = load("gen_cli")
    from gradcheck_lab.doors.cli import build_parser

    text = (DOCS / "cli.md").read_text(encoding="utf-8")
    for name in generator.subcommands(build_parser()):
        assert f"## gradcheck-lab {name}\n" in text


def test_every_page_is_in_the_nav() -> None:
    config = (REPO / "mkdocs.yml").read_text(encoding="utf-8")
    for page in PAGES:
        assert re.search(rf":\s*{re.escape(page.name)}\s*$", config, re.M), page.name


@pytest.mark.slow
def test_mkdocs_builds_the_site_strictly(tmp_path: Path) -> None:
    if importlib.util.find_spec("mkdocs") is None:
        pytest.skip("mkdocs is not installed (it comes with the dev extra: "
                    "pip install -c constraints.txt -e '.[dev]')")
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir",
                           str(tmp_path / "site")], cwd=REPO, capture_output=True, text=True,
                          timeout=RUN_TIMEOUT_S)
    assert done.returncode == 0, done.stdout + done.stderr
    built = {p.relative_to(tmp_path / "site").as_posix()
             for p in (tmp_path / "site").rglob("index.html")}
    assert {f"{page.stem}/index.html" for page in PAGES if page.stem != "index"} <= built
    # Generator scripts are excluded from the site (exclude_docs).
    assert not list((tmp_path / "site").rglob("*.py"))
    print(f"mkdocs build --strict: {time.perf_counter() - started:.1f}s")
    _the_built_pages_read_offline_with_their_tables(tmp_path / "site")


class _Page(HTMLParser):
    """What a built page holds: the first table's rows of cells, the URLs it loads (scripts,
    stylesheets) and how many highlighted code blocks it has."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[str]] = []
        self.loads: list[str] = []
        self.highlighted = 0
        self._tables = 0
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "table":
            self._tables += 1
        elif tag == "tr" and self._tables == 1:
            self.rows.append([])
        elif tag in ("td", "th") and self._tables == 1:
            self._cell = []
        elif tag == "script" and found.get("src"):
            self.loads.append(str(found["src"]))
        elif tag == "link" and found.get("rel") == "stylesheet":
            self.loads.append(str(found.get("href")))
        if tag == "div" and "codehilite" in (found.get("class") or ""):
            self.highlighted += 1

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None and self.rows:
            self.rows[-1].append("".join(self._cell).strip())
            self._cell = None


def _the_built_pages_read_offline_with_their_tables(site: Path) -> None:
    """The tutorial's first table has its cells (the r144 steps, worked by hand), code is
    highlighted at build time, and no page loads anything from another site."""
    pages = {}
    for path in site.rglob("index.html"):
        page = _Page()
        page.feed(path.read_text(encoding="utf-8"))
        pages[path.relative_to(site).as_posix()] = page
    tutorial = pages["tutorial/index.html"]
    assert tutorial.rows[0] == ["step", "value", "local derivative", "gradient of r"]
    assert [row[:2] for row in tutorial.rows[1:]] == [["p = x + y", "4"], ["q = p · z", "12"],
                                                      ["r = q²", "144"]]
    assert all(len(row) == 4 for row in tutorial.rows)
    assert tutorial.highlighted > 0
    remote = {name: [u for u in page.loads if u.startswith(("http:", "https:", "//"))]
              for name, page in pages.items()}
    assert {name: urls for name, urls in remote.items() if urls} == {}
