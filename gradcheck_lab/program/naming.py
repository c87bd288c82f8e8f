"""Nodes of a program named and spelled the way the case file spells them: for explanations,
graphs, localization notes and kink messages. One index style everywhere: ``x[0, 1]``."""

from __future__ import annotations

import math
from collections.abc import Sequence
from fractions import Fraction
from typing import SupportsIndex

import numpy as np

from gradcheck_lab.ops import OPS
from gradcheck_lab.program.graph import Program

OUTPUT = "output"  # what the (unnamed) output is called in explanations and graphs


def index_text(index: Sequence[SupportsIndex]) -> str:
    """``[1, 2]`` for an element index (ints, or numpy's), ``""`` for a 0-d tensor's."""
    return "[" + ", ".join(str(int(i)) for i in index) + "]" if len(index) else ""


def element_index(flat: int, shape: tuple[int, ...]) -> tuple[int, ...]:
    """The element index of a flat position; a scalar is element ``(0,)``, as the JSON
    contract's example writes it."""
    return tuple(int(i) for i in np.unravel_index(int(flat), shape)) if shape else (0,)


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
        return _number(node.const) if node.value is None else constant_text(node.value)
    if not top and index in names:
        return names[index]
    if node.op == "input":
        return node.name or "?"
    if depth <= 0:
        return "·"
    args = [spell(program, a, names, depth - 1, top=False) for a in node.args]
    op = OPS[node.op]
    if op.is_prefix:
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
    if node.op == "const" and ((node.const is not None and node.const < 0) or text.startswith("-")):
        return f"({text})"
    return text


def _param(value: object) -> str:
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, tuple):
        return "(" + ", ".join(str(v) for v in value) + ("," if len(value) == 1 else "") + ")"
    return str(value)


def constant_text(value: np.ndarray) -> str:
    """A tensor constant as an expression reads it: its number when 0-d (inf, nan too),
    its elements when a 1-d few, else ``const[3, 3]`` (its shape)."""
    if value.shape == ():
        return format_number(float(value)) if value.dtype.kind == "f" else str(value.item())
    if value.ndim == 1 and value.size <= 4:
        return "[" + ", ".join(format_number(float(v)) for v in value) + "]"
    return f"const{list(value.shape)}"


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
