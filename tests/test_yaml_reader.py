"""The YAML reader: YAML 1.2 scalars, key lines, and refusal of everything that is not plain
data (tags, alias bombs, recursion, deep nesting, too many nodes, bad bytes) without
constructing anything. Every test runs with libyaml's parser and with the pure-Python
fallback; the two read every file alike."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

import pytest
import yaml

from gradcheck_lab.casefile import yaml_reader
from gradcheck_lab.casefile.yaml_reader import (
    ReadLimits,
    YamlDocument,
    YamlReadError,
    decode_text,
    read_yaml,
)
from tests.conftest import CASES, DATA, TimeBoundError, time_limit

DEFAULT_READ_LIMITS = ReadLimits()
NEEDS_LIBYAML = pytest.mark.skipif(not yaml.__with_libyaml__,
                                   reason="PyYAML was built without libyaml")
PARSERS = [pytest.param("libyaml", marks=NEEDS_LIBYAML), "python"]


@pytest.fixture(autouse=True, params=PARSERS)
def parser(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Each test once with libyaml's scanner and parser, once with PyYAML's pure-Python ones."""
    monkeypatch.setattr(yaml_reader, "_PARSER", request.param)
    return request.param


def read_error(text: str, limits: ReadLimits = DEFAULT_READ_LIMITS) -> YamlReadError:
    """The YamlReadError that reading ``text`` raises."""
    with pytest.raises(YamlReadError) as caught:
        read_yaml(text, limits)
    return caught.value


def read_within(seconds: float, text: str,
                limits: ReadLimits = DEFAULT_READ_LIMITS) -> YamlDocument | YamlReadError:
    """Read ``text``, asserting that the reader answers within ``seconds`` of CPU time (which
    other work on the machine does not stretch).

    SIGALRM interrupts a reader that runs on far past the bound (in wall-clock time, with room
    for a busy machine), so a hang fails instead of hanging.
    """
    result: YamlDocument | YamlReadError | None = None
    start = time.process_time()
    try:
        with time_limit(10 * seconds + 5.0):
            result = read_yaml(text, limits)
    except YamlReadError as exc:
        result = exc
    except TimeBoundError:
        pass  # reported below, outside the reader's frames
    elapsed = time.process_time() - start
    assert result is not None and elapsed < seconds, f"the reader took {elapsed:.2f} s of CPU"
    return result


def rejected_within(seconds: float, text: str,
                    limits: ReadLimits = DEFAULT_READ_LIMITS) -> YamlReadError:
    result = read_within(seconds, text, limits)
    assert isinstance(result, YamlReadError), "expected the text to be rejected"
    return result


def billion_laughs(levels: int = 9, width: int = 9) -> str:
    """The classic alias bomb: ``width ** levels`` leaves from a few hundred bytes."""
    lines = ["a0: &a0 [" + ", ".join(['"lol"'] * width) + "]"]
    for level in range(1, levels + 1):
        lines.append(f"a{level}: &a{level} [" + ", ".join([f"*a{level - 1}"] * width) + "]")
    return "\n".join(lines) + "\n"


def value_of(scalar_text: str) -> object:
    return read_yaml(f"v: {scalar_text}\n").data["v"]


# -- YAML 1.2 scalars ----------------------------------------------------------------------


@pytest.mark.parametrize("text, expected", [
    ("1e-7", Decimal("1e-7")),
    ("0.1", Decimal("0.1")),
    ("-2.5E3", Decimal("-2.5E3")),
    ("3", 3),
    ("-7", -7),
    ("012", 12),       # YAML 1.2: decimal, not octal
    ("0x10", 16),
    ("0o17", 15),
    ("true", True),
    ("False", False),
    ("~", None),
    ("null", None),
    ("y", "y"),        # YAML 1.1 booleans are text in 1.2
    ("yes", "yes"),
    ("no", "no"),
    ("on", "on"),
    ("off", "off"),
    ("1_000", "1_000"),
    ("0b101", "0b101"),
    ("'1'", "1"),      # quoted numbers stay text
    ('"2.5"', "2.5"),
    ("'1e-7'", "1e-7"),
    ("'true'", "true"),
])
def test_scalars_follow_yaml_1_2(text, expected) -> None:
    value = value_of(text)
    assert value == expected
    assert type(value) is type(expected)


