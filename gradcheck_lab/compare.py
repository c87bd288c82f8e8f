"""Compare the oracles' gradients, forward values and ``expect`` entries. Returns data.

Symbolic vs autograd is compared on every element. Finite differences arbitrate: where the
first two disagree, the one that finite differences side with is right and the other is the
odd one out. Where symbolic and autograd agree but finite differences disagree beyond their
own error bar, finite differences are the odd one out (the impl's forward may not compute the
function its backward differentiates). Nothing here raises for a disagreement or prints.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from gradcheck_lab.casefile import Case
from gradcheck_lab.ops import OPS
from gradcheck_lab.oracles.base import (
    FiniteDifferences,
    Gradients,
    Probe,
    describe_probes,
    probe_label,
)
from gradcheck_lab.oracles.symbolic import METHOD_EXACT
from gradcheck_lab.points import Point
from gradcheck_lab.results import Mismatch
from gradcheck_lab.tolerances import ToleranceRule, gradient_scale, symbolic_rule

WORST_PER_GROUP = 5
# Finite-difference error bars are estimates: allow twice the estimate before they count.
FD_SAFETY = 2.0
# A finite-difference error bar wider than this fraction of the gradient's scale cannot
# confirm anything useful: such elements are reported as inconclusive.
FD_INCONCLUSIVE = 1e-3
SYMBOLIC, AUTOGRAD, FD, EXPECT = "symbolic", "autograd", "finite_difference", "expect"
_UNDECIDED = "undecided"  # no finite difference at this element: the input's majority decides


@dataclass
class Verdict:
    status: str
    message: str
    mismatches: list[Mismatch] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    tolerance: dict[str, object] = field(default_factory=dict)


@dataclass
class Findings:
    """What a check beside the gradient comparison found (forward mode, second order, a second
    device, a training step), to fold into the case's one verdict with ``extend``."""

    mismatches: list[Mismatch] = field(default_factory=list)
    summary: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)


def extend(verdict: Verdict, findings: Findings) -> None:
    """Fold findings into the verdict: their mismatches and counts, and a failure with their
    summary when they have one."""
    verdict.mismatches.extend(findings.mismatches)
    for key, value in findings.counts.items():
        verdict.counts[key] = verdict.counts.get(key, 0) + value
    if not findings.summary:
        return
    summary = "; ".join(findings.summary)
    verdict.message = summary if verdict.status == "pass" else f"{verdict.message}; {summary}"
    verdict.status = "fail"


def compare(case: Case, point: Point, probes: tuple[Probe, ...], symbolic: Gradients,
            autograd: Gradients, fd: FiniteDifferences | None,
            rule: ToleranceRule) -> Verdict:
    comparison = _Comparison(case, point, probes, symbolic, autograd, fd, rule)
    return comparison.run()


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
    for index, verdict in verdicts:
        counts.update(verdict.counts)
        mismatches.extend(dataclasses.replace(m, point=index) for m in verdict.mismatches)
        notes.extend(note for note in verdict.notes if note not in notes)
    counts["points"] = len(verdicts)
    if failing:
        message = "; ".join(f"point {index}: {v.message}" for index, v in failing)
    else:
        message = f"{first.message} (at point 0; {len(verdicts)} points agree)"
    return Verdict("fail" if failing else "pass", message, mismatches, notes, dict(counts),
                   first.tolerance)


def compare_devices(reference: Gradients, other: Gradients, rule: ToleranceRule,
                    devices: tuple[str, str], shapes: dict[str, tuple[int, ...]],
                    terms: tuple[dict[str, np.ndarray], ...] = ()) -> list[Mismatch]:
    """Autograd on two devices (cpu and cuda) must agree within the dtype's tolerance, a classic
    source of kernel bugs. ``terms``: the symbolic oracle's term magnitudes, per probe. The
    worst elements per input, as mismatches of check "device"."""
    found: list[Mismatch] = []
    labels = (f"autograd@{devices[0]}", f"autograd@{devices[1]}")
    for name, shape in shapes.items():
        rows = []
        for k, (ref_grads, other_grads) in enumerate(zip(reference.per_probe, other.per_probe,
                                                         strict=True)):
            r, o = ref_grads[name].reshape(-1), other_grads[name].reshape(-1)
            scale = gradient_scale(r)
            bound = rule.bound(r, scale, terms[k][name].reshape(-1) if terms else 0.0)
            with np.errstate(all="ignore"):
                errors = np.abs(r - o)
            for flat in np.flatnonzero(~(agree(r, o, bound) | (r == o))):
                error = float(errors[flat]) if np.isfinite(errors[flat]) else float("inf")
                rows.append((error, k, int(flat), float(r[flat]), float(o[flat]),
                             float(bound[flat])))
        rows.sort(key=lambda row: -row[0])
        elements = len({row[2] for row in rows})
        for error, k, flat, r_value, o_value, allowed in rows[:WORST_PER_GROUP]:
            index = tuple(int(i) for i in np.unravel_index(flat, shape)) if shape else (0,)
            found.append(Mismatch(input=name, oracles=labels, odd_oracle=None,
                                  values={labels[0]: r_value, labels[1]: o_value},
                                  abs_err=error, rel_err=relative_error(error, r_value),
                                  allowed=allowed, check="device", index=index, elements=elements,
                                  probe=None if len(reference.per_probe) == 1 else f"probe {k}"))
    return found


