"""The Python API: the same checks as a case file, from a test written in Python."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from gradcheck_lab.results import Result

API_LABEL = "<check>"  # what errors of a case built in Python name as its file


def check(output: str | Mapping[str, str] | None = None,
          inputs: Mapping[str, Any] | None = None, *,
          impl: Callable[..., Any] | None = None,
          let: Mapping[str, str] | None = None, expect: Mapping[str, Any] | None = None,
          name: str = "check", **settings: Any) -> list[Result]:
    """Check ``output`` (the spec, in the case language) and optionally ``impl`` against it.

    ``output`` is one expression or several by name; left out (None) with an ``impl``, the
    spec is traced from the impl's own forward. ``inputs`` take the case-file forms
    (numbers, nested lists, ``{"shape": ..., "init": ...}``) and also numpy arrays or torch
    tensors. Every other key of a case file is a keyword here (``dtypes``, ``devices``,
    ``tolerance``, ``seed``, ``nondet_tol``, ``points``, ``avoid_kinks``, ``order``,
    ``modes``, ``training``, ``constants``, ``params``, ``surrogate``), validated as the case
    file's are; so are the run settings ``symbolic``, ``fd``, ``sensitivity`` and ``threads``
    (torch's CPU threads during the check, put back after it; default 1, as at the command
    line and in pytest: ``gradcheck_lab.options``). ``training`` takes the case file's
    ``training:`` keys, with ``step`` a callable, ``step(params=..., batch=..., lr=...)``.
    Raises CaseError when the case is invalid; returns one Result per dtype × device
    otherwise. ``impl`` and ``step`` run in this process, without the time and memory budgets
    of ``run_file`` and the command line: a callable cannot move to a worker process (put the
    code in a file and use ``run_file`` for that). Example::

        results = check(output="sum(sin(x) * c)",
                        inputs={"x": [0.5, 1.0], "c": {"value": [2, 3], "requires_grad": False}})
        assert all(r.ok for r in results), results[0].message
    """
    from gradcheck_lab.pipeline.cost import counted_from_here

    if inputs is None:
        raise TypeError("check() needs inputs=")
    with counted_from_here():  # the case's building is part of the check's cost
        return _checked(output, inputs, impl, let, expect, name, settings)


def _checked(output: str | Mapping[str, str] | None, inputs: Mapping[str, Any],
             impl: Callable[..., Any] | None, let: Mapping[str, str] | None,
             expect: Mapping[str, Any] | None, name: str,
             settings: dict[str, Any]) -> list[Result]:
    from gradcheck_lab.casefile import build_case
    from gradcheck_lab.pipeline import run_case

    case_keys, run_settings = split_settings(settings)
    data: dict[str, Any] = {"name": name, "inputs": dict(inputs), **case_keys}
    if output is not None:
        data["output"] = output
    for key, value in (("let", let), ("expect", expect)):
        if value is not None:
            data[key] = dict(value)
    case = build_case(_plain(data), label=API_LABEL, base_dir=None, default_name=name,
                      impl=impl)
    return list(run_case(case, run_settings))


def assert_gradients(output: str | Mapping[str, str] | None = None,
                     inputs: Mapping[str, Any] | None = None, **keywords: Any) -> list[Result]:
    """``check`` with the same arguments, raising AssertionError for the first result that
    fails or is an error, its message the report the command line prints, so that a pytest
    test shows the values::

        assert_gradients("sum(x * x)", {"x": [1.0, 2.0]}, impl=my_square)
    """
    from gradcheck_lab.doors.render import failure_text

    results = check(output, inputs, **keywords)
    for result in results:
        if not result.ok:
            raise AssertionError(failure_text(result))
    return results


def run_file(path: str | Path, **settings: Any) -> list[Result]:
    """Every result of one case file, as ``gradcheck-lab run`` reports them (``settings``:
    ``symbolic``, ``fd``, ``sensitivity``, ``threads``, ``case_timeout``, ``case_memory`` and
    the ``max_*`` limits, as the option table ``gradcheck_lab.options`` lists them).

    As on the command line, a case with an impl or a training step file runs in a worker
    process, stopped after ``case_timeout`` seconds (default
    ``gradcheck_lab.settings.DEFAULT_CASE_TIMEOUT``, 300) and limited to ``case_memory``
    bytes (default ``DEFAULT_CASE_MEMORY``, 4 GiB; None: no limit), so that code that hangs,
    crashes its interpreter or allocates too much is an error result, not the caller's
    problem; a spec without user code runs in this process under the time budget (Unix, main
    thread). The worker is started by the first call that needs one and reused by the next
    (stopped at exit). ``case_timeout=None`` runs everything in this process without budgets
    (to step into an impl with a debugger, or to see what a test monkeypatched).

    A path that does not exist raises FileNotFoundError (a relative path is read from the
    working directory); a file that exists but cannot be read or parsed is an error Result,
    as on the command line."""
    from gradcheck_lab.casefile import load_file
    from gradcheck_lab.options import RUN_FILE
    from gradcheck_lab.run.files import run_file_cases, shared_isolation

    # None for a budget is said here: none (the table's 0), not "the default".
    run_settings = door_settings({key: 0 if value is None and key in _BUDGETS else value
                                  for key, value in settings.items()}, RUN_FILE, str(path),
                                 "run_file")
    if not Path(path).exists():  # a typo or the wrong directory: not a verdict about a case
        raise FileNotFoundError(f"run_file: no such case file: {path} (relative paths are "
                                f"read from {Path.cwd()})")
    with shared_isolation(run_settings) as isolation:
        return list(run_file_cases(load_file(Path(path)), run_settings, isolation))


def split_settings(settings: Mapping[str, Any]) -> tuple[dict[str, Any], Any]:
    """Keywords of ``check`` beyond the spec: the case file's keys, and the run settings (a
    Settings, from the option table's API keywords)."""
    from gradcheck_lab.casefile.schema import CASE_KEYS
    from gradcheck_lab.options import API

    spec_keys = {"name", "inputs", "output", "impl", "let", "expect"}
    case_keys = [key for key in CASE_KEYS if key not in spec_keys]
    return ({key: value for key, value in settings.items() if key in case_keys},
            door_settings({key: value for key, value in settings.items()
                           if key not in case_keys}, API, API_LABEL, "check", case_keys))


