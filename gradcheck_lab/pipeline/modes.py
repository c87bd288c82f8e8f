"""What a check looks at beside the first-order comparison, at one point: a spec-only
gradient failure localized to the step whose backward is wrong, forward mode (``modes:
[reverse, forward]``) and second order (``order: 2``)."""

from __future__ import annotations

import numpy as np

from gradcheck_lab.casefile import Case
from gradcheck_lab.compare import OracleResults, Verdict
from gradcheck_lab.compare.findings import Findings
from gradcheck_lab.compare.tolerances import ToleranceRule
from gradcheck_lab.settings import Settings
from gradcheck_lab.subject.function import Subject
from gradcheck_lab.subject.probes import independent


def beside_the_comparison(case: Case, settings: Settings, results: OracleResults,
                          functions: Subject, verdict: Verdict, rule: ToleranceRule) -> None:
    """At one point, after the comparison: a spec-only gradient failure localized, and
    forward mode and second order when the case asks for them."""
    if verdict.status == "fail" and case.impl is None and any(
            m.check == "gradient" for m in verdict.mismatches):
        from gradcheck_lab.diagnose.localize import localize  # which step's backward

        verdict.notes.append(localize(case, results.point, results.probes, verdict,
                                      rule, functions.checked.device))
    verdict.add(modes(case, settings, results, functions, verdict, rule))


def modes(case: Case, settings: Settings, results: OracleResults, functions: Subject,
          verdict: Verdict, rule: ToleranceRule) -> Findings:
    """Forward mode (modes: [reverse, forward]) and second order (order: 2)."""
    from gradcheck_lab.subject.probes import make_tangents

    found = Findings()
    forward = "forward" in case.modes
    if not forward and case.order == 1:
        return found

    tangents = make_tangents({spec.name: spec.shape
                              for spec in case.differentiable_inputs}, case.seed)
    if forward:
        found.extend(forward_mode(case, settings, results, functions, tangents, rule))
    if case.order == 2:
        gradient = [m for m in verdict.mismatches if m.check == "gradient"]
        first_order_wrong = any(m.odd_oracle != "symbolic" for m in gradient)
        found.extend(second_order(case, settings, results, functions, tangents, first_order_wrong,
                                       rule, first_order_agrees=not gradient))
    return found


def forward_mode(case: Case, settings: Settings, results: OracleResults, functions: Subject,
                 tangents: dict[str, np.ndarray], rule: ToleranceRule) -> Findings:
    from gradcheck_lab.compare.modes import compare_jvp
    from gradcheck_lab.compare.two_way import compare_jvp_two_way
    from gradcheck_lab.oracles import autograd, finite_difference

    ag_jvp = autograd.jacobian_vector_product(functions.checked, results.point, tangents)
    fd_jvp, fd_error = finite_difference.jacobian_vector_product(
        functions.reference, results.point, tangents, results.term_scale,
        results.precision)
    if results.symbolic is None:
        return compare_jvp_two_way(results.probes, ag_jvp, fd_jvp, fd_error, rule)
    return compare_jvp(results.probes, results.symbolic, tangents, ag_jvp, fd_jvp,
                       fd_error, rule, exact=results.exact)


def second_order(case: Case, settings: Settings, results: OracleResults, functions: Subject,
                 tangents: dict[str, np.ndarray], first_order_wrong: bool,
                 rule: ToleranceRule, first_order_agrees: bool = False) -> Findings:
    from gradcheck_lab.compare.modes import compare_hvp
    from gradcheck_lab.compare.two_way import compare_hvp_two_way
    from gradcheck_lab.oracles import autograd, finite_difference, symbolic

    point = results.point
    # A multiple of another cotangent would repeat its Hessian-vector product, scaled.
    probes = results.probes[:len(independent(results.probes))]
    ag_hvp, not_differentiable = autograd.hessian_vector_products(
        functions.checked, point, probes, tangents)
    fd_hvp = finite_difference.hessian_vector_products(functions.reference, point, probes,
                                                       tangents, results.precision)
    if results.symbolic is None:
        if first_order_wrong:  # finite differences of a wrong gradient vouch for nothing
            return Findings(notes=["second order was not compared: without the symbolic "
                                   "oracle it is held to finite differences of autograd's "
                                   "own gradient, which is wrong here"])
        return compare_hvp_two_way(probes, ag_hvp, fd_hvp, rule, not_differentiable)
    sym_hvp, method = symbolic.hessian_vector_products(
        results.spec, point, probes, tangents, settings.symbolic)
    input_scale = max((float(np.max(np.abs(point.values[name]))) for name in tangents
                       if point.values[name].size), default=1.0)
    return compare_hvp(probes, sym_hvp, ag_hvp, fd_hvp, rule, not_differentiable,
                       results.symbolic, tangents, input_scale, first_order_wrong,
                       exact=method == symbolic.METHOD_EXACT,
                       first_order_agrees=first_order_agrees)
