"""The gradient check's reporting, one input at a time: the worst disagreements of symbolic and
autograd, who is odd, why nobody could tell, and the notes; with what finite differences alone
keep for it (their partials, the elements they alone are off on, the spec's branch flips) and
what they could not decide over every input (``FdTally``, read by the verdict).

``gradients`` compares and votes; this module says what the comparison found.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from gradcheck_lab.compare.bundle import OracleResults
from gradcheck_lab.compare.findings import (
    AUTOGRAD,
    FD,
    FD_SAFETY,
    SYMBOLIC,
    Findings,
    count_text,
    mismatch,
    odd_one_out,
    worst,
)
from gradcheck_lab.compare.patterns import Probed, diagnose
from gradcheck_lab.compare.tolerances import ToleranceRule, gradient_scale
from gradcheck_lab.results import Mismatch

UNDECIDED = "undecided"  # no finite difference at this element: the input's majority decides

# One disagreement of symbolic and autograd: error, probe, flat index, the oracle named odd
# there (None: finite differences could not tell; UNDECIDED: they did not estimate it).
Disagreement = tuple[float, int, int, str | None]


@dataclass
class FdTally:
    """What finite differences could not decide, over every input: comparisons whose error
    bar was too wide (inconclusive), disagreements of their own on a spec-only case, and the
    largest absolute tolerance used (for the report)."""

    inconclusive: int = 0
    # Why, by reason: "not finite", "wider than the gap", "zero gradient", "ill-conditioned".
    reasons: Counter[str] = field(default_factory=Counter)
    # Per input, the elements where symbolic and autograd are both the same nan or infinity:
    # outside the function's domain (or where it overflows), not compared as numbers.
    outside: dict[str, set[int]] = field(default_factory=dict)
    fd_alone: int = 0
    flips: int = 0  # the spec's conditions that change within one finite-difference step
    not_numbers: int = 0  # finite differences left unjudged where the gradient is not finite
    largest_atol: float = 0.0
    # How close symbolic and autograd came to their tolerance: the largest |s - a| / allowed
    # over every compared element (a pass is below 1), and where ("W1[3, 2]").
    margin: float = 0.0
    margin_at: str = ""
    # Per input whose odd oracle nobody could name: its disagreeing elements, largest first.
    undecided: dict[str, list[int]] = field(default_factory=dict)
    # The joint directions did not confirm symbolic and autograd (``_joint_settled``): the
    # check takes per-input directions instead, which say what is wrong where.
    joint_unsettled: bool = False


@dataclass
class ProbedGradient:
    """One probe's gradients of one input, flat, with their bounds."""

    k: int
    s: np.ndarray
    a: np.ndarray
    scale: float
    bound_s: np.ndarray
    bound_a: np.ndarray
    agree: np.ndarray


