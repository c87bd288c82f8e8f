"""How checks are run: one settings object shared by the CLI, the pytest plugin and the API,
so that no front door runs with other settings than another (pytest-benchmark's session
object is the model). Plain, frozen, picklable data: the worker process gets it with a case.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from gradcheck_lab.casefile import LoadLimits
from gradcheck_lab.errors import CaseError
from gradcheck_lab.ops import suggest

SYMBOLIC_MODES = ("auto", "exact", "sweep")
FD_MODES = ("auto", "all", "projections", "exhaustive")
DEFAULT_CASE_TIMEOUT = 300.0
DEFAULT_TIMING_THREADS = 1


@dataclass(frozen=True)
class TimingSettings:
    """Rounds as pytest-benchmark counts them: at least ``min_rounds``, more while the total
    stays under ``max_time`` seconds, after ``warmup_rounds`` untimed rounds."""

    min_rounds: int = 5
    max_time: float = 0.5
    warmup_rounds: int = 3
    max_rounds: int = 10_000
    threads: int | None = DEFAULT_TIMING_THREADS  # None: leave torch's setting as it is

    def rounds_for(self, seconds_per_round: float) -> int:
        wanted = math.ceil(self.max_time / max(seconds_per_round, 1e-9))
        return int(min(max(wanted, self.min_rounds), self.max_rounds))


@dataclass(frozen=True)
class Settings:
    """What a run of checks may be asked for, beside what each case file says."""

    symbolic: str = "auto"  # auto | exact | sweep
    fd: str = "auto"  # auto | all | projections | exhaustive
    limits: LoadLimits = field(default_factory=LoadLimits)
    timings: TimingSettings | None = None  # time forward and backward of checked cases
    # Seconds a case with an impl may take; such cases then run in a worker process that is
    # stopped when the budget runs out. None: in this process, without a budget.
    case_timeout: float | None = None
    # Measure the smallest planted gradient errors each check catches (diagnose.sensitivity).
    sensitivity: bool = False

    def __post_init__(self) -> None:
        _choice("symbolic", self.symbolic, SYMBOLIC_MODES)
        _choice("fd", self.fd, FD_MODES)

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any], where: str) -> Settings:
        """Settings from keyword values (the Python API's), each checked; a CaseError at
        ``where`` names a wrong one."""
        try:
            return cls(**values)
        except SettingError as exc:
            raise CaseError(where, None, exc.key, exc.message) from None


# The load limits every front door takes, by option name (the CLI's --max-*, pytest's
# --gradcheck-max-*), and the LoadLimits (or its ExprLimits) field each sets.
LIMIT_OPTIONS = {"max_input_elements": "max_input_elements", "max_file_bytes": "max_file_bytes",
                 "max_expression_length": "max_length", "max_expression_depth": "max_depth"}


def load_limits(**given: int | None) -> LoadLimits:
    """LoadLimits from limit options by name (``LIMIT_OPTIONS``); None keeps the default."""
    defaults = LoadLimits()
    load, expr = {}, {}
    for name, value in given.items():
        if value is not None:
            field_name = LIMIT_OPTIONS[name]
            (expr if hasattr(defaults.expr, field_name) else load)[field_name] = value
    return dataclasses.replace(defaults, **load, expr=dataclasses.replace(defaults.expr, **expr))


class SettingError(ValueError):
    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key = key
        self.message = message


def _choice(key: str, value: object, choices: tuple[str, ...]) -> None:
    if value not in choices:
        hint = suggest(value, list(choices)) if isinstance(value, str) else ""
        raise SettingError(key, f"expected one of {', '.join(choices)}, got {value!r}{hint}")
