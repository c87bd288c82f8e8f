"""The one forward walker of a program, in any form: numpy float64, sympy object arrays, or
torch tensors.

A form says how a constant becomes a value and how an op of the op table is applied (its
numpy, sympy or torch form); the walker never names an op. The caller gives the values of the
inputs, or of any node (a stop set: what only a given node needs is not evaluated, so
``explain`` can write a step in the symbols of the names it uses). A node that cannot be
evaluated at this point is a SpecError at the node's case key.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np

from gradcheck_lab.errors import SpecError
from gradcheck_lab.ops import OPS, Op, Params
from gradcheck_lab.ops.base import object_array
from gradcheck_lab.program.graph import Program


@dataclass(frozen=True)
class Form:
    """How values are represented: constants, op application, and which of the library's
    exceptions mean "this op cannot be evaluated here" (said by ``describe``)."""

    name: str
    constant: Callable[[Fraction], Any]
    apply: Callable[[Op, Sequence[Any], Params], Any]
    failures: tuple[type[BaseException], ...] = ()
    describe: Callable[[Op, BaseException], str] = lambda op, exc: str(exc)
    # A constant as a plain number, for the op arguments that take one (``torch_scalar_args``).
    scalar: Callable[[Fraction], Any] | None = None
    # A tensor constant (float64, int64 or bool numpy array, ``Node.value``) in this form.
    array: Callable[[np.ndarray], Any] = lambda value: value


def interpret(program: Program, given: Mapping[int, Any], roots: Sequence[int],
              form: Form) -> dict[int, Any]:
    """Every node ``roots`` need, by index, in ``form``; ``given`` supplies node values (every
    input the roots need, and any other node to stop at)."""
    env: dict[int, Any] = {}
    for index in program.needed_for(roots, stops=given):
        node = program.nodes[index]
        if index in given:
            env[index] = given[index]
        elif node.op == "input":
            raise KeyError(f"no value given for input {node.name!r}")
        elif node.op == "const":
            env[index] = (form.array(node.value) if node.value is not None
                          else form.constant(node.const or Fraction(0)))
        else:
            op = OPS[node.op]
            args = arguments(program, index, env, form)
            try:
                env[index] = form.apply(op, args, node.param_dict)
            except SpecError as exc:
                raise SpecError(exc.message, node.offset, node.key) from None
            except form.failures as exc:
                raise SpecError(form.describe(op, exc), node.offset, node.key) from None
    return env


def arguments(program: Program, index: int, env: Mapping[int, Any], form: Form) -> list[Any]:
    """What node ``index``'s op is applied to, in ``form``: its arguments' values from
    ``env``, and plain numbers for the constants the op takes as such."""
    node = program.nodes[index]
    op = OPS[node.op]
    return [form.scalar(program.nodes[a].const or Fraction(0))
            if form.scalar is not None and position in op.torch_scalar_args
            and program.nodes[a].op == "const" and program.nodes[a].value is None else env[a]
            for position, a in enumerate(node.args)]


def input_values(program: Program, values: Mapping[str, Any]) -> dict[int, Any]:
    """``given`` for ``interpret``: each input node's value, from a mapping by input name."""
    return {index: values[name] for name, index in program.inputs.items() if name in values}


def _numpy_apply(op: Op, args: Sequence[Any], params: Params) -> np.ndarray:
    with np.errstate(all="ignore"):
        result = np.asarray(op.numpy(args, params))
    # Conditions stay bool and integer results int64; everything else is float64.
    return result if result.dtype.kind in "biu" else result.astype(np.float64)


# float64 evaluation (integer tensors stay int64, conditions bool): the rule sweep's forward.
NUMPY = Form("numpy", constant=lambda value: np.array(float(value)), apply=_numpy_apply)


def _sympy_constant(value: Fraction) -> np.ndarray:
    import sympy

    return object_array(sympy.Rational(value.numerator, value.denominator))


def _sympy_array(value: np.ndarray) -> np.ndarray:
    """A tensor constant as exact sympy numbers: each float64 exactly (a Rational), inf as
    oo, nan as nan, bools as true/false (as comparisons give them); integer tensors stay
    int64 arrays, as integer inputs do (indices and class targets)."""
    import sympy

    if value.dtype.kind in "iu":
        return value

    def exact(number: Any) -> Any:
        if isinstance(number, (bool, np.bool_)):
            return sympy.true if number else sympy.false
        number = float(number)
        if np.isnan(number):
            return sympy.nan
        if np.isinf(number):
            return sympy.oo if number > 0 else -sympy.oo
        ratio = Fraction(number)
        return sympy.Rational(ratio.numerator, ratio.denominator)

    return object_array(np.vectorize(exact, otypes=[object])(value)) if value.size \
        else np.empty(value.shape, dtype=object)


# Object arrays of sympy expressions: the exact oracle and explain.
SYMPY = Form("sympy", constant=_sympy_constant, apply=lambda op, args, params: op.sympy(
    args, params), array=_sympy_array)
