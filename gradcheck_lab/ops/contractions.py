"""Products that sum over shared indices: ``einsum`` ("ij,jk->ik" with torch's and numpy's
meaning), and the fixed contractions ``dot outer bmm`` built on it, plus ``trace``.

An einsum is linear in each operand: the VJP of operand k is the einsum of the cotangent with
the other operands onto operand k's indices (broadcast over an index only operand k has,
which the output sums over). np.einsum works alike on floats and on sympy object arrays.
"""

from __future__ import annotations

import math
import string
from collections.abc import Sequence
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


def _refuse_costly(equation: str, shapes: Sequence[Shape]) -> None:
    """A SpecError where numpy's greedy order for ``equation`` costs more than
    MAX_CONTRACTION_FLOPS (where every pairwise intermediate is too large it falls back to
    one loop over every index: four 64³ operands, 64⁶ products per element)."""
    import re

    views = [np.broadcast_to(np.zeros(()), shape) for shape in shapes]  # shapes, no data
    _, report = np.einsum_path(equation, *views, optimize=OPTIMIZE)
    found = re.search(r"Optimized FLOP count:\s*([0-9.e+]+)", report)
    flops = float(found.group(1)) if found else 0.0
    if flops > MAX_CONTRACTION_FLOPS:
        raise SpecError(f"einsum(): {equation!r} would take about {flops:.2g} operations in "
                        f"numpy's order (limit {MAX_CONTRACTION_FLOPS:.0e}): contract in "
                        "steps of two operands")


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
        return tuple(sizes[c] for c in output)

    def vjp(g: np.ndarray, args: Arrays, out: np.ndarray, params: Params,
            needs: Sequence[bool]) -> Gradients:
        specs, output = parsed(args, params)
        grads: Gradients = []
        for k, (spec, operand) in enumerate(zip(specs, args, strict=True)):
            if not needs[k]:
                grads.append(None)
                continue
            others = [(s, a) for j, (s, a) in enumerate(zip(specs, args, strict=True))
                      if j != k]
            reachable = set(output).union(*(s for s, _ in others))
            present = "".join(c for c in spec if c in reachable)
            terms = ",".join([output, *(s for s, _ in others)])
            grad = np.einsum(f"{terms}->{present}", g, *(a for _, a in others),
                             optimize=OPTIMIZE)
            for axis, letter in enumerate(spec):  # indices only this operand has
                if letter not in reachable:
                    grad = np.expand_dims(grad, axis)
            grads.append(np.broadcast_to(grad, np.shape(operand)).copy())
        return grads

    params = () if fixed is not None else (Param("equation", "text", required=True),)
    return Op(
        name=name, arg_names=arg_names, group="linalg", doc=doc,
        min_args=arity or 1, max_args=arity or MAX_OPERANDS, params=params, shape=shape,
        torch=(lambda args, p: torch_module().einsum(_equation(p, fixed), *args))
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
