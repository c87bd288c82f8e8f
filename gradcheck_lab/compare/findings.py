"""What the checks find, as data: mismatches, failure lines and notes, merged into a verdict.

Every check is a function of the oracle results (``compare.bundle``) and the tolerance rule
that returns Findings; the verdict is their merge. This module holds what they share: one way
to build a mismatch (index style, probe label, relative error), one way to keep the worst few,
one vote that names the odd oracle, and the elementwise agreement test. Nothing here raises
for a disagreement or prints.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar, overload

import numpy as np

from gradcheck_lab.program.naming import element_index
from gradcheck_lab.results import Mismatch
from gradcheck_lab.subject.probes import Probe, probe_label

WORST_PER_GROUP = 5
# Finite-difference error bars are estimates: allow twice the estimate before they count.
FD_SAFETY = 2.0
# A finite-difference error bar wider than this fraction of the gradient's scale cannot
# confirm anything useful: such elements are reported as inconclusive.
FD_INCONCLUSIVE = 1e-3
SYMBOLIC, AUTOGRAD, FD, EXPECT = "symbolic", "autograd", "finite_difference", "expect"

Row = TypeVar("Row")


@dataclass
class Findings:
    """What one check found: its mismatches, its failure lines (``summary``: the check fails
    when it has one), notes that explain without failing, and counts for the JSON."""

    mismatches: list[Mismatch] = field(default_factory=list)
    summary: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    # What a failure's mismatches look like, when they fit a known bug ("a sign error"):
    # ``compare.patterns``.
    diagnoses: list[str] = field(default_factory=list)
    # What a passing verdict's one-line message adds ("training step right, ..."), and the
    # rules this check compared by, for the report's tolerance.
    on_pass: str | None = None
    tolerance: dict[str, object] = field(default_factory=dict)

    def extend(self, other: Findings) -> None:
        self.mismatches.extend(other.mismatches)
        self.summary.extend(other.summary)
        self.notes.extend(other.notes)
        self.diagnoses.extend(other.diagnoses)
        for key, value in other.counts.items():
            self.counts[key] = self.counts.get(key, 0) + value
        self.tolerance.update(other.tolerance)


@dataclass
class Verdict:
    status: str
    message: str
    mismatches: list[Mismatch] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    tolerance: dict[str, object] = field(default_factory=dict)
    diagnoses: list[str] = field(default_factory=list)
    # Finite differences along joint directions did not settle the comparison: a failure
    # until the per-input directions are taken (``CaseCheck.compared``).
    joint_unsettled: bool = False

    def add(self, findings: Findings) -> None:
        """Fold in a later check's findings (forward mode, second order, a second device, a
        training step): mismatches, counts and notes, and a failure with their summary."""
        self.mismatches.extend(findings.mismatches)
        for key, value in findings.counts.items():
            self.counts[key] = self.counts.get(key, 0) + value
        self.notes.extend(findings.notes)
        self.diagnoses.extend(findings.diagnoses)
        self.tolerance.update(findings.tolerance)
        if findings.summary:
            summary = "; ".join(findings.summary)
            self.message = summary if self.status == "pass" else f"{self.message}; {summary}"
            self.status = "fail"
        elif findings.on_pass and self.status == "pass":
            self.message += f"; {findings.on_pass}"


def merge_points(verdicts: list[tuple[int, Verdict]], points: int) -> Verdict:
    """One verdict for a case checked at several points: it fails where any point fails,
    each mismatch says its point, and the counts add up."""
    if points == 1:
        return verdicts[0][1]
    first = verdicts[0][1]
    failing = [(index, v) for index, v in verdicts if v.status == "fail"]
    counts: Counter[str] = Counter()
    mismatches: list[Mismatch] = []
    notes: list[str] = []
    diagnoses: list[str] = []
    for index, verdict in verdicts:
        counts.update(verdict.counts)
        mismatches.extend(dataclasses.replace(m, point=index) for m in verdict.mismatches)
        notes.extend(note for note in verdict.notes if note not in notes)
        diagnoses.extend(d for d in verdict.diagnoses if d not in diagnoses)
    counts["points"] = len(verdicts)
    if failing:
        message = "; ".join(f"point {index}: {v.message}" for index, v in failing)
    else:
        message = f"{first.message} (at point 0; {len(verdicts)} points agree)"
    return Verdict("fail" if failing else "pass", message, mismatches, notes, dict(counts),
                   first.tolerance, diagnoses)


# -- building mismatches ------------------------------------------------------------------------

def mismatch(input: str | None, oracles: tuple[str, str], odd: str | None,
             values: dict[str, float], abs_err: float, reference: float, allowed: float, *,
             check: str = "gradient", flat: int | None = None, shape: tuple[int, ...] = (),
             probes: tuple[Probe, ...] = (), k: int | None = None, elements: int = 1,
             direction: int | None = None) -> Mismatch:
    """One disagreement: ``flat`` the element's flat index in ``shape``, ``k`` the probe."""
    return Mismatch(
        input=input, oracles=oracles, odd_oracle=odd,
        values={key: float(v) for key, v in values.items()},
        abs_err=float(abs_err), rel_err=relative_error(float(abs_err), float(reference)),
        allowed=float(allowed), check=check,
        index=None if flat is None else element_index(flat, shape), direction=direction,
        probe=None if k is None else probe_label(probes, k), elements=elements,
        output=None if k is None else probes[k].output)


