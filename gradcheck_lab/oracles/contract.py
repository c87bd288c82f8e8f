"""The oracle contract: what every oracle is handed (``Given``), what it is (``Oracle``: a
name, a stage and one ``gradients(given)``), the list of them (``ORACLES``), and the plain,
frozen data they hand to the comparison: ``Gradients``, the vector-Jacobian products of an
oracle that computes them (symbolic, autograd), and ``FiniteDifferences``, estimates with an
error bar each, per input element or along directions.

Adding an oracle (a complex step, a JAX reference) is a module of its own that defines
``ORACLE`` and one entry in ``ORACLES``: its gradients are compared with autograd's element
by element (``compare/others.py``) and named in every result's ``oracles``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

from gradcheck_lab.casefile import Case
from gradcheck_lab.program import Program
from gradcheck_lab.settings import Settings
from gradcheck_lab.subject.function import Subject
from gradcheck_lab.subject.points import Point
from gradcheck_lab.subject.precision import FLOAT64, Precision
from gradcheck_lab.subject.probes import Probe


class Deferred(Sequence[dict[str, np.ndarray]]):
    """Per-probe arrays computed on first use; their number (``len``, truth) known before. The
    term magnitudes are one more sweep per probe that a comparison passing without them never
    reads (``pipeline.comparison``)."""

    def __init__(self, count: int,
                 compute: Callable[[], tuple[dict[str, np.ndarray], ...]]) -> None:
        self._count = count
        self._compute: Callable[[], tuple[dict[str, np.ndarray], ...]] | None = compute
        self._items: tuple[dict[str, np.ndarray], ...] = ()

    def __len__(self) -> int:
        return self._count

    def __getitem__(self, k: Any) -> Any:
        if self._compute is not None:
            self._items, self._compute = self._compute(), None
        return self._items[k]


@dataclass(frozen=True)
class Gradients:
    """Vector-Jacobian products of one oracle: ``per_probe[k][input]`` is a float64 array."""

    oracle: str
    method: str
    value: np.ndarray
    per_probe: tuple[dict[str, np.ndarray], ...]
    notes: tuple[str, ...] = ()
    # Symbolic only: exact elementwise sympy (True) or the float64 rule sweep; the ops of the
    # program that have kinks (what an inconclusive finite difference may have straddled).
    exact: bool = False
    # The sweep standing in for an affordable exact oracle (mode "screen"): held to its own
    # round-off, and replaced by the exact oracle where the comparison does not pass.
    screened: bool = False
    kinked_ops: tuple[str, ...] = ()
    kinks: tuple[str, ...] = ()  # where the function is not differentiable at this point
    domain: tuple[str, ...] = ()  # where the forward leaves the real numbers (sqrt of a -1)
    # The input elements an op leaves the domain at, elementwise (sqrt(x) at x[1] = -1).
    domain_elements: dict[str, tuple[int, ...]] = field(default_factory=dict)
    roots: dict[str, np.ndarray] = field(default_factory=dict)  # evaluated expect expressions
    formulas: dict[str, Any] = field(default_factory=dict)  # exact derivatives, per input
    # The largest |intermediate value| of the forward: the size of the terms that rounding
    # acts on (sum((x + 1e8) - 1e8) is 2 but is computed through 1e8).
    term_scale: float = 0.0
    # Per probe and input, the sum of |terms| behind each gradient element: the size of what
    # a backward pass rounds (softmax - onehot may be 1e-17, computed from numbers near 1).
    term_magnitudes: Sequence[dict[str, np.ndarray]] = ()  # the symbolic oracle's: Deferred
    # Autograd only: one probe's gradients again (``rerun_probe``), by label: a second
    # backward through the same graph, and a second forward and backward on fresh leaves (a
    # stateful or racy backward differs); inputs the function changed in place (values
    # before, after); gradients whose dtype or device is not their input's.
    reruns: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    rerun_probe: int = 0  # the probe whose VJP the reruns repeat
    modified_inputs: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    contract_problems: tuple[str, ...] = ()
    device: str = "cpu"
    # Autograd only: the custom Functions' backward methods in the graph, with their source
    # file and line (``autograd.custom_backwards``).
    backwards: tuple[str, ...] = ()
    # Seconds of one forward and backward on a fresh graph: the unit a check's cost is told in.
    unit_seconds: float | None = None


@dataclass(frozen=True)
class Estimates:
    """Finite-difference estimates for one input, with an error estimate for each.

    ``partials``: flat element indices and, per probe, the estimated VJP element there.
    ``directions``: direction vectors (input-shaped) and, per probe, the estimated
    directional derivative <direction, VJP>.
    """

    indices: np.ndarray  # (k,) flat indices
    partials: np.ndarray  # (probes, k)
    partial_errors: np.ndarray  # (probes, k)
    directions: np.ndarray  # (d, *input shape)
    directional: np.ndarray  # (probes, d)
    directional_errors: np.ndarray  # (probes, d)


@dataclass(frozen=True)
class FiniteDifferences:
    method: str
    value: np.ndarray  # the function's output at the point, float64
    per_input: dict[str, Estimates]
    evaluations: int
    notes: tuple[str, ...] = ()
    # Directions over every differentiated input at once (``finite_difference.joint_screen``):
    # directions (d, total) over the inputs' flat elements joined in the case's order.
    joint: Estimates | None = None

    @property
    def compared(self) -> int:
        """Partial or directional derivatives estimated, for one probe."""
        joint = 0 if self.joint is None else self.joint.directional.shape[-1]
        return joint + sum(e.partials.shape[-1] + e.directional.shape[-1]
                           for e in self.per_input.values())


# -- the contract -------------------------------------------------------------------------
# When an oracle runs: once per dtype and point, before any device (it needs no function
# under test: the symbolic oracle, which also decides whether the point sits on a kink), or
# on each device, with the subject built there.
AT_POINT, ON_DEVICE = "point", "device"

# Each oracle's module, in the order they run: an oracle reads the results of those before
# it (``Given.found``). A module defines ``ORACLE``, an object of the ``Oracle`` protocol.
# Named, not imported: the symbolic oracle must load without torch.
ORACLES = (
    "gradcheck_lab.oracles.symbolic",
    "gradcheck_lab.oracles.autograd",
    "gradcheck_lab.oracles.finite_difference.oracle",
)


def _no_progress(label: str) -> AbstractContextManager[Callable[[int, int], None] | None]:
    return contextlib.nullcontext(None)


class HeldTo(Protocol):
    """The tolerance a gradient is held to (``compare.tolerances.ToleranceRule``, which the
    comparison, after the oracles, defines): relative, and absolute where the case sets one."""

    @property
    def rtol(self) -> float: ...

    @property
    def atol(self) -> float | None: ...


@dataclass(frozen=True)
class Given:
    """What every oracle is handed, the same for each: the case, the spec at this point,
    the point, the probes and the run's settings; on a device, the subject under test there,
    how precisely it computes and the tolerance rule its gradients are held to; and what the
    oracles before it found, by name (finite differences look where symbolic and autograd
    disagree)."""

    case: Case
    program: Program
    point: Point
    probes: tuple[Probe, ...]
    settings: Settings
    found: Mapping[str, Any] = field(default_factory=dict)
    subject: Subject | None = None  # None at the point stage
    precision: Precision = FLOAT64
    rule: HeldTo | None = None  # None at the point stage
    # A progress bar for a long oracle run: ``progress(label)`` yields ``advance(done,
    # total)`` or None (the pipeline's bar on a terminal; none by default).
    progress: Callable[[str], AbstractContextManager[Callable[[int, int], None] | None]] = (
        _no_progress)


@runtime_checkable
class Oracle(Protocol):
    """One way to a gradient. ``name`` is the key of its result in the oracle results and
    in a result's ``oracles``; ``stage`` is AT_POINT or ON_DEVICE; ``gradients(given)``
    returns its result: ``Gradients`` (or ``FiniteDifferences``, estimates with error bars).
    """

    name: str
    stage: str

    def gradients(self, given: Given) -> Any: ...


def load_oracles() -> list[Oracle]:
    """The oracles of ``ORACLES``, in order, each module imported when asked for."""
    return [importlib.import_module(name).ORACLE for name in ORACLES]


def ran(oracles: list[Oracle], stage: str, given: Given) -> dict[str, Any]:
    """``given.found`` and the results of the oracles of ``stage``, run in order, each handed
    what was found before it."""
    found = dict(given.found)
    for oracle in oracles:
        if oracle.stage == stage:
            found[oracle.name] = oracle.gradients(dataclasses.replace(given, found=dict(found)))
    return found
