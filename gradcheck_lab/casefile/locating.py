"""Where a problem of a case is: the key's line and column in the file, as a CaseError; and
expressions parsed at a key, each let's and output's problem kept so that all are said at once.

One ``Locator`` and one ``Expressions`` are made per case, and handed to what builds it (the
loader's parts and ``calling``); neither calls back into the loader.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from fractions import Fraction
from typing import Any

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from gradcheck_lab.casefile.budget import LoadBudget
from gradcheck_lab.casefile.expr import Const, ExprLimits, parse_expression
from gradcheck_lab.casefile.schema import (
    CASE_KEYS,
    CaseModel,
    ExpectModel,
    LiteralInput,
    RandomInput,
    ToleranceModel,
    TrainingModel,
    describe,
)
from gradcheck_lab.casefile.yaml_reader import YamlDocument
from gradcheck_lab.errors import CaseError, SpecError, UndefinedNameError
from gradcheck_lab.ops import suggest
from gradcheck_lab.program.graph import ProgramBuilder

# The problems of one case said at once, at most: past them a file is likely machine-made
# or hostile (1,800 lets, each too deep, took 35 s and 2.8 GB to say them all, where the first
# took 2 s), and a reader fixes the first ones first. The rest are counted on one more line.
MAX_PROBLEMS = 20

_KNOWN_KEYS = sorted({*CASE_KEYS, *LiteralInput.model_fields, *RandomInput.model_fields,
                      *TrainingModel.model_fields, "rtol", "atol", "cases"})


class Locator:
    """Locating a case's keys in its file and making the CaseError said at one."""

    def __init__(self, label: str, document: YamlDocument | None, prefix: tuple) -> None:
        self.label = label
        self.document = document
        self.prefix = prefix  # the case's own path, ("cases", 3), in a file of several
        self.case_key = dotted(prefix)

    def line(self, path: tuple) -> int | None:
        """The 1-based line of the key at ``path`` inside the case, where there is a file."""
        if self.document is None:
            return None
        return self.document.line_of(self.prefix + path)

    def error(self, path: tuple, message: str, offset: int | None = None) -> CaseError:
        """The problem ``message`` at the key ``path``; ``offset`` is a column inside the
        key's expression."""
        key = ".".join(p for p in [self.case_key, dotted(path)] if p) or "document"
        return CaseError(self.label, self.line(path), key, message, self.column(path, offset))

    def column(self, path: tuple, offset: int | None) -> int | None:
        """1-based column of an expression error, when the expression's text is its source on
        one line (escapes and folding would move the text)."""
        if offset is None or self.document is None:
            return None
        mark = self.document.value_marks.get(self.prefix + path)
        if mark is None or not mark.verbatim:
            return None
        return mark.column + 1 + offset + (0 if mark.style is None else 1)

    def from_validation(self, exc: ValidationError, data: dict) -> CaseError:
        """Every schema problem of the case, the first carrying the others (``also``)."""
        problems = []
        for problem in exc.errors(include_url=False):
            path, missing = _data_path(data, problem["loc"], problem["type"] == "missing")
            # A missing key is reported after the others: with `outptu` misspelled, the
            # unknown key (and its suggestion) is the useful message.
            order = (missing is not None, self.line(path) or 0)
            problems.append((order, path + ((missing,) if missing else ()),
                             _message(problem, missing, _keys_at(data, path[:-1]))))
        problems.sort(key=lambda item: item[0])
        errors = [self.error(path, message) for _, path, message in problems[:MAX_PROBLEMS]]
        if len(problems) > MAX_PROBLEMS:
            errors.append(self.error((), _more(len(problems) - MAX_PROBLEMS, "problems",
                                               "not said")))
        first = errors[0]
        first.also = errors[1:]  # every problem at once, each on its own line
        return first

    def key_lines(self, model: CaseModel) -> dict[str, int]:
        """The line of each key the case has, by its dotted name (for reports)."""
        lines = {dotted(path): self.line(path) for path in _key_paths(model)}
        return {key: line for key, line in lines.items() if line is not None}


class _FollowsFromEarlierError(Exception):
    """An expression names a let that failed: that let's problem is the one to say."""


class OverBudgetError(CaseError):
    """The case's or the file's load budget is past (``budget``): the case's one problem,
    nothing more of it is parsed or built."""


