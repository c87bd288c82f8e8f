"""Forward mode and second order, compared three ways like the gradients.

`modes: [reverse, forward]`: the Jacobian-vector product J·v from forward-mode AD, seen through
each cotangent u of the reverse check, u·(J·v), against the symbolic (u·J)·v and a central
difference of f along v. `order: 2`: the Hessian-vector product (d/dx)(u·J·v) from double
backward against the exact sympy one and a central difference of the first-order gradient
along v. Finite differences decide which of the first two is odd, as for gradients.
"""

from __future__ import annotations

import numpy as np

from gradcheck_lab.compare.findings import (
    AUTOGRAD,
    FD,
    FD_SAFETY,
    SYMBOLIC,
    Findings,
    agree,
    count_text,
    finite_or_inf,
    mismatch,
    odd_by_difference,
    odd_one_out,
    same_nonfinite,
    worst,
)
from gradcheck_lab.compare.tolerances import ToleranceRule, gradient_scale, symbolic_rule
from gradcheck_lab.oracles.contract import Gradients
from gradcheck_lab.subject.probes import Probe, independent


def compare_jvp(probes: tuple[Probe, ...], symbolic: Gradients, tangents: dict[str, np.ndarray],
                autograd_jvp: np.ndarray, fd_jvp: np.ndarray, fd_error: np.ndarray,
                rule: ToleranceRule, exact: bool) -> Findings:
    """u·(J·v) from forward-mode AD against (u·J)·v from the symbolic VJPs, per cotangent (a
    multiple of another cotangent says nothing new: forward mode has no grad_output)."""
    checked = independent(probes)
    found = Findings(counts={"forward_mode": len(checked)})
    sym_rule = symbolic_rule(exact)
    rows = []
    for k in checked:
        probe = probes[k]
        u = np.asarray(probe.cotangent, dtype=np.float64).reshape(-1)
        s = sum(float(symbolic.per_probe[k][name].reshape(-1) @ v.reshape(-1))
                for name, v in tangents.items())
        # The dot products' own terms: the scale of what rounding acts on.
        scale = sum(float(np.abs(symbolic.per_probe[k][name].reshape(-1)) @ np.abs(v.reshape(-1)))
                    for name, v in tangents.items())
        terms = sum(float(symbolic.term_magnitudes[k][name].reshape(-1) @ np.abs(v.reshape(-1)))
                    for name, v in tangents.items()) if symbolic.term_magnitudes else 0.0
        with np.errstate(all="ignore"):
            a = float(u @ autograd_jvp.reshape(-1))
            f = float(u @ fd_jvp.reshape(-1))
            bf = FD_SAFETY * float(np.abs(u) @ fd_error.reshape(-1))
        bound_s = float(sym_rule.bound(np.asarray(s), scale, terms))
        bound_a = float(rule.bound(np.asarray(s), scale, terms))
        if bool(agree(s, a, bound_s + bound_a)) or bool(same_nonfinite(s, a)):
            continue
        if symbolic.domain_elements and not (np.isfinite(s) and np.isfinite(a)):
            continue  # the product runs through elements outside the domain
        odd = odd_by_difference(s, a, f, bound_s, bound_a, bf)
        rows.append((finite_or_inf(abs(s - a)), k, s, a, f, bound_s + bound_a, odd))
    if not rows:
        return found
    odd = odd_one_out([row[6] for row in rows])
    for error, k, s, a, f, allowed, row_odd in worst(rows, lambda row: row[0]):
        found.mismatches.append(mismatch(
            None, (SYMBOLIC, AUTOGRAD), row_odd, {SYMBOLIC: s, AUTOGRAD: a, FD: f}, error, s,
            allowed, check="jvp", probes=probes, k=k, elements=len(rows)))
    who = f"{odd} is the odd one out" if odd else "finite differences could not tell which is right"
    found.summary.append(f"forward mode: the Jacobian-vector products disagree at "
                         f"{len(rows)} of {len(checked)} cotangent(s); {who}")
    return found


