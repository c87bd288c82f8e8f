"""Writes docs/case-format.md, the case-format reference, from the JSON Schema of case files
(`gradcheck-lab schema`), so the page lists exactly the keys the loader accepts.

    .venv/bin/python docs/gen_case_format.py            # rewrite docs/case-format.md
    .venv/bin/python docs/gen_case_format.py --check    # exit 1 if the page is stale

tests/test_docs.py fails when the committed page differs from what this prints. The schema has
titles but no per-key descriptions yet: DESCRIPTIONS below supplies them, and a key the schema
gains without one here stops the generator, so a new key cannot go undocumented. A key's
`description` in the schema, once there, wins over the text here.
"""

from __future__ import annotations

import argparse
import html
import json
import re
import sys
from pathlib import Path
from typing import Any

from gradcheck_lab.casefile.schema import case_file_json_schema

PAGE = Path(__file__).resolve().parent / "case-format.md"
PLAIN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Bare words that some YAML readers take for booleans or null: quoted, to be safe.
YAML_WORDS = {"true", "false", "null", "yes", "no", "on", "off", "y", "n", "~"}

# Sections in reading order; a definition the schema gains later is appended after these.
ORDER = ("Case", "LiteralInput", "RandomInput", "ToleranceModel", "ExpectModel", "TrainingModel",
         "NestedNumbers")

INTROS: dict[str, str] = {
    "Case": "One case: a mapping at the top of the file, or an item of `cases:`.",
    "LiteralInput": (
        "An input given by its values, when it needs more than a plain number or list: an "
        "integer tensor (class targets) or a constant that is not differentiated."),
    "RandomInput": (
        "An input drawn at random, reproducibly: `g = torch.Generator().manual_seed(seed)`, "
        "then in float64 on CPU `torch.randn(shape, generator=g) * std + mean`, "
        "`torch.rand(shape, generator=g) * (high - low) + low` or "
        "`torch.randint(low, high, shape, generator=g)`, then cast to the case's dtype."),
    "ToleranceModel": (
        "Replaces the derived tolerance (`rtol = sqrt(eps)` of the dtype, `atol` from the "
        "scale of the terms; see [How a verdict is reached](verdicts.md)). Either one "
        "mapping for every dtype, or a mapping from dtype to one of these."),
    "ExpectModel": (
        "Hand-worked answers, checked too: the output's value and the gradient of each "
        "input. A decimal is checked to the digits written (`0.84` means 0.835 to 0.845), an "
        "integer or an expression exactly; `.inf`, `-.inf` and `.nan` are answers too (outside "
        "a function's domain)."),
    "TrainingModel": (
        "The user's training step, checked against the spec's gradient: `step` is called as "
        "`step(params=..., batch=..., lr=...)`, updates the params in place and returns the "
        "loss."),
    "NestedNumbers": (
        "A number, or a non-empty list of NestedNumbers: `2`, `[1.5, -2]`, "
        "`[[1, 0], [0, 1]]`. Integers stay exact; a decimal is the float64 nearest it, the "
        "value torch sees, for every oracle."),
}

