"""The run options, each said once: its name, what its text means, its default, its help, and
which front doors take it. The command line's flags (``--case-timeout``), pytest's options
and ini keys (``--gradcheck-case-timeout``, ``gradcheck_case_timeout``) and the Python API's
keywords (``case_timeout=``) are made from this table, and every door builds its Settings
through ``settings_from``: no door can run with a default another does not have.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from gradcheck_lab.casefile import LoadLimits
from gradcheck_lab.settings import (
    CHECK_THREADS,
    DEFAULT_CASE_MEMORY,
    DEFAULT_CASE_TIMEOUT,
    DEFAULT_TIMING_THREADS,
    FD_MODES,
    LIMIT_OPTIONS,
    SYMBOLIC_MODES,
    Settings,
    TimingSettings,
    format_size,
    load_limits,
    parse_size,
)

# The doors: the command line, pytest, the API's check() and its run_file() (which, as the
# command line, runs a file's user code in a worker process under the budgets).
CLI, PYTEST, API, RUN_FILE = "cli", "pytest", "api", "run_file"
EVERY_DOOR = frozenset({CLI, PYTEST, API, RUN_FILE})
BUDGETED = frozenset({CLI, PYTEST, RUN_FILE})


def positive_int(text: str) -> int:
    """A count: a whole number of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise ValueError(f"expected a positive number, got {value}")
    return value


def seconds(text: str) -> float:
    """A time budget: a finite number of seconds, at least 0 (0: no budget)."""
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"expected a number of seconds, got {text!r}") from None
    if not value >= 0 or value == math.inf:
        raise ValueError(f"expected a finite number >= 0, got {text!r}")
    return value


def switch(text: str) -> bool:
    """An on/off option written as text (an ini key): true or false."""
    word = str(text).strip().lower()
    if word not in ("true", "false", ""):
        raise ValueError(f"expected true or false, got {text!r}")
    return word == "true"


def choice(*choices: str) -> Callable[[str], str]:
    def chosen(text: str) -> str:
        if text not in choices:
            raise ValueError(f"expected one of {', '.join(choices)}, got {text!r}")
        return text

    return chosen


@dataclass(frozen=True)
class Option:
    """One run option. ``parse`` turns a flag's or an ini key's text into the value (raising
    ValueError with what is expected); ``default`` is that value when nothing is given."""

    name: str  # the API keyword and the Settings field it sets; flags are made from it
    help: str  # what it does, the same words at every door
    default: Any
    parse: Callable[[str], Any]
    doors: frozenset[str] = EVERY_DOOR
    metavar: str = "N"
    choices: tuple[str, ...] | None = None
    switch: bool = False  # given by its flag alone (--sensitivity), true or false as an ini key
    # Its value at a door that does not take it: a time or memory budget is 0 (none) where
    # the door runs checks in its own process (the API's callables cannot move to a worker).
    absent: Any = None

    @property
    def cli_flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def pytest_flag(self) -> str:
        return "--gradcheck-" + self.name.replace("_", "-")

    @property
    def ini_key(self) -> str:
        return f"gradcheck_{self.name}"

    def default_text(self) -> str:
        """The default as a reader writes it: 4G, 300, 50,000,000, auto."""
        if self.parse is parse_size:
            return format_size(self.default).replace(" ", "").replace("iB", "")
        if isinstance(self.default, float):
            return f"{self.default:g}"
        if isinstance(self.default, int) and not isinstance(self.default, bool):
            return f"{self.default:,}"
        return str(self.default)

    def described(self) -> str:
        """The help with its default, as every door's help shows it."""
        return self.help if self.switch else f"{self.help} (default {self.default_text()})"


_LIMITS = LoadLimits()


def _limit(name: str, help_text: str) -> Option:
    part, field_name = LIMIT_OPTIONS[name]
    holder = _LIMITS if part is None else getattr(_LIMITS, part)
    return Option(name, help_text, getattr(holder, field_name), positive_int)


