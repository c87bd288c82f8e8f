"""Expression text -> the program IR (``program.ir``), through ``ast.parse`` and a whitelist.

Nothing is evaluated: the AST is only walked. Constant sub-expressions are folded exactly (as
Fractions, by each op's fold rule) when their size is bounded, so ``9 ** 9 ** 9`` is an error
here, before any symbolic work starts. Which names are functions, what keywords they take and
how constants fold through them comes from the op table.
"""

from __future__ import annotations

import ast
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from fractions import Fraction

from gradcheck_lab.casefile.schema import MAX_DECIMAL_EXPONENT
from gradcheck_lab.errors import SpecError
from gradcheck_lab.ops import OPS, Op, Param, ParamValue, suggest
from gradcheck_lab.ops.base import GIVEN
from gradcheck_lab.ops.structure import INDEX, PART, index_text
from gradcheck_lab.program.ir import Call, Const, Expr, Name

# Functions that give several tensors, one of them picked by [k] (split, chunk).
PIECES = frozenset(name for name, op in OPS.items() if any(p.name == PART for p in op.params))

# Python's operators, by how the op table spells them (``Op.infix``): which op each one is
# comes from the table.
_INFIX: dict[type, str] = {
    ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.Pow: "**", ast.MatMult: "@",
    ast.Mod: "%", ast.BitAnd: "&", ast.BitOr: "|", ast.BitXor: "^",
    ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">=", ast.Eq: "==", ast.NotEq: "!=",
}


def _operator(symbol: str, arity: int) -> str | None:
    """The op of the table spelled ``symbol`` with ``arity`` operands (- is sub and neg)."""
    return next((name for name, op in OPS.items()
                 if op.infix == symbol and op.max_args == arity), None)


_OPERATOR_SPELLING = {
    ast.FloorDiv: "//", ast.LShift: "<<", ast.RShift: ">>", ast.Not: "not",
}
_FORBIDDEN_NODES = {
    ast.Attribute: "attribute access",
    ast.Lambda: "lambdas",
    ast.ListComp: "comprehensions",
    ast.SetComp: "comprehensions",
    ast.DictComp: "comprehensions",
    ast.GeneratorExp: "comprehensions",
    ast.JoinedStr: "f-strings",
    ast.IfExp: "conditional expressions",
    ast.NamedExpr: "assignment expressions (:=)",
    ast.BoolOp: "'and' and 'or' (tensors have no single truth value: use & and |)",
    ast.Await: "await",
    ast.Yield: "yield",
    ast.YieldFrom: "yield",
    ast.Starred: "starred arguments",
    ast.Dict: "dict displays",
    ast.Set: "set displays",
    ast.Slice: "slices outside a subscript",
}


MAX_TEXT = 200  # the longest string keyword (einsum's equation)


@dataclass(frozen=True)
class ExprLimits:
    """Bounds checked before and while parsing, so hostile text cannot hang the parser."""

    max_length: int = 10_000
    max_nodes: int = 5_000
    max_depth: int = 200
    max_constant_bits: int = 4_096




def parse_expression(text: str, limits: ExprLimits = ExprLimits(),
                     constants: Mapping[str, Fraction] | None = None) -> Expr:
    """Parse one expression of the case language; raises SpecError with a column offset.
    ``constants`` (a case's ``constants:``) may also stand for a keyword's number
    (``layer_norm(x, eps=eps)``)."""
    if len(text) > limits.max_length:
        raise SpecError(f"expression is {len(text)} characters long (limit {limits.max_length})")
    if not text.strip():
        raise SpecError("expression is empty")
    source = text.strip()
    foreign = next((c for c in source if not c.isascii()), None)
    if foreign is not None:
        # Python's parser would NFKC-normalise names: fullwidth 'ｓｉｎ' would read as 'sin'.
        raise SpecError(f"{foreign!r} (U+{ord(foreign):04X}) is not ASCII: the case "
                        "language's names, numbers and operators are ASCII",
                        None if "\n" in source else text.index(foreign))
    multiline = "\n" in source
    if multiline:
        # A YAML block scalar may break an expression over lines, indented as the writer
        # likes: inside parentheses Python ignores line breaks and indentation.
        source = f"(\n{source}\n)"
    try:
        tree = ast.parse(source, mode="eval")
    except SyntaxError as exc:
        offset = (exc.offset - 1) if exc.offset and not multiline else None
        raise SpecError(f"not a valid expression: {exc.msg}", offset) from None
    except (RecursionError, MemoryError, ValueError):
        raise SpecError("expression is nested too deeply or is not text") from None
    # Column offsets are reported for one-line expressions only.
    shift = None if multiline else len(text) - len(text.lstrip())
    return _Builder(source, limits, shift, constants or {}).build(tree.body, 0)


