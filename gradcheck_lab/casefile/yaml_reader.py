"""Read YAML text as plain data (YAML 1.2 core schema) with the line of every key.

Only a scanner, a parser and this module's composer run: libyaml's C scanner and parser where
PyYAML was built with it (several times faster), PyYAML's pure-Python ones otherwise. No
object is ever constructed from a tag, so ``!!python/...`` cannot execute anything. The
composer bounds the file while it composes it: it stops at the node that makes the file's own
nodes more than ``max_nodes`` or nests deeper than ``max_depth``, before the whole tree is built
(and libyaml stops a thousand nested brackets itself, in its scanner). The node tree is then
converted here, with the same limits applied to the data once aliases are expanded (each
expansion counted)."""

from __future__ import annotations

import gc
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any, NamedTuple, cast

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
# One pattern, its alternatives in the order of precedence (an integer before a float): a
# single match per plain scalar, however many of them a file has.
_PLAIN_KIND = re.compile(
    r"(?P<null>~|null|Null|NULL|)"
    r"|(?P<bool>true|True|TRUE|false|False|FALSE)"
    r"|(?P<int10>[-+]?[0-9]+)"
    r"|(?P<int8>0o[0-7]+)"
    r"|(?P<int16>0x[0-9a-fA-F]+)"
    r"|(?P<float>[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?)"
    r"|(?P<inf>[-+]?\.(?:inf|Inf|INF))"
    r"|(?P<nan>\.(?:nan|NaN|NAN))"
)
_INTEGER_BASES = {"int10": (10, 0), "int8": (8, 2), "int16": (16, 2)}


@dataclass(frozen=True)
class ReadLimits:
    """Bounds that keep hostile input from exhausting time or memory."""

    max_depth: int = 64
    # Keys, values and list items, in the file and in its data once aliases are expanded. A
    # flat list or mapping at this limit reads in ~1.6 s with libyaml (~8 s in pure Python);
    # a larger file is refused within that time, however large, before its tree is built.
    max_nodes: int = 500_000
    # Nodes that aliases add beyond the file's own: a small file cannot grow into millions.
    max_alias_nodes: int = 100_000


