"""The op table in words: the function table of docs/expressions.md is generated from here, so it
cannot drift from the ops the language has (docs/gen_functions.py writes it, a test compares)."""

from __future__ import annotations

from gradcheck_lab.ops.base import Op

# Rows of the function table, in reading order, with what the group's ops share.
GROUPS = (
    ("elementwise", "elementwise, with torch's broadcasting"),
    ("activation", ""),
    ("condition", ""),
    ("reduction", ""),
    ("structure", ""),
    ("indexing", ""),
    ("linalg", ""),
    ("nn", ""),
    ("loss", ""),
)


def function_table(ops: dict[str, Op]) -> str:
    """A markdown table of every function of the case language: one row for the elementwise
    functions, one per other function, with its signature and notes."""
    rows = ["| function | signature | notes |", "| --- | --- | --- |"]
    known = {group for group, _ in GROUPS} | {"operator"}
    strays = sorted(name for name, op in ops.items() if op.callable and op.group not in known)
    if strays:
        raise ValueError(f"ops in no group of the function table: {', '.join(strays)}")
    for group, shared in GROUPS:
        members = [op for op in ops.values() if op.callable and op.group == group]
        if group == "elementwise":
            names = " ".join(f"`{op.name}`" for op in members)
            kinks = [f"{op.name} {op.kink_where}" for op in members if op.kinks is not None]
            notes = shared + (f"; a kink ({', '.join(kinks)}) is skipped, as the check "
                              "cannot compare a derivative that does not exist"
                              if kinks else "")
            rows.append(f"| {names} | `f(x)` | {notes} |")
            continue
        rows.extend(f"| `{op.name}` | `{op.signature()}` | {_cell(op.doc)} |" for op in members)
    return "\n".join(rows) + "\n"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")
