"""``gradcheck-lab graph``: nodes, values, per-node adjoints, layout, routing, and the files
written."""

from __future__ import annotations

import itertools
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from gradcheck_lab.casefile.loader import build_case
from gradcheck_lab.casefile.selection import select_case
from gradcheck_lab.doors.cli import EXIT_ERROR, EXIT_PASS, main
from gradcheck_lab.inspect.graph import build_graph
from gradcheck_lab.inspect.graph_drawing import render
from gradcheck_lab.inspect.graph_layout import COLUMNS_PER_BAND, banded, layout
from gradcheck_lab.oracles.symbolic import numpy_forward
from gradcheck_lab.pipeline.tracing import with_spec
from gradcheck_lab.program.sweep import node_adjoints
from gradcheck_lab.subject.points import make_point
from gradcheck_lab.subject.probes import make_probes
from tests.conftest import CASES

R144 = CASES / "r144.yaml"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
SVG_TEXT = "{http://www.w3.org/2000/svg}text"


def svg_texts(path: Path) -> list[str]:
    root = ET.parse(path).getroot()  # raises unless the file is well-formed XML
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    return ["".join(element.itertext()) for element in root.iter(SVG_TEXT)]


@pytest.mark.slow
def test_r144_svg_holds_every_label_as_text(tmp_path: Path, capsys) -> None:
    out = tmp_path / "graph.svg"
    assert main(["graph", str(R144), "-o", str(out)]) == EXIT_PASS
    assert capsys.readouterr().out == f"wrote {out}\n"
    texts = svg_texts(out)
    for label in ("x", "y", "z", "p = x + y", "q = p * z", "output = q ** 2",
                  "value 4", "value 12", "value 144", "grad 72", "grad 96", "grad 24",
                  "grad 1"):
        assert label in texts, label
    assert any(text.startswith("r144 (float64)") for text in texts)


@pytest.mark.slow
def test_png_has_the_png_signature(tmp_path: Path) -> None:
    out = tmp_path / "graph.png"
    assert main(["graph", str(R144), "-o", str(out)]) == EXIT_PASS
    assert out.read_bytes()[:8] == PNG_SIGNATURE


def test_nodes_values_and_adjoints_of_r144() -> None:
    graph = build_graph(select_case(str(R144)), "float64")
    labels = {node.lines[0]: node for node in graph.nodes}
    assert set(labels) == {"x", "y", "z", "p = x + y", "q = p * z", "output = q ** 2"}
    assert labels["q = p * z"].lines[1:] == ("value 12", "grad 24")  # ∂r/∂q = 2q
    assert labels["p = x + y"].lines[1:] == ("value 4", "grad 72")  # 2q·z
    assert labels["output = q ** 2"].kind == "output"
    # Edges from arguments to results; the constant 2 is folded into the label
    by_index = {node.index: node for node in graph.nodes}
    edges = {(by_index[a].lines[0], node.lines[0]) for node in graph.nodes for a in node.args}
    assert edges == {("x", "p = x + y"), ("y", "p = x + y"), ("p = x + y", "q = p * z"),
                     ("z", "q = p * z"), ("q = p * z", "output = q ** 2")}


def test_intermediate_ops_are_nodes_and_tensors_show_shape_and_norm() -> None:
    graph = build_graph(select_case(str(CASES / "mse_half.yaml")), "float64")
    labels = {node.lines[0]: node for node in graph.nodes}
    assert "X @ w" in labels and labels["X @ w"].kind == "op"
    assert labels["y_hat = · + b"].kind == "let"
    assert labels["output = · / 16"].kind == "output"
    assert labels["X"].lines[1:] == ("[8, 3], norm 4.144", "no gradient")
    assert labels["w"].lines[2].startswith("grad norm ")


