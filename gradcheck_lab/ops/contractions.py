"""Products that sum over shared indices: ``einsum`` ("ij,jk->ik" with torch's and numpy's
meaning), and the fixed contractions ``dot outer bmm`` built on it, plus ``trace``.

An einsum is linear in each operand: the VJP of operand k is the einsum of the cotangent with
the other operands onto operand k's indices (broadcast over an index only operand k has,
which the output sums over). np.einsum works alike on floats and on sympy object arrays.
"""

from __future__ import annotations

import functools
import math
import string
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from gradcheck_lab.errors import SpecError
from gradcheck_lab.ops.base import (
    MAX_KERNEL_FLOPS,
    ArgInfo,
    Arrays,
    Gradients,
    Op,
    Param,
    Params,
    Shape,
    as_float,
    check_kernel_cost,
    linear_magnitudes,
    object_array,
    torch_module,
)

MAX_OPERANDS = 8


def parse_equation(equation: str, ndims: Sequence[int]) -> tuple[list[str], str]:
    """The operands' index letters and the output's, checked: letters only (no ..., no
    index repeated within an operand), one spec per operand of matching rank; an implicit
    output is the letters used once, in alphabetical order, as torch and numpy have it."""
    text = equation.replace(" ", "")
    inputs, arrow, output = text.partition("->")
    specs = inputs.split(",")
    if "." in text:
        raise SpecError("einsum(): ... (broadcast dims) is not supported; name every index")
    if any(c not in string.ascii_letters for c in "".join(specs) + output):
        raise SpecError(f"einsum(): {equation!r} has characters other than letters, commas "
                        "and one ->")
    if len(specs) != len(ndims):
        raise SpecError(f"einsum(): {equation!r} names {len(specs)} operand(s), "
                        f"{len(ndims)} given")
    for spec, ndim in zip(specs, ndims, strict=True):
        if len(set(spec)) != len(spec):
            raise SpecError(f"einsum(): {spec!r} repeats an index (a diagonal): use "
                            "diagonal() first")
        if len(spec) != ndim:
            raise SpecError(f"einsum(): {spec!r} has {len(spec)} indices for a {ndim}-d "
                            "operand")
    letters = "".join(specs)
    if not arrow:
        output = "".join(sorted(c for c in set(letters) if letters.count(c) == 1))
    if len(set(output)) != len(output) or any(c not in letters for c in output):
        raise SpecError(f"einsum(): output {output!r} repeats an index or names one no "
                        "operand has")
    return specs, output


def _sizes(specs: list[str], shapes: Sequence[Shape]) -> dict[str, int]:
    sizes: dict[str, int] = {}
    for spec, shape in zip(specs, shapes, strict=True):
        for letter, size in zip(spec, shape, strict=True):
            if sizes.setdefault(letter, size) != size:
                raise SpecError(f"einsum(): index {letter!r} has sizes {sizes[letter]} and "
                                f"{size}")
    return sizes


def _equation(params: Params, fixed: str | None) -> str:
    return fixed if fixed is not None else str(params["equation"])


# One numpy call runs to its end whatever the case budget says: a contraction of more
# operands than a product of two is refused beyond this many operations in the order numpy
# would take (the limit of every single call, ops.base.MAX_KERNEL_FLOPS).
MAX_CONTRACTION_FLOPS = MAX_KERNEL_FLOPS


def _numpy_path(equation: str, shapes: Sequence[Shape]) -> tuple[list[tuple[int, ...]], float]:
    """numpy's greedy order for ``equation`` on operands of these shapes (np.einsum_path on
    zero-strided views: no data) and its count of operations."""
    import re

    views = [np.broadcast_to(np.zeros(()), shape) for shape in shapes]  # shapes, no data
    path, report = np.einsum_path(equation, *views, optimize=OPTIMIZE)
    found = re.search(r"Optimized FLOP count:\s*([0-9.e+]+)", report)
    flops = float(found.group(1)) if found else 0.0
    return [tuple(int(i) for i in step) for step in path[1:]], flops


