"""The gradient check without the symbolic oracle: autograd against finite differences.

Where the spec cannot be had (a forward that runs an op the case language cannot write), the
check goes on with the two oracles that need no spec. Finite differences differentiate the
function's own forward in float64, each estimate with its error bar; where one is conclusive
and autograd is outside it (plus the dtype's tolerance), autograd is the odd one out, as in
torch's gradcheck, but with error bars, measured precision, every element where the size
allows, and the diagnosis. An estimate whose error bar is too wide to say anything is
counted as inconclusive, never as a failure.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from gradcheck_lab.compare.bundle import OracleResults
from gradcheck_lab.compare.findings import (
    AUTOGRAD,
    FD,
    FD_INCONCLUSIVE,
    FD_SAFETY,
    Findings,
    agree,
    agreeing_text,
    count_text,
    finite_or_inf,
    mismatch,
    same_nonfinite,
    worst,
)
from gradcheck_lab.compare.gradients import FdTally
from gradcheck_lab.compare.patterns import Probed, diagnose
from gradcheck_lab.compare.tolerances import ToleranceRule, gradient_scale
from gradcheck_lab.program.naming import element_index, index_text
from gradcheck_lab.subject.probes import Probe, independent

# A disagreement: (|a - f|, probe, flat element or None, direction or None, a, f, allowed)
Row = tuple[float, int, int | None, int | None, float, float, float]


def compare_two_way(results: OracleResults, rule: ToleranceRule) -> tuple[Findings, FdTally]:
    """Every differentiated input's gradient, autograd against finite differences."""
    findings, tally = Findings(), FdTally()
    odd: list[str] = []  # the inputs autograd is odd for, each with its count
    agreeing: list[str] = []
    for name in results.input_names:
        rows, probed = _disagreements(results, rule, name, tally)
        if not rows:
            agreeing.append(name)
            continue
        elements = len({(flat, direction) for _, _, flat, direction, *_ in rows})
        for error, k, flat, direction, a, f, allowed in worst(rows, lambda row: row[0]):
            findings.mismatches.append(mismatch(
                name, (AUTOGRAD, FD), AUTOGRAD, {AUTOGRAD: a, FD: f}, error, f, allowed,
                flat=flat, shape=results.shape_of(name), probes=results.probes, k=k,
                elements=elements, direction=direction))
        odd.append(f"{name} ({count_text(elements)})")
        found = diagnose(name, results.shape_of(name), probed,
                         scales_with_cotangent=len(probed) > 1,
                         reference="finite differences") if probed else None
        if found is not None:
            findings.diagnoses.append(found)
    if odd:  # one line naming every input, as with three oracles (``odd_ones_out``)
        findings.summary.append(f"{AUTOGRAD} is the odd one out against finite differences: "
                                f"{', '.join(odd)}")
        if agreeing:
            findings.summary.append(agreeing_text(agreeing))
    return findings, tally


def _disagreements(results: OracleResults, rule: ToleranceRule, name: str,
                   tally: FdTally) -> tuple[list[Row], list[Probed]]:
    """Where autograd is outside a conclusive finite difference, over every probe; and, per
    probe, autograd against the partials as the diagnosis reads them."""
    fd = results.finite_differences
    rows: list[Row] = []
    probed: list[Probed] = []
    if fd is None or name not in fd.per_input:
        return rows, probed
    estimates = fd.per_input[name]
    for k in range(len(results.probes)):
        counted = results.probes[k].multiple_of is None
        a = results.autograd.per_probe[k][name].reshape(-1)
        # The scale of the gradient from finite differences, the reference here, not from
        # autograd, the oracle under test (a backward 100x too large would widen its own bar).
        scale = gradient_scale(estimates.partials[k] if estimates.partials[k].size else a)
        tally.largest_atol = max(tally.largest_atol, float(np.max(rule.absolute(scale))))
        full = np.full(a.shape, np.nan)
        full[estimates.indices] = estimates.partials[k]
        comparisons = _comparisons(a, estimates.indices, estimates.partials[k],
                                   estimates.partial_errors[k], estimates.directions,
                                   estimates.directional[k], estimates.directional_errors[k])
        agreeing = np.ones(a.shape, dtype=bool)
        for flat, direction, ad, f, bf, width in comparisons:
            bf *= FD_SAFETY
            allowed = float(rule.bound(np.asarray(f), scale * width))
            if not (np.isfinite(f) and np.isfinite(bf)):
                tally.inconclusive += counted
                tally.reasons["not finite"] += counted
                continue
            if bf > FD_INCONCLUSIVE * (abs(f) + abs(ad) + scale * width):
                # A bar this wide agrees with anything: it confirms nothing either way. (A
                # difference of 0 with a narrow bar, where autograd says 3, is conclusive.)
                tally.inconclusive += counted
                tally.reasons["ill-conditioned"] += counted
                continue
            if agree(ad, f, allowed + bf):
                _margin(tally, abs(ad - f) / (allowed + bf) if allowed + bf > 0 else 0.0,
                        name, flat, results.shape_of(name))
                continue
            if flat is not None:
                agreeing[flat] = False
            if counted or not any(row[2] == flat and row[3] == direction for row in rows):
                rows.append((finite_or_inf(abs(ad - f)), k, flat, direction, ad, f,
                             allowed + bf))
        if estimates.indices.size == a.size:  # every element estimated: patterns can be read
            fd_bounds = np.zeros(a.shape)
            fd_bounds[estimates.indices] = FD_SAFETY * estimates.partial_errors[k]
            probed.append(Probed(full, a, rule.bound(full, scale) + fd_bounds, agreeing))
    return rows, (probed if len(probed) == len(results.probes) else [])


