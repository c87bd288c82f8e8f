"""The reverse walkers of a program: each op's VJP rule applied from the output back, and
its second-order form (forward over reverse) for Hessian-vector products.

Used by the symbolic oracle's rule sweep (float64 gradients and the magnitudes of the terms
they are summed from, and at ``order: 2`` the products), and by explain, graph and localize,
which keep every node's adjoint.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import numpy as np

from gradcheck_lab.ops import OPS, Op
from gradcheck_lab.ops.base import Params, VjpRule
from gradcheck_lab.program.graph import Program


def _needs(program: Program, index: int) -> list[bool] | None:
    """Which arguments of node ``index`` its VJP must give a gradient for; None for a node
    the reverse sweep passes by (an input, a constant, a node no gradient flows through)."""
    node = program.nodes[index]
    if node.op in ("input", "const") or not node.needs_grad:
        return None
    off = OPS[node.op].nondifferentiable_args
    return [program.nodes[a].needs_grad and position not in off
            for position, a in enumerate(node.args)]


def node_adjoints(program: Program, env: dict[int, np.ndarray], cotangent: np.ndarray,
                  magnitudes: bool = False) -> dict[int, np.ndarray]:
    """One reverse sweep: each op's VJP rule applied from the output back to the inputs,
    keeping the adjoint of every node that needs a gradient. With ``magnitudes``, each op's
    magnitude rule instead: every element is the sum of the |terms| a backward pass adds up to
    get it."""
    start = np.asarray(cotangent, dtype=np.float64)
    adjoints = _reverse(program, env, np.abs(start) if magnitudes else start,
                        lambda op: op.vjp_magnitude if magnitudes else op.vjp)
    return {index: np.asarray(g, dtype=np.float64).reshape(program.nodes[index].shape)
            for index, g in adjoints.items() if program.nodes[index].needs_grad}


def _reverse(program: Program, env: dict[int, np.ndarray], start: np.ndarray,
             rule_of: Callable[[Op], VjpRule]) -> dict[int, np.ndarray]:
    """The adjoints from ``start`` at the output back to the inputs, each node's from its
    op's rule (``rule_of``), summed where a node feeds several."""
    adjoints: dict[int, np.ndarray] = {program.output: start}
    with np.errstate(all="ignore"):
        for index in reversed(program.needed_for([program.output])):
            node = program.nodes[index]
            g = adjoints.get(index)
            needs = _needs(program, index) if g is not None else None
            if g is None or needs is None:
                continue
            rule = rule_of(OPS[node.op])
            local = rule(g, [env[a] for a in node.args], env[index], node.param_dict, needs)
            for arg, grad in zip(node.args, local, strict=True):
                if grad is not None:
                    adjoints[arg] = adjoints[arg] + grad if arg in adjoints else grad
    return adjoints


def sweep(program: Program, env: dict[int, np.ndarray], cotangent: np.ndarray,
          magnitudes: bool = False) -> dict[str, np.ndarray]:
    """The inputs' part of ``node_adjoints``: zeros for an input the output does not use."""
    adjoints = node_adjoints(program, env, cotangent, magnitudes)
    return {
        name: adjoints.get(index, np.zeros(program.nodes[index].shape))
        for name, index in program.inputs.items()
        if program.nodes[index].needs_grad
    }


def probe_sweeps(program: Program, env: dict[int, np.ndarray],
                 cotangents: Sequence[np.ndarray]) -> tuple[dict[str, np.ndarray], ...]:
    """``sweep`` for several cotangents at once: every adjoint carries a leading probe axis,
    and each op's ``probes_vjp`` takes all of them in one call (an op without one is asked
    probe by probe). The same sums as one sweep per cotangent, in fewer, larger array
    operations."""
    count = len(cotangents)
    output = program.nodes[program.output]
    start = np.stack([np.asarray(c, dtype=np.float64).reshape(output.shape)
                      for c in cotangents])
    adjoints = _reverse(program, env, start, lambda op: op.probes_vjp or functools.partial(
        _probe_by_probe, op.vjp))
    swept: list[dict[str, np.ndarray]] = [{} for _ in range(count)]
    for name, index in program.inputs.items():
        node = program.nodes[index]
        if not node.needs_grad:
            continue
        found = adjoints.get(index)
        rows = (np.zeros((count, *node.shape)) if found is None
                else np.asarray(found, dtype=np.float64).reshape((count, *node.shape)))
        for k in range(count):
            swept[k][name] = rows[k]
    return tuple(swept)


