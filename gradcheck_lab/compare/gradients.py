"""The gradient check: symbolic vs autograd on every element, finite differences arbitrating.

Where the first two disagree, the one that finite differences side with is right and the other
is the odd one out. Where symbolic and autograd agree but finite differences disagree beyond
their own error bar, finite differences are the odd one out (the impl's forward may not compute
the function its backward differentiates); with no impl the function differenced is the spec
itself, so that is the differences' own error and only a note.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from gradcheck_lab.compare.bundle import OracleResults
from gradcheck_lab.compare.findings import (
    AUTOGRAD,
    FD,
    FD_INCONCLUSIVE,
    FD_SAFETY,
    SYMBOLIC,
    Findings,
    agree,
    agreeing_text,
    count_text,
    finite_or_inf,
    mismatch,
    odd_by_difference,
    odd_one_out,
    same_nonfinite,
    worst,
)
from gradcheck_lab.compare.patterns import Probed, diagnose
from gradcheck_lab.compare.tolerances import ToleranceRule, gradient_scale
from gradcheck_lab.program.naming import element_index, index_text
from gradcheck_lab.results import Mismatch

_UNDECIDED = "undecided"  # no finite difference at this element: the input's majority decides
_TINY = float(np.finfo(np.float64).tiny)  # gradient_scale's floor: the gradient is all zeros


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


def compare_gradients(results: OracleResults, rule: ToleranceRule,
                      impl_differs_from_spec: bool) -> tuple[Findings, FdTally]:
    """Every differentiated input's gradient, three ways. ``impl_differs_from_spec``: the
    impl's forward values are not the spec's, so finite differences of the impl cannot speak
    against the spec's gradient."""
    findings, tally = Findings(), FdTally()
    inputs = [_InputGradient(results, rule, name, tally, impl_differs_from_spec)
              for name in results.input_names]
    agreeing = []
    for gradient in inputs:
        said = (len(findings.summary), len(findings.mismatches))
        gradient.compare(findings)
        if (len(findings.summary), len(findings.mismatches)) == said and not gradient.odd:
            agreeing.append(gradient.name)
    findings.summary[:0] = odd_ones_out(inputs, agreeing)
    fd = results.finite_differences
    if fd is not None and fd.joint is not None and not _joint_settled(results, inputs):
        tally.joint_unsettled = True
        findings.summary.append("finite differences along directions over all inputs do "
                                "not confirm symbolic and autograd")
    return findings, tally


def odd_ones_out(inputs: list[_InputGradient], agreeing: list[str]) -> list[str]:
    """The verdict's first lines: one per odd oracle, naming its inputs ("autograd is the odd
    one out: x (20 elements), W (3 elements)"), then the inputs whose gradients agree, where
    any do: a reader sees at once what is wrong, and where not to look."""
    by_odd: dict[str, list[str]] = {}
    for gradient in inputs:
        for odd, where in gradient.odd:
            by_odd.setdefault(odd, []).append(where)
    if not by_odd:
        return []
    lines = [f"{odd} is the odd one out: {', '.join(where)}"
             + (_FD_ODD_MEANS if odd == FD else "") for odd, where in by_odd.items()]
    if agreeing:
        lines.append(agreeing_text(agreeing))
    return lines


# What finite differences alone being odd means, said once for every input it is odd for.
_FD_ODD_MEANS = ("; symbolic and autograd agree, so the function's forward may not match its "
                 "backward")


def _joint_settled(results: OracleResults, inputs: list[_InputGradient]) -> bool:
    """Whether finite differences along the joint directions (``FiniteDifferences.joint``)
    confirm symbolic and autograd, which agree at every element: each direction conclusive
    and siding with them, at every probe. Anything else (a gap, an inconclusive or
    non-finite estimate, an element outside the domain) is not settled: the check then takes
    per-input directions, whose comparison says what is wrong where. Reads the comparison's
    own per-input values and bounds (``_InputGradient.probes``)."""
    fd = results.finite_differences
    assert fd is not None and fd.joint is not None
    d = fd.joint.directions.reshape(len(fd.joint.directions), -1)
    for k in range(len(results.probes)):
        probed = [gradient.probes[k] for gradient in inputs]
        if not all(p.agree.all() and np.isfinite(p.s).all() and np.isfinite(p.a).all()
                   for p in probed):
            return False
        ends = np.cumsum([p.s.size for p in probed])
        blocks = [(d[:, end - p.s.size:end], p) for p, end in zip(probed, ends, strict=True)]
        along = _along(blocks, fd.joint.directional[k],
                       FD_SAFETY * fd.joint.directional_errors[k])
        if not (along.finite & along.agreeing & ~along.too_wide
                & (along.side_s | along.side_a)).all():
            return False
    return True


