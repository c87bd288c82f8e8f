"""``gradcheck-lab graph``, what is drawn: a case's computational graph as nodes with values and
gradients.

One node per input, let step, intermediate op and the output, each with its forward value (a
tensor: shape and norm) and its gradient: the adjoint of the output with respect to that node,
from a reverse sweep of the symbolic oracle's rules that keeps every node's adjoint. Constants
are folded into the label of the op that uses them. For a scalar graph, each edge carries its
local derivative at the point, as in a backprop worked by hand. Each node's depth from the
inputs gives its column. Where the nodes go is ``graph_layout``'s part; painting them with
matplotlib is ``graph_drawing``'s."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gradcheck_lab.casefile import Case
from gradcheck_lab.casefile.selection import located
from gradcheck_lab.errors import GradcheckLabError, SpecError
from gradcheck_lab.oracles.symbolic import numpy_forward
from gradcheck_lab.program import Program
from gradcheck_lab.program.naming import OUTPUT, format_number, node_names, norm, spell
from gradcheck_lab.program.sweep import node_adjoints
from gradcheck_lab.subject.points import make_point
from gradcheck_lab.subject.probes import make_probes

FORMATS = (".svg", ".png", ".pdf")
MAX_NODES = 300  # beyond this a drawing is unreadable, and matplotlib's canvas too large


@dataclass(frozen=True)
class GraphNode:
    index: int
    kind: str  # "input", "let", "op" or "output"
    lines: tuple[str, ...]  # the label: name/op, value, gradient
    args: tuple[int, ...]  # indices of the drawn nodes it is computed from (no constants)
    depth: int
    # Per argument, ∂node/∂argument at the point ("3"), where node and argument are scalars.
    local: tuple[str | None, ...] = ()


@dataclass(frozen=True)
class CaseGraph:
    title: str
    nodes: tuple[GraphNode, ...]


def build_graph(case: Case, dtype: str) -> CaseGraph:
    """The nodes to draw, labelled with values and adjoints at the case's first point."""
    program = case.program
    point = make_point(case, dtype)
    # Lets the output does not use are drawn too (without a gradient); constants are not.
    roots = [program.output, *program.inputs.values(), *program.lets.values()]
    drawn = sorted(set(program.needed_for(roots)) - {
        i for i, node in enumerate(program.nodes) if node.op == "const"})
    if len(drawn) > MAX_NODES:
        raise GradcheckLabError(f"{case.name}: the graph has {len(drawn)} nodes, too many to "
                                f"draw (at most {MAX_NODES})")
    try:
        env = numpy_forward(program, point, roots)
    except SpecError as exc:  # a rule that fails at this point: say where
        raise located(case, exc) from None
    # The first probe is what the check itself starts a backward from: 1 for a scalar output,
    # output[0, ...] for a small tensor, a seeded random cotangent for a large one.
    probe = make_probes(program.output_node.shape, case.seed, case.outputs)[0]
    adjoints = node_adjoints(program, env, probe.cotangent)
    names = node_names(program)
    lets = set(program.lets.values())
    depth = _depths(program, drawn)
    nodes = []
    for index in drawn:
        node = program.nodes[index]
        args = tuple(a for a in node.args if program.nodes[a].op != "const")
        if index == program.output:
            kind = "output"
        elif node.op == "input":
            kind = "input"
        else:
            kind = "let" if index in lets else "op"
        nodes.append(GraphNode(index, kind, (
            _title(program, index, names, kind),
            _value_line(env[index]),
            # An input the output does not use has a gradient, zero (as the check counts it).
            _gradient_line(adjoints.get(index, np.zeros(node.shape) if (
                node.op == "input" and node.needs_grad) else None)),
        ), args, depth[index], _local_derivatives(program, index, env)))
    subject = "output" if probe.label == "output" else probe.label
    title = (f"{case.name} ({point.dtype}): forward values, and grad = "
             f"∂{subject}/∂node (reverse sweep of the symbolic rules)")
    if case.impl is not None:
        title += f"; the spec, not impl {case.impl_label}"
    return CaseGraph(title, tuple(nodes))


def _local_derivatives(program: Program, index: int,
                       env: dict[int, np.ndarray]) -> tuple[str | None, ...]:
    """∂node/∂argument for each drawn (non-constant) argument, from the op's own VJP rule at
    cotangent 1, where the node and that argument are scalars; None elsewhere."""
    node = program.nodes[index]
    drawn = [a for a in node.args if program.nodes[a].op != "const"]
    if node.op in ("input", "const") or node.shape != () or not drawn:
        return ()
    from gradcheck_lab.ops import OPS

    op = OPS[node.op]
    needs = [program.nodes[a].shape == () and not program.nodes[a].is_integer
             and position not in op.nondifferentiable_args
             for position, a in enumerate(node.args)]
    with np.errstate(all="ignore"):
        grads = op.vjp(np.ones(()), [env[a] for a in node.args], env[index], node.param_dict,
                       needs)
    local = {a: g for a, g, needed in zip(node.args, grads, needs, strict=True)
             if needed and g is not None and np.size(g) == 1}
    return tuple(format_number(float(np.asarray(local[a]).reshape(())), 4) if a in local
                 else None for a in drawn)


def _depths(program: Program, drawn: list[int]) -> dict[int, int]:
    """Depth from the inputs: 1 + the deepest argument. Then what is computed from inputs alone
    (an input, a weight's transpose) moves right, to the column just before its first use, so
    that a network's weights sit beside their layer rather than sending long edges across."""
    args = {i: [a for a in program.nodes[i].args if program.nodes[a].op != "const"]
            for i in drawn}
    depth: dict[int, int] = {}
    users: dict[int, list[int]] = {i: [] for i in drawn}
    movable: set[int] = set()
    for index in drawn:  # the program's order is topological: arguments first
        depth[index] = 1 + max((depth[a] for a in args[index]), default=-1)
        for a in args[index]:
            users[a].append(index)
        if program.nodes[index].op == "input" or all(a in movable for a in args[index]):
            movable.add(index)
    for index in reversed(drawn):  # users first, so that a chain moves as a whole
        if index in movable and users[index]:
            depth[index] = min(depth[u] for u in users[index]) - 1
    return depth


def _title(program: Program, index: int, names: dict[int, str], kind: str) -> str:
    node = program.nodes[index]
    if kind == "input":
        return node.name or "?"
    # One level of the expression: arguments by name, unnamed intermediate results as ·.
    expression = spell(program, index, names, depth=1)
    if kind == "op":
        return expression
    name = names[index]
    if kind == "output" and name != OUTPUT:
        return f"{name} ({OUTPUT}) = {expression}"
    return f"{name} = {expression}"


def _value_line(value: np.ndarray) -> str:
    if value.shape == ():
        return f"value {format_number(float(value), 6)}"
    return f"{list(value.shape)}, norm {format_number(norm(value), 4)}"


def _gradient_line(adjoint: np.ndarray | None) -> str:
    if adjoint is None:
        return "no gradient"
    if adjoint.shape == ():
        return f"grad {format_number(float(adjoint), 6)}"
    return f"grad norm {format_number(norm(adjoint), 4)}"
