"""The symbolic oracle: gradients derived with sympy and evaluated without torch.

Small cases are differentiated elementwise by sympy and evaluated exactly (rationals stay
rationals: r144 gives exactly 72, 72, 96). Larger cases compose each op's rule (elementwise
derivatives from sympy, structural VJPs in closed form) in a reverse sweep in numpy float64,
which scales to MNIST-sized networks at the cost of one backward pass.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from fractions import Fraction
from typing import Any

import numpy as np

from gradcheck_lab.dtypes import EPSILON
from gradcheck_lab.errors import SpecError
from gradcheck_lab.ops import OPS
from gradcheck_lab.ops.derivatives import drop_steps, one_point_partials, sympy_to_float
from gradcheck_lab.oracles.contract import AT_POINT, Deferred, Given, Gradients
from gradcheck_lab.program import Program
from gradcheck_lab.program.interpret import NUMPY, SYMPY, input_values, interpret
from gradcheck_lab.program.naming import index_text
from gradcheck_lab.program.sweep import hessian_vector_sweeps, probe_sweeps, sweep
from gradcheck_lab.subject.points import Point
from gradcheck_lab.subject.probes import Probe

# Elementwise sympy expressions grow with the graph: beyond these sizes, use the rule sweep.
EXACT_MAX_SCALARS = 512
EXACT_MAX_INPUT_ELEMENTS = 64
EXACT_MAX_OUTPUT_ELEMENTS = 16
# expression_size × differentiated elements: the bundled and zoo cases stay under 25,000 and
# take under a second; an 8x8 tanh(x @ x) @ x chain is past 1e8 and would take minutes.
EXACT_MAX_WORK = 50_000
# The same × differentiated elements once more, for the exact Hessian-vector products: a
# 4x5 linear layer inside mean(tanh(.)**2) (38 elements, 7e5) takes 5 s; beyond this, the
# second-order rule sweep.
EXACT_MAX_HVP_WORK = 100_000
_DIGITS = 30

METHOD_EXACT = "exact, elementwise sympy"
METHOD_SWEEP = "rule sweep, numpy float64 (sympy-derived rules)"
# Mode "screen": where the exact oracle is affordable, the sweep goes first, held to its own
# round-off; a check runs the exact oracle only where the sweep's verdict is not a pass
# (``CaseCheck.compared``), since there exact arithmetic can change the verdict.
METHOD_SCREEN = ("rule sweep, numpy float64 (sympy-derived rules), held to its round-off; "
                 "exact elementwise sympy where it does not pass")


def gradients(program: Program, point: Point, probes: tuple[Probe, ...],
              mode: str = "auto") -> Gradients:
    """VJPs of the spec for each probe. ``mode``: "auto", "exact", "sweep" or "screen" (the
    sweep, marked ``screened``, where "auto" would be exact)."""
    with one_point_partials():  # every sweep below differentiates the same forward
        return _gradients(program, point, probes, mode)


def _gradients(program: Program, point: Point, probes: tuple[Probe, ...],
               mode: str) -> Gradients:
    roots = [program.output, *program.roots.values()]
    env = numpy_forward(program, point, roots)
    scale = term_scale(program, env)
    kinks = tuple(_kinks(program, env, point.dtype))
    domain, domain_elements = _domain(program, env)
    common: dict[str, Any] = {
        "kinks": kinks,
        "domain": tuple(domain),
        "domain_elements": domain_elements,
        "kinked_ops": kinked_ops(program),
        "roots": {key: env[index] for key, index in program.roots.items()},
        "term_scale": scale,
        "term_magnitudes": Deferred(len(probes), lambda: _swept(program, env, probes,
                                                                magnitudes=True)),
    }
    reason = exact_unaffordable_because(program)
    if mode == "exact" or (mode == "auto" and reason is None):
        check_within_sympy_recursion(program)
        value, per_probe, formulas = _exact(program, point, probes)
        swept = _swept(program, env, probes)
        value = _signed(value, env[program.output])
        per_probe, limits = _limits(per_probe, swept, point)
        return Gradients("symbolic", METHOD_EXACT, value, per_probe, exact=True,
                         formulas=formulas, notes=limits, **common)
    per_probe = _swept(program, env, probes)
    if mode == "screen" and reason is None:
        return Gradients("symbolic", METHOD_SCREEN, env[program.output], per_probe,
                         screened=True, **common)
    notes = (f"symbolic: the rule sweep, not exact elementwise sympy: the case has {reason}",
             ) if mode in ("auto", "screen") and reason is not None and _small(program) else ()
    return Gradients("symbolic", METHOD_SWEEP, env[program.output], per_probe, notes=notes,
                     **common)


def _swept(program: Program, env: dict[int, np.ndarray], probes: tuple[Probe, ...],
           magnitudes: bool = False) -> tuple[dict[str, np.ndarray], ...]:
    """The sweep for each probe, the independent ones in one sweep (``probe_sweeps``); a probe
    that is a multiple of an earlier one (a scalar output's c against 1) is that probe's
    sweep scaled (a VJP is linear in its cotangent), not swept again: the scaled probe tests
    autograd's use of grad_output, not the rules."""
    swept: list[dict[str, np.ndarray]] = []
    independent = [probe.cotangent for probe in probes if probe.multiple_of is None]
    together = (probe_sweeps(program, env, independent)
                if len(independent) > 1 and not magnitudes else None)
    taken = 0  # of ``together``, in the order of the independent probes
    for probe in probes:
        if probe.multiple_of is None:
            if together is None:
                swept.append(sweep(program, env, probe.cotangent, magnitudes=magnitudes))
            else:
                swept.append(together[taken])
                taken += 1
            continue
        base = np.asarray(probes[probe.multiple_of].cotangent, dtype=np.float64).reshape(-1)
        at = int(np.argmax(np.abs(base)))
        factor = float(np.asarray(probe.cotangent).reshape(-1)[at] / base[at])
        if magnitudes:
            factor = abs(factor)
        swept.append({name: factor * g for name, g in swept[probe.multiple_of].items()})
    return tuple(swept)


def _small(program: Program) -> bool:
    """Small enough that a user would expect the exact oracle (the reason is worth saying)."""
    return differentiated_elements(program) <= EXACT_MAX_INPUT_ELEMENTS


def differentiated_elements(program: Program) -> int:
    """The elements of the differentiated inputs that the output uses."""
    return sum(program.nodes[i].size for i in program.needed_for([program.output])
               if program.nodes[i].op == "input" and program.nodes[i].needs_grad)


def kinked_ops(program: Program) -> tuple[str, ...]:
    """The ops of the program that have kinks, sorted."""
    return tuple(sorted({node.op for node in program.nodes
                         if node.op in OPS and OPS[node.op].kinks is not None}))


def term_scale(program: Program, env: dict[int, np.ndarray]) -> float:
    """The largest finite |value| among the real-valued nodes of the forward."""
    largest = 0.0
    for index, values in env.items():
        if program.nodes[index].is_integer or not values.size:
            continue
        finite = np.abs(values[np.isfinite(values)])
        if finite.size:
            largest = max(largest, float(finite.max()))
    return largest


def _signed(exact: np.ndarray, swept: np.ndarray) -> np.ndarray:
    """sympy's infinity at a pole is unsigned (zoo, read as +inf); float64 keeps the sign IEEE
    arithmetic gives (log 0 is -inf, d/dx 1/x at 0 is -inf): an infinite exact element takes
    its sign from there."""
    exact = np.asarray(exact, dtype=np.float64)
    swept = np.broadcast_to(np.asarray(swept, dtype=np.float64), exact.shape)
    return np.where(np.isinf(exact) & np.isinf(swept), swept, exact)


def _limits(per_probe: tuple[dict[str, np.ndarray], ...],
            swept: tuple[dict[str, np.ndarray], ...],
            point: Point) -> tuple[tuple[dict[str, np.ndarray], ...], tuple[str, ...]]:
    """Exact gradients with infinities signed, and where sympy's formula is an indeterminate
    form at finite inputs (0·0**-1, 0**0·log 0: nan or an unsigned infinity) but the op's rule
    knows its finite limit (pow at a zero base), the rule's value, said in a note."""
    fixed: list[dict[str, np.ndarray]] = []
    replaced: dict[str, str] = {}
    inputs_finite = all(np.isfinite(v).all() for v in point.values.values()
                        if v.dtype.kind == "f")
    for grads, rules in zip(per_probe, swept, strict=True):
        probe = {}
        for name, g in grads.items():
            g = _signed(g, rules[name])
            limit = ~np.isfinite(g) & np.isfinite(rules[name]) & inputs_finite
            if limit.any():
                replaced.setdefault(name, index_text(tuple(np.argwhere(limit)[0])))
                g = np.where(limit, rules[name], g)
            probe[name] = g
        fixed.append(probe)
    notes = tuple(f"symbolic: sympy's formula is an indeterminate form at {name}{where} (0·∞, "
                  "0/0); its limit from the op's rule is used there"
                  for name, where in replaced.items())
    return tuple(fixed), notes


def exact_is_affordable(program: Program) -> bool:
    return exact_unaffordable_because(program) is None


def exact_unaffordable_because(program: Program) -> str | None:
    """Why the exact elementwise oracle would be too costly for this case, or None."""
    needed = [program.nodes[i] for i in program.needed_for([program.output])]
    differentiable = differentiated_elements(program)
    for node in needed:
        limit = OPS[node.op].exact_limit if node.op in OPS else None
        reason = limit(program.arg_infos(node.index)) if limit is not None else None
        if reason is not None:
            return f"{reason} ({node.key})"
    if differentiable > EXACT_MAX_INPUT_ELEMENTS:
        return (f"{differentiable} differentiated elements (at most "
                f"{EXACT_MAX_INPUT_ELEMENTS})")
    scalars = sum(n.size for n in needed)
    if scalars > EXACT_MAX_SCALARS:
        return f"{scalars} scalars in the graph (at most {EXACT_MAX_SCALARS})"
    if program.output_node.size > EXACT_MAX_OUTPUT_ELEMENTS:
        return (f"{program.output_node.size} output elements (at most "
                f"{EXACT_MAX_OUTPUT_ELEMENTS})")
    nested = nested_kinks(program)
    if nested is not None:
        return nested
    depth, key = nesting_depth(program)
    if depth > EXACT_MAX_NESTING:
        return f"expressions nested {depth} deep ({key}; at most {EXACT_MAX_NESTING})"
    degree, key = polynomial_degree(program)
    if degree > EXACT_MAX_DEGREE:
        return (f"a power of degree about {degree:.3g} in the inputs ({key}: chained powers; "
                f"at most {EXACT_MAX_DEGREE})")
    work = expression_size(program) * max(differentiable, 1)
    if work > EXACT_MAX_WORK:
        return (f"expressions too large to differentiate exactly in good time (about "
                f"{work:.2g} terms × differentiated elements, at most {EXACT_MAX_WORK:,})")
    return None


# sympy splits a piecewise function of an expression that holds k piecewise terms into up to
# 2**k cases: relu(sum(relu(x))) over 60 elements does not finish in ten minutes.
EXACT_MAX_NESTED_KINKS = 6


def nested_kinks(program: Program) -> str | None:
    """A kinked op (relu, abs, max_pool2d) over an expression that already holds more than
    EXACT_MAX_NESTED_KINKS kinked terms per element, or None."""
    pieces: dict[int, int] = {}
    for index in program.needed_for([program.output]):
        node = program.nodes[index]
        if node.op in ("input", "const"):
            pieces[index] = 0
            continue
        op = OPS[node.op]
        inner = sum(pieces[a] * (1 if op.is_elementwise else program.nodes[a].size)
                    for a in node.args)
        if op.kinks is not None and inner > EXACT_MAX_NESTED_KINKS:
            return (f"{node.op} over an expression with {inner} kinks ({node.key}: sympy would "
                    f"split it into up to 2**{inner} cases)")
        pieces[index] = inner + (op.kinks is not None)
    return None


# sympy differentiates and evaluates by recursion, about five Python frames per level of
# nesting: 100 levels stay well inside Python's default limit of 1,000 frames.
EXACT_MAX_NESTING = 100


def nesting_depth(program: Program) -> tuple[int, str]:
    """The longest chain of ops from an input to the output (lets followed through), and the
    key of the node at its end."""
    depths: dict[int, int] = {}
    deepest, where = 0, ""
    for index in program.needed_for([program.output]):
        node = program.nodes[index]
        depths[index] = 1 + max((depths[a] for a in node.args), default=-1)
        if depths[index] > deepest:
            deepest, where = depths[index], node.key
    return deepest, where


def check_within_sympy_recursion(program: Program,
                                 hint: str = "; use --symbolic sweep or auto") -> None:
    """Expressions nested deeper than sympy's recursion can follow (--symbolic exact,
    explain): a SpecError at the key, not a RecursionError from inside sympy."""
    depth, key = nesting_depth(program)
    if depth > EXACT_MAX_NESTING:
        raise SpecError(f"expressions nested {depth} deep: sympy follows at most "
                        f"{EXACT_MAX_NESTING} levels{hint}", key=key)


# The exact oracle evaluates at rational inputs, and sympy raises a rational to an integer
# power at once: (x**64)**64... at x = 1.1 is a rational of 53 · degree bits per factor. Each
# power stays under the expression language's own limit; chained through lets they multiply.
EXACT_MAX_DEGREE = 1024


def polynomial_degree(program: Program) -> tuple[float, str]:
    """An upper bound of the degree of the output as a polynomial in the inputs, through
    constant integer powers (products add degrees, powers multiply them; any other op is
    counted as a product of its arguments), and the key of the node where it is largest."""
    degrees: dict[int, float] = {}
    worst, where = 0.0, ""
    for index in program.needed_for([program.output]):
        node = program.nodes[index]
        if node.op in ("input", "const"):
            degrees[index] = 1.0 if node.op == "input" else 0.0
            continue
        exponent = program.nodes[node.args[-1]] if node.op == "pow" else None
        if exponent is not None and exponent.op == "const" and exponent.const is not None:
            degrees[index] = degrees[node.args[0]] * float(abs(exponent.const))
        else:
            degrees[index] = sum(degrees[a] for a in node.args)
        if degrees[index] > worst:
            worst, where = degrees[index], node.key
    return worst, where


def expression_size(program: Program) -> int:
    """An upper estimate of the size of one output element's sympy expression: an
    elementwise op adds its arguments' sizes; any other op (matmul, softmax, sum, ...) may
    make each output element depend on every element of its arguments. Nested matmuls grow
    it multiplicatively, which is what makes exact differentiation take minutes."""
    return tree_sizes(program)[0]


# Ops whose derivative holds no copy of their arguments: add, sub, neg, sum.
_LINEAR_OPS = frozenset({"add", "sub", "neg", "sum"})
COUNT_CAP = 10**18  # sizes are counted up to here (40 lets that double: 10¹⁴ nodes)


def tree_sizes(program: Program) -> tuple[int, int]:
    """Estimates of one output element's sympy expression and of its derivative as trees,
    counted on the program's graph in integers (capped at COUNT_CAP), before anything is
    built. A node's expression has ``1 + Σ m·size(arg)`` nodes (m = 1 for an elementwise
    op; for any other op each argument element may be in each result element); its
    derivative holds its arguments' derivatives the same way and, unless the op is linear, a
    copy of the node's expression (the product rule's other factors, f'(a) of a function).
    A shared let is counted at every use, as sympy's tree holds it."""
    sizes: dict[int, tuple[int, int]] = {}  # node -> (expression, derivative)
    for index in program.needed_for([program.output]):
        node = program.nodes[index]
        if not node.args:  # an input, a constant, a value made from nothing
            sizes[index] = (1, 1)
            continue
        elementwise = OPS[node.op].is_elementwise
        expression = derivative = 1
        for arg in node.args:
            times = 1 if elementwise else program.nodes[arg].size
            expression += times * sizes[arg][0]
            derivative += times * sizes[arg][1]
        if node.op not in _LINEAR_OPS:
            derivative += expression
        sizes[index] = (min(expression, COUNT_CAP), min(derivative, COUNT_CAP))
    return sizes[program.output]


def numpy_forward(program: Program, point: Point, roots: list[int]) -> dict[int, np.ndarray]:
    """Every node ``roots`` need, evaluated in numpy float64 (integer tensors stay int64);
    at the point a traced program was traced at, its nodes as the trace evaluated them."""
    known = program.evaluated_at
    if known is not None and known.holds_at(point.values):
        needed = program.needed_for(roots)
        if all(index in known.nodes for index in needed):
            return {index: known.nodes[index] for index in needed}
    return interpret(program, input_values(program, point.values), roots, NUMPY)


# Seeded sign directions along which ``branches_within`` moves the inputs by one step.
_BRANCH_DIRECTIONS = 2
_BRANCH_STREAM = 4


def branches_within(program: Program, point: Point, relative_step: float,
                    seed: int) -> int:
    """How many of the spec's conditions (its comparisons: data-dependent branches) change
    value when every differentiated input moves by one finite-difference step, along seeded
    ± directions. Nonzero: the spec's branch holds only in a neighbourhood smaller than the
    step, as an iterative solver's does (a bisection's 50th comparison flips within 1e-15),
    so its exact derivative is that of the algorithm's current branch, not of the function
    the forward computes at the scale finite differences and a solver's backward see."""
    conditions = [node.index for node in program.nodes
                  if node.op in OPS and OPS[node.op].returns == "bool"]
    if not conditions:
        return 0
    roots = [program.output, *conditions]
    center = numpy_forward(program, point, roots)
    rng = np.random.default_rng([seed, _BRANCH_STREAM])
    flipped: set[int] = set()
    for _ in range(_BRANCH_DIRECTIONS):
        for sign in (1.0, -1.0):
            values = dict(point.values)
            for name, index in program.inputs.items():
                node = program.nodes[index]
                if node.needs_grad and name in values:
                    x = np.asarray(values[name], dtype=np.float64)
                    step = relative_step * np.maximum(1.0, np.abs(x))
                    values[name] = x + sign * step * rng.choice([-1.0, 1.0], x.shape)
            moved = interpret(program, input_values(program, values), roots, NUMPY)
            flipped.update(i for i in conditions
                           if not np.array_equal(moved[i], center[i]))
    return len(flipped)


# A kink's computed arguments closer than this many ulps of what they were computed from
# are on it: that computation (a bisection converging onto a clamp's bound) rounds at that
# level, so their side of the kink is the rounding's choice, not the function's.
KINK_ULPS = 8


def _kinks(program: Program, env: dict[int, np.ndarray], dtype: str = "float64") -> list[str]:
    """Where an op with a kink (relu, abs, a tie in max_pool2d) sits on it, in terms a user
    can find. The arguments are judged as the case's dtype holds them (in float32, 1000 + 1
    and 1000 + 1.000001 are the same number, a tie torch breaks its own way), and as the
    rounding of what computed them blurs them (``_rounding``): an input is exact."""
    found = []
    for index in program.needed_for([program.output]):
        node = program.nodes[index]
        op = OPS.get(node.op)
        # A comparison is never differentiated, but where its sides meet the condition
        # flips: a kink of whatever the condition selects, when the sides depend on an input.
        if op is None or op.kinks is None or not any(
                program.nodes[a].needs_grad for a in node.args):
            continue
        args = [_as_dtype(env[a], dtype) for a in node.args]
        mask = op.kinks(args, node.param_dict)
        grid = max(_rounding(program, env, a, dtype) for a in node.args)
        for shift in (0.0, 0.5) if grid > 0 else ():  # two grids half a cell apart: no
            mask = mask | op.kinks([_on_grid(a, grid, shift) for a in args],  # tie straddles
                                   node.param_dict)  # both
        argument = program.nodes[node.args[0]]
        # An elementwise binary op's mask has its broadcast shape (maximum(x, y), y larger);
        # a reduction's, its argument's.
        shape = np.broadcast_shapes(np.shape(mask), argument.shape)
        if argument.op in OPS and OPS[argument.op].flat_at_zero:
            # relu's zeros come from its flat side, where nothing depends on the input: a tie
            # among them (max_pool2d(relu(h))) or a kink there (relu(relu(x))) changes no
            # gradient, which is 0 either way.
            mask = np.broadcast_to(mask, shape) & (env[node.args[0]] != 0)
        if not np.any(mask):
            continue
        if shape == argument.shape:
            where = argument.name or f"the argument of {node.op}() in {node.key}"
        else:
            where = f"{node.op}() in {node.key}"
        hits = np.argwhere(np.broadcast_to(mask, shape))
        first = index_text(tuple(hits[0]))
        more = f" and {len(hits) - 1} more element(s)" if len(hits) > 1 else ""
        found.append(f"not differentiable at {where}{first}{more} ({node.op} {op.kink_where})")
    return found


def _domain(program: Program,
            env: dict[int, np.ndarray]) -> tuple[list[str], dict[str, tuple[int, ...]]]:
    """Where the function leaves the real numbers or its derivative does: an op whose value
    is nan or infinite where its arguments are finite (sqrt of a negative, log of 0, a pole),
    or an elementwise op whose slope is (sqrt at 0), named as the case file names it:
    "outside the domain of sqrt at x[3]"; and, where such an op acts elementwise on an input,
    that input's elements (every gradient through them is outside the domain)."""
    found = []
    elements: dict[str, set[int]] = {}
    for index in program.needed_for([program.output]):
        node = program.nodes[index]
        if node.op in ("input", "const") or node.is_integer:
            continue
        args = [np.asarray(env[a], dtype=np.float64) for a in node.args]
        if not all(np.isfinite(a).all() for a in args):
            continue  # already outside further up: said there
        value = np.asarray(env[index], dtype=np.float64)
        argument = program.nodes[node.args[0]]
        elementwise = OPS[node.op].is_elementwise and argument.shape == node.shape
        bad = ~np.isfinite(value)
        said = "outside the domain of {op} at {where}"
        if not bad.any() and elementwise and argument.needs_grad:
            bad = ~np.isfinite(_slope(node.op, args, value, node.param_dict))
            said = "{op} has an infinite slope at {where}"
        if not bad.any():
            continue
        hits = np.argwhere(bad)
        where = ((argument.name or f"the argument of {node.op}() in {node.key}")
                 + (index_text(tuple(hits[0])) if elementwise and node.shape else ""))
        more = f" and {len(hits) - 1} more element(s)" if elementwise and len(hits) > 1 else ""
        found.append(said.format(op=node.op, where=where) + more)
        if elementwise and argument.op == "input" and argument.name is not None:
            elements.setdefault(argument.name, set()).update(
                int(f) for f in np.flatnonzero(bad.reshape(-1)))
    return found, {name: tuple(sorted(flats)) for name, flats in elements.items()}


def _slope(op: str, args: list[np.ndarray], value: np.ndarray, params: dict) -> np.ndarray:
    """An elementwise op's derivative in its first argument (its VJP rule, limits included)."""
    needs = [True] + [False] * (len(args) - 1)
    with np.errstate(all="ignore"):
        return np.asarray(OPS[op].vjp(np.ones(value.shape), args, value, params, needs)[0])


def _rounding(program: Program, env: dict[int, np.ndarray], index: int, dtype: str) -> float:
    """How far rounding may have moved node ``index``'s value: KINK_ULPS of the largest
    value it was computed from (0 for an input or a constant, which are exact)."""
    node = program.nodes[index]
    if node.op in ("input", "const"):
        return 0.0
    largest = max((float(np.max(np.abs(env[a]), initial=0.0)) for a in node.args
                   if env[a].dtype.kind == "f" and np.all(np.isfinite(env[a]))), default=0.0)
    return KINK_ULPS * EPSILON[dtype] * largest


def _on_grid(values: np.ndarray, grid: float, shift: float) -> np.ndarray:
    """Real values rounded to a grid of spacing ``grid`` (offset by ``shift`` cells);
    integers, bools and non-finite values as they are."""
    if values.dtype.kind != "f":
        return values
    with np.errstate(all="ignore"):
        rounded = (np.round(values / grid + shift) - shift) * grid
    return np.where(np.isfinite(rounded), rounded, values)


def _as_dtype(values: np.ndarray, dtype: str) -> np.ndarray:
    """Real values rounded to ``dtype`` (through torch, which knows bfloat16), as float64."""
    if dtype == "float64" or values.dtype.kind != "f":
        return values
    import torch

    return torch.from_numpy(np.ascontiguousarray(values)).to(getattr(torch, dtype)).to(
        torch.float64).numpy()


def exact_rational(value: Any) -> Any:
    """A number as the sympy Rational it is exactly."""
    import sympy

    fraction = Fraction(value)  # exact for ints, Fractions and binary floats alike
    return sympy.Rational(fraction.numerator, fraction.denominator)


def _sympy_graph(program: Program,
                 point: Point) -> tuple[np.ndarray, dict[str, np.ndarray], Callable[[Any], float]]:
    """The output as sympy expressions of one symbol per differentiated input element; those
    symbols by input; and an exact evaluation at the point, rounded once to float64."""
    import sympy

    given: dict[int, np.ndarray] = {}
    substitutions: dict[Any, Any] = {}
    for name, index in program.inputs.items():
        node = program.nodes[index]
        values = point.values[name]
        if node.is_integer:
            given[index] = values
            continue
        # Exactly the binary values torch sees (a literal 1.5707963267948966 as the float it
        # rounds to, not its decimal), so that the oracles differentiate the same function.
        numbers = np.empty(node.shape, dtype=object)
        flat_numbers = numbers.reshape(-1)
        for flat, item in enumerate(np.asarray(values).reshape(-1)):
            flat_numbers[flat] = exact_rational(float(item))
        if not node.needs_grad:
            given[index] = numbers
            continue
        names = np.empty(node.shape, dtype=object)
        for multi in np.ndindex(*node.shape):
            names[multi] = sympy.Symbol(name + (index_text(multi) if multi else ""), real=True)
            substitutions[names[multi]] = numbers[multi]
        given[index] = names
    used = set(program.needed_for([program.output]))
    symbols = {name: given[index] for name, index in program.inputs.items()
               if index in used and program.nodes[index].needs_grad}
    env = interpret(program, {i: v for i, v in given.items() if i in used}, [program.output],
                    SYMPY)

    def evaluate(expr: Any) -> float:
        if hasattr(expr, "xreplace") and _symbolic_exponent(expr):
            # A rational to a rational power, evaluated, makes sympy look for exact roots
            # (factoring huge integers: minutes); left unevaluated, evalf computes it to
            # _DIGITS digits like any other term.
            with sympy.core.parameters.evaluate(False):
                value = expr.xreplace(substitutions)
            return sympy_to_float(value.evalf(_DIGITS))
        value = expr.xreplace(substitutions) if hasattr(expr, "xreplace") else expr
        if isinstance(value, (int, Fraction)):
            return _float_or_infinity(value)
        if value.is_Rational:
            return _float_or_infinity(Fraction(int(value.p), int(value.q)))
        return sympy_to_float(value.evalf(_DIGITS))

    return np.asarray(env[program.output], dtype=object), symbols, evaluate


def _float_or_infinity(value: int | Fraction) -> float:
    """The exact value in float64: past its range, the infinity float64 rounds it to (x ·
    1e308 · 1e308's gradient), as autograd's float64 arithmetic gives it."""
    try:
        return float(value)
    except OverflowError:
        return math.inf if value > 0 else -math.inf


def _exact(program: Program, point: Point,
           probes: tuple[Probe, ...]) -> tuple[np.ndarray, tuple[dict[str, np.ndarray], ...],
                                               dict[str, Any]]:
    import sympy

    output, symbols, evaluate = _sympy_graph(program, point)
    with np.errstate(all="ignore"):  # an exact value beyond float64 rounds to inf, quietly
        value = np.vectorize(evaluate, otypes=[np.float64])(output).reshape(output.shape)
    # Jacobian entries d output[k] / d input element, differentiated and evaluated exactly.
    jacobians: dict[str, np.ndarray] = {}
    formulas: dict[str, Any] = {}
    for name, names in symbols.items():
        rows = []
        for out_expr in output.reshape(-1):
            derivatives = [drop_steps(sympy.diff(out_expr, s)) if hasattr(out_expr, "diff")
                           else 0
                           for s in names.reshape(-1)]
            if output.shape == ():
                formulas[name] = np.asarray(derivatives, dtype=object).reshape(names.shape)
            rows.append([evaluate(d) for d in derivatives])
        jacobians[name] = np.asarray(rows, dtype=np.float64)
    # A differentiable input the output does not use has a zero gradient.
    unused = {name: np.zeros(program.nodes[index].shape)
              for name, index in program.inputs.items()
              if program.nodes[index].needs_grad and name not in symbols}
    per_probe = []
    for probe in probes:
        weights = np.asarray(probe.cotangent, dtype=np.float64).reshape(-1)
        used = weights != 0  # so that an infinite entry elsewhere does not give 0 * inf
        per_probe.append({
            **{name: (weights[used] @ jacobian[used]).reshape(symbols[name].shape)
               for name, jacobian in jacobians.items()},
            **unused,
        })
    return value, tuple(per_probe), formulas


def hessian_vector_products(program: Program, point: Point, probes: tuple[Probe, ...],
                            tangents: dict[str, np.ndarray], mode: str = "auto",
                            ) -> tuple[tuple[dict[str, np.ndarray], ...], str]:
    """For each probe u, (d/dx)(u·J(x)·v), and the method: exact where the exact oracle
    affords the case (sympy differentiates the directional derivative of u·f along v once
    more), else the second-order rule sweep in float64. ``mode`` as for ``gradients``."""
    if mode == "exact" or (mode == "auto" and exact_hvp_is_affordable(program)):
        check_within_sympy_recursion(program)
        return _exact_hessian_vector_products(program, point, probes, tangents), METHOD_EXACT
    env = numpy_forward(program, point, [program.output])
    return hessian_vector_sweeps(program, env, [probe.cotangent for probe in probes],
                                 tangents), METHOD_SWEEP


def exact_hvp_is_affordable(program: Program) -> bool:
    """The exact oracle affords the case, and differentiating once more: sympy's second
    derivative costs about one more factor of the differentiated elements."""
    if not exact_is_affordable(program):
        return False
    return expression_size(program) * max(differentiated_elements(program), 1) ** 2 <= (
        EXACT_MAX_HVP_WORK)


def _exact_hessian_vector_products(program: Program, point: Point, probes: tuple[Probe, ...],
                                   tangents: dict[str, np.ndarray],
                                   ) -> tuple[dict[str, np.ndarray], ...]:
    import sympy

    output, symbols, evaluate = _sympy_graph(program, point)
    flat_outputs = output.reshape(-1)
    results = []
    for probe in probes:
        weights = np.asarray(probe.cotangent, dtype=np.float64).reshape(-1)
        weighted = sympy.Add(*[exact_rational(float(w)) * expr
                               for w, expr in zip(weights, flat_outputs, strict=True) if w != 0])
        directional = sympy.Add(*[
            drop_steps(sympy.diff(weighted, symbol)) * exact_rational(float(v))
            for name, names in symbols.items()
            for symbol, v in zip(names.reshape(-1), tangents[name].reshape(-1), strict=True)],
            0)
        with np.errstate(all="ignore"):
            results.append({
                **{name: np.zeros(tangent.shape) for name, tangent in tangents.items()},
                **{name: np.array([evaluate(drop_steps(sympy.diff(directional, symbol)))
                                   for symbol in names.reshape(-1)],
                                  dtype=np.float64).reshape(names.shape)
                   for name, names in symbols.items()}})
    return tuple(results)


def _symbolic_exponent(expr: Any) -> bool:
    """Whether a power in ``expr`` has an exponent that depends on the inputs."""
    import sympy

    return any(power.exp.free_symbols for power in expr.atoms(sympy.Pow))


def mode_for(setting: str) -> str:
    """The oracle's mode for the ``symbolic`` setting: "auto" screens with the sweep first
    (the exact oracle then runs where it can change the verdict: ``CaseCheck.compared``)."""
    return "screen" if setting == "auto" else setting


class SymbolicOracle:
    """Derived from the spec with sympy's rules, never calling torch: once per point, before
    any device (it is also what says the point sits on a kink)."""

    name = "symbolic"
    stage = AT_POINT

    def gradients(self, given: Given) -> Gradients:
        return gradients(given.program, given.point, given.probes,
                         mode_for(given.settings.symbolic))


ORACLE = SymbolicOracle()

