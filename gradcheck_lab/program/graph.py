"""The computation: a graph of op nodes with shapes inferred and checked as it is built.

Inputs, ``let`` steps, the ``output`` and ``expect`` expressions all become nodes of one
Program. Every node remembers the case key it came from, so a problem found later (a shape
rule, a target out of range) is reported at that key.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Container, Iterable, Mapping
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np

from gradcheck_lab.errors import SpecError, UndefinedNameError
from gradcheck_lab.ops import OPS, ArgInfo, Op, ParamValue, Shape, suggest
from gradcheck_lab.ops.base import GIVEN, as_ints
from gradcheck_lab.program.ir import Call, Const, Expr, Name

DEFAULT_MAX_NODE_ELEMENTS = 100_000_000
# Every intermediate together: 200M float64 elements are 1.6 GB for each copy an oracle keeps.
DEFAULT_MAX_CASE_ELEMENTS = 200_000_000
# The bundled cases have under 100 nodes; each node costs every oracle a step per evaluation.
DEFAULT_MAX_PROGRAM_NODES = 20_000
FLOAT64_MAX = Fraction(sys.float_info.max)
# pi and e, as torch's math.pi and math.e: the binary values every oracle computes with (an
# input or let of that name takes precedence).
NAMED_CONSTANTS = {"pi": Fraction(math.pi), "e": Fraction(math.e)}


@dataclass(frozen=True)
class Node:
    """One value of the computation. ``op`` is "input", "const" or a name in the op table."""

    index: int
    op: str
    args: tuple[int, ...]
    params: tuple[tuple[str, ParamValue], ...]
    shape: Shape
    is_integer: bool
    needs_grad: bool
    key: str
    offset: int | None = None
    name: str | None = None
    const: Fraction | None = None
    is_bool: bool = False  # a comparison's value (is_integer too: not real)
    # A tensor constant (op "const" with ``const`` None): a traced forward's tensor made
    # without reading an input, recorded at the point (float64, int64 or bool; may hold inf
    # and nan). Not compared: a Node's equality is its place in the program.
    value: np.ndarray | None = field(default=None, compare=False, repr=False)

    @property
    def param_dict(self) -> dict[str, ParamValue]:
        return dict(self.params)

    @property
    def size(self) -> int:
        return math.prod(self.shape)


@dataclass(frozen=True)
class EvaluatedAt:
    """Node values (numpy, by index, read-only) at input values (by name, copies: a caller's
    array changed in place later is not these values)."""

    inputs: Mapping[str, np.ndarray]
    nodes: Mapping[int, np.ndarray]

    def holds_at(self, values: Mapping[str, np.ndarray]) -> bool:
        """Whether ``values`` are these inputs, bit for bit (-0.0 is not 0.0: 1/x differs)."""
        for name, known in self.inputs.items():
            given = np.asarray(values.get(name))
            if (given.dtype != known.dtype or given.shape != known.shape
                    or given.tobytes() != known.tobytes()):
                return False
        return True


@dataclass(frozen=True)
class Program:
    """Nodes in evaluation order; names of inputs and lets; the output; named extra roots."""

    nodes: tuple[Node, ...]
    inputs: dict[str, int]
    lets: dict[str, int]
    output: int
    roots: dict[str, int] = field(default_factory=dict)  # e.g. "expect.grad.x" -> node
    # Where a traced forward stops a gradient by its own doing ("a detach() (at f.py:12)", "a
    # value computed from integer data (at f.py:30)"): the spec's gradient stops there, as
    # autograd's does, where the function's own derivative (finite differences') does not.
    stops: tuple[str, ...] = ()
    # The float dtypes a traced forward cast a traced value to: it computes that coarsely
    # there, whatever its inputs' dtype.
    casts: tuple[str, ...] = ()
    # A traced program's nodes in float64 at the inputs it was traced at (the trace checks
    # them against the forward): the symbolic oracle's forward there, not evaluated again.
    evaluated_at: EvaluatedAt | None = field(default=None, compare=False, repr=False)

    def node(self, name: str) -> Node:
        return self.nodes[self.inputs.get(name, self.lets.get(name, -1))]

    @property
    def output_node(self) -> Node:
        return self.nodes[self.output]

    def needed_for(self, roots: Iterable[int], stops: Container[int] = ()) -> list[int]:
        """Indices of the nodes ``roots`` depend on, in evaluation order; the arguments of a
        node in ``stops`` (one whose value is given) are not followed."""
        needed: set[int] = set()
        stack = list(roots)
        while stack:
            index = stack.pop()
            if index not in needed:
                needed.add(index)
                if index not in stops:
                    stack.extend(self.nodes[index].args)
        return sorted(needed)

    def depending_on(self, names: Iterable[str]) -> frozenset[int]:
        """The nodes whose value changes when the inputs ``names`` do: those inputs and every
        node downstream of them (what must be evaluated again after moving only them)."""
        moved = {self.inputs[name] for name in names if name in self.inputs}
        for node in self.nodes:  # in evaluation order: a node's arguments come before it
            if node.index not in moved and any(arg in moved for arg in node.args):
                moved.add(node.index)
        return frozenset(moved)

    def arg_infos(self, index: int) -> list[ArgInfo]:
        """What an op's shape and cost rules know of node ``index``'s arguments."""
        return [_info(arg) for arg in (self.nodes[a] for a in self.nodes[index].args)]


class ProgramBuilder:
    """Adds inputs and expressions one at a time, checking names, kinds and shapes."""

    def __init__(self, max_node_elements: int = DEFAULT_MAX_NODE_ELEMENTS,
                 max_case_elements: int = DEFAULT_MAX_CASE_ELEMENTS,
                 max_nodes: int = DEFAULT_MAX_PROGRAM_NODES) -> None:
        self.nodes: list[Node] = []
        # Whole-case budgets: nodes each under max_node_elements can still add up, and every
        # oracle keeps each node's value (and its adjoint) at once.
        self.max_case_elements = max_case_elements
        self.max_nodes = max_nodes
        self.total_elements = 0
        self.inputs: dict[str, int] = {}
        self.lets: dict[str, int] = {}
        self.roots: dict[str, int] = {}
        self.max_node_elements = max_node_elements
        self.constants: dict[str, Fraction] = {}  # a case's constants: names of numbers

    def add_input(self, name: str, shape: Shape, is_integer: bool, requires_grad: bool) -> int:
        index = self._append(Node(len(self.nodes), "input", (), (), shape, is_integer,
                                  requires_grad and not is_integer, f"inputs.{name}", name=name))
        self.inputs[name] = index
        return index

    def add_named_constant(self, name: str, value: Fraction) -> None:
        """A name for a number in the expressions (``constants:``)."""
        self.constants[name] = value

    def add_tensor_constant(self, value: np.ndarray, key: str, offset: int | None = None) -> int:
        """A constant tensor (float64, int64 or bool), kept as given: a traced forward's
        tensor made without its inputs, or a number no Fraction holds (inf, nan)."""
        value = np.array(value, copy=True)
        if value.dtype.kind not in "biuf":
            raise SpecError(f"a constant tensor of dtype {value.dtype} (only real, integer "
                            "and bool tensors are data of a program)", offset)
        value = value.astype({"b": np.bool_, "i": np.int64, "u": np.int64}.get(
            value.dtype.kind, np.float64))
        value.flags.writeable = False
        kind = value.dtype.kind
        return self._append(Node(len(self.nodes), "const", (), (), tuple(value.shape),
                                 kind != "f", False, key, offset, is_bool=kind == "b",
                                 value=value))

    def add_let(self, name: str, expr: Expr) -> int:
        index = self.add_expression(expr, f"let.{name}")
        self.lets[name] = index
        return index

    def add_expression(self, expr: Expr, key: str) -> int:
        if isinstance(expr, Const):
            # Exact arithmetic may pass through huge constants (10**400 / 10**399 folds to 10);
            # one the program keeps is a float64 for every oracle but the exact one.
            if abs(expr.value) > FLOAT64_MAX:
                raise SpecError("constant is out of the float64 range", expr.offset)
            return self._append(Node(len(self.nodes), "const", (), (), (), False, False, key,
                                     expr.offset, const=expr.value))
        if isinstance(expr, Name):
            return self._resolve(expr)
        assert isinstance(expr, Call)
        args = [self.add_expression(arg, key) for arg in expr.args]
        return self.add_call(expr.op, args, expr.params, key, expr.offset)

    def add_call(self, name: str, args: list[int], params: tuple[tuple[str, ParamValue], ...],
                 key: str, offset: int | None) -> int:
        """A node applying op ``name`` to nodes ``args``, checked; a composite's expansion."""
        op = OPS[name]
        infos = [_info(self.nodes[index]) for index in args]
        _check_kinds(op, [self.nodes[index] for index in args], dict(params), offset)
        try:
            shape = tuple(op.shape(infos, dict(params)))
        except SpecError as exc:
            raise SpecError(exc.message, offset) from None
        elements = math.prod(shape)
        if elements > self.max_node_elements:
            raise SpecError(
                f"{op.spelled} would produce shape {list(shape)} with {elements} elements "
                f"(limit {self.max_node_elements})", offset)
        if op.expand is not None:
            index = op.expand(CallWriter(self, key, offset), args, dict(params))
            assert self.nodes[index].shape == shape, (name, self.nodes[index].shape, shape)
            return index
        kind = result_kind(op, infos)
        needs_grad = kind == "real" and any(
            self.nodes[index].needs_grad for position, index in enumerate(args)
            if position not in op.nondifferentiable_args)
        return self._append(Node(len(self.nodes), name, tuple(args), params, shape,
                                 kind != "real", needs_grad, key, offset,
                                 is_bool=kind == "bool"))

    def build(self, output: int) -> Program:
        return Program(tuple(self.nodes), dict(self.inputs), dict(self.lets), output,
                       dict(self.roots))

    def _resolve(self, name: Name) -> int:
        if name.id in self.lets:
            return self.lets[name.id]
        if name.id in self.inputs:
            return self.inputs[name.id]
        value = self.constants.get(name.id, NAMED_CONSTANTS.get(name.id))
        if value is not None:
            return self.add_expression(Const(value, name.offset), f"constant {name.id}")
        known = [*self.inputs, *self.lets, *self.constants, *NAMED_CONSTANTS]
        raise UndefinedNameError(f"undefined name {name.id!r}{suggest(name.id, known)}", name.id,
                            name.offset)

    def _append(self, node: Node) -> int:
        self.total_elements += math.prod(node.shape)
        if self.total_elements > self.max_case_elements:
            raise SpecError(f"the case's tensors would hold {self.total_elements} elements in "
                            f"all, inputs and every intermediate (limit "
                            f"{self.max_case_elements}, --max-case-elements)", node.offset)
        if len(self.nodes) >= self.max_nodes:
            raise SpecError(f"the program would have more than {self.max_nodes} nodes (lets "
                            "and composite functions expanded; limit --max-program-nodes)",
                            node.offset)
        self.nodes.append(node)
        return node.index


