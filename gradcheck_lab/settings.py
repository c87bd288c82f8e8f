"""How checks are run: one settings object shared by the CLI, the pytest plugin and the API,
so that no front door runs with other settings than another (pytest-benchmark's session
object is the model). Plain, frozen, picklable data: the worker process gets it with a case.
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass, field

from gradcheck_lab.casefile import LoadLimits
from gradcheck_lab.ops import suggest

SYMBOLIC_MODES = ("auto", "exact", "sweep")
FD_MODES = ("auto", "all", "projections", "exhaustive")
DEFAULT_CASE_TIMEOUT = 300.0
# The worker's memory budget: about ten times the ~370 MiB (torch included) that the bundled
# cases need at their peak, and well under a workstation's memory.
DEFAULT_CASE_MEMORY = 4 * 2**30
DEFAULT_TIMING_THREADS = 1
# A check is many small evaluations: on 2 cores the MNIST MLP check took 0.07 s at 1 thread
# and 0.16 s at 2, idle, and 0.10 s against 0.35 s beside one busy process
# (benchmarks/mnist_mlp_cost.py).
CHECK_THREADS = 1


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
    # Seconds a case may take; a case with an impl or a training step file then runs in a
    # worker process that is stopped when the budget runs out. None: in this process, without
    # a budget.
    case_timeout: float | None = None
    # Bytes the worker process may allocate (its data segment: RLIMIT_DATA, where the system
    # has one); an impl that allocates beyond it is an error result. None: no limit. Cases
    # checked in this process (case_timeout None) run without it.
    case_memory: int | None = DEFAULT_CASE_MEMORY
    # Measure the smallest planted gradient errors each check catches (diagnose.sensitivity).
    sensitivity: bool = False
    # torch's CPU threads (and numpy's BLAS threads) during each check, put back after it; None:
    # torch's setting as it is. The CLI and pytest default to 1 (CHECK_THREADS).
    threads: int | None = None

    def __post_init__(self) -> None:
        _choice("symbolic", self.symbolic, SYMBOLIC_MODES)
        _choice("fd", self.fd, FD_MODES)
        timeout = self.case_timeout
        if timeout is not None and (isinstance(timeout, bool)
                                    or not isinstance(timeout, (int, float))
                                    or not 0 < timeout < math.inf):
            raise SettingError("case_timeout", f"expected a positive number of seconds or None, "
                                               f"got {timeout!r}")
        threads = self.threads
        if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int)
                                    or threads < 1):
            raise SettingError("threads", f"expected a positive number of threads or None, got "
                                          f"{threads!r}")
        memory = self.case_memory
        if memory is not None and (isinstance(memory, bool) or not isinstance(memory, int)
                                   or memory < 1):
            raise SettingError("case_memory", f"expected a positive number of bytes or None, "
                                              f"got {memory!r}")


# The load limits every front door takes, by option name (the CLI's --max-*, pytest's
# --gradcheck-max-*): the part of LoadLimits each sets (None: LoadLimits itself, or its
# ExprLimits or ReadLimits) and the field there.
LIMIT_OPTIONS = {
    "max_input_elements": (None, "max_input_elements"),
    "max_case_elements": (None, "max_case_elements"),
    "max_program_nodes": (None, "max_program_nodes"),
    "max_file_bytes": (None, "max_file_bytes"),
    "max_cases_per_file": (None, "max_cases_per_file"),
    "max_cases_per_run": (None, "max_cases_per_run"),
    "max_yaml_nodes": ("yaml", "max_nodes"),
    "max_expression_length": ("expr", "max_length"),
    "max_expression_depth": ("expr", "max_depth"),
}


def load_limits(**given: int | None) -> LoadLimits:
    """LoadLimits from limit options by name (``LIMIT_OPTIONS``); None keeps the default."""
    defaults = LoadLimits()
    changes: dict[str | None, dict[str, int]] = {None: {}, "expr": {}, "yaml": {}}
    for name, value in given.items():
        if value is not None:
            part, field_name = LIMIT_OPTIONS[name]
            changes[part][field_name] = value
    return dataclasses.replace(
        defaults, **changes[None],
        expr=dataclasses.replace(defaults.expr, **changes["expr"]),
        yaml=dataclasses.replace(defaults.yaml, **changes["yaml"]))


class SettingError(ValueError):
    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key = key
        self.message = message


def _choice(key: str, value: object, choices: tuple[str, ...]) -> None:
    if value not in choices:
        hint = suggest(value, list(choices)) if isinstance(value, str) else ""
        raise SettingError(key, f"expected one of {', '.join(choices)}, got {value!r}{hint}")


_SIZE_UNITS = {"": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}
_SIZE = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*([kmgt]?)(?:i?b|i)?", re.IGNORECASE)


def parse_size(text: str) -> int:
    """A size in bytes from ``4G``, ``512M``, ``1.5GiB``, ``64k`` or plain bytes (binary
    units: K is 1024); 0 is 0. A ValueError says what is expected."""
    match = _SIZE.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"expected a size such as 4G, 512M or a number of bytes, got {text!r}")
    return int(float(match[1]) * _SIZE_UNITS[match[2].lower()])


def format_size(size: int) -> str:
    """``4 GiB``, ``512 MiB``, ``1.5 GiB``: the largest binary unit that leaves at least 1."""
    for unit, factor in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if size >= factor:
            return f"{round(size / factor, 2):g} {unit}"
    return f"{size} bytes"