def test_every_node_that_needs_a_gradient_has_an_adjoint_of_its_shape() -> None:
    case = select_case(str(CASES / "layernorm_mlp.yaml"))
    program = case.program
    point = make_point(case, "float64")
    env = numpy_forward(program, point, [program.output])
    cotangent = make_probes(program.output_node.shape, case.seed)[0].cotangent
    every = node_adjoints(program, env, cotangent)
    for index in program.needed_for([program.output]):
        node = program.nodes[index]
        if node.needs_grad and node.op != "const":
            assert every[index].shape == node.shape


def test_layout_is_by_depth_with_inputs_beside_their_first_use() -> None:
    graph = build_graph(select_case(str(CASES / "layernorm_mlp.yaml")), "float64")
    position = layout(graph.nodes)
    by_label = {node.lines[0]: node.index for node in graph.nodes}
    column = {label: position[index][0] for label, index in by_label.items()}
    assert column["x"] == column["W1"] == 0
    assert column["linear(x, W1, b1)"] == 1
    assert column["W2"] == column["linear(h1, W2, b2)"] - 1  # not all in column 0
    assert column["output = cross_entropy(logits, target)"] == max(column.values())
    for node in graph.nodes:  # arguments always to the left of their results
        for arg in node.args:
            assert position[arg][0] < position[node.index][0]


def test_unsupported_suffix_and_missing_directory(tmp_path: Path, capsys) -> None:
    assert main(["graph", str(R144), "-o", str(tmp_path / "graph.jpg")]) == EXIT_ERROR
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and ".svg, .png, .pdf" in err
    assert main(["graph", str(R144), "-o", str(tmp_path / "no" / "graph.svg")]) == EXIT_ERROR
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no such directory" in err


@pytest.mark.parametrize("spec", ["missing.yaml", "{cases}/custom_linear.yaml::nope"])
def test_case_errors_are_one_line(tmp_path: Path, capsys, spec: str) -> None:
    out = tmp_path / "graph.svg"
    assert main(["graph", spec.format(cases=CASES), "-o", str(out)]) == EXIT_ERROR
    captured = capsys.readouterr()
    assert captured.err.startswith("gradcheck-lab graph: ")
    assert captured.err.count("\n") == 1
    assert not out.exists()


def test_unused_let_and_input_are_drawn() -> None:
    case = build_case({"inputs": {"x": 2, "w": 7}, "let": {"unused": "exp(x)"},
                       "output": "x * x"}, label="<test>", base_dir=None, default_name="t")
    labels = {node.lines[0]: node.lines[1:] for node in build_graph(case, "float64").nodes}
    assert labels["w"] == ("value 7", "grad 0")  # differentiated, but the output ignores it
    assert labels["unused = exp(x)"] == ("value 7.38906", "no gradient")
    assert labels["output = x * x"] == ("value 4", "grad 1")
    assert labels["x"] == ("value 2", "grad 4")


@pytest.mark.slow
def test_a_scalar_graph_labels_its_edges_with_local_derivatives(tmp_path: Path) -> None:
    """As a backprop worked by hand: ∂p/∂x = ∂p/∂y = 1, ∂q/∂p = z = 3, ∂q/∂z = p = 4,
    ∂r/∂q = 2q = 24; the gradient in its own colour, and a legend."""
    graph = build_graph(select_case(str(R144)), "float64")
    local = {node.lines[0]: node.local for node in graph.nodes}
    assert local["p = x + y"] == ("1", "1")
    assert local["q = p * z"] == ("3", "4")
    assert local["output = q ** 2"] == ("24",)
    assert local["x"] == ()
    out = tmp_path / "graph.svg"
    assert main(["graph", str(R144), "-o", str(out)]) == EXIT_PASS
    texts = svg_texts(out)
    for label in ("∂ = 1", "∂ = 3", "∂ = 4", "∂ = 24", "input", "let", "output",
                  "red: grad = ∂output/∂node", "blue on an edge: ∂node/∂argument"):
        assert label in texts, label
    root = ET.parse(out).getroot()
    gradient = next(e for e in root.iter(SVG_TEXT) if "".join(e.itertext()) == "grad 96")
    assert "#b03a2e" in (gradient.get("style") or "") + (gradient.get("fill") or "")


