"""``gradcheck-lab graph``: a case's computational graph, drawn with matplotlib.

One box per input, let step, intermediate op and the output, each with its forward value (a
tensor: shape and norm) and its gradient: the adjoint of the output with respect to that node,
from a reverse sweep of the symbolic oracle's rules that keeps every node's adjoint. Constants
are folded into the label of the op that uses them. Layout: columns by depth from the inputs,
wrapped into bands of at most ``COLUMNS_PER_BAND`` columns so that a deep graph (a layernorm
MLP) stays readable at 1,600 px; the value in black inside each box, the gradient in red under
it; for a scalar graph, each edge labelled with its local derivative, as in a backprop worked
by hand; and a legend.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gradcheck_lab.casefile import Case
from gradcheck_lab.casefile.selection import located
from gradcheck_lab.errors import GradcheckLabError, SpecError
from gradcheck_lab.oracles.base import make_probes
from gradcheck_lab.oracles.points import make_point
from gradcheck_lab.oracles.symbolic import numpy_forward
from gradcheck_lab.program import Program
from gradcheck_lab.program.naming import OUTPUT, format_number, node_names, norm, spell
from gradcheck_lab.program.sweep import node_adjoints

FORMATS = (".svg", ".png", ".pdf")
MAX_NODES = 300  # beyond this a drawing is unreadable, and matplotlib's canvas too large
_COLORS = {"input": "#dbe9f6", "let": "#dff0d8", "op": "#f5f5f5", "output": "#fbe3c8"}
_GRADIENT_COLOR = "#b03a2e"
# 2.8 in per column at matplotlib's 100 dpi: five columns fit in 1,600 px.
COLUMNS_PER_BAND = 5
_COLUMN_INCHES = 2.8


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
    """Depth from the inputs: 1 + the deepest argument. An input then moves to the column just
    before its first use, so that a network's weights sit beside their layer."""
    depth: dict[int, int] = {}
    for index in drawn:
        node = program.nodes[index]
        args = [a for a in node.args if program.nodes[a].op != "const"]
        depth[index] = 1 + max((depth[a] for a in args), default=0) if args else 0
    for index in drawn:
        if program.nodes[index].op == "input":
            uses = [depth[i] for i in drawn if index in program.nodes[i].args]
            depth[index] = min(uses, default=1) - 1
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


def layout(nodes: tuple[GraphNode, ...]) -> dict[int, tuple[float, float]]:
    """Columns by depth; within a column, nodes ordered by the mean height of their
    arguments (fewer crossing edges), centred on y = 0."""
    columns: dict[int, list[GraphNode]] = {}
    for node in nodes:
        columns.setdefault(node.depth, []).append(node)
    position: dict[int, tuple[float, float]] = {}
    for depth in sorted(columns):
        column = columns[depth]
        def order(node: GraphNode) -> tuple[float, int]:
            # Results by the mean height of their arguments, inputs below them.
            heights = [position[a][1] for a in node.args if a in position]
            if node.kind == "input" or not heights:
                return (float("inf"), node.index)
            return (-float(np.mean(heights)), node.index)

        column = sorted(column, key=order)
        for rank, node in enumerate(column):
            position[node.index] = (float(depth), (len(column) - 1) / 2 - rank)
    return position


def banded(position: dict[int, tuple[float, float]], per_band: int = COLUMNS_PER_BAND,
           ) -> tuple[dict[int, tuple[float, float]], int, float, int]:
    """The layout's columns wrapped into bands of ``per_band``, top to bottom: drawing
    positions, the columns of the widest band, the height of one band and the bands."""
    columns = int(max(x for x, _ in position.values())) + 1
    tallest = max(sum(1 for x, _ in position.values() if x == c) for c in range(columns))
    band_height = tallest + 1.0
    wrapped = {index: (x % per_band, y - (x // per_band) * band_height)
               for index, (x, y) in position.items()}
    return wrapped, min(columns, per_band), band_height, (columns - 1) // per_band + 1


def draw(graph: CaseGraph, path: Path) -> None:
    """Write the drawing to ``path``; the format follows its suffix (.svg, .png or .pdf)."""
    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    logical = layout(graph.nodes)
    position, columns, band_height, bands = banded(logical)
    # svg.fonttype "none": labels stay <text> in an SVG (searchable, and what the tests read).
    with matplotlib.rc_context({"svg.fonttype": "none"}):
        figure = Figure(figsize=(max(4.0, _COLUMN_INCHES * columns),
                                 max(2.5, 1.3 * band_height * bands + 0.8)))
        FigureCanvasAgg(figure)  # the Agg backend, without switching pyplot's global one
        axes = figure.add_axes((0.0, 0.0, 1.0, 0.9))
        axes.set_axis_off()
        axes.set_xlim(-0.5, columns - 0.5)
        axes.set_ylim(band_height / 2 - band_height * bands, band_height / 2)
        boxes = {}
        for node in graph.nodes:
            x, y = position[node.index]
            # The value in the box; the gradient, in red, under it.
            boxes[node.index] = axes.text(
                x, y, "\n".join(node.lines[:2]), ha="center", va="center", fontsize=8,
                bbox={"boxstyle": "round,pad=0.4", "facecolor": _COLORS[node.kind],
                      "edgecolor": "#555555"}, zorder=2)
            axes.annotate(node.lines[2], xy=(0.5, 0.0), xycoords=boxes[node.index],
                          xytext=(0, -4), textcoords="offset points", ha="center", va="top",
                          fontsize=7, color=_GRADIENT_COLOR, zorder=2)
        for node in graph.nodes:
            for number, arg in enumerate(node.args):
                wraps = logical[arg][0] // COLUMNS_PER_BAND != logical[node.index][0] // (
                    COLUMNS_PER_BAND)
                # From the right edge of the argument's label to the left edge of the result's;
                # an edge into the next band curves down to it.
                axes.annotate(
                    "", xy=(0.0, 0.5), xycoords=boxes[node.index], xytext=(1.0, 0.5),
                    textcoords=boxes[arg],
                    arrowprops={"arrowstyle": "-|>", "color": "#777777", "shrinkA": 6,
                                "shrinkB": 6, "lw": 0.8,
                                "connectionstyle": "arc3,rad=-0.25" if wraps else "arc3"},
                    zorder=1)
                local = node.local[number] if number < len(node.local) else None
                if local is not None and not wraps:
                    (x0, y0), (x1, y1) = position[arg], position[node.index]
                    axes.text((x0 + x1) / 2, (y0 + y1) / 2 + 0.12, f"∂ = {local}",
                              ha="center", va="bottom", fontsize=7, color="#1f4e79", zorder=3)
        handles = [Patch(facecolor=color, edgecolor="#555555", label=kind)
                   for kind, color in _COLORS.items()]
        handles.append(Patch(facecolor="white", edgecolor=_GRADIENT_COLOR,
                             label="red: grad = ∂output/∂node"))
        if any(value is not None for node in graph.nodes for value in node.local):
            handles.append(Patch(facecolor="white", edgecolor="#1f4e79",
                                 label="blue on an edge: ∂node/∂argument"))
        figure.legend(handles=handles, loc="upper right", fontsize=7, ncols=len(handles),
                      frameon=False, bbox_to_anchor=(1.0, 0.95))
        figure.suptitle(graph.title, fontsize=9)
        figure.savefig(path, bbox_inches="tight")