def _refuse_costly(equation: str, shapes: Sequence[Shape]) -> None:
    """A SpecError where numpy's greedy order for ``equation`` costs more than
    MAX_CONTRACTION_FLOPS (where every pairwise intermediate is too large it falls back to
    one loop over every index: four 64³ operands, 64⁶ products per element), or where the
    pairwise order torch runs (contraction_plan) does."""
    _, flops = _numpy_path(equation, shapes)
    if flops > MAX_CONTRACTION_FLOPS:
        raise SpecError(f"einsum(): {equation!r} would take about {flops:.2g} operations in "
                        f"numpy's order (limit {MAX_CONTRACTION_FLOPS:.0e}): contract in "
                        "steps of two operands")
    specs, output = parse_equation(equation, [len(shape) for shape in shapes])
    flops = contraction_plan(tuple(specs), output, tuple(map(tuple, shapes))).flops
    if flops > MAX_CONTRACTION_FLOPS:
        raise SpecError(f"einsum(): {equation!r} would take about {flops:.2g} operations in "
                        f"pairs (limit {MAX_CONTRACTION_FLOPS:.0e}): contract in steps of "
                        "two operands")


def _pair_flops(specs: Sequence[str], output: str, sizes: dict[str, int]) -> int:
    """What numpy does with two operands (np.einsum's bmm_einsum): each operand's indices
    that neither the other nor the output has summed away first, then one (batched) BLAS
    product over the indices left, a multiply-add for each of their combinations."""
    kept = {c for c in "".join(specs) if c in output or all(c in s for s in specs)}
    sums = sum(math.prod(sizes[c] for c in spec) for spec in specs)
    return sums + 2 * math.prod(sizes[c] for c in kept)


# numpy's contraction order (pairwise, greedy) instead of one loop over every index at once:
# six operands of 60 elements are 6 sums, not 60**6 products.
OPTIMIZE = "greedy"


@dataclass(frozen=True)
class ContractionPlan:
    """An einsum as steps of one or two operands: each step takes the operands at
    ``positions`` of the working list (the operands, then each step's result appended at its
    end, as np.einsum_path numbers them), contracts them by ``equation`` and appends the
    result. The steps are numpy's greedy path (what _refuse_costly prices), a step of more
    operands (numpy's fallback to one loop) split into pairs, smallest result first; ``flops``
    counts every step (_pair_flops) and ``largest`` the most elements a result holds. Run by
    torch.einsum two operands at a time, a path holds no intermediate but those counted
    (torch.einsum of three or more operands contracts left to right: a [N,1], b [1,N],
    c [N,1] in "ij,jk,kl->il" make an N x N b·a)."""

    steps: tuple[tuple[tuple[int, ...], str], ...]
    flops: int
    largest: int

    def run(self, operands: Sequence[Any], einsum: Callable[..., Any]) -> Any:
        terms = list(operands)
        for positions, equation in self.steps:
            picked = [terms[p] for p in positions]
            for p in sorted(positions, reverse=True):
                del terms[p]
            terms.append(einsum(equation, *picked))
        (result,) = terms
        return result


def _cheapest_pair(group: Sequence[int], members: dict[int, str], target: str,
                   sizes: dict[str, int]) -> tuple[int, int, str]:
    """Of a group contracted at once onto ``target``, the pair whose result is smallest
    (then cheapest), and its result's letters: those the target or the group's other
    members have."""
    best: tuple[tuple[int, int], int, int, str] | None = None
    for i, a in enumerate(group):
        for b in group[i + 1:]:
            keep = set(target).union(*(members[g] for g in group if g not in (a, b)))
            result = "".join(sorted(set(members[a] + members[b]) & keep))
            key = (math.prod(sizes[c] for c in result),
                   _pair_flops([members[a], members[b]], result, sizes))
            if best is None or key < best[0]:
                best = (key, a, b, result)
    assert best is not None
    return best[1], best[2], best[3]