def test_decimals_are_exact_not_floats() -> None:
    value = value_of("1e-7")
    assert isinstance(value, Decimal)
    assert value == Decimal(1) / Decimal(10_000_000)


@pytest.mark.parametrize("text, sign", [(".inf", 1), ("-.inf", -1), ("+.Inf", 1)])
def test_infinities_are_floats(text, sign) -> None:
    value = value_of(text)
    assert isinstance(value, float)
    assert value == sign * math.inf


@pytest.mark.parametrize("text", [".nan", ".NaN", ".NAN"])
def test_nan_is_a_float(text) -> None:
    value = value_of(text)
    assert isinstance(value, float)
    assert math.isnan(value)


@pytest.mark.parametrize("text, expected", [
    ("!!int 3", 3), ("!!str 12", "12"), ("!!float 1", Decimal(1)), ("!!bool true", True),
])
def test_explicit_plain_data_tags_are_allowed(text, expected) -> None:
    value = value_of(text)
    assert value == expected
    assert type(value) is type(expected)


def test_explicit_tag_must_match_its_value() -> None:
    error = read_error("a: 1\nb: !!int x\n")
    assert error.line == 2
    assert "not a valid int" in error.message


@pytest.mark.parametrize("literal", ["9" * 5000, "0x" + "f" * 5000, "0o" + "7" * 401],
                         ids=["decimal", "hexadecimal", "octal"])
def test_an_integer_literal_of_too_many_digits_in_any_base_is_rejected_at_its_line(
        literal: str) -> None:
    error = read_error(f"a: 1\nb: {literal}\n")
    assert error.line == 2
    assert "is beyond every dtype's range (at most 400 digits)" in error.message
    assert len(error.message) < 200  # the literal is not echoed whole


# -- key lines -----------------------------------------------------------------------------


def test_key_lines_are_one_based_for_nested_keys_and_list_items() -> None:
    document = read_yaml(
        "# a comment\n"        # 1
        "name: demo\n"          # 2
        "inputs:\n"             # 3
        "  x: 1\n"              # 4
        "  W:\n"                # 5
        "    shape: [2, 3]\n"   # 6
        "cases:\n"              # 7
        "  - first\n"           # 8
        "  - key: 1\n"          # 9
        "    other: 2\n"        # 10
    )
    assert document.key_lines[("name",)] == 2
    assert document.key_lines[("inputs",)] == 3
    assert document.key_lines[("inputs", "x")] == 4
    assert document.key_lines[("inputs", "W", "shape")] == 6
    assert document.key_lines[("cases", 0)] == 8
    assert document.key_lines[("cases", 1)] == 9
    assert document.key_lines[("cases", 1, "other")] == 10
    assert document.line_of(("inputs", "W", "shape", 1)) == 6  # deepest existing part


def test_key_lines_inside_lists_of_mappings() -> None:
    document = read_yaml(
        "a:\n"                  # 1
        "  - b: 1\n"            # 2
        "    c:\n"              # 3
        "      - 2\n"           # 4
        "      - d: 3\n"        # 5
    )
    assert document.key_lines[("a", 0)] == 2
    assert document.key_lines[("a", 0, "b")] == 2
    assert document.key_lines[("a", 0, "c")] == 3
    assert document.key_lines[("a", 0, "c", 0)] == 4
    assert document.key_lines[("a", 0, "c", 1, "d")] == 5


def test_first_key_on_first_line_is_line_one() -> None:
    assert read_yaml("a: 1\n").key_lines[("a",)] == 1


def test_line_of_a_missing_path_falls_back_to_the_document() -> None:
    document = read_yaml("\n\n# c\na: 1\n")
    assert document.line_of(("nowhere", "deeper")) == 4