class Expressions:
    """Parsing an expression at a key into a program, each let's and output's problem kept
    (``attempt``) so that a case's problems are said together (``say_found``)."""

    def __init__(self, locator: Locator, limits: ExprLimits, budget: LoadBudget) -> None:
        self.locator = locator
        self.limits = limits
        self.budget = budget  # the file's, shared by its cases
        self.characters = 0  # the case's expression text, counted against the budget
        self.found: list[CaseError] = []  # problems of lets and outputs, said together
        self.unbuilt: set[str] = set()  # names that failed: naming one is not a new problem
        self.unread = 0  # lets and outputs not built once MAX_PROBLEMS were found

    def expression(self, builder: ProgramBuilder, path: tuple, text: Any,
                   add: Callable[[Any], int]) -> int:
        """``add(expression)`` for the text at ``path`` (a number is a constant); a problem is
        a CaseError at the key and column. The text and the nodes it adds are charged to the
        budget: past it, an OverBudgetError at the key, the text not parsed."""
        if isinstance(text, str):
            self.characters += len(text)
            self.over_budget(path, self.budget.charge_text(self.characters, len(text)))
        before = len(builder.nodes)
        try:
            expr = (Const(text, 0) if isinstance(text, Fraction)
                    else parse_expression(text, self.limits, builder.constants))
            index = add(expr)
        except UndefinedNameError as exc:
            if exc.name in self.unbuilt:
                raise _FollowsFromEarlierError from None
            raise self.locator.error(path, exc.message, exc.offset) from None
        except SpecError as exc:
            raise self.locator.error(path, exc.message, exc.offset) from None
        finally:  # a failed expression's nodes were built too
            problem = self.budget.charge_nodes(len(builder.nodes) - before)
        self.over_budget(path, problem)
        return index

    def over_budget(self, path: tuple, problem: str | None) -> None:
        if problem is not None:
            where = self.locator.error(path, problem)
            raise OverBudgetError(where.file, where.line, where.key, where.message)

    def attempt(self, name: str, build: Callable[[], Any]) -> Any:
        """``build()``; where it raises a CaseError, the error is kept in ``found`` and
        ``name`` marked unbuilt, and None returned. Past MAX_PROBLEMS, nothing more is built
        (each is counted, as unbuilt)."""
        if len(self.found) >= MAX_PROBLEMS:
            self.unread += 1
            self.unbuilt.add(name)
            return None
        try:
            return build()
        except _FollowsFromEarlierError:
            pass
        except OverBudgetError:
            raise
        except CaseError as exc:
            self.found.append(exc)
        self.unbuilt.add(name)
        return None

    def say_found(self) -> None:
        """Raise the first problem kept, carrying the others (a line each), if any."""
        if self.found:
            first, *rest = self.found
            if self.unread:
                rest.append(self.locator.error((), _more(self.unread, "lets and outputs",
                                                         "not checked")))
            first.also = rest
            raise first


def _more(count: int, what: str, done: str) -> str:
    return (f"{count} more {what} {done}: a case's problems are said {MAX_PROBLEMS} at a "
            "time; fix these and run again")


def _key_paths(model: CaseModel) -> Iterator[tuple]:
    yield ()
    for key in CaseModel.model_fields:
        yield (key,)
    for name in model.inputs:
        yield ("inputs", name)
    for name in model.let or {}:
        yield ("let", name)
    if isinstance(model.output, dict):
        for name in model.output:
            yield ("output", name)
    for key in ("constants", "params", "surrogate"):
        for name in getattr(model, key) or {}:
            yield (key, name)
    if model.expect is not None:
        yield ("expect", "value")
        for name in model.expect.grad or {}:
            yield ("expect", "grad", name)
    if model.training is not None:
        for key in TrainingModel.model_fields:
            yield ("training", key)


def _data_path(data: Any, loc: tuple, is_missing: bool) -> tuple[tuple, str | None]:
    """Follow a pydantic error location through the data, skipping union tags.

    Returns the path that exists and, for a missing key, that key's name.
    """
    path: list = []
    current = data
    missing = None
    for index, part in enumerate(loc):
        in_dict = isinstance(current, dict) and part in current
        in_list = isinstance(current, list) and isinstance(part, int) and 0 <= part < len(current)
        if in_dict or in_list:
            path.append(part)
            current = current[part]
        elif is_missing and index == len(loc) - 1 and isinstance(part, str):
            missing = part
    return tuple(path), missing


def _keys_at(data: Any, parent: tuple) -> list[str]:
    """The keys a mapping at ``parent`` may have, for "did you mean" suggestions."""
    if not parent:
        return list(CASE_KEYS)
    if parent[0] == "inputs" and len(parent) == 2:
        value = data.get("inputs", {}).get(parent[1], {})
        model = LiteralInput if isinstance(value, dict) and "value" in value else RandomInput
        return list(model.model_fields)
    if parent == ("expect",):
        return list(ExpectModel.model_fields)
    if parent == ("training",):
        return list(TrainingModel.model_fields)
    if parent[0] == "tolerance":
        return list(ToleranceModel.model_fields)
    return _KNOWN_KEYS


def _message(problem: ErrorDetails, missing: str | None, keys: list[str]) -> str:
    kind = problem["type"]
    value = problem.get("input")
    ctx = problem.get("ctx") or {}
    if kind == "missing":
        return f"missing required key {missing!r}" if missing else "missing required key"
    if kind == "extra_forbidden":
        key = str(problem["loc"][-1])
        return f"unknown key {key!r}{suggest(key, [k for k in keys if k != key])}"
    if kind == "literal_error":
        return f"expected {ctx.get('expected', 'one of the listed values')}, got {describe(value)}"
    simple = {
        "bool_type": "expected true or false",
        "string_type": "expected text",
        "dict_type": "expected a mapping",
        "model_type": "expected a mapping",
        "model_attributes_type": "expected a mapping",
        "list_type": "expected a list",
        "int_type": "expected an integer",
        "too_short": "needs at least one entry",
    }
    if kind in simple:
        return f"{simple[kind]}, got {describe(value)}"
    return problem["msg"]


def dotted(path: tuple) -> str:
    """A key's path as the messages name it: ``cases[2].inputs.x``."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text