def compare_hvp(probes: tuple[Probe, ...], symbolic: tuple[dict[str, np.ndarray], ...],
                autograd: tuple[dict[str, np.ndarray], ...],
                fd: tuple[dict[str, np.ndarray], ...], rule: ToleranceRule,
                not_differentiable: list[str], first_order: Gradients,
                tangents: dict[str, np.ndarray], input_scale: float,
                first_order_wrong: bool, exact: bool = True,
                first_order_agrees: bool = False) -> Findings:
    """Hessian-vector products elementwise: symbolic (exact sympy, or the second-order rule
    sweep where the exact oracle cannot afford the case: ``exact`` False), double backward,
    and a central difference of autograd's own first-order gradient, which arbitrates only
    where that gradient is right (``first_order_wrong`` False): otherwise it can clear
    autograd's second order of nothing and cannot blame the symbolic oracle. Counts: every
    element symbolic vs autograd, and those finite differences confirm within their error
    bar."""
    compared = sum(v.size for grads in symbolic for v in grads.values())
    confirmed = 0
    autograd_alone = False
    found = Findings()
    sym_rule = symbolic_rule(exact=exact)
    by_odd: dict[str, list[str]] = {}  # who is odd: the inputs, each with its count
    detached: list[str] = []  # inputs whose first-order gradient does not require grad
    largest_tangent = max((float(np.max(np.abs(v))) for v in tangents.values() if v.size),
                          default=1.0)
    for name in symbolic[0]:
        rows = []
        for k in range(len(probes)):
            s = symbolic[k][name].reshape(-1)
            a = autograd[k][name].reshape(-1)
            f, bf = fd[k][name][0].reshape(-1), FD_SAFETY * fd[k][name][1].reshape(-1)
            # An HVP may be exactly 0 while the gradient it differentiates is built from terms
            # of size T: double backward rounds at about T·|v| per unit of x. That, at the
            # dtype's rtol, is the floor beside rtol × the largest HVP element.
            terms = (max(float(np.max(m)) for m in first_order.term_magnitudes[k].values()
                         if m.size) if first_order.term_magnitudes else 0.0)
            scale = max(gradient_scale(s), terms * largest_tangent / max(1.0, input_scale))
            bound_s, bound_a = sym_rule.bound(s, scale), rule.bound(s, scale)
            outside = same_nonfinite(s, a)
            if first_order.domain_elements:  # products through elements outside the domain
                outside |= ~(np.isfinite(s) & np.isfinite(a))
            confirmed += int(np.count_nonzero(agree(s, f, bound_s + bf) & ~outside))
            for flat in np.flatnonzero(~(agree(s, a, bound_s + bound_a) | outside)):
                error = finite_or_inf(abs(s[flat] - a[flat]))
                odd = odd_by_difference(s[flat], a[flat], f[flat], bound_s[flat],
                                        bound_a[flat], bf[flat])
                if first_order_wrong and odd == SYMBOLIC:
                    odd = None
                rows.append((error, k, int(flat), s[flat], a[flat], f[flat],
                             float(bound_s[flat] + bound_a[flat]), odd))
        if not rows:
            continue
        shape = symbolic[0][name].shape
        elements = len({row[2] for row in rows})
        for error, k, element, s_value, a_value, f_value, allowed, odd in worst(
                rows, lambda row: row[0]):
            found.mismatches.append(mismatch(
                name, (SYMBOLIC, AUTOGRAD), odd, {SYMBOLIC: s_value, AUTOGRAD: a_value,
                                                  FD: f_value}, error, s_value, allowed,
                check="hvp", flat=element, shape=shape, probes=probes, k=k,
                elements=elements))
        odd = odd_one_out([row[7] for row in rows])
        who = (f"{odd} is the odd one out" if odd
               else "finite differences could not tell which is right")
        by_odd.setdefault(who, []).append(f"{name} ({count_text(elements)})")
        if name in not_differentiable:
            detached.append(name)
        autograd_alone |= odd == AUTOGRAD and name not in not_differentiable
    found.summary.extend(_hvp_summary(by_odd, detached, autograd_alone and first_order_agrees))
    found.counts = {"second_order": compared, "second_order_symbolic_vs_autograd": compared,
                    "second_order_finite_difference": confirmed}
    found.tolerance["second_order"] = (
        f"symbolic {sym_rule.describe()}; finite differences: a central difference of "
        "autograd's gradient along the tangent, error from h vs 2h")
    return found


def _hvp_summary(by_odd: dict[str, list[str]], detached: list[str],
                 backward_not_differentiable: bool) -> list[str]:
    """One line per odd oracle naming its inputs, as for the first order; then why, where
    that is known."""
    lines = [f"second order: Hessian-vector products disagree; {who}: {', '.join(named)}"
             for who, named in by_odd.items()]
    if detached:
        lines.append(f"{', '.join(detached)}: the first-order gradient does not require grad: "
                     "the backward ran under no_grad or on detached tensors, so it cannot be "
                     "differentiated again")
    if backward_not_differentiable:
        lines.append("first order agrees, so the backward is right but its own derivative is "
                     "not: part of it is computed on detached tensors, under no_grad or from "
                     "values autograd did not record, or a Function it calls has a wrong "
                     "backward")
    return lines
