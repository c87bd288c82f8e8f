"""Which step of a spec-only case does the gradient disagreement come from?

Without an ``impl``, autograd differentiates the spec lowered to torch ops, so a disagreement
between symbolic and autograd means one of torch's backwards and one of our VJP rules differ
(a torch bug, or ours). The input gradients only say *that* they differ; this module finds
*where*: it computes the adjoint of every node (inputs, let steps and the intermediate results
inside them) twice, by the symbolic rule sweep (``program.sweep.node_adjoints``) and by
autograd on the spec lowered op by op (``torch.autograd.grad`` with respect to each
intermediate tensor), and walks from the output back to the inputs. The first node whose
adjoint diverges was given it by the backwards of the ops that consume it, whose own adjoints
all agree: one of those ops' backward is where torch and the rules part, and the note names
its let step.

A wrong forward shows first: when a node's value already differs, the note names the first
such node in evaluation order instead.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from gradcheck_lab.casefile import Case
from gradcheck_lab.compare.findings import Verdict, agree, same_nonfinite
from gradcheck_lab.compare.tolerances import ToleranceRule, gradient_scale, symbolic_rule
from gradcheck_lab.ops import OPS
from gradcheck_lab.oracles.autograd import make_leaves
from gradcheck_lab.oracles.symbolic import numpy_forward, term_scale
from gradcheck_lab.program import Program
from gradcheck_lab.program.naming import index_text, node_names, spell
from gradcheck_lab.program.sweep import node_adjoints
from gradcheck_lab.subject.function import lower_all, owned
from gradcheck_lab.subject.points import Point
from gradcheck_lab.subject.probes import Probe

MAX_EXPRESSION = 60  # characters of a step's expression quoted in the note


def localize(case: Case, point: Point, probes: tuple[Probe, ...], verdict: Verdict,
             rule: ToleranceRule, device: str) -> str:
    """A note naming the first step (from the output backwards) whose gradient diverges
    between the symbolic rule sweep and autograd. Never raises: it explains a failure that is
    already reported, and must not turn it into an error."""
    try:
        return _Localization(case, point, probes[_probe_of(verdict, probes)], rule,
                             device).run()
    except Exception as exc:
        return f"could not localize the gradient disagreement: {type(exc).__name__}: {exc}"


def _probe_of(verdict: Verdict, probes: tuple[Probe, ...]) -> int:
    """The probe of the worst gradient mismatch (relative to what was allowed)."""
    gradient = [m for m in verdict.mismatches if m.check == "gradient"]
    if not gradient:
        return 0
    worst = max(gradient, key=lambda m: m.abs_err / m.allowed if m.allowed > 0 else np.inf)
    labels = [probe.label for probe in probes]
    return labels.index(worst.probe) if worst.probe in labels else 0


class _Localization:
    def __init__(self, case: Case, point: Point, probe: Probe, rule: ToleranceRule,
                 device: str) -> None:
        self.case = case
        self.program: Program = case.program
        self.point = point
        self.probe = probe
        self.rule = rule
        # The sweep is float64 with rounding, like the symbolic oracle's sweep.
        self.sym_rule = symbolic_rule(exact=False)
        self.device = device
        self.names = node_names(self.program)
        self.needed = self.program.needed_for([self.program.output])

    def run(self) -> str:
        import torch

        program = self.program
        env = numpy_forward(program, self.point, [program.output])
        symbolic = node_adjoints(program, env, self.probe.cotangent)
        # Each node's sum of |terms|: the size of what rounding acts on, as in the comparison.
        magnitudes = node_adjoints(program, env, self.probe.cotangent, magnitudes=True)
        values = self.torch_forward()
        diverged = self.first_value_divergence(env, values, term_scale(program, env))
        if diverged is not None:
            return diverged
        # Each node's adjoint from autograd: the gradient of the output with respect to that
        # intermediate tensor (no .grad, nothing retained). A tensor an op returned unchanged
        # is the same object as its argument: only the first node of such a chain is compared.
        seen: set[int] = set()
        compared = []
        for index in self.needed:
            node = program.nodes[index]
            tensor = values[index]
            if (node.op == "const" or not node.needs_grad or id(tensor) in seen
                    or not tensor.requires_grad):
                continue
            seen.add(id(tensor))
            compared.append(index)
        out = values[program.output]
        cotangent = torch.tensor(self.probe.cotangent, dtype=out.dtype, device=out.device)
        grads = torch.autograd.grad(out, [values[i] for i in compared], grad_outputs=cotangent,
                                    allow_unused=True)
        autograd = {index: (np.zeros(program.nodes[index].shape) if grad is None else
                            owned(grad))
                    for index, grad in zip(compared, grads, strict=True)}
        for index in reversed(compared):
            shape = program.nodes[index].shape
            s = symbolic.get(index, np.zeros(shape)).reshape(-1)
            a = autograd[index].reshape(-1)
            terms = magnitudes.get(index, np.zeros(shape)).reshape(-1)
            scale = gradient_scale(s)
            bound = self.sym_rule.bound(s, scale, terms) + self.rule.bound(s, scale, terms)
            differ = ~agree(s, a, bound)
            if differ.any():
                with np.errstate(all="ignore"):
                    errors = np.where(differ, np.nan_to_num(np.abs(s - a), nan=np.inf), 0.0)
                worst = int(np.argmax(errors))
                return self.describe_gradient(index, float(errors[worst] / scale), worst)
        return ("localization: every node's adjoint agrees between the symbolic rule sweep and "
                f"autograd ({self.probe.label}); the disagreement is not in one step's "
                "backward (the exact oracle and the rule sweep may differ)")

    def torch_forward(self) -> dict[int, Any]:
        """Every node's tensor, with a graph to differentiate the intermediate ones."""
        import torch

        leaves = make_leaves(self.case, self.point, self.point.dtype, self.device)
        with torch.enable_grad():
            return lower_all(self.program, leaves, self.point.dtype, self.device)

    def first_value_divergence(self, env: dict[int, np.ndarray], values: dict[int, Any],
                               scale: float) -> str | None:
        """The first op node (in evaluation order) whose torch value differs from numpy's."""
        for index in self.needed:
            node = self.program.nodes[index]
            if node.op in ("input", "const") or node.is_integer:
                continue
            s = np.asarray(env[index], dtype=np.float64).reshape(-1)
            a = values[index].detach().double().cpu().numpy().reshape(-1)
            reference = gradient_scale(s)
            bound = (self.sym_rule.bound(s, reference, scale)
                     + self.rule.bound(s, reference, scale))
            if not (agree(s, a, bound) | same_nonfinite(s, a)).all():
                with np.errstate(all="ignore"):
                    gaps = np.abs(s - a)
                relative = float(np.max(np.where(np.isnan(gaps), np.inf, gaps))) / reference
                return (f"the first step whose value diverges: {self.step(node.key)}: "
                        f"{self.op_text(index)} in torch and in the numpy rules differ by "
                        f"{relative:.2g} relative (a forward, not a backward, differs)")
        return None

    def describe_gradient(self, index: int, relative: float, flat: int) -> str:
        """The steps whose backward gave node ``index`` its diverging adjoint (``relative``:
        the largest difference over the adjoint's scale, at element ``flat``)."""
        program = self.program
        consumers = [c for c in self.needed if index in program.nodes[c].args
                     and any(a == index and p not in OPS[program.nodes[c].op]
                             .nondifferentiable_args
                             for p, a in enumerate(program.nodes[c].args))]
        steps = list(dict.fromkeys(program.nodes[c].key for c in consumers))
        ops = ", ".join(dict.fromkeys(self.op_text(c) for c in consumers))
        node = program.nodes[index]
        where = index_text(np.unravel_index(flat, node.shape)) if node.shape else ""
        what = self.names.get(index) or spell(program, index, self.names, depth=1)
        probe = "" if self.probe.label == "output" else f", {self.probe.label}"
        return (f"the first step whose gradient diverges: "
                f"{' or '.join(self.step(key) for key in steps)}: symbolic vs autograd differ "
                f"by {relative:.2g} relative in what the backward of {ops} gives {what} "
                f"(largest at {what}{where}{probe}); every gradient nearer the output agrees")

    def step(self, key: str) -> str:
        """``let.h1 (relu(linear(x, W1, b1)))``: a step's key and its expression, shortened."""
        program = self.program
        index = (program.lets.get(key.removeprefix("let."))
                 if key.startswith("let.") else program.output if key == "output" else None)
        if index is None:
            return key
        expression = spell(program, index, self.names, depth=3)
        if len(expression) > MAX_EXPRESSION:
            expression = expression[:MAX_EXPRESSION - 3] + "..."
        return f"{key} ({expression})"

    def op_text(self, index: int) -> str:
        return OPS[self.program.nodes[index].op].spelled