def relative_error(abs_err: float, reference: float) -> float:
    if reference != 0 and np.isfinite(reference):
        return abs_err / abs(reference)
    return 0.0 if abs_err == 0 else float("inf")


def worst_first(errors: np.ndarray, where: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The flat indices ``where``, largest error first (ties in index order, NaN as the
    largest), and the errors with NaN replaced by inf."""
    errors = np.where(np.isnan(errors), np.inf, errors)
    return where[np.argsort(-errors[where], kind="stable")], errors


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


def agree(a: np.ndarray, b: np.ndarray, bound: np.ndarray) -> np.ndarray:
    """Elementwise agreement; NaN or inf on either side never agrees."""
    with np.errstate(all="ignore"):
        close = np.abs(a - b) <= bound
    return close & np.isfinite(a) & np.isfinite(b)


class _Comparison:
    def __init__(self, case: Case, point: Point, probes: tuple[Probe, ...],
                 symbolic: Gradients, autograd: Gradients, fd: FiniteDifferences | None,
                 rule: ToleranceRule) -> None:
        self.case = case
        self.point = point
        self.probes = probes
        self.sym = symbolic
        self.ag = autograd
        self.fd = fd
        self.rule = rule
        self.sym_rule = symbolic_rule(symbolic.method == METHOD_EXACT)
        self.mismatches: list[Mismatch] = []
        self.summary: list[str] = []
        self.notes: list[str] = [*symbolic.notes, *autograd.notes, *(fd.notes if fd else ())]
        self.inconclusive = 0
        self.largest_atol = 0.0
        self.impl_differs_from_spec = False
        # Spec-only cases: finite differences against symbolic and autograd agreeing. With no
        # impl the forward is the spec itself, so that is the differences' own error.
        self.fd_alone = 0

    def run(self) -> Verdict:
        self.forward_values = self.value_disagreements()
        self.impl_differs_from_spec = (self.case.impl is not None
                                       and self.forward_values[3].size > 0)
        for spec in self.case.differentiable_inputs:
            self.gradient(spec.name)
        self.values()
        self.modified_inputs()
        self.nondeterminism()
        self.summary.extend(self.ag.contract_problems)
        for expectation in self.case.expectations:
            self.expectation(expectation.key, expectation.target, expectation)
        if self.fd_alone:
            self.notes.append(
                f"finite differences disagree at {self.fd_alone} comparison(s) where symbolic "
                "and autograd agree; with no impl the function differenced is the spec itself, "
                "so that is the differences' own error (a step too large for the function's "
                "scale, as for sin at 1e9), not counted against the verdict")
        if self.inconclusive:
            self.notes.append(
                f"finite differences were inconclusive at {self.inconclusive} comparison(s): "
                f"their error bar exceeds {FD_INCONCLUSIVE:g} of the gradient's scale "
                f"({self.why_inconclusive()}); the verdict there rests on symbolic vs autograd")
        status = "fail" if self.mismatches or self.summary else "pass"
        return Verdict(status, self.message(status), self.mismatches, self.notes, self.counts(),
                       self.tolerance())

    def why_inconclusive(self) -> str:
        kinked = sorted({node.op for node in self.case.program.nodes
                         if node.op in OPS and OPS[node.op].kinks is not None})
        if kinked:
            return (f"ill-conditioned differences, or steps that straddle a kink of "
                    f"{', '.join(kinked)}")
        return "ill-conditioned differences"

    # -- gradients ------------------------------------------------------------------------
    def terms(self, name: str, k: int) -> np.ndarray | float:
        """Sum of |terms| behind each gradient element (0 where the oracle gave none)."""
        if not self.sym.term_magnitudes:
            return 0.0
        return self.sym.term_magnitudes[k][name].reshape(-1)

    def gradient(self, name: str) -> None:
        """Symbolic vs autograd on every element; finite differences decide the odd one."""
        disagreements: list[tuple[float, int, int, str | None]] = []  # err, probe, element, odd
        odd_votes: Counter[str] = Counter()
        fd_odd_elements: set[int] = set()
        for k in range(len(self.probes)):
            s = self.sym.per_probe[k][name].reshape(-1)
            a = self.ag.per_probe[k][name].reshape(-1)
            scale, terms = gradient_scale(s), self.terms(name, k)
            self.largest_atol = max(self.largest_atol,
                                    float(np.max(self.rule.absolute(scale, terms))))
            bound_s = self.sym_rule.bound(s, scale, terms)
            bound_a = self.rule.bound(s, scale, terms)
            agree_sa = agree(s, a, bound_s + bound_a)
            fd_value, fd_bound, fd_at = self.fd_partials(name, k)
            odd_here: dict[int, str | None] = {}
            for position, flat in enumerate(fd_at):
                f, bf = fd_value[position], fd_bound[position]
                nan_beside_number = np.isfinite(f) and np.isnan(s[flat]) != np.isnan(a[flat])
                if not nan_beside_number and (not (np.isfinite(f) and np.isfinite(bf))
                                              or bf > FD_INCONCLUSIVE * (abs(s[flat]) + scale)):
                    self.inconclusive += 1
                    continue
                if not agree_sa[flat]:
                    odd_here[flat] = odd_by_difference(s[flat], a[flat], f, bound_s[flat],
                                                       bound_a[flat], bf)
                    continue
                side_s = bool(agree(s[flat], f, bound_s[flat] + bf))
                side_a = bool(agree(a[flat], f, bound_a[flat] + bf))
                if not side_s and not side_a:
                    if self.case.impl is None:
                        self.fd_alone += 1
                        continue
                    fd_odd_elements.add(int(flat))
                    self.add(name, (AUTOGRAD, FD), FD, flat, k,
                             {SYMBOLIC: s[flat], AUTOGRAD: a[flat], FD: f},
                             abs(a[flat] - f), s[flat], bound_a[flat] + bf)
            odd_votes.update(odd for odd in odd_here.values() if odd is not None)
            odd_votes.update(self.directional_votes(name, k, s, a, bound_s, bound_a, scale))
            with np.errstate(all="ignore"):
                errors = np.abs(s - a)
            for flat in np.flatnonzero(~agree_sa):
                error = float(errors[flat]) if np.isfinite(errors[flat]) else float("inf")
                disagreements.append((error, k, int(flat), odd_here.get(int(flat), _UNDECIDED)))
        group_odd = odd_votes.most_common(1)[0][0] if odd_votes else None
        if self.impl_differs_from_spec:
            # Finite differences differentiate the impl, which computes another function:
            # siding with autograd there says nothing against the spec's gradient.
            group_odd = None if group_odd == SYMBOLIC else group_odd
            disagreements = [(e, k, flat, None if odd == SYMBOLIC else odd)
                             for e, k, flat, odd in disagreements]
        disagreements.sort(key=lambda item: -item[0])
        elements = len({flat for _, _, flat, _ in disagreements})
        for error, k, flat, odd in disagreements[:WORST_PER_GROUP]:
            s = self.sym.per_probe[k][name].reshape(-1)
            a = self.ag.per_probe[k][name].reshape(-1)
            scale, terms = gradient_scale(s), self.terms(name, k)
            terms = terms[flat] if np.ndim(terms) else terms
            values = {SYMBOLIC: s[flat], AUTOGRAD: a[flat]}
            fd_value, _, fd_at = self.fd_partials(name, k)
            at = np.flatnonzero(fd_at == flat)
            if at.size:
                values[FD] = fd_value[at[0]]
            allowed = (self.sym_rule.bound(s[flat], scale, terms)
                       + self.rule.bound(s[flat], scale, terms))
            self.add(name, (SYMBOLIC, AUTOGRAD), group_odd if odd is _UNDECIDED else odd, flat,
                     k, values, error, s[flat], float(allowed), elements=elements)
        if disagreements:
            self.summary.append(self.describe_odd(name, group_odd, elements, disagreements))
        if fd_odd_elements:
            self.summary.append(
                f"{name}: {FD} is the odd one out ({count_text(len(fd_odd_elements))}); symbolic "
                "and autograd agree, so the function's forward may not match its backward")

    def fd_partials(self, name: str, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if self.fd is None or name not in self.fd.per_input:
            return np.zeros(0), np.zeros(0), np.zeros(0, dtype=np.int64)
        estimates = self.fd.per_input[name]
        return (estimates.partials[k], FD_SAFETY * estimates.partial_errors[k],
                estimates.indices)

    def directional_votes(self, name: str, k: int, s: np.ndarray, a: np.ndarray,
                          bound_s: np.ndarray, bound_a: np.ndarray, scale: float) -> list[str]:
        """Compare <d, S> and <d, A> with the finite difference along each direction d."""
        if self.fd is None or name not in self.fd.per_input:
            return []
        estimates = self.fd.per_input[name]
        votes = []
        for j, direction in enumerate(estimates.directions):
            d = direction.reshape(-1)
            f = estimates.directional[k, j]
            bf = FD_SAFETY * estimates.directional_errors[k, j]
            sd, ad = float(d @ s), float(d @ a)
            bsd, bad = float(np.abs(d) @ bound_s), float(np.abs(d) @ bound_a)
            if not (np.isfinite(f) and np.isfinite(bf)) or bf > FD_INCONCLUSIVE * (
                    abs(sd) + scale * float(np.abs(d).sum())):
                self.inconclusive += 1
                continue
            side_s, side_a = bool(agree(sd, f, bsd + bf)), bool(agree(ad, f, bad + bf))
            if agree(sd, ad, bsd + bad):
                if not side_s and not side_a and self.case.impl is None:
                    self.fd_alone += 1
                elif not side_s and not side_a:
                    self.add(name, (AUTOGRAD, FD), FD, None, k,
                             {SYMBOLIC: sd, AUTOGRAD: ad, FD: f}, abs(ad - f), sd, bad + bf,
                             direction=j)
                    self.summary.append(f"{name}: {FD} is the odd one out along direction {j}; "
                                        "symbolic and autograd agree")
            elif side_s != side_a:
                votes.append(AUTOGRAD if side_s else SYMBOLIC)
        return votes

    def describe_odd(self, name: str, odd: str | None, count: int,
                     disagreements: list[tuple[float, int, int, str | None]]) -> str:
        both_infinite = all(
            not np.isfinite(self.sym.per_probe[k][name].reshape(-1)[flat])
            and not np.isfinite(self.ag.per_probe[k][name].reshape(-1)[flat])
            for _, k, flat, _ in disagreements)
        if both_infinite:
            return (f"{name}: the gradient is not finite ({count_text(count)}); symbolic and "
                    "autograd both give inf or nan there: at this point the function is not "
                    "differentiable or its values overflow float64")
        if odd is not None:
            return f"{name}: {odd} is the odd one out ({count_text(count)})"
        if self.impl_differs_from_spec:
            return (f"{name}: symbolic and autograd disagree ({count_text(count)}); the impl's "
                    "forward is not the spec's (see value), so finite differences of the impl "
                    "cannot tell which gradient is right")
        return (f"{name}: symbolic and autograd disagree ({count_text(count)}); finite differences "
                "could not tell which is right")

    # -- the function under test's own contract -------------------------------------------
    def modified_inputs(self) -> None:
        """An impl that writes into its inputs corrupts its callers' tensors."""
        for name, (before, after) in self.ag.modified_inputs.items():
            before, after = before.reshape(-1), after.reshape(-1)
            with np.errstate(all="ignore"):
                errors = np.where(before == after, 0.0, np.abs(after - before))
            changed, errors = worst_first(errors, np.flatnonzero(~(errors <= 0)))
            for flat in changed[:WORST_PER_GROUP]:
                self.add(name, ("before", "after"), AUTOGRAD, flat, None,
                         {"before": before[flat], "after": after[flat]},
                         errors[flat], before[flat], 0.0, check="in_place",
                         elements=len(changed))
            self.summary.append(f"{name}: the function under test modifies this input in place "
                                f"({count_text(len(changed))} changed)")

    def nondeterminism(self) -> None:
        """The first probe's gradients, computed again through the same graph and on a fresh
        one, must be the same: exactly on cpu (its kernels are deterministic), within the
        dtype's tolerance on cuda, or within the case's ``nondet_tol``."""
        for spec in self.case.differentiable_inputs:
            name = spec.name
            first = self.ag.per_probe[0][name].reshape(-1)
            if self.case.nondet_tol is not None:
                bound = np.full(first.shape, self.case.nondet_tol)
            elif self.ag.device.startswith("cuda"):
                bound = self.rule.bound(first, gradient_scale(first), self.terms(name, 0))
            else:
                bound = np.zeros(first.shape)
            for label, rerun in self.ag.reruns.items():
                again = rerun[name].reshape(-1)
                with np.errstate(all="ignore"):
                    errors = np.abs(first - again)
                same = ((first == again) | (np.isnan(first) & np.isnan(again))
                        | (errors <= bound))
                differ = np.flatnonzero(~same)
                if not differ.size:
                    continue
                worst, errors = worst_first(errors, differ)
                for flat in worst[:WORST_PER_GROUP]:
                    self.add(name, (AUTOGRAD, label), AUTOGRAD, flat, 0,
                             {AUTOGRAD: first[flat], label: again[flat]}, errors[flat],
                             first[flat], bound[flat], check="nondeterministic",
                             elements=len(differ))
                self.summary.append(
                    f"{name}: nondeterministic backward: run {label.removeprefix('again, ')} "
                    f"it gives other gradients ({count_text(len(differ))}, by up to "
                    f"{float(errors[worst[0]]):.3g})")
                break  # one rerun that differs says it

    # -- forward values and hand-worked answers -------------------------------------------
    def value_disagreements(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Spec and function-under-test values, the bound, and the flat indices that differ."""
        s = np.asarray(self.sym.value, dtype=np.float64).reshape(-1)
        a = np.asarray(self.ag.value, dtype=np.float64).reshape(-1)
        scale = gradient_scale(s)
        terms = self.sym.term_scale
        bound = self.sym_rule.bound(s, scale, terms) + self.rule.bound(s, scale, terms)
        # The same infinity on both sides is the same value (the gradient check reports it).
        return s, a, bound, np.flatnonzero(~(agree(s, a, bound) | (s == a)))

    def values(self) -> None:
        s, a, bound, bad = self.forward_values
        if not bad.size:
            return
        fd_value = None if self.fd is None else np.asarray(self.fd.value).reshape(-1)
        for flat in bad[:WORST_PER_GROUP]:
            values = {SYMBOLIC: s[flat], AUTOGRAD: a[flat]}
            if fd_value is not None:
                values[FD] = fd_value[flat]
            with np.errstate(all="ignore"):
                error = abs(s[flat] - a[flat])
            self.add(None, (SYMBOLIC, AUTOGRAD), None, flat, None, values,
                     error, s[flat], bound[flat], check="value",
                     elements=len(bad), shape=np.shape(self.sym.value))
        flat = bad[0]
        where = "" if np.ndim(self.sym.value) == 0 else f" ({count_text(len(bad))})"
        self.summary.append(
            f"value: the function under test returns {a[flat]:.10g}, the spec gives "
            f"{s[flat]:.10g}{where}")

    def expectation(self, key: str, target: str, expectation: object) -> None:
        literal = getattr(expectation, "literal", None)
        if literal is not None:
            expected = np.vectorize(float, otypes=[np.float64])(literal)
        else:
            expected = np.asarray(self.sym.roots[key], dtype=np.float64)
        if target == "value":
            s, a, shape = self.sym.value, self.ag.value, np.shape(self.sym.value)
            scale = gradient_scale(np.asarray(s, dtype=np.float64).reshape(-1))
            terms: np.ndarray | float = self.sym.term_scale
        else:
            s = self.sym.per_probe[0][target]
            a = self.ag.per_probe[0][target]
            shape = np.shape(s)
            scale = gradient_scale(s.reshape(-1))
            terms = self.sym.term_magnitudes[0][target] if self.sym.term_magnitudes else 0.0
        e = np.broadcast_to(expected, shape).reshape(-1)
        s = np.asarray(s, dtype=np.float64).reshape(-1)
        a = np.asarray(a, dtype=np.float64).reshape(-1)
        own = self.sym_rule.bound(e, scale)  # a hand-worked number is taken as exact
        terms = np.broadcast_to(np.asarray(terms, dtype=np.float64), shape).reshape(-1)
        with_s = agree(e, s, own + self.sym_rule.bound(s, scale, terms))
        with_a = agree(e, a, own + self.rule.bound(s, scale, terms))
        bad = np.flatnonzero(~(with_s & with_a))
        if not bad.size:
            return
        for flat in bad[:WORST_PER_GROUP]:
            off_s, off_a = not with_s[flat], not with_a[flat]
            odd = EXPECT if off_s and off_a else (AUTOGRAD if off_a else SYMBOLIC)
            other = SYMBOLIC if off_s else AUTOGRAD
            other_value = s[flat] if off_s else a[flat]
            other_rule = self.sym_rule if off_s else self.rule
            allowed = own[flat] + other_rule.bound(s[flat], scale, terms[flat])
            self.add(None if target == "value" else target, (EXPECT, other), odd, flat, None,
                     {EXPECT: e[flat], SYMBOLIC: s[flat], AUTOGRAD: a[flat]},
                     abs(e[flat] - other_value), e[flat], float(allowed), check="expect",
                     elements=len(bad), shape=shape)
        first = bad[0]
        if not with_s[first] and not with_a[first]:
            self.summary.append(f"{key}: the hand-worked answer {e[first]:.10g} disagrees with "
                                f"symbolic and autograd ({s[first]:.10g})")
        else:
            self.summary.append(f"{key}: the hand-worked answer {e[first]:.10g} disagrees with "
                                f"{SYMBOLIC if not with_s[first] else AUTOGRAD}")

    # -- recording ------------------------------------------------------------------------
    def add(self, name: str | None, oracles: tuple[str, str], odd: str | None, flat: int | None,
            k: int | None, values: dict[str, float], abs_err: float, reference: float,
            allowed: float, *, check: str = "gradient", elements: int | None = 1,
            direction: int | None = None, shape: tuple[int, ...] | None = None) -> None:
        index = None
        if flat is not None:
            if shape is None:
                shape = self.point.values[name].shape if name is not None else ()
            # A scalar is element [0], as the JSON contract's example writes it.
            index = tuple(int(i) for i in np.unravel_index(int(flat), shape)) if shape else (0,)
        probe = None if k is None else probe_label(self.probes, k)
        self.mismatches.append(Mismatch(
            input=name, oracles=oracles, odd_oracle=odd,
            values={key: float(v) for key, v in values.items()},
            abs_err=float(abs_err), rel_err=relative_error(float(abs_err), float(reference)),
            allowed=float(allowed), check=check, index=index, direction=direction, probe=probe,
            elements=elements if elements is not None else 1,
        ))

    def message(self, status: str) -> str:
        if status == "fail":
            return "; ".join(self.summary)
        elements = sum(spec.size for spec in self.case.differentiable_inputs)
        fd = ""
        if self.fd is not None:
            confirmed = self.fd.compared - self.inconclusive - self.fd_alone
            fd = f"; finite differences agree on {confirmed}"
            if self.inconclusive:
                fd += f", inconclusive on {self.inconclusive}"
            if self.fd_alone:
                fd += f", are off on their own on {self.fd_alone} (see notes)"
        return f"{count_text(elements)} agree, symbolic vs autograd{fd}"

    def counts(self) -> dict[str, int]:
        elements = sum(spec.size for spec in self.case.differentiable_inputs)
        counts = {
            "gradient_elements": elements,
            "symbolic_vs_autograd": elements * len(self.probes),
            "finite_difference": self.fd.compared if self.fd else 0,
            "probes": len(self.probes),
        }
        if self.fd is not None:
            counts["finite_difference_evaluations"] = self.fd.evaluations
        return counts

    def tolerance(self) -> dict[str, object]:
        return {
            "rtol": self.rule.rtol,
            "atol": self.rule.atol if self.rule.atol is not None else self.largest_atol,
            "rule": self.rule.describe(),
            "symbolic": self.sym_rule.describe(),
            "finite_difference": f"per-element error bar from steps h and 2h, ×{FD_SAFETY:g}",
            "probes": describe_probes(self.probes),
            "nondeterminism": self.nondeterminism_rule(),
        }

    def nondeterminism_rule(self) -> str:
        if self.case.nondet_tol is not None:
            return f"second run within nondet_tol = {self.case.nondet_tol:g}"
        if self.ag.device.startswith("cuda"):
            return "second run within the dtype's tolerance (cuda)"
        return "second run identical (cpu)"


def count_text(n: int) -> str:
    return f"{n} element{'s' if n != 1 else ''}"
