"""Shared by explain, graph and steps: picking one case (``FILE`` or ``FILE::NAME``) and
naming the parts of its program the way the case file spells them."""

from __future__ import annotations

import math
from fractions import Fraction
from pathlib import Path

import numpy as np

from gradcheck_lab.casefile import Case, LoadLimits, load_file
from gradcheck_lab.casefile.program import Program
from gradcheck_lab.errors import CaseError, GradcheckLabError, SpecError
from gradcheck_lab.ops import OPS

SEPARATOR = "::"
OUTPUT = "output"  # what the (unnamed) output is called in explanations and graphs


class SelectionError(GradcheckLabError):
    """The case named on the command line cannot be used; the message is one line."""


def select_case(path_spec: str, limits: LoadLimits | None = None) -> Case:
    """The case ``FILE`` holds, or case NAME of ``FILE::NAME``; SelectionError otherwise."""
    limits = limits or LoadLimits()
    path, name = _split(path_spec)
    if not path.exists():
        raise SelectionError(f"no such file: {path}")
    if path.is_dir():
        raise SelectionError(f"{path} is a directory; name a case file")
    loaded = load_file(path, limits)
    names = [_name_of(item) for item in loaded]
    if name is None:
        if len(loaded) > 1:
            listed = ", ".join(n or "?" for n in names)
            raise SelectionError(f"{path} holds {len(loaded)} cases; name one as "
                                 f"{path}{SEPARATOR}NAME ({listed})")
        (item,) = loaded
    else:
        matches = [item for item, n in zip(loaded, names, strict=True) if n == name]
        if not matches:
            listed = ", ".join(n for n in names if n) or "none could be read"
            raise SelectionError(f"no case named {name!r} in {path} (cases: {listed})")
        item = matches[0]
    if isinstance(item, CaseError):
        raise SelectionError(item.render())
    return item


def located(case: Case, error: SpecError) -> SelectionError:
    """A problem found while evaluating the case (a rule that fails at this point), as
    ``file:line: key: message`` like the runner reports it."""
    key = error.key or "output"
    return SelectionError(CaseError(case.file, case.line_of(key), key, error.message).render())


def _split(path_spec: str) -> tuple[Path, str | None]:
    # A file whose own name contains "::" wins over the FILE::NAME reading.
    if SEPARATOR not in path_spec or Path(path_spec).exists():
        return Path(path_spec), None
    path, _, name = path_spec.rpartition(SEPARATOR)
    if not name:
        raise SelectionError(f"{path_spec}: empty case name after {SEPARATOR!r}")
    return Path(path), name


def _name_of(item: Case | CaseError) -> str | None:
    return item.name if isinstance(item, Case) else item.case


# --- naming and spelling the program's nodes ------------------------------------------------


def node_names(program: Program) -> dict[int, str]:
    """Node index -> the name users wrote: inputs, then lets (an alias keeps the first name),
    then ``output`` when the output is not already a named node."""
    names: dict[int, str] = {}
    for name, index in [*program.inputs.items(), *program.lets.items()]:
        names.setdefault(index, name)
    names.setdefault(program.output, OUTPUT)
    return names


def spell(program: Program, index: int, names: dict[int, str], depth: int = 10**6,
          top: bool = True) -> str:
    """The expression of node ``index`` in case-file syntax: named nodes by name, unnamed
    operations spelled out ``depth`` levels deep and ``·`` below that. ``top`` spells the
    node's own operation even when it has a name (a let's right-hand side)."""
    node = program.nodes[index]
    if node.op == "const":
        return _number(node.const)
    if not top and index in names:
        return names[index]
    if node.op == "input":
        return node.name or "?"
    if depth <= 0:
        return "·"
    args = [spell(program, a, names, depth - 1, top=False) for a in node.args]
    op = OPS[node.op]
    if op.infix and node.op == "neg":
        return f"-{_parenthesized(program, node.args[0], args[0], names)}"
    if op.infix:
        left, right = (_parenthesized(program, a, text, names)
                       for a, text in zip(node.args, args, strict=True))
        return f"{left} {op.infix} {right}"
    defaults = {p.name: p.default for p in op.params}
    keywords = [f"{key}={_param(value)}" for key, value in node.params
                if value is not None and value != defaults.get(key)]
    return f"{node.op}({', '.join([*args, *keywords])})"


def _parenthesized(program: Program, index: int, text: str, names: dict[int, str]) -> str:
    # Operands that are themselves unnamed infix operations get parentheses: always correct,
    # if sometimes more than Python would need.
    node = program.nodes[index]
    if text == "·":
        return text
    if index not in names and node.op not in ("input", "const") and OPS[node.op].infix:
        return f"({text})"
    if node.op == "const" and node.const is not None and node.const < 0:
        return f"({text})"
    return text


def _param(value: object) -> str:
    if isinstance(value, tuple):
        return "(" + ", ".join(str(v) for v in value) + ("," if len(value) == 1 else "") + ")"
    return str(value)


def _number(value: Fraction | None) -> str:
    if value is None:
        return "?"
    if value.denominator == 1:
        return str(value.numerator)
    return format_number(float(value))


def format_number(value: float, digits: int = 8) -> str:
    """Whole numbers without a decimal point (144, not 144.0), others to ``digits`` digits."""
    value = float(value)
    if math.isfinite(value) and value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return f"{value:.{digits}g}"


def describe_array(values: np.ndarray) -> str:
    """A scalar's value, or a tensor's shape and norm (its elements too, when only a few)."""
    array = np.asarray(values)
    if array.shape == ():
        return format_number(float(array))
    text = f"shape {list(array.shape)}, norm {format_number(norm(array), 4)}"
    if array.size <= 4:
        text += " [" + ", ".join(format_number(float(v), 6) for v in array.reshape(-1)) + "]"
    return text


def norm(array: np.ndarray) -> float:
    """The Euclidean norm over every element, as a float."""
    with np.errstate(all="ignore"):
        return float(np.linalg.norm(np.asarray(array, dtype=np.float64).reshape(-1)))
