"""The gradient check: symbolic vs autograd on every element, finite differences arbitrating.

Where the first two disagree, the one that finite differences side with is right and the other
is the odd one out. Where symbolic and autograd agree but finite differences disagree beyond
their own error bar, finite differences are the odd one out (the impl's forward may not compute
the function its backward differentiates); with no impl the function differenced is the spec
itself, so that is the differences' own error and only a note.

This module compares and collects the votes; ``gradient_report`` says what they found.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

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
    finite_or_inf,
    odd_by_difference,
    same_nonfinite,
)
from gradcheck_lab.compare.gradient_report import (
    UNDECIDED,
    Disagreement,
    DisagreementReport,
    FdBookkeeping,
    FdTally,  # defined with the report; the verdict and the two-way check import it from here
    ProbedGradient,
)
from gradcheck_lab.compare.tolerances import ToleranceRule, gradient_scales
from gradcheck_lab.program.naming import element_index, index_text

_TINY = float(np.finfo(np.float64).tiny)  # gradient_scale's floor: the gradient is all zeros


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
    stacked = [gradient.all_probes for gradient in inputs]
    if not all(p.finite and p.agree.all() for p in stacked):
        return False
    # Every probe at once: the projections are (directions × probes).
    d = fd.joint.directions.reshape(len(fd.joint.directions), -1)
    ends = np.cumsum([len(p.s) for p in stacked])
    blocks = [(d[:, end - len(p.s):end], p) for p, end in zip(stacked, ends, strict=True)]
    along = _along(blocks, np.array(fd.joint.directional).T,
                   FD_SAFETY * np.array(fd.joint.directional_errors).T)
    return bool((along.finite & along.agreeing & ~along.too_wide
                 & (along.side_s | along.side_a)).all())


@dataclass(frozen=True)
class _AllProbes:
    """One input's gradients and bounds at every probe, a column per probe (``_along`` then
    projects every probe at once); ``scale``: each probe's gradient scale."""

    s: np.ndarray
    a: np.ndarray
    scale: np.ndarray
    bound_s: np.ndarray
    bound_a: np.ndarray
    agree: np.ndarray
    finite: bool  # every element of s and a


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


def _along(blocks: Sequence[tuple[np.ndarray, ProbedGradient | _AllProbes]], f: np.ndarray,
           bf: np.ndarray) -> _Along:
    """The projections for directions split into blocks, each (directions × an input's
    elements) with that input's probed gradients and bounds: one block for an input's own
    directions, one per input for directions over all of them. ``f``, ``bf``: the estimates
    along each direction and their error bars (the safety factor applied), or (directions ×
    probes) for blocks of ``_AllProbes``."""
    with np.errstate(all="ignore"):
        sd = sum(d @ p.s for d, p in blocks)
        ad = sum(d @ p.a for d, p in blocks)
        magnitudes = [(np.abs(d), p) for d, p in blocks]
        bsd = sum(m @ p.bound_s for m, p in magnitudes)
        bad = sum(m @ p.bound_a for m, p in magnitudes)
        width = sum(np.multiply.outer(m.sum(axis=1), p.scale) for m, p in magnitudes)
        return _Along(sd, ad, bsd, bad, f, bf, np.isfinite(f) & np.isfinite(bf),
                      agree(sd, ad, bsd + bad), agree(sd, f, bsd + bf), agree(ad, f, bad + bf),
                      bf > FD_INCONCLUSIVE * (np.abs(sd) + width))


