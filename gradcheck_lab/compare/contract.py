"""The function under test's own contract, beside its gradient's values: it leaves its inputs
alone, its backward is a function of its inputs (the same numbers when run again), and its
gradients have their inputs' dtype and device."""

from __future__ import annotations

import numpy as np

from gradcheck_lab.compare.bundle import OracleResults
from gradcheck_lab.compare.findings import (
    AUTOGRAD,
    Findings,
    count_text,
    mismatch,
    worst_first,
)
from gradcheck_lab.compare.findings import WORST_PER_GROUP as TOP
from gradcheck_lab.compare.tolerances import ToleranceRule, gradient_scale
from gradcheck_lab.oracles.autograd import FRESH_GRAPH, SAME_GRAPH


def compare_in_place(results: OracleResults) -> Findings:
    """An impl that writes into its inputs corrupts its callers' tensors."""
    findings = Findings()
    for name, (before, after) in results.autograd.modified_inputs.items():
        before, after = before.reshape(-1), after.reshape(-1)
        with np.errstate(all="ignore"):
            errors = np.where(before == after, 0.0, np.abs(after - before))
        changed, errors = worst_first(errors, np.flatnonzero(~(errors <= 0)))
        for flat in changed[:TOP]:
            findings.mismatches.append(mismatch(
                name, ("before", "after"), AUTOGRAD,
                {"before": before[flat], "after": after[flat]}, errors[flat], before[flat],
                0.0, check="in_place", flat=int(flat), shape=results.shape_of(name),
                elements=len(changed)))
        findings.summary.append(f"{name}: the function under test modifies this input in "
                                f"place ({count_text(len(changed))} changed)")
    return findings


def compare_reruns(results: OracleResults, rule: ToleranceRule) -> Findings:
    """One probe's gradients, computed again through the same graph and on a fresh one, must
    be the same: exactly on cpu (its kernels are deterministic), within the dtype's tolerance
    on cuda, or within the case's ``nondet_tol``."""
    findings = Findings()
    ag = results.autograd
    k = ag.rerun_probe
    for name in results.input_names:
        first = ag.per_probe[k][name].reshape(-1)
        bound = None
        for label, rerun in ag.reruns.items():
            again = rerun[name].reshape(-1)
            if np.array_equal(first, again, equal_nan=True):  # the usual case: one pass
                continue
            if bound is None:
                bound = rerun_bound(results, rule, name, first, k)
            with np.errstate(all="ignore"):
                errors = np.abs(first - again)
            same = ((first == again) | (np.isnan(first) & np.isnan(again))
                    | (errors <= bound))
            differ = np.flatnonzero(~same)
            if not differ.size:
                continue
            ranked, errors = worst_first(errors, differ)
            for flat in ranked[:TOP]:
                findings.mismatches.append(mismatch(
                    name, (AUTOGRAD, label), AUTOGRAD, {AUTOGRAD: first[flat], label: again[flat]},
                    errors[flat], first[flat], bound[flat], check="nondeterministic",
                    flat=int(flat), shape=results.shape_of(name), probes=results.probes, k=k,
                    elements=len(differ)))
            findings.summary.append(
                f"{name}: nondeterministic backward: {_RERUN_SAID[label]} gives other "
                f"gradients ({count_text(len(differ))}, by up to "
                f"{float(errors[ranked[0]]):.3g}){_RERUN_MEANS[label]}")
            break  # one rerun that differs says it
    return findings


_RERUN_SAID = {
    SAME_GRAPH: "a second backward through the same graph",
    FRESH_GRAPH: "a second forward and backward on fresh inputs",
}
_RERUN_MEANS = {
    SAME_GRAPH: ": the backward is not re-entrant (it keeps state on ctx between calls)",
    FRESH_GRAPH: (": the function keeps state between calls (a module-level buffer, a "
                  "counter) or races"),
}


def rerun_bound(results: OracleResults, rule: ToleranceRule, name: str,
                first: np.ndarray, k: int) -> np.ndarray:
    case = results.case
    if case.nondet_tol is not None:
        return np.full(first.shape, case.nondet_tol)
    if results.autograd.device.startswith("cuda"):
        return rule.bound(first, gradient_scale(first), results.terms(name, k))
    return np.zeros(first.shape)


def rerun_rule(results: OracleResults) -> str:
    """The nondeterminism rule in words, for the report's tolerance."""
    if results.case.nondet_tol is not None:
        return f"second run within nondet_tol = {results.case.nondet_tol:g}"
    if results.autograd.device.startswith("cuda"):
        return "second run within the dtype's tolerance (cuda)"
    return "second run identical (cpu)"


def compare_gradient_types(results: OracleResults) -> Findings:
    """Gradients whose dtype or device is not their input's (found by the autograd oracle)."""
    return Findings(summary=list(results.autograd.contract_problems))