def test_duplicate_key_is_reported_at_its_second_occurrence() -> None:
    error = read_error("inputs:\n  x: 1\n  y: 2\n  x: 3\noutput: x\n")
    assert error.line == 4
    assert "duplicate key 'x'" in error.message
    assert error.path == ("inputs", "x")


def test_duplicate_key_spelled_with_quotes_is_still_a_duplicate() -> None:
    error = read_error("a: 1\nb: 2\n'a': 3\n")
    assert error.line == 3
    assert "duplicate key 'a'" in error.message


def test_merge_keys_are_rejected() -> None:
    error = read_error("base: &b {x: 1}\nother:\n  <<: *b\n")
    assert error.line == 3
    assert "merge keys" in error.message


# -- tags: nothing is constructed ----------------------------------------------------------


@pytest.mark.parametrize("template", [
    "!!python/object/apply:os.system ['touch MARKER']",
    "!!python/object/apply:subprocess.check_call [['touch', 'MARKER']]",
    "!!python/object/new:builtins.open ['MARKER', 'w']",
    "!!python/name:os.system",
    "!!python/module:os",
    "!foo MARKER",
    "!!set {MARKER: null}",
    "!!binary dG91Y2g=",
    "!!timestamp 2001-12-14",
    "!!omap [{a: MARKER}]",
])
def test_tags_are_rejected_at_their_line_and_nothing_runs(template, tmp_path) -> None:
    marker = tmp_path / "pwned"
    text = f"name: demo\ninputs:\n  x: 1\noutput: {template.replace('MARKER', str(marker))}\n"
    error = read_error(text)
    assert error.line == 4
    assert "tag" in error.message
    assert not marker.exists()
    assert list(tmp_path.iterdir()) == []


def test_tag_on_the_whole_document_is_rejected(tmp_path) -> None:
    marker = tmp_path / "pwned"
    error = read_error(f"--- !!python/object/apply:os.system ['touch {marker}']\n")
    assert error.line == 1
    assert "python/object/apply:os.system" in error.message
    assert not marker.exists()


def test_tag_on_a_list_item_names_the_item_line() -> None:
    error = read_error("a:\n  - 1\n  - !foo [1]\n")
    assert error.line == 3
    assert "'!foo'" in error.message


def test_tag_on_a_key_is_rejected(tmp_path) -> None:
    marker = tmp_path / "pwned"
    error = read_error(f"a: 1\n!!python/object/apply:os.system ['touch {marker}']: 1\n")
    assert error.line == 2
    assert not marker.exists()


def test_tagged_anchor_is_rejected_where_it_is_defined() -> None:
    error = read_error("a: 1\nb: &x !foo 1\nc: *x\n")
    assert error.line == 2
    assert "'!foo'" in error.message


# -- hostile structure ---------------------------------------------------------------------


def test_billion_laughs_is_rejected_quickly_with_default_limits() -> None:
    error = rejected_within(2.0, billion_laughs())
    assert "alias" in error.message
    assert error.line >= 1


def test_billion_laughs_is_rejected_under_a_small_node_budget() -> None:
    error = rejected_within(2.0, billion_laughs(levels=5), ReadLimits(max_nodes=20_000))
    assert "more than 20000 YAML nodes" in error.message


def test_small_alias_expansion_is_read_in_full() -> None:
    data = read_yaml("a: &a [1, 2]\nb: [*a, *a]\n").data
    assert data == {"a": [1, 2], "b": [[1, 2], [1, 2]]}


def test_alias_expansion_just_under_the_node_budget_is_answered_quickly() -> None:
    # A ~5 KB file expanding to ~1.9 million nodes once took ~15 s and ~750 MB to build.
    leaves = 1000
    copies = (DEFAULT_READ_LIMITS.max_nodes - 2 * leaves) // leaves - 100  # just under budget
    text = ("a: &a [" + ", ".join(["1"] * leaves) + "]\n"
            "b: [" + ", ".join(["*a"] * copies) + "]\n")
    assert len(text) < 20_000
    read_within(2.0, text)  # read or rejected: either way within the bound


