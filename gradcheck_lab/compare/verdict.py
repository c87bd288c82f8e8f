"""The comparison of one point's oracle results: each check a function of the results and
the tolerance rule, the verdict their merge."""

from __future__ import annotations

import numpy as np

from gradcheck_lab.compare.bundle import OracleResults
from gradcheck_lab.compare.contract import (
    compare_gradient_types,
    compare_in_place,
    compare_reruns,
    rerun_rule,
)
from gradcheck_lab.compare.findings import FD_INCONCLUSIVE, FD_SAFETY, Findings, Verdict, count_text
from gradcheck_lab.compare.gradients import FdTally, compare_gradients
from gradcheck_lab.compare.others import compare_others
from gradcheck_lab.compare.tolerances import ToleranceRule
from gradcheck_lab.compare.values import compare_expectation, compare_values, value_gap
from gradcheck_lab.subject.probes import describe_probes, independent


def compare(results: OracleResults, rule: ToleranceRule,
            value_rule: ToleranceRule | None = None) -> Verdict:
    """Gradients, forward values, the function's contract (in-place writes, reruns, gradient
    types) and every ``expect`` entry; a verdict that fails where any of them found a
    failure. ``value_rule``: the forward values' own rule, when the impl's forward computes
    more coarsely than its gradients (default: ``rule``). Returns data, never raises for a
    disagreement."""
    return judged(results, rule, value_rule)[0]


def judged(results: OracleResults, rule: ToleranceRule, value_rule: ToleranceRule | None = None
           ) -> tuple[Verdict, dict[str, np.ndarray]]:
    """``compare``, and per input the elements where nobody could be named the odd one out
    (what a sharper finite difference should look at again)."""
    value_rule = value_rule or rule
    if results.symbolic is None:
        return _judged_two_way(results, rule), {}
    gap = value_gap(results, value_rule)
    impl_differs_from_spec = results.case.impl is not None and gap.differ.size > 0
    gradients, tally = compare_gradients(results, rule, impl_differs_from_spec)
    found = Findings(notes=[*results.symbolic.notes, *results.autograd.notes,
                            *(results.finite_differences.notes
                              if results.finite_differences else ())])
    for findings in (gradients, compare_others(results, rule), compare_values(results, gap),
                     compare_in_place(results), compare_reruns(results, rule),
                     compare_gradient_types(results),
                     *(compare_expectation(results, rule, expectation)
                       for expectation in results.case.expectations)):
        found.extend(findings)
    found.notes.extend(_precision_notes(results))
    found.notes.extend(_domain_notes(results, tally))
    found.notes.extend(_finite_difference_notes(results, tally))
    status = "fail" if found.mismatches or found.summary else "pass"
    message = "; ".join(found.summary) if status == "fail" else _pass_message(results, tally)
    if status == "pass" and _all_outside(results, tally):
        status, message = "skip", _outside_message(results)
    verdict = Verdict(status, message, found.mismatches, found.notes,
                      {**_counts(results), **found.counts}, _tolerance(results, rule, tally),
                      found.diagnoses, joint_unsettled=tally.joint_unsettled)
    return verdict, {name: np.asarray(flats, dtype=np.int64)
                     for name, flats in tally.undecided.items()}


def _judged_two_way(results: OracleResults, rule: ToleranceRule) -> Verdict:
    """The verdict without the symbolic oracle: autograd against finite differences, and
    the function's contract (in-place writes, reruns, gradient types) as usual."""
    from gradcheck_lab.compare.two_way import compare_two_way

    gradients, tally = compare_two_way(results, rule)
    fd = results.finite_differences
    found = Findings(notes=[f"the symbolic oracle did not run: {results.missing}; autograd "
                            "is checked against finite differences alone",
                            *results.autograd.notes, *(fd.notes if fd else ())])
    for findings in (gradients, compare_others(results, rule), compare_in_place(results),
                     compare_reruns(results, rule), compare_gradient_types(results)):
        found.extend(findings)
    found.notes.extend(_precision_notes(results))
    if tally.inconclusive:
        found.notes.append(f"finite differences were inconclusive at {tally.inconclusive} "
                           f"comparison(s): {_reasons(results, tally)}")
    status = "fail" if found.mismatches or found.summary else "pass"
    if status == "fail":
        message = "; ".join(found.summary)
    else:
        compared = (fd.compared * len(independent(results.probes)) if fd else 0)
        message = (f"autograd agrees with finite differences on "
                   f"{count_text(compared - tally.inconclusive)}"
                   + (f", inconclusive on {tally.inconclusive}" if tally.inconclusive else "")
                   + " (two oracles: no symbolic spec)")
    return Verdict(status, message, found.mismatches, found.notes,
                   {**_counts(results), **found.counts}, _tolerance(results, rule, tally),
                   found.diagnoses)


def _precision_notes(results: OracleResults) -> list[str]:
    """What the measured precision of an impl is, when it is coarser than float64, and what
    that changed."""
    precision, dtype = results.precision, results.point.dtype
    if precision.dtype == "float64":
        return []
    if not precision.coarser_than(dtype):
        return [f"the impl computes at {precision.describe()}, as its {dtype} inputs: finite "
                f"differences (called in float64) step {precision.relative_step:.2g}·max(1,|x|) "
                "with that round-off in their error bars"]
    return [f"the impl computes at {precision.describe()}, coarser than its {dtype} inputs: "
            f"compared at {precision.dtype} precision (the tolerance of {precision.dtype}, and "
            f"finite differences with a step of {precision.relative_step:.2g}·max(1,|x|) and "
            "that round-off in their error bars)"]


