"""From aten ops, as a traced forward ran them, to the case language's ops: one table
(``table.TABLE``) filled by a module per kind of op, and the reasons for what is refused."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from gradcheck_lab.trace.aten import (
    indexing,
    linalg,
    nn,
    pointwise,
    reductions,
    refusals,
    sampling,
    structure,
)
from gradcheck_lab.trace.aten.table import (
    KEEPS_RESULTS,
    METADATA_ONLY,
    REFUSED,
    RESULTS,
    TABLE,
    UNTRANSLATED,
    Writer,
    bound,
    refusal,
)

# Imported to fill the table.
del indexing, linalg, nn, pointwise, reductions, refusals, sampling, structure


def coverage(name: str) -> str | None:
    """How a traced forward handles the aten overload ``name``: "translated", "view" (its
    outputs become functional view steps), "constant" (its results never depend on a
    traced value's numbers), or "refused: <reason>"; None where nothing is said of it."""
    from gradcheck_lab.trace.aten.refusals import INTEGER_RESULTS, MAKES_CONSTANTS
    from gradcheck_lab.trace.views import SPLIT_VIEWS

    if name in TABLE:
        return "translated"
    if name.split(".")[1] in SPLIT_VIEWS:
        return "view"
    if (name in METADATA_ONLY or name in MAKES_CONSTANTS or name in INTEGER_RESULTS
            or name.split(".")[1].startswith("sym_")):  # sizes, strides: Python numbers
        return "constant"
    reason = refusal(name)
    return None if reason == UNTRANSLATED else f"refused: {reason}"


# A step's translation: (writer, its positional and keyword arguments, its results) -> nodes.
StepTranslation = Callable[[Writer, Sequence[Any], dict[str, Any], Sequence[Any]], Any]


def translation(name: str) -> StepTranslation | None:
    """How the aten overload ``name`` is written, with its arguments bound by name (and,
    for the ops that keep them, its recorded results under ``RESULTS``)."""
    translate = TABLE.get(name)
    if translate is None:
        return None

    def write(w: Writer, args: Sequence[Any], kwargs: dict[str, Any],
              results: Sequence[Any] = ()) -> Any:
        return translate(w, bound(name, args, kwargs) | {RESULTS: results})

    return write


__all__ = ["KEEPS_RESULTS", "METADATA_ONLY", "REFUSED", "TABLE", "Writer", "coverage",
           "refusal", "translation"]