@dataclass
class _Along:
    """Symbolic and autograd projected on directions, beside finite differences' estimates
    along them and their error bars: per direction, which agree with which, and where the
    bar is too wide to tell anything (against the projection and the gradient's scale)."""

    s: np.ndarray
    a: np.ndarray
    bound_s: np.ndarray
    bound_a: np.ndarray
    f: np.ndarray
    bf: np.ndarray
    finite: np.ndarray
    agreeing: np.ndarray
    side_s: np.ndarray
    side_a: np.ndarray
    too_wide: np.ndarray


def _along(blocks: list[tuple[np.ndarray, _Probed]], f: np.ndarray, bf: np.ndarray) -> _Along:
    """The projections for directions split into blocks, each (directions × an input's
    elements) with that input's probed gradients and bounds: one block for an input's own
    directions, one per input for directions over all of them. ``f``, ``bf``: the estimates
    along each direction and their error bars (the safety factor applied)."""
    with np.errstate(all="ignore"):
        sd = sum(d @ p.s for d, p in blocks)
        ad = sum(d @ p.a for d, p in blocks)
        bsd = sum(np.abs(d) @ p.bound_s for d, p in blocks)
        bad = sum(np.abs(d) @ p.bound_a for d, p in blocks)
        width = sum(p.scale * np.abs(d).sum(axis=1) for d, p in blocks)
        return _Along(sd, ad, bsd, bad, f, bf, np.isfinite(f) & np.isfinite(bf),
                      agree(sd, ad, bsd + bad), agree(sd, f, bsd + bf), agree(ad, f, bad + bf),
                      bf > FD_INCONCLUSIVE * (np.abs(sd) + width))


@dataclass
class _Probed:
    """One probe's gradients of one input, flat, with their bounds."""

    k: int
    s: np.ndarray
    a: np.ndarray
    scale: float
    bound_s: np.ndarray
    bound_a: np.ndarray
    agree: np.ndarray