@functools.lru_cache(maxsize=512)
def contraction_plan(specs: tuple[str, ...], output: str,
                     shapes: tuple[Shape, ...]) -> ContractionPlan:
    """The pairwise steps of ``specs -> output`` on these shapes (ContractionPlan)."""
    sizes = _sizes(list(specs), shapes)
    path, _ = _numpy_path(",".join(specs) + "->" + output, shapes)

    def size(letters: str) -> int:
        return math.prod(sizes[c] for c in letters)

    terms = list(enumerate(specs))  # (identity, letters): the working list
    fresh = len(specs)
    steps: list[tuple[tuple[int, ...], str]] = []
    flops = largest = 0

    def emit(group: list[int], result: str) -> None:
        nonlocal fresh, flops, largest
        positions = tuple(i for i, (ident, _) in enumerate(terms) if ident in group)
        positions = tuple(sorted(positions, key=lambda i: group.index(terms[i][0])))
        letters = [terms[i][1] for i in positions]
        steps.append((positions, ",".join(letters) + "->" + result))
        flops += _pair_flops(letters, result, sizes)
        largest = max(largest, size(result))
        for p in sorted(positions, reverse=True):
            del terms[p]
        terms.append((fresh, result))
        fresh += 1

    for step in path:
        group = [terms[p][0] for p in step]
        members = {ident: letters for ident, letters in terms if ident in group}
        rest = [letters for ident, letters in terms if ident not in group]
        if rest:
            needed = set(output).union(*rest)
            target = "".join(sorted(set("".join(members.values())) & needed))
        else:
            target = output
        while len(group) > 2:  # numpy's one loop over every index: in pairs, as torch runs
            a, b, result = _cheapest_pair(group, members, target, sizes)
            emit([a, b], result)
            group = [g for g in group if g not in (a, b)] + [fresh - 1]
            members[fresh - 1] = result
        emit(group, target)
    return ContractionPlan(tuple(steps), flops, largest)


def _vjp_terms(specs: Sequence[str], output: str, k: int) -> tuple[tuple[str, ...], str]:
    """The einsum of operand k's gradient: the cotangent's and the other operands' letters,
    onto those of operand k that any of them has (the VJP broadcasts over the rest)."""
    others = [s for j, s in enumerate(specs) if j != k]
    reachable = set(output).union(*others)
    return (output, *others), "".join(c for c in specs[k] if c in reachable)


def _numpy_einsum(equation: str, *operands: Any) -> Any:
    return np.einsum(equation, *operands, optimize=OPTIMIZE)


def _torch_einsum(equation: str, operands: Sequence[Any]) -> Any:
    """torch.einsum in the pairwise steps of contraction_plan (what the shape rule priced),
    never torch's own left-to-right order of three or more operands."""
    einsum = torch_module().einsum
    if len(operands) <= 2:
        return einsum(equation, *operands)
    specs, output = parse_equation(equation, [len(a.shape) for a in operands])
    plan = contraction_plan(tuple(specs), output, tuple(tuple(a.shape) for a in operands))
    return plan.run(operands, einsum)