def _comparisons(a: np.ndarray, indices: np.ndarray, partials: np.ndarray,
                 errors: np.ndarray, directions: np.ndarray, directional: np.ndarray,
                 directional_errors: np.ndarray
                 ) -> Iterator[tuple[int | None, int | None, float, float, float, float]]:
    """(flat, direction, autograd's value, the estimate, its error bar, the width the
    tolerance scales by): each partial, then each direction's projection."""
    for position, flat in enumerate(indices):
        yield int(flat), None, float(a[flat]), float(partials[position]), \
            float(errors[position]), 1.0
    d = directions.reshape(len(directions), a.size)
    with np.errstate(all="ignore"):
        projected = d @ a
    widths = np.abs(d).sum(axis=1)
    for j in range(len(d)):
        yield None, j, float(projected[j]), float(directional[j]), \
            float(directional_errors[j]), float(widths[j])


def _margin(tally: FdTally, ratio: float, name: str, flat: int | None,
            shape: tuple[int, ...]) -> None:
    """How close the worst agreeing comparison came to its allowed error."""
    if ratio > tally.margin:
        tally.margin = ratio
        tally.margin_at = name + (index_text(element_index(flat, shape)) if flat is not None
                                  else " (a direction)")


def compare_hvp_two_way(probes: tuple[Probe, ...], autograd: tuple[dict[str, np.ndarray], ...],
                        fd: tuple[dict[str, np.ndarray], ...], rule: ToleranceRule,
                        not_differentiable: list[str]) -> Findings:
    """Second order without the symbolic oracle: double backward against a central
    difference of autograd's own first-order gradient along the tangent (which the first-order
    check, passed, vouches for), element by element, each with its error bar."""
    found = Findings()
    compared = confirmed = 0
    for name in autograd[0]:
        rows: list[tuple[float, int, int, float, float, float]] = []
        for k in range(len(probes)):
            a = autograd[k][name].reshape(-1)
            f, bf = fd[k][name][0].reshape(-1), FD_SAFETY * fd[k][name][1].reshape(-1)
            scale = gradient_scale(f)
            allowed = rule.bound(f, scale)
            conclusive = bf <= FD_INCONCLUSIVE * (np.abs(f) + scale)
            agreeing = agree(a, f, allowed + bf) | same_nonfinite(a, f)
            compared += a.size
            confirmed += int(np.count_nonzero(agreeing & conclusive))
            rows.extend((finite_or_inf(abs(a[flat] - f[flat])), k, int(flat), a[flat], f[flat],
                         float(allowed[flat] + bf[flat]))
                        for flat in np.flatnonzero(~agreeing & conclusive))
        if not rows:
            continue
        elements = len({row[2] for row in rows})
        for error, k, flat, a_value, f_value, limit in worst(rows, lambda row: row[0]):
            found.mismatches.append(mismatch(
                name, (AUTOGRAD, FD), AUTOGRAD, {AUTOGRAD: a_value, FD: f_value}, error,
                f_value, limit, check="hvp", flat=flat, shape=autograd[0][name].shape,
                probes=probes, k=k, elements=elements))
        why = ("; its first-order gradient does not require grad: the backward ran under "
               "no_grad or on detached tensors, so it cannot be differentiated again"
               if name in not_differentiable else "")
        found.summary.append(f"{name}: second order: autograd's Hessian-vector products "
                             "disagree with finite differences of its own gradient "
                             f"({count_text(elements)}){why}")
    found.counts = {"second_order": compared, "second_order_finite_difference": confirmed}
    return found


def compare_jvp_two_way(probes: tuple[Probe, ...], autograd_jvp: np.ndarray,
                        fd_jvp: np.ndarray, fd_error: np.ndarray,
                        rule: ToleranceRule) -> Findings:
    """Forward mode without the symbolic oracle: u·(J·v) from forward-mode AD against the
    central difference of the forward along v, per independent cotangent."""
    checked = independent(probes)
    found = Findings(counts={"forward_mode": len(checked)})
    rows = []
    for k in checked:
        u = np.asarray(probes[k].cotangent, dtype=np.float64).reshape(-1)
        with np.errstate(all="ignore"):
            a = float(u @ autograd_jvp.reshape(-1))
            f = float(u @ fd_jvp.reshape(-1))
            bf = FD_SAFETY * float(np.abs(u) @ fd_error.reshape(-1))
            scale = float(np.abs(u) @ np.abs(fd_jvp.reshape(-1)))
        allowed = float(rule.bound(np.asarray(f), scale))
        if bf > FD_INCONCLUSIVE * (abs(f) + scale) or bool(agree(a, f, allowed + bf)):
            continue
        rows.append((finite_or_inf(abs(a - f)), k, a, f, allowed + bf))
    for error, k, a, f, allowed in worst(rows, lambda row: row[0]):
        found.mismatches.append(mismatch(None, (AUTOGRAD, FD), AUTOGRAD,
                                         {AUTOGRAD: a, FD: f}, error, f, allowed, check="jvp",
                                         probes=probes, k=k, elements=len(rows)))
    if rows:
        found.summary.append(f"forward mode: the Jacobian-vector products disagree with "
                             f"finite differences at {len(rows)} of {len(checked)} "
                             "cotangent(s); autograd is the odd one out")
    return found
