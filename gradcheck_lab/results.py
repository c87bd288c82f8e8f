"""Results: plain data with ``to_json()``. The JSON keys are the contract of the core issue."""

from __future__ import annotations

import importlib
import importlib.metadata
import platform
import sys
from dataclasses import dataclass, field
from typing import Any

from gradcheck_lab.visible import visible

STATUSES = ("pass", "fail", "error", "skip")


@dataclass(frozen=True)
class Mismatch:
    """One element (or direction) where two oracles, or an oracle and a value, disagree."""

    input: str | None  # None for the forward value
    oracles: tuple[str, str]
    odd_oracle: str | None
    values: dict[str, float]
    abs_err: float
    rel_err: float
    allowed: float  # the bound |a - b| had to stay within
    check: str = "gradient"  # gradient | value | expect
    index: tuple[int, ...] | None = None
    direction: int | None = None  # for a directional (projected) comparison
    probe: str | None = None  # which cotangent, for tensor outputs
    elements: int = 1  # how many elements of this input and pair disagree in all
    point: int | None = None  # which point (0 = the case's inputs), for cases with points: N
    output: str | None = None  # which named output a value mismatch is in (index: within it)

    def __post_init__(self) -> None:
        for name in ("input", "probe", "output"):  # from the case file: shown as visible text
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, visible(value))

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "input": self.input,
            "oracles": list(self.oracles),
            "odd_oracle": self.odd_oracle,
            "index": list(self.index) if self.index is not None else None,
            "values": {k: _number(v) for k, v in self.values.items()},
            "abs_err": _number(self.abs_err),
            "rel_err": _number(self.rel_err),
            "allowed": _number(self.allowed),
            "check": self.check,
            "elements": self.elements,
        }
        if self.direction is not None:
            data["direction"] = self.direction
        if self.probe is not None:
            data["probe"] = self.probe
        if self.point is not None:
            data["point"] = self.point
        if self.output is not None:
            data["output"] = self.output
        return data


@dataclass
class Result:
    """The verdict for one case × dtype × device."""

    case: str
    file: str
    line: int | None
    dtype: str | None
    device: str | None
    status: str
    message: str
    mismatches: list[Mismatch] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    oracles: dict[str, str] = field(default_factory=dict)
    tolerance: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    seed: int | None = None
    # A failure's likely cause, when its mismatches fit a known bug ("autograd = -1 ×
    # symbolic on every element of W: a sign error").
    diagnoses: list[str] = field(default_factory=list)
    duration_s: float = 0.0
    details: str | None = None  # a traceback, kept for --debug
    timings: dict[str, dict[str, Any]] | None = None  # forward/backward, with --timings
    # The smallest planted relative errors the check catches, with --sensitivity.
    sensitivity: dict[str, Any] | None = None
    # An error's further problems, found at once with the one in ``message`` (every schema
    # problem of a case): a line each, in the same ``file:line: key: message`` form.
    problems: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        # Names, paths and messages come from case files: every front door (the terminal,
        # --json, JUnit, pytest) shows them with non-printable characters escaped.
        self.case, self.file, self.message = (visible(self.case), visible(self.file),
                                              visible(self.message))
        self.dtype = None if self.dtype is None else visible(self.dtype)
        self.device = None if self.device is None else visible(self.device)
        self.notes = [visible(note) for note in self.notes]
        self.diagnoses = [visible(diagnosis) for diagnosis in self.diagnoses]
        self.problems = [visible(problem) for problem in self.problems]
        self.oracles = {key: visible(value) for key, value in self.oracles.items()}

    @property
    def ok(self) -> bool:
        return self.status in ("pass", "skip")

    @property
    def location(self) -> str:
        """Where the case is written: ``file:line``, or the file where no line is known."""
        return f"{self.file}:{self.line}" if self.line else self.file

    @property
    def label(self) -> str:
        if self.dtype is None:
            return self.case
        return f"{self.case}[{self.dtype}-{self.device}]"

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "case": self.case,
            "file": self.file,
            "line": self.line,
            "dtype": self.dtype,
            "device": self.device,
            "status": self.status,
            "message": self.message,
            "mismatches": [m.to_json() for m in self.mismatches],
            "counts": dict(self.counts),
            "oracles": dict(self.oracles),
            "tolerance": dict(self.tolerance),
            "notes": list(self.notes),
            "diagnoses": list(self.diagnoses),
            "seed": self.seed,
            "duration_s": round(self.duration_s, 6),
        }
        if self.timings is not None:
            data["timings"] = self.timings
        if self.sensitivity is not None:
            data["sensitivity"] = self.sensitivity
        if self.problems:
            data["problems"] = list(self.problems)
        return json_safe(data)


def summarize(results: list[Result]) -> dict[str, int]:
    summary = dict.fromkeys(STATUSES, 0)
    for result in results:
        summary[result.status] += 1
    return summary


def environment(threads: int | None = None) -> dict[str, Any]:
    """Versions and settings that a verdict depends on. The versions are the installed
    packages' (their metadata, as torch's ``__version__`` spells it): reading them imports
    nothing, so a run whose files all fail validation says so without loading torch (1-3 s).
    ``threads``: those the checks hold (``Settings.threads``); by default torch's own count.
    ``cuda`` is read where torch is loaded, as it is once any case has run."""
    if threads is None:
        import torch

        threads = torch.get_num_threads()
    loaded = sys.modules.get("torch")  # imported above, or by a case that has run
    return {
        "torch": _installed_version("torch"),
        "sympy": _installed_version("sympy"),
        "numpy": _installed_version("numpy"),
        "python": platform.python_version(),
        "threads": threads,
        "cuda": loaded.version.cuda if loaded is not None and loaded.cuda.is_available() else None,
        "platform": platform.platform(),
    }


def _installed_version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:  # run from a source tree, say
        module = importlib.import_module(package)
        return getattr(module, "__version__", None)


def json_safe(value: Any) -> Any:
    """Non-finite floats anywhere in ``value`` written as strings (JSON has no NaN or inf)."""
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, float):
        return _number(value)
    return value


def _number(value: float) -> float | str | None:
    """JSON has no NaN or inf: write them as strings so the file stays standard JSON."""
    if value is None:
        return None
    value = float(value)
    if value != value:
        return "nan"
    if value in (float("inf"), float("-inf")):
        return "inf" if value > 0 else "-inf"
    return value