def _contraction(name: str, fixed: str | None, doc: str, *, arg_names: tuple[str, ...],
                 arity: int | None = None) -> Op:
    """einsum (``fixed`` None: the equation is the first argument) or a fixed contraction,
    lowered to torch's own function of that name (torch.dot for dot)."""

    def parsed(arrays: Sequence[Any], params: Params) -> tuple[list[str], str]:
        return parse_equation(_equation(params, fixed), [np.ndim(a) for a in arrays])

    def shape(args: Sequence[ArgInfo], params: Params) -> Shape:
        specs, output = parse_equation(_equation(params, fixed), [len(a.shape) for a in args])
        sizes = _sizes(specs, [a.shape for a in args])
        if len(args) > 2:
            _refuse_costly(",".join(specs) + "->" + output, [a.shape for a in args])
        else:
            shapes = " and ".join(str(list(a.shape)) for a in args)
            what = f"a product of {shapes}" if fixed else f"{params['equation']!r} of {shapes}"
            check_kernel_cost(name, what, _pair_flops(specs, output, sizes),
                              "use smaller operands")
        out_shape = tuple(sizes[c] for c in output)
        arg_shapes = [tuple(a.shape) for a in args]
        for k in range(len(args)):  # each operand's gradient, in the order the VJP runs it
            terms, present = _vjp_terms(specs, output, k)
            others = (s for j, s in enumerate(arg_shapes) if j != k)
            plan = contraction_plan(terms, present, (out_shape, *others))
            check_kernel_cost(name, f"the gradient of operand {k + 1} "
                              f"({','.join(terms)}->{present})", plan.flops,
                              "use smaller operands")
        return out_shape

    def vjp(g: np.ndarray, args: Arrays, out: np.ndarray, params: Params,
            needs: Sequence[bool]) -> Gradients:
        specs, output = parsed(args, params)
        grads: Gradients = []
        for k, (spec, operand) in enumerate(zip(specs, args, strict=True)):
            if not needs[k]:
                grads.append(None)
                continue
            terms, present = _vjp_terms(specs, output, k)
            others = [a for j, a in enumerate(args) if j != k]
            plan = contraction_plan(terms, present,
                                    tuple(tuple(np.shape(a)) for a in (g, *others)))
            grad = plan.run([g, *others], _numpy_einsum)
            reachable = set(output).union(*(s for j, s in enumerate(specs) if j != k))
            for axis, letter in enumerate(spec):  # indices only this operand has
                if letter not in reachable:
                    grad = np.expand_dims(grad, axis)
            grads.append(np.broadcast_to(grad, np.shape(operand)).copy())
        return grads

    params = () if fixed is not None else (Param("equation", "text", required=True),)
    return Op(
        name=name, arg_names=arg_names, group="linalg", doc=doc,
        min_args=arity or 1, max_args=arity or MAX_OPERANDS, params=params, shape=shape,
        torch=(lambda args, p: _torch_einsum(_equation(p, fixed), args))
        if fixed is None else lambda args, p: getattr(torch_module(), name)(*args),
        numpy=lambda args, p: as_float(np.einsum(_equation(p, fixed), *args,
                                                 optimize=OPTIMIZE)),
        vjp=vjp, vjp_magnitude=linear_magnitudes(vjp),
        sympy=lambda args, p: object_array(np.einsum(_equation(p, fixed),
                                                     *map(object_array, args),
                                                     optimize=OPTIMIZE)),
        positional=("equation", "operands") if fixed is None else (),
        variadic="star" if fixed is None else None)


def _trace_shape(args: Sequence[ArgInfo], params: Params) -> Shape:
    if len(args[0].shape) != 2:
        raise SpecError(f"trace() needs a 2-d tensor, got {len(args[0].shape)}-d")
    return ()


def _trace_vjp(g: np.ndarray, args: Arrays, out: np.ndarray, params: Params,
               needs: Sequence[bool]) -> Gradients:
    return [np.asarray(g) * np.eye(*np.shape(args[0]))]


TRACE = Op(
    name="trace", arg_names=("input",), group="linalg", doc="the sum of the diagonal (2-d)",
    min_args=1, max_args=1, shape=_trace_shape,
    torch=lambda args, p: torch_module().trace(args[0]),
    numpy=lambda args, p: as_float(np.trace(args[0])),
    vjp=_trace_vjp, vjp_magnitude=linear_magnitudes(_trace_vjp),
    sympy=lambda args, p: object_array(np.trace(object_array(args[0]))))

CONTRACTIONS = [
    _contraction("einsum", None, 'einsum("ij,jk->ik", a, b): letters, no ... and no index '
                 "repeated within an operand", arg_names=("operands",)),
    _contraction("dot", "i,i->", "the inner product of two 1-d tensors",
                 arg_names=("input", "tensor"), arity=2),
    _contraction("outer", "i,j->ij", "the outer product of two 1-d tensors",
                 arg_names=("input", "vec2"), arity=2),
    _contraction("bmm", "bij,bjk->bik", "batched matrix product of (b, n, m) and (b, m, p)",
                 arg_names=("input", "mat2"), arity=2),
    TRACE,
]
