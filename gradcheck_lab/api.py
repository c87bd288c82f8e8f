"""The Python API: the same checks as a case file, from a test written in Python."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from gradcheck_lab.results import Result


def check(
    output: str,
    inputs: Mapping[str, Any],
    *,
    impl: Callable[..., Any] | None = None,
    let: Mapping[str, str] | None = None,
    expect: Mapping[str, Any] | None = None,
    dtypes: Sequence[str] = ("float64",),
    devices: Sequence[str] = ("cpu",),
    tolerance: Mapping[str, Any] | None = None,
    seed: int = 0,
    nondet_tol: float | None = None,
    points: int = 1,
    avoid_kinks: bool = False,
    order: int = 1,
    modes: Sequence[str] = ("reverse",),
    training: Mapping[str, Any] | None = None,
    name: str = "check",
    symbolic: str = "auto",
    fd: str = "auto",
    sensitivity: bool = False,
) -> list[Result]:
    """Check ``output`` (the spec, in the case language) and optionally ``impl`` against it.

    ``inputs`` take the case-file forms (numbers, nested lists, ``{"shape": ..., "init": ...}``)
    and also numpy arrays or torch tensors. ``training`` takes the case file's ``training:``
    keys, with ``step`` a callable, ``step(params=..., batch=..., lr=...)``. Raises CaseError
    when the case is invalid; returns one Result per dtype × device otherwise. Example::

        results = check(output="sum(sin(x) * c)",
                        inputs={"x": [0.5, 1.0], "c": {"value": [2, 3], "requires_grad": False}})
        assert all(r.ok for r in results), results[0].message
    """
    from gradcheck_lab.casefile import build_case
    from gradcheck_lab.runner import RunOptions, run_case

    data: dict[str, Any] = {"name": name, "inputs": dict(inputs), "output": output,
                            "dtypes": list(dtypes), "devices": list(devices), "seed": seed}
    if let is not None:
        data["let"] = dict(let)
    if expect is not None:
        data["expect"] = dict(expect)
    if tolerance is not None:
        data["tolerance"] = dict(tolerance)
    if nondet_tol is not None:
        data["nondet_tol"] = nondet_tol
    data["points"] = points
    data["avoid_kinks"] = avoid_kinks
    data["order"] = order
    data["modes"] = list(modes)
    if training is not None:
        data["training"] = dict(training)
    case = build_case(_plain(data), label="<check>", base_dir=None, default_name=name,
                      impl=impl)
    # sensitivity: each result's ``sensitivity`` holds the smallest planted errors caught.
    return list(run_case(case, RunOptions(symbolic_mode=symbolic, fd_mode=fd,
                                          sensitivity=sensitivity)))


def run_file(path: str | Path, *, symbolic: str = "auto", fd: str = "auto") -> list[Result]:
    """Every result of one case file, as ``gradcheck-lab run`` reports them."""
    from gradcheck_lab.casefile import load_file
    from gradcheck_lab.runner import RunOptions, run_file_cases

    options = RunOptions(symbolic_mode=symbolic, fd_mode=fd)
    return list(run_file_cases(load_file(Path(path)), options))


def _plain(value: Any) -> Any:
    """Python floats become exact Decimals' equivalents as the YAML reader gives them: the
    schema takes ints, Decimals, Fractions and floats alike; tuples become lists."""
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value