@pytest.mark.slow
def test_a_deep_graph_wraps_into_bands_readable_at_1600_px(tmp_path: Path) -> None:
    import struct

    out = tmp_path / "graph.png"
    assert main(["graph", str(CASES / "layernorm_mlp.yaml"), "-o", str(out)]) == EXIT_PASS
    width, height = struct.unpack(">II", out.read_bytes()[16:24])
    assert width <= 1600, (width, height)
    assert height < 2 * width  # bands, not one column per node either


# The routing, checked on what matplotlib draws: boxes and texts by their rendered extents,
# edges by the polylines drawn, all in the axes' data units (inches).
TRANSFORMER_BLOCK = '''
import torch
import torch.nn.functional as F


def block(x, Wq, Wk, Wv, Wo, g1, s1, W1, b1, W2, b2, g2, s2):
    h = F.layer_norm(x, (x.shape[-1],), g1, s1)
    q, k, v = h @ Wq, h @ Wk, h @ Wv
    attention = torch.softmax(q @ k.transpose(-2, -1) / q.shape[-1] ** 0.5, dim=-1)
    x = x + (attention @ v) @ Wo
    h = F.layer_norm(x, (x.shape[-1],), g2, s2)
    x = x + F.linear(F.gelu(F.linear(h, W1, b1)), W2, b2)
    return (x ** 2).mean()
'''


def transformer_block(tmp_path: Path):
    """A pre-norm transformer block (self-attention and an MLP, both residual), its spec
    traced from its torch forward: 47 nodes over 27 depths, edges that skip bands."""
    (tmp_path / "block.py").write_text(TRANSFORMER_BLOCK, encoding="utf-8")
    shapes = {"x": [2, 5, 8], "Wq": [8, 8], "Wk": [8, 8], "Wv": [8, 8], "Wo": [8, 8],
              "g1": [8], "s1": [8], "W1": [16, 8], "b1": [16], "W2": [8, 16], "b2": [8],
              "g2": [8], "s2": [8]}
    inputs = {name: {"shape": shape, "init": "randn", "seed": seed}
              for seed, (name, shape) in enumerate(shapes.items())}
    case = build_case({"name": "block", "inputs": inputs, "impl": "block.py:block"},
                      label=str(tmp_path / "block.yaml"), base_dir=tmp_path, default_name="b")
    return build_graph(with_spec(case), "float64")


def deep_scalar_chain():
    """30 scalar lets with skip connections: a ∂ on every edge, and an input (w) that the
    output uses again, so that an edge crosses every band."""
    lets = {"h0": "tanh(x * w)", "h1": "sin(h0) + x", "h2": "h1 * h0"}
    lets.update({f"h{i}": f"tanh(h{i - 1}) + 0.5 * h{i - 3}" for i in range(3, 30)})
    case = build_case({"inputs": {"x": 0.5, "w": 1.5}, "let": lets, "output": "h29 * w"},
                      label="<test>", base_dir=None, default_name="deep")
    return build_graph(case, "float64")


def graph_of(name: str, tmp_path: Path):
    if name == "transformer_block":
        return transformer_block(tmp_path)
    if name == "deep_scalar_chain":
        return deep_scalar_chain()
    return build_graph(select_case(str(CASES / f"{name}.yaml")), "float64")