def _info(node: Node) -> ArgInfo:
    return ArgInfo(node.shape, node.is_integer, node.op == "const", node.const, node.is_bool)


def result_kind(op: Op, args: list[ArgInfo]) -> str:
    """"real", "int" or "bool": what the op gives for these arguments, as torch promotes
    (a bool condition of where does not take part)."""
    if op.returns != "promote":
        return op.returns
    operands = [a for position, a in enumerate(args) if position not in op.bool_args]
    return "int" if operands and all(a.is_integer for a in operands) else "real"


def _check_kinds(op: Op, args: list[Node], params: dict[str, ParamValue],
                 offset: int | None) -> None:
    # An op that takes GIVEN (optional tensors skipped by keyword) gets only the tensors the
    # call gave: its kind sets name positions in its signature, not in that shorter list
    # (batch_norm(x, weight=w, training=True): w fills the weight slot, not running_mean's).
    given = params.get(GIVEN)
    positions = as_ints(given, GIVEN) if isinstance(given, tuple) else range(len(args))
    for position, node in zip(positions, args, strict=True):
        what = node.name or f"argument {position + 1}"
        names = op.arg_names
        if position in op.nondifferentiable_args and not node.is_integer and node.needs_grad:
            slot = names[position] if position < len(names) else f"argument {position + 1}"
            raise SpecError(f"{op.spelled} takes no gradient for its {slot} (torch neither): "
                            f"{what} must not be differentiated (an input with "
                            "requires_grad: false)", offset)
        if position in op.bool_args and not node.is_bool:
            raise SpecError(f"{op.spelled} needs a condition (a comparison such as x > 0, "
                            f"or & | ~ of comparisons) as {what}", offset)
        if node.is_integer and position not in op.integer_args | op.bool_args:
            kind = "a bool tensor (a comparison)" if node.is_bool else "an integer tensor"
            raise SpecError(f"{op.spelled} needs real-valued arguments, but {what} is {kind}"
                            " (integer tensors are class targets, e.g. for cross_entropy; "
                            "elementwise arithmetic promotes them)", offset)


class CallWriter:
    """``ops.base.Expander``: calls of ops by name written into a program, for a composite's
    expansion and for a spec traced from an impl; the nodes get the writer's key and offset,
    so that errors and reports point at the call."""

    def __init__(self, builder: ProgramBuilder, key: str, offset: int | None) -> None:
        self.builder, self.key, self.offset = builder, key, offset

    def call(self, name: str, *args: int, **params: ParamValue) -> int:
        op = OPS[name]
        unknown = set(params) - {p.name for p in op.params}
        assert not unknown, (name, unknown)  # a composite's own definition is wrong
        filled = tuple((p.name, params.get(p.name, p.default)) for p in op.params)
        return self.builder.add_call(name, list(args), filled, self.key, self.offset)

    def const(self, value: float | int | Fraction) -> int:
        return self.builder.add_expression(Const(Fraction(value), self.offset), self.key)

    def shape(self, node: int) -> Shape:
        return self.builder.nodes[node].shape