class FdBookkeeping:
    """One input's finite-difference-only bookkeeping: the partials finite differences
    estimated, whether their disagreeing alone with symbolic and autograd counts against the
    impl, and the elements where it did."""

    def __init__(self, results: OracleResults, name: str, tally: FdTally) -> None:
        self.results = results
        self.name = name
        self.tally = tally
        # Finite differences alone against symbolic and autograd, which agree, say nothing
        # against the impl: with no impl they difference the spec itself; where the forward
        # detaches a value, both gradients stop there by design and the differences do not.
        self._alone_uncounted = results.case.impl is None or bool(results.spec.stops)
        self._flips: int | None = None  # the spec's conditions flipping within one step
        self.odd_elements: set[int] = set()  # where finite differences alone are off

    def partials(self, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Finite differences' partials of this input at probe k: values, error bars (with
        the safety factor), and the flat indices they are at."""
        fd = self.results.finite_differences
        if fd is None or self.name not in fd.per_input:
            return np.zeros(0), np.zeros(0), np.zeros(0, dtype=np.int64)
        estimates = fd.per_input[self.name]
        return (estimates.partials[k], FD_SAFETY * estimates.partial_errors[k],
                estimates.indices)

    def alone_uncounted(self) -> bool:
        """Whether finite differences alone against symbolic and autograd, which agree, say
        nothing against the impl: with no impl they difference the spec itself; where the
        traced forward stops a gradient by its own doing (a detach(), a threshold computed
        from the input's histogram) both gradients stop there by the forward's design; and
        where the spec's own conditions change within one step the differences straddle a
        branch the gradients are taken on. (A value read out with .item() is none of these:
        its lost gradient is a bug, and counted.)"""
        return self._alone_uncounted or self.branch_flips() > 0

    def branch_flips(self) -> int:
        """The spec's conditions that flip within one finite-difference step (computed once,
        only where it matters)."""
        from gradcheck_lab.oracles.symbolic import branches_within

        if self._flips is None:
            results = self.results
            self._flips = 0 if results.case.impl is None else branches_within(
                results.spec, results.point, results.precision.relative_step,
                results.case.seed)
            self.tally.flips = max(self.tally.flips, self._flips)
        return self._flips


class DisagreementReport:
    """The reporting of one input's disagreements: each probe's rows said once, the worst
    rows of symbolic against autograd, who is odd (or why nobody could tell), and the notes."""

    def __init__(self, results: OracleResults, rule: ToleranceRule, name: str, tally: FdTally,
                 fd: FdBookkeeping, impl_differs_from_spec: bool) -> None:
        self.results = results
        self.rule = rule
        self.sym_rule = results.symbolic_rule
        self.name = name
        self.tally = tally
        self.fd = fd
        self.impl_differs_from_spec = impl_differs_from_spec
        # What each probe reported, by (kind, element or direction): a probe that is a multiple
        # of an earlier one (a scalar output's cotangent c) reports only what that one did not.
        self.reported: dict[int, set[tuple[str, int]]] = {}
        # The oracles named odd for this input, each with what it is odd on ("x (20
        # elements)"): said grouped with the other inputs' (``odd_ones_out``).
        self.odd: list[tuple[str, str]] = []

    def first_report(self, k: int, kind: str, key: int) -> bool:
        """Record that probe k found ``kind`` at ``key``; False when the probe it is a multiple
        of already did (the row would say the same again)."""
        self.reported.setdefault(k, set()).add((kind, key))
        base = self.results.probes[k].multiple_of
        return base is None or (kind, key) not in self.reported.get(base, set())

    def report(self, findings: Findings, disagreements: list[Disagreement], votes: list[str],
               probes: list[ProbedGradient]) -> None:
        """The worst disagreements of symbolic and autograd, and who is odd."""
        group_odd = odd_one_out(votes)
        if group_odd == SYMBOLIC and self.branch_too_narrow(findings, disagreements):
            return
        declared = self.name in self.results.case.surrogates
        if declared:
            # The surrogate is what the backward means to compute: where it is not that,
            # the backward is wrong (finite differences see only the true derivative).
            group_odd = AUTOGRAD
            disagreements = [(e, k, flat, AUTOGRAD) for e, k, flat, _ in disagreements]
        if self.impl_differs_from_spec:
            # Finite differences differentiate the impl, which computes another function:
            # siding with autograd there says nothing against the spec's gradient.
            group_odd = None if group_odd == SYMBOLIC else group_odd
            disagreements = [(e, k, flat, None if odd == SYMBOLIC else odd)
                             for e, k, flat, odd in disagreements]
        elements = len({flat for _, _, flat, _ in disagreements})
        if not self.impl_differs_from_spec and not declared:
            # Elements that finite differences left undecided (or, when nobody is named for
            # the input, every disagreeing one): what a sharper difference should look at.
            ranked = sorted(disagreements, key=lambda row: -row[0])
            undecided = [flat for _, _, flat, odd in ranked
                         if odd is None or (odd is UNDECIDED and group_odd is None)]
            if undecided:
                self.tally.undecided[self.name] = list(dict.fromkeys(undecided))
        for error, k, flat, odd in worst(disagreements, lambda row: row[0]):
            s = self.results.three_way.per_probe[k][self.name].reshape(-1)
            a = self.results.autograd.per_probe[k][self.name].reshape(-1)
            scale, all_terms = gradient_scale(s), self.results.terms(self.name, k)
            terms = all_terms[flat] if isinstance(all_terms, np.ndarray) else all_terms
            values = {SYMBOLIC: s[flat], AUTOGRAD: a[flat]}
            fd_value, _, fd_at = self.fd.partials(k)
            at = np.flatnonzero(fd_at == flat)
            if at.size:
                values[FD] = fd_value[at[0]]
            allowed = (self.sym_rule.bound(s[flat], scale, terms)
                       + self.rule.bound(s[flat], scale, terms))
            findings.mismatches.append(self.mismatch(
                (SYMBOLIC, AUTOGRAD), group_odd if odd is UNDECIDED else odd, values, error,
                s[flat], float(allowed), flat=flat, k=k, elements=elements))
        if disagreements:
            through = self.through_outputs(disagreements)
            described = self.describe_odd(group_odd, elements, disagreements)
            if described is None and group_odd is not None:
                self.odd.append((group_odd, f"{self.name} ({count_text(elements)}{through})"))
            else:
                findings.summary.append(f"{described}{through}")
            if group_odd != SYMBOLIC:
                found = diagnose(self.name, self.results.three_way.per_probe[0][self.name].shape,
                                 [Probed(p.s, p.a, p.bound_s + p.bound_a, p.agree)
                                  for p in probes],
                                 scales_with_cotangent=len(probes) > 1)
                if found is not None:
                    findings.diagnoses.append(found)
        if self.fd.odd_elements:
            self.odd.append((FD, f"{self.name} ({count_text(len(self.fd.odd_elements))})"))

    def branch_too_narrow(self, findings: Findings, disagreements: list[Disagreement]) -> bool:
        """Symbolic disagrees with autograd, finite differences side with autograd or
        cannot tell, and the spec's own branches change within one finite-difference step:
        its exact derivative is that of a branch narrower than the scale the forward's
        function is differentiated at (an iterative solver's last comparisons), so it
        cannot speak against autograd. Said in a note; nothing is reported against the
        impl."""
        if self.results.case.impl is None or any(odd not in (SYMBOLIC, UNDECIDED, None)
                                                 for _, _, _, odd in disagreements):
            return False
        flips = self.fd.branch_flips()
        if not flips:
            return False
        note = (f"{self.name}: the spec's derivative differs from autograd's, which finite "
                f"differences confirm or cannot refute; {flips} of its conditions change "
                "within one finite-difference step, so the spec holds only on a branch narrower "
                "than that "
                "(an iterative solver's comparisons): the verdict rests on autograd and finite "
                "differences")
        if note not in findings.notes:
            findings.notes.append(note)
        return True

    def through_outputs(self, disagreements: list[Disagreement]) -> str:
        """With named outputs: which outputs' own cotangents the disagreements come through
        (a joint cotangent alone names none)."""
        probes = self.results.probes
        named = sorted({output for _, k, _, _ in disagreements
                        if (output := probes[k].output) is not None})
        if not named:
            return ""
        return f", through output {' and '.join(repr(name) for name in named)}"

    def describe_odd(self, odd: str | None, count: int,
                     disagreements: list[Disagreement]) -> str | None:
        """Why symbolic and autograd disagree on this input; None where it is plainly that
        ``odd`` is the odd one out (said with the other inputs it is odd for)."""
        name = self.name
        both_infinite = all(
            not np.isfinite(self.results.three_way.per_probe[k][name].reshape(-1)[flat])
            and not np.isfinite(self.results.autograd.per_probe[k][name].reshape(-1)[flat])
            for _, k, flat, _ in disagreements)
        if both_infinite:
            return (f"{name}: the gradient is not finite ({count_text(count)}); symbolic and "
                    "autograd both give inf or nan there: at this point the function is not "
                    "differentiable or its values overflow float64")
        if name in self.results.case.surrogates:
            return (f"{name}: the backward is not the declared surrogate gradient "
                    f"({count_text(count)}); autograd is the odd one out")
        if odd is not None:
            return None
        if self.impl_differs_from_spec:
            return (f"{name}: symbolic and autograd disagree ({count_text(count)}); the impl's "
                    "forward is not the spec's (see value), so finite differences of the impl "
                    "cannot tell which gradient is right")
        return (f"{name}: symbolic and autograd disagree ({count_text(count)}); finite "
                "differences could not tell which is right")

    def mismatch(self, oracles: tuple[str, str], odd: str | None, values: dict[str, float],
                 abs_err: float, reference: float, allowed: float, *, flat: int | None = None,
                 k: int, elements: int = 1, direction: int | None = None) -> Mismatch:
        """A mismatch row of this input (at element ``flat`` or along ``direction``)."""
        return mismatch(self.name, oracles, odd, values, abs_err, reference, allowed,
                        flat=flat, shape=self.results.shape_of(self.name),
                        probes=self.results.probes, k=k, elements=elements,
                        direction=direction)