def drawn(graph):
    """(boxes, texts, edges, drawing): rectangles (x0, y0, x1, y1) by gid, as rendered, and
    the polylines drawn."""
    figure, drawing = render(graph)
    renderer = figure.canvas.get_renderer()
    (axes,) = figure.axes
    to_data = axes.transData.inverted()

    def rect(artist):
        (x0, y0), (x1, y1) = to_data.transform(artist.get_window_extent(renderer).get_points())
        return (x0, y0, x1, y1)

    boxes = {p.get_gid(): rect(p) for p in axes.patches if (p.get_gid() or "").startswith("box")}
    texts = {t.get_gid(): rect(t) for t in axes.texts if t.get_gid()}
    edges = {line.get_gid(): [tuple(xy) for xy in line.get_xydata()] for line in axes.lines}
    assert len(edges) == sum(len(node.args) for node in graph.nodes)
    return boxes, texts, edges, drawing


def meets(a, b, rect, margin=0.005) -> bool:
    """Whether segment ab enters the rectangle's interior shrunk by ``margin`` (half a
    pixel): touching a box's side where an edge ends is not a crossing."""
    x0, y0, x1, y1 = rect[0] + margin, rect[1] + margin, rect[2] - margin, rect[3] - margin
    low, high = 0.0, 1.0
    for start, delta, lower, upper in ((a[0], b[0] - a[0], x0, x1), (a[1], b[1] - a[1], y0, y1)):
        if delta == 0:
            if not lower < start < upper:
                return False
            continue
        t0, t1 = sorted(((lower - start) / delta, (upper - start) / delta))
        low, high = max(low, t0), min(high, t1)
    return low < high


def clashes(boxes, texts, edges) -> list[str]:
    """Every edge segment that cuts a box (its own two included) or a text: a value, a
    gradient, another edge's ∂ label."""
    found = []
    for name, points in edges.items():
        obstacles = {**boxes, **{gid: r for gid, r in texts.items() if gid != f"label {name}"}}
        found += [f"{name} cuts {gid}" for a, b in itertools.pairwise(points)
                  for gid, r in obstacles.items() if meets(a, b, r)]
    return found


ROUTED = ["r144", "layernorm_mlp", "deep_scalar_chain",
          pytest.param("transformer_block", marks=pytest.mark.slow)]


@pytest.mark.parametrize("name", ROUTED)
def test_no_edge_cuts_a_box_or_a_label(tmp_path: Path, name: str) -> None:
    boxes, texts, edges, _ = drawn(graph_of(name, tmp_path))
    assert clashes(boxes, texts, edges) == []
    for gid, (x0, y0, x1, y1) in texts.items():  # each text inside its box, or clear of all
        if gid.startswith("value"):
            bx0, by0, bx1, by1 = boxes[gid.replace("value", "box")]
            assert bx0 <= x0 and x1 <= bx1 and by0 <= y0 and y1 <= by1, gid
            continue
        others = [other for other, r in {**boxes, **texts}.items() if other != gid
                  and r[0] < x1 and x0 < r[2] and r[1] < y1 and y0 < r[3]]
        assert not others, (gid, others)


def test_the_clash_check_finds_straight_edges_through_boxes(tmp_path: Path) -> None:
    """The check can fail: straight lines from each argument to its result, as drawn before
    the routing, cut through boxes where an edge skips a column or wraps to the next band."""
    boxes, texts, edges, _ = drawn(graph_of("layernorm_mlp", tmp_path))
    straight = {name: [points[0], points[-1]] for name, points in edges.items()}
    assert any("cuts box" in clash for clash in clashes(boxes, texts, straight))
    assert meets((0, 0), (2, 2), (0.9, 0.9, 1.1, 1.1))
    assert not meets((0, 1), (2, 1), (0, 0, 1, 1))  # along a side: not inside


