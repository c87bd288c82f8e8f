"""``gradcheck-lab graph``, painted with matplotlib: one box per node, coloured by its kind
(input, let, op, output), with its value in black inside and its gradient in red under it;
every edge along the route that ``graph_layout`` found, with an arrowhead into its box and, on
a scalar graph, its local derivative in blue; the title and a legend above. Written as SVG
(labels kept as text), PNG or PDF."""

from __future__ import annotations

import math
import textwrap
from pathlib import Path
from typing import IO, TYPE_CHECKING

from gradcheck_lab.inspect.graph import CaseGraph
from gradcheck_lab.inspect.graph_layout import FONT, SMALL, Drawing, arrange

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.backend_bases import RendererBase
    from matplotlib.figure import Figure

_COLORS = {"input": "#dbe9f6", "let": "#dff0d8", "op": "#f5f5f5", "output": "#fbe3c8"}
_GRADIENT_COLOR = "#b03a2e"
_EDGE_COLOR, _LABEL_COLOR = "#777777", "#1f4e79"


def render(graph: CaseGraph) -> tuple[Figure, Drawing]:
    """The figure, sized in inches to the layout (so that data units are inches), and the
    geometry it draws."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure()
    canvas = FigureCanvasAgg(figure)  # the Agg backend, without switching pyplot's global one
    renderer = canvas.get_renderer()

    def extent(text: str, size: int) -> tuple[float, float]:
        artist = figure.text(0, 0, text, fontsize=size)
        box = artist.get_window_extent(renderer)
        artist.remove()
        return box.width / figure.dpi, box.height / figure.dpi

    drawing = arrange(graph, extent)
    header = _header(figure, renderer, graph, drawing.width)
    figure.set_size_inches(drawing.width, drawing.height + header)
    axes = figure.add_axes((0.0, 0.0, 1.0, drawing.height / (drawing.height + header)))
    axes.set_axis_off()
    axes.set_xlim(0.0, drawing.width)
    axes.set_ylim(-drawing.height, 0.0)
    _paint(axes, graph, drawing)
    return figure, drawing


def _header(figure: Figure, renderer: RendererBase, graph: CaseGraph, width: float) -> float:
    """The title (wrapped to the drawing's width) and the legend above the graph, placed from
    the figure's top; their height."""
    from matplotlib.patches import Patch
    from matplotlib.transforms import ScaledTranslation

    handles = [Patch(facecolor=color, edgecolor="#555555", label=kind)
               for kind, color in _COLORS.items()]
    handles.append(Patch(facecolor="white", edgecolor=_GRADIENT_COLOR,
                         label="red: grad = ∂output/∂node"))
    if any(value is not None for node in graph.nodes for value in node.local):
        handles.append(Patch(facecolor="white", edgecolor=_LABEL_COLOR,
                             label="blue on an edge: ∂node/∂argument"))
    title = figure.text(0.5, 1.0, graph.title, fontsize=9, ha="center", va="top")
    room = width - 0.3
    if title.get_window_extent(renderer).width / figure.dpi > room:
        characters = len(graph.title) * room / (title.get_window_extent(renderer).width
                                                 / figure.dpi)
        title.set_text(textwrap.fill(graph.title, int(characters)))
    columns = len(handles)
    while True:  # as many legend entries to a row as fit the width
        legend = figure.legend(handles=handles, loc="upper center", fontsize=7, ncols=columns,
                               frameon=False)
        if legend.get_window_extent(renderer).width / figure.dpi <= room or columns == 1:
            break
        legend.remove()
        columns = (columns + 1) // 2
    title_height = title.get_window_extent(renderer).height / figure.dpi
    # From the figure's top edge: offsets in inches, whatever the figure's final size.
    top = figure.transFigure
    title.set_transform(top + ScaledTranslation(0, -0.1, figure.dpi_scale_trans))
    legend.set_bbox_to_anchor((0.5, 1.0), transform=top + ScaledTranslation(
        0, -0.15 - title_height, figure.dpi_scale_trans))
    return 0.25 + title_height + legend.get_window_extent(renderer).height / figure.dpi


def _paint(axes: Axes, graph: CaseGraph, drawing: Drawing) -> None:
    from matplotlib.patches import FancyBboxPatch

    for node in graph.nodes:
        x0, y0, x1, y1 = drawing.boxes[node.index]
        axes.add_patch(FancyBboxPatch(
            (x0, y0), x1 - x0, y1 - y0, boxstyle="round,pad=0,rounding_size=0.05",
            facecolor=_COLORS[node.kind], edgecolor="#555555", linewidth=1.0, zorder=2,
            gid=f"box {node.index}"))
        # The value in the box; the gradient, in red, under it.
        axes.text((x0 + x1) / 2, (y0 + y1) / 2, "\n".join(node.lines[:2]), ha="center",
                  va="center", fontsize=FONT, zorder=3, gid=f"value {node.index}")
        g0, _, g1, g_top = drawing.gradients[node.index]
        axes.text((g0 + g1) / 2, g_top, node.lines[2], ha="center", va="top",
                  fontsize=SMALL, color=_GRADIENT_COLOR, zorder=3, gid=f"grad {node.index}")
    for edge in drawing.edges:
        name = f"edge {edge.arg} {edge.node} {edge.number}"
        xs, ys = zip(*edge.points, strict=True)
        axes.plot(xs, ys, color=_EDGE_COLOR, linewidth=0.8, zorder=1, gid=name,
                  solid_joinstyle="round")
        # The arrowhead on the last run (horizontal, into the box's side).
        (ax, ay), (bx, by) = edge.points[-2], edge.points[-1]
        back = min(0.1, math.dist((ax, ay), (bx, by))) / math.dist((ax, ay), (bx, by))
        axes.annotate("", xy=(bx, by), xytext=(bx - back * (bx - ax), by - back * (by - ay)),
                      arrowprops={"arrowstyle": "-|>", "color": _EDGE_COLOR, "lw": 0.8,
                                  "shrinkA": 0, "shrinkB": 0, "mutation_scale": 8},
                      zorder=1)
        if edge.label is not None and edge.label_at is not None:
            axes.text(*edge.label_at, edge.label, ha="center", va="center", fontsize=SMALL,
                      color=_LABEL_COLOR, zorder=4, gid=f"label {name}",
                      bbox={"boxstyle": "square,pad=0.15", "facecolor": "white",
                            "edgecolor": "none"})


def draw(graph: CaseGraph, path: Path, file: IO[bytes] | None = None) -> None:
    """Write the drawing to ``path``, or to ``file`` where given (``path`` opened by the
    caller, as the command line opens every output: a FIFO or a device in place, never by
    matplotlib); the format follows the path's suffix (.svg, .png or .pdf)."""
    import matplotlib

    # svg.fonttype "none": labels stay <text> in an SVG (searchable, and what the tests read).
    with matplotlib.rc_context({"svg.fonttype": "none"}):
        figure, _ = render(graph)
        figure.savefig(path if file is None else file, format=path.suffix[1:].lower())
