"""Hostile and broken case files (tests/data/hostile/): every one is an error result at the
right line and key, nothing in them is executed, the valid files beside them still pass, and
the run survives impls that hang, crash the interpreter or return garbage."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import DATA, REPO

HOSTILE = DATA / "hostile"
PAYLOAD_MARKER = "gradcheck_pwned"  # every payload in the corpus tries to create this file
CASE_TIMEOUT_S = 5

# file -> (line of the offending key, key, words the message must contain)
EXPECTED = {
    "alias_bomb.yaml": (6, "document", "aliases are expanded"),
    "bad_indentation.yaml": (3, "document", "invalid YAML"),
    "cases_item_not_mapping.yaml": (2, "cases[0]", "expected a case (a mapping)"),
    "cases_not_a_list.yaml": (1, "cases", "expected a non-empty list of cases"),
    "control_character.yaml": (3, "document", "unacceptable character #x0000"),
    "deep_nesting.yaml": (2, "document", "nesting deeper than"),
    "dunder_input_name.yaml": (2, "inputs.__builtins__", "names starting with __"),
    "duplicate_case_names.yaml": (5, "cases[1].name", "duplicate case name 'same'"),
    "duplicate_input.yaml": (3, "inputs.x", "duplicate key 'x'"),
    "duplicate_key.yaml": (4, "output", "duplicate key 'output'"),
    "empty.yaml": (1, "document", "empty file"),
    "empty_inputs.yaml": (1, "inputs", "needs at least one entry"),
    "expect_sympify_payload.yaml": (5, "expect.grad.x", "only plain function names"),
    "expr_attribute_escape.yaml": (3, "output", "no attribute access"),
    "expr_comprehension.yaml": (3, "output", "comprehensions not allowed"),
    "expr_conditional.yaml": (3, "output", "conditional expressions not allowed"),
    "expr_eval_in_let.yaml": (4, "let.y", "unknown function 'eval'"),
    "expr_exec.yaml": (3, "output", "unknown function 'exec'"),
    "expr_fstring.yaml": (3, "output", "f-strings not allowed"),
    "expr_huge_broadcast.yaml": (4, "output", "400000000 elements"),
    "expr_huge_power.yaml": (3, "output", "constant power is too large"),
    # Results larger than their inputs: shaped in integers, refused before any allocation.
    "expr_huge_tile.yaml": (4, "output", "tile() would produce shape [100000, 200000]"),
    "expr_huge_repeat.yaml": (4, "output", "repeat_interleave() would produce shape"),
    "expr_huge_pad.yaml": (4, "output", "pad() would produce shape [2000000002]"),
    # One LAPACK or BLAS call that no budget stops: refused from the shapes, at the key.
    "expr_costly_svd.yaml": (4, "output", "svd(): a 4000 x 4000 A would take about 1.7e+12 "
                                          "operations in one call (limit 1e+10)"),
    "expr_costly_matmul.yaml": (5, "output", "matmul(): a product of [7000, 7000] and "
                                             "[7000, 7000] would take about 6.9e+11"),
    "expr_import_payload.yaml": (3, "output", "only plain function names"),
    "expr_integer_reduction.yaml": (4, "output", "t is an integer tensor"),
    "expr_lambda.yaml": (3, "output", "lambdas not allowed"),
    "expr_null_byte.yaml": (3, "output", "not a valid expression"),
    "expr_open.yaml": (3, "output", "unknown function 'open'"),
    "expr_power_tower.yaml": (3, "output", "constant power is too large"),
    "expr_shape_mismatch.yaml": (5, "let.C", "cannot multiply shapes [2, 3] and [2, 3]"),
    "expr_statement.yaml": (3, "output", "not a valid expression"),
    "expr_subscript.yaml": (3, "output", "subscripts take constant integers"),
    "expr_too_deep.yaml": (3, "output", "nested deeper than 200"),
    "expr_too_long.yaml": (3, "output", "characters long (limit 10000)"),
    "expr_undefined_name.yaml": (5, "output", "undefined name 'hh' (did you mean 'h'?)"),
    "expr_unknown_function.yaml": (3, "output", "unknown function 'expp' (did you mean 'exp'?)"),
    "expr_walrus.yaml": (3, "output", "assignment expressions (:=) not allowed"),
    "function_input_name.yaml": (2, "inputs.exp", "is a function of the case language"),
    "huge_number.yaml": (2, "inputs.x", "beyond the float64 range"),
    "impl_absolute.yaml": (4, "impl", "relative to the case file's directory"),
    "impl_dotted.yaml": (4, "impl", "not a public top-level name"),
    "impl_escape.yaml": (4, "impl", "may not leave the case file's directory"),
    "impl_kills_interpreter.yaml": (4, "impl", "worker process died"),
    # Impls that raise what `except Exception` lets through: an error result, no traceback.
    "impl_keyboard_interrupt.yaml": (4, "impl", "raises_keyboard_interrupt raised "
                                                "KeyboardInterrupt"),
    "impl_base_exception.yaml": (4, "impl", "raised NotAnException: escaped the except"),
    "impl_missing_file.yaml": (4, "impl", "'nowhere.py' not found"),
    "impl_module_name.yaml": (4, "impl", "names a Python file"),
    "impl_raises.yaml": (4, "impl", "raised ValueError: this impl always fails (bad_impls.py:"),
    "impl_returns_none.yaml": (4, "impl", "returned NoneType"),
    "impl_sleeps_forever.yaml": (4, "impl", f"time budget of {CASE_TIMEOUT_S} s"),
    "impl_wrong_dtype.yaml": (4, "impl", "returned int64 for float64 inputs"),
    "impl_wrong_shape.yaml": (4, "impl", "returned shape [2]"),
    "inf_nested_input.yaml": (2, "inputs.W", "element [1][1]: -inf is not allowed"),
    "keyword_input_name.yaml": (3, "inputs.class", "is a Python keyword"),
    "low_above_high.yaml": (2, "inputs.x", "low must be below high"),
    "merge_key.yaml": (3, "inputs", "merge keys (<<)"),
    "missing_inputs.yaml": (1, "inputs", "missing required key 'inputs'"),
    "missing_output.yaml": (1, "output", "missing required key 'output'"),
    "nan_tolerance.yaml": (5, "tolerance.rtol", "nan is not allowed"),
    # A step that switches finite differences off (overflows, or rounds to nothing).
    "fd_step_huge.yaml": (5, "fd_step", "leaves finite differences meaningless"),
    "fd_step_subnormal.yaml": (5, "fd_step", "leaves finite differences meaningless"),
    # Fine for float64, meaningless for a function computing in the case's coarser dtype.
    "fd_step_tiny_float32.yaml": (6, "fd_step", "meaningless: the step must be in [1.19e-05"),
    "fd_step_tiny_bfloat16.yaml": (6, "fd_step", "computes in bfloat16"),
    "nan_input.yaml": (2, "inputs.x", "element [1]: nan is not allowed"),
    "negative_shape.yaml": (2, "inputs.x.shape", "positive integers"),
    "negative_tolerance.yaml": (4, "tolerance.rtol", "expected a positive number"),
    "non_utf8.yaml": (3, "document", "not UTF-8 text (byte 0xe9"),
    "only_comments.yaml": (1, "document", "empty file"),
    "randint_without_high.yaml": (3, "inputs.t", "randint needs high"),
    "recursive_alias.yaml": (2, "document", "recursive alias"),
    "string_input.yaml": (2, "inputs.x", "an input is a number"),
    "string_tolerance.yaml": (4, "tolerance.atol", "expected a number, got 'tiny'"),
    "syntax_error.yaml": (3, "document", "invalid YAML"),
    "tag_binary.yaml": (2, "inputs.x", "binary' is not allowed"),
    "tag_custom.yaml": (2, "inputs.x", "'!payload' is not allowed"),
    "tag_python_module.yaml": (1, "inputs", "python/module:os' is not allowed"),
    "tag_python_name.yaml": (3, "output", "python/name:os.system' is not allowed"),
    "tag_python_object_apply.yaml": (2, "inputs.x", "python/object/apply:os.system' is not"),
    "tag_set.yaml": (2, "inputs.x", "set' is not allowed"),
    "tag_timestamp.yaml": (4, "description", "timestamp' is not allowed"),
    "too_many_elements.yaml": (2, "inputs.x", "over the limit of 50000000"),
    "top_level_list.yaml": (1, "document", "got a list"),
    "top_level_scalar.yaml": (1, "document", "got text"),
    "two_documents.yaml": (4, "document", "another document"),
    "unknown_device.yaml": (4, "devices[0]", "unknown device 'tpu'"),
    "unknown_dtype.yaml": (4, "dtypes[1]", "got 'float8'"),
    "unknown_key_typo.yaml": (3, "outptu", "unknown key 'outptu' (did you mean 'output'?)"),
    # YAML 1.1's extra line breaks (U+0085, U+2028) in a comment shift no line.
    "line_separator_before_a_typo.yaml": (4, "outpt", "unknown key 'outpt'"),
    # Text that would reach the terminal raw: shown escaped, and names matched whole.
    "text_escape_in_key.yaml": (4, "inputs.x\\x1b[2K\\rPASS  everything", "is not a valid name"),
    "text_bidi_override.yaml": (4, "output", "(U+202E) is not ASCII"),
    "text_newline_in_name.yaml": (3, "name", "'ok\\n' is not a valid case name"),
    "text_newline_in_device.yaml": (5, "devices[0]", "unknown device 'cpu\\n'"),
    "text_carriage_return_in_let.yaml": (5, "let.y\\r\\x1b[32mPASS", "is not a valid name"),
    # Numbers at the edges of their types, checked as the type they are used as.
    "number_tolerance_underflow.yaml": (5, "tolerance.rtol", "1E-400 is 0 as a float64"),
    "number_std_overflow.yaml": (3, "inputs.x", "the draws would overflow to inf"),
    "number_uniform_width_overflow.yaml": (3, "inputs.x", "width high - low overflows"),
    "number_randint_high_2_63.yaml": (4, "inputs.t", "outside the int64 range"),
    "number_hex_digits.yaml": (4, "inputs.x", "an integer literal of 5000 digits"),
    "number_octal_digits.yaml": (5, "seed", "an integer literal of 2000 digits"),
    "number_decimal_exponent_beyond.yaml": (3, "inputs.x", "is out of the float64 range"),
    "number_float32_literal_overflow.yaml": (3, "inputs.x", "beyond the float32 range"),
    "number_float32_std_overflow.yaml": (3, "inputs.x", "it would be inf in float32"),
    "number_float16_uniform_range.yaml": (3, "inputs.x", "beyond the float16 range"),
    "number_lr_underflow.yaml": (9, "training.lr", "1E-400 is 0 as a float64"),
    "number_std_underflow.yaml": (3, "inputs.x.std", "1E-400 is 0 as a float64"),
    "number_fd_step_underflow.yaml": (5, "fd_step", "1E-400 is 0 as a float64"),
    "number_randint_low_below_int64.yaml": (4, "inputs.t", "outside the int64 range"),
    "number_negative_zero_tolerance.yaml": (6, "tolerance.rtol", "expected a positive number"),
    "number_inf_lr.yaml": (9, "training.lr", "inf is not allowed"),
    "number_nan_std.yaml": (3, "inputs.x.std", "nan is not allowed"),
    "number_points_huge.yaml": (5, "points", "expected a whole number from 1 to 64"),
    "number_seed_huge.yaml": (5, "seed", "expected a whole number in [0, 2**63)"),
    "number_shape_product_overflow.yaml": (3, "inputs.x", "over the limit of 50000000"),
    "number_training_steps_huge.yaml": (10, "training.steps", "from 1 to 1000"),
    # Sizes that add up: whole-case budgets, checked while the program is built.
    "sizes_intermediates_add_up.yaml": (8, "let.a3", "245000004 elements in all"),
    "sizes_many_lets.yaml": (20004, "let.a19999", "more than 20000 nodes"),
    "sizes_many_inputs.yaml": (20003, "inputs.x20000", "more than 20000 nodes"),
    # Loading is budgeted (casefile/budget.py): a case's expression text, and a file's text
    # and program nodes; aliases make a 5 KB file hold 600,000 nodes' worth of expressions.
    "sizes_aliased_lets.yaml": (55, "let.a48", "over the budget of 200000 for one case"),
    "sizes_aliased_cases.yaml": (5, "cases[11]", "nor the 18 after it: the cases before spent "
                                                 "the file's load budget"),
    # User code runs in the worker under one budget (time and memory), training steps too.
    "impl_allocates_too_much.yaml": (4, "impl", "allocated beyond the case memory budget of "
                                                "4 GiB"),
    "training_step_sleeps_forever.yaml": (6, "training.step", "sleeps_forever ran past the "
                                                              "case time budget of "
                                                              f"{CASE_TIMEOUT_S} s"),
    "training_step_exits_interpreter.yaml": (6, "training.step", "worker process died"),
    "training_step_allocates_too_much.yaml": (6, "training.step", "allocated beyond the case "
                                                                  "memory budget of 4 GiB"),
    # The YAML reader follows YAML's own rules (libyaml's events) and counts nodes as it
    # composes them, before a document of millions of nodes is built.
    "parser_quote_in_plain_scalar.yaml": (5, "document", "nesting deeper than 64 levels"),
    "parser_alias_as_key.yaml": (5, "document", "an alias (*k) cannot be a mapping key"),
    "sizes_flat_sequence.yaml": (5004, "document", "more than 500000 YAML nodes"),
    "sizes_many_keys.yaml": (12506, "document", "more than 500000 YAML nodes"),
    # Identifiers are ASCII: Python's parser would read fullwidth ｓｉｎ as sin.
    "expr_fullwidth_name.yaml": (4, "output", "'ｓ' (U+FF53) is not ASCII"),
    "expr_fullwidth_input_name.yaml": (3, "inputs.ｘ", "is not a valid name"),
    "expr_line_separator.yaml": (4, "output", "(U+2028) is not ASCII"),
    "impl_nul_in_path.yaml": (5, "impl", "non-printable character: 'ok\\x00_impl.py"),
    "training_step_nul_in_path.yaml": (7, "training.step", "non-printable character"),
    "text_escape_in_impl_name.yaml": (5, "impl", "'ok_impl.py:\\x1b[2Jtotal'"),
    "text_delete_in_key.yaml": (3, "inputs.x\\x7f", "is not a valid name"),
    "text_zero_width_in_name.yaml": (2, "name", "'ok\\u200bcase' is not a valid case name"),
    "text_bidi_in_device.yaml": (5, "devices[0]", "unknown device '\\u202ecpu'"),
    "text_escape_in_dtype.yaml": (5, "dtypes[0]", "got 'float64\\x1b[31m'"),
    "text_nul_in_let_name.yaml": (5, "let.y\\x00", "is not a valid name"),
}
# valid_fork_child's impl forks a child that sleeps: the case passes, and the child is killed
# when its case ends (tests/test_isolation.py).
VALID = {"valid_r144.yaml", "valid_with_impl.yaml", "valid_brackets_in_plain_scalar.yaml",
         "valid_fork_child.yaml",
         # Six operands contracted pairwise: minutes as one loop over 60**6 index tuples.
         "valid_einsum_six_operands.yaml",
         # U+2028 in a comment: a character in YAML 1.2, no line break.
         "valid_line_separator_in_comment.yaml",
         # Helpers once sized by a parameter: np.eye(200000) (298 GiB), 40,000 x 40,000
         # averaging and interpolation matrices (12.8 GB each).
         "valid_one_hot_many_classes.yaml", "valid_resampling_wide.yaml"}


@pytest.fixture(scope="module")
def corpus_run(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One CLI run over the whole corpus, from an empty working directory."""
    workdir = tmp_path_factory.mktemp("hostile-run")
    out = workdir / "out.json"
    started = time.perf_counter()
    peak = workdir.parent / f"{workdir.name}-peak"
    # The run is a child of a small wrapper that reports its children's peak resident memory
    # (the CLI and its worker): the test process's own children include other tests' runs.
    done = subprocess.run(
        [sys.executable, "-c", MEASURE_PEAK, str(peak), sys.executable, "-m", "gradcheck_lab",
         "run", str(HOSTILE), "--json", str(out), "--case-timeout", str(CASE_TIMEOUT_S)],
        cwd=workdir, capture_output=True, text=True, timeout=300)
    return {"done": done, "seconds": time.perf_counter() - started, "workdir": workdir,
            "results": json.loads(out.read_text())["results"],
            "peak_kib": int(peak.read_text())}


