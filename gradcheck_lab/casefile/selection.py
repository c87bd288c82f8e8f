"""Picking one case of a file, ``FILE`` or ``FILE::NAME``, for the commands that work on one
case (explain, graph, steps) and for ``run``, and locating a problem found while evaluating
it."""

from __future__ import annotations

from pathlib import Path

from gradcheck_lab.casefile.case import Case
from gradcheck_lab.casefile.loader import LoadLimits, load_file
from gradcheck_lab.errors import CaseError, GradcheckLabError, SpecError

SEPARATOR = "::"


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
        raise SelectionError("\n".join(item.lines()))
    return item


def located(case: Case, error: SpecError) -> SelectionError:
    """A problem found while evaluating the case (a rule that fails at this point), as
    ``file:line: key: message`` like the runner reports it."""
    key = error.key or "output"
    return SelectionError(CaseError(case.file, case.line_of(key), key, error.message).render())


def selected_items(path_spec: str, limits: LoadLimits | None = None
                   ) -> tuple[Path, list[Case | CaseError]] | None:
    """``FILE::NAME`` as ``run`` takes it: the file and what loading gave for the case of that
    name (a Case, or its CaseError); None for a plain path. SelectionError when the file or
    the name is not there."""
    path, name = _split(path_spec)
    if name is None:
        return None
    if not path.is_file():
        raise SelectionError(f"{path_spec}: no such file: {path}")
    loaded = load_file(path, limits or LoadLimits())
    names = [_name_of(item) for item in loaded]
    matches = [item for item, n in zip(loaded, names, strict=True) if n == name]
    if not matches:
        listed = ", ".join(n for n in names if n) or "none could be read"
        raise SelectionError(f"no case named {name!r} in {path} (cases: {listed})")
    return path, matches


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
