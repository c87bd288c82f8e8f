"""What a recording is made of (``trace.recorder`` makes it): the values of the forward's
tensors, the functional steps over them, the notes the writer reads beside the steps, and the
limits the recording runs under; with the helpers that read a real tensor into them.
"""

from __future__ import annotations

import functools
import os
import sys
import time
import types
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, NoReturn

import numpy as np

from gradcheck_lab.errors import PassThrough

_OWN_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_TORCH_DIR = f"{os.sep}torch{os.sep}"


@dataclass(eq=False)
class Value:
    """One tensor value of the forward: an input, a step's result, or a constant."""

    shape: tuple[int, ...]
    kind: str  # "real", "int", "bool" or "complex"
    input: str | None = None  # the input's name
    step: int | None = None  # the index of the step that made it
    # A constant: its value when a traced step first read it (numpy float64, int64 or
    # bool; a copy, since the forward may write into the tensor later), and the tensor's
    # version counter then (a later read after such a write is a new constant). A step's
    # integer or bool result keeps its value here too.
    constant: np.ndarray | None = field(default=None, repr=False)
    version: int = 0
    # A step's real result as the run computed it, kept for the ops whose translation must
    # match a convention of the kernel (the signs of LAPACK's eigenvectors).
    recorded: np.ndarray | None = field(default=None, repr=False)
    # The random draw it depends on ("aten.rand_like.default (at f.py:3)"), constants made
    # from it included: a spec that needs it is refused, as the draw differs each call.
    random: str | None = None

    @property
    def is_constant(self) -> bool:
        return self.input is None and self.step is None


@dataclass(frozen=True)
class Step:
    """One functional aten op over values: ``args``/``kwargs`` hold Values where the op
    read tensors (lists of them for cat), numbers and None as given."""

    op: str  # the aten overload, e.g. "aten.add.Tensor"
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    outs: tuple[Value | None, ...]
    where: str  # " (at file.py:12)" in the user's code, or ""


@dataclass
class Recording:
    """What the forward ran, as the writer reads it: the steps, the inputs' values and the
    notes beside them."""

    steps: list[Step]
    inputs: dict[str, Value]
    # Where the forward stops a gradient by its own doing: "x.detach() (at f.py:3)", "a value
    # computed from integer data (at f.py:9)".
    stops: tuple[str, ...]
    # Ops that ran on traced values with no translation and no decomposition, by step.
    untranslatable: dict[int, str]
    casts: tuple[str, ...]  # dtypes the forward cast traced values to


class Stop(PassThrough):
    """Raised inside the forward to stop a recording that ran past its bounds or met what it
    cannot record (a BaseException, so that a forward's own ``except Exception`` does not
    swallow it)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def as_numpy(tensor: Any) -> np.ndarray:
    """A copy of a real, integer or bool tensor as float64, int64 or bool numpy."""
    import torch

    tensor = tensor.detach()
    if tensor.layout != torch.strided:  # the program's values are dense arrays
        raise Stop(f"a {str(tensor.layout).removeprefix('torch.')} tensor reaches the forward; "
                   "the symbolic oracle follows dense tensors only")
    if tensor.dtype == torch.bool:
        return tensor.cpu().numpy().copy()
    if tensor.is_floating_point():
        return tensor.to(torch.float64).cpu().numpy().copy()
    return tensor.to(torch.int64).cpu().numpy().copy()


def kind_of(tensor: Any) -> str:
    import torch

    if tensor.dtype == torch.bool:
        return "bool"
    if tensor.is_complex():
        return "complex"
    return "real" if tensor.is_floating_point() else "int"


def user_frame() -> str:
    """Where the user's code made the current call: the innermost frame outside torch and
    outside gradcheck-lab."""
    frame: types.FrameType | None = sys._getframe(2)
    while frame is not None:
        path = frame.f_code.co_filename
        if not _not_users(path):
            return f" (at {os.path.basename(path)}:{frame.f_lineno})"
        frame = frame.f_back
    return ""


@functools.cache
def _not_users(path: str) -> bool:
    """Whether a file is torch's or gradcheck-lab's own: decided once per file
    (``user_frame`` walks a dozen frames at every op the forward runs)."""
    return path.startswith(_OWN_DIR) or _TORCH_DIR in path or path.startswith("<")


def leaves(values: Any) -> Iterator[Any]:
    """Everything inside nested lists, tuples and dicts (their values), in order; depth
    first without recursion (an op's arguments are read at every op the forward runs)."""
    pending = [values]
    while pending:
        value = pending.pop()
        if isinstance(value, (list, tuple)):
            pending.extend(reversed(value))
        elif isinstance(value, dict):
            pending.extend(reversed(value.values()))
        else:
            yield value


def values_in(values: Any) -> list[Value]:
    """The Values among a step's arguments (lists of them included)."""
    return [v for v in leaves(values) if isinstance(v, Value)]


def mapped(values: Any, convert: Callable[[Any], Any]) -> Any:
    if isinstance(values, (list, tuple)):
        return type(values)(mapped(v, convert) for v in values)
    if isinstance(values, dict):
        return {k: mapped(v, convert) for k, v in values.items()}
    return convert(values)


class Budget:
    """The recording's limits: at most ``max_steps`` traced steps, and no time past
    ``deadline``. Once past either it stays stopped, so that a forward that catches the
    ``Stop`` stops again at its next op."""

    def __init__(self, max_steps: int, deadline: float | None) -> None:
        self.max_steps = max_steps
        self.deadline = deadline
        self.stopped: str | None = None

    def stop(self, reason: str) -> NoReturn:
        self.stopped = reason
        raise Stop(reason)

    def check_deadline(self) -> None:
        if self.stopped is not None:
            raise Stop(self.stopped)
        if self.deadline is not None and time.monotonic() > self.deadline:
            self.stop("the forward ran past the case's time budget while it was traced "
                      "(--case-timeout)")

    def check_room(self, steps: int) -> None:
        """Room for one more step after ``steps``: else the recording stops."""
        if steps >= self.max_steps:
            self.stop(f"the forward ran more than {self.max_steps} traced ops (the program-"
                      "node limit, --max-program-nodes)")


@dataclass
class Tape:
    """The steps recorded so far, in order, and the notes the writer reads beside them."""

    steps: list[Step] = field(default_factory=list)
    # Ops that ran on traced values with no translation and no decomposition, by step.
    untranslatable: dict[int, str] = field(default_factory=dict)
    casts: set[str] = field(default_factory=set)  # dtypes the forward cast traced values to
    stops: list[str] = field(default_factory=list)  # where the forward stops a gradient

    def untranslatable_next(self, reason: str) -> None:
        """The step about to be added has no translation, for ``reason``."""
        self.untranslatable[len(self.steps)] = reason

    def recording(self, inputs: dict[str, Value]) -> Recording:
        return Recording(self.steps, inputs, tuple(self.stops), self.untranslatable,
                         tuple(sorted(self.casts)))