MEASURE_PEAK = """
import resource, subprocess, sys
from pathlib import Path
code = subprocess.run(sys.argv[2:]).returncode
Path(sys.argv[1]).write_text(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss))
sys.exit(code)
"""


def by_file(results: list[dict]) -> dict[str, list[dict]]:
    grouped: dict[str, list[dict]] = {}
    for result in results:
        grouped.setdefault(Path(result["file"]).name, []).append(result)
    return grouped


def test_the_corpus_is_large_and_fully_described() -> None:
    yaml_files = {p.name for p in HOSTILE.glob("*.yaml")}
    assert len(EXPECTED) >= 50
    assert yaml_files == set(EXPECTED) | VALID


@pytest.mark.slow
def test_the_run_exits_2_in_bounded_time_and_memory_and_creates_nothing(
        corpus_run: dict) -> None:
    assert corpus_run["done"].returncode == 2, corpus_run["done"].stderr
    # A few seconds per file at most (the hanging impls are stopped at CASE_TIMEOUT_S), and
    # the whole run under 2 GiB resident, the files of millions of nodes included.
    files = len(EXPECTED) + len(VALID)
    assert corpus_run["seconds"] < 2 * files, corpus_run["seconds"]
    assert corpus_run["peak_kib"] < 2 * 2**20, corpus_run["peak_kib"]
    assert sorted(p.name for p in corpus_run["workdir"].iterdir()) == ["out.json"]
    for place in (HOSTILE, REPO, Path.cwd()):
        assert not (place / PAYLOAD_MARKER).exists()
    assert "Traceback" not in corpus_run["done"].stdout + corpus_run["done"].stderr


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_hostile_file_is_an_error_at_its_line_and_key(corpus_run: dict, name: str) -> None:
    line, key, words = EXPECTED[name]
    results = by_file(corpus_run["results"])[name]
    errors = [r for r in results if r["status"] == "error"]
    assert errors, results
    message = errors[-1]["message"]
    assert "\n" not in message
    location, _, rest = message.partition(": ")
    assert location.split(":")[1] == str(line), message
    assert rest.startswith(f"{key}: "), message
    assert words in rest, message
    assert errors[-1]["line"] is not None


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(VALID))
def test_valid_files_beside_the_hostile_ones_pass(corpus_run: dict, name: str) -> None:
    assert [r["status"] for r in by_file(corpus_run["results"])[name]] == ["pass"]