def _probe_by_probe(vjp: VjpRule, g: np.ndarray, args: Sequence[np.ndarray], out: np.ndarray,
                    params: Params, needs: Sequence[bool]) -> list[np.ndarray | None]:
    """An op's plain VJP asked once per probe, its gradients stacked on the probe axis."""
    each = [vjp(g[k], args, out, params, needs) for k in range(len(g))]
    stacked: list[np.ndarray | None] = []
    for position, arg in enumerate(args):
        grads = [local[position] for local in each]
        if all(grad is None for grad in grads):
            stacked.append(None)
            continue
        stacked.append(np.stack([np.zeros(np.shape(arg)) if grad is None
                                 else np.reshape(grad, np.shape(arg)) for grad in grads]))
    return stacked


def hessian_vector_sweeps(program: Program, env: dict[int, np.ndarray],
                          cotangents: Sequence[np.ndarray],
                          tangents: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], ...]:
    """Forward over reverse: for each cotangent u, the derivative of the VJP u·J(x) along
    ``tangents``, the Hessian-vector product of u·f, by each op's second-order rules
    (``ops.second_order``): one tangent pass forward, shared by every cotangent, then per
    cotangent one reverse sweep carrying each adjoint and its tangent."""
    order = program.needed_for([program.output])
    with np.errstate(all="ignore"):
        dots = _tangents(program, env, order, tangents)
        return tuple(_adjoint_tangents(program, env, order, dots, u, tangents)
                     for u in cotangents)


def _tangents(program: Program, env: dict[int, np.ndarray], order: list[int],
              tangents: dict[str, np.ndarray]) -> dict[int, np.ndarray | None]:
    """Every node's tangent (its op's JVP) along the inputs' ``tangents``; None: zero."""
    dots: dict[int, np.ndarray | None] = {}
    for index in order:
        node = program.nodes[index]
        if node.op == "input":
            dots[index] = (np.asarray(tangents[node.name], dtype=np.float64)
                           if node.needs_grad and node.name in tangents else None)
        elif node.op == "const" or not node.needs_grad:
            dots[index] = None
        else:
            dots[index] = OPS[node.op].jvp_rule([env[a] for a in node.args],
                                                [dots[a] for a in node.args], env[index],
                                                node.param_dict)
    return dots


def _adjoint_tangents(program: Program, env: dict[int, np.ndarray], order: list[int],
                      dots: dict[int, np.ndarray | None], cotangent: np.ndarray,
                      tangents: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """One reverse sweep from ``cotangent``, each adjoint beside its tangent: the inputs'
    adjoint tangents are the Hessian-vector product (zeros for an input the output does not
    use)."""
    adjoints: dict[int, np.ndarray] = {program.output: np.asarray(cotangent, dtype=np.float64)}
    adjoint_dots: dict[int, np.ndarray] = {}
    for index in reversed(order):
        node = program.nodes[index]
        g = adjoints.get(index)
        needs = _needs(program, index) if g is not None else None
        if g is None or needs is None:
            continue
        local = OPS[node.op].pair_rule(g, adjoint_dots.get(index), [env[a] for a in node.args],
                                       [dots[a] for a in node.args], env[index],
                                       node.param_dict, needs)
        for arg, pair in zip(node.args, local, strict=True):
            if pair is None:
                continue
            grad, dot = pair
            adjoints[arg] = adjoints[arg] + grad if arg in adjoints else grad
            if dot is not None:
                adjoint_dots[arg] = adjoint_dots[arg] + dot if arg in adjoint_dots else dot
    products = {name: np.zeros(np.shape(tangent)) for name, tangent in tangents.items()}
    for name, index in program.inputs.items():
        if name in tangents and index in adjoint_dots:
            products[name] = np.asarray(adjoint_dots[index], dtype=np.float64).reshape(
                program.nodes[index].shape)
    return products