class _Positions:
    """Token positions: a node's column in the expression's text, and errors made there."""

    def __init__(self, text: str, shift: int | None) -> None:
        self.text = text
        self.shift = shift  # the text's leading blanks; None: no columns (several lines)

    def fail(self, message: str, node: ast.AST | None = None) -> SpecError:
        return SpecError(message, self.offset(node))

    def offset(self, node: ast.AST | None) -> int | None:
        """The node's column in characters (ast counts UTF-8 bytes)."""
        column = getattr(node, "col_offset", None)
        if column is None or self.shift is None:
            return None
        characters = len(self.text.encode("utf-8")[:column].decode("utf-8", errors="ignore"))
        return characters + self.shift


class _Values(_Positions):
    """Constants and static values: numbers exact (Fractions) within the bit limit, a
    subscript's constant items, and a keyword's value (int, bool, number, string, tuple),
    where a ``constants:`` name may stand for a number."""

    def __init__(self, text: str, shift: int | None, limits: ExprLimits,
                 constants: Mapping[str, Fraction]) -> None:
        super().__init__(text, shift)
        self.limits = limits
        self.constants = constants

    def constant(self, node: ast.Constant) -> Fraction:
        value = node.value
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.fail(f"constant {value!r} is not a real number", node)
        if isinstance(value, int):
            if value.bit_length() > self.limits.max_constant_bits:
                raise self.fail("integer constant is too large", node)
            return Fraction(value)
        # Take the decimal text as written, so 0.1 is exactly 1/10.
        literal = ast.get_source_segment(self.text, node) or repr(value)
        if not math.isfinite(value):
            raise self.fail(f"constant {literal} is out of the float64 range", node)
        try:
            decimal = Decimal(literal.replace("_", ""))
        except (InvalidOperation, ValueError):
            return Fraction(value)
        # '1e-99999999' is 0.0 as a float; exactly, its denominator has 10**8 digits.
        if decimal and abs(decimal.adjusted()) > MAX_DECIMAL_EXPONENT:
            raise self.fail(f"constant {literal} is out of the float64 range", node)
        return Fraction(decimal)

    def index_item(self, node: ast.AST, what: str = "") -> object:
        """One constant item of a subscript (never an expression: no tensor indexing);
        ``what`` names a slice's part, which only an integer can be."""
        if isinstance(node, ast.Slice):
            bounds = [None if part is None else self.index_item(part, "slice bounds")
                      for part in (node.lower, node.upper, node.step)]
            return slice(*bounds)
        if what and not (_is_literal(node) and not (isinstance(node, ast.Constant) and
                                                     node.value is Ellipsis)):
            raise self.fail(f"{what} must be constant integers", node)
        if isinstance(node, ast.Constant) and node.value is Ellipsis:
            return Ellipsis
        if isinstance(node, ast.Constant) and node.value is None:
            return None
        sign = 1
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            sign, node = -1, node.operand
        if (isinstance(node, ast.Constant) and isinstance(node.value, int)
                and not isinstance(node.value, bool) and abs(node.value) < 2**31):
            return sign * node.value
        if what:
            raise self.fail(f"{what} must be constant integers", node)
        raise self.fail("subscripts take constant integers, slices a:b:c, ... and None "
                        "(no tensors)", node)

    def param_value(self, op_name: str, param: Param, node: ast.AST) -> ParamValue:
        """Static keyword values: an int, a bool, a real number, a string or a tuple of ints
        (or of real numbers), as the op's keyword takes them (never an expression); None
        where that is the keyword's default (dim=None)."""
        if _is_none(node) and param.default is None and not param.required:
            return None
        if param.kind == "bool":
            if isinstance(node, ast.Constant) and isinstance(node.value, bool):
                return node.value
            raise self.fail(f"{op_name}(): {param.name}= needs True or False", node)
        if param.kind == "str":
            return self.string_value(op_name, param, node)
        if param.kind == "text":
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and len(
                    node.value) <= MAX_TEXT:
                return node.value
            raise self.fail(f"{op_name}(): {param.name}= needs a string (at most {MAX_TEXT} "
                            "characters)", node)
        if param.kind == "floats" and isinstance(node, (ast.Tuple, ast.List)):
            if len(node.elts) > 16:
                raise self.fail(f"{op_name}(): {param.name}= lists at most 16 numbers", node)
            return tuple(self.float_value(op_name, param, item) for item in node.elts)
        if param.kind in ("float", "floats"):
            return self.float_value(op_name, param, node)
        if param.kind == "dims" and param.choices and isinstance(node, ast.Constant) and \
                isinstance(node.value, str):  # conv's padding="same"
            return self.string_value(op_name, param, node)
        if param.kind == "dims" and isinstance(node, (ast.Tuple, ast.List)):
            if len(node.elts) > 16:
                raise self.fail(f"{op_name}(): {param.name}= lists at most 16 dims", node)
            return tuple(self.integer_value(op_name, param, item) for item in node.elts)
        return self.integer_value(op_name, param, node)

    def integer_value(self, op_name: str, param: Param, item: ast.AST) -> int:
        sign = 1
        if isinstance(item, ast.UnaryOp) and isinstance(item.op, ast.USub):
            sign, item = -1, item.operand
        named = self.named(item)
        if named is not None and named.denominator == 1 and abs(named) < 2**31:
            return sign * int(named)
        if (isinstance(item, ast.Constant) and isinstance(item.value, int)
                and not isinstance(item.value, bool) and abs(item.value) < 2**31):
            return sign * item.value
        raise self.fail(f"{op_name}(): {param.name}= needs an integer", item)

    def float_value(self, op_name: str, param: Param, item: ast.AST) -> float:
        sign = 1.0
        if isinstance(item, ast.UnaryOp) and isinstance(item.op, (ast.USub, ast.UAdd)):
            sign, item = (-1.0 if isinstance(item.op, ast.USub) else 1.0), item.operand
        named = self.named(item)
        if named is not None:
            return sign * float(named)
        if isinstance(item, ast.Constant) and not isinstance(item.value, bool) and isinstance(
                item.value, (int, float)):
            value = float(self.constant(item))
            if math.isfinite(value):
                return sign * value
        raise self.fail(f"{op_name}(): {param.name}= needs a number", item)

    def named(self, item: ast.AST) -> Fraction | None:
        """A ``constants:`` name's number, where ``item`` is one."""
        return self.constants.get(item.id) if isinstance(item, ast.Name) else None

    def string_value(self, op_name: str, param: Param, item: ast.AST) -> str:
        accepted = ", ".join(repr(choice) for choice in param.choices)
        if isinstance(item, ast.Constant) and isinstance(item.value, str):
            if item.value in param.choices:
                return item.value
            hint = suggest(item.value, list(param.choices))
            raise self.fail(f"{op_name}(): {param.name}={item.value!r} is not one of "
                            f"{accepted}{hint}", item)
        raise self.fail(f"{op_name}(): {param.name}= needs a string, one of {accepted}", item)