@pytest.mark.slow
def test_a_killed_run_keeps_every_finished_result_in_jsonl(tmp_path: Path) -> None:
    cases = tmp_path / "cases"
    cases.mkdir()
    shutil.copy(HOSTILE / "valid_r144.yaml", cases / "a_first.yaml")
    shutil.copy(HOSTILE / "bad_impls.py", cases / "bad_impls.py")
    shutil.copy(HOSTILE / "impl_sleeps_forever.yaml", cases / "b_hangs.yaml")
    lines = tmp_path / "results.jsonl"
    process = subprocess.Popen(
        [sys.executable, "-m", "gradcheck_lab", "run", str(cases), "--jsonl", str(lines),
         "--case-timeout", "600"], cwd=tmp_path, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (lines.exists() and lines.read_text()):
            time.sleep(0.2)
        time.sleep(1.0)  # the second case is now hanging in its worker
        assert process.poll() is None
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    (first,) = [json.loads(line) for line in lines.read_text().splitlines()]
    assert (first["case"], first["status"]) == ("r144", "pass")


def raw_characters(text: str) -> list[str]:
    """The characters of ``text`` a terminal would act on: anything not printable but the
    line breaks between lines."""
    return sorted({repr(c) for c in text if not c.isprintable() and c != "\n"})


@pytest.mark.slow
def test_no_front_door_prints_a_raw_control_character(corpus_run: dict,
                                                      tmp_path: Path) -> None:
    """The CLI's report and --json, and pytest's report and JUnit XML, over the whole corpus:
    every escape sequence, carriage return and bidi override of the hostile files shows as
    its escape, never raw. pytest goes on past every hostile file: each one it collects is one
    failing item, and the valid files pass."""
    done = corpus_run["done"]
    assert raw_characters(done.stdout + done.stderr) == []
    assert raw_characters(json.dumps(corpus_run["results"], ensure_ascii=False)) == []
    junit = tmp_path / "junit.xml"
    ran = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:xdist", "-q",
         "-rf", "--gradcheck-case-timeout", str(CASE_TIMEOUT_S), str(HOSTILE),
         "--junitxml", str(junit)], cwd=tmp_path, capture_output=True, text=True,
        timeout=300)
    output = ran.stdout + ran.stderr
    assert ran.returncode == 1, output[-3000:]
    assert "INTERNALERROR" not in output and "Interrupted" not in output
    assert raw_characters(output) == []
    assert raw_characters(junit.read_text(encoding="utf-8")) == []
    summary = output.strip().splitlines()[-1]
    # One item of each valid file, and duplicate_case_names.yaml's first case (the second,
    # of the same name, is the error).
    assert f" {len(VALID) + 1} passed" in summary, summary
    # Every hostile file is a failing item, the empty one and the top-level list included:
    # YAML beside case files is taken for a case file, as the command line takes it.
    failed = {line.split("::")[0].rsplit("/", 1)[-1] for line in output.splitlines()
              if line.startswith("FAILED ")}
    assert sorted(set(EXPECTED) - failed) == []



