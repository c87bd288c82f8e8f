"""Further oracles (``OracleResults.others``: an oracle added to ``ORACLES`` beyond the three)
against autograd, element by element: the gradient under test must agree with every
independent way to it. Where the symbolic oracle ran, it says which of the two is odd."""

from __future__ import annotations

import numpy as np

from gradcheck_lab.compare.bundle import OracleResults
from gradcheck_lab.compare.findings import (
    AUTOGRAD,
    SYMBOLIC,
    Findings,
    agree,
    count_text,
    finite_or_inf,
    mismatch,
    same_nonfinite,
    worst,
)
from gradcheck_lab.compare.tolerances import ToleranceRule, gradient_scale, symbolic_rule


def compare_others(results: OracleResults, rule: ToleranceRule) -> Findings:
    """Each further oracle against autograd on every element of every probe: autograd held to
    ``rule``, the further oracle to float64's computed rule (it is one more float64 way to
    the gradient, as the rule sweep is)."""
    found = Findings()
    for name, other in results.others.items():
        for input_name in results.input_names:
            _one_input(results, rule, name, input_name, found)
        compared = sum(v.size for v in other.per_probe[0].values()) * len(other.per_probe)
        found.counts[f"{name}_vs_autograd"] = compared
    return found


def _one_input(results: OracleResults, rule: ToleranceRule, name: str, input_name: str,
               found: Findings) -> None:
    other_rule = symbolic_rule(exact=False)
    rows: list[tuple[float, int, int, float, float, float, str | None]] = []
    for k in range(len(results.probes)):
        o = results.others[name].per_probe[k][input_name].reshape(-1)
        a = results.autograd.per_probe[k][input_name].reshape(-1)
        scale = gradient_scale(o)
        allowed = other_rule.bound(o, scale) + rule.bound(o, scale)
        outside = ~(agree(o, a, allowed) | same_nonfinite(o, a))
        for flat in map(int, np.flatnonzero(outside)):
            rows.append((finite_or_inf(abs(o[flat] - a[flat])), k, flat, float(o[flat]),
                         float(a[flat]), float(allowed[flat]),
                         _odd(results, name, k, input_name, flat, float(allowed[flat]))))
    if not rows:
        return
    elements = len({row[2] for row in rows})
    shape = results.point.values[input_name].shape
    for error, k, flat, o_value, a_value, allowed, row_odd in worst(rows, lambda row: row[0]):
        values = {name: o_value, AUTOGRAD: a_value}
        if results.symbolic is not None:
            values[SYMBOLIC] = results.symbolic.per_probe[k][input_name].reshape(-1)[flat]
        found.mismatches.append(mismatch(
            input_name, (name, AUTOGRAD), row_odd, values, error, o_value, allowed, flat=flat,
            shape=shape, probes=results.probes, k=k, elements=elements))
    named = {row[6] for row in rows}
    odd = named.pop() if len(named) == 1 else None
    who = f"{odd} is the odd one out" if odd is not None else "nobody could be named odd"
    found.summary.append(f"{name} and autograd disagree: {input_name} "
                         f"({count_text(elements)}); {who}")


def _odd(results: OracleResults, name: str, k: int, input_name: str, flat: int,
         allowed: float) -> str | None:
    """Who is odd at one element, by the symbolic oracle's vote: the one it disagrees with."""
    if results.symbolic is None:
        return None
    s = results.symbolic.per_probe[k][input_name].reshape(-1)[flat]
    o = results.others[name].per_probe[k][input_name].reshape(-1)[flat]
    a = results.autograd.per_probe[k][input_name].reshape(-1)[flat]
    with_other, with_autograd = abs(s - o) <= allowed, abs(s - a) <= allowed
    if with_other and not with_autograd:
        return AUTOGRAD
    if with_autograd and not with_other:
        return name
    return None
