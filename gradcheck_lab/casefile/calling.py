"""How a case calls its function under test, beyond the inputs: ``constants:`` (keyword
values for the impl, names in the expressions), several named outputs, an ``nn.Module``'s
parameters bound to inputs (``params:``), and declared surrogate gradients (``surrogate:``).

Each is built from the validated model into the program and the Case; errors name the key,
made by the case's ``Locator`` and ``Expressions`` (``locating``), never by the loader.
"""

from __future__ import annotations

from fractions import Fraction
from functools import partial
from typing import Any

from gradcheck_lab.casefile.case import InputSpec
from gradcheck_lab.casefile.locating import Expressions, Locator
from gradcheck_lab.casefile.schema import CaseModel
from gradcheck_lab.ops import Shape, suggest
from gradcheck_lab.program import Program
from gradcheck_lab.program.graph import ProgramBuilder
from gradcheck_lab.program.ir import Call, Name

GRAD_OUTPUT = "grad_output"  # the cotangent, by name, in a surrogate expression
PACK = "pack"  # the op that joins named outputs into the one output the oracles see


def add_constants(where: Locator, model: CaseModel, builder: ProgramBuilder,
                  inputs: tuple[InputSpec, ...]) -> dict[str, Any]:
    """``constants:``: each number is a name in the expressions, at the binary value the impl
    gets; every value goes to the impl as a keyword argument."""
    values: dict[str, Any] = {}
    taken = {spec.name for spec in inputs}
    for name, value in (model.constants or {}).items():
        path = ("constants", name)
        if name in taken:
            raise where.error(path, f"{name!r} is already an input")
        if name in (model.let or {}):
            raise where.error(path, f"{name!r} is also a let")
        if name == GRAD_OUTPUT:
            raise where.error(path, f"{GRAD_OUTPUT!r} names the cotangent in surrogate:")
        values[name] = value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            builder.add_named_constant(name, Fraction(value))
    return values


def add_outputs(expressions: Expressions, model: CaseModel,
                builder: ProgramBuilder) -> tuple[int, tuple[tuple[str, Shape], ...]] | None:
    """The output node: one expression's, or the named outputs joined (``PACK``), each a let
    of its name so that reports can name it. Each output's problem is kept in
    ``expressions.found``, as a let's is, and then None is returned."""
    where = expressions.locator
    if not isinstance(model.output, dict):
        written = model.output

        def single() -> tuple[int, tuple[()]]:
            return expressions.expression(builder, ("output",), written, partial(
                builder.add_expression, key="output")), ()

        return expressions.attempt("output", single)
    if not model.output:
        expressions.found.append(where.error(("output",), "output: {} names no output"))
        return None
    named = []
    for name, text in model.output.items():
        shape = expressions.attempt(name, partial(_named_output, expressions, builder, name,
                                                  text))
        if shape is not None:
            named.append((name, shape))
    if len(named) < len(model.output):
        return None  # what failed is in expressions.found; a pack of the rest means nothing
    pack = Call(PACK, tuple(Name(name, None) for name, _ in named), (), None)
    return builder.add_expression(pack, "output"), tuple(named)


def _named_output(expressions: Expressions, builder: ProgramBuilder, name: str,
                  text: Any) -> Shape:
    """One named output, a let of its name: its shape."""
    path = ("output", name)
    if name in builder.inputs or name in builder.lets:
        raise expressions.locator.error(path, f"{name!r} is already an input or a let")
    index = expressions.expression(builder, path, text, lambda e: builder.add_let(name, e))
    if builder.nodes[index].is_integer:
        raise expressions.locator.error(path, f"output {name!r} is an integer tensor")
    return builder.nodes[index].shape


def module_params(where: Locator, model: CaseModel, inputs: tuple[InputSpec, ...],
                  has_impl: bool) -> dict[str, str]:
    """``params:``: module parameter -> input, each input a differentiated one, once."""
    if model.params is None:
        return {}
    if not has_impl:
        raise where.error(("params",), "params binds an nn.Module's parameters: it needs "
                                       "impl: FILE.py:NAME giving the module")
    by_name = {spec.name: spec for spec in inputs}
    seen: dict[str, str] = {}
    for parameter, name in model.params.items():
        path = ("params", parameter)
        if name not in by_name:
            raise where.error(path, f"{name!r} is not an input{suggest(name, list(by_name))}")
        if not by_name[name].requires_grad:
            raise where.error(path, f"input {name!r} is not differentiated")
        if name in seen:
            raise where.error(path, f"input {name!r} is bound to {seen[name]!r} already")
        seen[name] = parameter
    return dict(model.params)


def surrogates(expressions: Expressions, model: CaseModel, inputs: tuple[InputSpec, ...],
               output_shape: Shape, constants: dict[str, Any],
               max_node_elements: int) -> dict[str, Program]:
    """``surrogate:``: per input, the VJP its backward means to return, as a program of the
    inputs, the numeric constants and ``grad_output`` (the cotangent, the output's shape)."""
    where = expressions.locator
    programs: dict[str, Program] = {}
    by_name = {spec.name: spec for spec in inputs}
    for name, text in (model.surrogate or {}).items():
        path = ("surrogate", name)
        if name not in by_name:
            raise where.error(path, f"{name!r} is not an input{suggest(name, list(by_name))}")
        if not by_name[name].requires_grad:
            raise where.error(path, f"input {name!r} is not differentiated: it has no "
                                    "gradient to declare")
        if GRAD_OUTPUT in by_name:
            raise where.error(path, f"an input is named {GRAD_OUTPUT!r}, which surrogate: "
                                    "uses for the cotangent")
        builder = ProgramBuilder(max_node_elements)
        for spec in inputs:
            builder.add_input(spec.name, spec.shape, spec.is_integer, False)
        builder.add_input(GRAD_OUTPUT, output_shape, False, False)
        for constant, value in constants.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                builder.add_named_constant(constant, Fraction(value))
        index = expressions.expression(builder, path, text,
                                       partial(builder.add_expression, key=f"surrogate.{name}"))
        shape = builder.nodes[index].shape
        if shape != by_name[name].shape:
            raise where.error(path, f"the surrogate gradient has shape {list(shape)}; input "
                                    f"{name!r} has shape {list(by_name[name].shape)}")
        programs[name] = builder.build(index)
    if programs and (model.order != 1 or "forward" in model.modes):
        raise where.error(("surrogate",), "surrogate: declares a backward (reverse mode, "
                                          "first order) only")
    return programs