class _Arguments(_Positions):
    """Binding a call's arguments to its op: tensors by position (in torch's order or the
    case language's) or by keyword, keywords by name, the required ones given."""

    def __init__(self, values: _Values) -> None:
        super().__init__(values.text, values.shift)
        self.values = values

    def bind(self, op: Op, node: ast.Call) -> tuple[dict[int, ast.AST], dict[str, ParamValue]]:
        """The call's tensor arguments by position and its keyword values, from positional
        arguments in torch's order and keywords by name."""
        visible = {p.name: p for p in op.params if not p.hidden}
        tensor_names = list(op.arg_names[: op.max_args]) or [
            f"x{i + 1}" for i in range(op.max_args)]
        tensors: dict[int, ast.AST] = {}
        params: dict[str, ParamValue] = {}
        for slot, arg in self.positional_slots(op, node, tensor_names, list(visible)):
            if slot in visible:
                params[slot] = self.values.param_value(op.name, visible[slot], arg)
            elif not _is_none(arg):
                self.add_tensors(op, tensors, tensor_names.index(slot), arg)
            elif tensor_names.index(slot) < op.min_args:
                raise self.fail(f"{op.name}(): {slot} is required, not None", arg)
            # else an optional tensor given as None is not given (conv2d(x, w, None, 2))
        for keyword in node.keywords:
            if keyword.arg is None:
                raise self.fail("**kwargs are not allowed", node)
            if keyword.arg in tensor_names:
                position = tensor_names.index(keyword.arg)
                if position in tensors:
                    raise self.fail(f"{op.name}() got {keyword.arg!r} twice", keyword.value)
                if not _is_none(keyword.value):  # min=None: not given, as in torch
                    self.add_tensors(op, tensors, position, keyword.value)
                continue
            if keyword.arg not in visible:
                hint = suggest(keyword.arg, sorted({*visible, *tensor_names}))
                accepted = ", ".join([*tensor_names, *sorted(visible)]) or "none"
                raise self.fail(f"{op.name}() has no keyword {keyword.arg!r}{hint} "
                                f"(accepted: {accepted})", keyword.value)
            if keyword.arg in params:
                raise self.fail(f"{op.name}() got {keyword.arg!r} twice", keyword.value)
            params[keyword.arg] = self.values.param_value(op.name, visible[keyword.arg],
                                                   keyword.value)
        return tensors, params

    def positional_slots(self, op: Op, node: ast.Call, tensor_names: list[str],
                         keywords: list[str]) -> list[tuple[str, ast.AST]]:
        """Each positional argument with the name of the slot it fills."""
        order = [*tensor_names, *keywords]
        if op.variadic == "star":  # einsum(equation, *operands)
            leading = [slot for slot in op.positional if slot in keywords]
            order = [*leading, *[tensor_names[0]] * max(len(node.args) - len(leading), 0)]
        elif op.positional and all(_is_literal(arg) for slot, arg in zip(
                op.positional, node.args, strict=False) if slot not in tensor_names):
            # torch's order (layer_norm(x, (4,), W, b)); the case language's older one,
            # tensors first (layer_norm(x, W, b)), stays valid: a tensor is no literal.
            order = list(op.positional)
        if len(node.args) > len(order):
            raise self.fail(f"{op.name}() takes at most {len(order)} positional arguments "
                            f"({', '.join(order)})", node)
        return list(zip(order, node.args, strict=False))

    def add_tensors(self, op: Op, tensors: dict[int, ast.AST], position: int,
                    arg: ast.AST) -> None:
        """One tensor argument; for a list-taking op (cat([a, b])) the list's items."""
        items: Sequence[ast.AST]
        if op.variadic == "list":
            if not isinstance(arg, (ast.List, ast.Tuple)) or not arg.elts:
                raise self.fail(f"{op.name}() takes a list of tensors, as in "
                                f"{op.name}([a, b], dim=0)", arg)
            items = arg.elts
        elif op.variadic == "star":
            items = [arg]
        else:
            tensors[position] = arg
            return
        if len(tensors) + len(items) > op.max_args:
            raise self.fail(f"{op.name}() takes at most {op.max_args} tensors", arg)
        for item in items:
            tensors[len(tensors)] = item

    def check_arguments_given(self, op: Op, positions: list[int], node: ast.Call) -> None:
        """The required tensor arguments are there; an optional one is skipped (by giving a
        later one by keyword) only where the op takes ``GIVEN``."""
        names = op.arg_names or tuple(f"argument {i + 1}" for i in range(op.max_args))
        if op.variadic:
            names = tuple(f"{names[0]}[{i}]" for i in range(op.max_args))
        missing = [names[i] for i in range(op.min_args) if i not in positions]
        if missing:
            raise self.fail(f"{op.name}() needs the argument {missing[0]} (at least "
                            f"{op.min_args} tensor argument(s), got {len(positions)})", node)
        skips = any(p.name == GIVEN for p in op.params)
        if not skips and positions != list(range(len(positions))):
            gap = next(i for i in range(op.max_args) if i not in positions)
            raise self.fail(f"{op.name}(): {names[positions[-1]]} needs {names[gap]} given "
                            "too, before it", node)


