"""The JSON Schema of the case format (`gradcheck-lab schema`, committed as case.schema.json)
and `gradcheck-lab new`: editor support that cannot drift from the loader."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from gradcheck_lab import run_file
from gradcheck_lab.casefile.schema import case_file_json_schema
from gradcheck_lab.casefile.yaml_reader import read_yaml
from gradcheck_lab.doors.cli import main
from tests.conftest import CASES, DATA, REPO

SCHEMA_FILE = REPO / "case.schema.json"
SCHEMA_COMMENT = "# yaml-language-server: $schema=../case.schema.json"


def validator() -> jsonschema.Draft202012Validator:
    schema = case_file_json_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def test_the_committed_schema_is_the_generated_one() -> None:
    assert json.loads(SCHEMA_FILE.read_text()) == case_file_json_schema(), (
        "case.schema.json is stale: run `gradcheck-lab schema > case.schema.json`")


def test_the_schema_command_prints_it(capsys) -> None:
    assert main(["schema"]) == 0
    assert json.loads(capsys.readouterr().out) == case_file_json_schema()


@pytest.mark.parametrize("path", sorted(CASES.glob("*.yaml")), ids=lambda p: p.name)
def test_bundled_cases_validate_and_point_editors_at_the_schema(path: Path) -> None:
    text = path.read_text()
    assert text.splitlines()[0] == SCHEMA_COMMENT
    assert list(validator().iter_errors(read_yaml(text).data)) == []


@pytest.mark.parametrize("name", ["unknown_key_typo", "unknown_dtype", "unknown_device",
                                  "missing_output", "string_tolerance", "empty_inputs",
                                  "negative_shape", "string_input"])
def test_the_schema_rejects_what_the_loader_rejects(name: str) -> None:
    data = read_yaml((DATA / "hostile" / f"{name}.yaml").read_text()).data
    assert list(validator().iter_errors(data))


def _keys(schema: dict) -> list[tuple[str, str, dict]]:
    return [(name, key, node) for name, definition in schema["$defs"].items()
            for key, node in definition.get("properties", {}).items()]


def test_every_key_and_definition_has_a_description_for_editors() -> None:
    schema = case_file_json_schema()
    assert [f"{name}.{key}" for name, key, node in _keys(schema)
            if not node.get("description")] == []
    assert [name for name, definition in schema["$defs"].items()
            if not definition.get("description")] == []
    from gradcheck_lab.casefile.descriptions import DESCRIPTIONS

    # Nothing described that the schema does not have (a renamed key left behind).
    described = {(name, key) for name, keys in DESCRIPTIONS.items() for key in keys}
    assert described - {(name, key) for name, key, _ in _keys(schema)} == set()


@pytest.mark.parametrize("document, path, says", [
    ({"inputs": {"x": 1}, "output": "x", "dtypes": ["float8"]}, ["dtypes", 0], "float8"),
    ({"cases": [{"inputs": {"x": 1}, "output": "x"}, {"inputs": {"x": 1}, "output": "x",
                                                       "order": 3}]}, ["cases", 1, "order"],
     "3"),
    ({"inputs": {"x": 1}}, [], "'output' is a required property"),
    ({"inputs": {"x": 1}, "output": "x", "tolerence": {}}, [], "tolerence"),
], ids=["a dtype", "a key of the second case", "no output", "a misspelt key"])
def test_a_validation_error_points_at_the_wrong_key(document: dict, path: list,
                                                    says: str) -> None:
    """One error at the key that is wrong, not every form of the file's top level."""
    errors = list(validator().iter_errors(document))
    best = jsonschema.exceptions.best_match(errors)
    assert list(best.absolute_path) == path, (best.message, list(best.absolute_path))
    assert says in best.message
    assert len(best.message) < 300  # not the whole document


@pytest.mark.slow
@pytest.mark.parametrize("with_impl", [False, True])
def test_new_writes_a_case_that_passes(tmp_path: Path, monkeypatch, with_impl: bool) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["new", "demo", *(["--impl"] if with_impl else [])]) == 0
    expected = {"demo.yaml", "demo_impl.py"} if with_impl else {"demo.yaml"}
    assert {p.name for p in tmp_path.iterdir()} == expected
    results = run_file(tmp_path / "demo.yaml")
    assert [(r.dtype, r.status) for r in results] == [("float64", "pass"), ("float32", "pass")]
    assert all(r.oracles["autograd"].startswith("impl" if with_impl else "spec")
               for r in results)
    assert list(validator().iter_errors(read_yaml((tmp_path / "demo.yaml").read_text()).data)) \
        == []


def test_new_refuses_to_overwrite_or_a_bad_name(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "demo.yaml").write_text("mine\n")
    assert main(["new", "demo"]) == 2
    assert (tmp_path / "demo.yaml").read_text() == "mine\n"
    assert main(["new", "../escape"]) == 2
    assert "already exists" in capsys.readouterr().err


# fd_step's range follows the case's dtypes (casefile.schema.fd_step_range): the coarsest
# dtype's round-off decides how small a step still gives a meaningful difference quotient.
FD_STEP_FLOORS = {"float64": 2.220446049250313e-14, "float32": 1.1920928955078125e-05,
                  "float16": 0.09765625, "bfloat16": 2.0 ** (-7 / 3)}


@pytest.mark.parametrize("dtype", sorted(FD_STEP_FLOORS))
def test_fd_step_is_refused_below_its_dtypes_floor_at_its_key(tmp_path: Path,
                                                              dtype: str) -> None:
    from gradcheck_lab.casefile import load_file
    from gradcheck_lab.casefile.schema import fd_step_range
    from gradcheck_lab.dtypes import EPSILON

    floor = FD_STEP_FLOORS[dtype]
    assert fd_step_range(dtype) == pytest.approx((floor, 1.0), rel=1e-12)
    # The step finite differences derive for a function computing in the dtype, eps^(1/3)
    # (subject.precision), and float64's 1e-6 for float64, are inside the range.
    derived = 1e-6 if dtype == "float64" else EPSILON[dtype] ** (1 / 3)
    case = tmp_path / "step.yaml"
    for step, valid in ((floor * 0.99, False), (floor * 1.01, True), (derived, True),
                        (1.0, True), (1.5, False), (1e-13, dtype == "float64")):
        case.write_text(f"name: step\ninputs: {{x: [1.0, 2.0]}}\noutput: sum(x * x)\n"
                        f"dtypes: [{dtype}]\nfd_step: {step!r}\n")
        (loaded,) = load_file(case)
        if valid:
            assert loaded.fd_step == step, (step, loaded)
            continue
        text = loaded.render()
        assert text.startswith(f"{case}:5: fd_step: "), text
        assert "leaves finite differences meaningless" in text, text
        assert (f"{floor:.3g}, 1]" in text and
                (dtype == "float64" or f"computes in {dtype}" in text)), text


def test_fd_step_suits_every_dtype_of_the_case() -> None:
    import gradcheck_lab
    from gradcheck_lab.errors import CaseError

    with pytest.raises(CaseError, match=r"fd_step: 0.001 leaves .* computes in bfloat16"):
        gradcheck_lab.check(impl=lambda x: (x * x).sum(), inputs={"x": [1.0, 2.0]},
                            output="sum(x * x)", dtypes=["float64", "bfloat16"],
                            fd_step=1e-3)
    # float32's floor holds for float32 and float64 together.
    results = gradcheck_lab.check(impl=lambda x: (x * x).sum(), inputs={"x": [1.0, 2.0]},
                                  output="sum(x * x)", dtypes=["float64", "float32"],
                                  fd_step=1e-3)
    assert all(result.status == "pass" for result in results), results