OPTIONS: tuple[Option, ...] = (
    Option("symbolic", "the symbolic oracle: exact elementwise sympy, the numpy rule sweep, or "
           "auto: the sweep held to its round-off, exact sympy where it does not pass (the "
           "sweep alone past the exact oracle's size)", "auto", choice(*SYMBOLIC_MODES),
           metavar="MODE", choices=SYMBOLIC_MODES),
    Option("fd", "finite differences: on every partial (all), along random directions "
           "(projections), auto by size, or exhaustive: every partial of any size, batched, "
           "with a progress bar", "auto", choice(*FD_MODES), metavar="MODE", choices=FD_MODES),
    Option("threads", "torch CPU threads for the checks: a check is many small evaluations, "
           "which more threads slow down, and collapse beside another busy process; reported",
           CHECK_THREADS, positive_int),
    Option("sensitivity", "also report the smallest relative error, in one element and in "
           "all elements, each check would have caught (planted into autograd's gradients)",
           False, switch, switch=True),
    Option("case_timeout", "time budget of each case in seconds; a case with an impl then "
           "runs in a worker process that is stopped when the budget runs out, a spec without "
           "one under an interval timer (0: no budget, impls in this process)",
           DEFAULT_CASE_TIMEOUT, seconds, doors=BUDGETED, metavar="SECONDS", absent=0.0),
    Option("case_memory", "memory budget of the worker process that runs impls and training "
           "steps (its data segment, on Linux): an allocation beyond it is an error result for "
           "that case, and the worker is restarted (sizes such as 512M, 4G or bytes; 0: no "
           "limit; none without a case timeout)", DEFAULT_CASE_MEMORY, parse_size,
           doors=BUDGETED, metavar="SIZE", absent=0),
    Option("timings", "also time the forward and the backward of each case (median and IQR "
           "over rounds, each round on a fresh graph); pytest times with --benchmark", False,
           switch, doors=frozenset({CLI}), switch=True),
    Option("timing_threads", "torch CPU threads while timing (shared machines are noisy)",
           DEFAULT_TIMING_THREADS, positive_int, doors=frozenset({CLI, PYTEST})),
    Option("timing_rounds", "at least this many timed rounds per pass",
           TimingSettings().min_rounds, positive_int, doors=frozenset({CLI})),
    _limit("max_input_elements", "refuse cases whose inputs hold more elements"),
    _limit("max_case_elements", "refuse cases whose tensors, inputs and every intermediate, "
           "hold more elements in all"),
    _limit("max_program_nodes", "refuse cases whose program has more nodes (lets and "
           "composite functions expanded)"),
    _limit("max_file_bytes", "refuse larger case files"),
    _limit("max_cases_per_file", "refuse files with more cases (about 100 small cases are "
           "checked per second)"),
    _limit("max_cases_per_run", "check at most this many cases in one run: the files past it "
           "are errors, not read"),
    _limit("max_yaml_nodes", "refuse case files of more YAML nodes (aliases expanded), "
           "counted while the file is read"),
    _limit("max_expression_length", "refuse longer expressions (characters)"),
    _limit("max_expression_depth", "refuse expressions nested deeper"),
)
BY_NAME = {option.name: option for option in OPTIONS}


def options_of(door: str) -> Iterator[Option]:
    return (option for option in OPTIONS if door in option.doors)


def settings_from(given: Mapping[str, Any], door: str) -> Settings:
    """The Settings at ``door`` of the options ``given`` by name (parsed values; None or not
    given: the default; an option the door does not take: its ``absent`` value, else the
    default). A time or memory budget of 0 means none. Raises SettingError (a ValueError)
    for a value Settings refuses."""
    values = {option.name: option.default if door in option.doors or option.absent is None
              else option.absent for option in OPTIONS}
    values.update({name: value for name, value in given.items() if value is not None})
    return Settings(
        symbolic=values["symbolic"], fd=values["fd"], threads=values["threads"],
        sensitivity=bool(values["sensitivity"]),
        case_timeout=values["case_timeout"] or None, case_memory=values["case_memory"] or None,
        timings=TimingSettings(min_rounds=values["timing_rounds"],
                               threads=values["timing_threads"])
        if values["timings"] else None,
        limits=load_limits(**{name: values[name] for name in LIMIT_OPTIONS}))