def _all_outside(results: OracleResults, tally: FdTally) -> bool:
    """Every differentiated element lies outside the domain: nothing was compared."""
    return all(len(tally.outside.get(spec.name, ())) == spec.size
               for spec in results.case.differentiable_inputs)


def _outside_message(results: OracleResults) -> str:
    where = "; ".join(results.three_way.domain) or "the gradient is not finite anywhere"
    return (f"{where}: every gradient element is nan or infinite there, for symbolic and "
            "autograd alike, so nothing can be compared")


def _domain_notes(results: OracleResults, tally: FdTally) -> list[str]:
    if not tally.outside:
        return []
    counted = ", ".join(f"{len(flats)} of {name}" for name, flats in tally.outside.items())
    where = "; ".join(results.three_way.domain) or "where the gradient is not finite"
    return [f"{where}: symbolic and autograd give the same nan or infinity at {counted} "
            "gradient element(s), not compared as numbers (autograd must agree in kind there, "
            "and does)"]


def _finite_difference_notes(results: OracleResults, tally: FdTally) -> list[str]:
    notes = []
    stops = results.spec.stops
    if tally.fd_alone and stops:
        notes.append(
            f"finite differences disagree at {tally.fd_alone} comparison(s) where symbolic "
            f"and autograd agree: the forward stops the gradient at {'; '.join(stops[:3])}"
            f"{' and more' if len(stops) > 3 else ''}, which both follow, and the finite "
            "differences, which see the whole function, do not; not counted against it")
    elif tally.fd_alone and tally.flips:
        notes.append(
            f"finite differences disagree at {tally.fd_alone} comparison(s) where symbolic "
            f"and autograd agree: {tally.flips} of the spec's conditions change within one "
            "finite-difference step (a threshold or branch computed from the input), so the "
            "differences straddle a branch the gradients are taken on; not counted against "
            "the verdict")
    elif tally.fd_alone:
        notes.append(
            f"finite differences disagree at {tally.fd_alone} comparison(s) where symbolic "
            "and autograd agree; with no impl the function differenced is the spec itself, "
            "so that is the differences' own error (a step too large for the function's "
            "scale, as for sin at 1e9), not counted against the verdict")
    if tally.inconclusive:
        notes.append(f"finite differences were inconclusive at {tally.inconclusive} "
                     f"comparison(s): {_reasons(results, tally)}; the verdict there rests on "
                     "symbolic vs autograd")
    return notes


def _reasons(results: OracleResults, tally: FdTally) -> str:
    kinked = results.symbolic.kinked_ops if results.symbolic is not None else ()
    said = {
        "ill-conditioned": (f"their error bar exceeds {FD_INCONCLUSIVE:g} of the gradient's "
                            "scale (ill-conditioned differences"
                            + (f", or steps that straddle a kink of {', '.join(kinked)})"
                               if kinked else ")")),
        "zero gradient": "the gradient is exactly 0, so no error bar is small relative to it",
        "wider than the gap": ("their error bar is wider than the gap between symbolic and "
                               "autograd"),
        "not finite": "their estimate is not finite",
    }
    parts = [(count, said[reason]) for reason, count in tally.reasons.items() if count]
    if len(parts) == 1:
        return parts[0][1]
    return "; ".join(f"at {count}, {text}" for count, text in parts)


def _pass_message(results: OracleResults, tally: FdTally) -> str:
    elements = sum(spec.size for spec in results.case.differentiable_inputs)
    outside = sum(len(flats) for flats in tally.outside.values())
    fd = results.finite_differences
    text = f" ({outside} outside the domain, not compared)" if outside else ""
    if fd is not None:
        confirmed = fd.compared * len(independent(results.probes)) - (
            tally.inconclusive + tally.fd_alone + tally.not_numbers)
        text += f"; finite differences agree on {confirmed}"
        if fd.joint is not None:
            text += " (directions over all inputs at once)"
        if tally.inconclusive:
            text += f", inconclusive on {tally.inconclusive}"
        if tally.fd_alone:
            text += f", are off on their own on {tally.fd_alone} (see notes)"
    return f"{count_text(elements - outside)} agree, symbolic vs autograd{text}"


def _counts(results: OracleResults) -> dict[str, int]:
    """What was compared: per independent cotangent (a scalar output's second cotangent, a
    multiple of the first, checks grad_output and is counted in ``probes`` only)."""
    elements = sum(spec.size for spec in results.case.differentiable_inputs)
    fd = results.finite_differences
    rows = len(independent(results.probes))
    counts = {
        "gradient_elements": elements,
        "symbolic_vs_autograd": elements * rows if results.symbolic is not None else 0,
        "finite_difference": fd.compared * rows if fd else 0,
        "probes": len(results.probes),
    }
    if fd is not None:
        counts["finite_difference_evaluations"] = fd.evaluations
    return counts


def _tolerance(results: OracleResults, rule: ToleranceRule, tally: FdTally) -> dict[str, object]:
    return {
        # How close a pass came: the worst agreeing element's error over its allowed error.
        "margin": float(f"{tally.margin:.3g}"),
        "margin_at": tally.margin_at,
        "rtol": rule.rtol,
        "atol": rule.atol if rule.atol is not None else tally.largest_atol,
        "rule": rule.describe(),
        "symbolic": results.symbolic_rule.describe(),
        "finite_difference": f"per-element error bar from steps h and 2h, ×{FD_SAFETY:g}",
        "probes": describe_probes(results.probes),
        "nondeterminism": rerun_rule(results),
        "precision": (results.precision.describe() if results.case.impl is not None
                      else "float64 (the spec lowered to torch by gradcheck-lab, not measured)"),
    }
