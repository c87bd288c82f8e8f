"""The cotangents a check probes the output with (``Probe``): one (1.0) for a scalar output,
the basis vectors of a small tensor output (the full Jacobian), or seeded random vectors for a
large one, so that a backward that ignores or mishandles its incoming gradient is caught; and
the tangents of forward mode and second order.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from gradcheck_lab.program.naming import index_text

FULL_JACOBIAN_MAX_OUTPUTS = 16
RANDOM_PROBES = 3
_PROBE_STREAM = 1  # seed stream of the cotangents; finite differences use their own
_TANGENT_STREAM = 3  # seed stream of the tangents of forward mode and second order


@dataclass(frozen=True)
class Probe:
    label: str
    cotangent: np.ndarray  # float64, the output's shape
    # The index of an earlier probe this one is a multiple of (a scalar output's cotangent c
    # against 1): it tests that the backward scales with grad_output, and adds report rows
    # only where the earlier probe agrees.
    multiple_of: int | None = None
    # With named outputs: the one output this cotangent is on (None: on all of them).
    output: str | None = None


def make_probes(output_shape: tuple[int, ...], seed: int,
                outputs: tuple[tuple[str, tuple[int, ...]], ...] = ()) -> tuple[Probe, ...]:
    """Cotangents for the output; deterministic for a given case seed. ``outputs``: the
    named outputs the (1-d) output joins, for ``named_output_probes``.

    A scalar output gets 1 (the gradient itself, what ``expect:`` and the training step are
    checked against) and a seeded c of either sign, |c| in [0.25, 0.71]: with cotangent 1
    alone, a backward that ignores or mis-scales grad_output would pass. |c| < 1, so that c
    times a gradient near float64's largest number does not overflow."""
    if outputs:
        return named_output_probes(outputs, seed)
    if output_shape == ():
        rng = np.random.default_rng([seed, _PROBE_STREAM])
        c = float(rng.choice([-1.0, 1.0]) * 2.0 ** -rng.uniform(0.5, 2.0))
        return (Probe("output", np.array(1.0)),
                Probe(f"cotangent {c:.4g}", np.array(c), multiple_of=0))
    size = math.prod(output_shape)
    if size <= FULL_JACOBIAN_MAX_OUTPUTS:
        probes = []
        for flat in range(size):
            basis = np.zeros(size)
            basis[flat] = 1.0
            index = index_text(np.unravel_index(flat, output_shape))
            probes.append(Probe(f"output{index}", basis.reshape(output_shape)))
        return tuple(probes)
    rng = np.random.default_rng([seed, _PROBE_STREAM])
    return tuple(Probe(f"cotangent {k}", rng.standard_normal(output_shape))
                 for k in range(RANDOM_PROBES))


def named_output_probes(outputs: tuple[tuple[str, tuple[int, ...]], ...],
                        seed: int) -> tuple[Probe, ...]:
    """Several named outputs, joined: every element by itself when they are few (labelled
    ``attn[0, 1]``); otherwise seeded cotangents on all outputs at once (the joint Jacobian)
    and one on each output alone, so that a mismatch names its output."""
    sizes = [math.prod(shape) for _, shape in outputs]
    total = sum(sizes)
    starts = np.cumsum([0, *sizes[:-1]])
    if total <= FULL_JACOBIAN_MAX_OUTPUTS:
        probes = []
        for (name, shape), start, size in zip(outputs, starts, sizes, strict=True):
            for flat in range(size):
                basis = np.zeros(total)
                basis[start + flat] = 1.0
                index = index_text(np.unravel_index(flat, shape)) if shape else ""
                probes.append(Probe(f"{name}{index}", basis, output=name))
        return tuple(probes)
    rng = np.random.default_rng([seed, _PROBE_STREAM])
    names = " and ".join(name for name, _ in outputs)
    joint = [Probe(f"cotangent {k} on {names}", rng.standard_normal(total))
             for k in range(RANDOM_PROBES)]
    alone = []
    for (name, _), start, size in zip(outputs, starts, sizes, strict=True):
        cotangent = np.zeros(total)
        cotangent[start:start + size] = rng.standard_normal(size)
        alone.append(Probe(f"cotangent on {name} alone", cotangent, output=name))
    return (*joint, *alone)


def make_tangents(shapes: dict[str, tuple[int, ...]], seed: int) -> dict[str, np.ndarray]:
    """One seeded standard-normal tangent per differentiable input (all moved together):
    the direction of Jacobian-vector and Hessian-vector products."""
    rng = np.random.default_rng([seed, _TANGENT_STREAM])
    return {name: rng.standard_normal(shape) for name, shape in shapes.items()}


def independent(probes: tuple[Probe, ...]) -> list[int]:
    """The probes that are no multiple of another (what forward mode and second order, which
    have no grad_output to scale by, are checked through): always a prefix of the probes."""
    return [k for k, probe in enumerate(probes) if probe.multiple_of is None]


def probe_label(probes: tuple[Probe, ...], k: int) -> str | None:
    """What a mismatch says of its cotangent: nothing for a scalar output's cotangent 1."""
    return None if probes[k].label == "output" else probes[k].label


def describe_probes(probes: tuple[Probe, ...]) -> str:
    if probes[0].label == "output":
        return (f"scalar output, cotangents 1 and {probes[1].label.removeprefix('cotangent ')}"
                " (seeded: a backward must scale by grad_output)")
    if probes[0].label.startswith("output["):
        return f"full Jacobian ({len(probes)} output elements)"
    if " on " in probes[0].label:
        alone = sum(probe.label.endswith(" alone") for probe in probes)
        return (f"{len(probes) - alone} seeded cotangents on all outputs at once, and one on "
                f"each of the {alone} outputs alone")
    if probes[0].label != "cotangent 0":
        return f"full Jacobian ({len(probes)} elements of the named outputs)"
    return f"{len(probes)} seeded random cotangents"