def worst(rows: Iterable[Row], error: Callable[[Row], float]) -> list[Row]:
    """The WORST_PER_GROUP rows of largest error, worst first (ties in the given order; NaN
    counts as the largest)."""
    def key(row: Row) -> float:
        value = error(row)
        return -np.inf if value != value else -value

    return sorted(rows, key=key)[:WORST_PER_GROUP]


def worst_first(errors: np.ndarray, where: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The flat indices ``where``, largest error first (ties in index order, NaN as the
    largest), and the errors with NaN replaced by inf."""
    errors = np.where(np.isnan(errors), np.inf, errors)
    return where[np.argsort(-errors[where], kind="stable")], errors


def finite_or_inf(error: float) -> float:
    return float(error) if np.isfinite(error) else float("inf")


# -- deciding ------------------------------------------------------------------------------------

@overload
def agree(a: np.ndarray, b: np.ndarray | float, bound: np.ndarray | float) -> np.ndarray: ...


@overload
def agree(a: float, b: float, bound: float) -> np.bool_: ...


def agree(a: np.ndarray | float, b: np.ndarray | float, bound: np.ndarray | float
          ) -> np.ndarray | np.bool_:
    """Elementwise agreement; NaN or inf on either side never agrees (of numbers: one numpy
    bool)."""
    with np.errstate(all="ignore"):
        close = np.abs(a - b) <= bound
    return close & np.isfinite(a) & np.isfinite(b)


@overload
def same_nonfinite(a: np.ndarray, b: np.ndarray | float) -> np.ndarray: ...


@overload
def same_nonfinite(a: float, b: float) -> np.bool_: ...


def same_nonfinite(a: np.ndarray | float, b: np.ndarray | float) -> np.ndarray | np.bool_:
    """Both nan, or the same signed infinity: outside the domain (or overflowing) alike."""
    with np.errstate(all="ignore"):
        return (np.isnan(a) & np.isnan(b)) | (np.isinf(a) & (a == b))


def relative_error(abs_err: float, reference: float) -> float:
    if reference != 0 and np.isfinite(reference):
        return abs_err / abs(reference)
    return 0.0 if abs_err == 0 else float("inf")


def odd_by_difference(s: float, a: float, f: float, bound_s: float, bound_a: float,
                      bf: float) -> str | None:
    """Of symbolic s and autograd a, which one the finite difference f (with error bar bf)
    does not side with, or None. However wide its bar, a finite difference is a number: a NaN
    beside a finite value from the other oracle is the odd one."""
    if not np.isfinite(f):
        return None
    if np.isnan(s) != np.isnan(a):
        return AUTOGRAD if np.isnan(a) else SYMBOLIC
    side_s, side_a = bool(agree(s, f, bound_s + bf)), bool(agree(a, f, bound_a + bf))
    if side_s != side_a:
        return AUTOGRAD if side_s else SYMBOLIC
    return None


def odd_one_out(votes: Sequence[str | None]) -> str | None:
    """The oracle most elements name as odd; a tie goes to the one named first (a fixed
    order: the probes', then the elements'), never to hash order."""
    counted = Counter(vote for vote in votes if vote is not None)
    return counted.most_common(1)[0][0] if counted else None


def agreeing_text(names: list[str]) -> str:
    """The inputs whose gradients agree, said beside those that do not ("W, b agree")."""
    return f"{', '.join(names)} agree{'s' if len(names) == 1 else ''}"


def count_text(n: int) -> str:
    return f"{n} element{'s' if n != 1 else ''}"