def test_alias_node_budget_can_be_set() -> None:
    text = "a: &a [1, 2, 3, 4, 5]\nb: [*a, *a, *a]\n"  # aliases add 18 nodes to the file's 10
    assert read_yaml(text, ReadLimits(max_alias_nodes=1000)).data["b"] == [[1, 2, 3, 4, 5]] * 3
    assert "aliases are expanded" in read_error(text, ReadLimits(max_alias_nodes=10)).message


@pytest.mark.parametrize("text", [
    "a: &a [*a]\n",
    "a: &a {b: *a}\n",
    "x: 1\na: &a\n  - 1\n  - *a\n",
])
def test_recursive_alias_is_rejected(text) -> None:
    error = rejected_within(2.0, text)
    assert "recursive alias" in error.message


def test_recursive_alias_names_its_line() -> None:
    error = read_error("x: 1\ny: 2\na: &a\n  - 1\n  - *a\n")
    assert error.line == 3
    assert "recursive alias" in error.message


def test_undefined_alias_is_rejected_at_its_line() -> None:
    error = read_error("a: &a [1]\nb: *b\n")
    assert error.line == 2
    assert "undefined alias" in error.message


def flow_nested(levels: int) -> str:
    """``a:`` holding ``levels`` nested flow lists around a number (levels + 2 deep in all)."""
    return "a: " + "[" * levels + "1" + "]" * levels + "\n"


def block_nested(levels: int) -> str:
    """The same data as flow_nested, written as nested block lists."""
    lines = ["a:"] + ["  " * (level + 1) + "-" for level in range(levels)]
    return "\n".join(lines) + " 1\n"


@pytest.mark.parametrize("nested", [flow_nested, block_nested])
def test_nesting_at_the_limit_is_read(nested) -> None:
    levels = DEFAULT_READ_LIMITS.max_depth - 1  # the mapping, the lists, then the number
    data = read_yaml(nested(levels)).data["a"]
    for _ in range(levels - 1):
        (data,) = data
    assert data == [1]


@pytest.mark.parametrize("nested", [flow_nested, block_nested])
def test_nesting_deeper_than_the_limit_is_rejected(nested) -> None:
    depth = DEFAULT_READ_LIMITS.max_depth
    error = read_error(nested(depth))
    assert f"deeper than {depth}" in error.message


def test_flow_and_block_nesting_are_the_same_data() -> None:
    assert read_yaml(flow_nested(5)).data == read_yaml(block_nested(5)).data


def test_brackets_inside_quotes_and_comments_are_not_nesting() -> None:
    deep = "[" * 100
    document = read_yaml(f"a: '{deep}'\nb: \"{deep}\"  # {deep}\n# {deep}\nc: [1, [2]]\n")
    assert document.data == {"a": deep, "b": deep, "c": [1, [2]]}


@pytest.mark.parametrize("text", [
    pytest.param("a: 'it''s " + "[" * 70 + "'\n", id="single-quoted-with-escaped-quote"),
    pytest.param('a: "say \\" ' + "[" * 70 + '"\n', id="double-quoted-with-escaped-quote"),
    pytest.param("a: |\n  " + "[" * 70 + "\n", id="block-scalar"),
])
def test_brackets_in_text_with_escapes_or_in_block_scalars_are_not_nesting(text) -> None:
    result = read_within(1.0, text)
    assert isinstance(result, YamlDocument), str(result)
    assert result.data["a"].count("[") == 70


def test_nesting_limit_names_the_line_where_it_is_exceeded() -> None:
    text = "a:\n  b:\n    c:\n      d: 1\n"
    assert read_yaml(text, ReadLimits(max_depth=4)).data == {"a": {"b": {"c": {"d": 1}}}}
    error = read_error(text, ReadLimits(max_depth=3))
    assert error.line == 4
    assert "deeper than 3" in error.message