class _InputGradient:
    """One input's comparison, probe by probe: symbolic against autograd element by element
    (with the tolerance's margin), finite differences' votes where they disagree, and the
    disagreements gathered for the report."""

    def __init__(self, results: OracleResults, rule: ToleranceRule, name: str, tally: FdTally,
                 impl_differs_from_spec: bool) -> None:
        self.results = results
        self.rule = rule
        self.sym_rule = results.symbolic_rule
        self.name = name
        self.tally = tally
        self.fd = FdBookkeeping(results, name, tally)
        self.reporter = DisagreementReport(results, rule, name, tally, self.fd,
                                           impl_differs_from_spec)
        self.fd_votes = _FdVotes(results, name, tally, self.fd, self.reporter)
        self.disagreements: list[Disagreement] = []
        self.votes: list[str] = []
        self.probes: list[ProbedGradient] = []
        self.all_probes: _AllProbes  # set by ``probed``

    @property
    def odd(self) -> list[tuple[str, str]]:
        """The oracles named odd for this input, each with what it is odd on ("x (20
        elements)"): said grouped with the other inputs' (``odd_ones_out``)."""
        return self.reporter.odd

    def compare(self, findings: Findings) -> None:
        for probed, outside in zip(*self.probed(), strict=True):
            if outside.size:  # said probe by probe: the votes at probe k read it
                self.tally.outside.setdefault(self.name, set()).update(int(f) for f in outside)
            self.probes.append(probed)
            odd_here, along_directions = self.fd_votes.vote(probed, findings)
            self.votes.extend(odd for odd in odd_here.values() if odd is not None)
            self.votes.extend(along_directions)
            for flat in np.flatnonzero(~probed.agree):
                if self.reporter.first_report(probed.k, "disagree", int(flat)):
                    with np.errstate(all="ignore"):
                        error = abs(probed.s[flat] - probed.a[flat])
                    self.disagreements.append((finite_or_inf(error), probed.k, int(flat),
                                               odd_here.get(int(flat), UNDECIDED)))
        self.reporter.report(findings, self.disagreements, self.votes, self.probes)

    def probed(self) -> tuple[list[ProbedGradient], list[np.ndarray]]:
        """Every probe's gradients of this input with their bounds and agreement, computed
        for all probes at once (one array operation each, not one per probe); and each
        probe's elements outside the domain."""
        count = len(self.results.probes)
        s = np.stack([self.results.three_way.per_probe[k][self.name].reshape(-1)
                      for k in range(count)])
        a = np.stack([self.results.autograd.per_probe[k][self.name].reshape(-1)
                      for k in range(count)])
        # Each row's extremes, without a temporary: NaN carries through max and min and an
        # infinity is one of them, so finite extremes say that every element is finite.
        s_high, s_low = s.max(axis=1, initial=0.0), s.min(axis=1, initial=0.0)
        finite_rows = np.isfinite(s_high) & np.isfinite(s_low)
        finite = bool(finite_rows.all() and np.isfinite(a.max(axis=1, initial=0.0)).all()
                      and np.isfinite(a.min(axis=1, initial=0.0)).all())
        scales = (np.maximum(np.maximum(s_high, -s_low), _TINY) if finite_rows.all()
                  else gradient_scales(s))
        # The terms' magnitudes where the symbolic oracle gave them; else one 0 for all.
        terms: np.ndarray | float = 0.0
        if self.results.symbolic is not None and self.results.symbolic.term_magnitudes:
            terms = np.stack([np.broadcast_to(self.results.terms(self.name, k), s.shape[1:])
                              for k in range(count)])
        scale_column = scales[:, None]
        self.tally.largest_atol = max(self.tally.largest_atol, float(np.max(
            self.rule.absolute(scale_column, terms))))
        magnitude = np.abs(s)  # both bounds read it
        bound_s = self.sym_rule.bound_of_magnitude(magnitude, scale_column, terms)
        bound_a = self.rule.bound_of_magnitude(magnitude, scale_column, terms)
        allowed = np.add(bound_s, bound_a, out=magnitude)
        with np.errstate(all="ignore"):
            gap = np.subtract(s, a)
            np.abs(gap, out=gap)
        if finite:  # the usual case: no element outside the domain, one pass each
            outside: np.ndarray | None = None
            agreeing = gap <= allowed
            if not agreeing.all():
                agreeing |= self.rule.flushed(s, a)
            self.measure_margin(gap, allowed, None if agreeing.all() else agreeing)
        else:
            # Outside the domain: the same nan or infinity on both sides; or, at an input
            # element where the forward itself leaves the domain, autograd not finite
            # whatever symbolic says (0·nan is nan for torch where the exact off-diagonal
            # entry is 0). Autograd finite where the exact gradient is not is compared: a
            # number where there is none.
            at_domain_edge = np.zeros(s.shape[1:], dtype=bool)
            at_domain_edge[list(self.results.three_way.domain_elements.get(self.name, ()))] = (
                True)
            outside = same_nonfinite(s, a) | (at_domain_edge & ~np.isfinite(a))
            agreeing = agree(s, a, allowed) | self.rule.flushed(s, a) | outside
            self.measure_margin(gap, allowed, agreeing & np.isfinite(s) & np.isfinite(a))
        self.all_probes = _AllProbes(s.T, a.T, scales, bound_s.T, bound_a.T, agreeing.T,
                                     finite)
        probed = [ProbedGradient(k, s[k], a[k], float(scales[k]), bound_s[k], bound_a[k],
                                 agreeing[k]) for k in range(count)]
        nothing = np.zeros(0, dtype=np.int64)
        return probed, ([nothing] * count if outside is None
                        else [np.flatnonzero(row) for row in outside])

    def measure_margin(self, gap: np.ndarray, allowed: np.ndarray,
                       counted: np.ndarray | None) -> None:
        """The worst error (``gap``) over what was allowed there, among the ``counted``
        elements (agreeing, both finite; None: every element). Overwrites ``gap``."""
        with np.errstate(all="ignore"):
            if counted is None:  # 0/0 where nothing is allowed and nothing differs: no ratio
                ratio = np.divide(gap, allowed, out=gap)
                worst = float(np.fmax.reduce(ratio, axis=None, initial=0.0))
            else:
                ratio = np.where(counted & (allowed > 0), gap / allowed, 0.0)
                worst = float(ratio.max(initial=0.0))
        if worst > self.tally.margin:
            flat = int(np.flatnonzero(ratio.reshape(-1) == worst)[0]) % ratio.shape[-1]
            shape = self.results.three_way.per_probe[0][self.name].shape  # probes are rows
            self.tally.margin = worst
            self.tally.margin_at = self.name + index_text(element_index(flat, shape))


