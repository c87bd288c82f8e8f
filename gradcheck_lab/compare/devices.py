"""cpu and cuda: autograd's gradients on two devices must agree within the dtype's tolerance,
a classic source of kernel bugs."""

from __future__ import annotations

import numpy as np

from gradcheck_lab.compare.bundle import OracleResults
from gradcheck_lab.compare.findings import Findings, agree, finite_or_inf, mismatch, worst
from gradcheck_lab.compare.tolerances import ToleranceRule, gradient_scale
from gradcheck_lab.oracles.contract import Gradients


def compare_devices(reference: Gradients, results: OracleResults, rule: ToleranceRule,
                    devices: tuple[str, str]) -> Findings:
    """``reference``: autograd's gradients on ``devices[0]``; ``results``: the check on
    ``devices[1]``. The worst elements per input, as mismatches of check "device"."""
    findings = Findings()
    labels = (f"autograd@{devices[0]}", f"autograd@{devices[1]}")
    for name in results.input_names:
        rows = []
        differ_at: dict[int, set[int]] = {}  # per probe, the elements that differ
        for k, (ref_grads, other_grads) in enumerate(zip(reference.per_probe,
                                                         results.autograd.per_probe,
                                                         strict=True)):
            r, o = ref_grads[name].reshape(-1), other_grads[name].reshape(-1)
            symbolic = results.symbolic
            terms = (symbolic.term_magnitudes[k][name].reshape(-1)
                     if symbolic is not None and symbolic.term_magnitudes else 0.0)
            bound = rule.bound(r, gradient_scale(r), terms)
            with np.errstate(all="ignore"):
                errors = np.abs(r - o)
            same = agree(r, o, bound) | (r == o) | rule.flushed(r, o)
            differ_at[k] = {int(flat) for flat in np.flatnonzero(~same)}
            # A multiple of an earlier cotangent shows only what that one did not.
            base = results.probes[k].multiple_of
            for flat in sorted(differ_at[k] - (differ_at[base] if base is not None else set())):
                rows.append((finite_or_inf(errors[flat]), k, flat, r[flat], o[flat],
                             bound[flat]))
        elements = len({row[2] for row in rows})
        for error, k, flat, r_value, o_value, allowed in worst(rows, lambda row: row[0]):
            findings.mismatches.append(mismatch(
                name, labels, None, {labels[0]: r_value, labels[1]: o_value}, error, r_value,
                allowed, check="device", flat=flat, shape=results.shape_of(name),
                probes=results.probes, k=k, elements=elements))
    if findings.mismatches:
        first = findings.mismatches[0]
        findings.summary.append(f"{devices[1]} vs {devices[0]}: autograd gradients differ "
                                f"({first.elements} element(s) of {first.input})")
    return findings