@pytest.mark.parametrize("name", ROUTED)
def test_edges_between_bands_run_through_the_margins_and_the_gap(tmp_path: Path,
                                                                 name: str) -> None:
    """Inside a band an edge stays within the band's height; out of it, a segment is either
    vertical in a margin (left or right of every column) or horizontal in the gap between two
    bands; and an edge into a later band crosses each gap on its way along the gap."""
    graph = graph_of(name, tmp_path)
    boxes, _, edges, drawing = drawn(graph)
    left, right = drawing.content
    bands = drawing.bands
    gaps = [(below[1], above[0]) for above, below in itertools.pairwise(bands)]

    def band_of(gid):
        y = (boxes[gid][1] + boxes[gid][3]) / 2
        return next(b for b, (bottom, top) in enumerate(bands) if bottom <= y <= top)

    for name_, points in edges.items():
        crossed = set()
        for (ax, ay), (bx, by) in itertools.pairwise(points):
            if any(bottom - 1e-9 <= min(ay, by) and max(ay, by) <= top + 1e-9
                   for bottom, top in bands):
                continue
            if ax == bx:
                assert ax < left or ax > right, (name_, ax, ay, by)
                continue
            assert ay == by, (name_, (ax, ay), (bx, by))
            gap = next(g for g, (low, high) in enumerate(gaps) if low < ay < high)
            assert min(ax, bx) < left and max(ax, bx) > right, name_  # all the way across
            crossed.add(gap)
        _, arg, node, _ = name_.split()
        first, last = band_of(f"box {arg}"), band_of(f"box {node}")
        assert crossed == set(range(first, last)), (name_, first, last, crossed)
    if name in ("layernorm_mlp", "deep_scalar_chain", "transformer_block"):
        assert len(bands) >= 2  # the check has wraps to look at


@pytest.mark.parametrize("name", ["layernorm_mlp", "mnist_mlp_ce"])
def test_a_layered_mlp_is_drawn_without_a_crossing(tmp_path: Path, name: str) -> None:
    def cross(p, q, r, s) -> bool:  # proper intersection of segments pq and rs
        def side(a, b, c):
            return (b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0])
        return side(p, q, r) * side(p, q, s) < 0 and side(r, s, p) * side(r, s, q) < 0

    _, _, edges, _ = drawn(graph_of(name, tmp_path))
    segments = [(name_, a, b) for name_, points in edges.items()
                for a, b in itertools.pairwise(points)]
    crossings = [(m, n) for (m, p, q), (n, r, s) in itertools.combinations(segments, 2)
                 if m != n and cross(p, q, r, s)]
    assert crossings == []


@pytest.mark.parametrize("name", [*ROUTED, "mnist_mlp_ce"])
def test_the_drawing_fits_1600_px(tmp_path: Path, name: str) -> None:
    figure, drawing = render(graph_of(name, tmp_path))
    assert figure.get_size_inches()[0] * figure.dpi <= 1600
    assert drawing.width <= 16.0


def test_inputs_at_a_band_break_start_the_next_band_beside_what_they_feed() -> None:
    """A layer's weights (g2, s2 of the second layer norm) do not wrap round to it: they
    move to a column of their own at the start of the next band; so does nothing else."""
    graph = build_graph(select_case(str(CASES / "layernorm_mlp.yaml")), "float64")
    column, bands = banded(graph.nodes, {node.index: 1.0 for node in graph.nodes}, 0.5)
    assert all(len(columns) <= COLUMNS_PER_BAND for columns in bands)
    band = {c: b for b, columns in enumerate(bands) for c in columns}
    by_label = {node.lines[0]: node for node in graph.nodes}
    assert all(column[arg] < column[node.index] for node in graph.nodes for arg in node.args)
    wrapped = {(a, node.index) for node in graph.nodes for a in node.args
               if band[column[a]] != band[column[node.index]]}
    inputs = {node.index for node in graph.nodes if node.kind == "input"}
    assert wrapped and not {a for a, _ in wrapped} & inputs
    layer_norm = by_label["layer_norm(·, g2, s2)"].index
    assert column[by_label["g2"].index] == column[by_label["s2"].index] == column[layer_norm] - 1
    assert column[by_label["g2"].index] == bands[1][0]
    # Within a room of three columns, bands of at most three.
    _, narrow = banded(graph.nodes, {node.index: 1.0 for node in graph.nodes}, 0.5, room=4.0)
    assert max(map(len, narrow)) == 3