DESCRIPTIONS: dict[str, dict[str, str]] = {
    "Case": {
        "name": "Unique within the file; the file's name when omitted.",
        "description": "Free text, shown by `explain`.",
        "inputs": (
            "Ordered. Each name is an identifier (not a dunder, not a Python keyword); each "
            "value a number, a nested list, a [LiteralInput](#literalinput) or a "
            "[RandomInput](#randominput). Every real-valued input is differentiated unless "
            "`requires_grad: false`."),
        "let": (
            "Ordered steps `name: expression`; each may use the inputs and earlier steps. "
            "`explain` shows each step's local derivatives."),
        "output": (
            "The spec, an expression: a scalar, or a tensor (its whole Jacobian is checked). "
            "The expression language is listed in the README (Expressions). Several outputs "
            "are a mapping of names to expressions (`{o: weights @ v, attn: weights}`): the "
            "impl returns a tuple in that order or a dict, every output's Jacobian is checked "
            "jointly (cotangents on all outputs at once, and on each alone), and a mismatch "
            "names its output. `expect.value` is for a single output. Left out in a case "
            "with an `impl`, the spec is traced from the impl's own forward (the aten ops it "
            "runs at the first point); `let`, `expect`, `training` and `surrogate` then need "
            "a written output."),
        "fd_step": (
            "Finite differences' step, relative to `max(1, |x|)`, in place of the one derived "
            "from the function's measured precision (torch's `eps`); the error bars still "
            "come from the steps h and 2h."),
        "impl": (
            "`FILE.py:NAME`: a top-level callable in a Python file next to the case file, "
            "called with every input and every constant as keyword arguments. Autograd and "
            "finite differences then run on it, the symbolic oracle on `output`."),
        "constants": (
            "Values the impl gets as keyword arguments: numbers, bools, strings, or lists of "
            "them (`{k: 5.0, lambd: 0.5}`), so a Function with non-tensor arguments "
            "(`MulConstant.apply(x, k)`) needs no wrapper. Numbers are names in the "
            "expressions too, at the binary value the impl gets (`0.1` is the float)."),
        "params": (
            "Binds an `nn.Module`'s parameters to inputs (`{0.weight: W1, 0.bias: b1}`, as "
            "`named_parameters()` names them): `impl` then names a callable that returns the "
            "module (`NAME()`, or `NAME(**constants)`), which is moved to the case's dtype "
            "and called through `torch.func.functional_call` with the other inputs, in "
            "order, as its forward's arguments."),
        "surrogate": (
            "The gradient a backward means to compute where it is not the forward's "
            "derivative on purpose (straight-through, gradient reversal, gradient scaling): "
            "per input, an expression of the inputs, the constants and `grad_output` (the "
            "output's cotangent), as `{x: \"-lambd * grad_output\"}`. Symbolic vs autograd "
            "then checks that intent, finite differences check the forward's values only, "
            "and the report says so. Reverse mode, first order only."),
        "expect": "Hand-worked answers, checked too: see [ExpectModel](#expectmodel).",
        "dtypes": "One check per dtype.",
        "devices": "One check per device; `cuda` results are `skip` without a GPU.",
        "tolerance": "Replaces the derived tolerance: see [ToleranceModel](#tolerancemodel).",
        "seed": "Seeds the random cotangents and directions.",
        "nondet_tol": (
            "How far a second backward may differ from the first; by default exactly 0 on "
            "cpu, the dtype's tolerance on cuda."),
        "points": (
            "Check at N points: the first as written, then every random input re-drawn "
            "(literals stay)."),
        "avoid_kinks": (
            "`true` moves a point that sits on a kink (relu or abs at 0) off it; otherwise "
            "that element is `skip`."),
        "order": ("`2` checks Hessian-vector products too, three ways (symbolic, double "
                  "backward, a finite difference of the gradient), at any size."),
        "modes": "`[reverse, forward]` checks Jacobian-vector products (forward mode) too.",
        "training": (
            "The user's training step (model, loss, SGD update), checked against the spec's "
            "gradient: see [TrainingModel](#trainingmodel)."),
    },
    "LiteralInput": {
        "value": "The values: a number or nested lists.",
        "dtype": "`int64` for an integer tensor, never differentiated.",
        "requires_grad": "`false` holds the input constant.",
    },
    "RandomInput": {
        "shape": "The tensor's shape.",
        "init": "The distribution, or constant zeros or ones.",
        "seed": "Without it, a seed derived from the input's name (stable across runs).",
        "low": "Lower bound of `uniform` and `randint`.",
        "high": "Upper bound (exclusive) of `uniform` and `randint`.",
        "mean": "Mean of `randn`.",
        "std": "Standard deviation of `randn`.",
        "dtype": "`int64` for an integer tensor; `randint` always gives one.",
        "requires_grad": "`false` holds the input constant.",
    },
    "ToleranceModel": {
        "rtol": "Relative tolerance; `sqrt(eps)` of the dtype when omitted.",
        "atol": "Absolute tolerance; derived from `rtol` and the scale of the terms when omitted.",
    },
    "TrainingModel": {
        "step": "`FILE.py:NAME`, found like `impl`.",
        "params": "The names of the inputs the step updates, without repeats.",
        "lr": "The learning rate passed to the step.",
        "steps": "How many training steps to run.",
        "data": (
            "`mnist` replaces the batch's images and labels by MNIST images, the digits in "
            "turn, when the optional extra `gradcheck-lab[mnist]` is installed (the case's "
            "own inputs otherwise, said in the notes)."),
    },
    "ExpectModel": {
        "value": "The output's value: a number, nested lists, or an expression of the inputs.",
        "grad": (
            "Per input name, its gradient: a number, nested lists, or an expression of the "
            "inputs (`\"x / 2\"`)."),
    },
}