def test_nesting_beyond_the_parser_is_rejected_not_crashed() -> None:
    # Once deep enough for PyYAML's recursive composer to give up (a RecursionError); now the
    # composer stops at level 65.
    error = rejected_within(2.0, "[" * 500 + "]" * 500)
    assert "nesting deeper than 64 levels" in error.message


def test_deep_nesting_is_rejected_without_reading_the_whole_file() -> None:
    # PyYAML's scanner is quadratic in flow depth: composing all of this took ~13 s.
    deep = "[" * 400 + "]" * 400
    text = "".join(f"k{i}: {deep}\n" for i in range(160))
    error = rejected_within(1.0, text)
    assert error.line == 1
    assert "deeper than" in error.message


# -- text and syntax -----------------------------------------------------------------------


@pytest.mark.parametrize("raw, line", [
    (b"a: \xff\n", 1),
    (b"a: 1\nb: \xff\n", 2),
    (b"# caf\xc3\xa9\na: 1\nb: x\xe9y\n", 3),  # valid multi-byte UTF-8 before the bad byte
    (b"a: 1\n\n\nb: \xc3\n", 4),               # a truncated multi-byte sequence
])
def test_non_utf8_bytes_name_the_line_of_the_bad_byte(raw, line) -> None:
    with pytest.raises(YamlReadError) as caught:
        decode_text(raw)
    assert caught.value.line == line
    assert "not UTF-8" in caught.value.message


def test_utf8_text_is_decoded() -> None:
    assert decode_text("d: café\n".encode()) == "d: café\n"


def test_utf8_byte_order_mark_is_accepted() -> None:
    assert read_yaml(decode_text(b"\xef\xbb\xbfa: 1\n")).data == {"a": 1}


@pytest.mark.parametrize("character", ["\x07", "\x00", "\x1b"])
def test_control_characters_are_rejected_at_their_line(character) -> None:
    error = read_error(f"a: 1\nb: x{character}y\n")
    assert error.line == 2
    assert "control characters" in error.message


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n"])
def test_empty_file_is_rejected(text) -> None:
    error = read_error(text)
    assert "empty" in error.message
    assert error.line == 1


@pytest.mark.parametrize("text, line", [
    ("a: 1\nb: [1, 2\nc: 3\n", 3),
    ("a: 1\n  b: 2\n", 2),
    ('a: 1\nb: "abc\n', 3),
    ("a:\n\tb: 1\n", 2),
    ("a: 1\nb: 2\n]\n", 3),
    ("a: 1\n---\nb: 2\n", 2),
    ("a: 1\nb: {c: 1\nd: 2\n", 3),
])
def test_syntax_errors_give_the_line_where_parsing_stopped(text, line) -> None:
    error = read_error(text)
    assert error.message.startswith("invalid YAML")
    assert error.line == line


def test_reading_never_writes_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    for payload in ["!!python/object/apply:os.system ['touch pwned']",
                    "!!python/object/new:builtins.open ['pwned', 'w']"]:
        read_error(f"a: {payload}\n")
    assert list(tmp_path.iterdir()) == []


def test_nesting_after_a_block_scalar_is_counted_on_its_own_line() -> None:
    text = "a: |-\n  [[[ text\n\n  more ]\nb: x > y\nc:\n  " + "[" * 70 + "]" * 70 + "\n"
    error = read_error(text, ReadLimits(max_depth=64))
    assert "deeper than 64" in error.message
    assert error.line == 7


# -- nesting and sizes are bounded while composing -----------------------------------------

LIBYAML_ONLY = pytest.mark.parametrize("parser", [pytest.param("libyaml", marks=NEEDS_LIBYAML)],
                                       indirect=True)


def test_a_quote_inside_a_plain_scalar_does_not_hide_the_nesting_after_it() -> None:
    # A bracket pre-scan once took this quote for the start of a quoted scalar running to the
    # end of the file, and let the brackets through to PyYAML's quadratic scanner.
    text = "description: rock 'n roll\nx: " + "[" * 100_000 + "\n"
    error = rejected_within(1.0, text)
    assert error.line == 2
    assert "nesting deeper than 64 levels" in error.message


