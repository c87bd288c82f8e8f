"""``gradcheck-lab explain``: what the symbolic oracle derives for a case, in readable form.

A scalar case (every value a number) gets each let step's local derivatives with their values
at the point, the chain rule that multiplies them out, and the gradient formula sympy derives
from the whole expression. A tensor case gets its op chain (each step's ops with shapes and
norms) and the formula of one representative element, when the case is small enough for the
exact oracle; formulas per element would fill pages. Everything is built from the parsed
program and the op table's sympy forms: no text of the case file is evaluated.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Container
from dataclasses import dataclass
from fractions import Fraction
from functools import cached_property
from typing import Any

import numpy as np

from gradcheck_lab.casefile import Case
from gradcheck_lab.casefile.selection import located
from gradcheck_lab.errors import SpecError
from gradcheck_lab.ops.base import object_array
from gradcheck_lab.ops.derivatives import sympy_to_float
from gradcheck_lab.oracles import symbolic
from gradcheck_lab.program import Program
from gradcheck_lab.program.interpret import SYMPY, interpret
from gradcheck_lab.program.naming import (
    OUTPUT,
    describe_array,
    format_number,
    index_text,
    node_names,
    norm,
    spell,
)
from gradcheck_lab.program.sweep import node_adjoints
from gradcheck_lab.subject.points import Point, make_point
from gradcheck_lab.subject.probes import Probe, make_probes

MAX_FORMULA_CHARACTERS = 1500  # longer formulas are summarized, not printed
PRETTY_WIDTH = 96  # wider 2-D formulas are printed in sympy's one-line form instead
MAX_PATHS = 4  # chain-rule paths written out per input; more are only counted
# The whole-expression work (the exact oracle's values, a scalar case's gradient formulas, a
# tensor case's representative element) differentiates the output as one sympy expression,
# which sympy walks as a tree: a let used twice is copied into it twice, so lets that each
# use the previous one twice double it at every let (40 such lets: 10¹⁴ nodes). The size of
# each derivative's tree is counted on the program first, in integers (``symbolic.tree_sizes``),
# and past these bounds that work is skipped with a line saying so. The bundled cases and the
# docs' examples stay under 94,000 in all and 3,100 nodes per derivative; lets that
# nest a transcendental op at each level take seconds to evaluate exactly at 4,000 (tanh and
# exp seven levels deep: 4,481 nodes, 15 s) and grow fourfold per level.
MAX_DERIVATIVE_NODES = 4_000  # of one derivative's tree
MAX_DERIVATIVES_NODES = 64 * MAX_DERIVATIVE_NODES  # of all of them: one per differentiated element
_INDENT = "  "


@dataclass(frozen=True)
class _Step:
    """A let step or the output: its expression in the symbols of the names it uses."""

    name: str
    index: int
    expression: Any  # sympy
    uses: tuple[str, ...]


def explain(case: Case, dtype: str, latex: bool = False) -> str:
    """The explanation of ``case`` at its first point, rounded to ``dtype``, as text."""
    point = make_point(case, dtype)
    try:
        return _Explainer(case, point, latex).text()
    except SpecError as exc:  # a rule that fails at this point: say where, as the runner does
        raise located(case, exc) from None


class _Derivation:
    """The values and local derivatives: the program's values at the point, the gradients
    and adjoints of the check's first probe, and each step as a sympy expression of the
    names it uses, differentiated and evaluated there."""

    def __init__(self, case: Case, point: Point) -> None:
        self.case = case
        self.program = case.program
        self.point = point
        self.names = node_names(self.program)
        program = self.program
        self.env = symbolic.numpy_forward(
            program, point, [program.output, *program.inputs.values(), *program.lets.values()])
        # The first of the check's own probes: 1 for a scalar output, output[0, ...] for a
        # small tensor, a seeded random cotangent for a large one.
        self.probe: Probe = make_probes(program.output_node.shape, case.seed, case.outputs)[0]
        # Why the whole expression is too large to differentiate, or None: decided on the
        # program before sympy builds anything, and the exact oracle is not asked either.
        self.too_large = _whole_too_large(program)
        # A value past float64's range: evaluating exactly at such magnitudes (erf and cosh
        # of e³⁰⁰⁰⁰) has no bound, and the gradient there is inf or nan in float64 anyway.
        self.overflow = _overflowed(program, self.names, self.env)
        exact = self.too_large is None and self.overflow is None
        self.gradients = symbolic.gradients(program, point, (self.probe,),
                                            "auto" if exact else "sweep")
        self.adjoints = node_adjoints(program, self.env, self.probe.cotangent)
        self.subject = OUTPUT if self.probe.label == "output" else self.probe.label

    def steps(self) -> list[_Step]:
        """Each let, then the output, as an expression of the names it uses directly."""
        import sympy

        program = self.program
        # An output that is an input or a let by another name is a step of its own anyway.
        named = [*program.lets.items(), (OUTPUT, program.output)]
        steps = []
        for name, index in named:
            if self.names[index] != name:  # an alias: name = other name
                other = self.names[index]
                steps.append(_Step(name, index, sympy.Symbol(other, real=True), (other,)))
                continue
            # Only the names the step uses: every name for every step is quadratic in lets.
            given = {i: object_array(sympy.Symbol(self.names[i], real=True))
                     for i in _reading_order(program, index, self.names)}
            expression, uses = _sympy_values(program, index, given)
            steps.append(_Step(name, index, expression.item(),
                               tuple(self.names[i] for i in uses)))
        return steps

    def local_derivatives(self, steps: list[_Step]) -> list[tuple[str, str, Any, float]]:
        """(step, used name, ∂step/∂used, its value) for each step the output depends on,
        from the output down, over the names it uses that carry a gradient."""
        found = []
        reached = self._reached(steps)
        for step in reversed(steps):
            if step.name not in reached:
                continue
            for used in step.uses:
                if not self.needs_grad(used):
                    continue
                derivative = _diff(step.expression, used)
                found.append((step.name, used, derivative, self._evaluate(derivative)))
        return found

    def _reached(self, steps: list[_Step]) -> set[str]:
        """Names of the steps the output depends on (a let nobody uses has no gradient)."""
        by_name = {step.name: step for step in steps}
        reached, stack = set(), [OUTPUT]
        while stack:
            name = stack.pop()
            if name in reached or name not in by_name:
                continue
            reached.add(name)
            stack.extend(by_name[name].uses)
        return reached

    def needs_grad(self, name: str) -> bool:
        index = self.program.inputs.get(name, self.program.lets.get(name))
        return index is not None and self.program.nodes[index].needs_grad

    def _evaluate(self, expression: Any) -> float:
        """The value at the point: names replaced by their exact binary values."""
        import sympy

        # safe: expressions built from the parsed IR (sympy objects and numbers); strict
        # refuses strings, so no case-file text can reach sympy's parser here.
        result = sympy.sympify(expression, strict=True).xreplace(self._values)
        return sympy_to_float(result.evalf(30))

    @cached_property
    def _values(self) -> dict[Any, Any]:
        """Each name's symbol -> its exact value at the point; once, not once per derivative
        (that was quadratic in the lets)."""
        import sympy

        values = {}
        for index, name in self.names.items():
            value = self.env.get(index)
            if value is None or value.shape != ():
                continue
            # Literal inputs exactly as written (0.1 is 1/10); everything else is its float.
            exact = self.point.exact.get(name) if name in self.program.inputs else None
            plain = float(value)
            if exact is None and not math.isfinite(plain):  # a step that overflowed
                values[sympy.Symbol(name, real=True)] = (
                    sympy.nan if math.isnan(plain) else sympy.oo if plain > 0 else -sympy.oo)
                continue
            number = Fraction(exact.item() if exact is not None else plain)
            values[sympy.Symbol(name, real=True)] = sympy.Rational(number.numerator,
                                                                   number.denominator)
        return values

    def whole_output(self, element_symbols: bool) -> Any:
        """The output in one symbol per input element (``x[0, 1]``, or ``x`` for a scalar);
        integer inputs (class targets) as their values."""
        import sympy

        given: dict[int, np.ndarray] = {}
        for name, index in self.program.inputs.items():
            node = self.program.nodes[index]
            if node.is_integer:  # as integers: ops that take indices read their dtype
                given[index] = np.asarray(self.point.values[name], dtype=np.int64)
                continue
            symbols = np.empty(node.shape, dtype=object)
            for multi in np.ndindex(*node.shape):
                symbols[multi] = sympy.Symbol(name + index_text(multi), real=True)
            given[index] = symbols
        values, _ = _sympy_values(self.program, self.program.output, given)
        return values.item() if not element_symbols and values.shape == () else values


class _Formulas:
    """The chain-rule and formulas text: partial derivatives and ``left = formula = value``
    lines (sympy's 2-D layout, or LaTeX), the chain rule's products along paths, and the
    gradient formulas sympy derives from the whole expression."""

    def __init__(self, derivation: _Derivation, latex: bool) -> None:
        self.derivation = derivation
        self.latex = latex

    def partial(self, of: str, wrt: str) -> str:
        if self.latex:
            import sympy

            return (rf"\frac{{\partial {sympy.latex(sympy.Symbol(of))}}}"
                    rf"{{\partial {sympy.latex(sympy.Symbol(wrt))}}}")
        return f"∂{of}/∂{wrt}"

    def formula(self, left: str, expression: Any, value: float | None,
                indent: str = _INDENT) -> list[str]:
        """``left = formula = value``, sympy's 2-D layout on the formula's baseline; a formula
        too wide for that in sympy's one-line form, wrapped below ``left``."""
        import sympy
        from sympy.printing.pretty.pretty import PrettyPrinter
        from sympy.printing.pretty.stringpict import prettyForm

        tail = "" if value is None else f" = {format_number(value)}"
        size = len(str(expression))
        if size > MAX_FORMULA_CHARACTERS:
            return [f"{indent}{left}{tail}  (sympy's formula has {size} characters: too long "
                    "to print)"]
        if self.latex:
            return [f"{indent}{left} = {sympy.latex(expression)}{tail}"]
        form = PrettyPrinter({"use_unicode": True, "wrap_line": False})._print(expression)
        if form.width() <= PRETTY_WIDTH:
            form = prettyForm(*form.left(f"{indent}{left} = "))
            form = prettyForm(*form.right(tail))
            return [row.rstrip() for row in form.render(wrap_line=False).splitlines()]
        # Too wide for a 2-D layout (it would wrap into unreadable strips). Non-breaking
        # spaces after commas keep "x[0, 4]" on one line.
        rows = [row.replace("\u00a0", " ") for row in textwrap.wrap(
            str(expression).replace(", ", ",\u00a0"), PRETTY_WIDTH, break_on_hyphens=False)]
        return [f"{indent}{left} =", *(f"{indent}{_INDENT * 2}{row}" for row in rows),
                *([f"{indent}{_INDENT}{tail.strip()}"] if tail else [])]

    def chain(self, name: str, uses: dict[str, list[str]], local: dict[tuple[str, str], float],
              total: float) -> list[str]:
        paths = _paths(OUTPUT, name, uses, MAX_PATHS)
        left = f"{_INDENT}{self.partial(OUTPUT, name)} = {format_number(total)}"
        if paths is None:
            return [f"{left}  (a sum over more than {MAX_PATHS} paths)"]
        if not paths:
            return [f"{left}  (the output does not depend on {name})"]
        times = r" \cdot " if self.latex else " · "
        products = []
        for path in paths:
            symbols = times.join(self.partial(a, b) for a, b in path)
            numbers = times.join(_factor(local[edge]) for edge in path)
            product = float(np.prod([local[edge] for edge in path]))
            products.append((symbols, numbers, product))
        if len(paths) == 1:
            symbols, numbers, _ = products[0]
            if len(paths[0]) == 1:  # a direct use: nothing to multiply
                return [left]
            return [f"{_INDENT}{self.partial(OUTPUT, name)} = {symbols} = {numbers} = "
                    f"{format_number(total)}"]
        return [f"{left}, the sum of {len(paths)} paths:",
                *(f"{_INDENT * 3}{symbols} = {numbers} = {format_number(product, 8)}"
                  for symbols, numbers, product in products)]

    def whole_gradients(self, gradient: dict[str, np.ndarray]) -> list[str]:
        """Each input's gradient formula, from the whole output in the inputs' symbols."""
        if self.derivation.too_large is not None:
            return [_skipped(self.derivation.too_large, "the chain rule above gives the "
                             "gradients")]
        lines = []
        whole = self.derivation.whole_output(element_symbols=False)
        for name in gradient:
            formula = _simplified(_diff(whole, name))
            # A number needs no "= value" after it (0 for an input the output ignores).
            lines += self.formula(self.partial(OUTPUT, name), formula,
                                  None if formula.is_Number else float(gradient[name]))
        return lines

    def representative(self, gradient: dict[str, np.ndarray]) -> list[str]:
        """The formula of the largest gradient element, when the exact oracle affords it."""
        derivation = self.derivation
        if not symbolic.exact_is_affordable(derivation.program):
            return [f"{_INDENT}(no per-element formula: the case is larger than the exact "
                    "oracle handles; the gradients come from the rule sweep)"]
        if derivation.too_large is not None:
            return [_skipped(derivation.too_large, "the gradients come from the rule sweep")]
        candidates = [(abs(float(g.reshape(-1)[k])), name, k) for name, g in gradient.items()
                      for k in range(g.size) if np.isfinite(g.reshape(-1)[k])]
        if not candidates:
            return [f"{_INDENT}(no differentiated input)"]
        _, name, flat = max(candidates, key=lambda item: item[0])
        shape = gradient[name].shape
        element = np.unravel_index(flat, shape) if shape else ()
        symbol = name + index_text(element)
        output = derivation.whole_output(element_symbols=True)
        cotangent = np.asarray(derivation.probe.cotangent, dtype=np.float64)
        k = int(np.argmax(np.abs(cotangent.reshape(-1))))
        of = OUTPUT if not cotangent.shape else OUTPUT + index_text(
            np.unravel_index(k, cotangent.shape))
        formula = _simplified(_diff(output.reshape(-1)[k], symbol))
        return self.formula(self.partial(of, symbol), formula,
                            float(gradient[name].reshape(-1)[flat]))


class _Explainer:
    """The layout of the output: the header, then a scalar case's sections (values, local
    derivatives, chain rule, gradients) or a tensor case's (inputs, op chain, a
    representative element), each under its heading."""

    def __init__(self, case: Case, point: Point, latex: bool) -> None:
        self.case = case
        self.derivation = _Derivation(case, point)
        self.formulas = _Formulas(self.derivation, latex)

    def text(self) -> str:
        program = self.case.program
        lines = self._header()
        needed = program.needed_for([program.output])
        if all(program.nodes[i].shape == () for i in needed):
            # A scalar graph's sections are sympy formulas of every node.
            symbolic.check_within_sympy_recursion(program, hint="")
            lines += self._scalar_sections()
        else:
            lines += self._tensor_sections()
        return "\n".join(lines) + "\n"

    def _header(self) -> list[str]:
        case, derivation = self.case, self.derivation
        where = f"{case.file}:{case.line}" if case.line is not None else case.file
        lines = [f"{case.name} ({where})" + (f": {case.description}" if case.description
                                              else "")]
        of = ("the output" if derivation.subject == OUTPUT
              else f"{derivation.subject} (the first of the check's cotangents)")
        lines.append(f"point: {derivation.point.dtype}; gradients of {of}: "
                     f"{derivation.gradients.method}")
        if case.impl is not None:
            spec = ("spec traced from the impl's forward (no output: written)" if case.traced
                    else "spec (output:)")
            lines.append(f"impl {case.impl_label} is what autograd checks; this explains the "
                         f"{spec} that the symbolic oracle differentiates")
        lines += [f"note: {kink}" for kink in derivation.gradients.kinks]
        if derivation.overflow is not None:
            lines.append(f"note: {derivation.overflow} is past float64's range: the gradients "
                         "are the rule sweep's, not evaluated exactly")
        return lines

    def _scalar_sections(self) -> list[str]:
        derivation, formulas = self.derivation, self.formulas
        program, names, env = derivation.program, derivation.names, derivation.env
        steps = derivation.steps()
        lines = ["", "values at the point"]
        for name, index in program.inputs.items():
            role = "" if program.nodes[index].needs_grad else "  (no gradient)"
            lines.append(f"{_INDENT}{name} = {describe_array(env[index])}{role}")
        for step in steps:
            spelled = spell(program, step.index, names) if step.name == names.get(
                step.index) else ", ".join(step.uses)
            lines.append(f"{_INDENT}{step.name} = {spelled} = {describe_array(env[step.index])}")

        local: dict[tuple[str, str], float] = {}
        lines += ["", "local derivatives (each step with respect to the names it uses)"]
        for of, used, derivative, value in derivation.local_derivatives(steps):
            local[(of, used)] = value
            lines += formulas.formula(formulas.partial(of, used), derivative,
                                      None if derivative.is_Number else value)

        lines += ["", "chain rule (a sum over paths from the output, of the products of the "
                      "local derivatives)"]
        uses = {step.name: [u for u in step.uses if derivation.needs_grad(u)] for step in steps}
        gradient = derivation.gradients.per_probe[0]
        for name in gradient:
            lines += formulas.chain(name, uses, local, float(gradient[name]))

        lines += ["", "gradients (sympy's derivative of the whole expression)"]
        lines += formulas.whole_gradients(gradient)
        return lines

    def _tensor_sections(self) -> list[str]:
        derivation = self.derivation
        gradient = derivation.gradients.per_probe[0]
        lines = ["", "inputs"]
        lines += self._inputs(gradient)
        lines += ["", "op chain (each step, then its ops in evaluation order: shape, value, "
                      f"∂{derivation.subject}/∂op; a tensor by its norm)"]
        lines += self._op_chain()
        value = derivation.env[derivation.program.output]
        lines.append(f"{_INDENT}value of the output: {describe_array(value)}")
        lines += ["", "representative element"]
        lines += self.formulas.representative(gradient)
        return lines

    def _inputs(self, gradient: dict[str, np.ndarray]) -> list[str]:
        """One line per input: its value, and its gradient (a tensor's by its norm)."""
        program, env = self.derivation.program, self.derivation.env
        lines = []
        width = max(len(name) for name in program.inputs)
        for name, index in program.inputs.items():
            text = f"{_INDENT}{name:<{width}}  {describe_array(env[index])}"
            if name in gradient and gradient[name].shape == ():
                text += f"; grad {format_number(float(gradient[name]), 6)}"
            elif name in gradient:
                grad = gradient[name]
                text += f"; grad norm {format_number(norm(grad), 4)}"
                if grad.size > 1 and np.isfinite(grad).any():
                    where = np.unravel_index(int(np.nanargmax(np.abs(grad))), grad.shape)
                    text += (f", largest |grad| {format_number(abs(float(grad[where])), 4)} "
                             f"at {name}{index_text(where)}")
            else:
                text += "; no gradient"
            lines.append(text)
        return lines

    def _op_chain(self) -> list[str]:
        """Each let and the output, then its ops with shape, value and adjoint, in columns."""
        derivation = self.derivation
        program, names, env = derivation.program, derivation.names, derivation.env
        rows: list[tuple[str, str] | str] = []
        by_key: dict[str, list[int]] = {}  # in evaluation order; once, not once per let
        for node in program.nodes:
            by_key.setdefault(node.key, []).append(node.index)
        for name, index in [*program.lets.items(), (OUTPUT, program.output)]:
            if names[index] != name:
                rows.append(f"{_INDENT}{name} = {names[index]}")
                continue
            rows.append(f"{_INDENT}{name} = {spell(program, index, names)}")
            key = "output" if name == OUTPUT else f"let.{name}"
            for node in (program.nodes[i] for i in by_key.get(key, ())):
                value = env.get(node.index)
                # value None: a let nothing needs, which the forward did not evaluate
                if node.op in ("input", "const") or value is None:
                    continue
                numbers = _value_and_gradient(value, derivation.adjoints.get(node.index))
                rows.append((f"{_INDENT * 2}{spell(program, node.index, names, depth=1)}",
                             f"{list(node.shape)}  {numbers}"))
        width = max((len(row[0]) for row in rows if isinstance(row, tuple)), default=0)
        return [row if isinstance(row, str) else f"{row[0]:<{width}}  {row[1]}"
                for row in rows]


def _whole_too_large(program: Program) -> str | None:
    """Why differentiating the whole output in sympy would be too costly for explain, or
    None: the derivatives' trees counted against MAX_DERIVATIVE_NODES and, one per
    differentiated element, MAX_DERIVATIVES_NODES."""
    size = symbolic.tree_sizes(program)[1]
    count = max(symbolic.differentiated_elements(program), 1)
    if size > MAX_DERIVATIVE_NODES:
        return (f"sympy's derivative of the whole expression would be a tree of "
                f"{_count_text(size)} nodes, more than {MAX_DERIVATIVE_NODES:,} (a let used "
                "twice is copied into it twice)")
    if size * count > MAX_DERIVATIVES_NODES:
        return (f"the derivatives of the whole expression by its {count:,} differentiated "
                f"elements would be trees of {_count_text(size * count)} nodes in all, more "
                f"than {MAX_DERIVATIVES_NODES:,}")
    return None


def _overflowed(program: Program, names: dict[int, str],
                env: dict[int, np.ndarray]) -> str | None:
    """The first element of a node the output needs whose float64 value is not finite
    (``b = inf``, ``a[1] = inf``, ``cosh(a4) = inf in let.a5``), or None."""
    for index in program.needed_for([program.output]):
        value = env.get(index)
        if value is None or value.dtype.kind != "f" or np.isfinite(value).all():
            continue
        element = tuple(int(i) for i in np.argwhere(~np.isfinite(value))[0])
        number = format_number(float(value[element]))
        if index in names:
            return f"{names[index]}{index_text(element)} = {number}"
        spelled = spell(program, index, names, depth=2)
        return (f"{spelled}{index_text(element)} = {number} in "
                f"{program.nodes[index].key}")
    return None


def _count_text(count: int) -> str:
    if count >= symbolic.COUNT_CAP:
        return f"over {symbolic.COUNT_CAP:.0e}"
    return f"{count:,}" if count < 10**6 else f"about {count:.1e}"


def _skipped(why: str, instead: str) -> str:
    return (f"{_INDENT}(not derived: {why}; {instead}, and `gradcheck-lab steps` or `graph` "
            "draws every op's value and gradient)")


def _factor(value: float) -> str:
    text = format_number(value, 6)
    return f"({text})" if text.startswith("-") else text


def _value_and_gradient(value: np.ndarray, adjoint: np.ndarray | None) -> str:
    if value.shape == ():
        text = f"value {format_number(float(value), 6)}"
        return text + ("  no gradient" if adjoint is None else
                       f"  grad {format_number(float(adjoint), 6)}")
    text = f"norm {format_number(norm(value), 4)}"
    return text + ("  no gradient" if adjoint is None else
                   f"  grad norm {format_number(norm(adjoint), 4)}")


def _sympy_values(program: Program, root: int,
                  given: dict[int, np.ndarray]) -> tuple[np.ndarray, list[int]]:
    """Node ``root`` as an object array of sympy expressions, from the op table's sympy forms,
    stopping at the ``given`` nodes; and which given nodes it used, in reading order."""
    env = interpret(program, given, [root], SYMPY)
    return np.asarray(env[root], dtype=object), _reading_order(program, root, given)


def _reading_order(program: Program, root: int, given: Container[int]) -> list[int]:
    """The given nodes under ``root``, in the order the expression mentions them."""
    order: list[int] = []
    seen: set[int] = set()
    stack = [root]
    while stack:
        index = stack.pop()
        if index in seen:
            continue
        seen.add(index)
        if index in given and index != root:
            order.append(index)
        else:
            stack.extend(reversed(program.nodes[index].args))
    return order


def _diff(expression: Any, name: str) -> Any:
    import sympy

    # safe: an expression built from the parsed IR; strict refuses strings.
    expression = sympy.sympify(expression, strict=True)
    return sympy.diff(expression, sympy.Symbol(name, real=True))


def _simplified(expression: Any) -> Any:
    """Common factors pulled out (2⋅z²⋅(x + y), not z²⋅(2⋅x + 2⋅y)); cheap, unlike simplify."""
    import sympy

    if len(str(expression)) > MAX_FORMULA_CHARACTERS:
        return expression
    return sympy.factor_terms(expression)


def _paths(start: str, end: str, uses: dict[str, list[str]],
           limit: int) -> list[list[tuple[str, str]]] | None:
    """Every path of uses from ``start`` down to ``end`` as (step, used) edges; None when
    there are more than ``limit`` of them."""
    counts: dict[str, int] = {}

    def count(name: str) -> int:  # memoized: the number of paths grows, the steps do not
        if name == end:
            return 1
        if name not in counts:
            counts[name] = sum(count(u) for u in uses.get(name, []))
        return counts[name]

    if count(start) > limit:
        return None
    found: list[list[tuple[str, str]]] = []

    def walk(name: str, path: list[tuple[str, str]]) -> None:
        if name == end:
            found.append(path)
            return
        for used in uses.get(name, []):
            if count(used):
                walk(used, [*path, (name, used)])

    walk(start, [])
    return found
