"""Read YAML text as plain data (YAML 1.2 core schema) with the line of every key.

Only PyYAML's reader, scanner, parser and composer run: no object is ever constructed from a
tag, so ``!!python/...`` cannot execute anything. The node tree is converted here, with limits
on depth and on the number of nodes (aliases are counted each time they are expanded).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

import yaml

from gradcheck_lab.errors import SpecError

Path = tuple[str | int, ...]

# Tags a case file may spell out explicitly: plain data only.
_PLAIN_DATA_TAGS = {
    "tag:yaml.org,2002:str",
    "tag:yaml.org,2002:int",
    "tag:yaml.org,2002:float",
    "tag:yaml.org,2002:bool",
    "tag:yaml.org,2002:null",
    "tag:yaml.org,2002:map",
    "tag:yaml.org,2002:seq",
}
_PLAIN = "gradcheck-lab:plain"  # an untagged plain scalar, resolved here by the YAML 1.2 rules

# YAML 1.2 core schema (https://yaml.org/spec/1.2.2/#1023-core-schema).
# float64's largest value has 309 decimal digits (256 hexadecimal): no integer literal of a
# case needs more than this many digits in any base.
MAX_INTEGER_DIGITS = 400
_NULL = re.compile(r"^(?:~|null|Null|NULL|)$")
_BOOL = re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$")
_INT10 = re.compile(r"^[-+]?[0-9]+$")
_INT8 = re.compile(r"^0o[0-7]+$")
_INT16 = re.compile(r"^0x[0-9a-fA-F]+$")
_FLOAT = re.compile(r"^[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?$")
_INF = re.compile(r"^[-+]?\.(?:inf|Inf|INF)$")
_NAN = re.compile(r"^\.(?:nan|NaN|NAN)$")


@dataclass(frozen=True)
class ReadLimits:
    """Bounds that keep hostile input from exhausting time or memory."""

    max_depth: int = 64
    max_nodes: int = 2_000_000
    # Nodes that aliases add beyond the file's own: a small file cannot grow into millions.
    max_alias_nodes: int = 100_000


@dataclass(frozen=True)
class ValueMark:
    """Where a value starts: 1-based line, 0-based column, and its scalar style.

    ``style`` is None for a plain scalar, a quote or block character otherwise, and "" for a
    collection. ``verbatim``: the scalar's text is its source on one line (no folding, no
    escapes), so a column inside the text is a column in the file.
    """

    line: int
    column: int
    style: str | None
    verbatim: bool = False


@dataclass
class YamlDocument:
    """Plain data (dict, list, str, int, Decimal, float inf/nan, bool, None) plus positions.

    ``key_lines[path]`` is the 1-based line of the key (or sequence item) at ``path``;
    ``value_marks[path]`` is where the value there starts.
    """

    data: Any
    key_lines: dict[Path, int] = field(default_factory=dict)
    value_marks: dict[Path, ValueMark] = field(default_factory=dict)

    def line_of(self, path: Path) -> int:
        """The line of the deepest part of ``path`` that exists in the document."""
        while path:
            if path in self.key_lines:
                return self.key_lines[path]
            path = path[:-1]
        return self.key_lines.get((), 1)


class _Resolver(yaml.resolver.BaseResolver):
    """Marks untagged plain scalars so that YAML 1.2 rules (not PyYAML's 1.1) resolve them."""

    def resolve(self, kind: type, value: Any, implicit: tuple[bool, bool]) -> str:
        if kind is yaml.ScalarNode and implicit[0]:
            return _PLAIN
        return super().resolve(kind, value, implicit)


class _Composer(
    yaml.reader.Reader, yaml.scanner.Scanner, yaml.parser.Parser, yaml.composer.Composer, _Resolver
):
    def __init__(self, text: str) -> None:
        yaml.reader.Reader.__init__(self, text)
        yaml.scanner.Scanner.__init__(self)
        yaml.parser.Parser.__init__(self)
        yaml.composer.Composer.__init__(self)
        _Resolver.__init__(self)


class YamlReadError(SpecError):
    """A problem with the YAML itself, at a 1-based line."""

    def __init__(self, message: str, line: int, path: Path = ()) -> None:
        super().__init__(message)
        self.line = line
        self.path = path


def decode_text(raw: bytes) -> str:
    """UTF-8 text of a case file, or a YamlReadError at the line of the first bad byte."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise YamlReadError(
            f"not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start})", line
        ) from None


def read_yaml(text: str, limits: ReadLimits = ReadLimits()) -> YamlDocument:
    """Parse one YAML document into plain data with key lines; raises YamlReadError."""
    _check_flow_depth(text, limits)
    loader = None
    try:
        loader = _Composer(text)  # the reader already refuses non-printable characters
        node = loader.get_single_node()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 1
        problem = exc.problem or exc.context or "invalid YAML"
        raise YamlReadError(f"invalid YAML: {problem}", line) from None
    except yaml.reader.ReaderError as exc:
        line = text.count("\n", 0, exc.position) + 1
        raise YamlReadError(f"invalid YAML: unacceptable character #x{exc.character:04x} "
                            "(control characters are not allowed)", line) from None
    except yaml.YAMLError as exc:
        raise YamlReadError(f"invalid YAML: {exc}", 1) from None
    except RecursionError:
        raise YamlReadError(
            f"invalid YAML: nesting is deeper than the parser can follow "
            f"(limit {limits.max_depth})",
            1,
        ) from None
    finally:
        if loader is not None:
            loader.dispose()
    if node is None:
        raise YamlReadError("the file holds no YAML document (empty file)", 1)
    _check_expanded_size(node, limits)
    document = YamlDocument(data=None)
    document.key_lines[()] = node.start_mark.line + 1
    budget = [limits.max_nodes]
    document.data = _convert(node, (), 0, document, limits, budget)
    return document


# A block scalar's header: | or >, then chomping and indentation indicators, then nothing but
# a comment to the end of the line (a > b in a plain scalar is not one).
_BLOCK_SCALAR_HEADER = re.compile(r"[|>][-+0-9]*[ \t]*(#[^\n]*)?(\n|$)")


def _check_flow_depth(text: str, limits: ReadLimits) -> None:
    """Refuse deeply nested [ and { before PyYAML reads them (its scanner is quadratic in that
    depth: a 130 KB file of nested brackets takes it seconds). Brackets in quoted scalars
    (with their '' and \\ escapes), comments and block scalars (| and >) are text, not
    nesting; in a plain scalar they would count, but 64 of them there is not a case file."""
    depth = 0
    line = 1
    index = 0
    end = len(text)
    previous = "\n"
    while index < end:
        character = text[index]
        if character == "\n":
            line += 1
        elif character in "\"'" and previous in " \t\n[{,:-?":
            index, line = _skip_quoted(text, index, line)
        elif character == "#" and previous in " \t\n":
            newline = text.find("\n", index)
            index = end if newline < 0 else newline
            continue
        elif (character in "|>" and depth == 0 and previous in " \t\n-?:"
              and _BLOCK_SCALAR_HEADER.match(text, index)):
            index, line = _skip_block_scalar(text, index, line)
            previous = "\n"
            continue
        elif character in "[{":
            depth += 1
            if depth > limits.max_depth:
                raise YamlReadError(f"nesting deeper than {limits.max_depth} levels", line)
        elif character in "]}":
            depth = max(depth - 1, 0)
        previous = character
        index += 1


def _skip_quoted(text: str, start: int, line: int) -> tuple[int, int]:
    """From an opening quote at start, return the index just past its closing quote (or the
    end of the text) and the line there."""
    quote = text[start]
    index = start + 1
    end = len(text)
    while index < end:
        character = text[index]
        if character == "\n":
            line += 1
        elif quote == '"' and character == "\\":
            index += 1
            line += text.startswith("\n", index)
        elif character == quote:
            if quote == "'" and text.startswith("'", index + 1):
                index += 1  # '' is an escaped quote inside a single-quoted scalar
            else:
                return index + 1, line
        index += 1
    return end, line


def _skip_block_scalar(text: str, start: int, line: int) -> tuple[int, int]:
    """From a | or > indicator at start, return the index of the newline that ends the block
    scalar's last line (or the end of the text) and the line there. The scalar's lines are
    those more indented than the line holding the indicator, and blank lines among them."""
    line_start = text.rfind("\n", 0, start) + 1
    parent_indent = len(text[line_start:start]) - len(text[line_start:start].lstrip(" "))
    newline = text.find("\n", start)
    while newline >= 0:
        next_newline = text.find("\n", newline + 1)
        content = text[newline + 1:] if next_newline < 0 else text[newline + 1:next_newline]
        stripped = content.lstrip(" ")
        if stripped.strip() and len(content) - len(stripped) <= parent_indent:
            return newline, line
        line += 1
        newline = next_newline
    return len(text), line


def _check_expanded_size(root: yaml.Node, limits: ReadLimits) -> None:
    """Count the nodes the data will have once aliases are expanded, without expanding them:
    an aliased node is one object, so its subtree is sized once and memoised. A billion-laughs
    file is refused here in milliseconds; a recursive alias or too deep a nesting too."""
    sizes: dict[int, int] = {}
    active: set[int] = set()
    limit = limits.max_nodes

    def size(node: yaml.Node, depth: int) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        line = node.start_mark.line + 1
        if key in active:
            raise YamlReadError("recursive alias: a node contains itself", line)
        if depth > limits.max_depth:
            raise YamlReadError(f"nesting deeper than {limits.max_depth} levels", line)
        active.add(key)
        total = 1
        if isinstance(node, yaml.MappingNode):
            total += sum(size(k, depth + 1) + size(v, depth + 1) for k, v in node.value)
        elif isinstance(node, yaml.SequenceNode):
            total += sum(size(item, depth + 1) for item in node.value)
        active.discard(key)
        if total > limit:
            raise YamlReadError(
                f"more than {limit} YAML nodes once aliases are expanded "
                "(an alias expansion bomb?)", line)
        sizes[key] = total
        return total

    # First the file's own nodes (each counted once), then the expansion, bounded by them.
    size(root, 0)
    unique = len(sizes)
    sizes.clear()
    limit = min(limits.max_nodes, unique + limits.max_alias_nodes)
    size(root, 0)


def _convert(
    node: yaml.Node,
    path: Path,
    depth: int,
    document: YamlDocument,
    limits: ReadLimits,
    budget: list[int],
) -> Any:
    line = node.start_mark.line + 1
    if depth > limits.max_depth:
        raise YamlReadError(f"nesting deeper than {limits.max_depth} levels", line, path)
    budget[0] -= 1
    if budget[0] < 0:
        raise YamlReadError(
            f"more than {limits.max_nodes} YAML nodes once aliases are expanded "
            "(an alias expansion bomb?)",
            line,
            path,
        )
    tag = node.tag
    if tag != _PLAIN and tag not in _PLAIN_DATA_TAGS:
        raise YamlReadError(f"YAML tag {tag!r} is not allowed: case files hold plain data only",
                            line, path)
    style = node.style if isinstance(node, yaml.ScalarNode) else ""
    verbatim = False
    if isinstance(node, yaml.ScalarNode) and style in (None, "'", '"'):
        quotes = 0 if style is None else 2
        span = node.end_mark.index - node.start_mark.index
        verbatim = node.end_mark.line == node.start_mark.line and span == len(node.value) + quotes
    document.value_marks[path] = ValueMark(line, node.start_mark.column, style, verbatim)
    if isinstance(node, yaml.MappingNode):
        if tag not in (_PLAIN, "tag:yaml.org,2002:map"):
            raise YamlReadError(f"a mapping cannot carry the tag {tag!r}", line, path)
        result: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key_line = key_node.start_mark.line + 1
            if not isinstance(key_node, yaml.ScalarNode):
                raise YamlReadError("mapping keys must be plain names, not collections",
                                    key_line, path)
            if key_node.tag != _PLAIN and key_node.tag not in _PLAIN_DATA_TAGS:
                raise YamlReadError(f"YAML tag {key_node.tag!r} is not allowed", key_line, path)
            key = key_node.value
            if key == "<<" and key_node.style is None:
                raise YamlReadError("merge keys (<<) are not part of YAML 1.2: write the keys "
                                    "out", key_line, path)
            if key in result:
                raise YamlReadError(f"duplicate key {key!r}", key_line, (*path, key))
            document.key_lines[(*path, key)] = key_line
            result[key] = _convert(value_node, (*path, key), depth + 1, document, limits, budget)
        return result
    if isinstance(node, yaml.SequenceNode):
        if tag not in (_PLAIN, "tag:yaml.org,2002:seq"):
            raise YamlReadError(f"a sequence cannot carry the tag {tag!r}", line, path)
        items = []
        for index, item in enumerate(node.value):
            document.key_lines[(*path, index)] = item.start_mark.line + 1
            items.append(_convert(item, (*path, index), depth + 1, document, limits, budget))
        return items
    return _scalar(node, line, path)


def _scalar(node: yaml.ScalarNode, line: int, path: Path) -> Any:
    text = node.value
    tag = node.tag
    if tag == _PLAIN:
        return _resolve_plain(text, line, path)
    if tag == "tag:yaml.org,2002:str":
        return text
    # An explicitly tagged scalar (!!int 3, !!float 1e-3, ...) must read as that type.
    value = _resolve_plain(text, line, path)
    expected = {
        "tag:yaml.org,2002:int": (int,),
        "tag:yaml.org,2002:float": (int, Decimal, float),
        "tag:yaml.org,2002:bool": (bool,),
        "tag:yaml.org,2002:null": (type(None),),
    }.get(tag, ())
    if isinstance(value, bool) and bool not in expected:
        expected = ()
    if not isinstance(value, expected):
        raise YamlReadError(f"{text!r} is not a valid {tag.rsplit(':', 1)[-1]}", line, path)
    if tag == "tag:yaml.org,2002:float" and isinstance(value, int):
        return Decimal(value)
    return value


def _resolve_plain(text: str, line: int, path: Path) -> Any:
    if _NULL.fullmatch(text):
        return None
    if _BOOL.fullmatch(text):
        return text.lower() == "true"
    for pattern, base, prefix in ((_INT10, 10, 0), (_INT8, 8, 2), (_INT16, 16, 2)):
        if pattern.fullmatch(text):
            digits = len(text.lstrip("+-")) - prefix
            # Bounded in every base: Python guards only decimal conversions (4,300 digits),
            # and a hexadecimal literal of thousands of digits would fail later, in repr.
            if digits > MAX_INTEGER_DIGITS:
                raise YamlReadError(
                    f"an integer literal of {digits} digits ({text[:12]}...) is beyond every "
                    f"dtype's range (at most {MAX_INTEGER_DIGITS} digits)", line, path)
            return int(text[prefix:], base) if prefix else int(text)
    if _FLOAT.fullmatch(text):
        try:
            return Decimal(text)
        except InvalidOperation:  # an exponent beyond what a decimal can hold at all
            shown = text if len(text) <= 40 else text[:37] + "..."
            raise YamlReadError(f"number {shown} is out of the float64 range", line,
                                path) from None
    if _INF.fullmatch(text):
        return float("-inf") if text.startswith("-") else float("inf")
    if _NAN.fullmatch(text):
        return float("nan")
    return text