TEMPLATE = """\
# Case format

<!-- Generated by docs/gen_case_format.py from the JSON Schema; edit that script, not this page. -->

A case file is YAML (1.2: `1e-7` is a number, `yes` is text) holding one case, a mapping, or
several: `cases:` followed by a list of mappings. Every key is listed below with its type and
default, generated from the JSON Schema that `gradcheck-lab schema` prints (committed as
`case.schema.json`), which is built from the same models that validate case files: a key
missing here does not exist. Unknown keys, wrong types, NaN and inf are errors at their line.

Editors that speak the YAML language server validate and complete a case file with the schema
given in its first line:

```yaml
# yaml-language-server: $schema=../case.schema.json
```

`gradcheck-lab new NAME` writes a small case that passes, with every key shown.
The [tutorial](tutorial.md) writes one from scratch.

{sections}
"""


class UndocumentedError(Exception):
    """The schema has a key or definition this generator has no words for."""


def ref_name(ref: str) -> str:
    return ref.rsplit("/", 1)[-1]


def anchor(name: str) -> str:
    # Python-Markdown's toc slug of a heading that is a bare identifier.
    return name.lower()


def yaml_text(value: Any) -> str:
    """A default as it would be written in a case file (YAML flow style)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(yaml_text(item) for item in value) + "]"
    if isinstance(value, str) and PLAIN.match(value) and value.lower() not in YAML_WORDS:
        return value  # as case files write it: `[float64]`, not `["float64"]`
    return json.dumps(value)


def bounds(node: dict[str, Any]) -> str:
    parts = []
    if "minimum" in node and "maximum" in node:
        parts.append(f"{node['minimum']} to {node['maximum']}")
    elif "minimum" in node:
        parts.append(f"≥ {node['minimum']}")
    elif "maximum" in node:
        parts.append(f"≤ {node['maximum']}")
    if "exclusiveMinimum" in node:
        parts.append(f"> {node['exclusiveMinimum']}")
    if "pattern" in node:
        # Inline HTML with the pipe as an entity: a bare pipe would end the table cell on
        # GitHub, even inside backticks.
        pattern = html.escape(node["pattern"]).replace("|", "&#124;")
        parts.append(f"matching <code>{pattern}</code>")
    return f" ({', '.join(parts)})" if parts else ""


def type_text(node: dict[str, Any]) -> str:
    """A JSON Schema node in words, with links to the definitions it refers to."""
    if "$ref" in node:
        name = ref_name(node["$ref"])
        return f"[{name}](#{anchor(name)})"
    for combinator in ("anyOf", "oneOf"):
        if combinator in node:
            options = [option for option in node[combinator] if option != {"type": "null"}]
            return " or ".join(type_text(option) for option in options)
    if "const" in node:
        return f"`{node['const']}`"
    if "enum" in node:
        return "one of " + ", ".join(f"`{yaml_text(v)}`" for v in node["enum"])
    kind = node.get("type")
    if isinstance(kind, list):
        return " or ".join(kind)
    if kind == "array":
        size = "non-empty " if node.get("minItems") == 1 else ""
        return f"{size}list of {type_text(node['items'])}"
    if kind == "object":
        if "patternProperties" in node:
            ((_, value),) = node["patternProperties"].items()
            size = "non-empty " if node.get("minProperties") == 1 else ""
            return f"{size}mapping of name → {type_text(value)}"
        if "propertyNames" in node:
            keys = ", ".join(f"`{v}`" for v in node["propertyNames"]["enum"])
            return f"mapping of ({keys}) → {type_text(node['additionalProperties'])}"
        if "properties" in node:
            keys = ", ".join(f"`{k}`: {type_text(v)}" for k, v in node["properties"].items())
            return f"mapping with {keys}"
        return "mapping"
    return f"{kind}{bounds(node)}"


def default_text(name: str, node: dict[str, Any], required: list[str]) -> str:
    if name in required:
        return "required"
    if node.get("default") is None:
        return "—"  # no value: the key's absence means what the description says
    return f"`{yaml_text(node['default'])}`"


def description(definition: str, key: str, node: dict[str, Any]) -> str:
    if node.get("description"):
        return str(node["description"])
    try:
        return DESCRIPTIONS[definition][key]
    except KeyError:
        raise UndocumentedError(
            f"the schema's {definition}.{key} has no description: "
            "give the field one (Field(description=...)) in gradcheck_lab/casefile/schema.py, "
            "or add it to DESCRIPTIONS in docs/gen_case_format.py") from None


def section(name: str, node: dict[str, Any]) -> str:
    intro = INTROS.get(name) or node.get("description")
    if not intro:
        raise UndocumentedError(f"add an intro for the schema's {name} to INTROS")
    lines = [f"## {name}", "", intro, ""]
    properties = node.get("properties", {})
    if not properties:
        lines += [f"Type: {type_text(node)}.", ""]
        return "\n".join(lines)
    unknown = set(DESCRIPTIONS.get(name, {})) - set(properties)
    if unknown:
        raise UndocumentedError(f"the schema's {name} has no keys {sorted(unknown)}: remove them "
                           "from DESCRIPTIONS")
    required = node.get("required", [])
    lines += ["| key | type | default | description |", "| --- | --- | --- | --- |"]
    for key, value in properties.items():
        lines.append(f"| `{key}` | {type_text(value)} | {default_text(key, value, required)} | "
                     f"{description(name, key, value)} |")
    lines.append("")
    return "\n".join(lines)


def top_level(schema: dict[str, Any]) -> str:
    forms = " or ".join(type_text(option) for option in schema["anyOf"])
    return f"## The file\n\nOne case, or several under `cases:`.\n\nType: {forms}.\n"


def render(schema: dict[str, Any] | None = None) -> str:
    schema = case_file_json_schema() if schema is None else schema
    definitions = schema["$defs"]
    names = [n for n in ORDER if n in definitions] + sorted(set(definitions) - set(ORDER))
    sections = [top_level(schema), *(section(n, definitions[n]) for n in names)]
    return TEMPLATE.replace("{sections}", "\n".join(sections).rstrip("\n"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the page is stale")
    args = parser.parse_args(argv)
    try:
        text = render()
    except UndocumentedError as problem:
        print(f"{Path(__file__).name}: {problem}", file=sys.stderr)
        return 1
    if args.check:
        stale = not PAGE.exists() or PAGE.read_text(encoding="utf-8") != text
        if stale:
            print(f"{PAGE} is stale: run {Path(__file__).name}", file=sys.stderr)
        return int(stale)
    PAGE.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