def test_an_impl_raising_a_base_exception_in_process_is_an_error_result() -> None:
    """The Python API runs a callable in its own process: a BaseException that is not an
    Exception (``except Exception`` lets it through) is the case's error, not the caller's."""
    import gradcheck_lab

    class Escape(BaseException):
        pass

    def impl(x):
        raise Escape("out of reach")

    (result,) = gradcheck_lab.check("sum(x)", {"x": [1.0, 2.0]}, impl=impl)
    assert result.status == "error"
    assert "raised Escape: out of reach" in result.message


@pytest.mark.slow
def test_a_case_file_linked_from_outside_the_directory_is_an_error_and_not_read(
        tmp_path: Path) -> None:
    """As an impl's link: a case file under the directory given that resolves outside it is
    refused, and nothing of the outside file (its keys) reaches the output."""
    outside = tmp_path / "outside.yaml"
    outside.write_text("inputs:\n  x: 1\noutput: x\nsecret_key_9f3: 1\n", encoding="utf-8")
    cases = tmp_path / "cases"
    cases.mkdir()
    (cases / "linked.yaml").symlink_to(outside)
    shutil.copy(HOSTILE / "valid_r144.yaml", cases / "valid.yaml")
    done = subprocess.run([sys.executable, "-m", "gradcheck_lab", "run", "cases", "--json",
                           "out.json"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 2, done.stdout + done.stderr
    results = {Path(r["file"]).name: r for r in
               json.loads((tmp_path / "out.json").read_text())["results"]}
    assert results["linked.yaml"]["status"] == "error"
    assert "a link that leads outside cases; not read" in results["linked.yaml"]["message"]
    assert results["valid.yaml"]["status"] == "pass"
    assert "secret_key_9f3" not in done.stdout + done.stderr


@pytest.mark.slow
def test_runs_sharing_one_json_and_jsonl_path_never_fail_because_of_each_other(
        tmp_path: Path) -> None:
    """--json goes through a temporary of its own and a rename; --jsonl appends each line in
    one write: four runs at once on the same paths all exit 0, the JSON is one whole report
    and every JSONL line is a whole result."""
    shutil.copy(HOSTILE / "valid_r144.yaml", tmp_path / "r144.yaml")
    command = [sys.executable, "-m", "gradcheck_lab", "run", "r144.yaml", "--json", "out.json",
               "--jsonl", "out.jsonl"]
    runs = [subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True) for _ in range(4)]
    for run in runs:
        _, errors = run.communicate(timeout=120)
        assert run.returncode == 0, errors
    assert [r["status"] for r in json.loads((tmp_path / "out.json").read_text())["results"]] \
        == ["pass"]
    lines = (tmp_path / "out.jsonl").read_text().splitlines()
    assert [json.loads(line)["case"] for line in lines] == ["r144"] * 4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json", "out.jsonl", "r144.yaml"]


@pytest.mark.slow
def test_whole_case_budgets_are_options_of_every_front_door(tmp_path: Path) -> None:
    """The program-node budget that refuses sizes_many_lets.yaml is --max-program-nodes: raised,
    the same file loads and passes (the CLI), and pytest's --gradcheck-max-program-nodes does
    the same."""
    name = "sizes_many_lets.yaml"
    done = subprocess.run([sys.executable, "-m", "gradcheck_lab", "run", str(HOSTILE / name),
                           "--max-program-nodes", "30000"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-2000:]
    ran = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p",
                          "no:xdist", "-q", str(HOSTILE / name),
                          "--gradcheck-max-program-nodes", "30000"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=120)
    assert ran.returncode == 0, ran.stdout[-2000:]
    assert ran.stdout.strip().splitlines()[-1].startswith("1 passed")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform")
def test_a_fifo_is_refused_by_the_api_as_by_the_cli_instead_of_blocking(tmp_path: Path) -> None:
    import gradcheck_lab

    fifo = tmp_path / "waiting.yaml"
    os.mkfifo(fifo)
    (result,) = gradcheck_lab.run_file(fifo)  # reading would wait for a writer forever
    assert result.status == "error" and "not a regular file" in result.message


def test_a_directory_tree_deeper_than_the_recursion_limit_is_one_error(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from gradcheck_lab.run.files import discover

    def too_deep(self: Path, pattern: str) -> None:
        raise RecursionError  # as pathlib's recursive walk raises 1,000 directories down

    monkeypatch.setattr(Path, "rglob", too_deep)
    found, problems = discover([tmp_path])
    assert found == []
    assert [r.message for r in problems] == [
        f"{tmp_path}: path: the directory tree is nested deeper than Python's recursion limit; "
        "not searched"]


def test_explain_on_a_value_that_overflows_shows_inf_instead_of_a_traceback(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from gradcheck_lab.doors.cli import EXIT_PASS, main

    case = tmp_path / "overflow.yaml"
    case.write_text("inputs:\n  x: 2.0\nlet:\n  a: exp(x * 1000)\n  b: a * a\noutput: b\n")
    assert main(["explain", str(case)]) == EXIT_PASS
    assert "∂output/∂x = ∂output/∂b · ∂b/∂a · ∂a/∂x = 1 · inf · inf = inf" in \
        capsys.readouterr().out


def test_inputs_nested_deeper_than_a_file_may_be_are_a_case_error_from_the_api() -> None:
    import gradcheck_lab

    value: object = 1.0
    for _ in range(5000):
        value = [value]
    with pytest.raises(gradcheck_lab.CaseError, match=r"inputs\.x: nesting deeper than 64"):
        gradcheck_lab.check("sum(x)", {"x": value})


def test_a_file_with_more_cases_than_the_limit_is_one_error_at_cases(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from gradcheck_lab.casefile import LoadLimits, load_file
    from gradcheck_lab.doors.cli import EXIT_ERROR, main

    many = tmp_path / "many.yaml"
    many.write_text("cases:\n" + "".join(
        f"  - {{name: c{i}, inputs: {{x: [1.5]}}, output: 'x * x'}}\n" for i in range(4)))
    assert len(load_file(many, LoadLimits(max_cases_per_file=4))) == 4
    (error,) = load_file(many, LoadLimits(max_cases_per_file=3))
    assert (error.line, error.key) == (1, "cases")
    assert "4 cases in one file (limit 3, --max-cases-per-file)" in error.message
    assert main(["run", str(many), "--max-cases-per-file", "3"]) == EXIT_ERROR
    assert "4 cases in one file" in capsys.readouterr().out


def test_files_past_the_runs_case_limit_are_errors_and_not_checked(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from gradcheck_lab.doors.cli import EXIT_ERROR, main

    for stem in ("a", "b", "c"):
        (tmp_path / f"{stem}.yaml").write_text("cases:\n" + "".join(
            f"  - {{name: {stem}{i}, inputs: {{x: [1.5]}}, output: 'x * x'}}\n"
            for i in range(2)))
    report = tmp_path / "out.json"
    assert main(["run", str(tmp_path), "--max-cases-per-run", "3", "--json",
                 str(report)]) == EXIT_ERROR
    results = json.loads(report.read_text())["results"]
    # a.yaml's two cases fit; b.yaml's two would pass the limit; c.yaml is not read.
    assert [r["status"] for r in results] == ["pass", "pass", "error", "error"]
    assert [Path(r["file"]).name for r in results[2:]] == ["b.yaml", "c.yaml"]
    assert "limit of 3 cases (--max-cases-per-run)" in results[2]["message"]
    assert "not read" in results[3]["message"]
    assert main(["run", str(tmp_path), "--max-cases-per-run", "6"]) == 0
    capsys.readouterr()


def test_file_name_selections_count_against_the_runs_case_limit(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from gradcheck_lab.doors.cli import EXIT_ERROR, main

    one = tmp_path / "one.yaml"
    one.write_text("name: one\ninputs: {x: 2.0}\noutput: x ** 3\n")
    report = tmp_path / "out.json"
    assert main(["run", "--max-cases-per-run", "3", *[f"{one}::one"] * 6, "--json",
                 str(report)]) == EXIT_ERROR
    results = json.loads(report.read_text())["results"]
    assert [r["status"] for r in results] == ["pass"] * 3 + ["error"] * 3
    assert all("limit of 3 cases (--max-cases-per-run)" in r["message"]
               and "not read" in r["message"] for r in results[3:])
    # Counted with the files' cases, in one quota.
    assert main(["run", "--max-cases-per-run", "2", str(one), f"{one}::one", f"{one}::one",
                 "--json", str(report)]) == EXIT_ERROR
    assert [r["status"] for r in json.loads(report.read_text())["results"]] == \
        ["pass", "pass", "error"]
    capsys.readouterr()


def test_the_runs_case_limit_holds_across_pytests_collection(pytester: pytest.Pytester) -> None:
    for stem in ("a", "b"):
        (pytester.path / "cases").mkdir(exist_ok=True)
        (pytester.path / "cases" / f"{stem}.yaml").write_text("cases:\n" + "".join(
            f"  - {{name: {stem}{i}, inputs: {{x: [1.5]}}, output: 'x * x'}}\n"
            for i in range(2)))
    result = pytester.runpytest("--gradcheck-max-cases-per-run", "3")
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(["*limit of 3 cases (--max-cases-per-run)*"])


def test_a_gradient_past_float64s_range_is_a_skip_saying_so_not_an_internal_error() -> None:
    import gradcheck_lab

    (result,) = gradcheck_lab.check("x * 1e308 * 1e308", {"x": [1.0, 2.0]},
                                    dtypes=["float64"])
    assert result.status == "skip", result.message
    assert "nan or infinite there, for symbolic and autograd alike" in result.message


@pytest.mark.parametrize("output", ["norm(x, 1e308)", "vector_norm(x, ord=1e6)"])
def test_a_norm_of_an_order_no_float64_can_hold_is_refused_at_once(output: str) -> None:
    import gradcheck_lab

    started = time.process_time()
    with pytest.raises(gradcheck_lab.CaseError, match=r"order must be at most 64"):
        gradcheck_lab.check(output, {"x": [1.0, 2.0]})
    assert time.process_time() - started < 5.0  # it hung in sympy, growing 65 MB/s


def test_a_number_of_a_million_digits_is_refused_without_reading_it_exactly(
        tmp_path: Path) -> None:
    from gradcheck_lab.casefile import load_file

    case = tmp_path / "digits.yaml"
    case.write_text("inputs: {x: [1." + "1" * 1_000_000 + ", 2.0]}\noutput: sum(x * x)\n")
    started = time.process_time()
    (error,) = load_file(case)
    assert time.process_time() - started < 10.0  # quadratic: 2 million digits took 97 s
    assert "has 1000001 digits (at most 800" in error.message
    assert len(error.render()) < 300  # the number itself shortened


@pytest.mark.parametrize("make", ["meta", "sparse"])
def test_a_meta_or_sparse_tensor_input_is_a_case_error_from_the_api(make: str) -> None:
    import torch

    import gradcheck_lab

    value = torch.randn(2, device="meta") if make == "meta" else torch.eye(2).to_sparse()
    with pytest.raises(gradcheck_lab.CaseError, match="expected a dense tensor with values"):
        gradcheck_lab.check("sum(x)", {"x": value})


def test_a_negative_tolerance_is_refused_by_the_dropin() -> None:
    import torch

    import gradcheck_lab

    x = torch.randn(3, dtype=torch.float64, requires_grad=True)
    with pytest.raises(ValueError, match="gradcheck: atol: must not be negative"):
        gradcheck_lab.gradcheck(torch.sin, (x,), atol=-1)


def test_an_einsum_numpy_would_loop_over_for_minutes_is_refused_at_load() -> None:
    import gradcheck_lab

    inputs = {name: {"shape": [64, 64, 64], "init": "randn"} for name in "ABCD"}
    started = time.process_time()
    with pytest.raises(gradcheck_lab.CaseError, match=r"would take about 2\.7e\+11 "
                                                      r"operations in numpy's order"):
        gradcheck_lab.check('einsum("abc,ade,bdf,cef->", A, B, C, D)', inputs)
    assert time.process_time() - started < 5.0  # it ran 206 s, past any budget
    small = {name: {"shape": [4, 4, 4], "init": "randn"} for name in "ABCD"}
    (result,) = gradcheck_lab.check('einsum("abc,ade,bdf,cef->", A, B, C, D)', small,
                                    dtypes=["float64"])
    assert result.status == "pass", result.message


def test_files_are_read_one_by_one_as_their_cases_run(tmp_path: Path) -> None:
    # All files were read before the first case ran: a file slow to read (a 15 MB file of
    # long expressions took 207 s) held back every result, and a signal kept none.
    from gradcheck_lab.run.files import run_paths
    from gradcheck_lab.settings import Settings

    (tmp_path / "a.yaml").write_text("inputs: {x: 1.5}\noutput: x * x\n")
    (tmp_path / "b.yaml").write_text("inputs: {x: 1.5}\noutput: x *\n")  # broken, for now
    results = run_paths([tmp_path], Settings(case_timeout=None))
    first = next(results)
    assert (first.case, first.status) == ("a", "pass")
    (tmp_path / "b.yaml").write_text("inputs: {x: 0.5}\noutput: sin(x)\n")  # mended meanwhile
    assert [(r.case, r.status) for r in results] == [("b", "pass")]


def test_the_dropins_time_budget_holds_from_after_the_first_call() -> None:
    # The probes that call func again (does it differentiate inside, does it read by
    # identity) ran outside the budget: seconds=1 with a 5 s func took 16 s.
    import torch

    import gradcheck_lab

    calls = []

    def slow(x):
        calls.append(1)
        time.sleep(0.5)
        return x * 2

    x = torch.randn(3, dtype=torch.float64, requires_grad=True)
    with pytest.raises(gradcheck_lab.BudgetError, match=r"ran past its time budget of 0\.2 s"):
        gradcheck_lab.gradcheck(slow, (x,), seconds=0.2)
    assert len(calls) == 2  # torch's first call, and the first probe, stopped
