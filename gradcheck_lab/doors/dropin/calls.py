"""Every drop-in call of this process as a small record, and the summary of a session's
calls: how many were checked three ways, two ways (and why), what they caught, the time."""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass


@dataclass(frozen=True)
class DropinCall:
    """One call of the drop-in, as a session summary (or a benchmark) counts it."""

    kind: str  # "gradcheck" or "gradgradcheck"
    function: str  # the function's name, as reports give it
    status: str  # "pass", "fail", "skip" or "error"
    oracles: int  # 3, or 2 where the symbolic oracle did not run
    missing: str | None  # why it did not
    seconds: float
    test: str = ""  # the pytest test that made the call, where one did
    caught: str = ""  # a failure's first line
    torch_status: str | None = None  # compare mode: torch's verdict, "pass" or "fail"
    torch_seconds: float | None = None  # compare mode: torch's time on the same call


# Every call in this process, in order (a suite makes hundreds; each record is small).
CALLS: list[DropinCall] = []


def current_test() -> str:
    """The pytest test running now, as pytest names it ("" outside pytest)."""
    return os.environ.get("PYTEST_CURRENT_TEST", "").rsplit(" ", 1)[0]


def summary_lines(calls: list[DropinCall], reasons: int = 5) -> list[str]:
    """The session summary: counts by how the calls were checked, the reasons two-way checks
    had (the commonest first), the failures, and the time against torch's where measured."""
    if not calls:
        return ["gradcheck-lab drop-in: no gradcheck or gradgradcheck call was made"]
    kinds = Counter(call.kind for call in calls)
    three = sum(call.oracles == 3 for call in calls)
    two = [call for call in calls if call.oracles != 3]
    lines = [f"gradcheck-lab drop-in: {len(calls)} calls ("
             + ", ".join(f"{n} {kind}" for kind, n in sorted(kinds.items())) + ")",
             f"  three oracles (symbolic, autograd, finite differences): {three}"]
    if two:
        lines.append(f"  two oracles (autograd, finite differences): {len(two)}, because")
        why = Counter(_short(call.missing) for call in two)
        for reason, n in why.most_common(reasons):
            lines.append(f"    {n} x {reason}")
        rest = len(why) - reasons
        if rest > 0:
            lines.append(f"    ... and {rest} more reasons")
    statuses = Counter(call.status for call in calls)
    lines.append("  verdicts: " + ", ".join(f"{statuses[s]} {s}" for s in
                                            ("pass", "fail", "skip", "error") if statuses[s])
                 + (" (a skip: not differentiable at the point given, or nothing to check; "
                    "True, as torch's)" if statuses["skip"] else ""))
    for call in [c for c in calls if c.status in ("fail", "error", "skip")][:10]:
        lines.append(f"    {call.status}: {call.test or call.function}: {call.caught}")
    spent = sum(call.seconds for call in calls)
    timed = [call for call in calls if call.torch_seconds is not None]
    if timed:
        torch_spent = sum(call.torch_seconds or 0.0 for call in timed)
        ours = sum(call.seconds for call in timed)
        lines.append(f"  time: {spent:.1f} s in gradcheck-lab; torch's calls {torch_spent:.1f} s"
                     f" ({ours / max(torch_spent, 1e-9):.1f}x)")
        differ = [c for c in timed if c.torch_status != _verdict(c.status)]
        lines.append(f"  compared with torch's gradcheck: {len(differ)} disagreement(s)")
        for call in differ[:10]:
            lines.append(f"    {call.test or call.function}: torch {call.torch_status}, "
                         f"gradcheck-lab {call.status}: {call.caught}")
    else:
        lines.append(f"  time: {spent:.1f} s (--gradcheck-dropin=compare also times torch's)")
    return lines


def _verdict(status: str) -> str:
    return "fail" if status in ("fail", "error") else "pass"


def _short(reason: str | None, width: int = 110) -> str:
    text = " ".join((reason or "unknown").split())
    return text if len(text) <= width else text[:width - 3] + "..."
