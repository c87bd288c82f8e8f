"""The parsed case: frozen data handed from the loader to the points and the oracles."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from gradcheck_lab.ops import Shape
from gradcheck_lab.program import Program


@dataclass(frozen=True)
class InputSpec:
    """How one input's values are made: a literal, or an init with a seed."""

    name: str
    shape: Shape
    is_integer: bool
    requires_grad: bool
    literal: np.ndarray | None = None  # object array of Fractions/ints, or a float64 array
    init: str | None = None
    seed: int | None = None
    low: float | int | None = None
    high: float | int | None = None
    mean: float = 0.0
    std: float = 1.0

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    @functools.cached_property
    def literal_float64(self) -> np.ndarray:
        """The literal as float64 (each exact Fraction rounded once), converted once: every
        point and dtype of a check draws from it, and an element costs a Python call."""
        assert self.literal is not None, f"{self.name} has no literal"
        if self.literal.dtype != object:
            return self.literal.astype(np.float64)
        return np.fromiter((float(v) for v in self.literal.flat), dtype=np.float64,
                           count=self.literal.size).reshape(self.literal.shape)


@dataclass(frozen=True)
class ImplRef:
    """``impl: FILE.py:NAME``, resolved inside the case file's directory (not yet imported)."""

    path: Path
    spelled: str
    name: str


@dataclass(frozen=True)
class Training:
    """``training:``: the user's training step and how to drive it
    (``gradcheck_lab.pipeline.training``).

    ``step`` is called as ``step(params=..., batch=..., lr=...)``: ``params`` the inputs named
    in ``params`` (leaf tensors that require grad, to be updated in place), ``batch`` every
    other input, ``lr`` a float; it returns the loss.
    """

    step: ImplRef | Callable[..., Any]
    params: tuple[str, ...]
    lr: float
    steps: int = 5
    data: str = "synthetic"  # or "mnist"
    # data: mnist: the batch inputs that MNIST's images and labels replace.
    images: str | None = None
    labels: str | None = None

    @property
    def step_label(self) -> str:
        if isinstance(self.step, ImplRef):
            return self.step.spelled
        return getattr(self.step, "__qualname__", repr(self.step))


@dataclass(frozen=True)
class Expectation:
    """One hand-worked answer: a program node (expression) or a literal array."""

    key: str
    target: str  # "value" or an input name
    node: int | None = None
    literal: np.ndarray | None = None
    # Half a unit in the last digit each literal number was written with: a decimal is
    # checked to the digits written (0.84 means 0.835 to 0.845); 0 where exact.
    halfunits: np.ndarray | None = None


@dataclass(frozen=True)
class Tolerance:
    rtol: float | None = None
    atol: float | None = None


@dataclass(frozen=True)
class Case:
    """A validated case: everything the oracles need, and where each key was written."""

    name: str
    file: str
    line: int | None
    inputs: tuple[InputSpec, ...]
    program: Program
    dtypes: tuple[str, ...] = ("float64",)
    devices: tuple[str, ...] = ("cpu",)
    description: str | None = None
    impl: ImplRef | Callable[..., Any] | None = None
    expectations: tuple[Expectation, ...] = ()
    tolerance: Mapping[str, Tolerance] = field(default_factory=dict)  # by dtype
    seed: int = 0
    lines: Mapping[str, int] = field(default_factory=dict)
    nondet_tol: float | None = None  # None: 0 on cpu, the dtype's tolerance on cuda
    points: int = 1
    avoid_kinks: bool = False  # move a point that sits on a kink off it, instead of skipping
    order: int = 1  # 2: Hessian-vector products too
    modes: tuple[str, ...] = ("reverse",)  # "forward": Jacobian-vector products too
    training: Training | None = None  # the user's training step, checked after the gradients
    # How the impl is called beyond the inputs (casefile.calling): keyword constants; named
    # outputs (the program's output joins them, flattened, in this order); an nn.Module's
    # parameters bound to inputs; and per input the declared surrogate VJP, a program of the
    # inputs and grad_output.
    constants: Mapping[str, Any] = field(default_factory=dict)
    outputs: tuple[tuple[str, Shape], ...] = ()
    module_params: Mapping[str, str] = field(default_factory=dict)
    surrogates: Mapping[str, Program] = field(default_factory=dict)
    # No output: written: ``program`` is a placeholder until the check traces the impl's
    # forward (oracles.trace) and puts the traced program in its place.
    traced: bool = False
    fd_step: float | None = None  # finite differences' relative step, given (None: derived)

    def line_of(self, key: str) -> int | None:
        """The line of ``key`` ("let.q", "output", ...) or of its closest parent."""
        while key:
            if key in self.lines:
                return self.lines[key]
            key = key.rpartition(".")[0]
        return self.line

    @property
    def differentiable_inputs(self) -> tuple[InputSpec, ...]:
        return tuple(spec for spec in self.inputs if spec.requires_grad)

    @property
    def impl_label(self) -> str | None:
        if self.impl is None:
            return None
        if isinstance(self.impl, ImplRef):
            return self.impl.spelled
        return getattr(self.impl, "__qualname__", repr(self.impl))