class _InputGradient:
    def __init__(self, results: OracleResults, rule: ToleranceRule, name: str, tally: FdTally,
                 impl_differs_from_spec: bool) -> None:
        self.results = results
        self.rule = rule
        self.sym_rule = results.symbolic_rule
        self.name = name
        self.tally = tally
        self.impl_differs_from_spec = impl_differs_from_spec
        self.spec_only = results.case.impl is None
        # Finite differences alone against symbolic and autograd, which agree, say nothing
        # against the impl: with no impl they difference the spec itself; where the forward
        # detaches a value, both gradients stop there by design and the differences do not.
        self._fd_alone_uncounted = self.spec_only or bool(results.spec.stops)
        self._flips: int | None = None  # the spec's conditions flipping within one step
        self.disagreements: list[tuple[float, int, int, str | None]] = []  # err, probe, flat, odd
        self.votes: list[str] = []
        self.fd_odd_elements: set[int] = set()
        # What each probe reported, by (kind, element or direction): a probe that is a multiple
        # of an earlier one (a scalar output's cotangent c) reports only what that one did not.
        self.reported: dict[int, set[tuple[str, int]]] = {}
        self.counted = True
        self.probes: list[_Probed] = []
        # The oracles named odd for this input, each with what it is odd on ("x (20
        # elements)"): said grouped with the other inputs' (``odd_ones_out``).
        self.odd: list[tuple[str, str]] = []

    def compare(self, findings: Findings) -> None:
        for k in range(len(self.results.probes)):
            self.reported[k] = set()
            # What finite differences could not decide is counted once per independent
            # cotangent, as the comparisons are (counts, the pass message).
            self.counted = self.results.probes[k].multiple_of is None
            probed = self.probed(k)
            self.probes.append(probed)
            odd_here = self.partials(probed, findings)
            self.votes.extend(odd for odd in odd_here.values() if odd is not None)
            self.votes.extend(self.directions(probed, findings))
            with np.errstate(all="ignore"):
                errors = np.abs(probed.s - probed.a)
            for flat in np.flatnonzero(~probed.agree):
                if self.first_report(k, "disagree", int(flat)):
                    self.disagreements.append((finite_or_inf(errors[flat]), k, int(flat),
                                               odd_here.get(int(flat), _UNDECIDED)))
        self.report(findings)

    def first_report(self, k: int, kind: str, key: int) -> bool:
        """Record that probe k found ``kind`` at ``key``; False when the probe it is a multiple
        of already did (the row would say the same again)."""
        self.reported[k].add((kind, key))
        base = self.results.probes[k].multiple_of
        return base is None or (kind, key) not in self.reported.get(base, set())

    def probed(self, k: int) -> _Probed:
        s = self.results.symbolic.per_probe[k][self.name].reshape(-1)
        a = self.results.autograd.per_probe[k][self.name].reshape(-1)
        scale, terms = gradient_scale(s), self.results.terms(self.name, k)
        self.tally.largest_atol = max(self.tally.largest_atol,
                                      float(np.max(self.rule.absolute(scale, terms))))
        bound_s = self.sym_rule.bound(s, scale, terms)
        bound_a = self.rule.bound(s, scale, terms)
        # Outside the domain: the same nan or infinity on both sides; or, at an input element
        # where the forward itself leaves the domain, autograd not finite whatever symbolic
        # says (0·nan is nan for torch where the exact off-diagonal entry is 0). Autograd
        # finite where the exact gradient is not is compared: a number where there is none.
        at_domain_edge = np.zeros(s.shape, dtype=bool)
        at_domain_edge[list(self.results.symbolic.domain_elements.get(self.name, ()))] = True
        outside = np.flatnonzero(same_nonfinite(s, a) | (at_domain_edge & ~np.isfinite(a)))
        if outside.size:
            self.tally.outside.setdefault(self.name, set()).update(int(f) for f in outside)
        agreeing = agree(s, a, bound_s + bound_a) | self.rule.flushed(s, a)
        agreeing[outside] = True
        self.measure_margin(s, a, bound_s + bound_a, agreeing)
        return _Probed(k, s, a, scale, bound_s, bound_a, agreeing)

    def measure_margin(self, s: np.ndarray, a: np.ndarray, allowed: np.ndarray,
                       agreeing: np.ndarray) -> None:
        """The worst agreeing element's error over what was allowed there."""
        with np.errstate(all="ignore"):
            ratio = np.where(agreeing & np.isfinite(s) & np.isfinite(a) & (allowed > 0),
                             np.abs(s - a) / allowed, 0.0)
        if ratio.size and float(ratio.max()) > self.tally.margin:
            flat = int(np.argmax(ratio))
            shape = self.results.symbolic.per_probe[0][self.name].shape
            self.tally.margin = float(ratio[flat])
            self.tally.margin_at = self.name + index_text(element_index(flat, shape))

    def inconclusive(self, reason: str) -> None:
        self.tally.inconclusive += self.counted
        self.tally.reasons[reason] += self.counted

    def fd_partials(self, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Finite differences' partials of this input at probe k: values, error bars (with
        the safety factor), and the flat indices they are at."""
        fd = self.results.finite_differences
        if fd is None or self.name not in fd.per_input:
            return np.zeros(0), np.zeros(0), np.zeros(0, dtype=np.int64)
        estimates = fd.per_input[self.name]
        return (estimates.partials[k], FD_SAFETY * estimates.partial_errors[k],
                estimates.indices)

    def partials(self, p: _Probed, findings: Findings) -> dict[int, str | None]:
        """Each element finite differences estimated: which oracle it names odd where symbolic
        and autograd disagree; where they agree, whether finite differences are off alone."""
        odd_here: dict[int, str | None] = {}
        fd_value, fd_bound, fd_at = self.fd_partials(p.k)
        outside = self.tally.outside.get(self.name, set())
        for position in np.flatnonzero(~self._settled(p, fd_value, fd_bound, fd_at, outside)):
            flat = fd_at[position]
            f, bf = fd_value[position], fd_bound[position]
            s, a = p.s[flat], p.a[flat]
            if int(flat) in outside:
                self.tally.not_numbers += self.counted  # the kinds were compared instead
                continue
            if not p.agree[flat]:
                # Disagreeing: the estimate decides wherever its bar is narrower than the gap.
                if not (np.isfinite(f) and np.isfinite(bf)) and not (
                        np.isfinite(f) and np.isnan(s) != np.isnan(a)):
                    self.inconclusive("not finite")
                    continue
                odd = odd_by_difference(s, a, f, p.bound_s[flat], p.bound_a[flat], bf)
                if odd is None and agree(s, f, p.bound_s[flat] + bf) and agree(
                        a, f, p.bound_a[flat] + bf):
                    self.inconclusive("wider than the gap")
                    continue
                odd_here[flat] = odd
                continue
            if not (np.isfinite(f) and np.isfinite(bf)):
                self.inconclusive("not finite")
                continue
            if bf > FD_INCONCLUSIVE * (abs(s) + p.scale):
                self.inconclusive("zero gradient" if p.scale <= _TINY else "ill-conditioned")
                continue
            side_s = bool(agree(s, f, p.bound_s[flat] + bf))
            side_a = bool(agree(a, f, p.bound_a[flat] + bf))
            if side_s or side_a:
                continue
            if self.fd_alone_uncounted():
                self.tally.fd_alone += self.counted
                continue
            self.fd_odd_elements.add(int(flat))
            if not self.first_report(p.k, "fd", int(flat)):
                continue
            findings.mismatches.append(self.mismatch(
                (AUTOGRAD, FD), FD, {SYMBOLIC: s, AUTOGRAD: a, FD: f}, abs(a - f), s,
                p.bound_a[flat] + bf, flat=int(flat), k=p.k))
        return odd_here

    @staticmethod
    def _settled(p: _Probed, fd_value: np.ndarray, fd_bound: np.ndarray, fd_at: np.ndarray,
                 outside: set[int]) -> np.ndarray:
        """The estimates ``partials`` would pass over without a word, all at once (an
        exhaustive run has one per element): symbolic and autograd agree, the estimate is
        finite and conclusive, and it sides with one of them."""
        s, a = p.s[fd_at], p.a[fd_at]
        with np.errstate(all="ignore"):
            settled = (p.agree[fd_at] & np.isfinite(fd_value) & np.isfinite(fd_bound)
                       & ~(fd_bound > FD_INCONCLUSIVE * (np.abs(s) + p.scale))
                       & (agree(s, fd_value, p.bound_s[fd_at] + fd_bound)
                          | agree(a, fd_value, p.bound_a[fd_at] + fd_bound)))
        if outside:
            settled &= ~np.isin(fd_at, np.fromiter(outside, dtype=np.int64))
        return settled

    def directions(self, p: _Probed, findings: Findings) -> list[str]:
        """Compare <d, S> and <d, A> with the finite difference along each direction d; the
        oracle each direction names odd."""
        fd = self.results.finite_differences
        if fd is None or self.name not in fd.per_input:
            return []
        estimates = fd.per_input[self.name]
        votes = []
        # Every direction's projections at once: one matrix product each, not a loop of dots.
        d = estimates.directions.reshape(len(estimates.directions), p.s.size)
        along = _along([(d, p)], estimates.directional[p.k],
                       FD_SAFETY * estimates.directional_errors[p.k])
        for j in range(len(d)):
            if not along.finite[j]:
                self.inconclusive("not finite")
                continue
            agreeing, side_s, side_a = (bool(along.agreeing[j]), bool(along.side_s[j]),
                                        bool(along.side_a[j]))
            if agreeing and along.too_wide[j]:
                self.inconclusive("zero gradient" if p.scale <= _TINY else "ill-conditioned")
                continue
            if not agreeing and side_s and side_a:
                self.inconclusive("wider than the gap")
                continue
            if agreeing:
                if not side_s and not side_a and self.fd_alone_uncounted():
                    self.tally.fd_alone += self.counted
                elif not side_s and not side_a and self.first_report(p.k, "direction", j):
                    sd, ad, f = float(along.s[j]), float(along.a[j]), float(along.f[j])
                    findings.mismatches.append(self.mismatch(
                        (AUTOGRAD, FD), FD, {SYMBOLIC: sd, AUTOGRAD: ad, FD: f}, abs(ad - f), sd,
                        float(along.bound_a[j] + along.bf[j]), k=p.k, direction=j))
                    findings.summary.append(f"{self.name}: {FD} is the odd one out along "
                                            f"direction {j}; symbolic and autograd agree")
            elif side_s != side_a:
                votes.append(AUTOGRAD if side_s else SYMBOLIC)
        return votes

    def report(self, findings: Findings) -> None:
        """The worst disagreements of symbolic and autograd, and who is odd."""
        group_odd = odd_one_out(self.votes)
        disagreements = self.disagreements
        if group_odd == SYMBOLIC and self.branch_too_narrow(findings):
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
                         if odd is None or (odd is _UNDECIDED and group_odd is None)]
            if undecided:
                self.tally.undecided[self.name] = list(dict.fromkeys(undecided))
        for error, k, flat, odd in worst(disagreements, lambda row: row[0]):
            s = self.results.symbolic.per_probe[k][self.name].reshape(-1)
            a = self.results.autograd.per_probe[k][self.name].reshape(-1)
            scale, terms = gradient_scale(s), self.results.terms(self.name, k)
            terms = terms[flat] if np.ndim(terms) else terms
            values = {SYMBOLIC: s[flat], AUTOGRAD: a[flat]}
            fd_value, _, fd_at = self.fd_partials(k)
            at = np.flatnonzero(fd_at == flat)
            if at.size:
                values[FD] = fd_value[at[0]]
            allowed = (self.sym_rule.bound(s[flat], scale, terms)
                       + self.rule.bound(s[flat], scale, terms))
            findings.mismatches.append(self.mismatch(
                (SYMBOLIC, AUTOGRAD), group_odd if odd is _UNDECIDED else odd, values, error,
                s[flat], float(allowed), flat=flat, k=k, elements=elements))
        if disagreements:
            through = self.through_outputs(disagreements)
            described = self.describe_odd(group_odd, elements, disagreements)
            if described is None and group_odd is not None:
                self.odd.append((group_odd, f"{self.name} ({count_text(elements)}{through})"))
            else:
                findings.summary.append(f"{described}{through}")
            if group_odd != SYMBOLIC:
                found = diagnose(self.name, self.results.symbolic.per_probe[0][self.name].shape,
                                 [Probed(p.s, p.a, p.bound_s + p.bound_a, p.agree)
                                  for p in self.probes],
                                 scales_with_cotangent=len(self.probes) > 1)
                if found is not None:
                    findings.diagnoses.append(found)
        if self.fd_odd_elements:
            self.odd.append((FD, f"{self.name} ({count_text(len(self.fd_odd_elements))})"))

    def fd_alone_uncounted(self) -> bool:
        """Whether finite differences alone against symbolic and autograd, which agree, say
        nothing against the impl: with no impl they difference the spec itself; where the
        traced forward stops a gradient by its own doing (a detach(), a threshold computed
        from the input's histogram) both gradients stop there by the forward's design; and
        where the spec's own conditions change within one step the differences straddle a
        branch the gradients are taken on. (A value read out with .item() is none of these:
        its lost gradient is a bug, and counted.)"""
        return self._fd_alone_uncounted or self.branch_flips() > 0

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

    def branch_too_narrow(self, findings: Findings) -> bool:
        """Symbolic disagrees with autograd, finite differences side with autograd or
        cannot tell, and the spec's own branches change within one finite-difference step:
        its exact derivative is that of a branch narrower than the scale the forward's
        function is differentiated at (an iterative solver's last comparisons), so it
        cannot speak against autograd. Said in a note; nothing is reported against the
        impl."""
        if self.results.case.impl is None or any(odd not in (SYMBOLIC, _UNDECIDED, None)
                                                 for _, _, _, odd in self.disagreements):
            return False
        flips = self.branch_flips()
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

    def through_outputs(self, disagreements: list[tuple[float, int, int, str | None]]) -> str:
        """With named outputs: which outputs' own cotangents the disagreements come through
        (a joint cotangent alone names none)."""
        probes = self.results.probes
        named = sorted({probes[k].output for _, k, _, _ in disagreements
                        if probes[k].output is not None})
        if not named:
            return ""
        return f", through output {' and '.join(repr(name) for name in named)}"

    def describe_odd(self, odd: str | None, count: int,
                     disagreements: list[tuple[float, int, int, str | None]]) -> str | None:
        """Why symbolic and autograd disagree on this input; None where it is plainly that
        ``odd`` is the odd one out (said with the other inputs it is odd for)."""
        name = self.name
        both_infinite = all(
            not np.isfinite(self.results.symbolic.per_probe[k][name].reshape(-1)[flat])
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
        return mismatch(self.name, oracles, odd, values, abs_err, reference, allowed,
                        flat=flat, shape=self.results.shape_of(self.name),
                        probes=self.results.probes, k=k, elements=elements,
                        direction=direction)
