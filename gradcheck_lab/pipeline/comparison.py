"""The comparison of one point's oracle results, and what sharpens it before the verdict
gives up: the exact oracle in place of a screening sweep that did not pass, finite differences
per input where the joint directions cannot say which input is wrong, more directions, and
sharper differences where nobody could be named odd."""

from __future__ import annotations

import dataclasses

import numpy as np

from gradcheck_lab.casefile import Case
from gradcheck_lab.compare import OracleResults, Verdict, compare
from gradcheck_lab.compare.tolerances import ToleranceRule
from gradcheck_lab.oracles.contract import FiniteDifferences, Given
from gradcheck_lab.pipeline.surrogate import with_surrogates


def compared(case: Case, results: OracleResults, given: Given, rule: ToleranceRule,
             value_rule: ToleranceRule) -> tuple[OracleResults, Verdict]:
    """The comparison. Where a screening sweep does not pass, the exact oracle takes its
    place first (``exact_in_place_of_screen``). Where it fails, finite differences take
    every random direction for the inputs that disagree
    (``finite_difference.more_directions``: votes beyond the screening ones); where they
    could not tell symbolic from autograd, their estimates at those elements are
    sharpened (``finite_difference.refine``); the comparison is made again after each,
    before the verdict gives up."""
    from gradcheck_lab.compare.verdict import judged
    from gradcheck_lab.oracles import finite_difference

    assert given.subject is not None  # compared on a device
    functions = given.subject
    verdict, undecided = judged_without_terms(results, rule, value_rule)
    if verdict.status != "pass" and results.symbolic is not None and (
            results.symbolic.screened):
        results = exact_in_place_of_screen(case, results)
        verdict, undecided = judged(results, rule, value_rule)
    fd = results.finite_differences
    if fd is not None and fd.joint is not None and (verdict.joint_unsettled or any(
            m.check == "gradient" for m in verdict.mismatches)):
        # Joint directions cannot say which input is wrong: per-input ones can.
        results = dataclasses.replace(
            results, finite_differences=per_input_differences(results, given))
        verdict, undecided = judged(results, rule, value_rule)
    fd = results.finite_differences
    if verdict.status != "fail" or fd is None:
        return results, verdict
    contested = {m.input for m in verdict.mismatches
                 if m.check == "gradient" and m.input is not None}
    wider = finite_difference.more_directions(
        functions.reference, results.point, results.probes, fd, contested,
        results.term_scale, results.precision)
    if wider is not fd:
        results = dataclasses.replace(results, finite_differences=wider)
        verdict, undecided = judged(results, rule, value_rule)
    if verdict.status != "fail" or not undecided:
        return results, verdict
    sharper = finite_difference.refine(functions.reference, results.point, results.probes,
                                       wider, undecided, results.precision, results.term_scale)
    results = dataclasses.replace(results, finite_differences=sharper)
    return results, compare(results, rule, value_rule)


def judged_without_terms(results: OracleResults, rule: ToleranceRule,
                         value_rule: ToleranceRule) -> tuple[Verdict, dict[str, np.ndarray]]:
    """``judged``, first without the symbolic oracle's term magnitudes (one more sweep per
    probe): every bound only widens with them (a rounding allowance of 16 ulps of the terms
    an element is summed from, beside rtol × scale), so a pass without them is the pass with
    them. Anything else is judged again with them."""
    from gradcheck_lab.compare.verdict import judged

    symbolic = results.symbolic
    if symbolic is not None and symbolic.term_magnitudes:
        verdict, undecided = judged(dataclasses.replace(results, symbolic=dataclasses.replace(
            symbolic, term_magnitudes=())), rule, value_rule)
        if verdict.status == "pass":
            return verdict, undecided
    return judged(results, rule, value_rule)


def exact_in_place_of_screen(case: Case, results: OracleResults) -> OracleResults:
    """``results`` with the exact oracle in place of the screening sweep; where the exact
    oracle cannot run (sympy's recursion, its own failure), the sweep as such, with its
    float64 bound and a note saying why."""
    from gradcheck_lab.oracles import symbolic

    screen = results.three_way
    try:
        exact = symbolic.gradients(results.spec, results.point, results.probes, "exact")
    except Exception as exc:
        note = (f"symbolic: the rule sweep, not exact elementwise sympy, which failed here "
                f"({type(exc).__name__}: {str(exc)[:200]})")
        return dataclasses.replace(results, symbolic=dataclasses.replace(
            screen, screened=False, method=symbolic.METHOD_SWEEP,
            notes=(*screen.notes, note)))
    exact = with_surrogates(exact, case.surrogates, results.point, results.probes)
    return dataclasses.replace(results, symbolic=exact)


def per_input_differences(results: OracleResults, given: Given) -> FiniteDifferences:
    """Finite differences again, per input (the joint directions cannot say which input
    is wrong)."""
    from gradcheck_lab.oracles.finite_difference.oracle import ORACLE

    found = {**given.found, "symbolic": results.symbolic, "autograd": results.autograd}
    return ORACLE.estimates(dataclasses.replace(given, found=found), joint=False)