@pytest.mark.parametrize("brackets", ["[" * 100, "{" * 100, "[{" * 50 + "]}" * 50])
def test_brackets_inside_a_plain_scalar_are_text_not_nesting(brackets: str) -> None:
    text = f"description: it's a test {brackets}\nx: [1, [2]]\n"
    result = read_within(1.0, text)
    assert isinstance(result, YamlDocument), str(result)
    assert result.data == {"description": f"it's a test {brackets}", "x": [1, [2]]}


@pytest.mark.parametrize("text", [
    pytest.param("[" * 1_000_000, id="a-million-brackets"),
    pytest.param("x: " + "{a: " * 100_000 + "\n", id="nested-flow-mappings"),
    pytest.param("a:\n" + "".join("  " * (i + 1) + "-\n" for i in range(1000)), id="block"),
])
def test_nesting_far_beyond_the_limit_is_refused_at_once(text: str) -> None:
    error = rejected_within(1.0, text)
    assert "nesting deeper than 64 levels" in error.message


@LIBYAML_ONLY
def test_libyamls_own_nesting_bound_reads_as_the_nesting_error() -> None:
    # Past 1000 nested brackets libyaml's scanner stops by itself ("exceeded max depth").
    error = read_error("[" * 1001 + "]" * 1001, ReadLimits(max_depth=5000))
    assert error.line == 1
    assert error.message == "nesting deeper than 1000 levels"


def record_composers(monkeypatch: pytest.MonkeyPatch) -> list:
    """Every composer read_yaml makes from now on, kept for inspection."""
    made = []
    for name, composer in list(yaml_reader._COMPOSERS.items()):

        class Recording(composer):
            def __init__(self, text: str, limits: ReadLimits) -> None:
                super().__init__(text, limits)
                made.append(self)

        monkeypatch.setitem(yaml_reader._COMPOSERS, name, Recording)
    return made


@pytest.mark.parametrize("layout, line", [
    # root, a, 1, x, the list: the 1001st node is item 996, on line 2 + 996
    ("list", 998),
    # root, m, the mapping: the 1001st node is the key of pair 499 (k498), on line 2 + 498
    ("mapping", 500),
])
def test_the_node_budget_stops_composing_at_the_node_over_it(
        monkeypatch: pytest.MonkeyPatch, layout: str, line: int) -> None:
    limit = 1000
    if layout == "list":
        text = "a: 1\nx:\n" + "- 0\n" * (10 * limit)
    else:
        text = "m:\n" + "".join(f"  k{i}: {i}\n" for i in range(5 * limit))
    made = record_composers(monkeypatch)

    def never(*args: object) -> None:
        pytest.fail("the node tree was walked")

    monkeypatch.setattr(yaml_reader, "_Converter", never)
    monkeypatch.setattr(yaml_reader, "_check_expanded_size", never)
    error = read_error(text, ReadLimits(max_nodes=limit))
    assert error.message == f"more than {limit} YAML nodes (keys, values and list items) in " \
                            "the file"
    assert error.line == line
    (composer,) = made
    assert composer.nodes == limit + 1  # of the file's 10,000 and more


def test_a_file_at_the_node_budget_is_read() -> None:
    text = "x: [" + ", ".join(["0"] * 997) + "]\n"  # the mapping, x, the list and 997 items
    assert read_yaml(text, ReadLimits(max_nodes=1000)).data["x"] == [0] * 997
    assert "more than 999 YAML nodes" in read_error(text, ReadLimits(max_nodes=999)).message


def test_aliases_count_once_each_in_the_files_own_nodes() -> None:
    text = "a: &a [1, 2, 3]\nb: [*a, *a]\n"  # 10 nodes of its own (2 aliases); 16 expanded
    assert read_yaml(text, ReadLimits(max_nodes=16)).data["b"] == [[1, 2, 3]] * 2
    assert "once aliases are expanded" in read_error(text, ReadLimits(max_nodes=15)).message
    assert "once aliases" in read_error(text, ReadLimits(max_nodes=10)).message
    assert "in the file" in read_error(text, ReadLimits(max_nodes=9)).message