class _FdVotes:
    """Finite differences' votes on one input at one probe: on each estimated partial and
    along each direction, which of symbolic and autograd they side with where those disagree,
    whether they are off alone where those agree, and what they could not decide."""

    def __init__(self, results: OracleResults, name: str, tally: FdTally, fd: FdBookkeeping,
                 reporter: DisagreementReport) -> None:
        self.results = results
        self.name = name
        self.tally = tally
        self.fd = fd
        self.reporter = reporter
        self.counted = True

    def vote(self, p: ProbedGradient,
             findings: Findings) -> tuple[dict[int, str | None], list[str]]:
        """The partials' votes by element, then the directions' votes."""
        # What finite differences could not decide is counted once per independent
        # cotangent, as the comparisons are (counts, the pass message).
        self.counted = self.results.probes[p.k].multiple_of is None
        return self.partials(p, findings), self.directions(p, findings)

    def inconclusive(self, reason: str) -> None:
        self.tally.inconclusive += self.counted
        self.tally.reasons[reason] += self.counted

    def partials(self, p: ProbedGradient, findings: Findings) -> dict[int, str | None]:
        """Each element finite differences estimated: which oracle it names odd where symbolic
        and autograd disagree; where they agree, whether finite differences are off alone."""
        odd_here: dict[int, str | None] = {}
        fd_value, fd_bound, fd_at = self.fd.partials(p.k)
        if not fd_at.size:  # no partial estimated for this input (joint directions only)
            return odd_here
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
            if self.fd.alone_uncounted():
                self.tally.fd_alone += self.counted
                continue
            self.fd.odd_elements.add(int(flat))
            if not self.reporter.first_report(p.k, "fd", int(flat)):
                continue
            findings.mismatches.append(self.reporter.mismatch(
                (AUTOGRAD, FD), FD, {SYMBOLIC: s, AUTOGRAD: a, FD: f}, abs(a - f), s,
                p.bound_a[flat] + bf, flat=int(flat), k=p.k))
        return odd_here

    @staticmethod
    def _settled(p: ProbedGradient, fd_value: np.ndarray, fd_bound: np.ndarray, fd_at: np.ndarray,
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

    def directions(self, p: ProbedGradient, findings: Findings) -> list[str]:
        """Compare <d, S> and <d, A> with the finite difference along each direction d; the
        oracle each direction names odd."""
        fd = self.results.finite_differences
        if fd is None or self.name not in fd.per_input:
            return []
        estimates = fd.per_input[self.name]
        if not len(estimates.directions):  # none of its own (joint directions only)
            return []
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
                if not side_s and not side_a and self.fd.alone_uncounted():
                    self.tally.fd_alone += self.counted
                elif not side_s and not side_a and self.reporter.first_report(p.k, "direction", j):
                    sd, ad, f = float(along.s[j]), float(along.a[j]), float(along.f[j])
                    findings.mismatches.append(self.reporter.mismatch(
                        (AUTOGRAD, FD), FD, {SYMBOLIC: sd, AUTOGRAD: ad, FD: f}, abs(ad - f), sd,
                        float(along.bound_a[j] + along.bf[j]), k=p.k, direction=j))
                    findings.summary.append(f"{self.name}: {FD} is the odd one out along "
                                            f"direction {j}; symbolic and autograd agree")
            elif side_s != side_a:
                votes.append(AUTOGRAD if side_s else SYMBOLIC)
        return votes