class ValueMark(NamedTuple):
    """Where a value starts: 1-based line, 0-based column, and its scalar style.

    ``style`` is None for a plain scalar, a quote or block character otherwise, and "" for a
    collection. ``verbatim``: the scalar's text is its source on one line (no folding, no
    escapes), so a column inside the text is a column in the file. (A NamedTuple, not a frozen
    dataclass: one is built per node, and this builds twice as fast.)
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


def _mark(mark: yaml.error.Mark | yaml._yaml.Mark | None) -> yaml.error.Mark:
    """An event's mark, as the nodes take it. A parser's events always carry marks; libyaml's
    are its own class (yaml._yaml.Mark, the same fields), which the stubs of the nodes and of
    the errors leave out though PyYAML builds nodes with them."""
    return cast(yaml.error.Mark, mark)


class _Resolver(yaml.resolver.BaseResolver):
    """Marks untagged plain scalars so that YAML 1.2 rules (not PyYAML's 1.1) resolve them."""

    def resolve(self, kind: type, value: Any, implicit: tuple[bool, bool] | bool) -> str:
        # A scalar's implicit is (plain, quoted), a collection's one bool.
        if kind is yaml.ScalarNode and isinstance(implicit, tuple) and implicit[0]:
            return _PLAIN
        return super().resolve(kind, value, implicit)


class _BoundedComposer(yaml.composer.Composer):
    """PyYAML's composer, bounded while it composes: the file's own nodes are counted (aliases
    once each) and their depth tracked, so an oversized or overdeep file stops at the node that
    crosses the limit instead of after its whole tree is built, and every later recursive walk
    starts from a tree at most ``max_depth`` deep. One event is fetched per node (each fetch
    crosses into libyaml), and collections register their anchor before their items so that a
    recursive alias resolves to the node itself and is refused later."""

    if TYPE_CHECKING:  # from the parser and the resolver each composer class mixes in
        def get_event(self) -> yaml.Event: ...  # a node's event here: never None
        def resolve(self, kind: type, value: Any, implicit: tuple[bool, bool] | bool) -> str: ...
        def dispose(self) -> None: ...

    def _bound(self, limits: ReadLimits) -> None:
        self.limits = limits
        self.nodes = 0  # node events so far, aliases included
        self.aliases = 0
        self.depth = 0

    def compose_node(self, parent: yaml.Node | None, index: object) -> yaml.Node:
        return self._compose(self.get_event(), parent is not None and index is None)

    def _compose(self, event: yaml.Event, is_key: bool) -> yaml.Node:
        mark = _mark(event.start_mark)
        self.nodes += 1
        if self.nodes > self.limits.max_nodes:
            raise YamlReadError(f"more than {self.limits.max_nodes} YAML nodes (keys, values and "
                                "list items) in the file", mark.line + 1)
        if self.depth > self.limits.max_depth:
            raise YamlReadError(f"nesting deeper than {self.limits.max_depth} levels",
                                mark.line + 1)
        if type(event) is yaml.AliasEvent:
            self.aliases += 1
            if is_key:  # its anchor's line would be reported for errors about this key
                raise YamlReadError(f"an alias (*{event.anchor}) cannot be a mapping key: write "
                                    "the key out", mark.line + 1)
            if event.anchor not in self.anchors:
                raise yaml.composer.ComposerError(
                    None, None, f"found undefined alias {event.anchor!r}", mark)
            return self.anchors[event.anchor]
        node: yaml.Node
        if type(event) is yaml.ScalarEvent:
            tag = event.tag
            if tag is None or tag == "!":
                tag = self.resolve(yaml.ScalarNode, event.value, event.implicit)
            # libyaml's events mark a plain scalar's style with "", PyYAML's with None.
            node = yaml.ScalarNode(tag, event.value, mark, _mark(event.end_mark),
                                   style=event.style or None)
            if event.anchor is not None:
                self._anchor(event, node)
            return node
        assert isinstance(event, yaml.CollectionStartEvent)  # the parser gives a node's event
        tag = event.tag
        if type(event) is yaml.SequenceStartEvent:
            if tag is None or tag == "!":
                tag = self.resolve(yaml.SequenceNode, None, event.implicit)
            node = yaml.SequenceNode(tag, [], mark, None, flow_style=event.flow_style)
            self._anchor(event, node)
            self.depth += 1
            items = node.value
            event = self.get_event()
            while type(event) is not yaml.SequenceEndEvent:
                items.append(self._compose(event, False))
                event = self.get_event()
        else:
            if tag is None or tag == "!":
                tag = self.resolve(yaml.MappingNode, None, event.implicit)
            node = yaml.MappingNode(tag, [], mark, None, flow_style=event.flow_style)
            self._anchor(event, node)
            self.depth += 1
            pairs = node.value
            event = self.get_event()
            while type(event) is not yaml.MappingEndEvent:
                key = self._compose(event, True)
                pairs.append((key, self._compose(self.get_event(), False)))
                event = self.get_event()
        self.depth -= 1
        node.end_mark = _mark(event.end_mark)
        return node

    def _anchor(self, event: yaml.NodeEvent, node: yaml.Node) -> None:
        anchor = event.anchor
        if anchor is None:
            return
        if anchor in self.anchors:
            first = self.anchors[anchor].start_mark.line + 1
            raise YamlReadError(f"invalid YAML: the anchor &{anchor} is defined twice (first on "
                                f"line {first})", _mark(event.start_mark).line + 1)
        self.anchors[anchor] = node


class _PythonComposer(
    yaml.reader.Reader, yaml.scanner.Scanner, yaml.parser.Parser, _BoundedComposer, _Resolver
):
    """Pure Python throughout: the fallback where PyYAML was built without libyaml."""

    def __init__(self, text: str, limits: ReadLimits) -> None:
        yaml.reader.Reader.__init__(self, text)
        yaml.scanner.Scanner.__init__(self)
        yaml.parser.Parser.__init__(self)
        _BoundedComposer.__init__(self)
        _Resolver.__init__(self)
        self._bound(limits)


_COMPOSERS: dict[str, Callable[[str, ReadLimits], _BoundedComposer]] = {"python": _PythonComposer}

if getattr(yaml, "__with_libyaml__", False):

    class _LibyamlComposer(_BoundedComposer, yaml._yaml.CParser, _Resolver):
        """libyaml's C scanner and parser (several times faster), this module's composer: the
        Python composer comes first in the MRO so that CParser's own C composer never runs."""

        def __init__(self, text: str, limits: ReadLimits) -> None:
            yaml._yaml.CParser.__init__(self, text)
            _BoundedComposer.__init__(self)
            _Resolver.__init__(self)
            self._bound(limits)

    _COMPOSERS["libyaml"] = _LibyamlComposer

# The parser read_yaml uses: libyaml's where PyYAML has it; the tests run both.
_PARSER = "libyaml" if "libyaml" in _COMPOSERS else "python"
_LIBYAML_MAX_DEPTH = 1000  # libyaml's own bound on nesting (its "exceeded max depth")


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


# YAML 1.2 line breaks are LF and CR only; PyYAML and libyaml (YAML 1.1) also break lines at
# NEL, LINE SEPARATOR and PARAGRAPH SEPARATOR, which would end a comment early and shift every
# line number after it. Before parsing they become private-use stand-ins, which both parsers
# read as ordinary characters; the data gets the originals back.
_YAML11_BREAKS = {"\x85": "\ue000", "\u2028": "\ue001", "\u2029": "\ue002"}
_TO_STAND_IN = str.maketrans(_YAML11_BREAKS)
_FROM_STAND_IN = str.maketrans({v: k for k, v in _YAML11_BREAKS.items()})


def read_yaml(text: str, limits: ReadLimits = ReadLimits()) -> YamlDocument:
    """Parse one YAML document into plain data with key lines; raises YamlReadError."""
    _check_printable(text)
    restore = None
    if any(c in text for c in _YAML11_BREAKS):
        taken = next((c for c in _YAML11_BREAKS.values() if c in text), None)
        if taken is not None:
            line = text.count("\n", 0, text.index(taken)) + 1
            raise YamlReadError(f"U+{ord(taken):04X} (private use) cannot share a file with "
                                "U+0085, U+2028 or U+2029", line)
        text, restore = text.translate(_TO_STAND_IN), _FROM_STAND_IN
    with _gc_paused():
        return _read(text, limits, restore)


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Without the cyclic collector while the tree is built: it would scan the growing tree
    again and again (half the time of composing a large file); nothing here is a cycle that
    needs collecting meanwhile."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _read(text: str, limits: ReadLimits, restore: dict[int, str] | None) -> YamlDocument:
    loader = None
    try:
        loader = _COMPOSERS[_PARSER](text, limits)
        node = loader.get_single_node()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 1
        problem = exc.problem or exc.context or "invalid YAML"
        if "exceeded max" in problem:
            depth = min(limits.max_depth, _LIBYAML_MAX_DEPTH)
            raise YamlReadError(f"nesting deeper than {depth} levels", line) from None
        raise YamlReadError(f"invalid YAML: {problem}", line) from None
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
    if loader.aliases:  # without aliases the composer's bounds are the data's
        _check_expanded_size(node, loader.nodes - loader.aliases, limits)
    document = YamlDocument(data=None)
    document.key_lines[()] = node.start_mark.line + 1
    document.data = _Converter(document, limits, restore).convert(node, (), 0)
    return document


def _check_printable(text: str) -> None:
    """Refuse what YAML does not allow in a stream, before either parser sees it: PyYAML's
    reader and libyaml's refuse the same characters, but at different times and offsets
    (characters, bytes), and a lone surrogate would not even encode for libyaml."""
    bad = yaml.reader.Reader.NON_PRINTABLE.search(text)
    if bad is not None:
        line = text.count("\n", 0, bad.start()) + 1
        raise YamlReadError(f"invalid YAML: unacceptable character #x{ord(bad.group()):04x} "
                            "(control characters are not allowed)", line)


def _check_expanded_size(root: yaml.Node, unique: int, limits: ReadLimits) -> None:
    """Count the nodes the data will have once aliases are expanded, without expanding them:
    an aliased node is one object, so its subtree is sized once and memoised. A billion-laughs
    file is refused here in milliseconds; a recursive alias too. ``unique``: the file's own
    nodes, aliases not counted; aliases may add ``max_alias_nodes`` to them."""
    sizes: dict[int, int] = {}
    active: set[int] = set()
    limit = min(limits.max_nodes, unique + limits.max_alias_nodes)

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

    size(root, 0)


class _Converter:
    """The node tree to plain data, filling the document's key lines and value marks. Aliases
    are expanded here, so depth and the node budget are checked again on the expanded data."""

    def __init__(self, document: YamlDocument, limits: ReadLimits,
                 restore: dict[int, str] | None = None) -> None:
        self.restore = restore  # the stand-ins of YAML 1.1 line breaks, back to themselves
        self.key_lines = document.key_lines
        self.value_marks = document.value_marks
        self.limits = limits
        self.budget = limits.max_nodes

    def convert(self, node: yaml.Node, path: Path, depth: int) -> Any:
        mark = node.start_mark
        line = mark.line + 1
        if depth > self.limits.max_depth:
            raise YamlReadError(f"nesting deeper than {self.limits.max_depth} levels", line,
                                path)
        self.budget -= 1
        if self.budget < 0:
            raise YamlReadError(
                f"more than {self.limits.max_nodes} YAML nodes once aliases are expanded "
                "(an alias expansion bomb?)",
                line,
                path,
            )
        tag = node.tag
        if tag != _PLAIN and tag not in _PLAIN_DATA_TAGS:
            raise YamlReadError(f"YAML tag {tag!r} is not allowed: case files hold plain data "
                                "only", line, path)
        if type(node) is yaml.ScalarNode:
            if self.restore is not None:
                node.value = node.value.translate(self.restore)
            style = node.style
            verbatim = False
            if style is None or style == "'" or style == '"':
                end = node.end_mark
                quotes = 0 if style is None else 2
                verbatim = (end.line == mark.line
                            and end.index - mark.index == len(node.value) + quotes)
            self.value_marks[path] = ValueMark(line, mark.column, style, verbatim)
            if tag == _PLAIN:
                return _resolve_plain(node.value, line, path)
            return _scalar(node, line, path)
        self.value_marks[path] = ValueMark(line, mark.column, "", False)
        if type(node) is yaml.MappingNode:
            if tag not in (_PLAIN, "tag:yaml.org,2002:map"):
                raise YamlReadError(f"a mapping cannot carry the tag {tag!r}", line, path)
            result: dict[str, Any] = {}
            for key_node, value_node in node.value:
                key_line = key_node.start_mark.line + 1
                if not isinstance(key_node, yaml.ScalarNode):
                    raise YamlReadError("mapping keys must be plain names, not collections",
                                        key_line, path)
                if key_node.tag != _PLAIN and key_node.tag not in _PLAIN_DATA_TAGS:
                    raise YamlReadError(f"YAML tag {key_node.tag!r} is not allowed", key_line,
                                        path)
                key = key_node.value
                if self.restore is not None:
                    key = key.translate(self.restore)
                if key == "<<" and key_node.style is None:
                    raise YamlReadError("merge keys (<<) are not part of YAML 1.2: write the "
                                        "keys out", key_line, path)
                if key in result:
                    raise YamlReadError(f"duplicate key {key!r}", key_line, (*path, key))
                key_path = (*path, key)
                self.key_lines[key_path] = key_line
                result[key] = self.convert(value_node, key_path, depth + 1)
            return result
        if tag not in (_PLAIN, "tag:yaml.org,2002:seq"):
            raise YamlReadError(f"a sequence cannot carry the tag {tag!r}", line, path)
        items = []
        for index, item in enumerate(node.value):
            item_path = (*path, index)
            self.key_lines[item_path] = item.start_mark.line + 1
            items.append(self.convert(item, item_path, depth + 1))
        return items


def _scalar(node: yaml.ScalarNode, line: int, path: Path) -> Any:
    text = node.value
    tag = node.tag
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
    match = _PLAIN_KIND.fullmatch(text)
    kind = match.lastgroup if match is not None else None
    if kind is None:
        return text
    if kind == "null":
        return None
    if kind == "bool":
        return text.lower() == "true"
    if kind in _INTEGER_BASES:
        base, prefix = _INTEGER_BASES[kind]
        digits = len(text.lstrip("+-")) - prefix
        # Bounded in every base: Python guards only decimal conversions (4,300 digits),
        # and a hexadecimal literal of thousands of digits would fail later, in repr.
        if digits > MAX_INTEGER_DIGITS:
            raise YamlReadError(
                f"an integer literal of {digits} digits ({text[:12]}...) is beyond every "
                f"dtype's range (at most {MAX_INTEGER_DIGITS} digits)", line, path)
        return int(text[prefix:], base) if prefix else int(text)
    if kind == "float":
        try:
            return Decimal(text)
        except InvalidOperation:  # an exponent beyond what a decimal can hold at all
            shown = text if len(text) <= 40 else text[:37] + "..."
            raise YamlReadError(f"number {shown} is out of the float64 range", line,
                                path) from None
    if kind == "inf":
        return float("-inf") if text.startswith("-") else float("inf")
    return float("nan")