@pytest.mark.slow
@LIBYAML_ONLY
@pytest.mark.parametrize("layout", ["flat-list", "flat-mapping"])
def test_a_file_ten_times_over_the_default_budget_is_refused_quickly(layout: str) -> None:
    items = 10 * DEFAULT_READ_LIMITS.max_nodes
    if layout == "flat-list":
        text = "x: [" + ",".join(["0"] * items) + "]\n"
    else:
        text = "m: {" + ",".join(f"k{i}" for i in range(items // 2)) + "}\n"
    error = rejected_within(5.0, text)  # about 1 s; loosely bounded for a busy machine
    assert f"more than {DEFAULT_READ_LIMITS.max_nodes} YAML nodes" in error.message


@pytest.mark.slow
@LIBYAML_ONLY
def test_the_largest_case_files_are_refused_in_seconds_and_little_memory(
        tmp_path: Path) -> None:
    """The largest file the loader reads (16 MiB) as 8 million numbers, and a mapping of a
    million keys: once 40 s to 3 minutes and 1.7 to 6 GB before they were refused."""
    limit = 16 * 2**20
    numbers = tmp_path / "numbers.yaml"
    head = "inputs:\n  x: ["
    numbers.write_text(head + "0," * ((limit - len(head) - 2) // 2) + "0]")
    keys = tmp_path / "keys.yaml"
    keys.write_text("m:\n" + "".join(f"  k{i}: 0\n" for i in range(1_000_000)))
    script = (
        "import json, resource, sys, time\n"
        "from pathlib import Path\n"
        "from gradcheck_lab.casefile.loader import load_file\n"
        "found = []\n"
        "for name in sys.argv[1:]:\n"
        "    started = time.process_time()\n"
        "    (error,) = load_file(Path(name))\n"
        "    found.append((error.message, time.process_time() - started))\n"
        # VmHWM is this process image's own peak: ru_maxrss keeps the peak of a large
        # parent (a busy pytest-xdist worker) that forked this one before its exec.
        "status = Path('/proc/self/status')\n"
        "hwm = [line for line in status.read_text().splitlines() if line.startswith('VmHWM')]"
        " if status.exists() else []\n"
        "peak = (int(hwm[0].split()[1]) * 1024 if hwm else\n"
        "        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)\n"
        "print(json.dumps({'found': found, 'peak': peak}))\n")
    done = subprocess.run([sys.executable, "-c", script, str(numbers), str(keys)],
                          capture_output=True, text=True, timeout=120, check=True)
    report = json.loads(done.stdout)
    assert numbers.stat().st_size == limit
    for message, seconds in report["found"]:
        assert f"more than {DEFAULT_READ_LIMITS.max_nodes} YAML nodes" in message
        assert seconds < 5.0  # about 1 s; loosely bounded for a busy machine
    assert report["peak"] < 2**30


# -- aliases as keys, anchors ----------------------------------------------------------------


@pytest.mark.parametrize("text", [
    "inputs:\n  &k x: [1.0]\n  y: [2.0]\n\n  *k : 2.0\n",
    "a: &k x\nb: 1\nc: 2\nd: 3\ne: {*k : 1}\n",
])
def test_an_alias_as_a_mapping_key_is_refused_at_its_own_line(text: str) -> None:
    error = read_error(text)
    assert error.line == 5
    assert error.message == "an alias (*k) cannot be a mapping key: write the key out"


def test_an_anchor_defined_twice_names_both_lines() -> None:
    error = read_error("a: &x 1\nb: 2\nc: &x 3\n")
    assert error.line == 3
    assert error.message == "invalid YAML: the anchor &x is defined twice (first on line 1)"


def test_a_lone_surrogate_is_an_unacceptable_character() -> None:
    error = read_error("a: 1\nb: x\ud800\n")
    assert error.line == 2
    assert "unacceptable character #xd800" in error.message


# -- libyaml's parser and PyYAML's read alike ----------------------------------------------


AGREEMENT_TEXTS = [
    "a: 'é😀x'\nb: \"😀 and \\u00e9\"\nc: plain é text\nd: [1, 'two', \"3\"]\n",
    "\ufeffa: 1\nb: [x, y]\n",
    "a: 1\r\nb:\r\n  - 2\r\n",
    "a: |\n  block\n  text\nb: >-\n  folded\n  text\nc: 'multi\n  line'\n",
    "a: &x [1, {b: 2}]\nc: [*x, *x]\n? d\n: 4\n",
    "a: !!str 1\nb: !!float 2\nc: ! 3\nd: !!null ''\n",
    "%YAML 1.1\n---\na: 1\n...\n",
    "a: 1\nb: [1, 2\nc: 3\n",
    "a: 1\n---\nb: 2\n",
    "a: *nowhere\n",
    "a: 1\n  b: 2\n",
    "x: " + "[" * 70 + "]" * 70 + "\n",
    "a: &x 1\nb: &x 2\n",
    "a: 1\nb: x\x07y\n",
    "a: [1, *a]\nb: &r [*r]\n",
    "a: !foo 1\nb: !!python/name:os.system\n",
]


def outcome(text: str) -> tuple:
    """What reading ``text`` gives, in a form two readers can be compared by: the data (as
    repr, nan being unequal to itself), the lines and marks; or the error's line and message
    (the problem text of a syntax error is each parser's own)."""
    try:
        document = read_yaml(text)
    except YamlReadError as exc:
        message = exc.message
        own = ("invalid YAML: unacceptable character", "invalid YAML: the anchor")
        if message.startswith("invalid YAML: ") and not message.startswith(own):
            message = "invalid YAML"
        return "error", exc.line, message, exc.path
    marks = {path: mark for path, mark in document.value_marks.items()}
    if text.startswith("\ufeff"):  # PyYAML counts the byte order mark as a column, libyaml not
        marks = {path: mark._replace(column=0) if mark.line == 1 and mark.column <= 1 else mark
                 for path, mark in marks.items()}
    return "read", repr(document.data), document.key_lines, marks


def corpus_texts() -> list:
    texts = [pytest.param(text, id=f"text{index}") for index, text in enumerate(AGREEMENT_TEXTS)]
    for path in sorted([*(DATA / "hostile").glob("*.yaml"), *CASES.glob("*.yaml")]):
        if path.stat().st_size > 100_000:  # the sizes_* files: seconds in pure Python
            continue
        try:
            text = decode_text(path.read_bytes())
        except YamlReadError:
            continue
        texts.append(pytest.param(text, id=path.name))
    return texts


@pytest.mark.slow
@LIBYAML_ONLY
@pytest.mark.parametrize("text", corpus_texts())
def test_libyaml_and_pure_python_read_every_file_alike(monkeypatch: pytest.MonkeyPatch,
                                                       text: str) -> None:
    found = {}
    for parser in ("libyaml", "python"):
        monkeypatch.setattr(yaml_reader, "_PARSER", parser)
        found[parser] = outcome(text)
    assert found["libyaml"] == found["python"]


@pytest.mark.parametrize("separator", ["\x85", "\u2028", "\u2029"])
def test_yaml_1_1_line_breaks_are_characters_and_shift_no_line(separator: str) -> None:
    text = (f"a: 1  # a comment {separator} goes on\n"
            f"b: 'x{separator}y'\n"
            f"c{separator}d: 2\n")
    document = read_within(1.0, text)
    assert isinstance(document, YamlDocument)
    assert document.data == {"a": 1, "b": f"x{separator}y", f"c{separator}d": 2}
    assert document.key_lines[("b",)] == 2 and document.key_lines[(f"c{separator}d",)] == 3


def test_a_private_use_stand_in_beside_a_yaml_1_1_break_is_refused_at_its_line() -> None:
    error = rejected_within(1.0, "a: 1  # \u2028\nb: '\ue001'\n")
    assert error.line == 2 and "U+E001" in error.message