class _Builder(_Positions):
    """Walking the AST into the IR: names, operators, comparisons, subscripts and calls,
    constant arithmetic folded, within the node and depth limits."""

    def __init__(self, text: str, limits: ExprLimits, shift: int | None,
                 constants: Mapping[str, Fraction]) -> None:
        super().__init__(text, shift)
        self.limits = limits
        self.nodes = 0
        self.values = _Values(text, shift, limits, constants)
        self.arguments = _Arguments(self.values)

    def build(self, node: ast.AST, depth: int) -> Expr:
        self.nodes += 1
        if self.nodes > self.limits.max_nodes:
            raise self.fail(f"expression has more than {self.limits.max_nodes} parts")
        if depth > self.limits.max_depth:
            raise self.fail(f"expression is nested deeper than {self.limits.max_depth}", node)
        offset = self.offset(node)
        if isinstance(node, ast.Constant):
            return Const(self.values.constant(node), offset)
        if isinstance(node, ast.Name):
            if node.id.startswith("__"):
                raise self.fail(f"dunder name {node.id!r} is not allowed", node)
            if node.id in OPS and OPS[node.id].callable:
                raise self.fail(f"{node.id!r} is a function: call it, as in {node.id}(x)", node)
            return Name(node.id, offset)
        if isinstance(node, ast.UnaryOp):
            if isinstance(node.op, ast.UAdd):
                return self.build(node.operand, depth + 1)
            symbol = {ast.USub: "-", ast.Invert: "~"}.get(type(node.op))
            if symbol is None:
                hint = " (use ~ for not)" if isinstance(node.op, ast.Not) else ""
                raise self.fail(f"operator {_spelling(node.op)!r} is not supported{hint}",
                                node)
            prefix = _operator(symbol, 1)
            assert prefix is not None  # the table has - and ~
            return self.fold(prefix, (self.build(node.operand, depth + 1),), (), offset)
        if isinstance(node, ast.BinOp):
            op = _operator(_INFIX[type(node.op)], 2) if type(node.op) in _INFIX else None
            if op is None:
                raise self.fail(
                    f"operator {_spelling(node.op)!r} is not supported "
                    "(use + - * / ** @, comparisons, & | ^ ~)", node)
            args = (self.build(node.left, depth + 1), self.build(node.right, depth + 1))
            return self.fold(op, args, (), offset)
        if isinstance(node, ast.Compare):
            return self.compare(node, depth, offset)
        if isinstance(node, ast.Subscript):
            return self.subscript(node, depth, offset)
        if isinstance(node, ast.Call):
            return self.call(node, depth, offset)
        if isinstance(node, (ast.Tuple, ast.List)):
            raise self.fail("tuples and lists are only allowed as dim=(...) arguments", node)
        what = _FORBIDDEN_NODES.get(type(node), type(node).__name__)
        raise self.fail(f"{what} not allowed in an expression", node)

    def compare(self, node: ast.Compare, depth: int, offset: int | None) -> Expr:
        """``a < b``: a condition. Python's chained ``0 < x < 1`` means ``and``, which a
        tensor has no single truth value for (torch refuses it too)."""
        if len(node.ops) > 1:
            raise self.fail("chained comparisons are not supported: write (0 < x) & (x < 1)",
                            node)
        symbol = _INFIX.get(type(node.ops[0]))
        op = _operator(symbol, 2) if symbol else None
        if op is None:
            raise self.fail(f"comparison {type(node.ops[0]).__name__} is not supported "
                            "(use < <= > >= == !=)", node)
        args = (self.build(node.left, depth + 1), self.build(node.comparators[0], depth + 1))
        return Call(op, args, (), offset)

    def subscript(self, node: ast.Subscript, depth: int, offset: int | None) -> Expr:
        """``x[1:3, ..., 0]`` with constant ints, slices, ``...`` and ``None``; and
        ``split(...)[k]``, ``chunk(...)[k]``: piece k of several."""
        items = node.slice.elts if isinstance(node.slice, ast.Tuple) else [node.slice]
        if isinstance(node.value, ast.Call) and isinstance(node.value.func, ast.Name) and (
                node.value.func.id in PIECES):
            part = self.values.index_item(node.slice)
            if not isinstance(part, int):
                raise self.fail(f"{node.value.func.id}(...)[k] takes one integer k", node.slice)
            call = self.call(node.value, depth + 1, offset, {PART: part})
            return call
        index = index_text([self.values.index_item(item) for item in items])
        value = self.build(node.value, depth + 1)
        getitem = _operator("[]", 1)
        assert getitem is not None  # the table has subscripts
        return Call(getitem, (value,), ((INDEX, index),), offset)

    def call(self, node: ast.Call, depth: int, offset: int | None,
             hidden: dict[str, ParamValue] | None = None) -> Expr:
        if not isinstance(node.func, ast.Name):
            if isinstance(node.func, ast.Attribute):
                raise self.fail("only plain function names can be called (no attribute "
                                "access)", node)
            self.build(node.func, depth + 1)  # a lambda, a subscript...: names what it is
            raise self.fail("only function names can be called", node)
        name = node.func.id
        op = OPS.get(name)
        if op is None or not op.callable:
            hint = suggest(name, [n for n, o in OPS.items() if o.callable])
            raise self.fail(f"unknown function {name!r}{hint}", node)
        tensors, params = self.arguments.bind(op, node)
        params |= hidden or {}
        if name in PIECES and PART not in params:
            raise self.fail(f"{name}() gives several tensors: pick one with [k], as in "
                            f"{name}(...)[0]", node)
        positions = sorted(tensors)
        self.arguments.check_arguments_given(op, positions, node)
        if any(p.name == GIVEN for p in op.params):
            params[GIVEN] = tuple(positions)
        args = tuple(self.build(tensors[position], depth + 1) for position in positions)
        filled = tuple((p.name, params.get(p.name, p.default)) for p in op.params)
        for p, (_, value) in zip(op.params, filled, strict=True):
            if p.required and value is None:
                raise self.fail(f"{name}() needs the keyword {p.name}=", node)
        return self.fold(name, args, filled, offset)

    def fold(
        self, op: str, args: tuple[Expr, ...], params: tuple[tuple[str, ParamValue], ...],
        offset: int | None,
    ) -> Expr:
        """Fold arithmetic on constants exactly (the op's fold rule), refusing results too
        large to hold."""
        rule = OPS[op].fold
        constants = [a for a in args if isinstance(a, Const)]
        if rule is None or len(constants) != len(args):
            return Call(op, args, params, offset)
        values = [a.value for a in constants]
        try:
            result = rule(values, self.limits.max_constant_bits)
        except SpecError as exc:
            raise SpecError(exc.message, offset) from None
        if result is None:
            return Call(op, args, params, offset)
        bits = max(result.numerator.bit_length(), result.denominator.bit_length())
        if bits > self.limits.max_constant_bits:
            raise SpecError("constant is too large to evaluate exactly", offset)
        return Const(result, offset)


def _is_literal(node: ast.AST) -> bool:
    """A keyword value as written: a number, string, None, or a tuple or list of them."""
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        node = node.operand
    if isinstance(node, (ast.Tuple, ast.List)):
        return all(_is_literal(item) for item in node.elts)
    return isinstance(node, ast.Constant)


def _is_none(node: ast.AST) -> bool:
    return isinstance(node, ast.Constant) and node.value is None


def _spelling(op: ast.AST) -> str:
    return _OPERATOR_SPELLING.get(type(op), type(op).__name__)
