"""Forward values and hand-worked answers: the function under test's output against the
spec's, and each ``expect:`` entry against symbolic and autograd."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from gradcheck_lab.casefile import Expectation
from gradcheck_lab.compare.bundle import OracleResults
from gradcheck_lab.compare.findings import (
    AUTOGRAD,
    EXPECT,
    FD,
    SYMBOLIC,
    Findings,
    agree,
    count_text,
    mismatch,
    same_nonfinite,
    worst,
)
from gradcheck_lab.compare.tolerances import ToleranceRule, gradient_scale


@dataclass(frozen=True)
class ValueGap:
    """Spec (s) and function-under-test (a) values, flat, the bound, and where they differ."""

    s: np.ndarray
    a: np.ndarray
    bound: np.ndarray
    differ: np.ndarray  # flat indices


def value_gap(results: OracleResults, rule: ToleranceRule) -> ValueGap:
    assert results.symbolic is not None  # a three-way comparison: the spec's gradients are in
    s = np.asarray(results.symbolic.value, dtype=np.float64).reshape(-1)
    a = np.asarray(results.autograd.value, dtype=np.float64).reshape(-1)
    scale = gradient_scale(s)
    terms = results.symbolic.term_scale
    bound = results.symbolic_rule.bound(s, scale, terms) + rule.bound(s, scale, terms)
    # The same infinity, or nan, on both sides is the same value: outside the domain alike
    # (the report says where).
    same = agree(s, a, bound) | same_nonfinite(s, a) | rule.flushed(s, a)
    return ValueGap(s, a, bound, np.flatnonzero(~same))


def compare_values(results: OracleResults, gap: ValueGap) -> Findings:
    """The function under test's forward values against the spec's."""
    findings = Findings()
    if not gap.differ.size:
        return findings
    fd = results.finite_differences
    fd_value = None if fd is None else np.asarray(fd.value).reshape(-1)
    shape = results.shape_of(None)
    with np.errstate(all="ignore"):
        errors = np.abs(gap.s - gap.a)
    for flat in worst(gap.differ, lambda flat: errors[flat]):
        values = {SYMBOLIC: gap.s[flat], AUTOGRAD: gap.a[flat]}
        if fd_value is not None:
            values[FD] = fd_value[flat]
        output, within, output_shape = results.output_element(int(flat))
        found = mismatch(None, (SYMBOLIC, AUTOGRAD), None, values, errors[flat], gap.s[flat],
                         gap.bound[flat], check="value", flat=within, shape=output_shape,
                         elements=len(gap.differ))
        findings.mismatches.append(dataclasses.replace(found, output=output))
    flat = gap.differ[0]
    output = results.output_element(int(flat))[0]
    where = "" if not shape else f" ({count_text(len(gap.differ))})"
    if output is not None:
        where = f" in output {output!r}{where}"
    findings.summary.append(
        f"value: the function under test returns {gap.a[flat]:.10g}, the spec gives "
        f"{gap.s[flat]:.10g}{where}")
    return findings


def compare_expectation(results: OracleResults, rule: ToleranceRule,
                        expectation: Expectation) -> Findings:
    """A hand-worked answer against symbolic and autograd: to the digits it was written with
    (a decimal), exactly otherwise; inf, -inf and nan match only themselves. Where symbolic
    and autograd agree with each other, the answer is the odd one out."""
    findings = Findings()
    key, target = expectation.key, expectation.target
    sym, ag = results.symbolic, results.autograd
    assert sym is not None  # a three-way comparison: the spec's gradients are in
    if expectation.literal is not None:
        expected = np.vectorize(float, otypes=[np.float64])(expectation.literal)
    else:
        expected = np.asarray(sym.roots[key], dtype=np.float64)
    if target == "value":
        s, a, shape = sym.value, ag.value, np.shape(sym.value)
        scale = gradient_scale(np.asarray(s, dtype=np.float64).reshape(-1))
        terms: np.ndarray | float = sym.term_scale
    else:
        s, a = sym.per_probe[0][target], ag.per_probe[0][target]
        shape = np.shape(s)
        scale = gradient_scale(s.reshape(-1))
        terms = sym.term_magnitudes[0][target] if sym.term_magnitudes else 0.0
    sym_rule = results.symbolic_rule
    e = np.broadcast_to(expected, shape).reshape(-1)
    s = np.asarray(s, dtype=np.float64).reshape(-1)
    a = np.asarray(a, dtype=np.float64).reshape(-1)
    written = (0.0 if expectation.halfunits is None
               else np.broadcast_to(expectation.halfunits, shape).reshape(-1))
    own = sym_rule.bound(e, scale) + written  # the answer's own precision
    terms = np.broadcast_to(np.asarray(terms, dtype=np.float64), shape).reshape(-1)
    bound_s, bound_a = sym_rule.bound(s, scale, terms), rule.bound(s, scale, terms)
    with_s = agree(e, s, own + bound_s) | same_nonfinite(e, s)
    with_a = agree(e, a, own + bound_a) | same_nonfinite(e, a)
    oracles_agree = agree(s, a, bound_s + bound_a) | same_nonfinite(s, a)
    bad = np.flatnonzero(~(with_s & with_a))
    if not bad.size:
        return findings
    for flat in worst(bad, lambda flat: abs(e[flat] - (s[flat] if not with_s[flat]
                                                       else a[flat]))):
        off_s, off_a = not with_s[flat], not with_a[flat]
        odd = EXPECT if (off_s and off_a) or oracles_agree[flat] else (
            AUTOGRAD if off_a else SYMBOLIC)
        other = SYMBOLIC if off_s else AUTOGRAD
        other_value = s[flat] if off_s else a[flat]
        allowed = own[flat] + (bound_s[flat] if off_s else bound_a[flat])
        with np.errstate(invalid="ignore"):
            error = abs(e[flat] - other_value)
        findings.mismatches.append(mismatch(
            None if target == "value" else target, (EXPECT, other), odd,
            {EXPECT: e[flat], SYMBOLIC: s[flat], AUTOGRAD: a[flat]}, error,
            e[flat], float(allowed), check="expect", flat=int(flat), shape=shape,
            elements=len(bad)))
    first = bad[0]
    if (not with_s[first] and not with_a[first]) or oracles_agree[first]:
        findings.summary.append(f"{key}: the hand-worked answer {e[first]:.10g} disagrees with "
                                f"symbolic and autograd ({s[first]:.10g})")
    else:
        findings.summary.append(f"{key}: the hand-worked answer {e[first]:.10g} disagrees with "
                                f"{SYMBOLIC if not with_s[first] else AUTOGRAD}")
    return findings