_BUDGETS = ("case_timeout", "case_memory")


def door_settings(given: Mapping[str, Any], door: str, where: str, function: str,
                  also: Sequence[str] = ()) -> Any:
    """The Settings of an API function's keywords, each an option of ``door`` in the option
    table (or one of ``also``, taken elsewhere). An unknown keyword is a TypeError naming
    it, as Python's own would be; a wrong value a CaseError at ``where`` naming it."""
    from gradcheck_lab.errors import CaseError
    from gradcheck_lab.ops import suggest
    from gradcheck_lab.options import options_of, settings_from
    from gradcheck_lab.settings import SettingError

    names = [option.name for option in options_of(door)]
    for key in given:
        if key not in names:
            hint = suggest(key, [*also, *names])
            raise TypeError(f"{function}() got an unexpected keyword argument {key!r}{hint}")
    try:
        return settings_from(given, door)
    except SettingError as exc:
        raise CaseError(where, None, exc.key, exc.message) from None


def _plain(value: Any, depth: int = 0, path: str = "") -> Any:
    """Tuples become lists, as the YAML reader gives them (the schema takes ints, Decimals,
    Fractions and floats alike). Nesting deeper than a case file may is a CaseError at its
    key, as the reader's own limit makes it for a file."""
    from gradcheck_lab.casefile.yaml_reader import ReadLimits

    if depth > ReadLimits.max_depth:
        from gradcheck_lab.errors import CaseError

        raise CaseError(API_LABEL, None, path.lstrip(".") or "document",
                        f"nesting deeper than {ReadLimits.max_depth} levels")
    if isinstance(value, Mapping):
        return {k: _plain(v, depth + 1, f"{path}.{k}") for k, v in value.items()}
    if isinstance(value, (tuple, list)):
        return [_plain(v, depth + 1, path) for v in value]
    return value
