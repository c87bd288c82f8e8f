"""The YAML reader: YAML 1.2 scalars, key lines, and refusal of everything that is not plain
data (tags, alias bombs, recursion, deep nesting, bad bytes) without constructing anything."""

from __future__ import annotations

import math
from decimal import Decimal

import pytest

from gradcheck_lab.casefile.yaml_reader import ReadLimits, YamlReadError, decode_text, read_yaml
from tests.conftest import time_limit

DEFAULT_READ_LIMITS = ReadLimits()


def read_error(text: str, limits: ReadLimits = DEFAULT_READ_LIMITS) -> YamlReadError:
    """The YamlReadError that reading ``text`` raises."""
    with pytest.raises(YamlReadError) as caught:
        read_yaml(text, limits)
    return caught.value


def billion_laughs(levels: int = 9, width: int = 9) -> str:
    """The classic alias bomb: ``width ** levels`` leaves from a few hundred bytes."""
    lines = ["a0: &a0 [" + ", ".join(['"lol"'] * width) + "]"]
    for level in range(1, levels + 1):
        lines.append(f"a{level}: &a{level} [" + ", ".join([f"*a{level - 1}"] * width) + "]")
    return "\n".join(lines) + "\n"


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
    ("'1'", "1"),      # quoted numbers stay text
    ('"2.5"', "2.5"),
    ("'true'", "true"),
])
def test_scalars_follow_yaml_1_2(text, expected) -> None:
    value = read_yaml(f"v: {text}\n").data["v"]
    assert value == expected
    assert type(value) is type(expected)


def test_decimals_are_exact_not_floats() -> None:
    value = read_yaml("v: 1e-7\n").data["v"]
    assert isinstance(value, Decimal)
    assert value == Decimal(1) / Decimal(10_000_000)


@pytest.mark.parametrize("text, sign", [(".inf", 1), ("-.inf", -1), ("+.Inf", 1)])
def test_infinities_are_floats(text, sign) -> None:
    value = read_yaml(f"v: {text}\n").data["v"]
    assert isinstance(value, float)
    assert value == sign * math.inf


def test_nan_is_a_float() -> None:
    value = read_yaml("v: .nan\n").data["v"]
    assert isinstance(value, float)
    assert math.isnan(value)


@pytest.mark.parametrize("text, expected", [
    ("!!int 3", 3), ("!!str 12", "12"), ("!!float 1", Decimal(1)), ("!!bool true", True),
])
def test_explicit_plain_data_tags_are_allowed(text, expected) -> None:
    value = read_yaml(f"v: {text}\n").data["v"]
    assert value == expected
    assert type(value) is type(expected)


def test_explicit_tag_must_match_its_value() -> None:
    error = read_error("a: 1\nb: !!int x\n")
    assert error.line == 2
    assert "not a valid int" in error.message


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


def test_first_key_on_first_line_is_line_one() -> None:
    assert read_yaml("a: 1\n").key_lines[("a",)] == 1


def test_duplicate_key_is_reported_at_its_second_occurrence() -> None:
    error = read_error("inputs:\n  x: 1\n  y: 2\n  x: 3\noutput: x\n")
    assert error.line == 4
    assert "duplicate key 'x'" in error.message
    assert error.path == ("inputs", "x")


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


def test_tag_on_a_list_item_names_the_item_line() -> None:
    error = read_error("a:\n  - 1\n  - !foo [1]\n")
    assert error.line == 3
    assert "'!foo'" in error.message


def test_tag_on_a_key_is_rejected(tmp_path) -> None:
    marker = tmp_path / "pwned"
    error = read_error(f"a: 1\n!!python/object/apply:os.system ['touch {marker}']: 1\n")
    assert error.line == 2
    assert not marker.exists()


# -- hostile structure ---------------------------------------------------------------------


def test_billion_laughs_is_rejected_under_a_small_node_budget() -> None:
    with time_limit(2.0):
        error = read_error(billion_laughs(), ReadLimits(max_nodes=20_000))
    assert "alias" in error.message


def test_billion_laughs_is_rejected_quickly_with_default_limits() -> None:
    with time_limit(2.0):
        error = read_error(billion_laughs())
    assert "alias" in error.message


@pytest.mark.parametrize("text", [
    "a: &a [*a]\n",
    "a: &a {b: *a}\n",
    "x: 1\na: &a\n  - 1\n  - *a\n",
])
def test_recursive_alias_is_rejected(text) -> None:
    with time_limit(2.0):
        error = read_error(text)
    assert "recursive alias" in error.message


def test_undefined_alias_is_rejected_at_its_line() -> None:
    error = read_error("a: &a [1]\nb: *b\n")
    assert error.line == 2
    assert "undefined alias" in error.message


def test_nesting_at_the_limit_is_read() -> None:
    depth = ReadLimits().max_depth
    data = read_yaml("[" * (depth + 1) + "]" * (depth + 1)).data
    for _ in range(depth):
        (data,) = data
    assert data == []


def test_nesting_deeper_than_the_limit_is_rejected() -> None:
    depth = ReadLimits().max_depth
    error = read_error("[" * (depth + 2) + "]" * (depth + 2))
    assert f"deeper than {depth}" in error.message


def test_nesting_limit_names_the_line_where_it_is_exceeded() -> None:
    text = "a:\n  b:\n    c:\n      d: 1\n"
    assert read_yaml(text, ReadLimits(max_depth=4)).data == {"a": {"b": {"c": {"d": 1}}}}
    error = read_error(text, ReadLimits(max_depth=3))
    assert error.line == 4
    assert "deeper than 3" in error.message


def test_nesting_beyond_the_parser_is_rejected_not_crashed() -> None:
    # Deep enough for the composer's recursion to give up (a RecursionError inside PyYAML).
    with time_limit(2.0):
        error = read_error("[" * 500 + "]" * 500)
    assert "nest" in error.message


# -- text and syntax -----------------------------------------------------------------------


@pytest.mark.parametrize("raw, line", [
    (b"a: \xff\n", 1),
    (b"a: 1\nb: \xff\n", 2),
    (b"# caf\xc3\xa9\na: 1\nb: x\xe9y\n", 3),  # valid multi-byte UTF-8 before the bad byte
])
def test_non_utf8_bytes_name_the_line_of_the_bad_byte(raw, line) -> None:
    with pytest.raises(YamlReadError) as caught:
        decode_text(raw)
    assert caught.value.line == line
    assert "not UTF-8" in caught.value.message


def test_utf8_text_is_decoded() -> None:
    assert decode_text("d: café\n".encode()) == "d: café\n"


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
])
def test_syntax_errors_give_the_line_where_parsing_stopped(text, line) -> None:
    error = read_error(text)
    assert error.message.startswith("invalid YAML")
    assert error.line == line
