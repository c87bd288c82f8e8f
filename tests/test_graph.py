"""``gradcheck-lab graph``: nodes, values, per-node adjoints, layout, and the files written."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from gradcheck_lab.casefile.loader import build_case
from gradcheck_lab.casefile.selection import select_case
from gradcheck_lab.doors.cli import EXIT_ERROR, EXIT_PASS, main
from gradcheck_lab.inspect.graph import build_graph, layout
from gradcheck_lab.oracles.base import make_probes
from gradcheck_lab.oracles.points import make_point
from gradcheck_lab.oracles.symbolic import numpy_forward
from gradcheck_lab.program.sweep import node_adjoints
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
