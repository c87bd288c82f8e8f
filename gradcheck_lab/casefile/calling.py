"""How a case calls its function under test, beyond the inputs: ``constants:`` (keyword
values for the impl, names in the expressions), several named outputs, an ``nn.Module``'s
parameters bound to inputs (``params:``), and declared surrogate gradients (``surrogate:``).

Each is built from the validated model into the program and the Case; errors name the key.
"""

from __future__ import annotations

from collections.abc import Callable
from fractions import Fraction
from typing import Any, Protocol

from gradcheck_lab.casefile.case import InputSpec
from gradcheck_lab.casefile.schema import CaseModel
from gradcheck_lab.errors import CaseError
from gradcheck_lab.ops import Shape, suggest
from gradcheck_lab.program import Program
from gradcheck_lab.program.graph import ProgramBuilder
from gradcheck_lab.program.ir import Call, Name

GRAD_OUTPUT = "grad_output"  # the cotangent, by name, in a surrogate expression
PACK = "pack"  # the op that joins named outputs into the one output the oracles see


class Locator(Protocol):
    """What the loader's case builder offers: errors at a key, and parsing at a key."""

    def error(self, path: tuple, message: str, offset: int | None = None) -> CaseError: ...

    def expression(self, builder: ProgramBuilder, path: tuple, text: Any,
                   add: Callable[[Any], int]) -> int: ...


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


def add_outputs(where: Locator, model: CaseModel,
                builder: ProgramBuilder) -> tuple[int, tuple[tuple[str, Shape], ...]]:
    """The output node: one expression's, or the named outputs joined (``PACK``), each a let
    of its name so that reports can name it."""
    if not isinstance(model.output, dict):
        index = where.expression(builder, ("output",), model.output,
                                 lambda e: builder.add_expression(e, "output"))
        return index, ()
    if not model.output:
        raise where.error(("output",), "output: {} names no output")
    named = []
    for name, text in model.output.items():
        path = ("output", name)
        if name in builder.inputs or name in builder.lets:
            raise where.error(path, f"{name!r} is already an input or a let")
        index = where.expression(builder, path, text,
                                 lambda e, n=name: builder.add_let(n, e))
        if builder.nodes[index].is_integer:
            raise where.error(path, f"output {name!r} is an integer tensor")
        named.append((name, builder.nodes[index].shape))
    pack = Call(PACK, tuple(Name(name, None) for name, _ in named), (), None)
    return builder.add_expression(pack, "output"), tuple(named)


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


def surrogates(where: Locator, model: CaseModel, inputs: tuple[InputSpec, ...],
               output_shape: Shape, constants: dict[str, Any],
               max_node_elements: int) -> dict[str, Program]:
    """``surrogate:``: per input, the VJP its backward means to return, as a program of the
    inputs, the numeric constants and ``grad_output`` (the cotangent, the output's shape)."""
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
        index = where.expression(builder, path, text, lambda e, b=builder, k=f"surrogate.{name}":
                                 b.add_expression(e, k))
        shape = builder.nodes[index].shape
        if shape != by_name[name].shape:
            raise where.error(path, f"the surrogate gradient has shape {list(shape)}; input "
                                    f"{name!r} has shape {list(by_name[name].shape)}")
        programs[name] = builder.build(index)
    if programs and (model.order != 1 or "forward" in model.modes):
        raise where.error(("surrogate",), "surrogate: declares a backward (reverse mode, "
                                          "first order) only")
    return programs

